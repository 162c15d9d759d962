"""The kopf shell: watch caches (indexes), event → work-queue triggers, login, startup/cleanup.

No change handlers, daemons or finalizers: kopf keeps in-memory indexes of our CRs and of the Jobs and
Pods labelled ``app.kubernetes.io/managed-by=sft-operator``, and every watch event of any of them
triggers a reconcile of the owning CR (see :mod:`sft_operator.workqueue`). Nothing is written to the
CRs' metadata, deletion needs no operator (ownerReferences cascade), and a restart re-lists
everything and converges from the persisted status.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

import kopf

from sft_operator import handlers_sftrun, reconcile_dataprep, reconcile_sftrun
from sft_operator.api.meta import DATAPREP, GROUP, MANAGED_BY, RUN, VERSION
from sft_operator.context import Caches, Context, OwnerKey
from sft_operator.kube.client import KubeClient
from sft_operator.render.meta import MANAGED_BY_LABEL, OWNER_KIND_ANNOTATION, OWNER_NAME_ANNOTATION
from sft_operator.render.pods import WorkloadDefaults
from sft_operator.workqueue import WorkQueue

log = logging.getLogger(__name__)
KINDS = (DATAPREP, RUN)
"""Kinds this operator serves (SFTRun joins here)."""
Reconciler = Callable[[Context, OwnerKey], Awaitable[float | None]]


@dataclass
class OperatorConfig:
    """Tunables; defaults suit a cluster, tests shorten the timeouts."""

    concurrency: int = 32
    """Reconciles running at once."""
    log_tail_lines: int = 20
    """Log lines of a failed pod copied into status.failure.logTail."""
    watch_server_timeout: float | None = 300
    """Seconds before the apiserver ends a watch (kopf reconnects); short in tests."""
    watch_client_timeout: float | None = None
    backoff_base: float = 0.5
    backoff_max: float = 60.0
    posting_level: int = logging.WARNING
    """kopf's own log messages at this level or above become Events on the objects."""
    defaults: WorkloadDefaults = field(default_factory=WorkloadDefaults.from_env)
    """Image and ServiceAccount for pods whose CR names none (the Helm chart sets the env vars)."""
    recheck_base: float = 5.0
    """First re-check of a run blocked on something no watch reports (the PyTorchJob CRD)."""
    recheck_max: float = 300.0
    """Longest re-check interval (and the fallback re-check of a run waiting for its data)."""
    reconcilers: dict[str, Reconciler] = field(
        default_factory=lambda: {
            DATAPREP.kind: reconcile_dataprep.reconcile,
            RUN.kind: reconcile_sftrun.reconcile,
        }
    )


def owner_key_of_child(body: Mapping[str, Any]) -> OwnerKey | None:
    """(namespace, kind, name) of the CR a Job or Pod belongs to, from the annotations we render."""
    meta = body.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    kind = annotations.get(OWNER_KIND_ANNOTATION)
    name = annotations.get(OWNER_NAME_ANNOTATION)
    if not kind or not name or not meta.get("namespace"):
        return None
    return (meta["namespace"], kind, name)


