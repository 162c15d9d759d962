"""Kubeflow Trainer v2 (``trainer.kubeflow.org/v1alpha1``): CRDs, webhooks and the TrainJob controller.

Facts from kubeflow/trainer at the v2.3.0 tag (Aug 2026): ``pkg/apis/trainer/v1alpha1/trainjob_types.go``
and ``trainingruntime_types.go`` (fields, ``runtimePatches`` since 2.2 with ``podTemplateOverrides``
gone, condition types and reasons), ``pkg/constants/constants.go`` (``PET_*`` names, port 29500,
the ``trainer.kubeflow.org/trainjob-ancestor-step`` label, container ``node``),
``pkg/runtime/core/trainingruntime.go`` (pod counts, ``resourcesPerNode`` merged into the ``node``
container, ``runtimePatches`` applied as strategic merge patches of the JobSet spec, labels and
annotations propagated), ``pkg/runtime/framework/plugins/torch/torch.go`` (the env injected),
``plugins/plainml/plainml.go``, ``plugins/jobset/{jobset,builder}.go`` (the JobSet built, its
status mirrored), ``pkg/controller/trainjob_controller.go`` (Suspended/Failed conditions, deadline)
and ``pkg/webhooks/trainjob_webhook.go`` (runtime must exist, reserved env names, patch checks).
CRD schemas: :mod:`kubeemu.trainer_api`; the JobSet build and the webhooks: :mod:`kubeemu.trainer_build`;
every name is importable from here.

What the controller does for a TrainJob whose ``runtimeRef`` names a ``ClusterTrainingRuntime``
(default) or a ``TrainingRuntime`` in its namespace:

- builds the JobSet ``<trainjob>`` in the same namespace, owned by the TrainJob: the runtime's
  ``spec.template`` with every ``runtimePatches[].trainingRuntimeSpec.template.spec`` merged in
  (strategic merge, lists merged by ``name``) and their metadata labels/annotations added to the
  JobSet's; for the replicated Job labelled ``trainjob-ancestor-step: trainer``: ``replicas: 1``,
  ``parallelism = completions = trainer.numNodes`` (else ``mlPolicy.numNodes``, else 1),
  ``trainer.image``/``command``/``args`` on its container ``node``, ``trainer.resourcesPerNode``
  merged over that container's resources, ``trainer.env`` upserted; with ``mlPolicy.torch`` the env
  ``PET_NNODES``, ``PET_NPROC_PER_NODE`` (``trainer.numProcPerNode``, else ``auto`` with GPUs, else the
  CPU count, at least 1), ``PET_NODE_RANK`` (fieldRef to the Job completion index annotation),
  ``PET_MASTER_ADDR=<trainjob>-node-0-0.<trainjob>``, ``PET_MASTER_PORT=29500`` and container port
  29500 (also into the ``envInjection`` targets); ``spec.suspend`` copied. An existing JobSet is
  rebuilt only while the TrainJob or the JobSet is suspended (as Trainer does);
- status: ``Complete``/``Failed`` copied from the JobSet's ``Completed``/``Failed`` conditions (same
  reason and message), ``jobsStatus`` from its ``replicatedJobsStatus``; ``Suspended`` True
  (``Suspended``, "TrainJob is suspended") / False (``Resumed``, "TrainJob is resumed");
  ``activeDeadlineSeconds`` from creation (or the last resume) -> ``Failed`` (``DeadlineExceeded``,
  "TrainJob exceeded its active deadline") and the JobSet deleted. A runtimeRef of another kind or
  group -> ``Failed`` (``TrainingRuntimeNotSupported``). Trainer's TrainJob status has no restart
  count: read ``status.restarts`` of the JobSet (or the pods' ``restart-attempt`` label).

Webhooks: creating a TrainJob whose runtime does not exist, that sets a reserved ``PET_*`` env in
``trainer.env``, or whose runtime patches name replicated Jobs/containers the runtime lacks (or set
env of the ``node`` container) is denied (403 from ``validator.trainjob.trainer.kubeflow.org``);
``runtimePatches`` may change only while the TrainJob is suspended; ``runtimePatches[].time`` is
stamped on create.
"""

from __future__ import annotations

import contextlib
import copy
import time

