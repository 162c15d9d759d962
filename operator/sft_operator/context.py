"""What every reconcile needs: the API client, the watch caches (kopf indexes) and the clock."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sft_operator.kube.client import KubeClient, Resource
from sft_operator.render.meta import OWNER_KIND_ANNOTATION, OWNER_NAME_ANNOTATION
from sft_operator.render.pods import WorkloadDefaults

OwnerKey = tuple[str, str, str]
"""(namespace, kind, name) of a custom resource: the key of the work queue and of every cache."""
OWN_WRITES_KEPT = 100_000
"""Bound of :attr:`Context.own_writes` (an entry whose event never comes, e.g. a child deleted at once)."""


def owner_key_of_child(body: Mapping[str, Any]) -> OwnerKey | None:
    """(namespace, kind, name) of the CR a child (Job, PyTorchJob, Pod) belongs to, from the owner
    annotations every child is rendered with (labels may be shortened; pods are owned by the Job)."""
    meta = body.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    kind = annotations.get(OWNER_KIND_ANNOTATION)
    name = annotations.get(OWNER_NAME_ANNOTATION)
    if not kind or not name or not meta.get("namespace"):
        return None
    return (meta["namespace"], kind, name)


def snapshot(body: Mapping[str, Any]) -> dict[str, Any]:
    """A plain-dict copy for a cache (kopf bodies are live views; a reconcile must see a fixed object)."""
    return {k: body.get(k) for k in ("apiVersion", "kind", "metadata", "spec", "status") if k in body}


def utcnow() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Caches:
    """Read-only views of kopf's indexes (filled from watches before any handler runs)."""

    crs: dict[str, Mapping[Hashable, Iterable[Mapping[str, Any]]]] = field(default_factory=dict)
    """Per kind: (namespace, kind, name) → the CR."""
    jobs: Mapping[Hashable, Iterable[Mapping[str, Any]]] = field(default_factory=dict)
    """(namespace, "SFTDataPrep", name) → its Job(s)."""
    pods: Mapping[Hashable, Iterable[Mapping[str, Any]]] = field(default_factory=dict)
    """(namespace, kind, name) → the pods of its Job or PyTorchJob."""
    runs: dict[Resource, Mapping[Hashable, Iterable[Mapping[str, Any]]]] = field(default_factory=dict)
    """Per backend child resource: (namespace, "SFTRun", name) → the run's child(ren) of that resource."""

    def cr(self, key: OwnerKey) -> Mapping[str, Any] | None:
        return _one(self.crs.get(key[1], {}), key)

    def crs_in(self, namespace: str, kind: str) -> list[Mapping[str, Any]]:
        """Every CR of ``kind`` in ``namespace`` (the index is keyed by (namespace, kind, name))."""
        index = self.crs.get(kind, {})
        return [
            cr
            for key, values in index.items()
            if isinstance(key, tuple) and key[0] == namespace
            for cr in values or ()
        ]

    def jobs_of(self, key: OwnerKey) -> list[Mapping[str, Any]]:
        return list(self.jobs.get(key, ()) or ())

    def pods_of(self, key: OwnerKey) -> list[Mapping[str, Any]]:
        return list(self.pods.get(key, ()) or ())

    def run_children_of(self, resource: Resource, key: OwnerKey) -> list[Mapping[str, Any]]:
        return list(self.runs.get(resource, {}).get(key, ()) or ())


def _one(index: Mapping[Hashable, Iterable[Mapping[str, Any]]], key: Hashable) -> Mapping[str, Any] | None:
    values = list(index.get(key, ()) or ())
    return values[-1] if values else None


@dataclass
class Context:
    client: KubeClient
    caches: Caches = field(default_factory=Caches)
    clock: Callable[[], str] = utcnow
    log_tail_lines: int = 20
    defaults: WorkloadDefaults = field(default_factory=WorkloadDefaults)
    default_backend: str = "auto"
    """What ``spec.backend: auto`` means on this cluster (the chart's ``sftRun.backend``)."""
    written: dict[OwnerKey, Mapping[str, Any]] = field(default_factory=dict)
    """The CR as our last status patch returned it, until the watch cache has caught up with it."""
    own_writes: dict[Hashable, str] = field(default_factory=dict)
    """resourceVersion our own last write of an object returned (a CR's status: its OwnerKey; a child
    we created or patched: ``("child", uid)``), until the watch delivers it (see :meth:`own_event`)."""
    renders: dict[OwnerKey, tuple[tuple[str, int], Any]] = field(default_factory=dict)
    """Per CR: ((uid, generation), what rendering that spec gave), see ``reconcile_steps.rendered``."""
    log_tails: dict[tuple[str, str], str] = field(default_factory=dict)
    """(namespace, pod) → fetched log tail, so a failed pod's log is read once."""
    recheck_base: float = 5.0
    """First re-check (seconds) of a run blocked on something no watch reports (a backend's CRD);
    doubles with the time blocked, up to recheck_max."""
    recheck_max: float = 300.0
    """Longest re-check interval; also the fallback re-check of a run waiting for its SFTDataPrep."""

    def latest(self, key: OwnerKey, cached: Mapping[str, Any]) -> Mapping[str, Any]:
        """The newer of the cached CR and the one our last write returned.

        A reconcile can run before the watch delivers our own status patch; deriving from the stale
        cache would patch and announce (Event) the same transition twice. resourceVersions are
        compared as integers when both are (etcd revisions are); otherwise the cache wins.
        """
        mine = self.written.get(key)
        if mine is None:
            return cached
        cached_rv, mine_rv = _rv(cached), _rv(mine)
        if cached_rv is not None and mine_rv is not None and cached_rv < mine_rv:
            return {**cached, "status": mine.get("status")}
        self.written.pop(key, None)
        return cached

    def remember(self, key: OwnerKey, obj: Mapping[str, Any]) -> None:
        self.written[key] = obj
        self._own_write(key, obj)

    def remember_child(self, obj: Mapping[str, Any]) -> None:
        """Note a child as our create or patch returned it (its watch event then triggers nothing)."""
        uid = (obj.get("metadata") or {}).get("uid")
        if uid:
            self._own_write(("child", uid), obj)

    def own_event(self, key: Hashable, body: Mapping[str, Any]) -> bool:
        """Whether a watch event delivers exactly the object our own last write of it returned.

        Such an event carries nothing the reconcile that wrote it had not seen: that reconcile derived
        the status from the very object (a created Job) or wrote it (a status patch), and every other
        change comes with an event of its own, with another resourceVersion. Its reconcile would find
        nothing to do, so the handlers skip it. Consumed on match: a re-list triggers again.
        """
        rv = (body.get("metadata") or {}).get("resourceVersion")
        if rv and self.own_writes.get(key) == rv:
            del self.own_writes[key]
            return True
        return False

    def _own_write(self, key: Hashable, obj: Mapping[str, Any]) -> None:
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        self.own_writes.pop(key, None)  # re-insert: the oldest entry comes first
        if rv:
            self.own_writes[key] = str(rv)
            if len(self.own_writes) > OWN_WRITES_KEPT:  # an event we never saw (the object went away)
                self.own_writes.pop(next(iter(self.own_writes)))

    def forget(self, key: OwnerKey) -> None:
        self.written.pop(key, None)
        self.own_writes.pop(key, None)
        self.renders.pop(key, None)


def _rv(obj: Mapping[str, Any]) -> int | None:
    value = str((obj.get("metadata") or {}).get("resourceVersion") or "")
    return int(value) if value.isdigit() else None