def build_registry(config: OperatorConfig | None = None) -> kopf.OperatorRegistry:
    """A fresh registry holding every handler (tests build one per operator instance)."""
    config = config or OperatorConfig()
    registry = kopf.OperatorRegistry()
    managed = {MANAGED_BY_LABEL: MANAGED_BY}

    @kopf.on.startup(registry=registry)
    async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        settings.posting.level = config.posting_level
        settings.watching.server_timeout = config.watch_server_timeout
        settings.watching.client_timeout = config.watch_client_timeout
        settings.persistence.finalizer = f"{GROUP}/finalizer"  # unused: no handler needs one
        memo.caches = Caches()
        memo.queue = None

    @kopf.on.login(registry=registry)
    def login(memo: kopf.Memo, **kwargs: Any) -> kopf.ConnectionInfo:
        info = kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)
        if info is None:
            raise kopf.LoginError(
                "no in-cluster service account and no kubeconfig (KUBECONFIG or ~/.kube/config)"
            )
        memo.connection = info
        return info

    @kopf.on.cleanup(registry=registry)
    async def cleanup(memo: kopf.Memo, **_: Any) -> None:
        queue: WorkQueue | None = getattr(memo, "queue", None)
        if queue is not None:
            await queue.close()
        context: Context | None = getattr(memo, "context", None)
        if context is not None:
            await context.client.close()

    def queue_of(memo: kopf.Memo, indexes: Mapping[str, Any]) -> WorkQueue:
        """The work queue, created on first use inside the operator's loop (after login)."""
        caches: Caches = memo.caches
        for kind_info in KINDS:
            caches.crs[kind_info.kind] = indexes[f"sft_crs_{kind_info.plural}"]
        caches.jobs = indexes["sft_jobs"]
        caches.pods = indexes["sft_pods"]
        caches.pytorchjobs = indexes[handlers_sftrun.PYTORCHJOB_INDEX]
        if memo.queue is None:
            client = KubeClient.from_connection_info(memo.connection)
            client.relogin = lambda: (
                kopf.login_with_service_account(settings=kopf.OperatorSettings())
                or (kopf.login_with_kubeconfig(settings=kopf.OperatorSettings()))
            )
            memo.context = Context(
                client=client,
                caches=caches,
                log_tail_lines=config.log_tail_lines,
                defaults=config.defaults,
                recheck_base=config.recheck_base,
                recheck_max=config.recheck_max,
            )

            async def run(key: Hashable) -> float | None:
                owner = key  # (namespace, kind, name)
                reconciler = config.reconcilers.get(owner[1])  # type: ignore[index]
                if reconciler is None:
                    return None
                return await reconciler(memo.context, owner)  # type: ignore[arg-type]

            memo.queue = WorkQueue(
                run,
                concurrency=config.concurrency,
                backoff_base=config.backoff_base,
                backoff_max=config.backoff_max,
            )
        return memo.queue

    for info in KINDS:
        kind = info.kind

        @kopf.index(GROUP, VERSION, info.plural, registry=registry, id=f"sft_crs_{info.plural}")
        async def index_cr(
            namespace: str, name: str, body: kopf.Body, _kind: str = kind, **_: Any
        ) -> dict[OwnerKey, Any]:
            return {(namespace, _kind, name): _raw(body)}

        @kopf.on.event(GROUP, VERSION, info.plural, registry=registry, id=f"sft_event_{info.plural}")
        async def on_cr_event(
            namespace: str, name: str, type: str | None, memo: kopf.Memo, _kind: str = kind, **kwargs: Any
        ) -> None:
            queue = queue_of(memo, kwargs)
            key = (namespace, _kind, name)
            if type == "DELETED":
                queue.forget(key)
                memo.context.forget(key)
                return
            queue.trigger(key)

    @kopf.index("batch", "v1", "jobs", labels=managed, registry=registry, id="sft_jobs")
    async def index_jobs(body: kopf.Body, **_: Any) -> dict[OwnerKey, Any] | None:
        key = owner_key_of_child(body)
        return {key: _raw(body)} if key else None

    @kopf.index("", "v1", "pods", labels=managed, registry=registry, id="sft_pods")
    async def index_pods(body: kopf.Body, **_: Any) -> dict[OwnerKey, Any] | None:
        key = owner_key_of_child(body)
        return {key: _raw(body)} if key else None

    @kopf.on.event("batch", "v1", "jobs", labels=managed, registry=registry, id="sft_job_events")
    @kopf.on.event("", "v1", "pods", labels=managed, registry=registry, id="sft_pod_events")
    async def on_child_event(body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
        key = owner_key_of_child(body)
        if key is not None:
            queue_of(memo, kwargs).trigger(key)

    handlers_sftrun.register(registry, queue_of, owner_key_of_child)
    return registry


def _raw(body: kopf.Body) -> dict[str, Any]:
    """A plain-dict snapshot (kopf bodies are views; the cache must not change under a reconcile)."""
    return {k: body.get(k) for k in ("apiVersion", "kind", "metadata", "spec", "status") if k in body}
