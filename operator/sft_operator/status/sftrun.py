"""``SFTRun`` status from its data source, its PyTorchJob, the replicas' pods and rank 0's result.

Pure: the reconcile gathers the objects (from watch caches), calls :func:`derive`, and patches the
difference with :func:`status_patch`. Phases:

* ``Waiting`` — the referenced SFTDataPrep is not ready (DataReady=False names it and its phase);
* ``Pending`` — PyTorchJob being created, queued by Kueue, pods not started, or the PyTorchJob CRD
  missing (then ``Stalled``);
* ``Running`` — PyTorchJob ``Running`` or ``Restarting`` (a replica failed and is retried);
* ``Suspended`` — ``spec.suspend`` is true;
* ``Succeeded`` / ``Failed`` — terminal; kept when the PyTorchJob is gone (TTL), so a restarted
  operator loses nothing.

PyTorchJob conditions → ours: Created → JobCreated; Running → Running; Restarting → Running with
reason Restarting and a restart count; Suspended → Suspended (or Pending/Queued when Kueue holds it);
Succeeded → Succeeded with outputs from rank 0's termination message; Failed → Failed with the
replica, pod, exit code and last log lines.

``status.progress`` belongs to the trainer (rank 0 merge-patches it); the operator writes only
``progress.iterations`` (the printer column) and never deletes or overwrites the trainer's keys.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sft_operator.status.common import (
    TERMINAL,
    carried_over,
    child_ref,
    finished,
    pods_of_job,
    progress_text,
    recorded_state,
    state_reason,
    suspended_state,
    with_job_reason,
)
from sft_operator.status.conditions import condition as make_condition
from sft_operator.status.conditions import get_condition, is_true, kstatus_conditions, with_transition_times
from sft_operator.status.patch import merge_patch
from sft_operator.status.pods import PodState, describe_failure, latest_failed, pending_problem
from sft_operator.status.pruned import pruned_conditions

OPERATOR_PROGRESS_KEYS = ("iterations", "tokensText", "etaText")
"""The only keys of ``status.progress`` the operator writes; the rest is the trainer's."""
KEPT = (
    "jobRef",
    "configMapRef",
    "dataPrepRef",
    "startTime",
    "completionTime",
    "outputs",
    "failure",
    "restartCount",
    "lastRestartTime",
)
"""Status keys carried over from the last status until this reconcile replaces them."""


@dataclass(frozen=True)
class DataState:
    """Where ``spec.data`` stands: resolved (ready), still coming (waiting) or never coming (failed)."""

    ready: bool
    reason: str
    """CamelCase: DataReady, WaitingForDataPrep, DataPrepNotFound, DataPrepFailed, ..."""
    message: str
    failed: bool = False
    uri: str | None = None
    pack_size: int | None = None
    prep_ref: Mapping[str, Any] | None = field(default=None)
    """A ChildRef-shaped reference to the SFTDataPrep the data comes from."""


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
) -> dict[str, Any]:
    """The operator's part of the status for the CR's current state.

    ``data`` is None once the PyTorchJob exists (the data was resolved then and is recorded in
    ``outputs.data``); ``error`` is ``(reason, message)`` for something the user (or the cluster
    admin) must fix: ``Stalled``.
    """
    spec = cr.get("spec") or {}
    old = dict(cr.get("status") or {})
    generation = (cr.get("metadata") or {}).get("generation")
    pods = pods_of_job(pods, job)
    out = carried_over(cr, job, config_map, KEPT)
    if data is not None and data.prep_ref is not None and job is None:
        out["dataPrepRef"] = dict(data.prep_ref)
    if data is not None and data.ready and data.uri:
        outputs = dict(out.get("outputs") or {})
        if job is None or "data" not in outputs:
            outputs["data"] = data.uri
            if data.pack_size is not None:
                outputs["packSize"] = data.pack_size
        out["outputs"] = outputs
    job_status = (job or {}).get("status") or {}

    if job is None and finished(cr):
        # The PyTorchJob was cleaned up after finishing (TTL): the recorded result stands.
        phase, reason, message = recorded_state(old)
    elif job is None and data is not None and data.failed:
        phase, reason, message = "Failed", data.reason, data.message
        out["failure"] = {"reason": data.reason, "message": data.message}
        out["completionTime"] = old.get("completionTime") or now
    elif error is not None:
        phase, (reason, message) = ("Pending" if job is None else old.get("phase") or "Running"), error
    elif job is None and data is not None and not data.ready:
        phase, reason, message = "Waiting", data.reason, data.message
    elif job is None:
        phase, reason, message = "Pending", "CreatingJob", "creating the PyTorchJob"
    else:
        phase, reason, message = _from_job(spec, job, pods)

    _restarts(out, old, job, pods)
    if phase == "Succeeded" and job is not None:
        out["outputs"] = _outputs(pods, out.get("outputs"))
        out.pop("failure", None)
        out["completionTime"] = job_status.get("completionTime") or out.get("completionTime") or now
    elif phase == "Failed" and job is not None:
        failure = _failure(job, pods, log_tails or {})
        out["failure"] = failure
        reason, message = failure["reason"], failure["message"]
        failed_cond = get_condition(job_status, "Failed") or {}
        out["completionTime"] = (
            job_status.get("completionTime")
            or failed_cond.get("lastTransitionTime")
            or old.get("completionTime")
            or now
        )
    elif phase not in TERMINAL:
        out.pop("failure", None)
        out.pop("completionTime", None)

    iterations = _iterations(
        spec, old.get("progress"), out.get("outputs"), phase, job is not None or bool(out.get("jobRef"))
    )
    progress = {"iterations": iterations} if iterations is not None else {}
    progress.update(progress_text(old.get("progress"), phase))
    if progress:
        out["progress"] = progress
    stalled = phase == "Failed" or error is not None
    out["phase"] = phase
    out["message"] = message
    job_known = job is not None or bool(out.get("jobRef"))
    data_ready = job_known or (data is not None and data.ready)
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
            f"PyTorchJob {out['jobRef']['name']}" if out.get("jobRef") else "",
            generation,
        ),
    ]
    conditions.extend(pruned_conditions(cr, generation))
    out["conditions"] = with_transition_times(conditions, old.get("conditions"), now)
    return out


