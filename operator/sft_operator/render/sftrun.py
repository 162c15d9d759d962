"""``SFTRun`` → ConfigMap (config.yaml) + the child its backend runs the pods with.

What every backend shares is built here: the pod template (hardened, ``nvidia.com/gpu`` =
gpusPerNode, a memory-backed /dev/shm) and the torchrun command. Each pod's command is::

    sft-torchrun --nnodes=N --nproc-per-node=G --node-rank=<rank> --master-addr=<addr>
             --master-port=<port> --max-restarts=R --no-python sft-train --config /etc/sft/config.yaml

where rank, address and port are what the backend's controller provides (see
:mod:`sft_operator.backends`); the values the operator knows at render time (nodes, GPUs) are spelled
out for ``kubectl get -o yaml``. torchrun's default ``static`` rendezvous uses exactly these.
``sft-torchrun`` (the trainer image's ``sft_train.launch``) takes torchrun's arguments and runs
torchrun, forwarding SIGTERM to it and exiting 143 when it was signalled: torchrun alone turns a
preemption, after the workers saved a checkpoint, into exit 1, which restart policies read as
permanent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sft_common.config import to_yaml
from sft_operator.api.meta import RUN
from sft_operator.api.sftrun import (
    GPU_RESOURCE,
    LEGACY_GPUS_PER_NODE,
    SHM_DIR,
    SHM_VOLUME,
    SFTRunSpec,
    training_fields,
)
from sft_operator.backends.base import Backend, Companion, RunPods
from sft_operator.errors import InvalidSpec
from sft_operator.render import children as common
from sft_operator.render import meta
from sft_operator.render.identity import pod_service_account
from sft_operator.render.pods import CONFIG_PATH, WorkloadDefaults, container, owner_env, placement, pod_spec

APP = "sft-train"


@dataclass(frozen=True)
class RunChildren(common.Children):
    """An SFTRun's children: the ConfigMap, the backend's child (``job``) and what the backend
    creates beside it (:meth:`Backend.companions`)."""

    companions: tuple[Companion, ...] = ()


@dataclass(frozen=True)
class ResolvedData:
    """The training data after the operator resolved ``spec.data`` (from the SFTDataPrep or the URI)."""

    uri: str
    pack_size: int | None


def parse_spec(cr: Mapping[str, Any]) -> SFTRunSpec:
    """Validate the spec with the model (incl. checks the CRD schema cannot express)."""
    return common.parse_spec(SFTRunSpec, cr)


def job_name(cr_name: str, backend: Backend) -> str:
    """Deterministic, so a restarted operator finds (409) the child it created instead of adding one."""
    return meta.child_name(cr_name, "train", limit=backend.name_limit)


def config_map_name(cr_name: str) -> str:
    return meta.child_name(cr_name, "train-config")


def training_spec_hash(spec: SFTRunSpec) -> str:
    """Hash of the training-defining fields, compared with the child's (drift check).

    gpusPerNode 8 counts as a default, as it did when 8 was its only default: an API server with the
    old CRD stored 8 in every CR that left it out, and the hash of a running CR must not change when
    the operator is upgraded (a changed hash reads as SpecChangedAfterStart)."""
    return common.spec_hash(spec, training_fields(), also_default={"gpusPerNode": LEGACY_GPUS_PER_NODE})


def torchrun_command(spec: SFTRunSpec, backend: Backend, child_name: str) -> list[str]:
    """The pod command (see the module docstring)."""
    rdzv = backend.rendezvous(child_name)
    restarts = 0 if backend.group_restarts else spec.max_restarts
    return [
        "sft-torchrun",
        f"--nnodes={spec.nodes}",
        f"--nproc-per-node={nproc_per_node(spec)}",
        f"--node-rank={rdzv.node_rank}",
        f"--master-addr={rdzv.master_addr}",
        f"--master-port={rdzv.master_port}",
        f"--max-restarts={restarts}",
        "--no-python",
        "sft-train",
        "--config",
        CONFIG_PATH,
    ]


def nproc_per_node(spec: SFTRunSpec) -> int:
    """One process per GPU; one (CPU) process per pod when the run has no GPUs."""
    return spec.gpus() or 1


def resources(spec: SFTRunSpec) -> dict[str, Any]:
    """The user's requests/limits with ``nvidia.com/gpu`` = gpusPerNode (limits; requests must match)."""
    out = spec.resources.model_dump(mode="json", by_alias=True, exclude_none=True)
    if spec.gpus():
        out.setdefault("limits", {})[GPU_RESOURCE] = spec.gpus()
        if GPU_RESOURCE in (out.get("requests") or {}):
            out["requests"][GPU_RESOURCE] = spec.gpus()
    return out


def render(
    cr: Mapping[str, Any],
    data: ResolvedData,
    defaults: WorkloadDefaults | None,
    backend: Backend,
    previous: Mapping[str, Any] | None = None,
) -> RunChildren:
    """Render the children for resolved ``data`` with ``backend`` (chosen by the reconcile, or named
    by the caller); ``previous``: the child being replaced (:meth:`Backend.replaces`). Raises
    :class:`InvalidSpec` for an unrunnable spec."""
    defaults = defaults or WorkloadDefaults()
    spec = parse_spec(cr)
    image = common.image_or_default(
        spec.image, defaults.trainer_image, "SFT_DEFAULT_TRAINER_IMAGE", "sft-train"
    )
    defaults.policy.check(spec, defaults.service_account)
    if (
        spec.model.seq_length is not None
        and data.pack_size is not None
        and spec.model.seq_length != data.pack_size
    ):
        raise InvalidSpec(
            f"model.seqLength is {spec.model.seq_length} but the data was packed into bins of "
            f"{data.pack_size} tokens; unset model.seqLength (it defaults to the pack size) or prepare the "
            f"data with packSize {spec.model.seq_length}",
            reason="SeqLengthMismatch",
        )
    digest = training_spec_hash(spec)
    child = common.ChildMeta.of(RUN, cr, APP, digest)
    name = job_name(child.name, backend)
    cm_name = config_map_name(child.name)
    where = placement(spec, defaults.placement)
    main = container(
        spec,
        name=backend.container,
        image=image,
        command=torchrun_command(spec, backend, name),
        env=owner_env(RUN, child.namespace, child.name),
        extra_mounts=[{"name": SHM_VOLUME, "mountPath": SHM_DIR}],
        added_capabilities=where.added_capabilities,
    )
    res = resources(spec)
    if res:
        main["resources"] = res
    shm = {"name": SHM_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": spec.shm_size}}
    pod = pod_spec(
        spec,
        config_map=cm_name,
        containers=[main],
        service_account=pod_service_account(RUN, cr, defaults),
        extra_volumes=[shm],
        where=where,
    )
    pod["terminationGracePeriodSeconds"] = spec.grace_seconds()  # time to save a checkpoint on SIGTERM
    template = child.pod_template(
        pod,
        labels=where.pod_labels,
        annotations=where.pod_annotations,
    )
    run = RunPods(
        spec=spec,
        child=child,
        name=name,
        template=template,
        nproc_per_node=nproc_per_node(spec),
        defaults=defaults,
        previous=previous,
        restarts=int((cr.get("status") or {}).get("restartCount") or 0),
    )
    job = backend.render(run)
    config_map = common.config_map(child, cm_name, to_yaml(spec.train_config(data.uri, data.pack_size)))
    return RunChildren(
        config_map=config_map, job=job, spec_hash=digest, companions=tuple(backend.companions(run))
    )
