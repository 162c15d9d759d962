"""Builders for SFTRun CRs, SFTDataPreps, PyTorchJobs and replica Pods in every state the status must
reflect (unit tests). Shapes follow what training-operator v1.9 writes (conditions with reasons such
as PyTorchJobRunning, ``replicaStatuses`` without zero counts, replica labels on pods)."""

from __future__ import annotations

import copy
import json
from typing import Any

from sft_common.result import FailureResult, TrainResult
from sft_operator.backends.base import Backend
from sft_operator.backends.pytorchjob import BACKEND as PYTORCHJOB
from sft_operator.render import sftrun as render
from sft_operator.render.pods import WorkloadDefaults

UID = "5d1c7a10-1111-4c2d-9a55-000000000001"
JOB_UID = "5d1c7a10-2222-4c2d-9a55-000000000002"
PREP_UID = "5d1c7a10-3333-4c2d-9a55-000000000003"
NAMESPACE = "ml"
T0 = "2026-11-25T10:00:00Z"
T1 = "2026-11-25T10:05:00Z"
T2 = "2026-11-25T10:09:00Z"
DATA = render.ResolvedData("s3://bucket/prep/out", 4096)
DEFAULTS = WorkloadDefaults(trainer_image="registry.example/sft-train:0.1.0", service_account="sft-workload")
LABEL = "training.kubeflow.org"


def render_run(
    owner: dict[str, Any],
    data: render.ResolvedData = DATA,
    defaults: WorkloadDefaults | None = DEFAULTS,
    backend: Backend = PYTORCHJOB,
) -> render.RunChildren:
    """The run's children with ``backend`` (PyTorchJob unless a test says otherwise: the shapes below)."""
    return render.render(owner, data, defaults, backend)


def spec(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "image": "registry.example/sft-train:0.1.0",
        "data": {"dataPrepRef": {"name": "prep"}},
        "model": {"pretrainedCheckpoint": "s3://bucket/models/super3"},
        "checkpoint": {"save": "s3://bucket/ckpt/run"},
        "train": {"trainIters": 100, "globalBatchSize": 32},  # a multiple of the 32 data-parallel ranks
        "nodes": 4,
        "gpusPerNode": 8,
        "parallelism": {"expertParallelSize": 8},
    }
    base.update(overrides)
    return base


def cpu_spec(**overrides: Any) -> dict[str, Any]:
    return spec(
        engine="hf",
        precision="fp32",
        nodes=1,
        gpusPerNode=0,
        parallelism={},
        data={"uri": "s3://bucket/prep/out", "packSize": 512},
        **overrides,
    )


def cr(
    name: str = "run", status: dict[str, Any] | None = None, generation: int = 1, **spec_overrides: Any
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "sft.dev/v1alpha1",
        "kind": "SFTRun",
        "metadata": {"name": name, "namespace": NAMESPACE, "uid": UID, "generation": generation},
        "spec": spec(**spec_overrides),
    }
    if status is not None:
        obj["status"] = status
    return obj


def prep(phase: str | None, **status: Any) -> dict[str, Any]:
    """An SFTDataPrep named ``prep`` in ``phase`` with the status keys the prep operator writes."""
    st: dict[str, Any] = {"phase": phase, **status} if phase else dict(status)
    if phase == "Succeeded":
        st.setdefault(
            "outputs",
            {
                "outputDir": "s3://bucket/prep/out",
                "metadata": "s3://bucket/prep/out/metadata.json",
                "packSize": 4096,
            },
        )
        st.setdefault(
            "conditions",
            [{"type": "DataReady", "status": "True", "reason": "DataReady", "message": "packed data"}],
        )
    return {
        "apiVersion": "sft.dev/v1alpha1",
        "kind": "SFTDataPrep",
        "metadata": {"name": "prep", "namespace": NAMESPACE, "uid": PREP_UID},
        "status": st,
    }


def ptj(
    owner: dict[str, Any] | None = None,
    conditions: list[tuple[str, str, str]] = (),  # type: ignore[assignment]
    **status: Any,
) -> dict[str, Any]:
    """The PyTorchJob the operator renders for ``owner``, with a uid and a controller-written status.

    ``conditions``: (type, status, reason) triples in the order the controller adds them.
    """
    rendered = copy.deepcopy(render_run(owner or cr()).job)
    rendered["metadata"]["uid"] = JOB_UID
    st: dict[str, Any] = dict(status)
    if conditions:
        st["conditions"] = [
            {
                "type": t,
                "status": s,
                "reason": r,
                "message": f"PyTorchJob run-train is {t.lower()}.",
                "lastUpdateTime": T1,
                "lastTransitionTime": T1,
            }
            for t, s, r in conditions
        ]
    if st:
        rendered["status"] = st
    return rendered


def pod(
    rtype: str,
    index: int,
    phase: str,
    *,
    exit_code: int | None = None,
    reason: str | None = None,
    message: str | None = None,
    waiting: tuple[str, str] | None = None,
    restarts: int = 0,
    finished_at: str = T2,
    unschedulable: str | None = None,
) -> dict[str, Any]:
    """A replica pod as the training-operator and kubelet would write it."""
    state: dict[str, Any]
    if waiting is not None:
        state = {"waiting": {"reason": waiting[0], "message": waiting[1]}}
    elif exit_code is not None:
        state = {
            "terminated": {
                "exitCode": exit_code,
                "reason": reason or ("Completed" if exit_code == 0 else "Error"),
                "startedAt": T0,
                "finishedAt": finished_at,
                **({"message": message} if message is not None else {}),
            }
        }
    elif phase == "Running":
        state = {"running": {"startedAt": T0}}
    else:
        state = {"waiting": {"reason": "ContainerCreating"}}
    conditions = []
    if unschedulable:
        conditions.append(
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": unschedulable}
        )
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"run-train-{rtype.lower()}-{index}",
            "namespace": NAMESPACE,
            "uid": f"pod-{rtype.lower()}-{index}",
            "labels": {
                f"{LABEL}/replica-type": rtype.lower(),
                f"{LABEL}/replica-index": str(index),
                f"{LABEL}/job-name": "run-train",
            },
            "ownerReferences": [
                {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "uid": JOB_UID, "controller": True}
            ],
        },
        "status": {
            "phase": phase,
            "conditions": conditions,
            "containerStatuses": [
                {"name": PYTORCHJOB.container, "restartCount": restarts, "state": state},
            ],
        },
    }


def success_message(**overrides: Any) -> str:
    """Rank 0's termination message, built with the trainer's own contract model."""
    fields: dict[str, Any] = {"checkpoint": "s3://bucket/ckpt/run", "last_iteration": 100, "final_loss": 0.42}
    fields.update(overrides)
    return json.dumps(TrainResult.model_validate(fields).payload())


def failure_message(reason: str = "DataError", message: str = "splits/train is empty") -> str:
    return json.dumps(FailureResult(reason=reason, message=message).payload())