def _data_message(data: DataState | None, out: Mapping[str, Any]) -> str:
    if data is not None and (data.ready or not out.get("jobRef")):
        return data.message
    recorded = (out.get("outputs") or {}).get("data")
    return f"training data {recorded}" if recorded else ""


def replica_name(pod: PodState) -> str | None:
    """ "Master 0" / "Worker 2" from the training-operator's labels."""
    if not pod.replica_type:
        return None
    kind = pod.replica_type[:1].upper() + pod.replica_type[1:]
    return f"{kind} {pod.index}" if pod.index is not None else kind


def _replica_counts(job: Mapping[str, Any]) -> tuple[int, int]:
    """(replicas expected, replicas active) from the PyTorchJob's spec and replicaStatuses."""
    specs = (job.get("spec") or {}).get("pytorchReplicaSpecs") or {}
    expected = sum(int((r or {}).get("replicas", 1)) for r in specs.values())
    statuses = (job.get("status") or {}).get("replicaStatuses") or {}
    active = sum(int((s or {}).get("active") or 0) for s in statuses.values())
    return expected, active


def _from_job(spec: Mapping[str, Any], job: Mapping[str, Any], pods: list[PodState]) -> tuple[str, str, str]:
    """(phase, reason, message) from the PyTorchJob's conditions, suspension and its pods."""
    status = job.get("status") or {}
    expected, active = _replica_counts(job)
    if is_true(status, "Succeeded"):
        return "Succeeded", "Succeeded", "training finished"
    if is_true(status, "Failed"):
        cond = get_condition(status, "Failed") or {}
        return "Failed", str(cond.get("reason") or "PyTorchJobFailed"), str(cond.get("message") or "failed")
    run_policy = (job.get("spec") or {}).get("runPolicy") or {}
    job_suspended = bool(run_policy.get("suspend")) or is_true(status, "Suspended")
    suspended = suspended_state(spec, job, job_suspended, "PyTorchJob")
    if suspended is not None:
        return suspended
    live = [p for p in pods if not p.deleted]
    problem = pending_problem(live)
    if is_true(status, "Restarting"):
        blamed = latest_failed(pods)
        what = f"; last failure: {describe_failure(blamed)['message']}" if blamed else ""
        limit = run_policy.get("backoffLimit")
        return "Running", "Restarting", f"restarting failed replicas (backoffLimit {limit}){what}"
    if is_true(status, "Running"):
        running = sum(1 for p in live if p.phase == "Running")
        message = f"{running or active} of {expected} pods running"
        if problem:
            message += f"; {problem[1]}"
        return "Running", "Running", message
    if problem:
        return "Pending", problem[0], problem[1]
    started = sum(1 for p in live if p.phase == "Running")
    if started:
        return "Pending", "PodsStarting", f"{started} of {expected} pods running; waiting for the rest"
    return "Pending", "PodsPending", f"waiting for {expected} training pod(s) to start"


def _restarts(
    out: dict[str, Any], old: Mapping[str, Any], job: Mapping[str, Any] | None, pods: list[PodState]
) -> None:
    """Count restarts: each new Restarting=True transition of the PyTorchJob, and in-place container
    restarts; never decreases (replaced pods vanish from view)."""
    count = int(old.get("restartCount") or 0)
    cond = get_condition((job or {}).get("status"), "Restarting")
    if cond is not None and cond.get("status") == "True":
        since = cond.get("lastTransitionTime") or cond.get("lastUpdateTime")
        if since and since != old.get("lastRestartTime"):
            count += 1
            out["lastRestartTime"] = since
    count = max(count, sum(p.restart_count for p in pods))
    if job is not None or count:
        out["restartCount"] = count


