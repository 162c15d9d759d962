"""Prometheus metrics of one operator instance (served on ``/metrics`` by :mod:`sft_operator.probes`).

Names follow Prometheus conventions (``_total`` counters, ``_seconds`` histograms, base units) and
controller-runtime's where the idea is the same (``workqueue_depth``, ``workqueue_adds_total``,
``workqueue_retries_total``), prefixed ``sft_operator_``:

- ``sft_operator_reconciles_total{kind, result}``: finished reconciles; ``result`` is ``success``,
  ``requeue`` (done, look again after a delay) or ``error`` (raised: retried with backoff).
- ``sft_operator_reconcile_duration_seconds{kind}``: histogram of reconcile latency.
- ``sft_operator_workqueue_depth``: keys due for a reconcile that has not started (waiting for a
  concurrency slot, or triggered again while running); ``sft_operator_workqueue_in_flight``: running
  now; ``sft_operator_workqueue_scheduled``: keys with a timer (backoff or re-check) pending;
  ``sft_operator_workqueue_adds_total``, ``sft_operator_workqueue_retries_total``.
- ``sft_operator_resources{kind, phase}``: CRs in the watch cache by ``status.phase`` (``Unknown``
  before the first status); every phase of every kind is reported, 0 included.
- ``sft_operator_api_errors_total{verb, code}``: failed calls of the operator's own API client
  (``code`` 0: the API server could not be reached). kopf's watch streams retry on their own and
  log their errors; they are not counted here.
- ``sft_operator_children_created_total{kind}``: children created (ConfigMap, Job, PyTorchJob,
  ServiceAccount, Role, RoleBinding); an adopted child (409) is not counted.
- ``sft_operator_watch_errors_total{stream}``: failed requests and ``ERROR`` events of kopf's watch
  streams (``stream``: e.g. ``jobs.v1.batch in 'default'``), each retried with backoff
  (:mod:`sft_operator.kube.watching`); ``sft_operator_watch_blind_seconds_total{stream}``: seconds a
  stream was blind, added when it sees again; ``sft_operator_watch_blind_streams``: streams blind now
  (``/readyz`` answers 503 meanwhile).

Every instance has its own registry, so several operators in one process (tests) never collide, and
collectors read the work queue and kopf's caches at scrape time on the operator's own event loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, get_args

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from sft_operator.api.meta import DATAPREP, RUN
from sft_operator.api.sftrun import RunPhase
from sft_operator.api.status import Phase

PREFIX = "sft_operator"
UNKNOWN_PHASE = "Unknown"
PHASES: dict[str, tuple[str, ...]] = {
    DATAPREP.kind: (*get_args(Phase), UNKNOWN_PHASE),
    RUN.kind: (*get_args(RunPhase), UNKNOWN_PHASE),
}
"""Every phase of every kind, reported with 0 so dashboards and alerts see a series from the start."""
RECONCILE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass
class QueueStats:
    """What :meth:`sft_operator.workqueue.WorkQueue.stats` reports."""

    depth: int = 0
    in_flight: int = 0
    scheduled: int = 0
    adds: int = 0
    retries: int = 0


@dataclass
class ReconcileOutcome:
    """Set ``requeue`` inside :meth:`OperatorMetrics.reconcile` when the reconcile asked for a re-check."""

    requeue: bool = False


class OperatorMetrics:
    """The metrics of one operator; :meth:`attach` tells it where the queue and caches are."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.reconciles = Counter(
            f"{PREFIX}_reconciles",
            "Finished reconciles by kind and result (success, requeue, error).",
            ["kind", "result"],
            registry=self.registry,
        )
        self.reconcile_seconds = Histogram(
            f"{PREFIX}_reconcile_duration_seconds",
            "Reconcile latency by kind.",
            ["kind"],
            buckets=RECONCILE_BUCKETS,
            registry=self.registry,
        )
        self.api_errors = Counter(
            f"{PREFIX}_api_errors",
            "Failed Kubernetes API calls of the operator's client, by verb and HTTP code (0: unreachable).",
            ["verb", "code"],
            registry=self.registry,
        )
        self.children_created = Counter(
            f"{PREFIX}_children_created",
            "Child objects created by the operator, by kind.",
            ["kind"],
            registry=self.registry,
        )
        self.watch_errors = Counter(
            f"{PREFIX}_watch_errors",
            "Failed requests and ERROR events of the watch streams (retried with backoff).",
            ["stream"],
            registry=self.registry,
        )
        self.watch_blind_seconds = Counter(
            f"{PREFIX}_watch_blind_seconds",
            "Seconds a watch stream could not watch, added when it watches again.",
            ["stream"],
            registry=self.registry,
        )
        self.blind_streams: Callable[[], int] = lambda: 0
        """Streams blind now (set by the operator's startup to its WatchHealth)."""
        for kind in PHASES:
            for result in ("success", "requeue", "error"):
                self.reconciles.labels(kind, result)
            self.reconcile_seconds.labels(kind)
        self._queue: Callable[[], QueueStats] | None = None
        self._resources: Callable[[], Iterable[tuple[str, Mapping[str, Any]]]] | None = None
        self.registry.register(_StateCollector(self))

    def attach(
        self,
        queue: Callable[[], QueueStats],
        resources: Callable[[], Iterable[tuple[str, Mapping[str, Any]]]],
    ) -> None:
        """``queue()`` → the work queue's stats; ``resources()`` → (kind, CR) for every cached CR."""
        self._queue = queue
        self._resources = resources

    @contextmanager
    def reconcile(self, kind: str) -> Iterator[ReconcileOutcome]:
        """Time and count one reconcile of ``kind`` (an exception counts as ``error`` and propagates)."""
        outcome = ReconcileOutcome()
        started = time.perf_counter()
        result = "error"
        try:
            yield outcome
            result = "requeue" if outcome.requeue else "success"
        finally:
            self.reconcile_seconds.labels(kind).observe(time.perf_counter() - started)
            self.reconciles.labels(kind, result).inc()

    # The two hooks of sft_operator.kube.client.ApiObserver.
    def api_error(self, verb: str, code: int) -> None:
        self.api_errors.labels(verb, str(code)).inc()

    def child_created(self, kind: str) -> None:
        self.children_created.labels(kind).inc()

    # The two hooks of sft_operator.kube.watching.BlindObserver.
    def watch_failed(self, stream: str) -> None:
        self.watch_errors.labels(stream).inc()

    def watch_recovered(self, stream: str, seconds: float) -> None:
        self.watch_blind_seconds.labels(stream).inc(seconds)

    def queue_stats(self) -> QueueStats:
        return self._queue() if self._queue is not None else QueueStats()

    def phase_counts(self) -> dict[tuple[str, str], int]:
        counts = {(kind, phase): 0 for kind, phases in PHASES.items() for phase in phases}
        for kind, cr in self._resources() if self._resources is not None else ():
            phase = str((cr.get("status") or {}).get("phase") or UNKNOWN_PHASE)
            counts[(kind, phase)] = counts.get((kind, phase), 0) + 1
        return counts


