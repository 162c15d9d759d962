"""JobSet (``jobset.x-k8s.io/v1alpha2``): CRD, webhooks and controller, as the emulator plays them.

Facts from kubernetes-sigs/jobset (read at v0.12/main, Aug 2026): ``api/jobset/v1alpha2/jobset_types.go``
(fields, condition types, label keys), ``pkg/constants/constants.go`` (reasons, messages,
``jobset.sigs.k8s.io/restart-attempt``), ``pkg/controllers/jobset_controller.go`` (child Jobs, labels
and annotations, headless Service, suspend/resume, replicatedJobsStatus), ``failure_policy.go``
(rules, RestartJobSet/FailJobSet, ``maxRestarts`` against ``restartsCountTowardsMax``, the
"(first failed job: NAME)" messages), ``success_policy.go``, ``ttl_after_finished.go`` and
``pkg/webhooks/jobset_webhook.go`` (defaults and checks on create). The CRD schema (written from
those types; embedded Kubernetes types from :mod:`kubeemu.openapi_schema`) and the webhooks are in
:mod:`kubeemu.jobset_api`; every name is importable from here.

What the controller does, level-triggered on the emulator loop:

- one ``batch/v1`` Job per ``replicatedJobs[i]`` replica, named ``<jobset>-<rjob>-<jobIndex>``, with
  the JobSet labels and annotations on the Job and its pod template (``jobset-name``, ``jobset-uid``,
  ``replicatedjob-name``, ``replicatedjob-replicas``, ``global-replicas``, ``job-index``,
  ``job-global-index``, ``job-key``, ``group-name``, ``group-replicas``, ``job-group-index``,
  ``restart-attempt``), ``subdomain`` set when ``network.enableDNSHostnames`` (the webhook defaults
  it to true) and a headless Service named after the subdomain (default: the JobSet name) selecting
  ``jobset.sigs.k8s.io/jobset-name``. The Job controller then makes Indexed pods with hostname
  ``<job>-<index>``, so pod DNS names are ``<jobset>-<rjob>-<jobIndex>-<podIndex>.<subdomain>``;
- a failed child Job (its pods fail past the Job's ``backoffLimit``) triggers the failure policy: no
  ``failurePolicy`` -> ``Failed`` (reason ``FailedJobs``); the first matching rule's action, or
  ``RestartJobSet`` when none matches: ``status.restarts`` and ``restartsCountTowardsMax`` +1,
  ``RestartingJobSet`` condition, every Job of the previous attempt deleted (Foreground) and
  recreated with ``restart-attempt`` = the new ``status.restarts``; once ``restartsCountTowardsMax``
  reached ``maxRestarts`` -> ``Failed`` (``ReachedMaxRestarts``). ``RestartJobSetAndIgnoreMaxRestarts``
  does not count; ``FailJobSet`` fails at once. ``restartStrategy: BlockingRecreate`` waits for
  every old Job to be gone before creating new ones;
- ``successPolicy`` (``All``/``Any`` over ``targetReplicatedJobs``) -> ``Completed``
  (``AllJobsCompleted``), ``terminalState``; active Jobs of a finished JobSet are deleted;
- ``suspend``: child Jobs get ``suspend: true`` (the Job controller deletes their pods), condition
  ``Suspended`` True (``SuspendedJobs``); resume flips them back (``Suspended`` False, ``ResumeJobs``)
  after merging the replicated Job's pod template labels, annotations, nodeSelector, tolerations and
  schedulingGates into the Job (what Kueue changes while a JobSet waits);
- ``status.replicatedJobsStatus`` (ready/succeeded/failed/active/suspended per replicated Job, the
  controller's definition of "ready"), ``ttlSecondsAfterFinished``, ``managedBy`` (other values are
  left alone).

Webhooks (registered with the emulator, as the JobSet install does): on create the defaults
(``successPolicy: {operator: All}``, ``startupPolicy: AnyOrder``, ``completionMode: Indexed``, pod
``restartPolicy: OnFailure``, ``network.enableDNSHostnames: true``, ``publishNotReadyAddresses:
true``, failure rule names ``failurePolicyRule<i>``); checks: names that would give a Job or pod name
over 63 characters (DNS-1035), unknown replicatedJob names in ``successPolicy``/rules, duplicate
replicatedJob names.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import re
import time

from .controllers import JOB_KEY, ControllerBase, parse_time
from .errors import ApiError
from .jobset_api import (  # re-exported: kubeemu.jobset is the one place to import JobSet names from
    ACTIONS,
    COMPONENT,
    CONTROLLER_NAME,
    COORDINATOR,
    GLOBAL_REPLICAS,
    GROUP,
    GROUP_NAME,
    GROUP_REPLICAS,
    JOB_GLOBAL_INDEX,
    JOB_GROUP_INDEX,
    JOB_INDEX,
    JOB_KEY_LABEL,
    JOBSET_KEY,
    JOBSET_NAME,
    JOBSET_UID,
    REPLICATED_JOB_NAME,
    REPLICATED_JOB_REPLICAS,
    RESTART_ATTEMPT,
    SERVICE_KEY,
    VERSION,
    default_jobset,
    jobset_crd,
    jobset_spec_schema,
    jobset_status_schema,
    register_webhooks,
    validate_jobset,
)
from .store import Json, Store, now_iso

__all__ = [
    "ACTIONS",
    "COMPONENT",
    "CONTROLLER_NAME",
    "COORDINATOR",
    "GLOBAL_REPLICAS",
    "GROUP",
    "GROUP_NAME",
    "GROUP_REPLICAS",
    "JOBSET_KEY",
    "JOBSET_NAME",
    "JOBSET_UID",
    "JOB_GLOBAL_INDEX",
    "JOB_GROUP_INDEX",
    "JOB_INDEX",
    "JOB_KEY_LABEL",
    "REPLICATED_JOB_NAME",
    "REPLICATED_JOB_REPLICAS",
    "RESTART_ATTEMPT",
    "SERVICE_KEY",
    "VERSION",
    "JobSetController",
    "condition_is_true",
    "default_jobset",
    "dns_hostnames",
    "jobset_crd",
    "jobset_spec_schema",
    "jobset_status_schema",
    "register_webhooks",
    "subdomain",
    "update_condition",
    "validate_jobset",
]
# ------------------------------------------------------------------------------------ conditions


def update_condition(conditions: list[Json], type_: str, status: str, reason: str, message: str) -> bool:
    """JobSet's ``updateCondition``: a False condition of a type not present yet is not added;
    ``lastTransitionTime`` moves only when the status changes."""
    for index, current in enumerate(conditions):
        if current["type"] != type_:
            continue
        if current["status"] == status and (current.get("reason"), current.get("message")) == (
            reason,
            message,
        ):
            return False
        stamp = now_iso() if current["status"] != status else current["lastTransitionTime"]
        conditions[index] = {
            "type": type_,
            "status": status,
            "reason": reason,
            "message": message,
            "lastTransitionTime": stamp,
        }
        return True
    if status != "True":
        return False
    conditions.append(
        {
            "type": type_,
            "status": status,
            "reason": reason,
            "message": message,
            "lastTransitionTime": now_iso(),
        }
    )
    return True


def condition_is_true(status: Json, type_: str) -> bool:
    return any(c.get("type") == type_ and c.get("status") == "True" for c in status.get("conditions") or [])


# ------------------------------------------------------------------------------------ controller


def subdomain(jobset: Json) -> str:
    return ((jobset.get("spec") or {}).get("network") or {}).get("subdomain") or jobset["metadata"]["name"]


def dns_hostnames(jobset: Json) -> bool:
    return bool(((jobset.get("spec") or {}).get("network") or {}).get("enableDNSHostnames"))


def _job_finished(job: Json) -> str | None:
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") in ("Complete", "Failed") and condition.get("status") == "True":
            return str(condition["type"])
    return None


def _failure_condition(job: Json) -> Json:
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Failed" and condition.get("status") == "True":
            return dict(condition)
    return {}


class JobSetController(ControllerBase):
    """Plays the JobSet controller (see the module docstring)."""

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        register_webhooks(store)

    def reconcile(self, namespace: str, name: str) -> None:
        resource = self.store.resources.get(JOBSET_KEY)
        if resource is None:
            return
        try:
            jobset = self.store.get(resource, namespace, name)
        except ApiError:
            return
        meta = jobset["metadata"]
        spec = jobset.get("spec") or {}
        if meta.get("deletionTimestamp"):
            return
        if spec.get("managedBy") not in (None, CONTROLLER_NAME):
            return
        status = copy.deepcopy(jobset.get("status") or {})
        status.setdefault("restarts", 0)
        conditions: list[Json] = status.setdefault("conditions", [])

        buckets = self._child_jobs(jobset, int(status["restarts"]))
        status["replicatedJobsStatus"] = self._replicated_jobs_status(spec, buckets)

        if condition_is_true(status, "Completed") or condition_is_true(status, "Failed"):
            self._delete_jobs(buckets["active"])
            self._expire(jobset, status)
            self._write(jobset, status)
            return

        self._delete_jobs(buckets["previous"])
        suspended = bool(spec.get("suspend"))
        if not suspended and self._all_ready(spec, status["replicatedJobsStatus"]):
            update_condition(conditions, "RestartingJobSet", "False", "JobsReady", "all jobs are ready")

        if buckets["failed"]:
            self._failure_policy(jobset, spec, status, buckets["failed"])
            self._write(jobset, status)
            return
        if buckets["successful"] and self._succeeded(spec, buckets["successful"]):
            if update_condition(
                conditions, "Completed", "True", "AllJobsCompleted", "jobset completed successfully"
            ):
                self.event(jobset, "Normal", "AllJobsCompleted", "jobset completed successfully", COMPONENT)
            update_condition(
                conditions, "RestartingJobSet", "False", "JobSetCompleted", "jobset completed successfully"
            )
            status["terminalState"] = "Completed"
            self._write(jobset, status)
            return

        if dns_hostnames(jobset):
            self._ensure_service(jobset)
        blocking = (spec.get("failurePolicy") or {}).get("restartStrategy") == "BlockingRecreate"
        if not (blocking and buckets["previous"]):
            existing = {job["metadata"]["name"] for bucket in buckets.values() for job in bucket}
            for rjob in spec.get("replicatedJobs") or []:
                for index in range(int(rjob.get("replicas", 1))):
                    if f"{name}-{rjob['name']}-{index}" not in existing:
                        self._create_job(jobset, rjob, index, int(status["restarts"]))

        if suspended:
            for job in buckets["active"]:
                self._suspend_job(job)
            update_condition(conditions, "Suspended", "True", "SuspendedJobs", "jobset is suspended")
            update_condition(
                conditions, "RestartingJobSet", "False", "JobSetSuspended", "jobset is suspended"
            )
        else:
            for job in buckets["active"]:
                self._resume_job(job, spec)
            update_condition(conditions, "Suspended", "False", "ResumeJobs", "jobset is resumed")
        self._write(jobset, status)

    # ----------------------------------------------------------------------------------- helpers

    def _write(self, jobset: Json, status: Json) -> None:
        if not status.get("conditions"):
            status.pop("conditions", None)
        self.write_status(JOBSET_KEY, jobset, status)

    def _child_jobs(self, jobset: Json, restarts: int) -> dict[str, list[Json]]:
        uid = jobset["metadata"]["uid"]
        jobs = [
            job
            for job in self.store.list(self.store.resources[JOB_KEY], jobset["metadata"]["namespace"])
            if any(
                ref.get("uid") == uid and ref.get("controller")
                for ref in job["metadata"].get("ownerReferences") or []
            )
        ]
        buckets: dict[str, list[Json]] = {"active": [], "successful": [], "failed": [], "previous": []}
        for job in jobs:
            labels = job["metadata"].get("labels") or {}
            try:
                attempt = int(labels.get(RESTART_ATTEMPT, ""))
            except ValueError:
                attempt = -1
            if attempt < restarts:
                buckets["previous"].append(job)
                continue
            finished = _job_finished(job)
            bucket = {"Complete": "successful", "Failed": "failed"}.get(finished or "", "active")
            buckets[bucket].append(job)
        return buckets

    @staticmethod
    def _replicated_jobs_status(spec: Json, buckets: dict[str, list[Json]]) -> list[Json]:
        counts = {
            rjob["name"]: {"ready": 0, "succeeded": 0, "failed": 0, "active": 0, "suspended": 0}
            for rjob in spec.get("replicatedJobs") or []
        }

        def of(job: Json) -> dict[str, int] | None:
            return counts.get((job["metadata"].get("labels") or {}).get(REPLICATED_JOB_NAME, ""))

        for job in buckets["active"]:
            entry = of(job)
            if entry is None:
                continue
            job_spec, job_status = job.get("spec") or {}, job.get("status") or {}
            pods = int(job_spec.get("parallelism", 1))
            if job_spec.get("completions") is not None:
                pods = min(pods, int(job_spec["completions"]))
            if int(job_status.get("succeeded", 0)) + int(job_status.get("ready", 0)) >= pods:
                entry["ready"] += 1
            if int(job_status.get("active", 0)) > 0:
                entry["active"] += 1
            if job_spec.get("suspend"):
                entry["suspended"] += 1
        for bucket, key in (("successful", "succeeded"), ("failed", "failed")):
            for job in buckets[bucket]:
                entry = of(job)
                if entry is not None:
                    entry[key] += 1
        return [{"name": rjob_name, **entry} for rjob_name, entry in counts.items()]

    @staticmethod
    def _all_ready(spec: Json, statuses: list[Json]) -> bool:
        total = sum(int(rjob.get("replicas", 1)) for rjob in spec.get("replicatedJobs") or [])
        return total == sum(s["ready"] + s["succeeded"] for s in statuses)

    @staticmethod
    def _succeeded(spec: Json, successful: list[Json]) -> bool:
        policy = spec.get("successPolicy") or {"operator": "All"}
        targets = policy.get("targetReplicatedJobs") or []

        def matches(rjob_name: str) -> bool:
            return not targets or rjob_name in targets

        done = sum(
            1
            for job in successful
            if matches((job["metadata"].get("labels") or {}).get(REPLICATED_JOB_NAME, ""))
        )
        if policy.get("operator") == "Any":
            return done >= 1
        expected = sum(
            int(rjob.get("replicas", 1)) for rjob in spec.get("replicatedJobs") or [] if matches(rjob["name"])
        )
        return done >= expected

    def _failure_policy(self, jobset: Json, spec: Json, status: Json, failed: list[Json]) -> None:
        conditions = status["conditions"]
        first = min(failed, key=lambda job: _failure_condition(job).get("lastTransitionTime") or "")
        policy = spec.get("failurePolicy")
        if policy is None:
            first_name = first["metadata"]["name"]
            message = f"jobset failed due to one or more job failures (first failed job: {first_name})"
            self._fail(jobset, status, "FailedJobs", message)
            return
        rule, job = self._matching_rule(policy.get("rules") or [], failed)
        action = rule["action"] if rule else "RestartJobSet"
        job = job or first
        job_name = job["metadata"]["name"]
        if action == "FailJobSet":
            self._fail(
                jobset,
                status,
                "FailJobSetFailurePolicyAction",
                f"applying FailJobSet failure policy action (first failed job: {job_name})",
            )
            return
        counts = not action.endswith("IgnoreMaxRestarts")
        # RestartJob (per-Job restarts) needs a feature gate; it is played as a group restart here.
        if counts and int(status.get("restartsCountTowardsMax", 0)) >= int(policy.get("maxRestarts", 0)):
            self._fail(
                jobset,
                status,
                "ReachedMaxRestarts",
                f"jobset failed due to reaching max number of restarts (first failed job: {job_name})",
            )
            return
        base = (
            "applying RestartJobSet failure policy action"
            if counts
            else "applying RestartJobSetAndIgnoreMaxRestarts failure policy action"
        )
        reason = f"FailurePolicy_{rule['name']}" if rule else "DefaultFailurePolicy"
        message = f"{base} (first failed job: {job_name})"
        status["restarts"] = int(status.get("restarts", 0)) + 1
        if counts:
            status["restartsCountTowardsMax"] = int(status.get("restartsCountTowardsMax", 0)) + 1
        if update_condition(conditions, "RestartingJobSet", "True", reason, message):
            self.event(jobset, "Warning", reason, message, COMPONENT)
        event_reason = (
            "RestartJobSetFailurePolicyAction"
            if counts
            else "RestartJobSetAndIgnoreMaxRestartsFailurePolicyAction"
        )
        self.event(jobset, "Warning", event_reason, message, COMPONENT)

    @staticmethod
    def _matching_rule(rules: list[Json], failed: list[Json]) -> tuple[Json | None, Json | None]:
        for rule in rules:
            matched: Json | None = None
            for job in failed:
                condition = _failure_condition(job)
                reasons = rule.get("onJobFailureReasons") or []
                patterns = rule.get("onJobFailureMessagePatterns") or []
                targets = rule.get("targetReplicatedJobs") or []
                rjob_name = (job["metadata"].get("labels") or {}).get(REPLICATED_JOB_NAME)
                if reasons and condition.get("reason") not in reasons:
                    continue
                if patterns and not any(re.search(p, condition.get("message") or "") for p in patterns):
                    continue
                if not rjob_name or (targets and rjob_name not in targets):
                    continue
                if matched is None or (condition.get("lastTransitionTime") or "") < (
                    _failure_condition(matched).get("lastTransitionTime") or ""
                ):
                    matched = job
            if matched is not None:
                return rule, matched
        return None, None

    def _fail(self, jobset: Json, status: Json, reason: str, message: str) -> None:
        if update_condition(status["conditions"], "Failed", "True", reason, message):
            self.event(jobset, "Warning", reason, message, COMPONENT)
        update_condition(status["conditions"], "RestartingJobSet", "False", "JobSetFailed", "jobset failed")
        status["terminalState"] = "Failed"

    def _expire(self, jobset: Json, status: Json) -> None:
        finished = next(
            (
                c.get("lastTransitionTime")
                for c in status.get("conditions") or []
                if c.get("type") in ("Completed", "Failed") and c.get("status") == "True"
            ),
            None,
        )
        ttl = (jobset.get("spec") or {}).get("ttlSecondsAfterFinished")
        at = parse_time(finished)
        if ttl is not None and at is not None and time.time() >= at + float(ttl):
            meta = jobset["metadata"]
            with contextlib.suppress(ApiError):
                self.store.delete(
                    self.store.resources[JOBSET_KEY], meta["namespace"], meta["name"], "Foreground"
                )

    def _delete_jobs(self, jobs: list[Json]) -> None:
        for job in jobs:
            if job["metadata"].get("deletionTimestamp"):
                continue
            with contextlib.suppress(ApiError):
                self.store.delete(
                    self.store.resources[JOB_KEY],
                    job["metadata"]["namespace"],
                    job["metadata"]["name"],
                    "Foreground",
                )

    def _suspend_job(self, job: Json) -> None:
        if (job.get("spec") or {}).get("suspend") or job["metadata"].get("deletionTimestamp"):
            return
        body = copy.deepcopy(job)
        body["spec"]["suspend"] = True
        meta = job["metadata"]
        self.store.replace(self.store.resources[JOB_KEY], meta["namespace"], meta["name"], body)

    def _resume_job(self, job: Json, spec: Json) -> None:
        """``resumeJob``: clear ``status.startTime`` (the Job API keeps a started Job's template
        immutable), merge the replicated Job's pod template labels, annotations, nodeSelector,
        tolerations and schedulingGates (what Kueue may change while suspended), unsuspend."""
        if not (job.get("spec") or {}).get("suspend") or job["metadata"].get("deletionTimestamp"):
            return
        meta = job["metadata"]
        jobs = self.store.resources[JOB_KEY]
        if (job.get("status") or {}).get("startTime"):
            cleared = copy.deepcopy(job)
            cleared["status"].pop("startTime", None)
            self.store.replace(jobs, meta["namespace"], meta["name"], cleared, "status")
            job = self.store.get(jobs, meta["namespace"], meta["name"])
        body = copy.deepcopy(job)
        rjob_name = (meta.get("labels") or {}).get(REPLICATED_JOB_NAME)
        rjob = next((r for r in spec.get("replicatedJobs") or [] if r["name"] == rjob_name), None)
        if rjob is not None:
            source = ((rjob.get("template") or {}).get("spec") or {}).get("template") or {}
            target = body["spec"].setdefault("template", {})
            for section, key in (
                ("metadata", "labels"),
                ("metadata", "annotations"),
                ("spec", "nodeSelector"),
            ):
                merged = {
                    **(target.get(section) or {}).get(key, {}),
                    **(source.get(section) or {}).get(key, {}),
                }
                if merged:
                    target.setdefault(section, {})[key] = merged
            for key in ("tolerations", "schedulingGates"):
                current = list((target.get("spec") or {}).get(key) or [])
                extra = [item for item in (source.get("spec") or {}).get(key) or [] if item not in current]
                if current or extra:
                    target.setdefault("spec", {})[key] = current + extra
        body["spec"]["suspend"] = False
        self.store.replace(jobs, meta["namespace"], meta["name"], body)

    def _ensure_service(self, jobset: Json) -> None:
        meta = jobset["metadata"]
        name = subdomain(jobset)
        resource = self.store.resources[SERVICE_KEY]
        try:
            self.store.get(resource, meta["namespace"], name)
            return
        except ApiError:
            pass
        network = (jobset.get("spec") or {}).get("network") or {}
        service = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": name,
                "namespace": meta["namespace"],
                "ownerReferences": [self.owner_ref(jobset)],
            },
            "spec": {
                "clusterIP": "None",
                "selector": {JOBSET_NAME: meta["name"]},
                "publishNotReadyAddresses": network.get("publishNotReadyAddresses", True),
            },
        }
        self.store.create(resource, meta["namespace"], service)

    def _labels(self, jobset: Json, rjob: Json, index: int, restarts: int) -> dict[str, str]:
        spec = jobset.get("spec") or {}
        rjobs = spec.get("replicatedJobs") or []
        name, namespace = jobset["metadata"]["name"], jobset["metadata"]["namespace"]
        group = rjob.get("groupName") or "default"
        global_index = group_index = 0
        for other in rjobs:
            if other["name"] == rjob["name"]:
                break
            global_index += int(other.get("replicas", 1))
            if (other.get("groupName") or "default") == group:
                group_index += int(other.get("replicas", 1))
        job_name = f"{name}-{rjob['name']}-{index}"
        labels = {
            JOBSET_NAME: name,
            JOBSET_UID: jobset["metadata"]["uid"],
            REPLICATED_JOB_NAME: rjob["name"],
            RESTART_ATTEMPT: str(restarts),
            REPLICATED_JOB_REPLICAS: str(int(rjob.get("replicas", 1))),
            GLOBAL_REPLICAS: str(sum(int(r.get("replicas", 1)) for r in rjobs)),
            JOB_INDEX: str(index),
            JOB_KEY_LABEL: hashlib.sha1(f"{namespace}/{job_name}".encode()).hexdigest(),
            JOB_GLOBAL_INDEX: str(global_index + index),
            GROUP_NAME: group,
            GROUP_REPLICAS: str(
                sum(int(r.get("replicas", 1)) for r in rjobs if (r.get("groupName") or "default") == group)
            ),
            JOB_GROUP_INDEX: str(group_index + index),
        }
        coordinator = spec.get("coordinator")
        if coordinator:
            labels[COORDINATOR] = (
                f"{name}-{coordinator['replicatedJob']}-{coordinator.get('jobIndex', 0)}-"
                f"{coordinator.get('podIndex', 0)}.{subdomain(jobset)}"
            )
        return labels

    def _create_job(self, jobset: Json, rjob: Json, index: int, restarts: int) -> None:
        template = copy.deepcopy(rjob.get("template") or {})
        tmeta = template.get("metadata") or {}
        job_spec = template.get("spec") or {}
        stamp = self._labels(jobset, rjob, index, restarts)
        pod_template = job_spec.setdefault("template", {})
        pod_meta = pod_template.setdefault("metadata", {})
        pod_meta["labels"] = {**(pod_meta.get("labels") or {}), **stamp}
        pod_meta["annotations"] = {**(pod_meta.get("annotations") or {}), **stamp}
        if dns_hostnames(jobset):
            pod_template.setdefault("spec", {})["subdomain"] = subdomain(jobset)
        job_spec["suspend"] = bool((jobset.get("spec") or {}).get("suspend"))
        job: Json = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": f"{jobset['metadata']['name']}-{rjob['name']}-{index}",
                "namespace": jobset["metadata"]["namespace"],
                "labels": {**(tmeta.get("labels") or {}), **stamp},
                "annotations": {**(tmeta.get("annotations") or {}), **stamp},
                "ownerReferences": [self.owner_ref(jobset)],
            },
            "spec": job_spec,
        }
        try:
            self.store.create(self.store.resources[JOB_KEY], jobset["metadata"]["namespace"], job)
        except ApiError as error:
            if error.code != 409:
                self.event(
                    jobset,
                    "Warning",
                    "JobCreationFailed",
                    f'job "{job["metadata"]["name"]}" creation failed with error: {error.message}',
                )
