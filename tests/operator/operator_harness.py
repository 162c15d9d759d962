"""Names and waits shared by the operator tests (the runner itself is tests/inprocess_operator.py)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import Any

from kopf.testing import KopfRunner

from inprocess_operator import TEST_IMAGE, run_operator
from kubeemu import KubeEmulator

NAMESPACE = "default"
OperatorFactory = Callable[..., contextlib.AbstractContextManager[KopfRunner]]

__all__ = [
    "NAMESPACE",
    "TEST_IMAGE",
    "WAIT",
    "OperatorFactory",
    "condition",
    "run_operator",
    "status_of",
    "wait_status",
]

WAIT = 15.0
"""Seconds a test waits for the operator to reach a state."""


def status_of(kube: KubeEmulator, kind: str, name: str) -> dict[str, Any]:
    return kube.get(kind, name).get("status") or {}


def wait_status(
    kube: KubeEmulator,
    kind: str,
    name: str,
    predicate: Callable[[dict[str, Any]], Any],
    what: str = "status",
    timeout: float = WAIT,
) -> dict[str, Any]:
    """The CR's status once ``predicate`` holds; on timeout the error shows the last status seen."""

    def check() -> dict[str, Any] | None:
        status = status_of(kube, kind, name)
        return status if predicate(status) else None

    try:
        return kube.wait_for(check, timeout, message=what)
    except Exception as exc:
        last = json.dumps(status_of(kube, kind, name))[:2000]
        raise AssertionError(f"{what}: last status of {kind} {name}: {last}") from exc


def condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    """The condition ``type_`` of a status (StopIteration when it has none: a test failure)."""
    return next(c for c in status.get("conditions") or [] if c["type"] == type_)
