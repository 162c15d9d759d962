"""``SFTRun`` status from its data source, its child (via the backend), the pods and rank 0's result.

Pure: the reconcile gathers the objects (from watch caches), calls :func:`derive` (the last status
read into :class:`~sft_operator.api.sftrun.SFTRunStatus`, the new one returned as that model), and
patches the difference with :func:`status_patch`. Every phase is decided in :func:`derive`:

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

``status.progress`` is shared: rank 0 merge-patches it; the operator owns only ``iterations`` and the
printer columns' texts, and never deletes or overwrites the trainer's keys (those marked WORKLOAD in
:class:`~sft_operator.api.sftrun.RunProgress`, see :mod:`sft_operator.status.patch`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sft_common.result import CheckpointInfo, TrainResult
from sft_operator import backends
from sft_operator.api.sftrun import RunFailure, RunOutputs, RunProgress, SFTRunStatus, TrainerStatusMirror
from sft_operator.api.status import ChildRef
from sft_operator.backends.base import Observed, Observer
from sft_operator.status import patch
from sft_operator.status.common import (
    TERMINAL,
    finished,
    progress_text,
    recorded_state,
    see_children,
    with_job_reason,
)
from sft_operator.status.conditions import as_models, get_condition, kstatus_conditions, with_transition_times
from sft_operator.status.conditions import condition as make_condition
from sft_operator.status.failure import classify
from sft_operator.status.hang import HANG_CONDITION, HangState, hang_condition
from sft_operator.status.pods import PodState, describe_failure, latest_failed
from sft_operator.status.pruned import pruned_conditions
from sft_operator.status.rundata import DataState, resolve_data

__all__ = ["DataState", "derive", "resolve_data", "status_patch"]


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
    backend: Observer | None = None,
    hang: HangState | None = None,
) -> SFTRunStatus:
    """The operator's part of the status for the CR's current state.

    ``job`` is the backend's child (its kind gives the backend when ``backend`` is None); ``data``
    is None once the child exists (the data was resolved then and is recorded in ``outputs.data``);
    ``error`` is ``(reason, message)`` for something the user (or the cluster admin) must fix:
    ``Stalled``. ``hang`` is what hang detection found this reconcile (see :mod:`.hang`).
    """
    spec = cr.get("spec") or {}
    old = patch.parse_status(SFTRunStatus, cr.get("status"))
    generation = (cr.get("metadata") or {}).get("generation")
    if backend is None:
        backend = backends.of_child(job) or backends.REGISTRY.get(old.backend or "")
    pods = backend.pods_of(job, list(pods)) if job is not None and backend is not None else list(pods)
    out = _carried_over(old, generation)
    see_children(out, job, config_map)
    if job is not None and backend is not None:
        out.backend = backend.name
    if data is not None and data.prep_ref is not None and job is None:
        out.data_prep_ref = ChildRef.model_validate(data.prep_ref)
    if data is not None and data.ready and data.uri:
        outputs = out.outputs.model_copy() if out.outputs is not None else RunOutputs()
        if job is None or outputs.data is None:
            outputs.data = data.uri
            if data.pack_size is not None:
                outputs.pack_size = data.pack_size
        out.outputs = outputs
    seen: Observed | None = (
        backend.observe(spec, job, pods) if job is not None and backend is not None else None
    )
    if seen is not None and seen.start_time:
        out.start_time = seen.start_time

    if job is None and finished(cr):
        # The child was cleaned up after finishing (TTL): the recorded result stands.
        phase, reason, message = recorded_state(old)
    elif job is None and data is not None and data.failed:
        phase, reason, message = "Failed", data.reason, data.message
        out.failure = RunFailure(reason=data.reason, message=data.message)
        out.completion_time = old.completion_time or now
    elif error is not None:
        phase, (reason, message) = ("Pending" if job is None else old.phase or "Running"), error
    elif job is None and data is not None and not data.ready:
        phase, reason, message = "Waiting", data.reason, data.message
    elif seen is None:
        what = backend.kind if backend is not None else "training job"
        phase, reason, message = "Pending", "CreatingJob", f"creating the {what}"
    else:
        phase, reason, message = seen.phase, seen.reason, seen.message

    _restarts(out, old, seen, pods, now)
    if hang is not None and hang.restarted:
        # one more than before this reconcile, whether or not the child already reports the restart
        # (a JobSet's status.restarts can be seen in the same reconcile that asked for it)
        out.restart_count = max(out.restart_count or 0, (old.restart_count or 0) + 1)
        out.last_restart_time = now
    checkpoints = _checkpoints(pods, old, phase)
    if checkpoints is not None:
        out.checkpoints = checkpoints
    if phase == "Succeeded" and seen is not None:
        out.outputs = _outputs(pods, out.outputs)
        out.failure = None
        out.completion_time = seen.completion_time or out.completion_time or now
    elif phase == "Failed" and seen is not None and backend is not None:
        out.failure = _failure(backend, seen, pods, log_tails or {})
        reason, message = out.failure.reason, out.failure.message
        out.completion_time = seen.completion_time or seen.failed_time or old.completion_time or now
    elif phase not in TERMINAL:
        out.failure = None
        out.completion_time = None
    if seen is not None and "trainerStatus" in seen.extra:
        out.trainer_status = TrainerStatusMirror.model_validate(seen.extra["trainerStatus"])

    job_known = job is not None or out.job_ref is not None
    out.progress = _progress(spec, old.progress, out.outputs, phase, job_known)
    stalled = phase == "Failed" or error is not None
    out.phase = phase  # type: ignore[assignment]  # (a RunPhase: the backends' Observed.phase is a str)
    out.message = message
    data_ready = job_known or (data is not None and data.ready)
    kind = (out.job_ref.kind if out.job_ref is not None else None) or (
        backend.kind if backend is not None else ""
    )
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
            f"{kind} {out.job_ref.name}" if out.job_ref is not None else "",
            generation,
        ),
    ]
    old_conditions = (cr.get("status") or {}).get("conditions")
    hung = hang_condition(hang, get_condition(cr.get("status"), HANG_CONDITION), phase, generation)
    if hung is not None:
        conditions.append(hung)
    conditions.extend(pruned_conditions(cr, generation))
    out.conditions = as_models(with_transition_times(conditions, old_conditions, now))
    return out


def _carried_over(old: SFTRunStatus, generation: int | None) -> SFTRunStatus:
    """The start of a new status: what the last status recorded and this reconcile may replace."""
    return SFTRunStatus(
        observed_generation=generation,
        backend=old.backend,
        job_ref=old.job_ref,
        config_map_ref=old.config_map_ref,
        data_prep_ref=old.data_prep_ref,
        start_time=old.start_time,
        completion_time=old.completion_time,
        outputs=old.outputs,
        failure=old.failure,
        restart_count=old.restart_count,
        last_restart_time=old.last_restart_time,
        checkpoints=old.checkpoints,
    )


def _data_message(data: DataState | None, out: SFTRunStatus) -> str:
    if data is not None and (data.ready or out.job_ref is None):
        return data.message
    recorded = out.outputs.data if out.outputs is not None else None
    return f"training data {recorded}" if recorded else ""


def replica_name(pod: PodState) -> str | None:
    """ "Master 0" / "Worker 2" / "Node 1" from the labels the backend's controller set."""
    if not pod.replica_type:
        return None
    kind = pod.replica_type[:1].upper() + pod.replica_type[1:]
    return f"{kind} {pod.index}" if pod.index is not None else kind