from .controllers import ControllerBase, parse_time
from .errors import ApiError
from .jobset_api import JOBSET_KEY
from .patching import strategic_merge_patch
from .store import Json, Store, now_iso
from .trainer_api import (  # re-exported: kubeemu.trainer is the one place to import Trainer names from
    ANCESTOR_LABEL,
    ANCESTOR_TRAINER,
    CLUSTER_RUNTIME_KEY,
    COMPLETION_INDEX_PATH,
    CONTROLLER_NAME,
    GROUP,
    NODE,
    PATCHES,
    RUNTIME_KEY,
    TORCH_ENV,
    TRAINER_PORT,
    TRAINJOB_KEY,
    VALIDATOR,
    VERSION,
    cluster_training_runtime_crd,
    trainer_crds,
    training_runtime_crd,
    training_runtime_spec_schema,
    trainjob_crd,
    trainjob_spec_schema,
    trainjob_status_schema,
)
from .trainer_build import (
    TrainJobWebhooks,
    build_jobset,
    merged_template,
    register_webhooks,
    runtime_ref,
    torch_env,
    upsert_env,
)

__all__ = [
    "ANCESTOR_LABEL",
    "ANCESTOR_TRAINER",
    "CLUSTER_RUNTIME_KEY",
    "COMPLETION_INDEX_PATH",
    "CONTROLLER_NAME",
    "GROUP",
    "NODE",
    "PATCHES",
    "RUNTIME_KEY",
    "TORCH_ENV",
    "TRAINER_PORT",
    "TRAINJOB_KEY",
    "VALIDATOR",
    "VERSION",
    "TrainJobController",
    "TrainJobWebhooks",
    "build_jobset",
    "cluster_training_runtime_crd",
    "merged_template",
    "register_webhooks",
    "runtime_ref",
    "set_status_condition",
    "torch_env",
    "trainer_crds",
    "training_runtime_crd",
    "training_runtime_spec_schema",
    "trainjob_crd",
    "trainjob_spec_schema",
    "trainjob_status_schema",
    "upsert_env",
]

# ------------------------------------------------------------------------------------ controller


def set_status_condition(conditions: list[Json], type_: str, status: str, reason: str, message: str) -> None:
    """``meta.SetStatusCondition``: add or update; ``lastTransitionTime`` moves on a status change."""
    for condition in conditions:
        if condition["type"] == type_:
            if condition["status"] != status:
                condition["lastTransitionTime"] = now_iso()
            condition.update(status=status, reason=reason, message=message)
            return
    conditions.append(
        {
            "type": type_,
            "status": status,
            "reason": reason,
            "message": message,
            "lastTransitionTime": now_iso(),
        }
    )


def _true(conditions: list[Json], type_: str) -> Json | None:
    return next((c for c in conditions if c["type"] == type_ and c["status"] == "True"), None)


