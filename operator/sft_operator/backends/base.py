"""The seam between an ``SFTRun`` and the controller that runs its pods (see :mod:`sft_operator.backends`).

A backend knows one child kind: its REST resource and the CRD that must be served (and what to tell
the user when it is not), how to wrap the shared pod template and torchrun command into a manifest,
where its controller puts the rendezvous (node rank, master address and port), how suspension is
written, which pods are its own and what their labels say, and how to read the child's status.
Everything else (ConfigMap, pod template, torchrun command, data resolution, the status patch) is
shared and lives outside ``backends/``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from sft_common.result import EXIT_CONFIG, EXIT_PREEMPTED
from sft_operator.api.sftrun import SFTRunSpec
from sft_operator.kube.client import Resource
from sft_operator.render.children import ChildMeta
from sft_operator.render.pods import WorkloadDefaults
from sft_operator.status.pods import (
    DISRUPTION_TARGET,
    JOB_INDEX_ANNOTATION,
    PodRole,
    PodState,
    pending_problem,
)


@dataclass(frozen=True)
class Rendezvous:
    """What torchrun's static rendezvous needs, as the pod sees it (``$(VAR)`` the kubelet expands)."""

    node_rank: str
    master_addr: str
    master_port: str


RENDEZVOUS_PORT = 29500
PORT_ENV = "MASTER_PORT"
NODE_RANK_ENV = "SFT_NODE_RANK"


def indexed_rendezvous(master_addr: str) -> Rendezvous:
    """The rendezvous of pods an Indexed Job runs (JobSet's and the job backend's): the node rank is
    the pod's completion index and the port comes from the container env (:func:`index_rendezvous`),
    both spelled ``$(VAR)`` for the kubelet to expand into the command."""
    return Rendezvous(node_rank=f"$({NODE_RANK_ENV})", master_addr=master_addr, master_port=f"$({PORT_ENV})")


def index_rendezvous(container: dict[str, Any]) -> None:
    """Give an Indexed Job's main ``container`` what :func:`indexed_rendezvous` reads: the node rank
    from the completion-index annotation (the downward API), the port as an env value (so a runtime
    can set it in one place; the emulator gives each restart attempt its own), and the port itself."""
    index = {"fieldRef": {"fieldPath": f"metadata.annotations['{JOB_INDEX_ANNOTATION}']"}}
    container["env"] = [
        {"name": NODE_RANK_ENV, "valueFrom": index},
        {"name": PORT_ENV, "value": str(RENDEZVOUS_PORT)},
        *container["env"],
    ]
    container["ports"] = [{"name": "rendezvous", "containerPort": RENDEZVOUS_PORT, "protocol": "TCP"}]


@dataclass(frozen=True)
class RunPods:
    """What the shared renderer hands a backend: everything but the child's own wrapping."""

    spec: SFTRunSpec
    child: ChildMeta
    name: str
    """Name of the child object."""
    template: dict[str, Any]
    """The pod template (metadata + spec) with the main container named :attr:`Backend.container`."""
    nproc_per_node: int
    defaults: WorkloadDefaults
    previous: Mapping[str, Any] | None = None
    """The child this one replaces (see :meth:`Backend.replaces`), else None."""
    restarts: int = 0
    """The run's restart count so far (status.restartCount)."""


@dataclass(frozen=True)
class GroupMember:
    """An object :meth:`Backend.restart_group` acts on (same namespace as the child): deleted, or,
    with :attr:`status_patch`, read and its status patched."""

    resource: Resource
    name: str
    status_patch: Callable[[Mapping[str, Any]], dict[str, Any]] | None = None
    """The merge patch for the object's ``status`` subresource, made from the object as read (so it
    can carry ``metadata.resourceVersion``: a concurrent write makes it a 409, not a lost update)."""


def failure_rules(container: str) -> list[dict[str, Any]]:
    """A Job's ``podFailurePolicy`` rules for training pods, in Kubernetes' order (first match wins,
    pkg/controller/job/pod_failure_policy.go): exit 2 (the workload's config/data error) fails the
    Job at once; a pod the cluster disrupted (``DisruptionTarget``: preemption, eviction, node drain
    or shutdown, pkg/apis/core types.go) or that exited 143 after a SIGTERM (the trainer saved a
    checkpoint) fails it with reason ``PodFailurePolicy`` too, which the group's policy (JobSet
    failurePolicy rules, :func:`group_failure_rules`) restarts without counting."""
    return [
        {
            "action": "FailJob",
            "onExitCodes": {"containerName": container, "operator": "In", "values": [EXIT_CONFIG]},
        },
        {"action": "FailJob", "onPodConditions": [{"type": DISRUPTION_TARGET, "status": "True"}]},
        {
            "action": "FailJob",
            "onExitCodes": {"containerName": container, "operator": "In", "values": [EXIT_PREEMPTED]},
        },
    ]


