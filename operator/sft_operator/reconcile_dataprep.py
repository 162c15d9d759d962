"""One level-triggered reconcile of an ``SFTDataPrep``: render, ensure children, derive status.

Order matters for idempotency: children are created before the status records them (a crash in
between is healed by the next run's 409 + ownership check), and the status is patched before the
transition's Event is posted (a crash in between loses an Event, never duplicates work).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from sft_operator.api.meta import DATAPREP
from sft_operator.context import Context, OwnerKey
from sft_operator.errors import InvalidSpec
from sft_operator.kube.children import ensure_child, stale_reason
from sft_operator.kube.client import CONFIGMAPS, JOBS, ApiError, Resource
from sft_operator.kube.events import record_event
from sft_operator.render import dataprep as render
from sft_operator.render.meta import is_controlled_by
from sft_operator.render.suspend import suspend_patch
from sft_operator.status import dataprep as status
from sft_operator.status.pods import describe_failure, latest_failed, pod_state

log = logging.getLogger(__name__)
RESOURCE = Resource(DATAPREP.api_version.split("/")[0], DATAPREP.api_version.split("/")[1], DATAPREP.plural)
WARNING_PHASES = {"Failed"}


async def reconcile(ctx: Context, key: OwnerKey) -> float | None:
    namespace, _kind, name = key
    cached = ctx.caches.cr(key)
    if cached is None or (cached.get("metadata") or {}).get("deletionTimestamp"):
        ctx.forget(key)
        return None
    cr = ctx.latest(key, cached)
    uid = cr["metadata"]["uid"]
    desc = f"SFTDataPrep {name}"
    jobs = [j for j in ctx.caches.children(key) if is_controlled_by(j, uid)]
    job: Mapping[str, Any] | None = jobs[0] if jobs else None
    config_map: Mapping[str, Any] | None = None
    error: tuple[str, str] | None = None
    created = False
    try:
        children = render.render(cr, ctx.defaults)
        if job is None and finished(cr):
            # Finished, and the Job was cleaned up (ttlSecondsAfterFinished): the recorded result
            # stands; re-creating the Job would run the prep again.
            pass
        elif job is None:
            ensured_cm = await ensure_child(ctx.client, CONFIGMAPS, children.config_map, uid, desc)
            config_map = ensured_cm.obj
            if not ensured_cm.created and config_map.get("data") != children.config_map["data"]:
                # A ConfigMap from an earlier spec and no Job yet: the spec may still change.
                cm_meta = children.config_map["metadata"]
                body = {
                    "data": children.config_map["data"],
                    "metadata": {"annotations": cm_meta["annotations"]},
                }
                config_map = await ctx.client.patch(CONFIGMAPS, namespace, cm_meta["name"], body)
            ensured_job = await ensure_child(ctx.client, JOBS, children.job, uid, desc)
            job, created = ensured_job.obj, ensured_job.created
        if job is not None:
            stale = stale_reason(job, children.spec_hash, desc)
            if stale is not None:
                raise stale
            patch = suspend_patch(job, bool((cr.get("spec") or {}).get("suspend")))
            if patch is not None:
                job = await ctx.client.patch(JOBS, namespace, job["metadata"]["name"], patch)
    except InvalidSpec as exc:
        error = (exc.reason, exc.message)
    pods = [pod_state(p, render.CONTAINER) for p in ctx.caches.pods_of(key)]
    now = ctx.clock()
    log_tails = await _log_tails(ctx, cr, job, pods, namespace)
    new_status = status.derive(
        cr, job, pods, now=now, config_map=config_map, error=error, log_tails=log_tails
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
            ctx.client, cr, "Normal", "JobCreated", f"created Job {job['metadata']['name']}", now
        )
    old_phase = (cr.get("status") or {}).get("phase")
    old_reason = _ready_reason(cr.get("status"))
    new_reason = _ready_reason(new_status)
    if new_status.get("phase") != old_phase or (error is not None and new_reason != old_reason):
        type_ = "Warning" if new_status["phase"] in WARNING_PHASES or error is not None else "Normal"
        reason = new_reason if error is not None or new_status["phase"] == "Failed" else new_status["phase"]
        await record_event(ctx.client, cr, type_, reason, new_status.get("message") or "", now)
    if error is not None and error[0] == "ChildConflict":
        # The object in the way is not ours, so its deletion triggers nothing here: look again later.
        return ctx.recheck_base
    return None


def finished(cr: Mapping[str, Any]) -> bool:
    """The CR recorded a terminal result for a Job it created (status survives the Job)."""
    st = cr.get("status") or {}
    return st.get("phase") in status.TERMINAL and bool(st.get("jobRef"))


def _ready_reason(st: Mapping[str, Any] | None) -> str | None:
    for cond in (st or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return cond.get("reason")
    return None


async def _log_tails(
    ctx: Context, cr: Mapping[str, Any], job: Mapping[str, Any] | None, pods: list[Any], namespace: str
) -> dict[str, str]:
    """Fetch the log tail of the pod to blame once (when the Job failed and the status lacks it)."""
    if job is None:
        return {}
    jstatus = job.get("status") or {}
    failed = any(
        c.get("type") in ("Failed", "FailureTarget") and c.get("status") == "True"
        for c in jstatus.get("conditions") or []
    )
    if not failed:
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
    if cache_key not in ctx.log_tails:
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