def _restarts(
    out: SFTRunStatus, old: SFTRunStatus, seen: Observed | None, pods: list[PodState], now: str
) -> None:
    """Count restarts: each new restart signal of the child (PyTorchJob Restarting), the group
    restarts it reports (JobSet) or its pods belong to (restart attempt), and in-place container
    restarts; never decreases (replaced pods vanish from view)."""
    count = old.restart_count or 0
    if seen is not None and seen.restart_marker and seen.restart_marker != old.last_restart_time:
        count += 1
        out.last_restart_time = seen.restart_marker
    group = max([seen.restarts if seen is not None else 0, *(p.attempt for p in pods)])
    if group > count:
        count = group
        out.last_restart_time = now
    count = max(count, sum(p.restart_count for p in pods))
    if seen is not None or count:
        out.restart_count = count


def _outputs(pods: list[PodState], previous: RunOutputs | None) -> RunOutputs:
    """Outputs from rank 0's success message (the pod of node rank 0 runs global rank 0)."""
    results = [(p, r) for p in pods if (r := p.success(TrainResult)) is not None]
    rank0 = [r for p, r in results if p.rank0]
    best = next(iter(rank0), None) or next((r for _, r in results if r.checkpoint), None)
    outputs = previous.model_copy() if previous is not None else RunOutputs()
    if best is not None:
        for name in ("checkpoint", "last_iteration", "final_loss", "hf_export"):
            value = getattr(best, name)
            if value is not None:
                setattr(outputs, name, value)
    return outputs


