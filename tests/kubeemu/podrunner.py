"""A local stand-in for the kubelet plus the Job and PyTorchJob controllers, for end-to-end tests.

:class:`PodRunner` attaches to a running :class:`~kubeemu.emulator.KubeEmulator` and, on the
emulator's event loop, plays:

- the **Job controller** (``batch/v1``): NonIndexed and Indexed completion modes (``completions``,
  ``parallelism``, ``JOB_COMPLETION_INDEX`` env + ``batch.kubernetes.io/job-completion-index``
  annotation and label, hostname ``<job>-<index>``, ``completedIndexes``), pods deleted unfinished
  by others counted as failed, ``suspend`` (active pods deleted, ``Suspended``
  condition, ``startTime`` reset on resume), ``backoffLimit`` (failed pods + container restarts),
  ``activeDeadlineSeconds``, ``ttlSecondsAfterFinished``; status ``active``/``ready``/``succeeded``/
  ``failed``/``startTime``/``completionTime`` and conditions ``SuccessCriteriaMet``+``Complete`` or
  ``FailureTarget``+``Failed`` (as Kubernetes ≥1.31 writes them);
- the **PyTorchJob controller** (``kubeflow.org/v1``, training-operator v1 semantics): pods
  ``<job>-master-0`` and ``<job>-worker-<i>`` with the training-operator labels and env
  (``MASTER_ADDR=localhost``, ``MASTER_PORT`` a free port, ``WORLD_SIZE`` = replicas × nprocPerNode,
  ``RANK``/``PET_NODE_RANK`` = node rank, ``PET_NNODES``, ``PET_NPROC_PER_NODE``,
  ``PYTHONUNBUFFERED``), replica ``restartPolicy`` (Never, OnFailure, Always, ExitCode: 1-127
  permanent, others retried), ``runPolicy`` (suspend, backoffLimit, activeDeadlineSeconds,
  ttlSecondsAfterFinished), conditions Created/Running/Restarting/Succeeded/Failed/Suspended and
  ``replicaStatuses`` (zero counts omitted, as the real controller's ``omitempty`` does),
  ``cleanPodPolicy`` (None, the v1 default, keeps pods; Running; All);
- the **JobSet controller** (``jobset.x-k8s.io/v1alpha2``) and Kubeflow Trainer v2's **TrainJob
  controller** (``trainer.kubeflow.org/v1alpha1``): see :mod:`kubeemu.jobset` and
  :mod:`kubeemu.trainer` (JobSet -> child Indexed Jobs -> pods; TrainJob -> JobSet);
- the **kubelet**: each pod runs as local subprocesses (see :mod:`kubeemu.podexec`), with status
  Pending → Running → Succeeded/Failed, ``containerStatuses[].state.terminated`` (exitCode, reason,
  message), ``restartCount``, and logs for ``GET pods/NAME/log``.

Only pods owned by a Job or PyTorchJob are run. Deleting a pod kills its processes;
:meth:`PodRunner.kill_pod` kills them and leaves the pod to fail (a crashed node). Pod DNS names
under headless Services and JobSet rendezvous ports are mapped as :mod:`kubeemu.localnet` says.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import signal
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .controllers import JOB_KEY, POD_KEY, PTJ_KEY, set_condition
from .errors import ApiError
from .jobcontroller import JobController
from .jobset import JOBSET_KEY, JobSetController
from .localnet import LocalNetwork
from .podexec import ConfigError, ContainerResult, PodExecution, RunnerConfig
from .pytorchjob import PyTorchJobController
from .store import Event, Json, Store, now_iso
from .trainer import TRAINJOB_KEY, TrainJobController

if TYPE_CHECKING:
    from .emulator import KubeEmulator

log = logging.getLogger(__name__)


class PodRunner:
    """Plays the Job/PyTorchJob/JobSet/TrainJob controllers and the kubelet against a :class:`KubeEmulator`.

    Configure before pods start (plain dicts, mutable): ``executables`` (command name -> path or
    argv prefix), ``path_map`` (container path prefix -> local dir), ``extra_env``, ``images``
    (image -> entrypoint argv for containers without ``command``), ``pvc_root``.
    """

    def __init__(
        self,
        kube: KubeEmulator,
        work_dir: str | Path,
        *,
        executables: dict[str, str | list[str]] | None = None,
        path_map: dict[str, str | Path] | None = None,
        pvc_root: str | Path | None = None,
        extra_env: dict[str, str] | None = None,
        images: dict[str, list[str]] | None = None,
        resync_interval: float = 0.25,
    ) -> None:
        self.kube = kube
        self.config = RunnerConfig(
            work_dir=Path(work_dir),
            executables=dict(executables or {}),
            path_map=dict(path_map or {}),
            pvc_root=Path(pvc_root) if pvc_root else None,
            extra_env=dict(extra_env or {}),
            images=dict(images or {}),
        )
        self.resync_interval = resync_interval
        self._dirty: set[tuple[tuple[str, str], str, str]] = set()  # (resource key, namespace, name)
        self._wake: asyncio.Event | None = None
        self._main_task: asyncio.Task[None] | None = None
        self._pods: dict[str, tuple[PodExecution, asyncio.Task[None]]] = {}
        self._executions: dict[tuple[str, str], PodExecution] = {}  # (namespace, name) -> latest run
        self.jobs: JobController  # created on attach, on the emulator loop
        self.pytorchjobs: PyTorchJobController
        self.jobsets: JobSetController
        self.trainjobs: TrainJobController
        self._controllers: dict[tuple[str, str], tuple[str, Any]] = {}
        self._stopped = False

    # Convenience views onto the config, so tests can write runner.executables["x"] = ...
    @property
    def executables(self) -> dict[str, str | list[str]]:
        return self.config.executables

    @property
    def path_map(self) -> dict[str, str | Path]:
        return self.config.path_map

    @property
    def extra_env(self) -> dict[str, str]:
        return self.config.extra_env

    @property
    def images(self) -> dict[str, list[str]]:
        return self.config.images

    @property
    def store(self) -> Store:
        return self.kube.store

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> PodRunner:
        self.config.work_dir.mkdir(parents=True, exist_ok=True)
        self.kube.submit(self._attach()).result(30)
        return self

    def stop(self) -> None:
        if self._main_task is None:
            return
        self.kube.submit(self._detach()).result(60)

    def __enter__(self) -> PodRunner:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _attach(self) -> None:
        self.jobs = JobController(self.store)
        self.pytorchjobs = PyTorchJobController(self.store)
        self.jobsets = JobSetController(self.store)
        self.trainjobs = TrainJobController(self.store)
        self.config.network = LocalNetwork(self.store)
        # resource key -> (kind of the owned objects' ownerReferences, controller), in reconcile order
        self._controllers = {
            TRAINJOB_KEY: ("TrainJob", self.trainjobs),
            JOBSET_KEY: ("JobSet", self.jobsets),
            JOB_KEY: ("Job", self.jobs),
            PTJ_KEY: ("PyTorchJob", self.pytorchjobs),
        }
        self._wake = asyncio.Event()
        self.store.listeners.append(self._on_event)
        self.store.log_provider = self._logs
        self._main_task = asyncio.get_running_loop().create_task(self._main())
        for key in self._controllers:
            resource = self.store.resources.get(key)
            if resource is not None:
                for obj in self.store.list(resource, None):
                    self._mark(key, obj)
        self._wake.set()

    async def _detach(self) -> None:
        self._stopped = True
        if self._on_event in self.store.listeners:
            self.store.listeners.remove(self._on_event)
        if self._main_task is not None:
            self._main_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._main_task
        self._main_task = None
        executions = list(self._pods.values())
        await asyncio.gather(*(execution.kill() for execution, _ in executions), return_exceptions=True)
        for _, task in executions:
            task.cancel()
        await asyncio.gather(*(task for _, task in executions), return_exceptions=True)
        self._pods.clear()

    # ---------------------------------------------------------------- event plumbing

    def _mark(self, key: tuple[str, str], obj: Json) -> None:
        self._dirty.add((key, obj["metadata"].get("namespace", ""), obj["metadata"]["name"]))

    def _on_event(self, event: Event) -> None:
        key = event.resource.key
        meta = event.obj["metadata"]
        if key in self._controllers:
            self._mark(key, event.obj)
        # A change of an owned object wakes its owner's controller (Job -> JobSet, pod -> Job...).
        for ref in meta.get("ownerReferences") or []:
            for owner_key, (kind, _) in self._controllers.items():
                if ref.get("kind") == kind and owner_key in self.store.resources:
                    self._dirty.add((owner_key, meta.get("namespace", ""), ref["name"]))
        if key == POD_KEY:
            if event.type == "DELETED":
                self.jobs.on_pod_deleted(event.obj)
            if event.type == "ADDED" and self._owned(event.obj) and meta["uid"] not in self._pods:
                self._start_pod(event.obj)
            elif event.type == "DELETED" or (event.type == "MODIFIED" and meta.get("deletionTimestamp")):
                entry = self._pods.pop(meta["uid"], None)
                if entry is not None:
                    asyncio.get_running_loop().create_task(entry[0].kill())
        if self._wake is not None:
            self._wake.set()

    @staticmethod
    def _owned(pod: Json) -> bool:
        return any(
            ref.get("kind") in ("Job", "PyTorchJob") for ref in pod["metadata"].get("ownerReferences") or []
        )

    async def _main(self) -> None:
        assert self._wake is not None
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.resync_interval)
            self._wake.clear()
            dirty, self._dirty = self._dirty, set()
            # Resync everything periodically: deadlines and TTLs are timers, not events.
            for key in self._controllers:
                resource = self.store.resources.get(key)
                if resource is not None:
                    for obj in self.store.list(resource, None):
                        dirty.add((key, obj["metadata"].get("namespace", ""), obj["metadata"]["name"]))
            order = list(self._controllers)
            for resource_key, namespace, name in sorted(
                dirty, key=lambda item: (order.index(item[0]), item[1:])
            ):
                kind, controller = self._controllers[resource_key]
                try:
                    controller.reconcile(namespace, name)
                except ApiError as error:
                    if error.code not in (404, 409):
                        log.warning("kubeemu runner: %s %s/%s: %s", kind, namespace, name, error)
                except Exception:
                    log.exception("kubeemu runner: reconciling %s %s/%s failed", kind, namespace, name)

    def kill_pod(self, name: str, namespace: str = "default", sig: int = signal.SIGKILL) -> None:
        """Signal every process of a running pod's containers, as a crashed node or an OOM group kill
        (SIGKILL) or a frozen cgroup (SIGSTOP: a rank stuck in a collective) would (any thread).

        Every process: what runs in a container is in its cgroup whatever session it started for
        itself (:meth:`~kubeemu.podexec.LocalProcess.signal_all`). SIGTERM is the exception: it is the
        kubelet's stop signal, which goes to each container's main process (here its process group),
        as for a preemption (:meth:`disrupt_pod`).

        The pod stays in the API: its containers exit with 128 + ``sig`` (137 for SIGKILL) and the pod
        turns ``Failed`` (or restarts its containers, as its ``restartPolicy`` says), so the owning Job
        counts a failure and a JobSet applies its failure policy. Deleting the pod instead
        (``kube.delete("pods", name)``) is what a user, an eviction or a drained node does: the Job
        counts it as failed too (see :class:`~kubeemu.jobcontroller.JobController`).
        """
        execution = self._executions.get((namespace, name))
        if execution is None or not execution.processes:
            raise KeyError(f"pod {namespace}/{name} has no running containers here")
        for process in list(execution.processes.values()):
            if sig == signal.SIGTERM:
                process.signal(sig)
            else:
                process.signal_all(sig)

    def disrupt_pod(
        self,
        name: str,
        namespace: str = "default",
        reason: str = "EvictionByEvictionAPI",
        message: str = "Eviction API: evicting",
    ) -> None:
        """Terminate a running pod on purpose, as preemption, the Eviction API, a node drain or a
        graceful node shutdown do (any thread): Kubernetes first adds the pod condition
        ``DisruptionTarget`` (True, ``reason``: PreemptionByScheduler, EvictionByEvictionAPI,
        TerminationByKubelet, DeletionByTaintManager; k8s.io/api/core/v1 types.go) and then sends
        SIGTERM. The pod turns Failed with its containers' exit codes and keeps the condition, so the
        owning Job's ``podFailurePolicy`` can match it (``onPodConditions``). Unlike the real flow the
        pod is not deleted afterwards (upstream the Job's tracking finalizer holds it until counted)."""

        async def mark() -> None:
            resource = self.store.resources[POD_KEY]
            pod = self.store.get(resource, namespace, name)
            status = copy.deepcopy(pod.get("status") or {})
            set_condition(
                status.setdefault("conditions", []), "DisruptionTarget", "True", reason, message, None
            )
            self.jobs.write_status(POD_KEY, pod, status)

        self.kube.submit(mark()).result(10)
        self.kill_pod(name, namespace, signal.SIGTERM)

    def _logs(self, namespace: str, name: str, container: str | None, tail: int | None) -> str | None:
        execution = self._executions.get((namespace, name))
        if execution is None:
            return None
        text = execution.log_text(container)
        return "".join(text.splitlines(keepends=True)[-tail:]) if tail else text

    # ---------------------------------------------------------------- kubelet

    def _start_pod(self, pod: Json) -> None:
        execution = PodExecution(self.store, copy.deepcopy(pod), self.config, self.kube.url)
        task = asyncio.get_running_loop().create_task(self._run_pod(execution))
        self._pods[pod["metadata"]["uid"]] = (execution, task)
        self._executions[(execution.namespace, execution.name)] = execution

    def _update_pod_status(self, execution: PodExecution, mutate: Callable[[Json], None]) -> None:
        if execution.killed or self._stopped:
            return
        resource = self.store.resources[POD_KEY]
        try:
            pod = self.store.get(resource, execution.namespace, execution.name)
        except ApiError:
            return
        if pod["metadata"]["uid"] != execution.uid or pod["metadata"].get("deletionTimestamp"):
            return
        status = copy.deepcopy(pod.get("status") or {})
        mutate(status)
        self.jobs.write_status(POD_KEY, pod, status)

    async def _run_pod(self, execution: PodExecution) -> None:
        spec = execution.pod.get("spec") or {}
        containers: list[Json] = spec.get("containers") or []
        statuses: dict[str, Json] = {
            c["name"]: {
                "name": c["name"],
                "image": c.get("image", ""),
                "imageID": "",
                "ready": False,
                "started": False,
                "restartCount": 0,
                "state": {"waiting": {"reason": "ContainerCreating"}},
            }
            for c in containers
        }

        def publish(phase: str, **extra: Any) -> None:
            def mutate(status: Json) -> None:
                running = phase == "Running"
                status.update(
                    phase=phase,
                    hostIP="127.0.0.1",
                    podIP="127.0.0.1",
                    containerStatuses=[copy.deepcopy(statuses[c["name"]]) for c in containers],
                    **extra,
                )
                status.setdefault("startTime", now_iso())
                conditions = status.setdefault("conditions", [])
                set_condition(conditions, "PodScheduled", "True", "", "", None)
                set_condition(conditions, "Initialized", "True", "", "", None)
                ready = "True" if running and all(s["ready"] for s in statuses.values()) else "False"
                set_condition(conditions, "ContainersReady", ready, "", "", None)
                set_condition(conditions, "Ready", ready, "", "", None)

            self._update_pod_status(execution, mutate)

        # Wait until every referenced Secret/ConfigMap exists (CreateContainerConfigError meanwhile).
        while True:
            try:
                volumes = execution.plan_volumes()
                mapping = execution.pod_mapping(volumes)
                execution.materialize(volumes, mapping)
                for container in (spec.get("initContainers") or []) + containers:
                    execution.container_env(container, mapping)
                break
            except ConfigError as error:
                for status in statuses.values():
                    status["state"] = {
                        "waiting": {"reason": "CreateContainerConfigError", "message": str(error)}
                    }
                publish("Pending")
                await asyncio.sleep(0.5)
                if execution.killed:
                    return

        for container in spec.get("initContainers") or []:
            result = await execution.run_container(container, volumes, lambda *_: None)
            if result.exit_code != 0 and not execution.killed:
                for status in statuses.values():
                    status["state"] = {"waiting": {"reason": "PodInitializing"}}
                publish("Failed", reason="Init:Error", message=result.message)
                return

        restart_policy = spec.get("restartPolicy", "Always")

        def on_start(name: str, started_at: str) -> None:
            statuses[name].update(ready=True, started=True, state={"running": {"startedAt": started_at}})
            publish("Running")

        async def run(container: Json) -> ContainerResult:
            while True:
                result = await execution.run_container(container, volumes, on_start)
                terminated = {
                    "exitCode": result.exit_code,
                    "reason": result.reason,
                    "startedAt": result.started_at,
                    "finishedAt": result.finished_at,
                    "containerID": f"kubeemu://{execution.uid}/{container['name']}",
                }
                if result.message:
                    terminated["message"] = result.message
                status = statuses[container["name"]]
                if execution.killed:
                    return result
                if restart_policy == "Always" or (restart_policy == "OnFailure" and result.exit_code != 0):
                    status["restartCount"] += 1
                    status["lastState"] = {"terminated": terminated}
                    status.update(ready=False, state={"waiting": {"reason": "CrashLoopBackOff"}})
                    publish("Running")
                    await asyncio.sleep(min(0.2 * status["restartCount"], 2.0))
                    continue
                status.update(ready=False, started=False, state={"terminated": terminated})
                return result

        results = await asyncio.gather(*(run(container) for container in containers))
        if execution.killed:
            return
        phase = "Succeeded" if all(result.exit_code == 0 for result in results) else "Failed"
        publish(phase)
        self._pods.pop(execution.uid, None)
