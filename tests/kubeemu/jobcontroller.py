"""The emulated ``batch/v1`` Job controller (see :mod:`kubeemu.podrunner` for what it covers)."""

from __future__ import annotations

import copy
import time

from .controllers import JOB_KEY, POD_KEY, ControllerBase, condition_true, parse_time, set_condition
from .errors import ApiError
from .store import Json, Store, now_iso

INDEX_KEY = "batch.kubernetes.io/job-completion-index"
JOB_STAMP = "lastProbeTime"  # Job conditions carry lastProbeTime (not lastUpdateTime)


def compress_indexes(indexes: set[int]) -> str:
    """``{0,1,2,4}`` -> ``"0-2,4"`` (the Job API's completedIndexes format)."""
    runs: list[list[int]] = []
    for index in sorted(indexes):
        if runs and index == runs[-1][1] + 1:
            runs[-1][1] = index
        else:
            runs.append([index, index])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def match_pod_failure_policy(policy: Json | None, pod: Json) -> tuple[str, str]:
    """(action, FailJob message) of a failed pod under ``policy``, as Kubernetes'
    pkg/controller/job/pod_failure_policy.go matchPodFailurePolicy: rules in order, first match wins;
    ``onExitCodes`` looks at terminated containers (init and app) other than exit 0, restricted to
    ``containerName``; ``onPodConditions`` at the pod's conditions (type and status); no policy or
    no match counts the failure ("Count")."""
    status = pod.get("status") or {}
    meta = pod["metadata"]
    for index, rule in enumerate((policy or {}).get("rules") or []):
        action = rule["action"]
        on_codes = rule.get("onExitCodes")
        if on_codes is not None:
            for container in (status.get("initContainerStatuses") or []) + (
                status.get("containerStatuses") or []
            ):
                if on_codes.get("containerName") not in (None, container.get("name")):
                    continue
                code = ((container.get("state") or {}).get("terminated") or {}).get("exitCode")
                if code in (None, 0):
                    continue
                inside = code in (on_codes.get("values") or [])
                if inside == (on_codes.get("operator") == "In"):
                    message = (
                        f"Container {container.get('name')} for pod {meta.get('namespace')}/{meta['name']} "
                        f"failed with exit code {code} matching {action} rule at index {index}"
                    )
                    return action, message
        for pattern in rule.get("onPodConditions") or []:
            for cond in status.get("conditions") or []:
                if cond.get("type") == pattern.get("type") and cond.get("status") == pattern.get(
                    "status", "True"
                ):
                    message = (
                        f"Pod {meta.get('namespace')}/{meta['name']} has condition {cond['type']} matching "
                        f"{action} rule at index {index}"
                    )
                    return action, message
    return "Count", ""