CONFIG_ERROR_PATTERN = f"with exit code {EXIT_CONFIG} matching FailJob rule"
"""The Job controller's FailJob message for an exit-code rule: "Container %s for pod %s/%s failed with
exit code %v matching %v rule at index %d" (pkg/controller/job/pod_failure_policy.go)."""


def group_failure_rules() -> list[dict[str, Any]]:
    """JobSet ``failurePolicy.rules`` for :func:`failure_rules`' Jobs (first match wins, JobSet
    pkg/controllers/failure_policy.go): a config error fails the JobSet; any other PodFailurePolicy
    failure (a disruption or exit 143) restarts the group without counting against maxRestarts
    (RestartJobSetAndIgnoreMaxRestarts); everything else (BackoffLimitExceeded: exit 1, a crash)
    falls through to the default RestartJobSet, which counts."""
    return [
        {
            "name": "config-error",
            "action": "FailJobSet",
            "onJobFailureReasons": [POD_FAILURE_POLICY],
            "onJobFailureMessagePatterns": [CONFIG_ERROR_PATTERN],
        },
        {
            "name": "disrupted-or-preempted",
            "action": "RestartJobSetAndIgnoreMaxRestarts",
            "onJobFailureReasons": [POD_FAILURE_POLICY],
        },
    ]


POD_FAILURE_POLICY = "PodFailurePolicy"
"""The Job's Failed reason when a podFailurePolicy FailJob rule matched (batch/v1
JobReasonPodFailurePolicy)."""


@dataclass(frozen=True)
class Observed:
    """What a child's status says, in our terms (see :func:`sft_operator.status.sftrun.derive`)."""

    phase: str
    """Pending, Running, Suspended, Succeeded or Failed."""
    reason: str
    message: str
    failed_reason: str | None = None
    """The child's own reason for failing (its Failed condition)."""
    failed_message: str = ""
    failed_time: str | None = None
    child_reason_wins: bool = False
    """The child's reason says more than the pod's (deadline, retries used up): put it first."""
    completion_time: str | None = None
    start_time: str | None = None
    restarts: int = 0
    """Group restarts the child reports itself (JobSet ``status.restarts``); 0 when it does not."""
    succeeded: int = 0
    """Pods (Job indexes) that completed (an SFTDataPrep's workers done)."""
    restart_marker: str | None = None
    """A value that changes with each restart the child only signals (PyTorchJob Restarting time)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Further status fields mirrored from the child (e.g. Trainer's alpha trainerStatus)."""


@dataclass(frozen=True)
class Companion:
    """An object a backend creates beside its child, before it (e.g. a headless Service for the
    rendezvous): owned by the run like every child, created once, never patched."""

    resource: Resource
    manifest: dict[str, Any]


@dataclass(frozen=True)
class Rule:
    """One RBAC rule the operator needs for a backend (generated into manifests/rbac.yaml and the
    Helm chart by ``make crds``, :mod:`sft_operator.rbacgen`)."""

    group: str
    resources: tuple[str, ...]
    verbs: tuple[str, ...]
    why: str = ""
    """Said beside the rule in manifests/rbac.yaml."""


CHILD_VERBS = ("get", "list", "watch", "create", "patch")
"""What the operator does with a backend's child: watch cache, create, get after a 409, patch suspend."""


class Observer(Protocol):
    """What the status derivation (:func:`sft_operator.status.sftrun.derive`) asks of whatever runs
    the training pods: its name (``status.backend``), the kind of its child, which pods are the
    child's, and what the child's state means (:class:`Observed`). Every :class:`Backend` is one; so
    is ``sftctl run --local``'s process observer (:mod:`sft_operator.ctl.processes`), which is no
    backend: a cluster is never offered it."""

    @property
    def name(self) -> str: ...

    @property
    def kind(self) -> str: ...

    def pods_of(self, child: Mapping[str, Any], pods: list[PodState]) -> list[PodState]: ...

    def observe(
        self, spec: Mapping[str, Any], child: Mapping[str, Any], pods: list[PodState]
    ) -> Observed: ...


