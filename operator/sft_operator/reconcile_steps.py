"""The one reconcile skeleton every kind runs (:func:`reconcile`), and the steps it shares.

A kind (reconcile_dataprep, reconcile_sftrun: a :class:`Kind`) supplies only what differs: how it acts
on the cluster (render, ensure the children, patch suspend) and how it reads its pods and derives its
status model; the patch from the stored status to that model is the same for every kind
(:func:`sft_operator.status.patch.status_patch`).

Order matters for idempotency: children are created before the status records them (a crash in
between is healed by the next run's 409 + ownership check), and a transition's Events are posted
before the status that records it is patched: Event names are deterministic per (CR, generation,
reason) (:mod:`sft_operator.kube.events`), so a retry after a crash or a lost patch response posts
them again as a 409, and no Event depends on the patch's response.

API errors while acting (:func:`api_refusal`): a permanent refusal (RBAC or quota 403, 422...) is
``Stalled`` with the API server's own message and re-checked with a growing interval; a transient one
(unreachable, 429, 5xx) keeps the last status, says ``Reconciling: retrying ...`` and is retried by
the work queue with backoff.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sft_common.progress import parse_time
from sft_operator.api.meta import GROUP, VERSION, KindInfo
from sft_operator.api.sftrun import SFTRunStatus
from sft_operator.claims import claim_message, claimed_by
from sft_operator.context import Context, OwnerKey
from sft_operator.errors import InvalidSpec
from sft_operator.kube.children import Ensured, ensure_child
from sft_operator.kube.client import CONFIGMAPS, ROLEBINDINGS, ROLES, SERVICEACCOUNTS, ApiError, Resource
from sft_operator.kube.events import flush_events, record_event
from sft_operator.render.identity import render_identity
from sft_operator.status.common import Recorded
from sft_operator.status.conditions import (
    READY,
    RECONCILING,
    condition,
    get_condition,
    ready_reason,
    with_transition_times,
)
from sft_operator.status.patch import status_patch
from sft_operator.status.pods import PodState, describe_failure, latest_failed
from sft_operator.status.pruned import FIELDS_PRUNED

log = logging.getLogger(__name__)
T = TypeVar("T")
WARNING_PHASES = frozenset({"Failed"})
WARNING_CONDITIONS = ("Hung",)
"""Conditions whose turning True is a Warning Event of its own (the phase stays Running)."""
LOG_TAIL_CHARS = 4000
LOG_TAIL_CACHE = 1000
"""Failed pods whose log tail is remembered (oldest dropped first)."""


@dataclass
class Acted:
    """What a kind's :meth:`Kind.act` found or made this reconcile (filled in as it goes, so an
    error half-way still leaves what is known for the status)."""

    child: Mapping[str, Any] | None = None
    """The object running the pods (Job, or the run backend's child)."""
    config_map: Mapping[str, Any] | None = None
    created: bool = False
    error: tuple[str, str] | None = None
    """(reason, message) of something a person must fix: Stalled."""
    requeue: float | None = None
    """Seconds until the next look when no watch event will come."""


ActedT = TypeVar("ActedT", bound=Acted)


class Kind(Generic[ActedT]):
    """What one kind supplies to :func:`reconcile`: the rest is the same for every kind. ``ActedT`` is
    the kind's :class:`Acted` (a subclass holding what only its derive needs)."""

    info: KindInfo

    def new_acted(self) -> ActedT:
        """An empty record for one reconcile."""
        raise NotImplementedError

    async def act(self, ctx: Context, cr: Mapping[str, Any], acted: ActedT) -> None:
        """Render and ensure the children; raise InvalidSpec for what the user must fix."""
        raise NotImplementedError

    def pods(self, ctx: Context, key: OwnerKey, acted: ActedT) -> tuple[list[PodState], str]:
        """The CR's pods and the name of their main container."""
        raise NotImplementedError

    def child_failed(self, acted: ActedT, pods: list[PodState]) -> bool:
        """Whether the child failed (then the blamed pod's log tail is read)."""
        raise NotImplementedError

    def derive(
        self,
        cr: Mapping[str, Any],
        acted: ActedT,
        pods: list[PodState],
        now: str,
        log_tails: Mapping[str, str],
    ) -> Recorded:
        """The kind's status model for what this reconcile saw (its ``status.<kind>.derive``)."""
        raise NotImplementedError

    async def reconcile(self, ctx: Context, key: OwnerKey) -> float | None:
        """:func:`reconcile` of this kind (what the work queue calls for its keys)."""
        return await reconcile(ctx, key, self)


async def reconcile(ctx: Context, key: OwnerKey, kind: Kind[ActedT]) -> float | None:
    """One level-triggered pass: act, read the pods, derive and patch the status, announce.
    Returns seconds until the next look when no watch event will come."""
    cr = live_cr(ctx, key)
    if cr is None:
        return None
    acted = kind.new_acted()
    try:
        await kind.act(ctx, cr, acted)
    except InvalidSpec as exc:
        acted.error = (exc.reason, exc.message)
        if exc.reason in UNWATCHED_REASONS:
            # What is in the way (an object not ours, a webhook's missing dependency) triggers nothing
            # here when it changes: look again later, less often the longer it lasts.
            acted.requeue = acted.requeue or recheck_delay(ctx, cr.get("status"), UNWATCHED_REASONS)
    except ApiError as exc:
        if not exc.refused:
            await note_retrying(ctx, key, kind.info, cr, exc)
            raise
        acted.error = api_refusal(exc)
        acted.requeue = acted.requeue or recheck_delay(ctx, cr.get("status"), UNWATCHED_REASONS)
    pods, container = kind.pods(ctx, key, acted)
    now = ctx.clock()
    log_tails = (
        await failed_pod_log_tail(ctx, cr, pods, key[0], container) if kind.child_failed(acted, pods) else {}
    )
    new_status = kind.derive(cr, acted, pods, now, log_tails)
    # (also when an earlier try created it but lost the answer: the 409 said "exists", no status has it)
    recorded = ((cr.get("status") or {}).get("jobRef") or {}).get("uid")
    unannounced = acted.child is not None and recorded != acted.child["metadata"].get("uid")
    created = acted.child if acted.created or unannounced else None
    await announce(ctx, cr, new_status, created=created, error=acted.error, now=now)
    if not await write_status(ctx, key, kind.info, status_patch(cr.get("status"), new_status)):
        return None
    unposted = await flush_events(ctx.client, str(cr["metadata"].get("uid")))
    if unposted is not None:
        raise unposted  # the Events kept back are posted again by the retry
    return acted.requeue


REFUSED_REASONS = {"quota": "QuotaExceeded", 403: "Forbidden"}
UNWATCHED_REASONS = frozenset(
    {"ChildConflict", "ChildDenied", "OutputInUse", "Refused", *REFUSED_REASONS.values()}
)


def api_refusal(exc: ApiError) -> tuple[str, str]:
    """(reason, message) of a permanent refusal: the API server's own message (it names the quota, or
    the user and the verb RBAC denied) and what to do about it."""
    what = f"the API server refused to {exc.verb or 'call'} {exc.resource or 'a child'}: {exc.message}"
    if exc.quota_exceeded:
        return REFUSED_REASONS["quota"], f"{what}; raise the quota or free some of it (re-checked)"
    if exc.status == 403:
        return REFUSED_REASONS[403], f"{what}; grant the operator's ServiceAccount this (re-checked)"
    return "Refused", f"{what} ({exc.status} {exc.reason}; re-checked)"


async def note_retrying(
    ctx: Context, key: OwnerKey, info: KindInfo, cr: Mapping[str, Any], exc: ApiError
) -> None:
    """Keep the last status but say in its Reconciling condition that an API call is being retried
    (once per distinct message; best effort: the API server may be what failed)."""
    status = cr.get("status") or {}
    message = f"retrying: the API server failed to {exc.verb or 'call'} {exc.resource}: {exc}"[:1024]
    old = get_condition(status, RECONCILING)
    if old is not None and old.get("message") == message:
        return
    retrying = condition(RECONCILING, True, "Retrying", message, (cr.get("metadata") or {}).get("generation"))
    others = [c for c in status.get("conditions") or [] if c.get("type") != RECONCILING]
    conditions = with_transition_times([*others, retrying], status.get("conditions"), ctx.clock())
    try:
        await write_status(ctx, key, info, {"conditions": conditions})
    except ApiError as write_error:
        log.info("%s/%s: could not note the retry in its status: %s", key[0], key[2], write_error)


def check_claim(ctx: Context, info: KindInfo, cr: Mapping[str, Any]) -> None:
    """Raise InvalidSpec (OutputInUse) when another CR of the namespace holds the location ``cr``
    would write to (:mod:`sft_operator.claims`); called before a CR's first child is created."""
    holder = claimed_by(info.kind, cr, ctx.caches.crs_in(cr["metadata"]["namespace"], info.kind))
    if holder is not None:
        raise InvalidSpec(claim_message(info.kind, cr, holder), reason="OutputInUse")


def recheck_delay(ctx: Context, old_status: Mapping[str, Any] | None, reasons: frozenset[str]) -> float:
    """Grow with the time a CR has been blocked on one of ``reasons``: base, then ~the age of the
    Stalled condition, capped at recheck_max."""
    cond = get_condition(old_status, "Stalled")
    if cond is None or cond.get("reason") not in reasons or cond.get("status") != "True":
        return ctx.recheck_base
    since, now = parse_time(cond.get("lastTransitionTime")), parse_time(ctx.clock())
    if since is None or now is None:
        return ctx.recheck_base
    blocked = (now - since).total_seconds()
    return max(ctx.recheck_base, min(blocked, ctx.recheck_max))


def rendered(ctx: Context, cr: Mapping[str, Any], render: Callable[[], T]) -> T:
    """``render()`` of ``cr``, computed once per spec generation (or the InvalidSpec it raised).

    Rendering (spec validation, the pod template, the ConfigMap's YAML) is most of a reconcile's CPU,
    and its result depends only on the spec, the CR's name, namespace and uid (all fixed for one
    ``(uid, metadata.generation)``: the API server bumps the generation on every spec change) and the
    operator's defaults (fixed for its life). A CR without a generation is rendered every time.
    """
    meta = cr.get("metadata") or {}
    generation = meta.get("generation")
    if not isinstance(generation, int):
        return render()
    key = (meta["namespace"], str(cr.get("kind")), meta["name"])
    version = (str(meta.get("uid")), generation)
    cached = ctx.renders.get(key)
    if cached is None or cached[0] != version:
        try:
            result: Any = render()
        except InvalidSpec as exc:
            result = exc
        ctx.renders[key] = cached = (version, result)
    if isinstance(cached[1], InvalidSpec):
        raise cached[1].with_traceback(None)
    return cached[1]


async def ensure_own_child(
    ctx: Context, res: Resource, desired: Mapping[str, Any], owner_uid: str, owner_desc: str
) -> Ensured:
    """:func:`ensure_child` for the watched child that runs the pods: the one we create is noted, so
    its ADDED event (the object this reconcile already derived the status from) triggers nothing."""
    ensured = await ensure_child(ctx.client, res, desired, owner_uid, owner_desc)
    if ensured.created:
        ctx.remember_child(ensured.obj)
    return ensured


def cr_resource(info: KindInfo) -> Resource:
    return Resource(GROUP, VERSION, info.plural)


def live_cr(ctx: Context, key: OwnerKey) -> Mapping[str, Any] | None:
    """The CR to reconcile (our own last status write if the watch lags), or None once it is gone."""
    cached = ctx.caches.cr(key)
    if cached is None or (cached.get("metadata") or {}).get("deletionTimestamp"):
        ctx.forget(key)
        return None
    return ctx.latest(key, cached)


async def ensure_config_map(
    ctx: Context, desired: Mapping[str, Any], owner_uid: str, owner_desc: str
) -> Mapping[str, Any]:
    """Create the ConfigMap, or update one rendered from an earlier spec (called only while no Job
    exists, so the spec may still change and the pods have not read it yet)."""
    ensured = await ensure_child(ctx.client, CONFIGMAPS, desired, owner_uid, owner_desc)
    if ensured.created or ensured.obj.get("data") == desired["data"]:
        return ensured.obj
    cm_meta = desired["metadata"]
    body = {"data": desired["data"], "metadata": {"annotations": cm_meta["annotations"]}}
    return await ctx.client.patch(CONFIGMAPS, cm_meta["namespace"], cm_meta["name"], body)


async def ensure_workload_identity(
    ctx: Context, info: KindInfo, cr: Mapping[str, Any], owner_desc: str
) -> None:
    """The CR's ServiceAccount (unless its pods use another), Role and RoleBinding (see
    :mod:`sft_operator.render.identity`); called while its Job does not exist yet, before the Job."""
    identity = render_identity(info, cr, ctx.defaults)
    uid = cr["metadata"]["uid"]
    # The Role before its binding (RBAC checks a binding against the rules of the Role it names).
    first = [ensure_child(ctx.client, ROLES, identity.role, uid, owner_desc)]
    if identity.service_account is not None:
        first.append(ensure_child(ctx.client, SERVICEACCOUNTS, identity.service_account, uid, owner_desc))
    await asyncio.gather(*first)
    desired = identity.role_binding
    binding = await ensure_child(ctx.client, ROLEBINDINGS, desired, uid, owner_desc)
    if binding.obj.get("subjects") != desired["subjects"]:  # spec.serviceAccountName changed
        meta = desired["metadata"]
        await ctx.client.patch(
            ROLEBINDINGS, meta["namespace"], meta["name"], {"subjects": desired["subjects"]}
        )


async def together(first: Awaitable[Any], second: Awaitable[T]) -> T:
    """Run two independent steps concurrently (one round trip instead of two); the first one's error
    wins, as if they had run in order. Returns the second's result."""
    results = await asyncio.gather(first, second, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results[1]  # type: ignore[return-value]


async def write_status(ctx: Context, key: OwnerKey, info: KindInfo, patch_body: Mapping[str, Any]) -> bool:
    """Merge-patch the status subresource (nothing when ``patch_body`` is empty); False when the CR
    vanished meanwhile, so the caller stops."""
    if not patch_body:
        return True
    namespace, _kind, name = key
    try:
        updated = await ctx.client.patch(
            cr_resource(info), namespace, name, {"status": dict(patch_body)}, subresource="status"
        )
    except ApiError as exc:
        if exc.not_found:
            return False
        raise
    ctx.remember(key, updated)
    return True


async def announce(
    ctx: Context,
    cr: Mapping[str, Any],
    new_status: Recorded,
    *,
    created: Mapping[str, Any] | None,
    error: tuple[str, str] | None,
    now: str,
) -> None:
    """Events for what this reconcile changed: the child it created, spec fields the API server
    dropped (once per distinct list), then a phase change (or a new Stalled reason, so each distinct
    spec problem is announced once)."""
    if created is not None:
        text = f"created {created.get('kind')} {created['metadata']['name']}"
        await record_event(ctx.client, cr, "Normal", "JobCreated", text, now)
    old = cr.get("status") or {}
    conditions = {c.type: c for c in new_status.conditions}
    pruned = conditions.get(FIELDS_PRUNED)
    if pruned is not None and pruned.message != (get_condition(old, FIELDS_PRUNED) or {}).get("message"):
        await record_event(ctx.client, cr, "Warning", pruned.reason, pruned.message, now)
    for type_ in WARNING_CONDITIONS:  # e.g. Hung: announced when it turns True or its reason changes
        cond = conditions.get(type_)
        before = get_condition(old, type_) or {}
        if (
            cond is not None
            and cond.status == "True"
            and (before.get("status") != "True" or before.get("reason") != cond.reason)
        ):
            # once per occurrence: a hung run restarted again in the same generation is a new Event
            restarts = new_status.restart_count if isinstance(new_status, SFTRunStatus) else None
            occurrence = f"{restarts or 0}"
            await record_event(
                ctx.client, cr, "Warning", f"{type_}{cond.reason}", cond.message, now, occurrence
            )
    ready = conditions.get(READY)
    new_reason = ready.reason if ready is not None else None
    if new_status.phase == old.get("phase") and (error is None or new_reason == ready_reason(old)):
        return
    failed = new_status.phase in WARNING_PHASES
    type_ = "Warning" if failed or error is not None else "Normal"
    reason = new_reason if (error is not None or failed) else str(new_status.phase)
    await record_event(ctx.client, cr, type_, reason or "Unknown", new_status.message or "", now)


async def failed_pod_log_tail(
    ctx: Context, cr: Mapping[str, Any], pods: list[PodState], namespace: str, container: str
) -> dict[str, str]:
    """``{pod: log tail}`` for the pod to blame, read once per pod; call only when the child failed.

    Empty when the recorded status or the pod's termination message (FallbackToLogsOnError) already
    holds its last lines: pods/log is read only when nothing else says why the pod died.
    """
    blamed = latest_failed(pods)
    if blamed is None or ctx.log_tail_lines <= 0:  # 0: pods/log is not ours to read (chart rbac.podLogs)
        return {}
    recorded = (cr.get("status") or {}).get("failure") or {}
    if recorded.get("pod") == blamed.name and recorded.get("logTail"):
        return {blamed.name: recorded["logTail"]}
    if describe_failure(blamed).get("logTail"):
        return {}
    cache_key = (namespace, blamed.name)
    if cache_key not in ctx.log_tails:
        try:
            text = await ctx.client.pod_log(namespace, blamed.name, container, ctx.log_tail_lines)
        except ApiError as exc:
            log.info("no log for %s: %s", blamed.name, exc)
            text = ""
        ctx.log_tails[cache_key] = text[-LOG_TAIL_CHARS:]
        if len(ctx.log_tails) > LOG_TAIL_CACHE:  # bounded: keep the newest entries
            ctx.log_tails.pop(next(iter(ctx.log_tails)))
    tail = ctx.log_tails[cache_key]
    return {blamed.name: tail} if tail else {}
