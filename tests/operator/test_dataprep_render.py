"""Rendering SFTDataPrep → ConfigMap + Indexed Job: contents, hardening, names, validity."""

from __future__ import annotations

import copy
import importlib.metadata
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from prep_objects import UID, cr, k8s_versions

from sft_operator.errors import InvalidSpec
from sft_operator.render import dataprep as render
from sft_operator.render.meta import MAX_CHILD_NAME, child_name, label_value
from sft_operator.render.pods import WorkloadDefaults, WorkloadPolicy
from sft_operator.render.suspend import suspend_patch
from sft_prep.config import PrepConfig

REPO = Path(__file__).resolve().parents[2]

K8S_VERSIONS = k8s_versions()
WORKLOAD_SA = WorkloadDefaults(service_account="sft-workload")
"""The newest schema set the installed kubernetes-validate ships, and the oldest Kubernetes we support."""


def container(job: dict[str, Any]) -> dict[str, Any]:
    return job["spec"]["template"]["spec"]["containers"][0]


def env(job: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(job)["env"]}


def test_config_map_holds_the_workload_config_in_snake_case() -> None:
    children = render.render(cr(packSize=2048, validRatio=0.25))
    text = children.config_map["data"]["config.yaml"]
    data = yaml.safe_load(text)
    assert (
        data["pack_size"] == 2048
        and data["valid_ratio"] == 0.25
        and data["output_dir"] == "s3://bucket/prep/out"
    )
    assert "image" not in data and "parallelism" not in data  # only the workload part
    config = PrepConfig.model_validate(data)
    assert config.datasets[0].path == "s3://bucket/chats/*.jsonl"


def test_indexed_job_runs_one_worker_per_completion() -> None:
    job = render.render(cr(parallelism=4)).job
    assert job["spec"]["completionMode"] == "Indexed"
    assert job["spec"]["completions"] == 4 and job["spec"]["parallelism"] == 4
    assert container(job)["command"] == [
        "sft-prep", "--config", "/etc/sft/config.yaml",
        "--worker-index", "$(JOB_COMPLETION_INDEX)", "--num-workers", "4",
    ]  # fmt: skip
    e = env(job)
    assert e["SFT_OWNER_GROUP"] == "sft.dev" and e["SFT_OWNER_VERSION"] == "v1alpha1"
    assert (
        e["SFT_OWNER_PLURAL"] == "sftdatapreps"
        and e["SFT_OWNER_NAMESPACE"] == "ml"
        and e["SFT_OWNER_NAME"] == "demo"
    )
    assert "job-completion-index" in e["JOB_COMPLETION_INDEX"]["fieldRef"]["fieldPath"]
    mounts = {m["mountPath"]: m for m in container(job)["volumeMounts"]}
    assert mounts["/etc/sft"]["readOnly"] is True
    volumes = {v["name"]: v for v in job["spec"]["template"]["spec"]["volumes"]}
    assert volumes["sft-config"]["configMap"]["name"] == "demo-prep-config"


def test_every_worker_gets_the_crs_uid_as_run_id_for_force() -> None:
    """sft-prep with force and several workers needs one SFT_RUN_ID shared by all of them (else it
    exits 2); the CR's uid is it: fixed for the Job's lifetime, new for a new SFTDataPrep."""
    job = render.render(cr(parallelism=2, force=True)).job
    assert env(job)["SFT_RUN_ID"] == UID  # a literal in the one pod template all indexes share
    recreated = cr(parallelism=2, force=True)
    recreated["metadata"]["uid"] = "0b7c2f7e-3333-4c2d-9a55-000000000003"
    assert env(render.render(recreated).job)["SFT_RUN_ID"] == recreated["metadata"]["uid"]


