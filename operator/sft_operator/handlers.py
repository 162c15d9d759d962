"""The kopf shell: watch caches (indexes), event → work-queue triggers, login, startup/cleanup.

No change handlers, daemons or finalizers: kopf keeps in-memory indexes of our CRs and of the Jobs,
the run backends' children (see :mod:`sft_operator.backends`) and Pods labelled
``app.kubernetes.io/managed-by=sft-operator``, and every watch event of
any of them triggers a reconcile of the owning CR (see :mod:`sft_operator.workqueue`). Nothing is
written to the CRs' metadata, deletion needs no operator (ownerReferences cascade), and a restart
re-lists everything and converges from the persisted status.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, Hashable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import kopf

from sft_common.redact import install_log_redaction
from sft_operator import backends, handlers_sftrun, reconcile_dataprep, reconcile_sftrun
from sft_operator.api.meta import DATAPREP, GROUP, MANAGED_BY, RUN, VERSION
from sft_operator.context import Caches, Context, OwnerKey, owner_key_of_child, snapshot
from sft_operator.essence import NoEssence
from sft_operator.handlers_sftrun import QueueOf
from sft_operator.kube import watching
from sft_operator.kube.client import JOBS, PODS, KubeClient, Resource
from sft_operator.metrics import OperatorMetrics, QueueStats
from sft_operator.probes import Endpoints, Readiness
from sft_operator.render.meta import MANAGED_BY_LABEL
from sft_operator.render.pods import WorkloadDefaults
from sft_operator.workqueue import WorkQueue

log = logging.getLogger(__name__)
KINDS = (DATAPREP, RUN)
"""Kinds this operator serves."""
Reconciler = Callable[[Context, OwnerKey], Awaitable[float | None]]


@dataclass(frozen=True)
class ChildWatch:
    """A kind of child we index by owner and whose every watch event triggers the owner's reconcile.

    While a kind's CRD is not installed (a backend whose controller is absent) kopf has nothing to
    watch; it starts watching when the CRD appears.
    """

    resource: tuple[str, str, str]
    """(group, version, plural)."""
    index: str
    """kopf index id (also the key of the index in handler kwargs)."""
    event_id: str


def child_watch(resource: Resource) -> ChildWatch:
    """The watch of one child resource (ids from its plural: sft_jobs, sft_job_events)."""
    return ChildWatch(
        (resource.group, resource.version, resource.plural),
        f"sft_{resource.plural}",
        f"sft_{resource.plural.removesuffix('s')}_events",
    )


JOB_WATCH = child_watch(JOBS)
POD_WATCH = child_watch(PODS)
RUN_WATCHES = {b.resource: child_watch(b.resource) for b in backends.PREFERENCE}
"""One watch per backend's child resource (the index holds each run's child of that resource); a
backend whose child is a Job shares the prep Jobs' watch."""
CHILD_WATCHES = tuple({w.index: w for w in (JOB_WATCH, POD_WATCH, *RUN_WATCHES.values())}.values())


@dataclass
class OperatorConfig:
    """Tunables; defaults suit a cluster, tests shorten the timeouts."""

    concurrency: int = 32
    """Reconciles running at once."""
    log_tail_lines: int = 20
    """Log lines of a failed pod copied into status.failure.logTail; 0 reads no pods/log."""
    watch_server_timeout: float | None = 300
    """Seconds before the apiserver ends a watch (kopf reconnects); short in tests."""
    watch_client_timeout: float | None = None
    backoff_base: float = 0.5
    backoff_max: float = 60.0
    posting_level: int = logging.WARNING
    """kopf's own log messages at this level or above become Events on the objects."""
    defaults: WorkloadDefaults = field(default_factory=WorkloadDefaults.from_env)
    """Image and ServiceAccount for pods whose CR names none (the Helm chart sets the env vars)."""
    default_backend: str = field(default_factory=lambda: os.environ.get("SFT_DEFAULT_BACKEND") or "auto")
    """What spec.backend auto means (the chart's sftRun.backend: auto or a backend's name)."""
    recheck_base: float = 5.0
    """First re-check of a run blocked on something no watch reports (a backend's CRD)."""
    recheck_max: float = 300.0
    """Longest re-check interval (and the fallback re-check of a run waiting for its data)."""
    metrics: OperatorMetrics = field(default_factory=OperatorMetrics)
    """This instance's Prometheus metrics (its own registry)."""
    metrics_endpoint: str | None = None
    """Serve ``/metrics`` here, e.g. ``http://0.0.0.0:9090/metrics`` (None: not served)."""
    readiness_endpoint: str | None = None
    """Serve the readiness probe here, e.g. ``http://0.0.0.0:8081/readyz`` (None: not served)."""
    login_backoff: float | None = None
    """Seconds between login attempts after a failure (None: kopf's default)."""
    api_backoff_max: float = watching.BACKOFF_MAX
    """Longest wait between tries of a failing kopf request or watch stream (retried forever)."""
    peering_lifetime: int = 15
    """Seconds a replica's peering keep-alive is valid: a standby takes over this long after the active
    replica died without saying goodbye (SIGKILL, node lost); kopf's default is 60."""
    reconcilers: dict[str, Reconciler] = field(
        default_factory=lambda: {
            DATAPREP.kind: reconcile_dataprep.KIND.reconcile,
            RUN.kind: reconcile_sftrun.KIND.reconcile,
        }
    )


