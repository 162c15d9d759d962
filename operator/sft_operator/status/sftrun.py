"""``SFTRun`` status from its data source, its child (via the backend), the pods and rank 0's result.

Pure: the reconcile gathers the objects (from watch caches), calls :func:`derive`, and patches the
difference with :func:`status_patch`. Phases:

* ``Waiting`` — the referenced SFTDataPrep is not ready (DataReady=False names it and its phase);
* ``Pending`` — child being created, queued by Kueue, pods not started, or no backend CRD
  (then ``Stalled``);
* ``Running`` — the child runs (or restarts failed pods / the whole group);
* ``Suspended`` — ``spec.suspend`` is true;
* ``Succeeded`` / ``Failed`` — terminal; kept when the child is gone (TTL), so a restarted
  operator loses nothing.

How a child's status reads is the backend's (``Backend.observe``); what is made of it is here:
outputs from rank 0's :class:`~sft_common.result.TrainResult`, the failure naming the replica, pod,
exit code and log tail, the restart count (never decreasing).

``status.progress`` is shared: rank 0 merge-patches it; the operator owns only
``progress.iterations`` (the printer column) and never deletes or overwrites the trainer's keys.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sft_common.result import CheckpointInfo, TrainResult
from sft_operator import backends
from sft_operator.backends.base import Backend, Observed
from sft_operator.status import patch
from sft_operator.status.common import (
    TERMINAL,
    carried_over,
    finished,
    progress_text,
    recorded_state,
    with_job_reason,
)
from sft_operator.status.conditions import condition as make_condition
from sft_operator.status.conditions import get_condition, kstatus_conditions, with_transition_times
from sft_operator.status.failure import classify
from sft_operator.status.hang import HANG_CONDITION, HangState, hang_condition
from sft_operator.status.pods import PodState, describe_failure, latest_failed
from sft_operator.status.pruned import pruned_conditions
from sft_operator.status.rundata import DataState, resolve_data

__all__ = ["DataState", "derive", "resolve_data", "status_patch"]

SHARED = {"progress": frozenset({"iterations", "tokensText", "etaText"})}
"""``status.progress`` is the trainer's except ``iterations`` and the printer columns' human strings
(see status.patch.operator_view)."""
KEPT = (
    "backend",
    "jobRef",
    "configMapRef",
    "dataPrepRef",
    "startTime",
    "completionTime",
    "outputs",
    "failure",
    "restartCount",
    "lastRestartTime",
    "checkpoints",
)
"""Status keys carried over from the last status until this reconcile replaces them."""


def derive(
    cr: Mapping[str, Any],
    job: Mapping[str, Any] | None,
    pods: Iterable[PodState],
    *,
    now: str,
    data: DataState | None = None,
    config_map: Mapping[str, Any] | None = None,
    error: tuple[str, str] | None = None,
    log_tails: Mapping[str, str] | None = None,
    backend: Backend | None = None,
    hang: HangState | None = None,
) -> dict[str, Any]:
    """The operator's part of the status for the CR's current state.

    ``job`` is the backend's child (its kind gives the backend when ``backend`` is None); ``data``
    is None once the child exists (the data was resolved then and is recorded in ``outputs.data``);
    ``error`` is ``(reason, message)`` for something the user (or the cluster admin) must fix:
    ``Stalled``. ``hang`` is what hang detection found this reconcile (see :mod:`.hang`).
    """
    spec = cr.get("spec") or {}
    old = dict(cr.get("status") or {})
    generation = (cr.get("metadata") or {}).get("generation")
    backend = backend or backends.of_child(job) or backends.named(old.get("backend") or spec.get("backend"))
    pods = backend.pods_of(job, list(pods)) if job is not None else list(pods)
    out = carried_over(cr, job, config_map, KEPT)
    if job is not None:
        out["backend"] = backend.name
    if data is not None and data.prep_ref is not None and job is None:
        out["dataPrepRef"] = dict(data.prep_ref)
    if data is not None and data.ready and data.uri:
        outputs = dict(out.get("outputs") or {})
        if job is None or "data" not in outputs:
            outputs["data"] = data.uri
            if data.pack_size is not None:
                outputs["packSize"] = data.pack_size
        out["outputs"] = outputs
    seen: Observed | None = backend.observe(spec, job, pods) if job is not None else None
    if seen is not None and seen.start_time:
        out["startTime"] = seen.start_time

    if job is None and finished(cr):
        # The child was cleaned up after finishing (TTL): the recorded result stands.
        phase, reason, message = recorded_state(old)
    elif job is None and data is not None and data.failed:
        phase, reason, message = "Failed", data.reason, data.message
        out["failure"] = {"reason": data.reason, "message": data.message}
        out["completionTime"] = old.get("completionTime") or now
    elif error is not None:
        phase, (reason, message) = ("Pending" if job is None else old.get("phase") or "Running"), error
    elif job is None and data is not None and not data.ready:
        phase, reason, message = "Waiting", data.reason, data.message
    elif seen is None:
        phase, reason, message = "Pending", "CreatingJob", f"creating the {backend.kind}"
    else:
        phase, reason, message = seen.phase, seen.reason, seen.message

    _restarts(out, old, seen, pods, now)
    if hang is not None and hang.restarted:
        out["restartCount"] = int(out.get("restartCount") or 0) + 1
        out["lastRestartTime"] = now
    checkpoints = _checkpoints(pods, old, phase)
    if checkpoints:
        out["checkpoints"] = checkpoints
    if phase == "Succeeded" and seen is not None:
        out["outputs"] = _outputs(pods, out.get("outputs"))
        out.pop("failure", None)
        out["completionTime"] = seen.completion_time or out.get("completionTime") or now
    elif phase == "Failed" and seen is not None:
        failure = _failure(backend, seen, pods, log_tails or {})
        out["failure"] = failure
        reason, message = failure["reason"], failure["message"]
        out["completionTime"] = seen.completion_time or seen.failed_time or old.get("completionTime") or now
    elif phase not in TERMINAL:
        out.pop("failure", None)
        out.pop("completionTime", None)
    out.update(seen.extra if seen is not None else {})

    job_known = job is not None or bool(out.get("jobRef"))
    iterations = _iterations(spec, old.get("progress"), out.get("outputs"), phase, job_known)
    progress = {"iterations": iterations} if iterations is not None else {}
    progress.update(progress_text(old.get("progress"), phase))
    if progress:
        out["progress"] = progress
    stalled = phase == "Failed" or error is not None
    out["phase"] = phase
    out["message"] = message
    data_ready = job_known or (data is not None and data.ready)
    kind = (out.get("jobRef") or {}).get("kind") or backend.kind
    conditions = [
        *kstatus_conditions(
            ready=phase == "Succeeded",
            reconciling=phase in ("Pending", "Waiting", "Running") and not stalled,
            stalled=stalled,
            reason=reason,
            message=message,
            generation=generation,
        ),
        make_condition(
            "DataReady",
            data_ready,
            "DataReady" if data_ready else (data.reason if data is not None else "Unknown"),
            _data_message(data, out),
            generation,
        ),
        make_condition(
            "JobCreated",
            job_known,
            "JobCreated" if job_known else "NotCreated",
            f"{kind} {out['jobRef']['name']}" if out.get("jobRef") else "",
            generation,
        ),
    ]
    hung = hang_condition(hang, get_condition(old, HANG_CONDITION), phase, generation)
    if hung is not None:
        conditions.append(hung)
    conditions.extend(pruned_conditions(cr, generation))
    out["conditions"] = with_transition_times(conditions, old.get("conditions"), now)
    return out


def _data_message(data: DataState | None, out: Mapping[str, Any]) -> str:
    if data is not None and (data.ready or not out.get("jobRef")):
        return data.message
    recorded = (out.get("outputs") or {}).get("data")
    return f"training data {recorded}" if recorded else ""


def replica_name(pod: PodState) -> str | None:
    """ "Master 0" / "Worker 2" / "Node 1" from the labels the backend's controller set."""
    if not pod.replica_type:
        return None
    kind = pod.replica_type[:1].upper() + pod.replica_type[1:]
    return f"{kind} {pod.index}" if pod.index is not None else kind