def test_pods_are_hardened() -> None:
    job = render.render(cr()).job
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = container(job)["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["readOnlyRootFilesystem"] is True and sc["runAsNonRoot"] is True
    assert container(job)["terminationMessagePolicy"] == "FallbackToLogsOnError"
    # no ServiceAccount named: the CR's own (render.identity), whose token may patch only its status
    assert pod["serviceAccountName"] == "demo-prep-workload"
    with_sa = render.render(cr(serviceAccountName="sft-workload"), WORKLOAD_SA).job["spec"]["template"][
        "spec"
    ]
    assert with_sa["serviceAccountName"] == "sft-workload" and "automountServiceAccountToken" not in with_sa


def test_labels_owner_references_and_no_copied_parent_labels() -> None:
    owner = cr()
    owner["metadata"]["labels"] = {"team": "secret-project", "app.kubernetes.io/name": "mine"}
    children = render.render(owner)
    for obj in (children.config_map, children.job, children.job["spec"]["template"]):
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "sft-operator"
        assert labels["app.kubernetes.io/instance"] == "demo"
        assert labels["app.kubernetes.io/component"] == "data-prep"
        assert labels["sft.dev/dataprep"] == "demo"
        assert "team" not in labels and labels["app.kubernetes.io/name"] == "sft-prep"
    for obj in (children.config_map, children.job):
        (ref,) = obj["metadata"]["ownerReferences"]
        assert ref == {
            "apiVersion": "sft.dev/v1alpha1", "kind": "SFTDataPrep", "name": "demo", "uid": UID,
            "controller": True, "blockOwnerDeletion": True,
        }  # fmt: skip
    annotations = children.job["spec"]["template"]["metadata"]["annotations"]
    assert annotations == {"sft.dev/owner-kind": "SFTDataPrep", "sft.dev/owner-name": "demo"}


def test_rendering_is_deterministic_and_hash_tracks_data_fields() -> None:
    a = render.render(cr())
    b = render.render(copy.deepcopy(cr()))
    assert a == b
    assert render.render(cr(suspend=True)).spec_hash == a.spec_hash  # suspend is not data-defining
    assert render.render(cr(resources={"limits": {"memory": "8Gi"}})).spec_hash == a.spec_hash
    assert render.render(cr(packSize=8192)).spec_hash != a.spec_hash
    assert render.render(cr(parallelism=2)).spec_hash != a.spec_hash
    assert a.job["metadata"]["annotations"]["sft.dev/spec-hash"] == a.spec_hash


def test_long_names_are_shortened_with_a_hash() -> None:
    long_name = "a" * 40 + "-" + "b" * 60
    children = render.render(cr(name=long_name))
    job_name = children.job["metadata"]["name"]
    assert len(job_name) <= MAX_CHILD_NAME and job_name.endswith("-prep")
    assert len(children.config_map["metadata"]["name"]) <= MAX_CHILD_NAME
    assert child_name(long_name, "prep") != child_name(long_name[:-1] + "c", "prep")  # hash differs
    labels = children.job["metadata"]["labels"]
    assert len(labels["sft.dev/dataprep"]) <= 63 and labels["sft.dev/dataprep"] == label_value(long_name)
    assert children.job["spec"]["template"]["metadata"]["annotations"]["sft.dev/owner-name"] == long_name
    assert child_name("short", "prep") == "short-prep"


def test_kueue_queue_label_and_suspend() -> None:
    job = render.render(cr(queueName="team-a", suspend=True)).job
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
    assert "kueue.x-k8s.io/queue-name" not in job["spec"]["template"]["metadata"]["labels"]
    assert job["spec"]["suspend"] is True
    assert job["metadata"]["annotations"]["sft.dev/suspend"] == "true"
    assert render.render(cr()).job["spec"]["suspend"] is False


def test_suspend_is_written_only_when_the_user_changed_it() -> None:
    job = render.render(cr(queueName="team-a")).job  # operator wrote suspend: false
    kueue_suspended = copy.deepcopy(job)
    kueue_suspended["spec"]["suspend"] = True  # Kueue's webhook suspended it
    assert suspend_patch(kueue_suspended, desired=False) is None  # never force-resume a queued Job
    patch = suspend_patch(kueue_suspended, desired=True)  # the user suspends
    assert patch == {"spec": {"suspend": True}, "metadata": {"annotations": {"sft.dev/suspend": "true"}}}
    user_suspended = render.render(cr(suspend=True)).job
    assert suspend_patch(user_suspended, desired=False) == {
        "spec": {"suspend": False},
        "metadata": {"annotations": {"sft.dev/suspend": "false"}},
    }
    assert suspend_patch(job, False, field=("spec", "runPolicy")) is None
    assert suspend_patch(job, True, field=("spec", "runPolicy"))["spec"] == {"runPolicy": {"suspend": True}}


def test_batch_fields_and_pod_failure_policy() -> None:
    job = render.render(cr(backoffLimit=5, activeDeadlineSeconds=3600, ttlSecondsAfterFinished=600)).job
    assert job["spec"]["backoffLimit"] == 5
    assert job["spec"]["activeDeadlineSeconds"] == 3600 and job["spec"]["ttlSecondsAfterFinished"] == 600
    rules = job["spec"]["podFailurePolicy"]["rules"]
    assert rules[0]["action"] == "FailJob" and rules[0]["onExitCodes"]["values"] == [2]
    assert "activeDeadlineSeconds" not in render.render(cr()).job["spec"]


ZONE_A = {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}
ZONE_A_AFFINITY = {
    "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [ZONE_A]}}
}


def full_featured() -> dict[str, Any]:
    return cr(
        image="registry.example/sft-prep@sha256:" + "a" * 64,
        imagePullPolicy="Always",
        imagePullSecrets=[{"name": "regcred"}],
        resources={"requests": {"cpu": "4", "memory": "16Gi"}, "limits": {"memory": "32Gi", "cpu": 8}},
        nodeSelector={"pool": "cpu"},
        tolerations=[{"key": "spot", "operator": "Exists", "effect": "NoSchedule"}],
        affinity=ZONE_A_AFFINITY,
        serviceAccountName="sft-workload",
        priorityClassName="batch-low",
        env=[
            {"name": "AWS_ENDPOINT_URL", "value": "http://minio.storage:9000"},
            {"name": "AWS_SECRET_ACCESS_KEY", "valueFrom": {"secretKeyRef": {"name": "s3", "key": "secret"}}},
        ],
        envFrom=[{"secretRef": {"name": "hf-token"}}],
        volumes=[{"name": "out", "persistentVolumeClaim": {"claimName": "prep-out"}}],
        volumeMounts=[{"name": "out", "mountPath": "/data"}],
        outputDir="/data/prep",
        queueName="team-a",
        activeDeadlineSeconds=7200,
        ttlSecondsAfterFinished=3600,
    )  # fmt: skip


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("owner", [cr(), full_featured()], ids=["minimal", "full"])
def test_rendered_manifests_pass_kubernetes_validate(owner: dict[str, Any], version: str) -> None:
    children = render.render(owner, WORKLOAD_SA)
    for obj in (children.config_map, children.job):
        kubernetes_validate.validate(obj, version, strict=True)


def test_full_featured_fields_reach_the_pod() -> None:
    job = render.render(full_featured(), WORKLOAD_SA).job
    pod = job["spec"]["template"]["spec"]
    c = container(job)
    assert c["resources"] == {
        "requests": {"cpu": "4", "memory": "16Gi"},
        "limits": {"memory": "32Gi", "cpu": 8},
    }
    assert pod["nodeSelector"] == {"pool": "cpu"} and pod["tolerations"][0]["key"] == "spot"
    assert pod["affinity"]["nodeAffinity"] and pod["priorityClassName"] == "batch-low"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert c["envFrom"] == [{"secretRef": {"name": "hf-token"}}]
    assert env(job)["AWS_SECRET_ACCESS_KEY"] == {"secretKeyRef": {"name": "s3", "key": "secret"}}
    assert {"name": "out", "mountPath": "/data"} in c["volumeMounts"]
    assert {"name": "out", "persistentVolumeClaim": {"claimName": "prep-out"}} in pod["volumes"]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"parallelism": 9}, "parallelism (9) exceeds numShards (8)"),
        ({"outputDir": "relative/out"}, "relative path"),
        ({"outputDir": "gs://bucket/out"}, "scheme 'gs://' is not supported"),
        ({"outputDir": "s3:///no-bucket"}, "has no bucket"),
        ({"outputDir": "/data/out"}, "no volumeMount holds it"),
        ({"outputDir": "file:///data/out"}, "no volumeMount holds it"),
        ({"datasets": [{"name": "x", "path": "hf:///nothing"}]}, "has no organisation"),
        ({"env": [{"name": "HF_TOKEN", "value": "hf_abc"}]}, "looks like a credential"),
        ({"env": [{"name": "SFT_OWNER_NAME", "value": "x"}]}, "set by the operator"),
        ({"env": [{"name": "SFT_RUN_ID", "value": "x"}]}, "one value for all workers"),
        ({"resources": {"limits": {"memory": "lots"}}}, "is not a Kubernetes quantity"),
        ({"volumes": [{"name": "sft-config", "emptyDir": {}}]}, "reserved for the operator"),
        ({"volumeMounts": [{"name": "missing", "mountPath": "/x"}]}, "'missing' is not a volume"),
        ({"maxDocTokens": 9000}, "cannot exceed pack_size"),
        ({"packSize": "big"}, "packSize"),
        ({"unknownField": 1}, "unknown key 'unknownField'"),
    ],
)
def test_invalid_specs_explain_what_to_fix(overrides: dict[str, Any], expected: str) -> None:
    with pytest.raises(InvalidSpec) as info:
        render.render(cr(**overrides))
    assert expected in info.value.message
    assert info.value.reason == "InvalidSpec"