class Backend(ABC):
    """One way to run the training pods: one subclass in one module of this package, whose module
    attribute ``BACKEND`` is its instance (found by :mod:`sft_operator.backends`, no list to edit).

    The class attributes below are the backend's facts; every backend sets each of them.
    """

    name: str
    """spec.backend / status.backend value."""
    preference: int
    """Place in spec.backend auto's order (lower first): the first whose CRD is served is taken."""
    summary: str
    """What it is, for the CRD's and the chart's descriptions (a few words)."""
    kind: str
    api_version: str
    resource: Resource
    crd: str | None
    """<plural>.<group> of the CRD that must be served; None for a built-in kind (always served)."""
    install: str
    """What a cluster admin installs to get the CRD (one sentence)."""
    container: str
    """Name of the main container (some controllers look it up by name)."""
    name_limit: int
    """Longest child name whose pod hostnames still fit 63 characters."""
    group_restarts: bool
    """A failure restarts all nodes together (then torchrun runs with --max-restarts=0 and
    spec.maxRestarts counts group restarts)."""
    rbac: tuple[Rule, ...]
    """What the operator may do with this backend's objects (beyond the child's :data:`CHILD_VERBS`,
    e.g. what :meth:`restart_group` deletes)."""

    def child_rules(self) -> tuple[Rule, ...]:
        """Every RBAC rule this backend needs: its child's, then :attr:`rbac`."""
        return (Rule(self.resource.group, (self.resource.plural,), CHILD_VERBS), *self.rbac)

    @abstractmethod
    def rendezvous(self, child_name: str) -> Rendezvous: ...

    @abstractmethod
    def render(self, run: RunPods) -> dict[str, Any]: ...

    def companions(self, run: RunPods) -> list[Companion]:
        """Objects created with the child, before it (none by default)."""
        return []

    @abstractmethod
    def suspend_patch(self, child: Mapping[str, Any], desired: bool) -> dict[str, Any] | None: ...

    @abstractmethod
    def role(self, meta: Mapping[str, Any]) -> PodRole: ...

    def node_rank(self, pod: PodState) -> int | None:
        """The pod's node rank (torchrun --node-rank; ``sftctl logs --node``): its index unless the
        backend numbers its replicas otherwise."""
        return pod.index

    @abstractmethod
    def pods_of(self, child: Mapping[str, Any], pods: list[PodState]) -> list[PodState]: ...

    @abstractmethod
    def observe(
        self, spec: Mapping[str, Any], child: Mapping[str, Any], pods: list[PodState]
    ) -> Observed: ...

    @abstractmethod
    def restart_group(self, child: Mapping[str, Any]) -> list[GroupMember]:
        """What to delete to restart every node of ``child`` (spec.restartOnHang): objects its
        controller recreates by itself, so the restart counts as no failure (neither maxRestarts nor
        backoffLimit) and the trainer resumes from its newest checkpoint."""

    def replaces(self, child: Mapping[str, Any]) -> bool:
        """The child has ended in a way this backend restarts by replacing it: the operator deletes
        it and creates it again, rendered with :attr:`RunPods.previous` (a backend without a group
        controller of its own). False by default: the child's controller restarts its pods."""
        return False


FINISHED = "training finished"
"""The message of a child whose training pods all succeeded."""


def running_or_pending(live: list[PodState], expected: int) -> tuple[str, str, str]:
    """(phase, reason, message) of a child that neither finished nor failed, from its live pods:
    Running once all ``expected`` run, else Pending with what holds them."""
    running = sum(1 for p in live if p.phase == "Running")
    if running == expected:
        return "Running", "Running", f"{running} of {expected} pods running"
    return pods_pending(live, expected, pending_problem(live))


def pods_pending(
    live: list[PodState], expected: int, problem: tuple[str, str] | None
) -> tuple[str, str, str]:
    """(phase, reason, message) while the child has not reported running: a pod problem, or counts."""
    if problem:
        return "Pending", problem[0], problem[1]
    started = sum(1 for p in live if p.phase == "Running")
    if started:
        return "Pending", "PodsStarting", f"{started} of {expected} pods running; waiting for the rest"
    return "Pending", "PodsPending", f"waiting for {expected} training pod(s) to start"


def failed_observed(
    cond: Mapping[str, Any] | None, default_reason: str, child_reasons: tuple[str, ...]
) -> Observed:
    """A child whose ``Failed`` condition is true: its reason (else ``default_reason``), message and
    time. ``child_reasons`` are the child's own give-up reasons (a restart budget or deadline spent)
    that name the failure better than the last failed pod does."""
    cond = cond or {}
    reason = str(cond.get("reason") or default_reason)
    message = str(cond.get("message") or "")
    return Observed(
        "Failed",
        reason,
        message or "failed",
        failed_reason=reason,
        failed_message=message,
        failed_time=cond.get("lastTransitionTime"),
        child_reason_wins=reason in child_reasons,
    )