class JobController(ControllerBase):
    """Creates a Job's pods and derives its status from theirs, level-triggered.

    A pod deleted by someone else before it finished (a user, an eviction, a drained node) counts as
    a failed pod of its Job, as upstream ``isPodFailed`` counts "deleted Pods as failures to account
    for orphan Pods that never have a chance to reach the Failed phase" (without a
    ``podFailurePolicy``); pods this controller deletes itself (suspend, deadline, completion) do not.

    ``podFailurePolicy`` (:func:`match_pod_failure_policy`): a failed pod matching an ``Ignore`` rule
    counts neither in ``status.failed`` nor against ``backoffLimit`` (its index gets a new pod); a
    ``FailJob`` match fails the Job with reason ``PodFailurePolicy`` and the upstream message.
    """

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self._own_deletions: set[str] = set()  # pod uids this controller deleted
        self._deleted_unfinished: dict[str, set[str]] = {}  # job uid -> uids of pods deleted unfinished

    def on_pod_deleted(self, pod: Json) -> None:
        """Called for every DELETED pod event (the runner forwards them)."""
        uid = pod["metadata"]["uid"]
        if uid in self._own_deletions:
            self._own_deletions.discard(uid)
            return
        if self.phase(pod) in ("Succeeded", "Failed"):
            return
        for ref in pod["metadata"].get("ownerReferences") or []:
            if ref.get("kind") == "Job" and ref.get("controller"):
                spec = self._job_spec(pod["metadata"]["namespace"], ref["name"], ref.get("uid"))
                if spec is not None and not spec.get("podFailurePolicy"):
                    self._deleted_unfinished.setdefault(ref["uid"], set()).add(uid)

    def _job_spec(self, namespace: str, name: str, uid: str | None) -> Json | None:
        try:
            job = self.store.get(self.store.resources[JOB_KEY], namespace, name)
        except ApiError:
            return None
        if job["metadata"]["uid"] != uid or job["metadata"].get("deletionTimestamp"):
            return None
        return dict(job.get("spec") or {})

    def delete_pod(self, pod: Json) -> None:
        self._own_deletions.add(pod["metadata"]["uid"])
        super().delete_pod(pod)

    def reconcile(self, namespace: str, name: str) -> None:
        resource = self.store.resources[JOB_KEY]
        try:
            job = self.store.get(resource, namespace, name)
        except ApiError:
            return
        if job["metadata"].get("deletionTimestamp"):
            return
        spec = job.get("spec") or {}
        status = copy.deepcopy(job.get("status") or {})
        conditions: list[Json] = status.setdefault("conditions", [])
        pods = self.pods_of(job)
        active = [
            p
            for p in pods
            if self.phase(p) not in ("Succeeded", "Failed") and not p["metadata"].get("deletionTimestamp")
        ]
        succeeded = [p for p in pods if self.phase(p) == "Succeeded"]
        policy = spec.get("podFailurePolicy")
        judged = [(p, match_pod_failure_policy(policy, p)) for p in pods if self.phase(p) == "Failed"]
        failed = [p for p, (action, _) in judged if action != "Ignore"]
        fail_job = next(((action, msg) for _, (action, msg) in judged if action == "FailJob"), None)
        deleted_unfinished = len(self._deleted_unfinished.get(job["metadata"]["uid"], ()))
        indexed = spec.get("completionMode") == "Indexed"

        if condition_true(status, "Complete") or condition_true(status, "Failed"):
            for pod in active:
                self.delete_pod(pod)
            finished_at = status.get("completionTime") or next(
                (c.get("lastTransitionTime") for c in conditions if c["type"] == "Failed"), None
            )
            self.maybe_expire(JOB_KEY, job, finished_at, spec.get("ttlSecondsAfterFinished"))
            return

        status["succeeded"] = len(succeeded)
        status["failed"] = len(failed) + deleted_unfinished
        status["terminating"] = 0
        status.setdefault("uncountedTerminatedPods", {})
        if indexed:
            status["completedIndexes"] = compress_indexes({self._index(p) for p in succeeded})

        if spec.get("suspend"):
            for pod in active:
                self.delete_pod(pod)
            status.update(active=0, ready=0)
            status.pop("startTime", None)
            set_condition(conditions, "Suspended", "True", "JobSuspended", "Job suspended", JOB_STAMP)
            self.write_status(JOB_KEY, job, status)
            return
        if condition_true(status, "Suspended"):
            set_condition(conditions, "Suspended", "False", "JobResumed", "Job resumed", JOB_STAMP)
        status.setdefault("startTime", now_iso())

        started = parse_time(status["startTime"]) or time.time()
        deadline = spec.get("activeDeadlineSeconds")
        failures = len(failed) + deleted_unfinished + sum(self.restarts(p) for p in pods)
        failure: tuple[str, str] | None = None
        if fail_job is not None:
            failure = ("PodFailurePolicy", fail_job[1])
        elif deadline is not None and time.time() - started >= float(deadline):
            failure = ("DeadlineExceeded", "Job was active longer than specified deadline")
        elif failures > int(spec.get("backoffLimit", 6)):
            failure = ("BackoffLimitExceeded", "Job has reached the specified backoff limit")
        if failure is not None:
            for pod in active:
                self.delete_pod(pod)
            status.update(active=0, ready=0)
            set_condition(conditions, "FailureTarget", "True", failure[0], failure[1], JOB_STAMP)
            set_condition(conditions, "Failed", "True", failure[0], failure[1], JOB_STAMP)
            self.write_status(JOB_KEY, job, status)
            return

        parallelism = int(spec.get("parallelism", 1))
        completions = spec.get("completions")
        done = False
        if indexed:
            total = int(completions or 1)
            done_indexes = {self._index(p) for p in succeeded}
            busy = {self._index(p) for p in active}
            done = len(done_indexes) >= total
            missing = [i for i in range(total) if i not in done_indexes and i not in busy]
            for index in missing[: max(0, parallelism - len(active))]:
                try:
                    active.append(self._create_pod(job, index))
                except ApiError:  # refused (e.g. a missing ServiceAccount): FailedCreate, retried
                    break
        else:
            if completions is None:
                done = bool(succeeded) and not active
                wanted = 0 if succeeded else parallelism - len(active)
            else:
                done = len(succeeded) >= int(completions)
                wanted = min(parallelism, int(completions) - len(succeeded)) - len(active)
            for _ in range(max(0, wanted)):
                try:
                    active.append(self._create_pod(job, None))
                except ApiError:  # refused (e.g. a missing ServiceAccount): FailedCreate, retried
                    break

        if done:
            for pod in active:
                self.delete_pod(pod)
            status.update(active=0, ready=0, completionTime=now_iso())
            message = "Reached expected number of succeeded pods"
            set_condition(conditions, "SuccessCriteriaMet", "True", "CompletionsReached", message, JOB_STAMP)
            set_condition(conditions, "Complete", "True", "CompletionsReached", message, JOB_STAMP)
        else:
            status["active"] = len(active)
            status["ready"] = sum(1 for p in active if self.phase(p) == "Running")
        if not conditions:
            status.pop("conditions")
        self.write_status(JOB_KEY, job, status)

    @staticmethod
    def _index(pod: Json) -> int:
        return int((pod["metadata"].get("annotations") or {}).get(INDEX_KEY, "0"))

    def _create_pod(self, job: Json, index: int | None) -> Json:
        template = copy.deepcopy((job.get("spec") or {}).get("template") or {})
        meta = template.get("metadata") or {}
        job_name = job["metadata"]["name"]
        labels = dict(meta.get("labels") or {})
        annotations = dict(meta.get("annotations") or {})
        pod_spec = template.get("spec") or {}
        prefix = f"{job_name}-{index}-" if index is not None else f"{job_name}-"
        if index is not None:
            # An Indexed Job's pods are named and hostnamed <job>-<index> (DNS with a subdomain).
            pod_spec["hostname"] = f"{job_name}-{index}"
            labels[INDEX_KEY] = str(index)
            annotations[INDEX_KEY] = str(index)
            for container in (pod_spec.get("initContainers") or []) + (pod_spec.get("containers") or []):
                # Appended (an existing definition wins), as the Job controller does: env values
                # earlier in the list cannot reference $(JOB_COMPLETION_INDEX); command/args can.
                env = container.setdefault("env", [])
                if not any(e.get("name") == "JOB_COMPLETION_INDEX" for e in env):
                    index_ref = {"fieldRef": {"fieldPath": f"metadata.annotations['{INDEX_KEY}']"}}
                    env.append({"name": "JOB_COMPLETION_INDEX", "valueFrom": index_ref})
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "generateName": prefix,
                "namespace": job["metadata"]["namespace"],
                "labels": labels,
                "annotations": annotations,
                "ownerReferences": [self.owner_ref(job)],
            },
            "spec": pod_spec,
        }
        return self.store.create(self.store.resources[POD_KEY], job["metadata"]["namespace"], pod)
