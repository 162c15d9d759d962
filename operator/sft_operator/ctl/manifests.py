"""The user's YAML: documents of our kinds, checked through the API models before anything runs."""

from __future__ import annotations

from collections.abc import Mapping
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


def load(path: str | Path, *, validate: bool = True) -> Manifest:
    """Read ``path`` (``-`` for stdin). Every SFT document gets checked with the operator's models."""
    import sys

    name = str(path)
    try:
        text = sys.stdin.read() if name == "-" else Path(name).read_text()
    except OSError as exc:
        raise ManifestError(f"cannot read {name}: {exc.strerror or exc}") from None
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise ManifestError(f"{name} is not valid YAML: {exc}") from None
    resources: list[Resource] = []
    others: list[dict[str, Any]] = []
    for number, doc in enumerate(docs, 1):
        where = f"{name}#{number}"
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
                f"{where}: {kind} has apiVersion {doc.get('apiVersion')!r}; this sftctl speaks {API_VERSION}"
            )
        meta = doc.get("metadata") or {}
        if not meta.get("name"):
            raise ManifestError(f"{where}: {kind} has no metadata.name")
        resource = Resource(KINDS[kind], dict(doc), where)
        if validate:
            resource.spec()
        resources.append(resource)
    if not resources:
        raise ManifestError(f"{name} holds no {' or '.join(KINDS)} document")
    names = [r.ref for r in resources]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ManifestError(f"{name} defines {', '.join(dupes)} more than once")
    return Manifest(resources, others)