class _StateCollector:
    """Gauges and counters read at scrape time (queue state, CRs by phase)."""

    def __init__(self, metrics: OperatorMetrics) -> None:
        self.metrics = metrics

    def describe(self) -> list[Metric]:
        return []  # collected lazily: the queue and caches exist only once the operator runs

    def collect(self) -> Iterator[Metric]:
        stats = self.metrics.queue_stats()
        for name, value, text in (
            ("workqueue_depth", stats.depth, "Keys due for a reconcile that has not started yet."),
            ("workqueue_in_flight", stats.in_flight, "Reconciles running now."),
            ("workqueue_scheduled", stats.scheduled, "Keys with a pending re-check or backoff timer."),
        ):
            yield GaugeMetricFamily(f"{PREFIX}_{name}", text, value=value)
        yield GaugeMetricFamily(
            f"{PREFIX}_watch_blind_streams",
            "Watch streams failing now (the operator is blind to their changes).",
            value=self.metrics.blind_streams(),
        )
        yield CounterMetricFamily(f"{PREFIX}_workqueue_adds", "Reconciles started.", value=stats.adds)
        yield CounterMetricFamily(
            f"{PREFIX}_workqueue_retries", "Reconciles retried after an error.", value=stats.retries
        )
        resources = GaugeMetricFamily(
            f"{PREFIX}_resources",
            "Custom resources in the watch cache by kind and phase.",
            labels=["kind", "phase"],
        )
        for (kind, phase), count in sorted(self.metrics.phase_counts().items()):
            resources.add_metric([kind, phase], count)
        yield resources
