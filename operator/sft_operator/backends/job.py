"""Plain Kubernetes: an Indexed ``batch/v1`` Job and a headless Service; no CRD, so every cluster
can run it (the last of auto's choices: a run never stalls for want of a training operator).

The Job runs ``nodes`` pods (completions = parallelism = nodes, ``completionMode: Indexed``). The
Job controller names each pod's host ``<job>-<index>`` (pkg/controller/job/job_controller.go,
manageJob: ``template.Spec.Hostname = fmt.Sprintf("%s-%d", job.Name, completionIndex)``) and
annotates it with its index (``batch.kubernetes.io/job-completion-index``, addCompletionIndexAnnotation);
the pods' ``subdomain`` is the headless Service (``clusterIP: None``, same name as the Job, selecting
``batch.kubernetes.io/job-name``, the label the API server gives a Job's pods), so pod 0 answers as
``<job>-0.<job>``: torchrun's master address. The node rank is the completion index, read through
the downward API as JobSet pods read it. The Service is owned by the SFTRun like every child and is
created before the Job.

Restarts: a torchrun static rendezvous needs every rank to start again together (one rank coming
back alone would try to join a store its old peers no longer serve, or a master that has moved on),
so a failure restarts the whole group, from the newest checkpoint, by *replacing the Job*
(:meth:`~sft_operator.backends.base.Backend.replaces`: the operator deletes the failed Job, its pods
go with it, and creates it again). ``backoffLimitPerIndex`` would restart only the failed index,
against the other ranks' running processes, and counts per index rather than per group, so it can
neither resume every rank from one checkpoint nor count against spec.maxRestarts. The Job itself
has ``backoffLimit: 0`` (one failed pod fails it) and the shared ``podFailurePolicy``
(:func:`~sft_operator.backends.base.failure_rules`): exit 2 (a config error) fails it with a message
that fails the run at once; a disrupted pod or exit 143 fails it with reason PodFailurePolicy, which
is restarted without counting; any other failure (BackoffLimitExceeded) is restarted while fewer
than spec.maxRestarts counted restarts happened. The counts travel on the Job (annotations
:data:`ATTEMPT_ANNOTATION`, :data:`COUNTED_ANNOTATION`) from each Job to its replacement; a Job
deleted otherwise (a hang restart, by hand) is recreated with the attempt number the run's
status.restartCount says and a fresh counted budget. Each pod carries its attempt as a label
(:data:`ATTEMPT_LABEL`), so the status tells the attempts apart as it does JobSet's.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from sft_operator.backends.base import (
    CONFIG_ERROR_PATTERN,
    POD_FAILURE_POLICY,
    RENDEZVOUS_PORT,
    Backend,
    Companion,
    GroupMember,
    Observed,
    Rendezvous,
    Rule,
    RunPods,
    failed_observed,
    failure_rules,
    index_rendezvous,
    indexed_rendezvous,
)
from sft_operator.backends.jobset import observe_jobset_like
from sft_operator.kube.client import JOBS, Resource
from sft_operator.render import children as common
from sft_operator.render import meta
from sft_operator.render.suspend import suspend_patch as _suspend_patch
from sft_operator.status.conditions import get_condition, is_true
from sft_operator.status.pods import JOB_INDEX_ANNOTATION, PodRole, PodState, as_index

SERVICES = Resource("", "v1", "services")
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
"""Set by the API server on a Job's pod template (registry/batch/job strategy, generateSelector)."""
ATTEMPT_LABEL = "sft.dev/restart-attempt"
ATTEMPT_ANNOTATION = "sft.dev/restart-attempt"
"""Which start of the group this Job is (0 first; each replacement adds one)."""
COUNTED_ANNOTATION = "sft.dev/counted-restarts"
"""Restarts so far that count against spec.maxRestarts."""
MAX_ANNOTATION = "sft.dev/max-restarts"
"""spec.maxRestarts when the Job was rendered (the Job alone then says whether it may restart)."""
RESTART, FAIL = "restart", "fail"


