"""The kopf shell for what only ``SFTRun`` needs on top of :mod:`sft_operator.handlers` (which
registers the CR and child indexes, their events and the work queue for every kind): event-driven
waiting on data. An index of runs by the SFTDataPrep they reference makes every watch event of an
SFTDataPrep trigger exactly the runs waiting for it (the reconcile's slow re-check timer is only a
fallback for a missed event).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import kopf

from sft_operator.api.meta import DATAPREP, GROUP, RUN, VERSION
from sft_operator.workqueue import WorkQueue

RUNS_BY_PREP_INDEX = "sft_runs_by_prep"
QueueOf = Callable[[kopf.Memo, Mapping[str, Any]], WorkQueue]


def register(registry: kopf.OperatorRegistry, queue_of: QueueOf) -> None:
    """Add the SFTRun-specific index and trigger to ``registry``."""

    @kopf.index(GROUP, VERSION, RUN.plural, registry=registry, id=RUNS_BY_PREP_INDEX)
    async def index_runs_by_prep(
        namespace: str | None, name: str, spec: kopf.Spec, **_: Any
    ) -> dict[tuple[str, str], str] | None:
        prep = ((spec.get("data") or {}).get("dataPrepRef") or {}).get("name")
        return {(namespace, prep): name} if prep and namespace else None

    @kopf.on.event(GROUP, VERSION, DATAPREP.plural, registry=registry, id="sft_prep_to_runs")
    async def on_prep_event(namespace: str | None, name: str, memo: kopf.Memo, **kwargs: Any) -> None:
        runs = kwargs[RUNS_BY_PREP_INDEX].get((namespace, name), ())
        if not runs or namespace is None:  # (our kinds are namespaced: kopf passes None only for others)
            return
        queue = queue_of(memo, kwargs)
        for run in set(runs):
            queue.trigger((namespace, RUN.kind, run))
