"""The backends an ``SFTRun`` can run on, and how one is chosen.

Each module here is one :class:`~sft_operator.backends.base.Backend` (the module itself satisfies
the protocol): :mod:`.trainjob` (Kubeflow Trainer v2), :mod:`.jobset` (JobSet, no Kubeflow) and
:mod:`.pytorchjob` (Kubeflow training-operator v1). Nothing outside this package names a backend's
API group or fields.

``spec.backend: auto`` (the default, or the chart-wide default the operator was started with)
picks, from the CRDs the cluster serves when the run starts, the first of :data:`PREFERENCE`. The
chosen backend is recorded in ``status.backend`` once its child exists and never changes after.
"""

from __future__ import annotations

from typing import cast

from sft_operator.backends import jobset, pytorchjob, trainjob
from sft_operator.backends.base import Backend

PREFERENCE: tuple[Backend, ...] = cast("tuple[Backend, ...]", (trainjob, jobset, pytorchjob))
"""auto: the first whose CRD is served."""
BY_NAME: dict[str, Backend] = {b.name: b for b in PREFERENCE}
AUTO = "auto"
NAMES = (AUTO, *BY_NAME)


def named(name: str | None) -> Backend:
    """The backend called ``name``; ``auto``/None give PyTorchJob (a render before any choice: the
    behaviour from before backends could be chosen)."""
    if not name or name == AUTO:
        return cast("Backend", pytorchjob)
    return BY_NAME[name]


def of_child(obj: object) -> Backend | None:
    """The backend whose child ``obj`` is (by apiVersion and kind)."""
    if not isinstance(obj, dict):
        return None
    return next(
        (b for b in PREFERENCE if b.api_version == obj.get("apiVersion") and b.kind == obj.get("kind")), None
    )


def missing_message(wanted: str, served: dict[str, bool]) -> tuple[str, str]:
    """(reason, message) for a run whose backend's CRD is not served; the run starts by itself later."""
    if wanted != AUTO:
        b = BY_NAME[wanted]
        return (
            "BackendCRDMissing",
            f"spec.backend is {wanted} but the {b.kind} CRD ({b.crd}) is not served by this cluster: install "
            f"{b.install}, or set spec.backend to auto; the run starts by itself once the CRD is there",
        )
    options = "; ".join(f"{b.kind} ({b.crd}): install {b.install}" for b in PREFERENCE)
    return (
        "NoTrainingBackend",
        f"no training backend is installed: none of the TrainJob, JobSet or PyTorchJob CRDs is served. "
        f"Install one of {options}; the run starts by itself once one is there",
    )


def choose(wanted: str, served: dict[str, bool]) -> Backend | None:
    """The backend for a run that starts now (``served``: backend name → CRD served), or None."""
    if wanted != AUTO:
        return BY_NAME[wanted] if served.get(wanted) else None
    return next((b for b in PREFERENCE if served.get(b.name)), None)
