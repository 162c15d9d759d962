"""One level-triggered reconcile of an ``SFTDataPrep``: render, ensure children, derive status.

The ordering rules and the steps shared with ``SFTRun`` live in :mod:`sft_operator.reconcile_steps`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sft_operator import reconcile_steps as steps
from sft_operator.api.meta import DATAPREP
from sft_operator.context import Context, OwnerKey
from sft_operator.errors import InvalidSpec
from sft_operator.kube.children import ensure_child, stale_reason
from sft_operator.kube.client import JOBS
from sft_operator.render import dataprep as render
from sft_operator.render.meta import is_controlled_by
from sft_operator.render.suspend import suspend_patch
from sft_operator.status import dataprep as status
from sft_operator.status.conditions import is_true
from sft_operator.status.pods import pod_state


async def reconcile(ctx: Context, key: OwnerKey) -> float | None:
    """Returns seconds until the next look when no watch event will come (a foreign child in the way)."""
    cr = steps.live_cr(ctx, key)
    if cr is None:
        return None
    namespace, _kind, name = key
    uid = cr["metadata"]["uid"]
    desc = f"SFTDataPrep {name}"
    jobs = [j for j in ctx.caches.jobs_of(key) if is_controlled_by(j, uid)]
    job: Mapping[str, Any] | None = jobs[0] if jobs else None
    config_map: Mapping[str, Any] | None = None
    error: tuple[str, str] | None = None
    created = False
    try:
        children = render.render(cr, ctx.defaults)
        if job is None and not status.finished(cr):
            # (A finished CR whose Job was cleaned up by its TTL keeps its result: never run it again.)
            await steps.ensure_workload_identity(ctx, DATAPREP, cr, desc)
            config_map = await steps.ensure_config_map(ctx, children.config_map, uid, desc)
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
    job_status = (job or {}).get("status")
    log_tails = (
        await steps.failed_pod_log_tail(ctx, cr, pods, namespace, render.CONTAINER)
        if is_true(job_status, "Failed") or is_true(job_status, "FailureTarget")
        else {}
    )
    new_status = status.derive(
        cr, job, pods, now=now, config_map=config_map, error=error, log_tails=log_tails
    )
    if not await steps.write_status(ctx, key, DATAPREP, status.status_patch(cr, new_status)):
        return None
    await steps.announce(ctx, cr, new_status, created=job if created else None, error=error, now=now)
    if error is not None and error[0] == "ChildConflict":
        # The object in the way is not ours, so its deletion triggers nothing here: look again later.
        return ctx.recheck_base
    return None
