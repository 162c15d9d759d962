"""JobSet ``jobset.x-k8s.io/v1alpha2`` (kubernetes-sigs/jobset): runs on any cluster with the JobSet
controller, no Kubeflow needed.

One replicated Job ``node`` (replicas 1) of ``nodes`` Indexed pods (completions = parallelism =
nodes, backoffLimit 0: a failed pod fails its Job, and the JobSet restarts the whole group, up to
``failurePolicy.maxRestarts`` = spec.maxRestarts; the trainer resumes from its newest checkpoint).
The Job's ``podFailurePolicy`` and the JobSet's ``failurePolicy.rules``
(:func:`~sft_operator.backends.base.failure_rules`) fail the run at once on exit 2 and restart the
group without counting on a disrupted pod or exit 143. A hang restart starts the JobSet's next
restart attempt (:func:`restart_group`), not counted against maxRestarts.
``network.enableDNSHostnames`` gives each pod the DNS name ``<jobset>-<replicatedJob>-<jobIndex>-
<podIndex>.<subdomain>`` (subdomain defaults to the JobSet name; facts from jobset's
pkg/util/placement GenPodName and pkg/controllers GetSubdomain), so torchrun's master address is
pod 0's name and its node rank the pod's Job completion index (the annotation
``batch.kubernetes.io/job-completion-index``, read through the downward API). ``successPolicy``:
operator All. TTL and suspend map to the JobSet's own fields.

Pod labels the JobSet controller sets (api/jobset/v1alpha2 and pkg/constants):
``jobset.sigs.k8s.io/jobset-name``, ``jobset-uid``, ``replicatedjob-name``, ``job-index`` and
``jobset.sigs.k8s.io/restart-attempt`` (= status.restarts when the Job was created).

Status: conditions ``Completed``, ``Failed`` (reasons FailedJobs, ReachedMaxRestarts, ...),
``Suspended``; ``status.restarts``; ``replicatedJobsStatus[].{ready,succeeded,failed,active,suspended}``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from sft_operator.backends.base import (
    FINISHED,
    Backend,
    GroupMember,
    Observed,
    Rendezvous,
    Rule,
    RunPods,
    failed_observed,
    failure_rules,
    group_failure_rules,
    index_rendezvous,
    indexed_rendezvous,
    running_or_pending,
)
from sft_operator.backends.models import checked, m, quantities_as_strings
from sft_operator.kube.client import Resource
from sft_operator.render import children as common
from sft_operator.render.suspend import suspend_patch as _suspend_patch
from sft_operator.status.common import suspended_state
from sft_operator.status.conditions import get_condition, is_true
from sft_operator.status.pods import JOB_INDEX_ANNOTATION, PodRole, PodState, as_index, pending_problem

REPLICATED_JOB = "node"
JOBSET_NAME_LABEL = "jobset.sigs.k8s.io/jobset-name"
REPLICATED_JOB_LABEL = "jobset.sigs.k8s.io/replicatedjob-name"
RESTART_ATTEMPT_LABEL = "jobset.sigs.k8s.io/restart-attempt"
KIND = "JobSet"


def master_host(jobset_name: str, replicated_job: str = REPLICATED_JOB) -> str:
    """Pod 0 of Job 0 under the JobSet's headless Service (subdomain = the JobSet name)."""
    return f"{jobset_name}-{replicated_job}-0-0.{jobset_name}"