class IndexedJob(Backend):
    name = "job"
    preference = 4
    summary = "a Kubernetes Indexed Job"
    kind = "Job"
    api_version = "batch/v1"
    resource = JOBS
    crd = None
    install = "nothing (batch/v1 Jobs are built into Kubernetes)"
    container = "trainer"
    name_limit = min(meta.MAX_CHILD_NAME, 63 - len("-1023"))
    """The hostname <job>-<index> is a DNS label (≤ 63) for up to 1024 nodes."""
    group_restarts = True
    """A failure restarts all nodes together (torchrun restarts nothing: --max-restarts=0)."""
    rbac = (
        Rule(SERVICES.group, (SERVICES.plural,), ("get", "create"), "the headless Service; get after a 409"),
        Rule(
            JOBS.group,
            (JOBS.plural,),
            ("delete",),
            "only a failed or hung run's Job, to start the group again (it is then created anew)",
        ),
    )

    def rendezvous(self, child_name: str) -> Rendezvous:
        return indexed_rendezvous(f"{child_name}-0.{child_name}")

    def render(self, run: RunPods) -> dict[str, Any]:
        spec = run.spec
        attempt, counted = _counts(run)
        template = copy.deepcopy(run.template)
        template["metadata"]["labels"][ATTEMPT_LABEL] = str(attempt)
        pod = template["spec"]
        pod["subdomain"] = run.name
        index_rendezvous(pod["containers"][0])
        job_spec: dict[str, Any] = {
            "completionMode": "Indexed",
            "completions": spec.nodes,
            "parallelism": spec.nodes,
            "backoffLimit": 0,  # one failed pod fails the Job: the operator restarts the whole group
            "podFailurePolicy": {"rules": failure_rules(self.container)},
            "suspend": spec.suspend,
            "template": template,
        }
        if spec.active_deadline_seconds is not None:
            job_spec["activeDeadlineSeconds"] = spec.active_deadline_seconds
        if spec.ttl_seconds_after_finished is not None:
            job_spec["ttlSecondsAfterFinished"] = spec.ttl_seconds_after_finished
        metadata = common.runner_metadata(run.child, run.name, spec)
        metadata["annotations"].update(
            {
                ATTEMPT_ANNOTATION: str(attempt),
                COUNTED_ANNOTATION: str(counted),
                MAX_ANNOTATION: str(spec.max_restarts),
            }
        )
        return {"apiVersion": self.api_version, "kind": self.kind, "metadata": metadata, "spec": job_spec}

    def companions(self, run: RunPods) -> list[Companion]:
        """The headless Service that gives the pods their DNS names (``<job>-<index>.<job>``); not-ready
        addresses are published so rank 0's name resolves while it starts."""
        service = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": run.child.object_meta(run.name),
            "spec": {
                "clusterIP": "None",
                "publishNotReadyAddresses": True,
                "selector": {JOB_NAME_LABEL: run.name},
                "ports": [{"name": "rendezvous", "port": RENDEZVOUS_PORT, "targetPort": RENDEZVOUS_PORT}],
            },
        }
        return [Companion(SERVICES, service)]

    def suspend_patch(self, child: Mapping[str, Any], desired: bool) -> dict[str, Any] | None:
        return _suspend_patch(child, desired)

    def replaces(self, child: Mapping[str, Any]) -> bool:
        return _verdict(child) == RESTART

    def restart_group(self, child: Mapping[str, Any]) -> list[GroupMember]:
        """Delete the Job (its pods go with it): the operator creates it again, the next attempt."""
        return [GroupMember(JOBS, (child.get("metadata") or {})["name"])]

    def role(self, pod_meta: Mapping[str, Any]) -> PodRole:
        """Node rank = the completion index; the group attempt from :data:`ATTEMPT_LABEL`."""
        labels = pod_meta.get("labels") or {}
        annotations = pod_meta.get("annotations") or {}
        index = as_index(annotations.get(JOB_INDEX_ANNOTATION) or labels.get(JOB_INDEX_ANNOTATION))
        return PodRole(
            replica_type="node",
            index=index,
            attempt=as_index(labels.get(ATTEMPT_LABEL)) or 0,
            rank0=index == 0,
        )

    def pods_of(self, child: Mapping[str, Any], pods: list[PodState]) -> list[PodState]:
        """The Job owns its pods (a replaced Job's pods do not count)."""
        uid = (child.get("metadata") or {}).get("uid")
        return [p for p in pods if uid is None or p.owner_uid in (None, uid)]

    def observe(self, spec: Mapping[str, Any], job: Mapping[str, Any], pods: list[PodState]) -> Observed:
        status = job.get("status") or {}
        job_spec = job.get("spec") or {}
        annotations = (job.get("metadata") or {}).get("annotations") or {}
        attempt = as_index(annotations.get(ATTEMPT_ANNOTATION)) or 0
        limit = as_index(annotations.get(MAX_ANNOTATION)) or 0
        verdict = _verdict(job)
        if verdict == RESTART:
            return Observed(
                "Running",
                "Restarting",
                f"restarting the whole group after a failure (attempt {attempt + 1}); the trainer resumes "
                "from its newest checkpoint",
                restarts=attempt,
            )
        if _exhausted(job):
            cond = get_condition(status, "Failed") or {}
            seen = failed_observed(
                {
                    **cond,
                    "reason": "ReachedMaxRestarts",
                    "message": f"the group failed after {limit} restart(s) (spec.maxRestarts {limit}): "
                    f"{cond.get('message') or cond.get('reason')}",
                },
                "JobFailed",
                ("ReachedMaxRestarts",),
            )
            return replace(seen, restarts=attempt)
        return observe_jobset_like(
            spec,
            job,
            pods,
            restarts=attempt,
            max_restarts=limit,
            complete="Complete",
            suspended=bool(job_spec.get("suspend")) or is_true(status, "Suspended"),
            expected=int(job_spec.get("parallelism") or job_spec.get("completions") or 1),
        )