def test_local_output_on_a_mounted_volume_is_fine() -> None:
    owner = cr(
        outputDir="/data/prep/out",
        volumes=[{"name": "out", "persistentVolumeClaim": {"claimName": "c"}}],
        volumeMounts=[{"name": "out", "mountPath": "/data"}],
    )
    assert render.render(owner).config_map["data"]["config.yaml"].count("/data/prep/out") == 1


def test_operator_defaults_fill_image_and_service_account() -> None:
    defaults = WorkloadDefaults(
        prep_image="ghcr.io/sft-operator/sft-prep:0.1.0",
        service_account="sft-workload",
        policy=WorkloadPolicy(service_accounts=frozenset({"mine"})),
    )
    owner = cr()
    del owner["spec"]["image"]
    job = render.render(owner, defaults).job
    assert container(job)["image"] == "ghcr.io/sft-operator/sft-prep:0.1.0"
    assert job["spec"]["template"]["spec"]["serviceAccountName"] == "sft-workload"
    explicit = render.render(cr(serviceAccountName="mine"), defaults).job
    assert container(explicit)["image"] == "registry.example/sft-prep:0.1.0"
    assert explicit["spec"]["template"]["spec"]["serviceAccountName"] == "mine"
    with pytest.raises(InvalidSpec, match="SFT_DEFAULT_PREP_IMAGE"):
        render.render(owner)
    env = {
        "SFT_DEFAULT_PREP_IMAGE": "a:1",
        "SFT_WORKLOAD_SERVICE_ACCOUNT": "sa",
        "SFT_DEFAULT_TRAINER_IMAGE": "",
    }
    assert WorkloadDefaults.from_env(env) == WorkloadDefaults(prep_image="a:1", service_account="sa")


