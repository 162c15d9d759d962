"""``SFTRun`` on the shared reconcile skeleton (:mod:`sft_operator.reconcile_steps`): resolve the data,
render, ensure the ConfigMap and the backend's child, patch suspend; status via the backend.

Before the child exists the run depends on its SFTDataPrep: the prep's watch events trigger this
reconcile (see :mod:`sft_operator.handlers_sftrun`), and a slow fallback re-check covers a missed
event. Once the child exists, the data is fixed (recorded in the ConfigMap and in
``status.outputs.data``) and the prep no longer matters.

The backend is chosen when the data is ready and the child is about to be created (see
:mod:`sft_operator.backends`), from the CRDs the cluster serves then (API discovery). When none fits
(or the create answers 404 because the CRD went away), the run goes ``Stalled`` with a message saying
what to install and is re-checked with a growing interval (no crash loop, no error spam), so it
starts by itself once the CRD is there. Once the child exists its kind fixes the backend.

Before anything is created the resolved data is checked against the run's parallelism (the pack's
padSeqToMult), so a mismatch is ``Stalled`` with what to change instead of a trainer crash.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from sft_operator import backends
from sft_operator import reconcile_steps as steps
from sft_operator.api.meta import DATAPREP, RUN
from sft_operator.api.sftrun import SFTRunSpec, SFTRunStatus
from sft_operator.backends.base import Backend, GroupMember
from sft_operator.context import Context, OwnerKey
from sft_operator.errors import InvalidSpec
from sft_operator.kube.children import ensure_child, stale_reason
from sft_operator.kube.client import ApiError
from sft_operator.render import sftrun as render
from sft_operator.render.meta import is_controlled_by
from sft_operator.status import sftrun as status
from sft_operator.status.common import finished
from sft_operator.status.hang import HangState, hang_state
from sft_operator.status.pods import PodState, pod_state
from sft_operator.status.rundata import DataState, padding_problem, resolve_data

log = logging.getLogger(__name__)
BLOCKED_REASONS = frozenset({backends.CRD_MISSING})
"""Stalled reasons that only a cluster change clears (re-checked with a growing interval)."""


class CrdMissing(Exception):
    """The API server does not serve the backend's child resource (reason, message in args)."""


async def _restart_member(ctx: Context, namespace: str, member: GroupMember) -> None:
    """Delete ``member``, or patch its status as :attr:`GroupMember.status_patch` says (a 409 from a
    concurrent write propagates: the run is still hung on the next reconcile, which tries again)."""
    if member.status_patch is None:
        await ctx.client.delete(member.resource, namespace, member.name)
        return
    current = await ctx.client.get(member.resource, namespace, member.name)
    patch = member.status_patch(current)
    await ctx.client.patch(member.resource, namespace, member.name, patch, subresource="status")


def own_child(ctx: Context, cr: Mapping[str, Any], key: OwnerKey) -> tuple[Backend, Mapping[str, Any]] | None:
    """The run's child and its backend: the recorded backend's, else any backend's (a crash between
    creating the child and recording it in status)."""
    uid = cr["metadata"]["uid"]
    recorded = backends.recorded(cr.get("status"))
    for backend in [recorded] if recorded is not None else backends.PREFERENCE:
        mine = [
            c
            for c in ctx.caches.run_children_of(backend.resource, key)
            if is_controlled_by(c, uid) and c.get("kind") == backend.kind
        ]
        if mine:  # several only for a moment: a replaced child (Backend.replaces) and its successor
            return backend, max(mine, key=_created)
    return None


def _created(child: Mapping[str, Any]) -> tuple[str, int]:
    meta = child.get("metadata") or {}
    rv = str(meta.get("resourceVersion") or "")
    return str(meta.get("creationTimestamp") or ""), int(rv) if rv.isdigit() else 0


@dataclass
class RunActed(steps.Acted):
    """:class:`~sft_operator.reconcile_steps.Acted` plus what only an SFTRun's derive needs."""

    backend: Backend | None = None
    """The run's backend (None until known: from the child, the status or the spec)."""
    data: DataState | None = None
    """Where spec.data stands; None once the child exists (recorded in status.outputs.data)."""
    hang: HangState | None = None
    """What hang detection found (spec.hangTimeout)."""


