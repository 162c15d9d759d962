"""kstatus conditions (Ready / Reconciling / Stalled) plus domain ones, with stable transition times.

kstatus (used by Argo CD, Flux, ``helm --wait``, ``kubectl wait``) reads ``Reconciling=True`` as "in
progress", ``Stalled=True`` as "failed, needs a human" and otherwise "current"; ``observedGeneration``
tells it whether the status describes the latest spec. ``lastTransitionTime`` only moves when a
condition's status changes, so re-deriving the same state produces the same status (no patch churn).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import TypeAdapter

from sft_operator.api.status import Condition

_CONDITIONS = TypeAdapter(list[Condition])
READY = "Ready"
RECONCILING = "Reconciling"
STALLED = "Stalled"


def condition(
    type_: str, status: bool | str, reason: str, message: str = "", generation: int | None = None
) -> dict[str, Any]:
    """One condition without ``lastTransitionTime`` (added by :func:`with_transition_times`)."""
    value = status if isinstance(status, str) else ("True" if status else "False")
    cond: dict[str, Any] = {"type": type_, "status": value, "reason": reason, "message": message}
    if generation is not None:
        cond["observedGeneration"] = generation
    return cond


def kstatus_conditions(
    *, ready: bool, reconciling: bool, stalled: bool, reason: str, message: str, generation: int | None
) -> list[dict[str, Any]]:
    """The three standard conditions; ``reason``/``message`` describe the current state on all three."""
    return [
        condition(READY, ready, reason, message, generation),
        condition(
            RECONCILING,
            reconciling,
            reason if reconciling else "Idle",
            message if reconciling else "",
            generation,
        ),
        condition(
            STALLED, stalled, reason if stalled else "NotStalled", message if stalled else "", generation
        ),
    ]


def with_transition_times(
    new: Iterable[Mapping[str, Any]], old: Iterable[Mapping[str, Any]] | None, now: str
) -> list[dict[str, Any]]:
    """Copy ``lastTransitionTime`` from the old condition of the same type when its status is unchanged."""
    previous = {c.get("type"): c for c in old or ()}
    out = []
    for cond in new:
        cond = dict(cond)
        before = previous.get(cond["type"])
        if before is not None and before.get("status") == cond["status"] and before.get("lastTransitionTime"):
            cond["lastTransitionTime"] = before["lastTransitionTime"]
        else:
            cond["lastTransitionTime"] = now
        out.append(cond)
    return out


def as_models(conditions: list[dict[str, Any]]) -> list[Condition]:
    """The conditions built here as the status model's (one validation call for the list)."""
    return _CONDITIONS.validate_python(conditions)


def get_condition(obj_status: Mapping[str, Any] | None, type_: str) -> Mapping[str, Any] | None:
    for cond in (obj_status or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return cond
    return None


def is_true(obj_status: Mapping[str, Any] | None, type_: str) -> bool:
    cond = get_condition(obj_status, type_)
    return cond is not None and cond.get("status") == "True"


def ready_reason(obj_status: Mapping[str, Any] | None) -> str | None:
    """The Ready condition's reason: the one-word state both kinds' status and Events are keyed on."""
    cond = get_condition(obj_status, READY)
    return cond.get("reason") if cond else None
