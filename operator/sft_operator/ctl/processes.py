"""The local processes of ``sftctl run --local`` as the operator's status derivation sees a child.

A local run has one path to its status, the operator's: :func:`run_status` hands a
:class:`LocalProcesses` snapshot (the processes' exit codes, termination messages and progress lines)
to :func:`sft_operator.status.sftrun.derive` through :data:`OBSERVER`, and applies the patch the
operator would send (:func:`sft_operator.status.sftrun.status_patch`) to the stored status, as the
API server applies it; :func:`prep_status` does the same for an SFTDataPrep's workers
(:func:`sft_operator.status.dataprep.derive` with :func:`observe_prep` in place of
:func:`~sft_operator.status.dataprep.observe_job`). Nothing here writes a Job's or a training
operator's status: the processes are observed directly, into the same typed
:class:`~sft_operator.backends.base.Observed` the cluster's observers return.

Why a process observer behind the ``observe`` seam and not a backend of the registry: a backend is
what the operator offers a cluster (its manifest, companions, rendezvous, suspension, restart group,
RBAC rules and a place in ``spec.backend``'s enum and in auto's order); a local run has none of these
(one process, no manifest, nothing to suspend or delete), so as a :class:`Backend` it would be a class
of stubs, and every consumer of the registry (auto, the CRD enum, RBAC, the chart) would have to
filter it out. :class:`~sft_operator.backends.base.Observer` is the part of a backend the status
derivation uses (name, kind, its pods, observe); a ``Backend`` is one, and so is
:class:`ProcessObserver`, which the registry never sees: it cannot be offered to a cluster.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from sft_operator.api.dataprep import SFTDataPrepStatus
from sft_operator.api.sftrun import SFTRunStatus
from sft_operator.backends.base import FINISHED, Observed, running_or_pending
from sft_operator.status import dataprep as status_dataprep
from sft_operator.status import sftrun as status_sftrun
from sft_operator.status.patch import apply_merge_patch
from sft_operator.status.pods import PodState
from sft_operator.status.rundata import DataState

LOCAL_API_VERSION = "sftctl.local/v1"
"""The apiVersion a local run's status.jobRef names (no API group: nothing serves it)."""
NODE = "node"
"""The role of a local training process (the one node a local run reproduces)."""


@dataclass(frozen=True)
class ProcessState:
    """One local process (a 'pod'): what a kubelet would report of its container."""

    name: str
    index: int
    exit_code: int | None
    """None while it runs; 128 + N when signal N ended it (as a container runtime reports it)."""
    termination_message: str | None = None
    """The workload's result (SFT_TERMINATION_LOG), else the tail of its log when it failed
    (``FallbackToLogsOnError``)."""
    finished_at: str | None = None
    progress: dict[str, Any] | None = None
    """Its latest progress line (what it would merge-patch into ``status.progress``)."""

    def pod(self, owner_uid: str, replica_type: str | None = NODE) -> PodState:
        code = self.exit_code
        return PodState(
            name=self.name,
            phase="Running" if code is None else ("Succeeded" if code == 0 else "Failed"),
            uid=self.name,
            owner_uid=owner_uid,
            index=self.index,
            replica_type=replica_type,
            rank0=self.index == 0,
            exit_code=code,
            terminated_reason=None if code is None else ("Completed" if code == 0 else "Error"),
            termination_message=self.termination_message,
            finished_at=self.finished_at,
        )


@dataclass(frozen=True)
class LocalProcesses:
    """A local run's processes at one moment: the child the status derivation observes."""

    name: str
    uid: str
    start_time: str
    processes: tuple[ProcessState, ...] = field(default_factory=tuple)

    def child(self) -> dict[str, Any]:
        """The reference the status records (``status.jobRef``) and its start."""
        return {
            "apiVersion": LOCAL_API_VERSION,
            "kind": ProcessObserver.kind,
            "metadata": {"name": self.name, "uid": self.uid},
            "status": {"startTime": self.start_time},
        }

    def pods(self, replica_type: str | None = NODE) -> list[PodState]:
        return [p.pod(self.uid, replica_type) for p in self.processes]

    def to_json(self) -> dict[str, Any]:
        """The snapshot as ``sftctl run --local`` stores it beside status.json (:meth:`from_json`)."""
        return asdict(self)

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> LocalProcesses:
        procs = tuple(ProcessState(**p) for p in raw.get("processes") or [])
        return cls(str(raw["name"]), str(raw["uid"]), str(raw["start_time"]), procs)

    def progress(self) -> dict[str, Any] | None:
        """Rank 0's latest progress line (the trainer's part of ``status.progress``)."""
        return next((p.progress for p in self.processes if p.index == 0 and p.progress), None)


