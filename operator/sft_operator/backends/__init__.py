"""The backends an ``SFTRun`` can run on, and how one is chosen: the registry.

Each module of this package that defines ``BACKEND`` (an instance of its
:class:`~sft_operator.backends.base.Backend` subclass) is one backend; the registry finds them
itself, so adding a backend is adding its module (no list here to edit). Nothing outside this
package names a backend's API group, kind or fields: the CRD's ``spec.backend`` enum, the
operator's RBAC rules (``make crds``), the chart's ``sftRun.backend`` values and every message that
lists backends are made from :data:`REGISTRY`.

``spec.backend: auto`` (the default, or the chart-wide default the operator was started with)
picks, from the CRDs the cluster serves when the run starts, the first of :data:`PREFERENCE` (by
each backend's ``preference``). The chosen backend is recorded in ``status.backend`` once its child
exists and never changes after.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping
from typing import Any

from sft_operator.backends.base import Backend

AUTO = "auto"


def _discover() -> tuple[Backend, ...]:
    """Every module's ``BACKEND``, in auto's order."""
    found: list[Backend] = []
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        backend = getattr(module, "BACKEND", None)
        if isinstance(backend, Backend):
            found.append(backend)
    return tuple(sorted(found, key=lambda b: (b.preference, b.name)))


PREFERENCE: tuple[Backend, ...] = _discover()
"""auto: the first whose CRD is served (a backend without a CRD is always served)."""
REGISTRY: dict[str, Backend] = {b.name: b for b in PREFERENCE}
NAMES: tuple[str, ...] = (AUTO, *REGISTRY)
"""The values of spec.backend (and of the chart's sftRun.backend)."""


def named(name: str) -> Backend:
    """The backend called ``name`` (not ``auto``: auto is chosen when a run starts, :func:`choose`)."""
    if name not in REGISTRY:
        raise KeyError(f"no backend {name!r}: spec.backend is one of {', '.join(NAMES)}")
    return REGISTRY[name]


def recorded(status: Mapping[str, Any] | None) -> Backend | None:
    """The backend a run started on (``status.backend``), None before it started."""
    return REGISTRY.get(str((status or {}).get("backend") or ""))


def of_child(obj: object) -> Backend | None:
    """The backend whose child ``obj`` is (by apiVersion and kind)."""
    if not isinstance(obj, dict):
        return None
    return next(
        (b for b in PREFERENCE if b.api_version == obj.get("apiVersion") and b.kind == obj.get("kind")), None
    )


def of_pod(pod: Mapping[str, Any]) -> Backend | None:
    """The backend whose child controls ``pod`` directly (its controller ownerReference), if any."""
    refs = (pod.get("metadata") or {}).get("ownerReferences") or []
    owner = next((r for r in refs if r.get("controller")), None)
    return of_child({"apiVersion": owner.get("apiVersion"), "kind": owner.get("kind")}) if owner else None


def listing() -> str:
    """The backends as a sentence lists them: "TrainJob (trainjob), JobSet (jobset) or ..."."""
    items = [f"{b.summary} ({b.name})" for b in PREFERENCE]
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} or {items[-1]}"


CRD_MISSING = "BackendCRDMissing"
"""The Stalled reason of a run whose named backend's CRD is not served (it starts once it is)."""


def missing_message(backend: Backend) -> tuple[str, str]:
    """(reason, message) for a run that names ``backend`` while its CRD is not served. ``auto`` never
    needs one: its last choice, a backend without a CRD (``job``), is always served."""
    return (
        CRD_MISSING,
        f"spec.backend is {backend.name} but the {backend.kind} CRD ({backend.crd}) is not served by this "
        f"cluster: install {backend.install}, or set spec.backend to auto; the run starts by itself once "
        "the CRD is there",
    )


def candidates(wanted: str) -> tuple[Backend, ...]:
    """The backends a run that starts now may take, in order: auto's preference, or the named one."""
    return PREFERENCE if wanted == AUTO else (named(wanted),)
