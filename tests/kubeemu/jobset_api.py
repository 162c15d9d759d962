"""JobSet's API as the emulator serves it: names, the CRD schema and the admission webhooks.

The facts and their sources are listed in :mod:`kubeemu.jobset` (the controller).
"""

from __future__ import annotations

import contextlib
import re

from .errors import Cause
from .errors import invalid as invalid_error
from .openapi_schema import condition_schema, int_schema, k8s_schema, obj_schema, str_list_schema, str_schema
from .store import Json, Store

GROUP = "jobset.x-k8s.io"
VERSION = "v1alpha2"
JOBSET_KEY = (GROUP, "jobsets")
SERVICE_KEY = ("", "services")
CONTROLLER_NAME = "jobset.sigs.k8s.io/jobset-controller"
COMPONENT = "jobset"

# Label/annotation keys (api/jobset/v1alpha2/jobset_types.go, pkg/constants/constants.go).
L = "jobset.sigs.k8s.io/"
JOBSET_NAME = L + "jobset-name"
JOBSET_UID = L + "jobset-uid"
REPLICATED_JOB_NAME = L + "replicatedjob-name"
REPLICATED_JOB_REPLICAS = L + "replicatedjob-replicas"
GLOBAL_REPLICAS = L + "global-replicas"
JOB_INDEX = L + "job-index"
JOB_GLOBAL_INDEX = L + "job-global-index"
JOB_KEY_LABEL = L + "job-key"
GROUP_NAME = L + "group-name"
GROUP_REPLICAS = L + "group-replicas"
JOB_GROUP_INDEX = L + "job-group-index"
RESTART_ATTEMPT = L + "restart-attempt"
COORDINATOR = L + "coordinator"

ACTIONS = (
    "FailJobSet",
    "RestartJobSet",
    "RestartJobSetAndIgnoreMaxRestarts",
    "RestartJob",
    "RestartJobAndIgnoreMaxRestarts",
)
_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


# ------------------------------------------------------------------------------------------- CRD


_IMMUTABLE = [{"rule": "self == oldSelf", "message": "Value is immutable"}]