@dataclass
class Runtime:
    """Operator-wide state, made by the startup handler and shared by every handler.

    kopf hands each watched object a shallow copy of the memo, so a value assigned to the memo
    after startup would stay with that one object (one work queue per object, breaking "one
    reconcile per key at a time"); the handlers therefore keep everything on this one object.
    """

    caches: Caches = field(default_factory=Caches)
    queue: WorkQueue | None = None
    context: Context | None = None
    connection: kopf.ConnectionInfo | None = None
    """The latest successful login."""
    login_error: str | None = None
    """Why the latest login attempt failed (None once one succeeds)."""
    endpoints: Endpoints | None = None
    health: watching.WatchHealth = field(default_factory=watching.WatchHealth)
    """Which of kopf's watch streams are blind (for /readyz and the metrics)."""


def build_registry(config: OperatorConfig | None = None) -> kopf.OperatorRegistry:
    """A fresh registry holding every handler (tests build one per operator instance): the operator's
    lifecycle, then the watches of our CRs and of their children, each event triggering a reconcile
    of the owning CR through the one work queue."""
    config = config or OperatorConfig()
    registry = kopf.OperatorRegistry()
    register_lifecycle(registry, config)
    queue_of = work_queue_of(config)
    register_cr_watches(registry, queue_of)
    register_child_watches(registry, queue_of)
    handlers_sftrun.register(registry, queue_of)
    return registry


def register_lifecycle(registry: kopf.OperatorRegistry, config: OperatorConfig) -> None:
    """Startup (settings, the runtime, probes and metrics endpoints), login, and cleanup."""

    @kopf.on.startup(registry=registry)
    async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        install_log_redaction()  # every log record, and kopf's log-to-Event posting with it
        settings.posting.level = config.posting_level
        settings.watching.server_timeout = config.watch_server_timeout
        settings.watching.client_timeout = config.watch_client_timeout
        settings.persistence.finalizer = f"{GROUP}/finalizer"  # unused: no handler needs one
        settings.persistence.diffbase_storage = NoEssence()  # no change handlers: no essence per event
        settings.peering.lifetime = config.peering_lifetime
        memo.runtime = runtime = Runtime()
        # API faults: retried forever with backoff, watch errors restart the stream (never fatal)
        watching.install()
        runtime.health.observer = config.metrics
        runtime.health.expect = tuple(f"{kind.plural}." for kind in KINDS)
        runtime.health.on_recovered = lambda: runtime.queue.recovered() if runtime.queue else None
        settings.networking.error_backoffs = watching.ApiBackoffs(runtime.health, cap=config.api_backoff_max)
        config.metrics.blind_streams = lambda: len(runtime.health.blind())
        config.metrics.attach(
            queue=lambda: runtime.queue.stats() if runtime.queue is not None else QueueStats(),
            resources=lambda: _cached_crs(runtime.caches),
        )
        runtime.endpoints = Endpoints(
            config.metrics,
            Readiness(
                connection=lambda: runtime.connection,
                login_error=lambda: runtime.login_error,
                watch_problem=runtime.health.problem,
            ),
            metrics_url=config.metrics_endpoint,
            readiness_url=config.readiness_endpoint,
        )
        await runtime.endpoints.start()

    @kopf.on.login(registry=registry, backoff=config.login_backoff)
    def login(memo: kopf.Memo, **kwargs: Any) -> kopf.ConnectionInfo:
        runtime: Runtime = memo.runtime
        try:
            info = _login(**kwargs)
            if info is None:
                raise kopf.LoginError(
                    "no in-cluster service account and no kubeconfig (KUBECONFIG or ~/.kube/config)"
                )
        except Exception as exc:
            runtime.login_error = str(exc) or type(exc).__name__
            raise
        runtime.connection, runtime.login_error = info, None
        return info

    @kopf.on.cleanup(registry=registry)
    async def cleanup(memo: kopf.Memo, **_: Any) -> None:
        runtime: Runtime | None = getattr(memo, "runtime", None)
        if runtime is None:
            return
        if runtime.endpoints is not None:
            await runtime.endpoints.stop()
        if runtime.queue is not None:
            await runtime.queue.close()
        if runtime.context is not None:
            await runtime.context.client.close()