def _restarts(
    out: dict[str, Any], old: Mapping[str, Any], seen: Observed | None, pods: list[PodState], now: str
) -> None:
    """Count restarts: each new restart signal of the child (PyTorchJob Restarting), the group
    restarts it reports (JobSet) or its pods belong to (restart attempt), and in-place container
    restarts; never decreases (replaced pods vanish from view)."""
    count = int(old.get("restartCount") or 0)
    if seen is not None and seen.restart_marker and seen.restart_marker != old.get("lastRestartTime"):
        count += 1
        out["lastRestartTime"] = seen.restart_marker
    group = max([seen.restarts if seen is not None else 0, *(p.attempt for p in pods)])
    if group > count:
        count = group
        out["lastRestartTime"] = now
    count = max(count, sum(p.restart_count for p in pods))
    if seen is not None or count:
        out["restartCount"] = count


def _outputs(pods: list[PodState], previous: Mapping[str, Any] | None) -> dict[str, Any]:
    """Outputs from rank 0's success message (the pod of node rank 0 runs global rank 0)."""
    results = [(p, r) for p in pods if (r := p.success(TrainResult)) is not None]
    rank0 = [r for p, r in results if p.rank0]
    best = next(iter(rank0), None) or next((r for _, r in results if r.checkpoint), None)
    outputs = dict(previous or {})
    if best is not None:
        for key, value in best.payload().items():
            if key in ("checkpoint", "lastIteration", "finalLoss", "hfExport") and value is not None:
                outputs[key] = value
    return outputs


