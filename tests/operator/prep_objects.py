"""Builders for SFTDataPrep CRs, Jobs and Pods in every state the status must reflect (unit tests)."""

from __future__ import annotations

import copy
import json
from typing import Any

from sft_common.result import FailureResult, PrepResult, PrepTotals
from sft_operator.render import dataprep as render

OLDEST_SUPPORTED_K8S = "1.30.0"
"""CEL optionals (``.?``) in the CRD need Kubernetes 1.29+; we claim 1.30+."""


def k8s_versions() -> list[str]:
    """The oldest supported version and the newest one kubernetes-validate ships schemas for."""
    import kubernetes_validate.utils as kv_utils

    versions = sorted(kv_utils.all_versions(), key=lambda v: tuple(int(x) for x in v.split(".")))
    return [OLDEST_SUPPORTED_K8S, versions[-1]]


UID = "0b7c2f7e-1111-4c2d-9a55-000000000001"
JOB_UID = "0b7c2f7e-2222-4c2d-9a55-000000000002"
T0 = "2026-11-25T10:00:00Z"
T1 = "2026-11-25T10:05:00Z"


def spec(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "image": "registry.example/sft-prep:0.1.0",
        "datasets": [{"name": "chats", "path": "s3://bucket/chats/*.jsonl"}],
        "tokenizer": {"model": "s3://bucket/tokenizer"},
        "outputDir": "s3://bucket/prep/out",
        "numShards": 8,
        "parallelism": 4,
    }
    base.update(overrides)
    return base


def cr(
    name: str = "demo", status: dict[str, Any] | None = None, generation: int = 1, **spec_overrides: Any
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "sft.dev/v1alpha1",
        "kind": "SFTDataPrep",
        "metadata": {"name": name, "namespace": "ml", "uid": UID, "generation": generation},
        "spec": spec(**spec_overrides),
    }
    if status is not None:
        obj["status"] = status
    return obj


def job(
    owner: dict[str, Any] | None = None, status: dict[str, Any] | None = None, **spec_patch: Any
) -> dict[str, Any]:
    """The Job the operator renders for ``owner``, with a uid and the given status."""
    rendered = copy.deepcopy(render.render(owner or cr()).job)
    rendered["metadata"]["uid"] = JOB_UID
    rendered["spec"].update(spec_patch)
    rendered["status"] = status or {}
    return rendered


def cond(
    type_: str, status: str = "True", reason: str = "", message: str = "", at: str = T1
) -> dict[str, Any]:
    return {"type": type_, "status": status, "reason": reason, "message": message, "lastTransitionTime": at}


def pod(
    index: int,
    phase: str,
    *,
    waiting: tuple[str, str] | None = None,
    terminated: dict[str, Any] | None = None,
    unschedulable: str | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    state: dict[str, Any] = {}
    if waiting:
        state["waiting"] = {"reason": waiting[0], "message": waiting[1]}
    elif terminated is not None:
        state["terminated"] = {"finishedAt": T1, "startedAt": T0, **terminated}
    elif phase == "Running":
        state["running"] = {"startedAt": T0}
    conditions = []
    if unschedulable:
        conditions.append(
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": unschedulable}
        )
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name or f"demo-prep-{index}-abcde",
            "namespace": "ml",
            "uid": f"pod-{index}",
            "annotations": {"batch.kubernetes.io/job-completion-index": str(index)},
            "ownerReferences": [{"kind": "Job", "name": "demo-prep", "uid": JOB_UID, "controller": True}],
        },
        "status": {
            "phase": phase,
            "conditions": conditions,
            "containerStatuses": [{"name": "prep", "restartCount": 0, "state": state}] if state else [],
        },
    }


def failed_pod(
    index: int, reason: str, message: str, exit_code: int = 1, name: str | None = None
) -> dict[str, Any]:
    """Worker ``index`` failed with the workload's own failure result as its termination message."""
    terminated = {"exitCode": exit_code, "reason": "Error", "message": failure_message(reason, message)}
    return pod(index, "Failed", terminated=terminated, name=name)


def success_message(worker: int, with_metadata: bool, **overrides: Any) -> str:
    """A prep worker's termination message, built with the workload's own contract model."""
    result = PrepResult(
        output_dir="s3://bucket/prep/out",
        blend="s3://bucket/prep/out/blend.json" if with_metadata else None,
        metadata="s3://bucket/prep/out/metadata.json" if with_metadata else None,
        pack_size=4096,
        shards_done=2,
        shards_total=8,
        worker=worker,
        packing_efficiency=0.9731 if with_metadata else None,
        totals=PrepTotals(rows=1000, sequences=1200, tokens=3_500_000, trainable_tokens=2_000_000, bins=880)
        if with_metadata
        else None,
        **overrides,
    )
    return json.dumps(result.payload())


def failure_message(reason: str, message: str) -> str:
    return json.dumps(FailureResult(reason=reason, message=message).payload())
