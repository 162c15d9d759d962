"""``SFTDataPrep`` on the shared reconcile skeleton (:mod:`sft_operator.reconcile_steps`): render,
ensure the ConfigMap and the Indexed Job, patch suspend; status from the Job and its pods.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sft_operator import reconcile_steps as steps
from sft_operator.api.dataprep import SFTDataPrepStatus
from sft_operator.api.meta import DATAPREP
from sft_operator.context import Context, OwnerKey
from sft_operator.kube.children import stale_reason
from sft_operator.kube.client import JOBS
from sft_operator.render import dataprep as render
from sft_operator.render.meta import is_controlled_by
from sft_operator.render.suspend import suspend_patch
from sft_operator.status import dataprep as status
from sft_operator.status.conditions import is_true
from sft_operator.status.pods import PodState, pod_state


class DataPrepKind(steps.Kind[steps.Acted]):
    info = DATAPREP

    def new_acted(self) -> steps.Acted:
        return steps.Acted()

    async def act(self, ctx: Context, cr: Mapping[str, Any], acted: steps.Acted) -> None:
        uid = cr["metadata"]["uid"]
        key = (cr["metadata"]["namespace"], DATAPREP.kind, cr["metadata"]["name"])
        desc = f"SFTDataPrep {key[2]}"
        jobs = [j for j in ctx.caches.jobs_of(key) if is_controlled_by(j, uid)]
        acted.child = jobs[0] if jobs else None
        children = steps.rendered(ctx, cr, lambda: render.render(cr, ctx.defaults))
        if acted.child is None and not status.finished(cr):
            # (A finished CR whose Job was cleaned up by its TTL keeps its result: never run it again.)
            steps.check_claim(ctx, DATAPREP, cr)
            # The ConfigMap along with the identity (the pods need both, and the Job needs the pods'
            # ServiceAccount): three round trips before the Job instead of four.
            acted.config_map = await steps.together(
                steps.ensure_workload_identity(ctx, DATAPREP, cr, desc),
                steps.ensure_config_map(ctx, children.config_map, uid, desc),
            )
            ensured = await steps.ensure_own_child(ctx, JOBS, children.job, uid, desc)
            acted.child, acted.created = ensured.obj, ensured.created
        if acted.child is not None:
            stale = stale_reason(acted.child, children.spec_hash, desc)
            if stale is not None:
                raise stale
            patch = suspend_patch(acted.child, bool((cr.get("spec") or {}).get("suspend")))
            if patch is not None:
                acted.child = await ctx.client.patch(JOBS, key[0], acted.child["metadata"]["name"], patch)
                ctx.remember_child(acted.child)

    def pods(self, ctx: Context, key: OwnerKey, acted: steps.Acted) -> tuple[list[PodState], str]:
        return [pod_state(p, render.CONTAINER) for p in ctx.caches.pods_of(key)], render.CONTAINER

    def child_failed(self, acted: steps.Acted, pods: list[PodState]) -> bool:
        job_status = (acted.child or {}).get("status")
        return is_true(job_status, "Failed") or is_true(job_status, "FailureTarget")

    def derive(
        self,
        cr: Mapping[str, Any],
        acted: steps.Acted,
        pods: list[PodState],
        now: str,
        log_tails: Mapping[str, str],
    ) -> SFTDataPrepStatus:
        return status.derive(
            cr,
            acted.child,
            pods,
            now=now,
            config_map=acted.config_map,
            error=acted.error,
            log_tails=log_tails,
        )


KIND = DataPrepKind()