def _checkpoints(pods: list[PodState], old: Mapping[str, Any], phase: str) -> dict[str, Any] | None:
    """``status.checkpoints``: from rank 0's result once the run ended (success or failure), else
    from the trainer's progress (it writes ``progress.checkpoint`` on each save), else as recorded."""
    if phase in TERMINAL:
        results = [
            (p, r.checkpoints) for p in pods if (r := p.success(TrainResult) or p.failure) and r.checkpoints
        ]
        if results:
            return _dump(max(results, key=lambda pr: (pr[0].rank0, pr[0].finished_at or ""))[1])
    progress = (old.get("progress") or {}).get("checkpoint")
    if isinstance(progress, Mapping) and progress:
        try:
            return _dump(CheckpointInfo.model_validate(progress))
        except ValueError:
            pass
    return old.get("checkpoints")


def _dump(info: CheckpointInfo) -> dict[str, Any]:
    return info.model_dump(mode="json", by_alias=True, exclude_none=True)


def _failure(
    backend: Backend, seen: Observed, pods: list[PodState], log_tails: Mapping[str, str]
) -> dict[str, Any]:
    job_reason = seen.failed_reason or f"{backend.kind}Failed"
    blamed = latest_failed(pods)
    if blamed is None:
        detail = f": {seen.failed_message}" if seen.failed_message else ""
        failure = {"reason": job_reason, "message": f"the {backend.kind} failed: {job_reason}{detail}"}
        return {**failure, **classify(None, job_reason=job_reason).fields()}
    failure = describe_failure(blamed, log_tails.get(blamed.name))
    failure.update(classify(blamed, log_tails.get(blamed.name)).fields())
    replica = replica_name(blamed)
    if replica:
        failure["replica"] = replica
        failure["message"] = failure["message"].replace(blamed.label, f"{replica} (pod {blamed.name})", 1)
    if seen.child_reason_wins:
        with_job_reason(failure, job_reason, seen.failed_message)
        failure["reason"] = job_reason
    return failure


def _iterations(
    spec: Mapping[str, Any],
    progress: Mapping[str, Any] | None,
    outputs: Mapping[str, Any] | None,
    phase: str,
    job_known: bool,
) -> str | None:
    """ "done/total" for the printer column, from the trainer's progress (or its result)."""
    progress = progress or {}
    total = progress.get("total") or ((spec.get("train") or {}).get("trainIters"))
    done = progress.get("completed")
    if phase == "Succeeded" and outputs and outputs.get("lastIteration") is not None:
        done = outputs["lastIteration"]
    if done is None and not job_known:
        return None
    if total is None:
        return None
    return f"{int(done or 0)}/{int(total)}"


def status_patch(cr: Mapping[str, Any], new_status: Mapping[str, Any]) -> dict[str, Any]:
    """The merge patch for ``status`` (empty when nothing changed), never touching the trainer's keys."""
    return patch.status_patch(cr, new_status, SHARED)
