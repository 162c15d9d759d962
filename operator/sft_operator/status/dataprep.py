"""``SFTDataPrep`` status from its Job, the Job's pods and the workers' termination messages.

Pure: the handler gathers the objects (from watch caches), calls :func:`derive`, and patches the
difference. Phases: Pending (no Job yet, queued, pods not started), Running, Suspended (by the user),
Succeeded, Failed. A terminal status is kept when the Job is gone (``ttlSecondsAfterFinished``), so a
restarted operator loses nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import ValidationError

from sft_common.progress import LEASE_WAIT_KEY, LeaseWait, parse_time
from sft_common.result import PrepResult
from sft_operator.api.dataprep import PrepProgress
from sft_operator.status import patch
from sft_operator.status.common import (
    TERMINAL,
    carried_over,
    finished,
    pods_of_job,
    progress_text,
    recorded_state,
    suspended_state,
    with_job_reason,
)
from sft_operator.status.conditions import condition as make_condition
from sft_operator.status.conditions import get_condition, is_true, kstatus_conditions, with_transition_times
from sft_operator.status.failure import classify
from sft_operator.status.pods import (
    PodState,
    describe_failure,
    latest_failed,
    parse_indexes,
    pending_problem,
)
from sft_operator.status.pruned import pruned_conditions

SHARED = {"progress": patch.aliases(PrepProgress) - {"workers"}}
"""``status.progress`` is shared: the workers patch ``progress.workers.<i>`` themselves; the operator
owns the other progress keys (see :func:`sft_operator.status.patch.operator_view`)."""
KEPT = ("jobRef", "configMapRef", "startTime", "completionTime", "outputs", "failure")
"""Status keys carried over from the last status until this reconcile replaces them."""


def derive(
    cr: Mapping[str, Any],
    job: Mapping[str, Any] | None,
    pods: Iterable[PodState],
    *,
    now: str,
    config_map: Mapping[str, Any] | None = None,
    error: tuple[str, str] | None = None,
    log_tails: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The whole status (without ``progress.workers``) for the CR's current state.

    ``error`` is ``(reason, message)`` for a spec the operator cannot run (``Stalled``); ``log_tails``
    maps pod names to log tails the handler fetched for failed pods.
    """
    spec = cr.get("spec") or {}
    old = dict(cr.get("status") or {})
    generation = (cr.get("metadata") or {}).get("generation")
    pods = pods_of_job(pods, job)
    out = carried_over(cr, job, config_map, KEPT)
    job_status = (job or {}).get("status") or {}

    if job is None and finished(cr):
        # The Job was cleaned up after finishing (TTL): the recorded result stands.
        phase, reason, message = recorded_state(old)
    elif error is not None:
        # The spec cannot be run as it is: Stalled with what to fix. A Job that exists keeps running
        # (or finished), so the phase still says what it does.
        phase = "Pending" if job is None else _from_job(spec, job, pods)[0]
        reason, message = error
    elif job is None:
        phase, reason, message = "Pending", "CreatingJob", "creating the prep Job"
    else:
        phase, reason, message = _from_job(spec, job, pods)
        waiting = lease_wait_message(cr, now) if phase in ("Pending", "Running") else None
        if waiting is not None:
            reason, message = "WaitingForOutputLease", waiting

    if phase == "Succeeded" and job is not None:
        outputs = _outputs(pods, spec, out.get("outputs"))
        if outputs:
            out["outputs"] = outputs
        out.pop("failure", None)
        out["completionTime"] = job_status.get("completionTime") or out.get("completionTime") or now
    elif phase == "Failed" and job is not None:
        failure = _failure(job, pods, log_tails or {})
        out["failure"] = failure
        message = failure["message"]
        reason = failure["reason"]
        failed_cond = get_condition(job_status, "Failed") or get_condition(job_status, "FailureTarget")
        out["completionTime"] = (
            job_status.get("completionTime") or (failed_cond or {}).get("lastTransitionTime") or now
        )
    elif phase not in TERMINAL:
        out.pop("failure", None)
        out.pop("completionTime", None)

    progress = _progress(cr, job, phase, out.get("outputs"))
    if progress:
        out["progress"] = progress
    stalled = phase == "Failed" or error is not None
    out["phase"] = phase
    out["message"] = message
    data_ready = phase == "Succeeded" and not stalled and bool((out.get("outputs") or {}).get("metadata"))
    conditions = [
        *kstatus_conditions(
            ready=phase == "Succeeded" and not stalled,
            reconciling=phase in ("Pending", "Running") and not stalled,
            stalled=stalled,
            reason=reason,
            message=message,
            generation=generation,
        ),
        make_condition(
            "JobCreated",
            job is not None or bool(out.get("jobRef")),
            "JobCreated" if job is not None or out.get("jobRef") else "NotCreated",
            f"Job {out['jobRef']['name']}" if out.get("jobRef") else "",
            generation,
        ),
        make_condition(
            "DataReady",
            data_ready,
            "DataReady" if data_ready else ("MetadataMissing" if phase == "Succeeded" else phase),
            _data_ready_message(phase, out.get("outputs")),
            generation,
        ),
    ]
    conditions.extend(pruned_conditions(cr, generation))
    out["conditions"] = with_transition_times(conditions, old.get("conditions"), now)
    return out


