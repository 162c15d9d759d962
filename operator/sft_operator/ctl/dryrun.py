"""``sftctl run --dry-run=client [-o yaml|json|name] -f FILE...``: what the operator would create, here.

For every CR of the files, the children the operator renders (with the operator's own pure render
code: :func:`render.dataprep.render`, :func:`render.sftrun.render`, :func:`render.identity.render_identity`)
and, for an SFTRun, the trainer plan ``sft-train --dry-run`` prints for the config in that ConfigMap
(Megatron-Bridge overrides, LoRA, dataset spec, resume). No cluster, credentials or network: nothing
is read but the files. What only a cluster knows is filled in and said on stderr:

* the CR's ``uid`` (it names the prep's run id and the children's ownerReference): a fixed placeholder;
* an SFTRun's data (``dataPrepRef``): the SFTDataPrep of the same files gives ``outputDir`` and
  ``packSize`` (what its status would say once it succeeded); one that is not in the files leaves a
  placeholder path and the pack size unknown;
* ``spec.backend: auto``: the operator takes the first backend whose CRD the cluster serves (in
  ``sft_operator.backends.PREFERENCE`` order); ``--backend`` says which to render, the first that can
  run the spec otherwise;
* the images and the workload ServiceAccount: the operator's defaults from this environment
  (``SFT_DEFAULT_*_IMAGE``, ...), as the chart sets them on the operator.

Those are said as ``note:``; as ``warning:`` what would go wrong or is almost certainly not meant (an
``auto`` backend the operator would pick where the run then stalls; the trainer's config warnings,
which ``sft-train`` prints before a run).

``-o yaml`` prints Kubernetes objects only (the plan goes in as YAML comments), so the output can be
piped into ``kubectl apply --dry-run=client -f -`` or a diff.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from sft_operator import backends
from sft_operator.api.dataprep import SFTDataPrepSpec
from sft_operator.api.meta import DATAPREP
from sft_operator.api.sftrun import SFTRunSpec
from sft_operator.ctl.manifests import Manifest, ManifestError, Resource
from sft_operator.errors import InvalidSpec
from sft_operator.render import dataprep as render_dataprep
from sft_operator.render import sftrun as render_sftrun
from sft_operator.render.identity import render_identity
from sft_operator.render.pods import CONFIG_PATH, WorkloadDefaults

PLACEHOLDER_UID = "00000000-0000-0000-0000-000000000000"
"""The uid a dry run gives each CR (the API server assigns the real one at creation)."""


def _object(resource: Resource, namespace: str) -> dict[str, Any]:
    body = json.loads(json.dumps(resource.body))
    meta = body.setdefault("metadata", {})
    meta["namespace"] = meta.get("namespace") or namespace
    meta["uid"] = PLACEHOLDER_UID
    return body


@dataclass
class Said:
    """What a dry run says on stderr: ``notes``, what it cannot know here (``note:``), and ``warnings``,
    what would go wrong or is almost certainly not meant (``warning:``; a shipped sample has none)."""

    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _identity(resource: Resource, cr: Mapping[str, Any], defaults: WorkloadDefaults) -> list[dict[str, Any]]:
    identity = render_identity(resource.info, cr, defaults)
    return [d for d in (identity.service_account, identity.role, identity.role_binding) if d is not None]


def _data(
    spec: SFTRunSpec, preps: Mapping[str, SFTDataPrepSpec], said: Said, ref: str
) -> tuple[str, int | None]:
    """(data path, pack size) as the operator would resolve them once the data is ready."""
    if spec.data.uri:
        said.notes.append(
            f"{ref}: data {spec.data.uri} is not read (a dry run reads no storage); pack size unknown"
        )
        return spec.data.uri, None
    assert spec.data.data_prep_ref is not None
    name = spec.data.data_prep_ref.name
    prep = preps.get(name)
    if prep is None:
        said.notes.append(
            f"{ref}: SFTDataPrep/{name} is not in the files given; its outputDir and packSize are unknown "
            "(add its file with another -f to see them)"
        )
        return f"<outputDir of SFTDataPrep/{name}>", None
    return prep.output_dir, prep.pack_size


def trainer_plan(
    spec: SFTRunSpec, data_path: str, pack_size: int | None, said: Said, ref: str
) -> dict[str, Any]:
    """What ``sft-train --dry-run`` prints for the ConfigMap's config, without reading the data."""
    from sft_train.cli import ASSUMED_PACK_SIZE, config_warnings, dry_run_report
    from sft_train.errors import TrainInputError
    from sft_train.packed_data import SPLITS, DataInfo

    config = spec.train_config(data_path, pack_size)
    said.warnings += [f"{ref}: {warning}" for warning in config_warnings(config)]
    if pack_size is None and config.model.seq_length is None:
        said.notes.append(f"{ref}: the plan assumes pack size {ASSUMED_PACK_SIZE} (sft-prep's default)")
    info = DataInfo(
        root=data_path,
        pack_size=pack_size or config.model.seq_length or ASSUMED_PACK_SIZE,
        shards={split: [] for split in SPLITS},
    )
    args = argparse.Namespace(
        config=CONFIG_PATH,
        nproc_per_node=render_sftrun.nproc_per_node(spec),
        nnodes=spec.nodes,
        overrides=[],
    )
    unread = [
        f"data: {data_path} is not read (a client dry run reads no storage): the plan shows no validation "
        "shards and pad_seq_to_mult 1"
    ]
    try:
        report = dry_run_report(config, info, args, unread, read_local=False)
    except TrainInputError as exc:
        raise ManifestError(f"{ref}: {exc}") from None
    report.pop("torchrun", None)  # the pod's own command is in the rendered child
    report.pop("data", None)
    said.notes += [f"{ref}: {warning}" for warning in report.pop("warnings", [])]
    return report


