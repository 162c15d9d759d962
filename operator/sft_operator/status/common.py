"""Status pieces both kinds derive alike: child references, the terminal result
that outlives its child, suspension/Kueue, and the child's own failure reason in front of the pod's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sft_common.progress import format_number, human_duration
from sft_operator.api.dataprep import SFTDataPrepStatus
from sft_operator.api.sftrun import SFTRunStatus
from sft_operator.api.status import ChildRef
from sft_operator.render.meta import KUEUE_QUEUE_LABEL
from sft_operator.status.conditions import READY, ready_reason
from sft_operator.status.pods import PodState

TERMINAL = ("Succeeded", "Failed")
Recorded = SFTRunStatus | SFTDataPrepStatus
"""A status of either kind (the fields both have)."""
SUSPENDED_MESSAGE = "suspended (spec.suspend is true); set it to false to resume"


def child_ref(obj: Mapping[str, Any]) -> ChildRef:
    """A reference (apiVersion, kind, name, uid when known) to ``obj``."""
    meta = obj.get("metadata") or {}
    return ChildRef(
        api_version=str(obj.get("apiVersion") or ""),
        kind=str(obj.get("kind") or ""),
        name=str(meta.get("name") or ""),
        uid=meta.get("uid") or None,
    )


def finished(cr: Mapping[str, Any]) -> bool:
    """The CR recorded a terminal result for a child it created: the status outlives the child
    (``ttlSecondsAfterFinished``), so the result stands and the work is never run again."""
    st = cr.get("status") or {}
    return st.get("phase") in TERMINAL and bool(st.get("jobRef"))


def state_reason(status: Mapping[str, Any]) -> str:
    """The reason a recorded status gives for its state: Ready's reason, else the phase."""
    return ready_reason(status) or status.get("phase") or "Unknown"


def recorded_state(old: Recorded) -> tuple[str, str, str]:
    """(phase, reason, message) as the status recorded them (for a finished CR whose child is gone):
    the reason is Ready's, else the phase."""
    ready = next((c for c in old.conditions if c.type == READY), None)
    phase = str(old.phase)
    return phase, (ready.reason if ready is not None else None) or phase, old.message or ""


def see_children(out: Recorded, job: Mapping[str, Any] | None, config_map: Mapping[str, Any] | None) -> None:
    """Record in ``out`` the children seen in this reconcile: references to them, the child's start."""
    if config_map is not None:
        out.config_map_ref = child_ref(config_map)
    if job is not None:
        out.job_ref = child_ref(job)
    start = ((job or {}).get("status") or {}).get("startTime")
    if start:
        out.start_time = start


def pods_of_job(pods: Iterable[PodState], job: Mapping[str, Any] | None) -> list[PodState]:
    """The pods of this child (pods left over from a deleted, same-named child do not count)."""
    job_uid = (job or {}).get("metadata", {}).get("uid")
    return [p for p in pods if job_uid is None or p.owner_uid in (None, job_uid)]


def suspended_state(
    spec: Mapping[str, Any], job: Mapping[str, Any], suspended: bool, what: str
) -> tuple[str, str, str] | None:
    """(phase, reason, message) of a suspended child: by the user (Suspended), by Kueue (Pending,
    Queued), or still suspended after the user resumed (Pending, Resuming); None when running.
    ``what`` names the child kind in the message."""
    if not suspended:
        return None
    if spec.get("suspend"):
        return "Suspended", "Suspended", SUSPENDED_MESSAGE
    queue = ((job.get("metadata") or {}).get("labels") or {}).get(KUEUE_QUEUE_LABEL)
    if queue:
        return "Pending", "Queued", f"waiting for Kueue to admit the {what} in queue {queue}"
    return "Pending", "Resuming", f"the {what} is suspended; resuming it (spec.suspend is false)"


def with_job_reason(failure: dict[str, Any], job_reason: str, job_message: str) -> None:
    """Put the child's own failure reason (e.g. DeadlineExceeded) in front of the pod's message."""
    detail = f"{job_reason} ({job_message})" if job_message else job_reason
    failure["message"] = f"{detail}; {failure['message']}"


def progress_text(tokens: Any, eta_seconds: Any, phase: str) -> dict[str, str]:
    """The human strings of the printer columns: ``tokensText`` (1.18G) and, while Running,
    ``etaText`` (2h5m, as kubectl prints durations). One formatter for both kinds (and for the
    workloads' own progress lines: :mod:`sft_common.progress`)."""
    out: dict[str, str] = {}
    if isinstance(tokens, int | float):
        out["tokensText"] = format_number(tokens)
    if phase == "Running" and isinstance(eta_seconds, int | float):
        out["etaText"] = human_duration(eta_seconds)
    return out
