"""One level-triggered reconcile of an ``SFTRun``: resolve the data, render, ensure children, status.

Before the PyTorchJob exists the run depends on its SFTDataPrep: the prep's watch events trigger
this reconcile (see :mod:`sft_operator.handlers_sftrun`), and a slow fallback re-check covers a
missed event. Once the PyTorchJob exists, the data is fixed (recorded in the ConfigMap and in
``status.outputs.data``) and the prep no longer matters.

A cluster without the PyTorchJob CRD answers 404 to the create: the run goes ``Stalled`` with a
message saying so and is re-checked with a growing interval (no crash loop, no error spam), so it
starts by itself once the Kubeflow training-operator is installed.

Ordering and the steps shared with ``SFTDataPrep`` live in :mod:`sft_operator.reconcile_steps`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sft_operator import reconcile_steps as steps
from sft_operator.api.meta import DATAPREP, RUN
from sft_operator.context import Context, OwnerKey
from sft_operator.errors import InvalidSpec
from sft_operator.kube.children import ensure_child, stale_reason
from sft_operator.kube.client import ApiError, Resource
from sft_operator.render import sftrun as render
from sft_operator.render.meta import is_controlled_by
from sft_operator.render.suspend import suspend_patch
from sft_operator.status import sftrun as status
from sft_operator.status.common import finished
from sft_operator.status.conditions import get_condition, is_true
from sft_operator.status.pods import pod_state

log = logging.getLogger(__name__)
PYTORCHJOBS = Resource("kubeflow.org", "v1", "pytorchjobs")
CRD_MISSING = "PyTorchJobCRDMissing"
CRD_MISSING_MESSAGE = (
    "the PyTorchJob CRD (pytorchjobs.kubeflow.org, version v1) is not installed in this cluster: install "
    "the Kubeflow training-operator (v1); the run starts by itself once the CRD is there"
)


class CrdMissing(Exception):
    """The API server does not serve kubeflow.org/v1 pytorchjobs."""


async def reconcile(ctx: Context, key: OwnerKey) -> float | None:
    """Returns seconds until the next look when no watch event will come (CRD missing, data fallback)."""
    cr = steps.live_cr(ctx, key)
    if cr is None:
        return None
    namespace, _kind, name = key
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
        if job is None and finished(cr):
            pass  # finished and the PyTorchJob was deleted (ttlSecondsAfterFinished): never run it again
        elif job is None:
            prep_name = spec.data.data_prep_ref.name if spec.data.data_prep_ref else None
            prep = ctx.caches.cr((namespace, DATAPREP.kind, prep_name)) if prep_name else None
            data = status.resolve_data(cr, prep)
            if data.ready and data.uri:
                children = render.render(cr, render.ResolvedData(data.uri, data.pack_size), ctx.defaults)
                await steps.ensure_workload_identity(ctx, RUN, cr, desc)
                config_map = await steps.ensure_config_map(ctx, children.config_map, uid, desc)
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
    log_tails = (
        await steps.failed_pod_log_tail(ctx, cr, pods, namespace, render.CONTAINER)
        if is_true((job or {}).get("status"), "Failed")
        else {}
    )
    new_status = status.derive(
        cr, job, pods, now=now, data=data, config_map=config_map, error=error, log_tails=log_tails
    )
    if not await steps.write_status(ctx, key, RUN, status.status_patch(cr, new_status)):
        return None
    await steps.announce(ctx, cr, new_status, created=job if created else None, error=error, now=now)
    return requeue


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