class ProcessObserver:
    """Observes :class:`LocalProcesses` (an :class:`~sft_operator.backends.base.Observer`; see the
    module docstring for why it is no registry backend). Processes are not restarted locally: the
    first that fails fails the run, and it succeeds when every one exited 0."""

    name = "local"
    kind = "LocalProcesses"

    def pods_of(self, child: Mapping[str, Any], pods: list[PodState]) -> list[PodState]:
        return pods

    def observe(self, spec: Mapping[str, Any], child: Mapping[str, Any], pods: list[PodState]) -> Observed:
        failed = _failed(pods)
        if failed is not None:
            return failed
        if _all_succeeded(pods):
            return Observed("Succeeded", "Succeeded", FINISHED, completion_time=_last_finish(pods))
        return Observed(*running_or_pending(pods, len(pods) or 1))


def observe_prep(spec: Mapping[str, Any], child: Mapping[str, Any], pods: list[PodState]) -> Observed:
    """An SFTDataPrep's worker processes, as :func:`~sft_operator.status.dataprep.observe_job` reads its
    Job: a worker is not retried, so the prep fails once every worker ended and one failed."""
    workers = int(spec.get("parallelism") or 1)
    done = sum(1 for p in pods if p.exit_code == 0)
    if pods and all(p.exit_code is not None for p in pods):
        failed = _failed(pods)
        if failed is not None:
            return replace(failed, succeeded=done)
        return Observed(
            "Succeeded",
            "Succeeded",
            status_dataprep.workers_finished(workers),
            completion_time=_last_finish(pods),
            succeeded=done,
        )
    return Observed(*status_dataprep.workers_state(workers, pods, done), succeeded=done)


def _failed(pods: list[PodState]) -> Observed | None:
    """The last process that exited non-zero, as a Failed observation (processes are not retried)."""
    failed = [p for p in pods if p.exit_code not in (None, 0)]
    if not failed:
        return None
    last = max(failed, key=lambda p: p.finished_at or "")
    return Observed(
        "Failed",
        "ProcessFailed",
        f"process {last.name} exited {last.exit_code}",
        failed_time=last.finished_at,
    )


def _all_succeeded(pods: list[PodState]) -> bool:
    return bool(pods) and all(p.exit_code == 0 for p in pods)


def _last_finish(pods: list[PodState]) -> str | None:
    return max((p.finished_at for p in pods if p.finished_at), default=None)


OBSERVER = ProcessObserver()


def run_status(
    cr: Mapping[str, Any], seen: LocalProcesses | None, *, now: str, data: DataState | None = None
) -> dict[str, Any]:
    """The SFTRun's stored status after this observation: the trainer's progress merged as it patches
    it, then the operator's patch from :func:`~sft_operator.status.sftrun.derive` applied."""
    stored: dict[str, Any] = dict(cr.get("status") or {})
    progress = seen.progress() if seen is not None else None
    if progress:
        stored = apply_merge_patch(stored, {"progress": progress})
    current = {**cr, "status": stored}
    child = seen.child() if seen is not None else None
    pods = seen.pods() if seen is not None else []
    derived: SFTRunStatus = status_sftrun.derive(current, child, pods, now=now, data=data, backend=OBSERVER)
    return apply_merge_patch(stored, status_sftrun.status_patch(current, derived))


def prep_status(cr: Mapping[str, Any], seen: LocalProcesses, *, now: str) -> dict[str, Any]:
    """The SFTDataPrep's stored status after this observation: each worker's progress merged under
    ``progress.workers.<index>`` as it patches it, then the operator's patch applied."""
    stored: dict[str, Any] = dict(cr.get("status") or {})
    for process in seen.processes:
        if process.progress:
            patch = {"progress": {"workers": {str(process.index): process.progress}}}
            stored = apply_merge_patch(stored, patch)
    current = {**cr, "status": stored}
    derived: SFTDataPrepStatus = status_dataprep.derive(
        current, seen.child(), seen.pods(replica_type=None), now=now, observe=observe_prep
    )
    return apply_merge_patch(stored, status_dataprep.status_patch(current, derived))
