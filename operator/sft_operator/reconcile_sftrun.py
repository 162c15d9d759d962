"""One level-triggered reconcile of an ``SFTRun``: resolve the data, render, ensure children, status.

Before the PyTorchJob exists the run depends on its SFTDataPrep: the prep's watch events trigger
this reconcile (see :mod:`sft_operator.handlers_sftrun`), and a slow fallback re-check covers a
missed event. Once the PyTorchJob exists, the data is fixed (recorded in the ConfigMap and in
``status.outputs.data``) and the prep no longer matters.

A cluster without the PyTorchJob CRD answers 404 to the create: the run goes ``Stalled`` with a
message saying so and is re-checked with a growing interval (no crash loop, no error spam), so it
starts by itself once the Kubeflow training-operator is installed.

Ordering is O's (see :mod:`sft_operator.reconcile_dataprep`): children before the status that
records them, status before the transition's Event.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sft_operator.api.meta import DATAPREP, GROUP, RUN, VERSION
from sft_operator.context import Context, OwnerKey
from sft_operator.errors import InvalidSpec
from sft_operator.kube.children import ensure_child, stale_reason
from sft_operator.kube.client import CONFIGMAPS, ApiError, Resource
from sft_operator.kube.events import record_event
from sft_operator.render import sftrun as render
from sft_operator.render.meta import is_controlled_by
from sft_operator.render.suspend import suspend_patch
from sft_operator.status import sftrun as status
from sft_operator.status.conditions import get_condition
from sft_operator.status.pods import describe_failure, latest_failed, pod_state

log = logging.getLogger(__name__)
RESOURCE = Resource(GROUP, VERSION, RUN.plural)
PYTORCHJOBS = Resource("kubeflow.org", "v1", "pytorchjobs")
CRD_MISSING = "PyTorchJobCRDMissing"
CRD_MISSING_MESSAGE = (
    "the PyTorchJob CRD (pytorchjobs.kubeflow.org, version v1) is not installed in this cluster: install "
    "the Kubeflow training-operator (v1); the run starts by itself once the CRD is there"
)
WARNING_PHASES = {"Failed"}


class CrdMissing(Exception):
    """The API server does not serve kubeflow.org/v1 pytorchjobs."""


async def reconcile(ctx: Context, key: OwnerKey) -> float | None:
    namespace, _kind, name = key
    cached = ctx.caches.cr(key)
    if cached is None or (cached.get("metadata") or {}).get("deletionTimestamp"):
        ctx.forget(key)
        return None
    cr = ctx.latest(key, cached)  # our own last status write, if the watch has not delivered it yet
    uid = cr["metadata"]["uid"]
    desc = f"SFTRun {name}"
    jobs = [j for j in ctx.caches.pytorchjobs_of(key) if is_controlled_by(j, uid)]
    job: Mapping[str, Any] | None = jobs[0] if jobs else None
    config_map: Mapping[str, Any] | None = None
    data: status.DataState | None = None
    error: tuple[str, str] | None = None
    created = False
    requeue: float | None = None
    try:
        spec = render.parse_spec(cr)
        old = cr.get("status") or {}
        if job is None and old.get("jobRef") and old.get("phase") in status.TERMINAL:
            pass  # finished and the PyTorchJob was deleted (ttlSecondsAfterFinished): never run it again
        elif job is None:
            prep_name = spec.data.data_prep_ref.name if spec.data.data_prep_ref else None
            prep = ctx.caches.cr((namespace, DATAPREP.kind, prep_name)) if prep_name else None
            data = status.resolve_data(cr, prep)
            if data.ready and data.uri:
                children = render.render(cr, render.ResolvedData(data.uri, data.pack_size), ctx.defaults)
                config_map = await _ensure_config_map(ctx, children, uid, desc)
                try:
                    ensured = await ensure_child(ctx.client, PYTORCHJOBS, children.job, uid, desc)
                except ApiError as exc:
                    if exc.not_found:
                        raise CrdMissing from None
                    raise
                job, created = ensured.obj, ensured.created
            elif not data.failed:
                requeue = ctx.recheck_max  # fallback only: the prep's watch events trigger us first
        else:
            stale = stale_reason(job, render.training_spec_hash(spec), desc)
            if stale is not None:
                raise stale
            patch = suspend_patch(job, spec.suspend, field=("spec", "runPolicy"))
            if patch is not None:
                job = await ctx.client.patch(PYTORCHJOBS, namespace, job["metadata"]["name"], patch)
    except InvalidSpec as exc:
        error = (exc.reason, exc.message)
    except CrdMissing:
        error = (CRD_MISSING, CRD_MISSING_MESSAGE)
        requeue = _recheck_delay(ctx, cr.get("status"))
        log.info("%s/%s: PyTorchJob CRD missing, re-checking in %.0fs", namespace, name, requeue)
    pods = [pod_state(p, render.CONTAINER) for p in ctx.caches.pods_of(key)]
    now = ctx.clock()
    log_tails = await _log_tails(ctx, cr, job, pods, namespace)
    new_status = status.derive(
        cr, job, pods, now=now, data=data, config_map=config_map, error=error, log_tails=log_tails
    )
    patch_body = status.status_patch(cr, new_status)
    if patch_body:
        try:
            updated = await ctx.client.patch(
                RESOURCE, namespace, name, {"status": patch_body}, subresource="status"
            )
            ctx.remember(key, updated)
        except ApiError as exc:
            if exc.not_found:
                return None
            raise
    if created and job is not None:
        await record_event(
            ctx.client, cr, "Normal", "JobCreated", f"created PyTorchJob {job['metadata']['name']}", now
        )
    await _transition_event(ctx, cr, new_status, error, now)
    return requeue


async def _ensure_config_map(
    ctx: Context, children: render.RunChildren, uid: str, desc: str
) -> Mapping[str, Any]:
    """Create the ConfigMap, or update one rendered earlier (no PyTorchJob yet: the data may differ)."""
    ensured = await ensure_child(ctx.client, CONFIGMAPS, children.config_map, uid, desc)
    config_map = ensured.obj
    if not ensured.created and config_map.get("data") != children.config_map["data"]:
        cm_meta = children.config_map["metadata"]
        body = {"data": children.config_map["data"], "metadata": {"annotations": cm_meta["annotations"]}}
        config_map = await ctx.client.patch(CONFIGMAPS, cm_meta["namespace"], cm_meta["name"], body)
    return config_map


def _recheck_delay(ctx: Context, old_status: Mapping[str, Any] | None) -> float:
    """Grow with the time the run has been blocked: base, then ~the age of the Stalled condition."""
    cond = get_condition(old_status, "Stalled")
    if cond is None or cond.get("reason") != CRD_MISSING or cond.get("status") != "True":
        return ctx.recheck_base
    try:
        since = datetime.strptime(str(cond.get("lastTransitionTime")), "%Y-%m-%dT%H:%M:%SZ")
        now = datetime.strptime(ctx.clock(), "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        return ctx.recheck_base
    blocked = (now - since).total_seconds()
    return max(ctx.recheck_base, min(blocked, ctx.recheck_max))


async def _transition_event(
    ctx: Context,
    cr: Mapping[str, Any],
    new_status: Mapping[str, Any],
    error: tuple[str, str] | None,
    now: str,
) -> None:
    old = cr.get("status") or {}
    old_reason = _ready_reason(old)
    new_reason = _ready_reason(new_status)
    if new_status.get("phase") == old.get("phase") and (error is None or new_reason == old_reason):
        return
    failed = new_status.get("phase") in WARNING_PHASES
    type_ = "Warning" if failed or error is not None else "Normal"
    reason = new_reason if (error is not None or failed) else str(new_status.get("phase"))
    await record_event(ctx.client, cr, type_, reason or "Unknown", new_status.get("message") or "", now)


def _ready_reason(st: Mapping[str, Any] | None) -> str | None:
    cond = get_condition(st, "Ready")
    return cond.get("reason") if cond else None


async def _log_tails(
    ctx: Context, cr: Mapping[str, Any], job: Mapping[str, Any] | None, pods: list[Any], namespace: str
) -> dict[str, str]:
    """Fetch the log tail of the replica to blame once (when the PyTorchJob failed and no tail is known)."""
    if job is None or get_condition(job.get("status"), "Failed") is None:
        return {}
    if (get_condition(job.get("status"), "Failed") or {}).get("status") != "True":
        return {}
    blamed = latest_failed(pods)
    if blamed is None:
        return {}
    recorded = (cr.get("status") or {}).get("failure") or {}
    if recorded.get("pod") == blamed.name and recorded.get("logTail"):
        return {blamed.name: recorded["logTail"]}
    if describe_failure(blamed).get("logTail"):  # the termination message already is the log tail
        return {}
    cache_key = (namespace, blamed.name)
    if cache_key not in ctx.log_tails:  # read a failed pod's log once (shared cache with SFTDataPrep)
        try:
            text = await ctx.client.pod_log(namespace, blamed.name, render.CONTAINER, ctx.log_tail_lines)
        except ApiError as exc:
            log.info("no log for %s: %s", blamed.name, exc)
            text = ""
        ctx.log_tails[cache_key] = text[-4000:]
        if len(ctx.log_tails) > 1000:  # bounded: keep the newest entries
            ctx.log_tails.pop(next(iter(ctx.log_tails)))
    tail = ctx.log_tails[cache_key]
    return {blamed.name: tail} if tail else {}
