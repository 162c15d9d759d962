"""``SFTDataPrep`` → ConfigMap (config.yaml) + Indexed Job (one completion per prep worker)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sft_common.config import to_yaml
from sft_operator.api.dataprep import SFTDataPrepSpec, data_fields
from sft_operator.api.meta import DATAPREP
from sft_operator.render import children as common
from sft_operator.render import meta
from sft_operator.render.identity import pod_service_account
from sft_operator.render.pods import CONFIG_PATH, WorkloadDefaults, container, owner_env, placement, pod_spec

CONTAINER = "prep"
APP = "sft-prep"
CONFIG_ERROR_EXIT_CODE = 2
"""``sft_common.result.run_main`` exits 2 on a config error: retrying cannot help, so the Job fails."""
RUN_ID_ENV = "SFT_RUN_ID"
"""Names one run of the prep for ``force: true`` (see :func:`run_id_env`)."""


def job_name(cr_name: str) -> str:
    """Deterministic, so a restarted operator finds (409) the child it created instead of adding one."""
    return meta.child_name(cr_name, "prep")


def config_map_name(cr_name: str) -> str:
    return meta.child_name(cr_name, "prep-config")


def run_id_env(cr: Mapping[str, Any]) -> dict[str, str]:
    """``SFT_RUN_ID`` = the CR's uid: what ``sft-prep`` needs to honour ``force: true`` with several workers.

    With ``force`` every worker must agree on one fresh run id, or each would ignore the others'
    shard receipts (sft_prep.identity). The uid is the same for every worker and every retried pod
    of the one Job a CR ever gets (so a retry resumes the forced run instead of starting it over),
    and a new SFTDataPrep, even one with the same name, gets a new uid and so forces a new run. It
    is known at render time, unlike the Job's uid, which keeps rendering pure and deterministic.
    """
    return {"name": RUN_ID_ENV, "value": str(cr["metadata"]["uid"])}


def render(cr: Mapping[str, Any], defaults: WorkloadDefaults | None = None) -> common.Children:
    """Render both children. Raises :class:`InvalidSpec` for a spec the operator cannot run."""
    defaults = defaults or WorkloadDefaults()
    spec = common.parse_spec(SFTDataPrepSpec, cr)
    image = common.image_or_default(spec.image, defaults.prep_image, "SFT_DEFAULT_PREP_IMAGE", "sft-prep")
    defaults.policy.check(spec, defaults.service_account)
    digest = common.spec_hash(spec, data_fields())
    child = common.ChildMeta.of(DATAPREP, cr, APP, digest)
    cm_name = config_map_name(child.name)
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
    env: list[dict[str, Any]] = [
        # The Job controller injects this too; declaring it makes $(JOB_COMPLETION_INDEX) explicit.
        {
            "name": "JOB_COMPLETION_INDEX",
            "valueFrom": {
                "fieldRef": {"fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}
            },
        },
        run_id_env(cr),
        *owner_env(DATAPREP, child.namespace, child.name),
    ]
    where = placement(spec, defaults.placement)
    main = container(
        spec,
        name=CONTAINER,
        image=image,
        command=command,
        env=env,
        added_capabilities=where.added_capabilities,
    )
    job_spec: dict[str, Any] = {
        "completionMode": "Indexed",
        "completions": workers,
        "parallelism": workers,
        **common.run_policy(spec),
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
        "template": child.pod_template(
            pod_spec(
                spec,
                config_map=cm_name,
                containers=[main],
                service_account=pod_service_account(DATAPREP, cr, defaults),
                where=where,
            ),
            labels=where.pod_labels,
            annotations=where.pod_annotations,
        ),
    }
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": common.runner_metadata(child, job_name(child.name), spec),
        "spec": job_spec,
    }
    config_map = common.config_map(child, cm_name, to_yaml(spec.prep_config()))
    return common.Children(config_map=config_map, job=job, spec_hash=digest)