def _from_job(spec: Mapping[str, Any], job: Mapping[str, Any], pods: list[PodState]) -> tuple[str, str, str]:
    """(phase, reason, message) from the Job's conditions, suspension, counts and its pods."""
    status = job.get("status") or {}
    workers = int(spec.get("parallelism") or job.get("spec", {}).get("completions") or 1)
    if is_true(status, "Complete") or is_true(status, "SuccessCriteriaMet"):
        return "Succeeded", "Succeeded", f"all {workers} prep workers finished"
    if is_true(status, "Failed") or is_true(status, "FailureTarget"):
        cond = get_condition(status, "Failed") or get_condition(status, "FailureTarget") or {}
        return "Failed", str(cond.get("reason") or "JobFailed"), str(cond.get("message") or "the Job failed")
    job_suspended = bool((job.get("spec") or {}).get("suspend")) or is_true(status, "Suspended")
    suspended = suspended_state(spec, job, job_suspended, "Job")
    if suspended is not None:
        return suspended
    live = [p for p in pods if not p.deleted]
    problem = pending_problem(live)
    running = [p for p in live if p.phase == "Running"]
    done = len(parse_indexes(status.get("completedIndexes")))
    failed_pods = int(status.get("failed") or 0)
    retry = ""
    if failed_pods:
        blamed = latest_failed(pods)
        what = f"; last: {describe_failure(blamed)['message']}" if blamed else ""
        limit = (job.get("spec") or {}).get("backoffLimit")
        retry = f"; {failed_pods} pod failure(s) so far (backoffLimit {limit}), retrying{what}"
    if running or done:
        message = f"{len(running)} of {workers} workers running, {done} done{retry}"
        if problem:
            message += f"; {problem[1]}"
        return "Running", "Running", message
    if problem:
        return "Pending", problem[0], problem[1] + retry
    return "Pending", "PodsPending", f"waiting for {workers} prep pod(s) to start{retry}"


LEASE_WAIT_GRACE_SECONDS = 30
"""A wait reported as ending this long ago is over (its worker was stopped before it could say so)."""


def lease_wait_message(cr: Mapping[str, Any], now: str) -> str | None:
    """One sentence from the first worker that reports waiting for another run's output lease
    (``status.progress.workers.<i>.leaseWait``, :class:`~sft_common.progress.LeaseWait`): who holds it,
    since when this prep waits, when it expires and what to do; None when no worker waits."""
    workers = ((cr.get("status") or {}).get("progress") or {}).get("workers") or {}
    current = parse_time(now)
    for index in sorted(workers, key=str):
        snap = workers[index]
        raw = snap.get(LEASE_WAIT_KEY) if isinstance(snap, Mapping) else None
        if not raw:
            continue
        try:
            wait = LeaseWait.model_validate(raw)
        except ValidationError:
            continue
        expires = parse_time(wait.expires_at)
        if current and expires and (current - expires).total_seconds() > LEASE_WAIT_GRACE_SECONDS:
            continue
        where = (cr.get("spec") or {}).get("outputDir") or wait.output_dir  # as the user wrote it
        return (
            f"worker {index} waits (since {wait.since}) for the lease on {where}, held by run "
            f"{wait.run} ({wait.holder}, last renewed {wait.renewed_at}) until {wait.expires_at}, when it "
            "takes it over unless renewed: nothing to do if that run's prep was deleted; if it is still "
            "running, delete one of the two or give this prep another outputDir"
        )
    return None


def _outputs(
    pods: list[PodState], spec: Mapping[str, Any], previous: Mapping[str, Any] | None
) -> dict[str, Any] | None:
    """Outputs from the worker that wrote metadata.json (its termination message carries the totals)."""
    results = [r for r in (p.success(PrepResult) for p in pods) if r is not None]
    best = next((r for r in results if r.metadata), None) or (results[0] if results else None)
    if best is None:
        return (
            dict(previous)
            if previous
            else {"outputDir": spec.get("outputDir"), "packSize": spec.get("packSize")}
        )
    if previous and previous.get("metadata") and not best.metadata:
        return dict(previous)
    outputs = {
        "outputDir": best.output_dir or spec.get("outputDir"),
        "blend": best.blend,
        "metadata": best.metadata,
        "packSize": best.pack_size or spec.get("packSize"),
        "padSeqToMult": best.pad_seq_to_mult,
        "totals": best.totals.model_dump(mode="json", by_alias=True) if best.totals else None,
        "packingEfficiency": best.packing_efficiency,
    }
    return {k: v for k, v in outputs.items() if v is not None}