def render_all(
    manifest: Manifest, namespace: str, backend: str | None
) -> tuple[list[tuple[str, list[dict[str, Any]], dict[str, Any] | None]], Said]:
    """Per CR: (ref, its rendered children, its trainer plan or None); and what to say on stderr."""
    defaults = WorkloadDefaults.from_env()
    said = Said()
    preps: dict[str, SFTDataPrepSpec] = {}
    for prep in manifest.of_kind(DATAPREP):
        spec = prep.spec()
        assert isinstance(spec, SFTDataPrepSpec)
        preps[prep.name] = spec
    out: list[tuple[str, list[dict[str, Any]], dict[str, Any] | None]] = []
    for resource in manifest.resources:
        cr = _object(resource, namespace)
        try:
            if resource.info is DATAPREP:
                children = render_dataprep.render(cr, defaults)
                out.append(
                    (
                        resource.ref,
                        [*_identity(resource, cr, defaults), children.config_map, children.job],
                        None,
                    )
                )
                continue
            spec = resource.spec()
            assert isinstance(spec, SFTRunSpec)
            path, pack = _data(spec, preps, said, resource.ref)
            children = _render_run(
                resource, cr, spec, render_sftrun.ResolvedData(path, pack), defaults, backend, said
            )
            plan = trainer_plan(spec, path, pack, said, resource.ref)
            out.append(
                (
                    resource.ref,
                    [
                        *_identity(resource, cr, defaults),
                        children.config_map,
                        *(c.manifest for c in children.companions),
                        children.job,
                    ],
                    plan,
                )
            )
        except InvalidSpec as exc:
            raise ManifestError(f"{resource.where} ({resource.ref}): {exc.message}") from None
    return out, said


def _render_run(
    resource: Resource,
    cr: Mapping[str, Any],
    spec: SFTRunSpec,
    data: render_sftrun.ResolvedData,
    defaults: WorkloadDefaults,
    backend: str | None,
    said: Said,
) -> render_sftrun.RunChildren:
    """The run's children with its backend: the spec's, else ``--backend``, else (``auto``) the first
    of the operator's preference that can run this spec, saying which were passed over and why."""
    if spec.backend != backends.AUTO:
        if backend and backend != spec.backend:
            said.notes.append(
                f"{resource.ref}: spec.backend is {spec.backend}; --backend {backend} is ignored"
            )
        return render_sftrun.render(cr, data, defaults, backends.named(spec.backend))
    if backend:
        said.notes.append(f"{resource.ref}: spec.backend auto, rendered as {backend} (--backend)")
        return render_sftrun.render(cr, data, defaults, backends.named(backend))
    for candidate in backends.PREFERENCE:
        try:
            children = render_sftrun.render(cr, data, defaults, candidate)
        except InvalidSpec as exc:
            if candidate is backends.PREFERENCE[-1]:
                raise
            said.warnings.append(
                f"{resource.ref}: spec.backend auto: where the {candidate.kind} CRD is served the operator "
                f"picks {candidate.name} and the run is Stalled: {exc.message}"
            )
            continue
        said.notes.append(
            f"{resource.ref}: spec.backend auto, rendered as {candidate.name} (the operator's choice when "
            f"its CRD is served; --backend for another)"
        )
        return children
    raise AssertionError("unreachable")


def _name(obj: Mapping[str, Any]) -> str:
    group = str(obj.get("apiVersion", "")).rpartition("/")[0]
    kind = str(obj.get("kind", "")).lower()
    return f"{kind}{'.' + group if group else ''}/{obj['metadata']['name']}"


def _dump(value: Any) -> str:
    return yaml.safe_dump(value, sort_keys=False, width=float("inf"))


def run(manifest: Manifest, args: argparse.Namespace) -> int:
    for doc in manifest.others:
        print(
            f"skipping {doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}: not an sft.dev kind "
            "(kubectl apply --dry-run=client shows it)",
            file=sys.stderr,
        )
    rendered, said = render_all(manifest, args.namespace or "default", args.backend)
    for warning in said.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for note in said.notes:
        print(f"note: {note}", file=sys.stderr)
    objects = [obj for _, children, _ in rendered for obj in children]
    if args.output == "name":
        for obj in objects:
            print(_name(obj))
    elif args.output == "json":
        print(json.dumps({"apiVersion": "v1", "kind": "List", "items": objects, "metadata": {}}, indent=4))
    elif args.output == "yaml":
        docs = []
        for ref, children, plan in rendered:
            head = f"# {ref}: the children the operator would create (sftctl run --dry-run=client)\n"
            if plan is not None:
                head += "# trainer plan (sft-train --dry-run of its ConfigMap's config):\n"
                head += "".join(f"#   {line}\n" for line in _dump(plan).splitlines())
            docs.append(head + "\n---\n".join(_dump(c) for c in children))
        sys.stdout.write("---\n" + "---\n".join(docs))
    else:
        for ref, children, plan in rendered:
            print(f"{ref}:")
            for obj in children:
                print(f"  {_name(obj)} created (dry run)")
            if plan is not None:
                print("  trainer plan:")
                sys.stdout.write("".join(f"    {line}\n" for line in _dump(plan).splitlines()))
    return 0