class JobSet(Backend):
    name = "jobset"
    preference = 2
    summary = "JobSet"
    kind = KIND
    api_version = "jobset.x-k8s.io/v1alpha2"
    resource = Resource("jobset.x-k8s.io", "v1alpha2", "jobsets")
    crd = "jobsets.jobset.x-k8s.io"
    install = "the JobSet controller (kubernetes-sigs/jobset, e.g. its release manifests.yaml)"
    container = "trainer"
    group_restarts = True
    """A failed pod restarts the whole group (torchrun itself restarts nothing: --max-restarts=0)."""
    name_limit = 63 - len(f"-{REPLICATED_JOB}-0-") - 4 - len("-abcde")
    """JobSet's webhook requires <jobset>-<rjob>-<jobIndex>-<podIndex>-abcde to be a DNS-1035 label
    (≤ 63): up to 1024 nodes (4 digits) leaves 45 characters for the JobSet name."""
    rbac = (
        Rule(
            "jobset.x-k8s.io",
            ("jobsets/status",),
            ("patch",),
            "only status.restarts + 1 of a hung run's JobSet (spec.restartOnHang: the JobSet controller "
            "restarts the whole group, as its own failure policy does, without counting against "
            "maxRestarts; the trainer resumes from its newest checkpoint)",
        ),
    )

    def rendezvous(self, child_name: str) -> Rendezvous:
        return indexed_rendezvous(master_host(child_name))

    def render(self, run: RunPods) -> dict[str, Any]:
        spec = run.spec
        template = copy.deepcopy(run.template)
        main = template["spec"]["containers"][0]
        index_rendezvous(main)
        if "resources" in main:
            main["resources"] = quantities_as_strings(main["resources"])
        for volume in template["spec"]["volumes"]:
            if "emptyDir" in volume and "sizeLimit" in volume["emptyDir"]:
                volume["emptyDir"]["sizeLimit"] = str(volume["emptyDir"]["sizeLimit"])
        job_spec: dict[str, Any] = {
            "completionMode": "Indexed",
            "completions": spec.nodes,
            "parallelism": spec.nodes,
            "backoffLimit": 0,  # one failed pod fails the Job: the JobSet restarts the whole group
            "podFailurePolicy": {"rules": failure_rules(self.container)},
            "template": template,
        }
        js_spec: dict[str, Any] = {
            "replicatedJobs": [{"name": REPLICATED_JOB, "replicas": 1, "template": {"spec": job_spec}}],
            "network": {"enableDNSHostnames": True, "publishNotReadyAddresses": True},
            "successPolicy": {"operator": "All"},
            "failurePolicy": {"maxRestarts": spec.max_restarts, "rules": group_failure_rules()},
            "suspend": spec.suspend,
        }
        if spec.active_deadline_seconds is not None:
            job_spec["activeDeadlineSeconds"] = spec.active_deadline_seconds
        if spec.ttl_seconds_after_finished is not None:
            js_spec["ttlSecondsAfterFinished"] = spec.ttl_seconds_after_finished
        manifest = {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "metadata": common.runner_metadata(run.child, run.name, spec),
            "spec": js_spec,
        }
        return checked(m.JobsetV1alpha2JobSet, manifest, self.kind)

    def suspend_patch(self, child: Mapping[str, Any], desired: bool) -> dict[str, Any] | None:
        return _suspend_patch(child, desired)

    def restart_group(self, child: Mapping[str, Any]) -> list[GroupMember]:
        """Restart the group the way the JobSet controller restarts it itself: ``status.restarts`` + 1.

        Facts from kubernetes-sigs/jobset pkg/controllers: ``status.restarts`` is the restart attempt the
        controller works towards; ``getChildJobs`` puts every Job whose ``jobset.sigs.k8s.io/restart-attempt``
        label is below it in the ``previous`` bucket, which is deleted (Foreground) and never judged by the
        failure policy, and the Jobs are created again with the new attempt (``constructJob``). A failure
        policy restart does exactly this (``failurePolicyRecreateAll``: ``Restarts += 1``, and
        ``RestartsCountTowardsMax += 1`` only for ``RestartJobSet``); ``maxRestarts`` is compared with
        ``restartsCountTowardsMax`` alone, so this restart never uses up the run's budget, whatever the
        old attempt's pods do while they stop (a survivor's rank failing in its collective belongs to a
        Job of the previous attempt and is never counted).

        Why not delete the node Job and let the controller recreate it in the same attempt: then the
        old pods still stop (a hung rank waits out terminationGracePeriodSeconds) while the new ones,
        of the same names, start, and with ``publishNotReadyAddresses`` the headless Service keeps the
        terminating pods' addresses under the same DNS names (EndpointSlice includes terminating pods
        then), so a new node could reach the old master. A new attempt's Jobs are created only once the
        old Job of the same name is gone, i.e. after its pods are (Foreground deletion)."""
        return [
            GroupMember(
                self.resource, (child.get("metadata") or {})["name"], status_patch=next_restart_attempt
            )
        ]

    def role(self, pod_meta: Mapping[str, Any]) -> PodRole:
        """A JobSet pod: node rank = its completion index; the group attempt from restart-attempt."""
        labels = pod_meta.get("labels") or {}
        annotations = pod_meta.get("annotations") or {}
        index = as_index(annotations.get(JOB_INDEX_ANNOTATION) or labels.get(JOB_INDEX_ANNOTATION))
        return PodRole(
            replica_type=labels.get(REPLICATED_JOB_LABEL),
            index=index,
            attempt=as_index(labels.get(RESTART_ATTEMPT_LABEL)) or 0,
            group=labels.get(JOBSET_NAME_LABEL),
            rank0=index == 0,
        )

    def pods_of(self, child: Mapping[str, Any], pods: list[PodState]) -> list[PodState]:
        """The JobSet's pods (owned by its Jobs, not by it): labelled with its name (a TrainJob's JobSet
        has the TrainJob's name)."""
        child_name = (child.get("metadata") or {}).get("name")
        return [p for p in pods if p.group is None or p.group == child_name]

    def observe(self, spec: Mapping[str, Any], js: Mapping[str, Any], pods: list[PodState]) -> Observed:
        status = js.get("status") or {}
        js_spec = js.get("spec") or {}
        return observe_jobset_like(
            spec,
            js,
            pods,
            restarts=int(status.get("restarts") or 0),
            max_restarts=(js_spec.get("failurePolicy") or {}).get("maxRestarts"),
            complete="Completed",
            suspended=bool(js_spec.get("suspend")) or is_true(status, "Suspended"),
            expected=_expected(js_spec),
        )