def _failure(job: Mapping[str, Any], pods: list[PodState], log_tails: Mapping[str, str]) -> dict[str, Any]:
    status = job.get("status") or {}
    cond = get_condition(status, "Failed") or get_condition(status, "FailureTarget") or {}
    job_reason = str(cond.get("reason") or "JobFailed")
    job_message = str(cond.get("message") or "")
    blamed = latest_failed(pods)
    if blamed is None:
        # e.g. DeadlineExceeded with pods still running, or pods already garbage-collected
        return {"reason": job_reason, "message": f"the Job failed: {job_reason}: {job_message}".rstrip(": ")}
    failure = describe_failure(blamed, log_tails.get(blamed.name))
    failure.update(classify(blamed, log_tails.get(blamed.name)).fields())
    if job_reason not in ("PodFailurePolicy", "JobFailed", failure["reason"]):
        with_job_reason(failure, job_reason, job_message)
        if job_reason == "DeadlineExceeded":
            failure["reason"] = job_reason
    return failure


def _progress(
    cr: Mapping[str, Any], job: Mapping[str, Any] | None, phase: str, outputs: Mapping[str, Any] | None
) -> dict[str, Any]:
    """Aggregate ``status.progress.workers.<i>`` (each worker's own Progress snapshot)."""
    spec = cr.get("spec") or {}
    workers: Mapping[str, Any] = ((cr.get("status") or {}).get("progress") or {}).get("workers") or {}
    total = int(spec.get("numShards") or 0) or None
    done = 0
    tokens = 0
    rate = 0.0
    updated: list[str] = []
    etas: list[int] = []
    for snap in workers.values():
        if not isinstance(snap, Mapping):
            continue
        if snap.get("unit", "shards") == "shards":
            done += int(snap.get("completed") or 0)
        tokens += int(snap.get("tokens") or 0)
        finished = snap.get("total") is not None and (snap.get("completed") or 0) >= snap["total"]
        if not finished:
            rate += float(snap.get("tokensPerSecond") or 0)
            if isinstance(snap.get("etaSeconds"), int | float):
                etas.append(int(snap["etaSeconds"]))
        if snap.get("updatedAt"):
            updated.append(str(snap["updatedAt"]))
    job_status = (job or {}).get("status") or {}
    workers_done = len(parse_indexes(job_status.get("completedIndexes")))
    progress: dict[str, Any] = {
        "workersTotal": int(spec.get("parallelism") or 1),
        "workersDone": workers_done,
    }
    if phase == "Succeeded":
        done = total or done
        rate = 0.0
        final = ((outputs or {}).get("totals") or {}).get("tokens")
        if final is not None:
            tokens = int(final)
        progress["workersDone"] = progress["workersTotal"] if job is not None else workers_done
    if phase in ("Failed", "Suspended"):
        rate = 0.0
    if total:
        done = min(done, total)
        progress["shardsTotal"] = total
        progress["shardsDone"] = done
        progress["shards"] = f"{done}/{total}"
        progress["percent"] = round(100.0 * done / total, 1)
        progress["percentText"] = f"{progress['percent']:g}%"
    if workers or phase == "Succeeded":
        progress["tokens"] = tokens
        progress["tokensPerSecond"] = round(rate, 1)
    if updated:
        progress["updatedAt"] = max(updated)
    if etas and phase == "Running":
        progress["etaSeconds"] = max(etas)  # the slowest worker decides
    progress.update(progress_text(progress, phase))
    old = ((cr.get("status") or {}).get("progress")) or {}
    if phase == "Succeeded" and job is None and old:
        return {k: v for k, v in old.items() if k != "workers"}
    return progress


def _data_ready_message(phase: str, outputs: Mapping[str, Any] | None) -> str:
    if phase != "Succeeded":
        return "the data is not ready yet" if phase != "Failed" else "the prep failed"
    if outputs and outputs.get("metadata"):
        return f"packed data in {outputs.get('outputDir')}; blend {outputs.get('blend')}"
    return "the Job completed but no worker reported metadata.json; check the workers' logs"


def status_patch(cr: Mapping[str, Any], new_status: Mapping[str, Any]) -> dict[str, Any]:
    """The merge patch for ``status`` (empty when nothing changed), never touching workload-owned keys."""
    return patch.status_patch(cr, new_status, SHARED)
