"""``SFTDataPrep`` → ConfigMap (config.yaml) + Indexed Job (one completion per prep worker)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from sft_common.config import to_yaml
from sft_operator.api.dataprep import SFTDataPrepSpec, data_fields
from sft_operator.api.meta import DATAPREP, KindInfo
from sft_operator.errors import InvalidSpec, invalid_spec_from
from sft_operator.render import meta
from sft_operator.render.pods import (
    CONFIG_KEY,
    CONFIG_PATH,
    WorkloadDefaults,
    container,
    owner_env,
    pod_spec,
)

CONTAINER = "prep"
APP = "sft-prep"
CONFIG_ERROR_EXIT_CODE = 2
"""``sft_common.result.run_main`` exits 2 on a config error: retrying cannot help, so the Job fails."""


@dataclass(frozen=True)
class DataPrepChildren:
    config_map: dict[str, Any]
    job: dict[str, Any]
    spec_hash: str


def parse_spec(cr: Mapping[str, Any]) -> SFTDataPrepSpec:
    """Validate the spec with the model (incl. checks the CRD schema cannot express)."""
    try:
        return SFTDataPrepSpec.model_validate(cr.get("spec") or {})
    except ValidationError as exc:
        raise invalid_spec_from(SFTDataPrepSpec, exc) from None
    except ValueError as exc:  # raised outside pydantic's wrapping, e.g. by a nested constructor
        raise InvalidSpec(str(exc)) from None


def job_name(cr_name: str) -> str:
    return meta.child_name(cr_name, "prep")


def config_map_name(cr_name: str) -> str:
    return meta.child_name(cr_name, "prep-config")


def data_spec_hash(spec: SFTDataPrepSpec) -> str:
    dumped = spec.model_dump(mode="json", by_alias=True)
    return meta.spec_hash({key: dumped.get(key) for key in data_fields()})


def render(
    cr: Mapping[str, Any], defaults: WorkloadDefaults | None = None, info: KindInfo = DATAPREP
) -> DataPrepChildren:
    """Render both children. Raises :class:`InvalidSpec` for a spec the operator cannot run."""
    defaults = defaults or WorkloadDefaults()
    spec = parse_spec(cr)
    image = spec.image or defaults.prep_image
    if not image:
        raise InvalidSpec(
            "spec.image is not set and the operator has no default prep image (SFT_DEFAULT_PREP_IMAGE); "
            "set spec.image to the sft-prep image"
        )
    name = cr["metadata"]["name"]
    namespace = cr["metadata"]["namespace"]
    digest = data_spec_hash(spec)
    labels = meta.child_labels(info, name, APP)
    annotations = {**meta.owner_annotations(info, name), meta.SPEC_HASH_ANNOTATION: digest}
    owner = meta.owner_reference(info, cr)
    cm_name = config_map_name(name)
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": cm_name,
            "namespace": namespace,
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [owner],
        },
        "data": {CONFIG_KEY: to_yaml(spec.prep_config())},
    }
    workers = spec.parallelism
    command = [
        "sft-prep",
        "--config",
        CONFIG_PATH,
        "--worker-index",
        "$(JOB_COMPLETION_INDEX)",
        "--num-workers",
        str(workers),
    ]
    env = [
        # The Job controller injects this too; declaring it makes $(JOB_COMPLETION_INDEX) explicit.
        {
            "name": "JOB_COMPLETION_INDEX",
            "valueFrom": {
                "fieldRef": {"fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}
            },
        },
        *owner_env(info, namespace, name),
    ]
    main = container(spec, name=CONTAINER, image=image, command=command, env=env)
    job_labels = dict(labels)
    if spec.queue_name:
        job_labels[meta.KUEUE_QUEUE_LABEL] = spec.queue_name
    job_spec: dict[str, Any] = {
        "completionMode": "Indexed",
        "completions": workers,
        "parallelism": workers,
        "backoffLimit": spec.backoff_limit,
        "suspend": spec.suspend,
        "podFailurePolicy": {
            "rules": [
                {
                    "action": "FailJob",
                    "onExitCodes": {
                        "containerName": CONTAINER,
                        "operator": "In",
                        "values": [CONFIG_ERROR_EXIT_CODE],
                    },
                },
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
            ]
        },
        "template": {
            "metadata": {"labels": labels, "annotations": meta.owner_annotations(info, name)},
            "spec": pod_spec(
                spec, config_map=cm_name, containers=[main], service_account=defaults.service_account
            ),
        },
    }
    if spec.active_deadline_seconds is not None:
        job_spec["activeDeadlineSeconds"] = spec.active_deadline_seconds
    if spec.ttl_seconds_after_finished is not None:
        job_spec["ttlSecondsAfterFinished"] = spec.ttl_seconds_after_finished
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(name),
            "namespace": namespace,
            "labels": job_labels,
            "annotations": {**annotations, meta.SUSPEND_ANNOTATION: _bool(spec.suspend)},
            "ownerReferences": [owner],
        },
        "spec": job_spec,
    }
    return DataPrepChildren(config_map=config_map, job=job, spec_hash=digest)


def _bool(value: bool) -> str:
    return "true" if value else "false"