def work_queue_of(config: OperatorConfig) -> QueueOf:
    """``queue_of(memo, indexes)``: the operator's work queue, created on first use (after login)."""

    def queue_of(memo: kopf.Memo, indexes: Mapping[str, Any]) -> WorkQueue:
        """The work queue, created on first use inside the operator's loop (after login); it also points
        the caches at kopf's indexes, which exist only once handlers run."""
        runtime: Runtime = memo.runtime
        caches = runtime.caches
        for kind_info in KINDS:
            caches.crs[kind_info.kind] = indexes[f"sft_crs_{kind_info.plural}"]
        caches.jobs = indexes[JOB_WATCH.index]
        caches.pods = indexes[POD_WATCH.index]
        caches.runs = {resource: indexes[watch.index] for resource, watch in RUN_WATCHES.items()}
        if runtime.queue is None:
            client = KubeClient.from_connection_info(runtime.connection)
            client.relogin = lambda: _login(settings=kopf.OperatorSettings())
            client.observer = config.metrics
            context = runtime.context = Context(
                client=client,
                caches=caches,
                log_tail_lines=config.log_tail_lines,
                defaults=config.defaults,
                default_backend=config.default_backend,
                recheck_base=config.recheck_base,
                recheck_max=config.recheck_max,
            )

            async def run(key: Hashable) -> float | None:
                if not (isinstance(key, tuple) and len(key) == 3):  # the queue holds OwnerKeys only
                    raise TypeError(f"not a (namespace, kind, name) key: {key!r}")
                owner: OwnerKey = (str(key[0]), str(key[1]), str(key[2]))
                reconciler = config.reconcilers.get(owner[1])
                if reconciler is None:
                    return None
                with config.metrics.reconcile(owner[1]) as outcome:
                    requeue = await reconciler(context, owner)
                    outcome.requeue = requeue is not None
                return requeue

            runtime.queue = WorkQueue(
                run,
                concurrency=config.concurrency,
                backoff_base=config.backoff_base,
                backoff_max=config.backoff_max,
            )
            client.on_recovered = runtime.queue.recovered
        return runtime.queue

    return queue_of


def register_cr_watches(registry: kopf.OperatorRegistry, queue_of: QueueOf) -> None:
    """Per kind of ours: an index of its CRs, and every watch event triggers that CR's reconcile
    (a DELETED one forgets it; our own status patch coming back triggers nothing)."""
    for info in KINDS:
        kind = info.kind

        @kopf.index(GROUP, VERSION, info.plural, registry=registry, id=f"sft_crs_{info.plural}")
        async def index_cr(
            namespace: str | None, name: str, body: kopf.Body, _kind: str = kind, **_: Any
        ) -> dict[OwnerKey, Any] | None:
            return {(namespace, _kind, name): snapshot(body)} if namespace else None

        @kopf.on.event(GROUP, VERSION, info.plural, registry=registry, id=f"sft_event_{info.plural}")
        async def on_cr_event(
            namespace: str | None,
            name: str,
            type: str | None,
            body: kopf.Body,
            memo: kopf.Memo,
            _kind: str = kind,
            **kwargs: Any,
        ) -> None:
            if namespace is None:  # our kinds are namespaced
                return
            queue = queue_of(memo, kwargs)
            key = (namespace, _kind, name)
            if type == "DELETED":
                queue.forget(key)
                memo.runtime.context.forget(key)
                return
            if not memo.runtime.context.own_event(key, body):  # (our own status patch: nothing new)
                queue.trigger(key)


def register_child_watches(registry: kopf.OperatorRegistry, queue_of: QueueOf) -> None:
    """Per kind of child (Jobs, Pods, each backend's child): an index by owner, and every watch event
    triggers the owner's reconcile (except the event of a child this operator just created)."""
    managed = {MANAGED_BY_LABEL: MANAGED_BY}

    for child in CHILD_WATCHES:

        @kopf.index(*child.resource, labels=managed, registry=registry, id=child.index)
        async def index_child(body: kopf.Body, **_: Any) -> dict[OwnerKey, Any] | None:
            key = owner_key_of_child(body)
            return {key: snapshot(body)} if key else None

        @kopf.on.event(*child.resource, labels=managed, registry=registry, id=child.event_id)
        async def on_child_event(body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
            key = owner_key_of_child(body)
            if key is not None:
                queue = queue_of(memo, kwargs)
                if not memo.runtime.context.own_event(("child", body.get("metadata", {}).get("uid")), body):
                    queue.trigger(key)


def _cached_crs(caches: Caches) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(kind, CR) for every CR in the watch caches (for the metrics of CRs by phase)."""
    for kind, index in caches.crs.items():
        for values in index.values():
            objs = list(values or ())
            if objs:
                yield kind, objs[-1]


def _login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """In-cluster service account first, then a kubeconfig (also used to re-login after a 401)."""
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)
