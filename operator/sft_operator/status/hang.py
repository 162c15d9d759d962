"""Hang detection: a Running run whose training progress has not moved for ``spec.hangTimeout``.

A rank stuck in a collective keeps every pod Running and the child healthy, so nothing in the
child's status ever says so. The trainer's rank 0 writes ``status.progress.updatedAt`` with each
progress patch (:mod:`sft_common.progress`, at most every ``SFT_PROGRESS_INTERVAL`` seconds while
iterations complete); the run counts as hung when neither that, nor the run's start, nor its last
restart (the new pods load the model before the first iteration) is newer than the timeout.

Pure: the reconcile asks :func:`hang_state` for the recorded status and the clock, requeues itself
at :attr:`HangState.recheck` (no event comes when nothing moves), restarts the group when the spec
says so, and :func:`hang_condition` turns the outcome into the ``Hung`` condition.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sft_common.progress import human_duration, parse_time
from sft_operator.status.conditions import condition

HANG_CONDITION = "Hung"
MIN_RECHECK_SECONDS = 5.0


@dataclass(frozen=True)
class HangState:
    """Where a Running run stands against its hang timeout."""

    hung: bool
    since: str
    """The newest of progress.updatedAt, startTime and lastRestartTime (RFC 3339)."""
    iteration: int | None
    timeout: float
    recheck: float
    """Seconds until the run would count as hung if nothing moves (the reconcile's requeue)."""
    restarted: bool = False
    """The reconcile restarted the training group for this hang (spec.restartOnHang)."""


def hang_state(status: Mapping[str, Any] | None, now: str, timeout: float) -> HangState | None:
    """The hang state of a run with recorded ``status`` at ``now``; None when detection is off
    (``timeout`` 0) or the run is not Running."""
    status = status or {}
    if timeout <= 0 or status.get("phase") != "Running":
        return None
    progress = status.get("progress") or {}
    marks = [
        (t, raw)
        for raw in (progress.get("updatedAt"), status.get("startTime"), status.get("lastRestartTime"))
        if (t := parse_time(raw)) is not None
    ]
    current = parse_time(now)
    if not marks or current is None:
        return None
    last, raw = max(marks, key=lambda m: m[0])
    idle = (current - last).total_seconds()
    iteration = progress.get("completed")
    return HangState(
        hung=idle >= timeout,
        since=str(raw),
        iteration=int(iteration) if isinstance(iteration, int | float) else None,
        timeout=timeout,
        recheck=max(timeout - idle, MIN_RECHECK_SECONDS) if idle < timeout else timeout,
    )


def hang_condition(
    hang: HangState | None, old: Mapping[str, Any] | None, phase: str, generation: int | None
) -> dict[str, Any] | None:
    """The ``Hung`` condition: True while hung (reason NoProgress, or Restarted when the group was
    restarted for it); False once a run that had it moves again or stops running; absent for runs
    that never hung (no condition churn on every status)."""
    if hang is not None and hang.hung and phase == "Running":
        at = f"at iteration {hang.iteration}" if hang.iteration is not None else "before the first iteration"
        message = (
            f"no training progress since {hang.since} ({at}) for over {human_duration(hang.timeout)} "
            "(spec.hangTimeout)"
        )
        if hang.restarted:
            return condition(
                HANG_CONDITION,
                True,
                "Restarted",
                f"{message}; restarted the training group (spec.restartOnHang), it resumes from its newest "
                "checkpoint",
                generation,
            )
        return condition(
            HANG_CONDITION,
            True,
            "NoProgress",
            f"{message}: a rank may be stuck in a collective; look at the pods' logs (sftctl logs), or set "
            "spec.restartOnHang to restart the group automatically",
            generation,
        )
    if old is None:
        return None
    return condition(HANG_CONDITION, False, "NotHung", "", generation)