BACKEND = JobSet()


def next_restart_attempt(jobset: Mapping[str, Any]) -> dict[str, Any]:
    """The status merge patch that starts the JobSet's next restart attempt (:func:`restart_group`),
    pinned to the JobSet as read (a concurrent restart by its controller makes it a 409)."""
    restarts = int((jobset.get("status") or {}).get("restarts") or 0)
    meta = jobset.get("metadata") or {}
    return {"metadata": {"resourceVersion": meta["resourceVersion"]}, "status": {"restarts": restarts + 1}}


def _expected(js_spec: Mapping[str, Any]) -> int:
    total = 0
    for rjob in js_spec.get("replicatedJobs") or []:
        job = (rjob.get("template") or {}).get("spec") or {}
        total += int(rjob.get("replicas") or 1) * int(job.get("parallelism") or job.get("completions") or 1)
    return total or 1


def observe_jobset_like(
    spec: Mapping[str, Any],
    child: Mapping[str, Any],
    pods: list[PodState],
    *,
    restarts: int,
    max_restarts: int | None,
    complete: str,
    suspended: bool,
    expected: int,
) -> Observed:
    """What JobSet and TrainJob (which runs on a JobSet) share: Complete/Completed, Failed and
    Suspended conditions; pods of the current restart attempt; group restarts."""
    status = child.get("status") or {}
    restarts = max(restarts, *(p.attempt for p in pods), 0) if pods else restarts
    base: dict[str, Any] = {"restarts": restarts}
    done = get_condition(status, complete) or {}
    if done.get("status") == "True":
        return Observed(
            "Succeeded",
            "Succeeded",
            FINISHED,
            completion_time=done.get("lastTransitionTime"),
            **base,
        )
    if is_true(status, "Failed"):
        failed = failed_observed(
            get_condition(status, "Failed"),
            f"{child.get('kind')}Failed",
            ("ReachedMaxRestarts", "DeadlineExceeded"),
        )
        return replace(failed, **base)
    kind_name = str(child.get("kind") or KIND)
    state = suspended_state(spec, child, suspended, kind_name)
    if state is not None:
        return Observed(*state, **base)
    live = [p for p in pods if not p.deleted and p.attempt >= restarts]
    running = sum(1 for p in live if p.phase == "Running")
    if restarts and running < expected:
        limit = f" of {max_restarts}" if max_restarts is not None else ""
        problem = pending_problem(live)
        detail = f"; {problem[1]}" if problem else ""
        return Observed(
            "Running",
            "Restarting",
            f"restarting the whole group after a failure (restart {restarts}{limit}); {running} of "
            f"{expected} pods running; the trainer resumes from its newest checkpoint{detail}",
            **base,
        )
    return Observed(*running_or_pending(live, expected), **base)
