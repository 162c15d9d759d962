"""The user's YAML: documents of our kinds, checked through the API models before anything runs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sft_operator.api.dataprep import SFTDataPrepSpec
from sft_operator.api.meta import API_VERSION, DATAPREP, RUN, KindInfo
from sft_operator.api.sftrun import SFTRunSpec
from sft_operator.errors import InvalidSpec
from sft_operator.render.children import parse_spec

KINDS: dict[str, KindInfo] = {DATAPREP.kind: DATAPREP, RUN.kind: RUN}
SPEC_MODELS: dict[str, type[SFTDataPrepSpec] | type[SFTRunSpec]] = {
    DATAPREP.kind: SFTDataPrepSpec,
    RUN.kind: SFTRunSpec,
}


class ManifestError(ValueError):
    """A file the user gave cannot be used as it is; the message names the file, document and fix."""


@dataclass(frozen=True)
class Resource:
    """One SFTDataPrep or SFTRun document of a file."""

    info: KindInfo
    body: dict[str, Any]
    where: str
    """``FILE#N`` (1-based document number), for messages."""

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])

    @property
    def ref(self) -> str:
        """``SFTRun/tiny``: how every message names it."""
        return f"{self.info.kind}/{self.name}"

    def pruned(self) -> list[str]:
        """The spec's fields a cluster would drop (the CRD's structural schema does not declare them,
        e.g. ``gpus_per_node`` for ``gpusPerNode``), each with a "did you mean"."""
        from sft_operator import crdgen
        from sft_operator.status.pruned import unknown_fields

        return unknown_fields(self.body.get("spec") or {}, crdgen.spec_schema(SPEC_MODELS[self.info.kind]))

    def spec(self) -> SFTDataPrepSpec | SFTRunSpec:
        """The validated spec (the operator's own checks: what would make it Stalled)."""
        try:
            return parse_spec(SPEC_MODELS[self.info.kind], self.body)
        except InvalidSpec as exc:
            raise ManifestError(f"{self.where} ({self.ref}): {exc.message}") from None


@dataclass(frozen=True)
class Manifest:
    """Our resources of a file, in file order, and the other documents (PVCs, ...), untouched."""

    resources: list[Resource]
    others: list[dict[str, Any]]

    def of_kind(self, info: KindInfo) -> list[Resource]:
        return [r for r in self.resources if r.info is info]


FILE_EXTENSIONS = (".json", ".yaml", ".yml")
"""What a directory given to ``-f`` contributes (kubectl's ``FileExtensions``:
staging/src/k8s.io/cli-runtime/pkg/resource/visitor.go)."""
STDIN = "-"


def expand(paths: Sequence[str | Path], *, recursive: bool = False) -> list[str]:
    """The files ``-f`` names, in order: a directory gives its ``*.json``/``*.yaml``/``*.yml`` files in
    lexical order (its subdirectories too with ``-R``), as kubectl's ``-f DIR`` does; ``-`` is stdin."""
    out: list[str] = []
    for raw in paths:
        name = str(raw)
        if name == STDIN:
            if STDIN in out:
                raise ManifestError("-f - (stdin) can be given only once")
            out.append(name)
            continue
        path = Path(name)
        if path.is_dir():
            found = sorted(
                str(f)
                for f in (path.rglob("*") if recursive else path.iterdir())
                if f.is_file() and f.suffix in FILE_EXTENSIONS
            )
            if not found:
                raise ManifestError(
                    f"{name} holds no {'/'.join(FILE_EXTENSIONS)} file"
                    + ("" if recursive else " (add -R to read its subdirectories)")
                )
            out += found
        else:
            out.append(name)
    return out


def _documents(name: str) -> list[tuple[str, Any]]:
    """(``FILE#N``, document) of one file; a ``kind: List`` is flattened into its items, as kubectl does."""
    import sys

    try:
        text = sys.stdin.read() if name == STDIN else Path(name).read_text()
    except OSError as exc:
        raise ManifestError(f"cannot read {name}: {exc.strerror or exc}") from None
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise ManifestError(f"{name} is not valid YAML: {exc}") from None
    out: list[tuple[str, Any]] = []
    for number, doc in enumerate(docs, 1):
        where = f"{'stdin' if name == STDIN else name}#{number}"
        if isinstance(doc, Mapping) and doc.get("kind") == "List" and isinstance(doc.get("items"), list):
            out += [(f"{where}.items[{i}]", item) for i, item in enumerate(doc["items"])]
        else:
            out.append((where, doc))
    return out


def load(
    paths: str | Path | Sequence[str | Path], *, validate: bool = True, recursive: bool = False
) -> Manifest:
    """Read every file of ``-f`` (files, directories, ``-`` for stdin) as one manifest, in order. Every
    SFT document gets checked with the operator's models; a name defined twice, in any files, is an error."""
    files = expand([paths] if isinstance(paths, str | Path) else list(paths), recursive=recursive)
    if not files:
        raise ManifestError("no file given: pass -f FILE (a file, a directory, or - for stdin)")
    resources: list[Resource] = []
    others: list[dict[str, Any]] = []
    seen: dict[str, str] = {}
    for name in files:
        for where, doc in _documents(name):
            if not isinstance(doc, Mapping):
                raise ManifestError(
                    f"{where}: expected a Kubernetes object (a mapping), got {type(doc).__name__}"
                )
            kind = doc.get("kind")
            if kind not in KINDS:
                others.append(dict(doc))
                continue
            if doc.get("apiVersion") != API_VERSION:
                raise ManifestError(
                    f"{where}: {kind} has apiVersion {doc.get('apiVersion')!r}; "
                    f"this sftctl speaks {API_VERSION}"
                )
            meta = doc.get("metadata") or {}
            if not meta.get("name"):
                raise ManifestError(f"{where}: {kind} has no metadata.name")
            resource = Resource(KINDS[kind], dict(doc), where)
            if resource.ref in seen:
                raise ManifestError(f"{resource.ref} is defined twice: {seen[resource.ref]} and {where}")
            seen[resource.ref] = where
            if validate:
                resource.spec()
            resources.append(resource)
    if not resources:
        raise ManifestError(f"{', '.join(files)}: no {' or '.join(KINDS)} document")
    return Manifest(resources, others)
