"""``SFTDataPrep`` status from its Job, the Job's pods and the workers' termination messages.

Pure: the reconcile gathers the objects (from watch caches), calls :func:`derive` (the last status read
into :class:`~sft_operator.api.dataprep.SFTDataPrepStatus`, the new one returned as that model), and
patches the difference. Phases (all decided in :func:`derive` and :func:`_from_job`): Pending (no Job
yet, queued, pods not started), Running, Suspended (by the user), Succeeded, Failed. A terminal status
is kept when the Job is gone (``ttlSecondsAfterFinished``), so a restarted operator loses nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pydantic import ValidationError

from sft_common.progress import LEASE_WAIT_KEY, LeaseWait, parse_time
from sft_common.result import PrepResult
from sft_operator.api.dataprep import PrepOutputs, PrepProgress, SFTDataPrepStatus
from sft_operator.api.status import Failure
from sft_operator.backends.base import Observed
from sft_operator.status import patch
from sft_operator.status.common import (
    TERMINAL,
    finished,
    pods_of_job,
    progress_text,
    recorded_state,
    see_children,
    suspended_state,
    with_job_reason,
)
from sft_operator.status.conditions import (
    as_models,
    get_condition,
    is_true,
    kstatus_conditions,
    with_transition_times,
)
from sft_operator.status.conditions import condition as make_condition
from sft_operator.status.failure import classify
from sft_operator.status.pods import (
    PodState,
    describe_failure,
    latest_failed,
    parse_indexes,
    pending_problem,
)
from sft_operator.status.pruned import pruned_conditions


def derive(
    cr: Mapping[str, Any],
    job: Mapping[str, Any] | None,
    pods: Iterable[PodState],
    *,
    now: str,
    config_map: Mapping[str, Any] | None = None,
    error: tuple[str, str] | None = None,
    log_tails: Mapping[str, str] | None = None,
    observe: PrepObserver | None = None,
) -> SFTDataPrepStatus:
    """The whole status (without ``progress.workers``, the workers' own) for the CR's current state.

    ``error`` is ``(reason, message)`` for a spec the operator cannot run (``Stalled``); ``log_tails``
    maps pod names to log tails the handler fetched for failed pods. ``observe`` reads the child
    (:func:`observe_job` for the Job; ``sftctl run --local`` passes its processes' observer).
    """
    spec = cr.get("spec") or {}
    old = patch.parse_status(SFTDataPrepStatus, cr.get("status"))
    generation = (cr.get("metadata") or {}).get("generation")
    pods = pods_of_job(pods, job)
    out = _carried_over(old, generation)
    see_children(out, job, config_map)
    seen = (observe or observe_job)(spec, job, pods) if job is not None else None
    if seen is not None and seen.start_time:
        out.start_time = seen.start_time

    if seen is None and finished(cr):
        # The Job was cleaned up after finishing (TTL): the recorded result stands.
        phase, reason, message = recorded_state(old)
    elif error is not None:
        # The spec cannot be run as it is: Stalled with what to fix. A Job that exists keeps running
        # (or finished), so the phase still says what it does.
        phase = "Pending" if seen is None else seen.phase
        reason, message = error
    elif seen is None:
        phase, reason, message = "Pending", "CreatingJob", "creating the prep Job"
    else:
        phase, reason, message = seen.phase, seen.reason, seen.message
        waiting = lease_wait_message(cr, now) if phase in ("Pending", "Running") else None
        if waiting is not None:
            reason, message = "WaitingForOutputLease", waiting

    if phase == "Succeeded" and seen is not None:
        outputs = _outputs(pods, spec, out.outputs)
        if outputs is not None:
            out.outputs = outputs
        out.failure = None
        out.completion_time = seen.completion_time or out.completion_time or now
    elif phase == "Failed" and seen is not None:
        out.failure = _failure(seen, pods, log_tails or {})
        message = out.failure.message
        reason = out.failure.reason
        out.completion_time = seen.completion_time or seen.failed_time or now
    elif phase not in TERMINAL:
        out.failure = None
        out.completion_time = None

    out.progress = _progress(spec, old.progress, seen, phase, out.outputs)
    stalled = phase == "Failed" or error is not None
    out.phase = phase  # type: ignore[assignment]  # (a Phase: every branch above names one)
    out.message = message
    data_ready = (
        phase == "Succeeded" and not stalled and bool(out.outputs is not None and out.outputs.metadata)
    )
    job_known = job is not None or out.job_ref is not None
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
            job_known,
            "JobCreated" if job_known else "NotCreated",
            f"{out.job_ref.kind} {out.job_ref.name}" if out.job_ref is not None else "",
            generation,
        ),
        make_condition(
            "DataReady",
            data_ready,
            "DataReady" if data_ready else ("MetadataMissing" if phase == "Succeeded" else phase),
            _data_ready_message(phase, out.outputs),
            generation,
        ),
    ]
    conditions.extend(pruned_conditions(cr, generation))
    old_conditions = (cr.get("status") or {}).get("conditions")
    out.conditions = as_models(with_transition_times(conditions, old_conditions, now))
    return out


def _carried_over(old: SFTDataPrepStatus, generation: int | None) -> SFTDataPrepStatus:
    """The start of a new status: what the last status recorded and this reconcile may replace."""
    return SFTDataPrepStatus(
        observed_generation=generation,
        job_ref=old.job_ref,
        config_map_ref=old.config_map_ref,
        start_time=old.start_time,
        completion_time=old.completion_time,
        outputs=old.outputs,
        failure=old.failure,
    )


PrepObserver = Callable[[Mapping[str, Any], Mapping[str, Any], list[PodState]], Observed]
"""(spec, child, its pods) → what the child says: :func:`observe_job` on a cluster."""


def observe_job(spec: Mapping[str, Any], job: Mapping[str, Any], pods: list[PodState]) -> Observed:
    """What the prep Job says: its conditions (Kubernetes >= 1.31 adds SuccessCriteriaMet and
    FailureTarget before Complete and Failed), suspension, counts and its pods."""
    status = job.get("status") or {}
    workers = int(spec.get("parallelism") or job.get("spec", {}).get("completions") or 1)
    done = len(parse_indexes(status.get("completedIndexes")))
    start = status.get("startTime")
    if is_true(status, "Complete") or is_true(status, "SuccessCriteriaMet"):
        return Observed(
            "Succeeded",
            "Succeeded",
            workers_finished(workers),
            completion_time=status.get("completionTime"),
            start_time=start,
            succeeded=done,
        )
    if is_true(status, "Failed") or is_true(status, "FailureTarget"):
        cond = get_condition(status, "Failed") or get_condition(status, "FailureTarget") or {}
        reason = str(cond.get("reason") or "JobFailed")
        return Observed(
            "Failed",
            reason,
            str(cond.get("message") or "the Job failed"),
            failed_reason=reason,
            failed_message=str(cond.get("message") or ""),
            failed_time=cond.get("lastTransitionTime"),
            completion_time=status.get("completionTime"),
            start_time=start,
            succeeded=done,
        )
    job_suspended = bool((job.get("spec") or {}).get("suspend")) or is_true(status, "Suspended")
    suspended = suspended_state(spec, job, job_suspended, "Job")
    if suspended is not None:
        return Observed(*suspended, start_time=start, succeeded=done)
    failed = int(status.get("failed") or 0)
    limit = (job.get("spec") or {}).get("backoffLimit")
    state = workers_state(workers, pods, done, failed, limit)
    return Observed(*state, start_time=start, succeeded=done)


def workers_finished(workers: int) -> str:
    return f"all {workers} prep workers finished"


def workers_state(
    workers: int, pods: list[PodState], done: int, failed_pods: int = 0, limit: int | None = None
) -> tuple[str, str, str]:
    """(phase, reason, message) of workers that neither all finished nor failed: Running once one runs
    or is done, else Pending with what holds them; pod failures so far and the retry said."""
    live = [p for p in pods if not p.deleted]
    problem = pending_problem(live)
    running = [p for p in live if p.phase == "Running"]
    retry = ""
    if failed_pods:
        blamed = latest_failed(pods)
        what = f"; last: {describe_failure(blamed)['message']}" if blamed else ""
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
    pods: list[PodState], spec: Mapping[str, Any], previous: PrepOutputs | None
) -> PrepOutputs | None:
    """Outputs from the worker that wrote metadata.json (its termination message carries the totals)."""
    results = [r for r in (p.success(PrepResult) for p in pods) if r is not None]
    best = next((r for r in results if r.metadata), None) or (results[0] if results else None)
    if best is None:
        if previous is not None and not _empty(previous):
            return previous.model_copy()
        outputs = PrepOutputs(output_dir=spec.get("outputDir"), pack_size=spec.get("packSize"))
    elif previous is not None and previous.metadata and not best.metadata:
        return previous.model_copy()
    else:
        outputs = PrepOutputs(
            output_dir=best.output_dir or spec.get("outputDir"),
            blend=best.blend,
            metadata=best.metadata,
            pack_size=best.pack_size or spec.get("packSize"),
            pad_seq_to_mult=best.pad_seq_to_mult,
            totals=best.totals,
            packing_efficiency=best.packing_efficiency,
        )
    return None if _empty(outputs) else outputs


def _empty(model: PrepOutputs | PrepProgress) -> bool:
    return not model.model_dump(exclude_none=True)


def _failure(seen: Observed, pods: list[PodState], log_tails: Mapping[str, str]) -> Failure:
    job_reason = seen.failed_reason or "JobFailed"
    job_message = seen.failed_message
    blamed = latest_failed(pods)
    if blamed is None:
        # e.g. DeadlineExceeded with pods still running, or pods already garbage-collected
        return Failure(reason=job_reason, message=f"the Job failed: {job_reason}: {job_message}".rstrip(": "))
    failure = describe_failure(blamed, log_tails.get(blamed.name))
    failure.update(classify(blamed, log_tails.get(blamed.name)).fields())
    if job_reason not in ("PodFailurePolicy", "JobFailed", failure["reason"]):
        with_job_reason(failure, job_reason, job_message)
        if job_reason == "DeadlineExceeded":
            failure["reason"] = job_reason
    return Failure.model_validate(failure)


def _progress(
    spec: Mapping[str, Any],
    old: PrepProgress | None,
    seen: Observed | None,
    phase: str,
    outputs: PrepOutputs | None,
) -> PrepProgress | None:
    """The operator's part of ``status.progress``: ``progress.workers.<i>`` (each worker's own
    Progress snapshot) aggregated, and the printer columns' texts."""
    workers = (old.workers if old is not None else None) or {}
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
    workers_total = int(spec.get("parallelism") or 1)
    workers_done = seen.succeeded if seen is not None else 0
    if phase == "Succeeded":
        done = total or done
        rate = 0.0
        final = outputs.totals.tokens if outputs is not None and outputs.totals is not None else None
        if final is not None:
            tokens = int(final)
        if seen is not None:
            workers_done = workers_total
    if phase in ("Failed", "Suspended"):
        rate = 0.0
    done = min(done, total) if total else done
    percent = round(100.0 * done / total, 1) if total else None
    counted = bool(workers) or phase == "Succeeded"
    eta = max(etas) if etas and phase == "Running" else None  # the slowest worker decides
    texts = progress_text(tokens if counted else None, eta, phase)
    progress = PrepProgress(
        workers_total=workers_total,
        workers_done=workers_done,
        shards_total=total,
        shards_done=done if total else None,
        shards=f"{done}/{total}" if total else None,
        percent=percent,
        percent_text=f"{percent:g}%" if percent is not None else None,
        tokens=tokens if counted else None,
        tokens_per_second=round(rate, 1) if counted else None,
        updated_at=max(updated) if updated else None,
        eta_seconds=eta,
        tokens_text=texts.get("tokensText"),
        eta_text=texts.get("etaText"),
    )
    if phase == "Succeeded" and seen is None and old is not None and not _empty(old):
        kept = old.model_copy(update={"workers": None})
        return None if _empty(kept) else kept
    return progress


def _data_ready_message(phase: str, outputs: PrepOutputs | None) -> str:
    if phase != "Succeeded":
        return "the data is not ready yet" if phase != "Failed" else "the prep failed"
    if outputs is not None and outputs.metadata:
        return f"packed data in {outputs.output_dir}; blend {outputs.blend}"
    return "the Job completed but no worker reported metadata.json; check the workers' logs"


def status_patch(cr: Mapping[str, Any], new_status: SFTDataPrepStatus) -> dict[str, Any]:
    """The merge patch for ``status`` (empty when nothing changed), never touching workload-owned keys."""
    return patch.status_patch(cr.get("status"), new_status)