def test_a_bare_operator_defaults_to_the_release_images() -> None:
    """`python -m sft_operator` without the chart (no SFT_DEFAULT_*): the images of this release, named
    as the chart names them, so the samples run instead of stalling on "no default image"."""
    version = importlib.metadata.version("sft-operator")
    bare = WorkloadDefaults.from_env({})
    assert bare.prep_image == f"ghcr.io/sft-operator/sft-prep:{version}"
    assert bare.trainer_image == f"ghcr.io/sft-operator/sft-trainer:{version}"
    owner = cr()
    del owner["spec"]["image"]
    assert container(render.render(owner, bare).job)["image"] == bare.prep_image

    chart = REPO / "charts" / "sft-operator"
    values = yaml.safe_load((chart / "values.yaml").read_text())["workloads"]
    assert bare.prep_image == f"{values['prepImage']['repository']}:{version}"
    assert bare.trainer_image == f"{values['trainerImage']['repository']}:{version}"
    assert yaml.safe_load((chart / "Chart.yaml").read_text())["appVersion"] == version


@pytest.mark.parametrize(
    ("volume", "source"),
    [
        ({"name": "root", "hostPath": {"path": "/"}}, "hostPath"),
        ({"name": "share", "nfs": {"server": "nfs.internal", "path": "/export"}}, "nfs"),
        ({"name": "drv", "flexVolume": {"driver": "example/drv"}}, "flexVolume"),
        ({"name": "disk", "iscsi": {"targetPortal": "10.0.0.1:3260", "iqn": "iqn.x", "lun": 0}}, "iscsi"),
    ],
)
def test_node_level_volumes_are_refused_unless_the_policy_allows_them(
    volume: dict[str, Any], source: str
) -> None:
    """Only the restricted Pod Security Standard's volume sources by default (a CR could otherwise
    mount hostPath: / and read the node); the chart's workloads.policy.extraVolumeTypes opens more."""
    owner = cr(volumes=[volume], volumeMounts=[{"name": volume["name"], "mountPath": "/mnt/x"}])
    with pytest.raises(InvalidSpec, match=f"{source} volumes are not allowed") as caught:
        render.render(owner)
    assert caught.value.reason == "VolumeNotAllowed" and "extraVolumeTypes" in caught.value.message
    allowing = WorkloadDefaults(policy=WorkloadPolicy(extra_volume_types=frozenset({source})))
    pod = render.render(owner, allowing).job["spec"]["template"]["spec"]
    assert volume in pod["volumes"]
    anything = WorkloadDefaults(policy=WorkloadPolicy(extra_volume_types=frozenset({"*"})))
    assert volume in render.render(owner, anything).job["spec"]["template"]["spec"]["volumes"]