class RunKind(steps.Kind[RunActed]):
    info = RUN

    def new_acted(self) -> RunActed:
        return RunActed()

    async def act(self, ctx: Context, cr: Mapping[str, Any], acted: RunActed) -> None:
        namespace, name, uid = cr["metadata"]["namespace"], cr["metadata"]["name"], cr["metadata"]["uid"]
        key = (namespace, RUN.kind, name)
        desc = f"SFTRun {name}"
        found = own_child(ctx, cr, key)
        backend = found[0] if found else backends.recorded(cr.get("status"))
        acted.backend = backend
        acted.child = found[1] if found else None
        try:
            spec = render.parse_spec(cr)
            if acted.child is None and finished(cr):
                return  # finished and the child was deleted (ttlSecondsAfterFinished): never run it again
            if acted.child is None:
                steps.check_claim(ctx, RUN, cr)
                prep_name = spec.data.data_prep_ref.name if spec.data.data_prep_ref else None
                prep = ctx.caches.cr((namespace, DATAPREP.kind, prep_name)) if prep_name else None
                data = resolve_data(cr, prep)
                acted.data = data
                if not (data.ready and data.uri):
                    if not data.failed:
                        acted.requeue = ctx.recheck_max  # fallback only: the prep's watch events come first
                    return
                problem = padding_problem(spec, data)
                if problem is not None:
                    raise InvalidSpec(problem, reason="DataPaddingMismatch")
                backend = backend or await self._choose(ctx, self._wanted(ctx, cr))
                acted.backend = backend
                resolved = render.ResolvedData(data.uri, data.pack_size)
                children = render.render(cr, resolved, ctx.defaults, backend)
                await steps.ensure_workload_identity(ctx, RUN, cr, desc)
                acted.config_map = await steps.ensure_config_map(ctx, children.config_map, uid, desc)
                await self._create(ctx, backend, children, uid, desc, acted)
                return
            assert backend is not None  # found with the child
            stale = stale_reason(acted.child, render.training_spec_hash(spec), desc)
            if stale is not None:
                raise stale
            if backend.replaces(acted.child):
                await self._replace(ctx, cr, backend, uid, desc, acted)
                return
            patch = backend.suspend_patch(acted.child, spec.suspend)
            if patch is not None:
                acted.child = await ctx.client.patch(
                    backend.resource, namespace, acted.child["metadata"]["name"], patch
                )
            await self._watch_hang(ctx, cr, spec, backend, acted)
        except CrdMissing as exc:
            acted.error = (exc.args[0], exc.args[1])
            acted.requeue = _recheck_delay(ctx, cr.get("status"))
            log.info("%s/%s: %s, re-checking in %.0fs", namespace, name, exc.args[0], acted.requeue)

    @staticmethod
    async def _create(
        ctx: Context, backend: Backend, children: render.RunChildren, uid: str, desc: str, acted: RunActed
    ) -> None:
        """Create the backend's companions, then its child (each found by name after a 409)."""
        try:
            for companion in children.companions:
                await ensure_child(ctx.client, companion.resource, companion.manifest, uid, desc)
            ensured = await ensure_child(ctx.client, backend.resource, children.job, uid, desc)
        except ApiError as exc:
            if exc.not_found:
                raise CrdMissing(*backends.missing_message(backend)) from None
            raise
        acted.child, acted.created = ensured.obj, ensured.created

    async def _replace(
        self, ctx: Context, cr: Mapping[str, Any], backend: Backend, uid: str, desc: str, acted: RunActed
    ) -> None:
        """Restart the group by replacing the child (:meth:`Backend.replaces`): render it again from
        the data recorded in status.outputs and the child it replaces, delete the old one (its pods
        go with it), create the new one."""
        cached = acted.child
        assert cached is not None
        namespace, name = cached["metadata"]["namespace"], cached["metadata"]["name"]
        old: Mapping[str, Any] | None
        try:
            old = await ctx.client.get(backend.resource, namespace, name)
        except ApiError as exc:
            if not exc.not_found:
                raise
            old = None
        if old is not None and (
            old["metadata"].get("uid") != cached["metadata"].get("uid") or not backend.replaces(old)
        ):
            acted.child = old  # the cache has not seen the replacement yet: nothing to do
            return
        old = old or cached
        outputs = (cr.get("status") or {}).get("outputs") or {}
        resolved = render.ResolvedData(str(outputs.get("data") or ""), outputs.get("packSize"))
        children = render.render(cr, resolved, ctx.defaults, backend, previous=old)
        try:
            await ctx.client.delete(backend.resource, namespace, name)
        except ApiError as exc:
            if not exc.not_found:
                raise
        log.info(
            "%s/%s: replacing %s %s to restart the group",
            namespace,
            cr["metadata"]["name"],
            backend.kind,
            name,
        )
        await self._create(ctx, backend, children, uid, desc, acted)

    @staticmethod
    async def _watch_hang(
        ctx: Context, cr: Mapping[str, Any], spec: SFTRunSpec, backend: Backend, acted: RunActed
    ) -> None:
        """Hang detection (spec.hangTimeout, :mod:`sft_operator.status.hang`): look again when the run
        would count as hung (no event comes when nothing moves); once hung, with spec.restartOnHang,
        restart the training group through the backend (its controller recreates what is deleted)."""
        timeout = spec.hang_seconds()
        if timeout <= 0 or acted.child is None or finished(cr):
            return
        hang = hang_state(cr.get("status"), ctx.clock(), timeout)
        # Not Running (yet) as recorded: look again within the timeout, the status may say Running then.
        recheck = hang.recheck if hang is not None else timeout
        acted.requeue = min(acted.requeue or recheck, recheck)
        if hang is None:
            return
        if hang.hung and spec.restart_on_hang:
            namespace = cr["metadata"]["namespace"]
            for member in backend.restart_group(acted.child):
                try:
                    await _restart_member(ctx, namespace, member)
                except ApiError as exc:
                    if not exc.not_found:
                        raise
            log.info("%s/%s: hung, restarted the training group", namespace, cr["metadata"]["name"])
            hang = replace(hang, restarted=True)
        acted.hang = hang

    @staticmethod
    async def _choose(ctx: Context, wanted: str) -> Backend:
        """The backend for a run that starts now: the first of :func:`backends.candidates` whose CRD
        the cluster serves (probed in that order, no further)."""
        for candidate in backends.candidates(wanted):
            if candidate.crd is None or await ctx.client.serves(candidate.resource):
                return candidate
        raise CrdMissing(*backends.missing_message(backends.named(wanted)))  # auto always has job

    @staticmethod
    def _wanted(ctx: Context, cr: Mapping[str, Any]) -> str:
        wanted = (cr.get("spec") or {}).get("backend") or backends.AUTO
        chosen = ctx.default_backend if wanted == backends.AUTO else wanted
        return chosen if chosen in backends.NAMES else backends.AUTO

    def pods(self, ctx: Context, key: OwnerKey, acted: RunActed) -> tuple[list[PodState], str]:
        """The run's pods as its backend reads them; none before a backend was chosen (no child)."""
        backend = acted.backend
        if backend is None:
            return [], ""
        pods = [pod_state(p, backend.container, backend.role) for p in ctx.caches.pods_of(key)]
        return pods, backend.container

    def child_failed(self, acted: RunActed, pods: list[PodState]) -> bool:
        backend = acted.backend
        if acted.child is None or backend is None:
            return False
        return backend.observe({}, acted.child, backend.pods_of(acted.child, pods)).phase == "Failed"

    def derive(
        self,
        cr: Mapping[str, Any],
        acted: RunActed,
        pods: list[PodState],
        now: str,
        log_tails: Mapping[str, str],
    ) -> SFTRunStatus:
        return status.derive(
            cr,
            acted.child,
            pods,
            now=now,
            config_map=acted.config_map,
            error=acted.error,
            log_tails=log_tails,
            backend=acted.backend,
            data=acted.data,
            hang=acted.hang,
        )


KIND = RunKind()


def _recheck_delay(ctx: Context, old_status: Mapping[str, Any] | None) -> float:
    return steps.recheck_delay(ctx, old_status, BLOCKED_REASONS)