def _outputs(pods: list[PodState], previous: Mapping[str, Any] | None) -> dict[str, Any]:
    """Outputs from rank 0's success message (rank 0 runs on the Master pod)."""
    results = [
        (p, p.result)
        for p in pods
        if p.phase == "Succeeded" and (p.result or {}).get("status") == "succeeded"
    ]
    best = next((r for p, r in results if (p.replica_type or "").lower() == "master"), None)
    best = best or next((r for _, r in results if r and r.get("checkpoint")), None)
    outputs = dict(previous or {})
    if best:
        for key in ("checkpoint", "lastIteration", "finalLoss", "hfExport"):
            if best.get(key) is not None:
                outputs[key] = best[key]
    return outputs


def _failure(job: Mapping[str, Any], pods: list[PodState], log_tails: Mapping[str, str]) -> dict[str, Any]:
    status = job.get("status") or {}
    cond = get_condition(status, "Failed") or {}
    job_reason = str(cond.get("reason") or "PyTorchJobFailed")
    job_message = str(cond.get("message") or "")
    blamed = latest_failed(pods)
    if blamed is None:
        detail = f": {job_message}" if job_message else ""
        return {"reason": job_reason, "message": f"the PyTorchJob failed: {job_reason}{detail}"}
    failure = describe_failure(blamed, log_tails.get(blamed.name))
    replica = replica_name(blamed)
    if replica:
        failure["replica"] = replica
        failure["message"] = failure["message"].replace(blamed.label, f"{replica} (pod {blamed.name})", 1)
    if job_reason in ("BackoffLimitExceeded", "DeadlineExceeded"):
        with_job_reason(failure, job_reason, job_message)
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
    done = progress.get("iteration")
    if done is None:
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
    old = _operator_view(cr.get("status"))
    new = _operator_view(new_status)
    patch = merge_patch(old, new)
    if "progress" in patch and patch["progress"] is None:
        # "progress": null would delete the trainer's keys too: delete only ours
        patch["progress"] = {key: None for key in (old.get("progress") or {})}
    return patch


def _operator_view(status: Mapping[str, Any] | None) -> dict[str, Any]:
    out = {k: v for k, v in (status or {}).items() if k != "progress"}
    progress = (status or {}).get("progress") or {}
    mine = {k: progress[k] for k in OPERATOR_PROGRESS_KEYS if k in progress}
    if mine:
        out["progress"] = mine
    return out


def resolve_data(cr: Mapping[str, Any], prep: Mapping[str, Any] | None) -> DataState:
    """Where ``spec.data`` stands, from the referenced SFTDataPrep (None: not found) or the URI."""
    data = (cr.get("spec") or {}).get("data") or {}
    if data.get("uri"):
        return DataState(
            ready=True,
            reason="DataUri",
            message=f"training data {data['uri']}",
            uri=data["uri"],
            pack_size=data.get("packSize"),
        )
    name = ((data.get("dataPrepRef") or {}).get("name")) or "?"
    namespace = (cr.get("metadata") or {}).get("namespace")
    if prep is None:
        return DataState(
            ready=False,
            reason="DataPrepNotFound",
            message=f"waiting for SFTDataPrep {name}: it does not exist in namespace {namespace} (yet)",
        )
    ref = {**child_ref(prep), "kind": prep.get("kind") or "SFTDataPrep", "name": name}
    st = prep.get("status") or {}
    phase = st.get("phase")
    outputs = st.get("outputs") or {}
    if phase == "Failed":
        failure = st.get("failure") or {}
        why = failure.get("message") or st.get("message") or "no reason recorded"
        return DataState(
            ready=False,
            failed=True,
            reason="DataPrepFailed",
            message=f"SFTDataPrep {name} failed ({failure.get('reason') or state_reason(st)}): {why}",
            prep_ref=ref,
        )
    if phase == "Succeeded":
        if is_true(st, "DataReady") and outputs.get("outputDir"):
            return DataState(
                ready=True,
                reason="DataReady",
                message=f"SFTDataPrep {name} is ready: {outputs['outputDir']} (pack size "
                f"{outputs.get('packSize')})",
                uri=outputs["outputDir"],
                pack_size=outputs.get("packSize"),
                prep_ref=ref,
            )
        cond = get_condition(st, "DataReady") or {}
        return DataState(
            ready=False,
            failed=True,
            reason="DataPrepIncomplete",
            message=f"SFTDataPrep {name} succeeded but its data is not usable: "
            f"{cond.get('message') or 'status.outputs has no outputDir'}",
            prep_ref=ref,
        )
    detail = f": {st['message']}" if st.get("message") else ""
    return DataState(
        ready=False,
        reason="WaitingForDataPrep",
        message=f"waiting for SFTDataPrep {name} (phase {phase or 'unknown'}){detail}",
        prep_ref=ref,
    )