def test_the_restricted_volume_sources_are_allowed_by_default() -> None:
    volumes = [
        {"name": "pvc", "persistentVolumeClaim": {"claimName": "c"}},
        {"name": "cm", "configMap": {"name": "m"}},
        {"name": "sec", "secret": {"secretName": "s"}},
        {"name": "proj", "projected": {"sources": []}},
        {"name": "csi", "csi": {"driver": "example.csi"}},
        {"name": "eph", "ephemeral": {"volumeClaimTemplate": {"spec": {"accessModes": ["ReadWriteOnce"]}}}},
        {"name": "dapi", "downwardAPI": {"items": []}},
        {"name": "scratch", "emptyDir": {}},
    ]
    mounts = [{"name": v["name"], "mountPath": f"/mnt/{v['name']}"} for v in volumes]
    assert render.render(cr(volumes=volumes, volumeMounts=mounts)).job


def test_service_account_must_be_the_workload_one_or_allowed() -> None:
    """Any ServiceAccount of the namespace would otherwise lend its rights to a CR's pods."""
    defaults = WorkloadDefaults(service_account="sft-workload")
    with pytest.raises(InvalidSpec, match="serviceAccountName 'admin' is not allowed") as caught:
        render.render(cr(serviceAccountName="admin"), defaults)
    assert caught.value.reason == "ServiceAccountNotAllowed"
    assert "workloads.policy.serviceAccounts" in caught.value.message
    assert render.render(cr(serviceAccountName="sft-workload"), defaults).job
    allowed = WorkloadDefaults(
        service_account="sft-workload", policy=WorkloadPolicy(frozenset(), frozenset({"admin"}))
    )
    assert render.render(cr(serviceAccountName="admin"), allowed).job


def test_the_policy_comes_from_the_operator_environment() -> None:
    env = {"SFT_ALLOWED_EXTRA_VOLUME_TYPES": "nfs, hostPath", "SFT_ALLOWED_SERVICE_ACCOUNTS": "a,b,"}
    assert WorkloadDefaults.from_env(env).policy == WorkloadPolicy(
        extra_volume_types=frozenset({"nfs", "hostPath"}), service_accounts=frozenset({"a", "b"})
    )
    assert WorkloadDefaults.from_env({}).policy == WorkloadPolicy()
