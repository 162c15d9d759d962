"""The emulated Kubeflow training-operator for ``kubeflow.org/v1`` PyTorchJobs."""

from __future__ import annotations

import copy
import socket
import time

from .controllers import POD_KEY, PTJ_KEY, ControllerBase, condition_true, parse_time, set_condition
from .errors import ApiError
from .store import Json, Store, now_iso

PTJ_LABELS = "training.kubeflow.org"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PyTorchJobController(ControllerBase):
    """Creates Master/Worker pods with the training-operator's env and maps pod states to conditions."""

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self._ports: dict[str, int] = {}  # job uid -> MASTER_PORT
        self._seen_restarts: dict[str, int] = {}  # restart bookkeeping per job uid

    def reconcile(self, namespace: str, name: str) -> None:
        resource = self.store.resources.get(PTJ_KEY)
        if resource is None:
            return
        try:
            job = self.store.get(resource, namespace, name)
        except ApiError:
            return
        if job["metadata"].get("deletionTimestamp"):
            return
        spec = job.get("spec") or {}
        run_policy = spec.get("runPolicy") or {}
        replica_specs: dict[str, Json] = spec.get("pytorchReplicaSpecs") or {}
        status = copy.deepcopy(job.get("status") or {})
        conditions: list[Json] = status.setdefault("conditions", [])
        pods = self.pods_of(job)
        live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
        uid = job["metadata"]["uid"]

        set_condition(conditions, "Created", "True", "PyTorchJobCreated", f"PyTorchJob {name} is created.")
        if condition_true(status, "Succeeded") or condition_true(status, "Failed"):
            self._clean_pods(live, run_policy.get("cleanPodPolicy", "None"))
            finished_at = status.get("completionTime")
            self.maybe_expire(PTJ_KEY, job, finished_at, run_policy.get("ttlSecondsAfterFinished"))
            self.write_status(PTJ_KEY, job, status)
            return

        if run_policy.get("suspend"):
            for pod in live:
                self.delete_pod(pod)
            status["replicaStatuses"] = {rtype: {} for rtype in replica_specs}
            status.pop("startTime", None)
            set_condition(
                conditions, "Running", "False", "PyTorchJobSuspended", f"PyTorchJob {name} is suspended."
            )
            set_condition(
                conditions, "Suspended", "True", "PyTorchJobSuspended", f"PyTorchJob {name} is suspended."
            )
            self.write_status(PTJ_KEY, job, status)
            return
        if condition_true(status, "Suspended"):
            set_condition(
                conditions, "Suspended", "False", "PyTorchJobResumed", f"PyTorchJob {name} is resumed."
            )
        status.setdefault("startTime", now_iso())

        by_name = {p["metadata"]["name"]: p for p in live}
        restarting = False
        failed_replicas: dict[str, int] = {}
        for rtype, rspec in replica_specs.items():
            policy = rspec.get("restartPolicy", "OnFailure")
            for index in range(int(rspec.get("replicas", 1))):
                pod_name = f"{name}-{rtype.lower()}-{index}"
                pod = by_name.get(pod_name)
                if pod is not None and self.phase(pod) == "Failed" and policy == "ExitCode":
                    if self._retryable(pod):
                        self.delete_pod(pod)
                        restarting = True
                        self._seen_restarts[uid] = self._seen_restarts.get(uid, 0) + 1
                        pod = None
                    else:
                        failed_replicas[rtype] = failed_replicas.get(rtype, 0) + 1
                elif pod is not None and self.phase(pod) == "Failed":
                    failed_replicas[rtype] = failed_replicas.get(rtype, 0) + 1
                if pod is None and not restarting:
                    try:
                        by_name[pod_name] = self._create_pod(job, rtype, index)
                    except ApiError:  # refused (e.g. a missing ServiceAccount): retried on the next event
                        continue

        live = [p for p in self.pods_of(job) if not p["metadata"].get("deletionTimestamp")]
        replica_statuses: dict[str, Json] = {}
        total_restarts = sum(self.restarts(p) for p in live)
        for rtype in replica_specs:
            members = [
                p
                for p in live
                if (p["metadata"].get("labels") or {}).get(f"{PTJ_LABELS}/replica-type") == rtype.lower()
            ]
            counts = {
                "active": sum(1 for p in members if self.phase(p) in ("Pending", "Running")),
                "succeeded": sum(1 for p in members if self.phase(p) == "Succeeded"),
                "failed": sum(1 for p in members if self.phase(p) == "Failed"),
            }
            replica_statuses[rtype] = {key: value for key, value in counts.items() if value}
            replica_statuses[rtype]["selector"] = (
                f"{PTJ_LABELS}/job-name={name},{PTJ_LABELS}/replica-type={rtype.lower()}"
            )
        status["replicaStatuses"] = replica_statuses

        restarts = total_restarts + self._seen_restarts.get(uid, 0)
        previous = self._seen_restarts.get(f"{uid}/observed", 0)
        self._seen_restarts[f"{uid}/observed"] = restarts
        restarting = restarting or restarts > previous
        # training-operator pkg/core/job.go PastBackoffLimit: only replicas whose restartPolicy is
        # OnFailure or Always count ("... is not OnFailure or Always. Not counted in backoff limit."),
        # so ExitCode retries (128+: SIGTERM, SIGKILL) never use up backoffLimit.
        counted_types = {
            rtype.lower()
            for rtype, rspec in replica_specs.items()
            if rspec.get("restartPolicy", "OnFailure") in ("OnFailure", "Always")
        }
        counted = sum(
            self.restarts(p)
            for p in live
            if (p["metadata"].get("labels") or {}).get(f"{PTJ_LABELS}/replica-type") in counted_types
        )
        backoff = run_policy.get("backoffLimit")
        deadline = run_policy.get("activeDeadlineSeconds")
        started = parse_time(status.get("startTime")) or time.time()
        failure: tuple[str, str] | None = None
        if failed_replicas:
            described = ", ".join(f"{count} {rtype} replica(s)" for rtype, count in failed_replicas.items())
            failure = ("PyTorchJobFailed", f"PyTorchJob {name} is failed because {described} failed.")
        elif backoff is not None and counted > int(backoff):
            failure = (
                "BackoffLimitExceeded",
                f"PyTorchJob {name} has failed because it has reached the specified backoff limit",
            )
        elif deadline is not None and time.time() - started >= float(deadline):
            failure = (
                "DeadlineExceeded",
                f"PyTorchJob {name} has failed because it was active longer than specified deadline",
            )

        master_done = (
            replica_statuses.get("Master", {}).get("succeeded", 0)
            >= int((replica_specs.get("Master") or {}).get("replicas", 1))
            if "Master" in replica_specs
            else all(
                replica_statuses[r].get("succeeded", 0) >= int(replica_specs[r].get("replicas", 1))
                for r in replica_specs
            )
        )
        if failure is not None:
            self._clean_pods(live, run_policy.get("cleanPodPolicy", "None"))
            set_condition(conditions, "Running", "False", failure[0], failure[1])
            set_condition(conditions, "Failed", "True", failure[0], failure[1])
            status["completionTime"] = now_iso()
        elif master_done:
            message = f"PyTorchJob {name} is successfully completed."
            set_condition(conditions, "Running", "False", "PyTorchJobSucceeded", message)
            set_condition(conditions, "Succeeded", "True", "PyTorchJobSucceeded", message)
            status["completionTime"] = now_iso()
        elif restarting:
            set_condition(
                conditions, "Running", "False", "PyTorchJobRestarting", f"PyTorchJob {name} is restarting."
            )
            set_condition(
                conditions, "Restarting", "True", "PyTorchJobRestarting", f"PyTorchJob {name} is restarting."
            )
        elif live and all(self.phase(p) in ("Running", "Succeeded") for p in live):
            set_condition(
                conditions, "Running", "True", "PyTorchJobRunning", f"PyTorchJob {name} is running."
            )
            if any(c["type"] == "Restarting" for c in conditions):
                set_condition(
                    conditions, "Restarting", "False", "PyTorchJobRunning", f"PyTorchJob {name} is running."
                )
        self.write_status(PTJ_KEY, job, status)

    def _clean_pods(self, pods: list[Json], policy: str) -> None:
        """runPolicy.cleanPodPolicy on completion: None (the v1 default) keeps every pod."""
        for pod in pods:
            if policy == "All" or (policy == "Running" and self.phase(pod) not in ("Succeeded", "Failed")):
                self.delete_pod(pod)

    @staticmethod
    def _retryable(pod: Json) -> bool:
        """ExitCode policy: exit codes 1-127 are permanent errors, 128 and above are retried
        (training-operator pkg/util/train/train_util.go IsRetryableExitCode: ``exitCode >= 128``)."""
        for container in (pod.get("status") or {}).get("containerStatuses") or []:
            code = ((container.get("state") or {}).get("terminated") or {}).get("exitCode", 0)
            if 1 <= int(code) <= 127:
                return False
        return True

    def _create_pod(self, job: Json, rtype: str, index: int) -> Json:
        spec = job.get("spec") or {}
        replica_specs: dict[str, Json] = spec.get("pytorchReplicaSpecs") or {}
        name = job["metadata"]["name"]
        uid = job["metadata"]["uid"]
        if uid not in self._ports:
            self._ports[uid] = free_port()
        total = sum(int(r.get("replicas", 1)) for r in replica_specs.values())
        nproc = str(
            spec.get("nprocPerNode") or (spec.get("elasticPolicy") or {}).get("nProcPerNode") or "auto"
        )
        world = total * (int(nproc) if nproc.isdigit() else 1)
        rank = index + 1 if rtype.lower() == "worker" and "Master" in replica_specs else index
        template = copy.deepcopy(replica_specs[rtype].get("template") or {})
        meta = template.get("metadata") or {}
        labels = dict(meta.get("labels") or {})
        labels.update(
            {
                f"{PTJ_LABELS}/job-name": name,
                f"{PTJ_LABELS}/operator-name": "pytorchjob-controller",
                f"{PTJ_LABELS}/replica-type": rtype.lower(),
                f"{PTJ_LABELS}/replica-index": str(index),
            }
        )
        if rtype == "Master":
            labels[f"{PTJ_LABELS}/job-role"] = "master"
        pod_spec = template.get("spec") or {}
        policy = replica_specs[rtype].get("restartPolicy", "OnFailure")
        pod_spec["restartPolicy"] = "Never" if policy == "ExitCode" else policy
        port = str(self._ports[uid])
        injected = {
            "PYTHONUNBUFFERED": "1",
            "MASTER_ADDR": "localhost",
            "MASTER_PORT": port,
            "PET_MASTER_ADDR": "localhost",
            "PET_MASTER_PORT": port,
            "WORLD_SIZE": str(world),
            "RANK": str(rank),
            "PET_NPROC_PER_NODE": nproc,
            "PET_NODE_RANK": str(rank),
            "PET_NNODES": str(total),
        }
        for container in pod_spec.get("containers") or []:
            env = [e for e in container.get("env") or [] if e.get("name") not in injected]
            container["env"] = env + [{"name": key, "value": value} for key, value in injected.items()]
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"{name}-{rtype.lower()}-{index}",
                "namespace": job["metadata"]["namespace"],
                "labels": labels,
                "annotations": dict(meta.get("annotations") or {}),
                "ownerReferences": [self.owner_ref(job)],
            },
            "spec": pod_spec,
        }
        return self.store.create(self.store.resources[POD_KEY], job["metadata"]["namespace"], pod)