class TrainJobController(ControllerBase):
    """Plays Trainer's TrainJob controller (see the module docstring)."""

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        register_webhooks(store)
        self.webhooks = TrainJobWebhooks(store)

    def reconcile(self, namespace: str, name: str) -> None:
        resource = self.store.resources.get(TRAINJOB_KEY)
        if resource is None:
            return
        try:
            trainjob = self.store.get(resource, namespace, name)
        except ApiError:
            return
        spec = trainjob.get("spec") or {}
        if trainjob["metadata"].get("deletionTimestamp") or spec.get("managedBy") not in (
            None,
            CONTROLLER_NAME,
        ):
            return
        status = copy.deepcopy(trainjob.get("status") or {})
        conditions: list[Json] = status.setdefault("conditions", [])
        failed = _true(conditions, "Failed")
        if failed is not None and failed.get("reason") != "DeadlineExceeded":
            conditions.remove(failed)

        group, kind, _ = runtime_ref(trainjob)
        supported = (group, kind) in ((GROUP, "ClusterTrainingRuntime"), (GROUP, "TrainingRuntime"))
        finished = _true(conditions, "Complete") or _true(conditions, "Failed")
        if not supported:
            message = f"unsupported runtime: {kind}.{group}"
            set_status_condition(conditions, "Failed", "True", "TrainingRuntimeNotSupported", message)
        elif not finished:
            self._apply_jobset(trainjob)

        if spec.get("suspend"):
            set_status_condition(conditions, "Suspended", "True", "Suspended", "TrainJob is suspended")
        elif _true(conditions, "Suspended"):
            set_status_condition(conditions, "Suspended", "False", "Resumed", "TrainJob is resumed")

        self._mirror_jobset(trainjob, status)
        self._deadline(trainjob, status)
        if not status.get("conditions"):
            status.pop("conditions", None)
        if status or trainjob.get("status"):  # the status schema has minProperties: 1
            self.write_status(TRAINJOB_KEY, trainjob, status)

    def _apply_jobset(self, trainjob: Json) -> None:
        meta = trainjob["metadata"]
        if JOBSET_KEY not in self.store.resources:
            self.event(
                trainjob,
                "Warning",
                "TrainJobResourcesCreationFailed",
                'TrainJob resources reconciliation failed: no matches for kind "JobSet" in version '
                '"jobset.x-k8s.io/v1alpha2"',
                "trainer",
            )
            return
        jobsets = self.store.resources[JOBSET_KEY]
        existing = None
        with contextlib.suppress(ApiError):
            existing = self.store.get(jobsets, meta["namespace"], meta["name"])
        if existing is not None and not (trainjob["spec"].get("suspend") or existing["spec"].get("suspend")):
            return
        runtime = self.webhooks._runtime(trainjob)
        if runtime is None:
            _, kind, name = runtime_ref(trainjob)
            self.event(
                trainjob,
                "Warning",
                "TrainJobResourcesCreationFailed",
                f'TrainJob resources reconciliation failed: {kind.lower()}s.{GROUP} "{name}" not found',
                "trainer",
            )
            return
        desired = build_jobset(trainjob, runtime)
        try:
            if existing is None:
                self.store.create(jobsets, meta["namespace"], desired)
            else:
                body = copy.deepcopy(existing)
                body["spec"] = strategic_merge_patch(existing["spec"], desired["spec"])
                body["metadata"]["labels"] = {
                    **(existing["metadata"].get("labels") or {}),
                    **desired["metadata"].get("labels", {}),
                }
                if body != existing:
                    self.store.replace(jobsets, meta["namespace"], meta["name"], body)
        except ApiError as error:
            message = f"TrainJob resources reconciliation failed: {error.message[:950]}"
            self.event(trainjob, "Warning", "TrainJobResourcesCreationFailed", message, "trainer")

    def _mirror_jobset(self, trainjob: Json, status: Json) -> None:
        if JOBSET_KEY not in self.store.resources:
            return
        meta = trainjob["metadata"]
        try:
            jobset = self.store.get(self.store.resources[JOBSET_KEY], meta["namespace"], meta["name"])
        except ApiError:
            return
        js_status = jobset.get("status") or {}
        js_conditions = js_status.get("conditions") or []
        for js_type, tj_type in (("Completed", "Complete"), ("Failed", "Failed")):
            condition = _true(js_conditions, js_type)
            if condition is not None:
                set_status_condition(
                    status["conditions"],
                    tj_type,
                    "True",
                    condition.get("reason", ""),
                    condition.get("message", ""),
                )
        jobs = [
            {key: int(entry.get(key, 0)) for key in ("ready", "succeeded", "failed", "active", "suspended")}
            | {"name": entry["name"]}
            for entry in js_status.get("replicatedJobsStatus") or []
        ]
        if jobs:
            status["jobsStatus"] = jobs

    def _deadline(self, trainjob: Json, status: Json) -> None:
        spec = trainjob.get("spec") or {}
        deadline = spec.get("activeDeadlineSeconds")
        conditions = status["conditions"]
        if (
            not deadline
            or spec.get("suspend")
            or _true(conditions, "Complete")
            or _true(conditions, "Failed")
        ):
            return
        started = parse_time(trainjob["metadata"].get("creationTimestamp"))
        resumed = next((c for c in conditions if c["type"] == "Suspended" and c["status"] == "False"), None)
        if resumed is not None:
            started = parse_time(resumed.get("lastTransitionTime")) or started
        if started is None or time.time() < started + float(deadline):
            return
        set_status_condition(
            conditions, "Failed", "True", "DeadlineExceeded", "TrainJob exceeded its active deadline"
        )
        meta = trainjob["metadata"]
        with contextlib.suppress(ApiError, KeyError):
            self.store.delete(self.store.resources[JOBSET_KEY], meta["namespace"], meta["name"])