def jobset_spec_schema() -> Json:
    """``JobSetSpec`` (also embedded in Trainer's runtimes as ``spec.template.spec``)."""
    replicated_job = obj_schema(
        {
            "name": str_schema(),
            "groupName": str_schema(default="default"),
            "template": k8s_schema("batch.v1.JobTemplateSpec"),
            "replicas": int_schema(0) | {"default": 1},
            "dependsOn": {
                "type": "array",
                "maxItems": 5,
                "items": obj_schema(
                    {"name": str_schema(), "status": str_schema(enum=["Ready", "Complete"])},
                    ["name", "status"],
                ),
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["name"],
                "x-kubernetes-validations": _IMMUTABLE,
            },
        },
        ["name", "template"],
    )
    rule = obj_schema(
        {
            "name": str_schema(),
            "action": str_schema(enum=list(ACTIONS)),
            "onJobFailureReasons": {"type": "array", "items": str_schema()},
            "onJobFailureMessagePatterns": {"type": "array", "items": str_schema()},
            "targetReplicatedJobs": str_list_schema(),
        },
        ["action", "name"],
    )
    return obj_schema(
        {
            "replicatedJobs": {
                "type": "array",
                "items": replicated_job,
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["name"],
            },
            "network": obj_schema(
                {
                    "enableDNSHostnames": {"type": "boolean"},
                    "subdomain": str_schema(),
                    "publishNotReadyAddresses": {"type": "boolean"},
                },
                rules=_IMMUTABLE,
            ),
            "successPolicy": obj_schema(
                {"operator": str_schema(enum=["All", "Any"]), "targetReplicatedJobs": str_list_schema()},
                ["operator"],
                rules=_IMMUTABLE,
            ),
            "failurePolicy": obj_schema(
                {
                    "maxRestarts": int_schema(),
                    "restartStrategy": str_schema(
                        enum=["Recreate", "BlockingRecreate", "InPlaceRestart"], default="Recreate"
                    ),
                    "rules": {"type": "array", "items": rule},
                },
                rules=_IMMUTABLE,
            ),
            "startupPolicy": obj_schema(
                {"startupPolicyOrder": str_schema(enum=["AnyOrder", "InOrder"])},
                ["startupPolicyOrder"],
                rules=_IMMUTABLE,
            ),
            "suspend": {"type": "boolean"},
            "coordinator": obj_schema(
                {
                    "replicatedJob": str_schema(),
                    "jobIndex": {"type": "integer"},
                    "podIndex": {"type": "integer"},
                },
                ["replicatedJob"],
            ),
            "managedBy": str_schema(),
            "ttlSecondsAfterFinished": int_schema(0),
            "volumeClaimPolicies": {
                "type": "array",
                "maxItems": 50,
                "items": obj_schema(
                    {
                        "templates": {
                            "type": "array",
                            "maxItems": 50,
                            "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                        },
                        "retentionPolicy": obj_schema({"whenDeleted": str_schema(enum=["Delete", "Retain"])}),
                    }
                ),
                "x-kubernetes-list-type": "atomic",
                "x-kubernetes-validations": _IMMUTABLE,
            },
        },
        rules=[
            {
                "rule": "!(has(self.startupPolicy) && self.startupPolicy.startupPolicyOrder == 'InOrder' "
                "&& self.replicatedJobs.exists(x, has(x.dependsOn)))",
                "message": "StartupPolicy and DependsOn APIs are mutually exclusive",
            }
        ],
    )


def jobset_status_schema() -> Json:
    counts = {key: int_schema() for key in ("ready", "succeeded", "failed", "active", "suspended")}
    int_list = {"type": "array", "items": int_schema(), "maxItems": 1024, "x-kubernetes-list-type": "atomic"}
    return obj_schema(
        {
            "conditions": {
                "type": "array",
                "items": condition_schema(),
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["type"],
            },
            "restarts": int_schema(),
            "restartsCountTowardsMax": int_schema(),
            "terminalState": str_schema(),
            "replicatedJobsStatus": {
                "type": "array",
                "items": obj_schema(
                    {
                        "name": str_schema(),
                        **counts,
                        "jobRestarts": int_list,
                        "jobRestartsCountTowardsMax": int_list,
                    },
                    ["active", "failed", "name", "ready", "succeeded", "suspended"],
                ),
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["name"],
            },
            "previousInPlaceRestartAttempt": int_schema(0),
            "currentInPlaceRestartAttempt": int_schema(0),
        }
    )


def jobset_crd() -> Json:
    """The ``jobsets.jobset.x-k8s.io`` CRD (v1alpha2, namespaced, status subresource)."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"jobsets.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"plural": "jobsets", "singular": "jobset", "kind": "JobSet", "listKind": "JobSetList"},
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {
                        "openAPIV3Schema": obj_schema(
                            {
                                "apiVersion": str_schema(),
                                "kind": str_schema(),
                                "metadata": {"type": "object"},
                                "spec": jobset_spec_schema(),
                                "status": jobset_status_schema(),
                            }
                        )
                    },
                }
            ],
        },
    }


# -------------------------------------------------------------------------------------- webhooks


def default_jobset(obj: Json, old: Json | None) -> None:
    """The mutating webhook ``mjobset.kb.io`` (create only); malformed input is left to the schema."""
    if old is not None:
        return
    with contextlib.suppress(AttributeError, TypeError):
        _default_jobset_spec(obj.setdefault("spec", {}))


def _default_jobset_spec(spec: Json) -> None:
    spec.setdefault("successPolicy", {"operator": "All"})
    spec.setdefault("startupPolicy", {"startupPolicyOrder": "AnyOrder"})
    for rjob in spec.get("replicatedJobs") or []:
        job_spec = rjob.setdefault("template", {}).setdefault("spec", {})
        job_spec.setdefault("completionMode", "Indexed")
        pod_spec = job_spec.setdefault("template", {}).setdefault("spec", {})
        if not pod_spec.get("restartPolicy"):
            pod_spec["restartPolicy"] = "OnFailure"
    network = spec.setdefault("network", {})
    network.setdefault("enableDNSHostnames", True)
    network.setdefault("publishNotReadyAddresses", True)
    for index, rule in enumerate((spec.get("failurePolicy") or {}).get("rules") or []):
        if not rule.get("name"):
            rule["name"] = f"failurePolicyRule{index}"


def validate_jobset(obj: Json, old: Json | None) -> None:
    """The checks of the validating webhook ``vjobset.kb.io`` that users trip over."""
    if old is not None:
        return
    spec = obj.get("spec") or {}
    name = obj["metadata"]["name"]
    causes: list[Cause] = []
    names: list[str] = []
    for index, rjob in enumerate(spec.get("replicatedJobs") or []):
        path = f"spec.replicatedJobs[{index}]"
        if rjob["name"] in names:
            causes.append(Cause(f"{path}.name", f'Duplicate value: "{rjob["name"]}"', "FieldValueDuplicate"))
        names.append(rjob["name"])
        replicas = int(rjob.get("replicas", 1))
        longest_job = f"{name}-{rjob['name']}-{max(replicas - 1, 0)}"
        job_spec = (rjob.get("template") or {}).get("spec") or {}
        checks = [(longest_job, "Job name")]
        if job_spec.get("completionMode") == "Indexed" and job_spec.get("completions") is not None:
            longest_pod = f"{longest_job}-{int(job_spec['completions']) - 1}-abcde"
            checks.append((longest_pod, "pod name"))
        for candidate, what in checks:
            if len(candidate) > 63 or not _DNS1035.match(candidate):
                causes.append(
                    Cause(
                        f"{path}.name",
                        f'Invalid value: "{longest_job}": {what} "{candidate}" generated from this JobSet '
                        "must be a DNS-1035 label of at most 63 characters",
                    )
                )
    for target in (spec.get("successPolicy") or {}).get("targetReplicatedJobs") or []:
        if target not in names:
            causes.append(
                Cause(
                    "spec.successPolicy.targetReplicatedJobs",
                    f"invalid replicatedJob name '{target}' does not appear in .spec.ReplicatedJobs",
                )
            )
    for index, rule in enumerate((spec.get("failurePolicy") or {}).get("rules") or []):
        for target in rule.get("targetReplicatedJobs") or []:
            if target not in names:
                causes.append(
                    Cause(
                        f"spec.failurePolicy.rules[{index}].targetReplicatedJobs",
                        f"invalid replicatedJob name '{target}' does not appear in .spec.ReplicatedJobs",
                    )
                )
    if causes:
        raise invalid_error("JobSet", name, causes, GROUP)


def register_webhooks(store: Store) -> None:
    for hooks, hook in (
        (store.mutating_hooks[JOBSET_KEY], default_jobset),
        (store.validating_hooks[JOBSET_KEY], validate_jobset),
    ):
        if hook not in hooks:
            hooks.append(hook)
