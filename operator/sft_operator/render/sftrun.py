"""``SFTRun`` → ConfigMap (config.yaml) + Kubeflow ``kubeflow.org/v1`` PyTorchJob.

The PyTorchJob has a Master and ``nodes - 1`` Workers; each pod runs one container named ``pytorch``
(the name the training-operator looks for to default the rendezvous port and inject env) with
``nvidia.com/gpu: gpusPerNode``. Each pod's command is::

    torchrun --nnodes=N --nproc-per-node=G --node-rank=$(RANK)
             --master-addr=$(MASTER_ADDR) --master-port=$(MASTER_PORT) --max-restarts=R
             --no-python sft-train --config /etc/sft/config.yaml

Why explicit arguments instead of relying on ``PET_*`` env: training-operator v1 injects
``MASTER_ADDR``, ``MASTER_PORT`` and ``RANK`` (= the pod's node rank: Master 0, Worker i → i+1) in
every release, but ``PET_NNODES``/``PET_NPROC_PER_NODE``/``PET_NODE_RANK``/``PET_MASTER_*`` (which
torchrun would read by itself) only since v1.8. The kubelet expands ``$(VAR)`` from the container env,
which includes what the controller injected, so the command works with every v1 release, and the
values the operator knows at render time (nodes, GPUs) are spelled out for ``kubectl get -o yaml``.
torchrun's default ``static`` rendezvous uses exactly master address/port and node rank.

``restartPolicy: ExitCode``: exit codes 1-127 (the trainer's errors: 1 crash, 2 bad config) fail the
job at once; 128+ (SIGKILL/SIGTERM: OOM, eviction, preemption, node loss) are retried up to
``runPolicy.backoffLimit``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sft_common.config import to_yaml
from sft_operator.api.meta import RUN
from sft_operator.api.sftrun import GPU_RESOURCE, SHM_DIR, SHM_VOLUME, SFTRunSpec, training_fields
from sft_operator.errors import InvalidSpec
from sft_operator.render import children as common
from sft_operator.render import meta
from sft_operator.render.identity import pod_service_account
from sft_operator.render.pods import CONFIG_PATH, WorkloadDefaults, container, owner_env, pod_spec

CONTAINER = "pytorch"
"""The training-operator's default container name: it defaults the port and injects env into it."""
APP = "sft-train"
PTJ_API_VERSION = "kubeflow.org/v1"
PTJ_KIND = "PyTorchJob"
MASTER = "Master"
WORKER = "Worker"
MASTER_PORT = 23456
"""The training-operator's default rendezvous port, declared so the port is explicit."""
RESTART_POLICY = "ExitCode"


@dataclass(frozen=True)
class ResolvedData:
    """The training data after the operator resolved ``spec.data`` (from the SFTDataPrep or the URI)."""

    uri: str
    pack_size: int | None


def parse_spec(cr: Mapping[str, Any]) -> SFTRunSpec:
    """Validate the spec with the model (incl. checks the CRD schema cannot express)."""
    return common.parse_spec(SFTRunSpec, cr)


def job_name(cr_name: str) -> str:
    """Deterministic, so a restarted operator finds (409) the child it created instead of adding one."""
    return meta.child_name(cr_name, "train")


def config_map_name(cr_name: str) -> str:
    return meta.child_name(cr_name, "train-config")


def training_spec_hash(spec: SFTRunSpec) -> str:
    """Hash of the training-defining fields, compared with the PyTorchJob's (drift check)."""
    return common.spec_hash(spec, training_fields())


def torchrun_command(spec: SFTRunSpec) -> list[str]:
    """The pod command (see the module docstring for why the rendezvous is spelled out)."""
    return [
        "torchrun",
        f"--nnodes={spec.nodes}",
        f"--nproc-per-node={nproc_per_node(spec)}",
        "--node-rank=$(RANK)",
        "--master-addr=$(MASTER_ADDR)",
        "--master-port=$(MASTER_PORT)",
        f"--max-restarts={spec.max_restarts}",
        "--no-python",
        "sft-train",
        "--config",
        CONFIG_PATH,
    ]


def nproc_per_node(spec: SFTRunSpec) -> int:
    """One process per GPU; one (CPU) process per pod when the run has no GPUs."""
    return spec.gpus_per_node or 1


def resources(spec: SFTRunSpec) -> dict[str, Any]:
    """The user's requests/limits with ``nvidia.com/gpu`` = gpusPerNode (limits; requests must match)."""
    out = spec.resources.model_dump(mode="json", by_alias=True, exclude_none=True)
    if spec.gpus_per_node:
        out.setdefault("limits", {})[GPU_RESOURCE] = spec.gpus_per_node
        if GPU_RESOURCE in (out.get("requests") or {}):
            out["requests"][GPU_RESOURCE] = spec.gpus_per_node
    return out


def render(
    cr: Mapping[str, Any],
    data: ResolvedData,
    defaults: WorkloadDefaults | None = None,
) -> common.Children:
    """Render both children for resolved ``data``. Raises :class:`InvalidSpec` for an unrunnable spec."""
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
    cm_name = config_map_name(child.name)
    main = container(
        spec,
        name=CONTAINER,
        image=image,
        command=torchrun_command(spec),
        env=owner_env(RUN, child.namespace, child.name),
        extra_mounts=[{"name": SHM_VOLUME, "mountPath": SHM_DIR}],
    )
    main["ports"] = [{"name": "pytorchjob-port", "containerPort": MASTER_PORT, "protocol": "TCP"}]
    res = resources(spec)
    if res:
        main["resources"] = res
    shm = {"name": SHM_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": spec.shm_size}}
    template = child.pod_template(
        pod_spec(
            spec,
            config_map=cm_name,
            containers=[main],
            service_account=pod_service_account(RUN, cr, defaults),
            extra_volumes=[shm],
        )
    )
    replica_specs: dict[str, Any] = {
        MASTER: {"replicas": 1, "restartPolicy": RESTART_POLICY, "template": template}
    }
    if spec.nodes > 1:
        replica_specs[WORKER] = {
            "replicas": spec.nodes - 1,
            "restartPolicy": RESTART_POLICY,
            "template": copy.deepcopy(template),
        }
    run_policy: dict[str, Any] = {
        "cleanPodPolicy": "None",  # keep finished pods: their termination messages and logs are the result
        **common.run_policy(spec),
    }
    if spec.priority_class_name:
        # Read by gang schedulers (Volcano, scheduler-plugins) for the PodGroup; pods carry it too.
        run_policy["schedulingPolicy"] = {
            "minAvailable": spec.nodes,
            "priorityClass": spec.priority_class_name,
        }
    job = {
        "apiVersion": PTJ_API_VERSION,
        "kind": PTJ_KIND,
        "metadata": common.runner_metadata(child, job_name(child.name), spec),
        "spec": {
            "nprocPerNode": str(nproc_per_node(spec)),
            "runPolicy": run_policy,
            "pytorchReplicaSpecs": replica_specs,
        },
    }
    config_map = common.config_map(child, cm_name, to_yaml(spec.train_config(data.uri, data.pack_size)))
    return common.Children(config_map=config_map, job=job, spec_hash=digest)