def _checkpoints(pods: list[PodState], old: SFTRunStatus, phase: str) -> CheckpointInfo | None:
    """``status.checkpoints``: from rank 0's result once the run ended (success or failure), else
    from the trainer's progress (it writes ``progress.checkpoint`` on each save), else as recorded."""
    if phase in TERMINAL:
        results = [
            (p, r.checkpoints) for p in pods if (r := p.success(TrainResult) or p.failure) and r.checkpoints
        ]
        if results:
            return max(results, key=lambda pr: (pr[0].rank0, pr[0].finished_at or ""))[1]
    saved = old.progress.checkpoint if old.progress is not None else None
    return saved if saved is not None and saved.model_fields_set else old.checkpoints


def _failure(
    backend: Observer, seen: Observed, pods: list[PodState], log_tails: Mapping[str, str]
) -> RunFailure:
    job_reason = seen.failed_reason or f"{backend.kind}Failed"
    blamed = latest_failed(pods)
    if blamed is None:
        detail = f": {seen.failed_message}" if seen.failed_message else ""
        failure = {"reason": job_reason, "message": f"the {backend.kind} failed: {job_reason}{detail}"}
        return RunFailure.model_validate({**failure, **classify(None, job_reason=job_reason).fields()})
    failure = describe_failure(blamed, log_tails.get(blamed.name))
    failure.update(classify(blamed, log_tails.get(blamed.name)).fields())
    replica = replica_name(blamed)
    if replica:
        failure["replica"] = replica
        failure["message"] = failure["message"].replace(blamed.label, f"{replica} (pod {blamed.name})", 1)
    if seen.child_reason_wins:
        with_job_reason(failure, job_reason, seen.failed_message)
        failure["reason"] = job_reason
    return RunFailure.model_validate(failure)


def _progress(
    spec: Mapping[str, Any],
    trainer: RunProgress | None,
    outputs: RunOutputs | None,
    phase: str,
    job_known: bool,
) -> RunProgress | None:
    """The operator's part of ``status.progress``: ``iterations`` ("done/total", for the printer column,
    from the trainer's progress or its result) and the printer columns' texts."""
    trainer = trainer or RunProgress()
    total = trainer.total or ((spec.get("train") or {}).get("trainIters"))
    done: float | None = trainer.completed
    if phase == "Succeeded" and outputs is not None and outputs.last_iteration is not None:
        done = outputs.last_iteration
    iterations = (
        None if (done is None and not job_known) or total is None else f"{int(done or 0)}/{int(total)}"
    )
    texts = progress_text(trainer.tokens, trainer.eta_seconds, phase)
    if iterations is None and not texts:
        return None
    return RunProgress(
        iterations=iterations, tokens_text=texts.get("tokensText"), eta_text=texts.get("etaText")
    )


def status_patch(cr: Mapping[str, Any], new_status: SFTRunStatus) -> dict[str, Any]:
    """The merge patch for ``status`` (empty when nothing changed), never touching the trainer's keys."""
    return patch.status_patch(cr.get("status"), new_status)