def _counts(run: RunPods) -> tuple[int, int]:
    """(attempt, counted restarts) of the Job to render: one more than the replaced Job's, counting
    the restart unless the Job failed by disruption or preemption; else from the run's status."""
    if run.previous is None:
        return run.restarts, 0
    annotations = (run.previous.get("metadata") or {}).get("annotations") or {}
    attempt = (as_index(annotations.get(ATTEMPT_ANNOTATION)) or 0) + 1
    counted = as_index(annotations.get(COUNTED_ANNOTATION)) or 0
    cond = get_condition((run.previous.get("status") or {}), "Failed") or {}
    return attempt, counted + (0 if cond.get("reason") == POD_FAILURE_POLICY else 1)


def _verdict(job: Mapping[str, Any]) -> str | None:
    """RESTART, FAIL or None (not failed) for the Job as it stands."""
    cond = get_condition(job.get("status") or {}, "Failed") or {}
    if cond.get("status") != "True":
        return None
    if cond.get("reason") == POD_FAILURE_POLICY:
        return FAIL if CONFIG_ERROR_PATTERN in str(cond.get("message") or "") else RESTART
    if cond.get("reason") == "DeadlineExceeded":
        return FAIL
    counted, limit = _budget(job)
    return FAIL if counted >= limit else RESTART


def _budget(job: Mapping[str, Any]) -> tuple[int, int]:
    """(counted restarts so far, spec.maxRestarts) as the Job records them."""
    annotations = (job.get("metadata") or {}).get("annotations") or {}
    return as_index(annotations.get(COUNTED_ANNOTATION)) or 0, as_index(annotations.get(MAX_ANNOTATION)) or 0


def _exhausted(job: Mapping[str, Any]) -> bool:
    """Failed for a counted reason after spec.maxRestarts (> 0) counted restarts: the run failed for
    its restart budget (with maxRestarts 0 the Job's own reason says more)."""
    counted, limit = _budget(job)
    return _verdict(job) == FAIL and limit > 0 and counted >= limit


BACKEND = IndexedJob()
