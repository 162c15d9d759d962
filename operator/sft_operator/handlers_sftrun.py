"""The kopf shell for ``SFTRun`` on top of :mod:`sft_operator.handlers` (which registers the CR index,
the CR events, the Pod index and the work queue for every kind in ``KINDS``).

What an SFTRun needs beyond that:

* an index of the PyTorchJobs we manage (labelled ``app.kubernetes.io/managed-by=sft-operator``),
  keyed by the owning run, and their watch events as triggers. While the PyTorchJob CRD is not
  installed kopf simply has nothing to watch; it starts watching when the CRD appears;
* event-driven waiting on data: an index of runs by the SFTDataPrep they reference, so every watch
  event of an SFTDataPrep triggers exactly the runs waiting for it (the reconcile's slow re-check
  timer is only a fallback for a missed event).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import kopf

from sft_operator.api.meta import GROUP, MANAGED_BY, RUN, VERSION
from sft_operator.context import OwnerKey
from sft_operator.render.meta import MANAGED_BY_LABEL
from sft_operator.workqueue import WorkQueue

PYTORCHJOB_INDEX = "sft_pytorchjobs"
RUNS_BY_PREP_INDEX = "sft_runs_by_prep"
QueueOf = Callable[[kopf.Memo, Mapping[str, Any]], WorkQueue]


def register(
    registry: kopf.OperatorRegistry, queue_of: QueueOf, owner_key_of_child: Callable[..., OwnerKey | None]
) -> None:
    """Add the SFTRun-specific indexes and triggers to ``registry``."""
    managed = {MANAGED_BY_LABEL: MANAGED_BY}

    @kopf.index("kubeflow.org", "v1", "pytorchjobs", labels=managed, registry=registry, id=PYTORCHJOB_INDEX)
    async def index_pytorchjobs(body: kopf.Body, **_: Any) -> dict[OwnerKey, Any] | None:
        key = owner_key_of_child(body)
        return {key: _raw(body)} if key else None

    @kopf.on.event(
        "kubeflow.org", "v1", "pytorchjobs", labels=managed, registry=registry, id="sft_ptj_events"
    )
    async def on_pytorchjob_event(body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
        key = owner_key_of_child(body)
        if key is not None:
            queue_of(memo, kwargs).trigger(key)

    @kopf.index(GROUP, VERSION, RUN.plural, registry=registry, id=RUNS_BY_PREP_INDEX)
    async def index_runs_by_prep(
        namespace: str, name: str, spec: kopf.Spec, **_: Any
    ) -> dict[tuple[str, str], str] | None:
        prep = ((spec.get("data") or {}).get("dataPrepRef") or {}).get("name")
        return {(namespace, prep): name} if prep else None

    @kopf.on.event("sft.dev", VERSION, "sftdatapreps", registry=registry, id="sft_prep_to_runs")
    async def on_prep_event(namespace: str, name: str, memo: kopf.Memo, **kwargs: Any) -> None:
        runs = kwargs[RUNS_BY_PREP_INDEX].get((namespace, name), ())
        if not runs:
            return
        queue = queue_of(memo, kwargs)
        for run in set(runs):
            queue.trigger((namespace, RUN.kind, run))


def _raw(body: kopf.Body) -> dict[str, Any]:
    """A plain-dict snapshot (kopf bodies are views; the cache must not change under a reconcile)."""
    return {k: body.get(k) for k in ("apiVersion", "kind", "metadata", "spec", "status") if k in body}
