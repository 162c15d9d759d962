"""Workload identity in any namespace: the operator gives each CR, in the CR's namespace, a
ServiceAccount, a Role that may patch only that CR's status, and the RoleBinding, all owned by the CR.

Against the emulator, which refuses pods naming a missing ServiceAccount (the apiserver's
ServiceAccount admission) and garbage-collects by ownerReferences. The narrowing is checked with
Kubernetes' RBAC matching rules (a rule applies when apiGroup, resource[/subresource] and verb match
and, if it lists resourceNames, the object's name is one of them: k8s.io/docs "Using RBAC
Authorization", Referring to resources).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import yaml
from operator_harness import WAIT, run_operator
from test_operator_dataprep import prep
from test_sftrun_operator import TRAINER_IMAGE
from test_sftrun_operator import run as sftrun

from inprocess_operator import TEST_IMAGE
from kubeemu import ApiError, KubeEmulator
from kubeemu.podrunner import PodRunner
from sft_operator import reconcile_steps as steps
from sft_operator.api.meta import DATAPREP
from sft_operator.context import Context
from sft_operator.kube.client import KubeClient
from sft_operator.render.pods import WorkloadDefaults, WorkloadPolicy

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "manifests" / "samples" / "sftdataprep-tiny.yaml"
IMAGE_SAMPLES = "/opt/sft/lib/python3.11/site-packages/sft_prep/samples"


def rbac_allows(rules: list[dict[str, Any]], verb: str, group: str, resource: str, name: str) -> bool:
    return any(
        group in rule["apiGroups"]
        and resource in rule["resources"]
        and verb in rule["verbs"]
        and (not rule.get("resourceNames") or name in rule["resourceNames"])
        for rule in rules
    )


def owned_by(obj: dict[str, Any], owner: dict[str, Any]) -> bool:
    (ref,) = obj["metadata"]["ownerReferences"]
    return ref["uid"] == owner["metadata"]["uid"] and ref["controller"] is True


def in_ns(body: dict[str, Any], namespace: str) -> dict[str, Any]:
    body["metadata"]["namespace"] = namespace
    return body


def test_each_prep_gets_its_own_narrow_identity_in_a_fresh_namespace(cluster: KubeEmulator) -> None:
    kube = cluster
    kube.create_namespace("team-fresh")  # no ServiceAccount, Role or binding made by anyone
    with run_operator("team-fresh"):
        kube.create(in_ns(prep("a"), "team-fresh"))
        kube.create(in_ns(prep("b", outputDir="s3://bucket/out-b"), "team-fresh"))
        job = kube.wait_for_object("Job", "a-prep", namespace="team-fresh", timeout=WAIT)
        kube.wait_for_object("Job", "b-prep", namespace="team-fresh", timeout=WAIT)
    cr = kube.get("SFTDataPrep", "a", "team-fresh")
    account = kube.get("ServiceAccount", "a-prep-workload", "team-fresh")
    role = kube.get("Role", "a-prep-workload", "team-fresh")
    binding = kube.get("RoleBinding", "a-prep-workload", "team-fresh")
    assert all(owned_by(obj, cr) for obj in (account, role, binding))
    assert job["spec"]["template"]["spec"]["serviceAccountName"] == "a-prep-workload"
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "a-prep-workload",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "a-prep-workload", "namespace": "team-fresh"}
    ]
    rules = role["rules"]
    assert rbac_allows(rules, "patch", "sft.dev", "sftdatapreps/status", "a")
    assert not rbac_allows(rules, "patch", "sft.dev", "sftdatapreps/status", "b")  # not another CR's
    assert not rbac_allows(rules, "patch", "sft.dev", "sftdatapreps", "a")  # not the spec
    assert not rbac_allows(rules, "get", "sft.dev", "sftdatapreps/status", "a")
    assert not rbac_allows(rules, "patch", "sft.dev", "sftruns/status", "a")
    # deleting the CR garbage-collects its identity
    kube.delete("SFTDataPrep", "a", "team-fresh")
    for kind in ("ServiceAccount", "Role", "RoleBinding"):
        kube.wait_for_deletion(kind, "a-prep-workload", "team-fresh")
    assert kube.get_or_none("Role", "b-prep-workload", "team-fresh") is not None


def test_a_named_service_account_is_bound_not_created(cluster: KubeEmulator) -> None:
    kube = cluster
    kube.create(
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "s3-reader", "namespace": "default"},
        }
    )
    # a CR may name a ServiceAccount only where the chart's workloads.policy.serviceAccounts allows it
    allowed = WorkloadDefaults(
        prep_image=TEST_IMAGE, policy=WorkloadPolicy(service_accounts=frozenset({"s3-reader"}))
    )
    with run_operator(defaults=allowed):
        kube.create(prep("mine", serviceAccountName="s3-reader"))
        job = kube.wait_for_object("Job", "mine-prep", timeout=WAIT)
    assert job["spec"]["template"]["spec"]["serviceAccountName"] == "s3-reader"
    assert kube.get_or_none("ServiceAccount", "mine-prep-workload") is None
    binding = kube.get("RoleBinding", "mine-prep-workload")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "s3-reader", "namespace": "default"}]
    assert kube.get_or_none("ServiceAccount", "s3-reader") is not None  # not the operator's to touch


def test_sftrun_gets_a_run_scoped_identity(cluster: KubeEmulator) -> None:
    kube = cluster
    kube.install_pytorchjob_crd()
    defaults = WorkloadDefaults(prep_image=TEST_IMAGE, trainer_image=TRAINER_IMAGE)
    with run_operator(defaults=defaults):
        kube.create(sftrun("r", data={"uri": "s3://bucket/data"}))
        ptj = kube.wait_for_object("PyTorchJob", "r-train", timeout=WAIT, api_version="kubeflow.org/v1")
    cr = kube.get("SFTRun", "r")
    for replica in ptj["spec"]["pytorchReplicaSpecs"].values():
        assert replica["template"]["spec"]["serviceAccountName"] == "r-train-workload"
    role = kube.get("Role", "r-train-workload")
    assert owned_by(role, cr) and owned_by(kube.get("ServiceAccount", "r-train-workload"), cr)
    assert rbac_allows(role["rules"], "patch", "sft.dev", "sftruns/status", "r")
    assert not rbac_allows(role["rules"], "patch", "sft.dev", "sftdatapreps/status", "r")
    assert not rbac_allows(role["rules"], "patch", "sft.dev", "sftruns/status", "other-run")


def test_binding_follows_a_service_account_change(cluster: KubeEmulator) -> None:
    """spec.serviceAccountName edited before the Job exists (e.g. after a failed create): the next
    reconcile re-points the existing RoleBinding instead of keeping the old subject."""
    kube = cluster
    created = kube.create(prep("p", serviceAccountName="first"))

    async def ensure(cr: dict[str, Any]) -> None:
        ctx = Context(client=KubeClient(kube.url), defaults=WorkloadDefaults(prep_image=TEST_IMAGE))
        try:
            await steps.ensure_workload_identity(ctx, DATAPREP, cr, "SFTDataPrep p")
        finally:
            await ctx.client.close()

    asyncio.run(ensure(created))
    assert kube.get("RoleBinding", "p-prep-workload")["subjects"][0]["name"] == "first"
    changed = kube.patch("SFTDataPrep", "p", {"spec": {"serviceAccountName": "second"}})
    asyncio.run(ensure(changed))
    assert kube.get("RoleBinding", "p-prep-workload")["subjects"] == [
        {"kind": "ServiceAccount", "name": "second", "namespace": "default"}
    ]
    assert kube.get_or_none("ServiceAccount", "p-prep-workload") is None  # named accounts are not made


def test_pods_naming_a_missing_service_account_are_refused(cluster: KubeEmulator) -> None:
    """The emulator's ServiceAccount admission, which the tests above rely on."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "default"},
        "spec": {"serviceAccountName": "nobody", "containers": [{"name": "c", "image": "x"}]},
    }
    with pytest.raises(ApiError) as error:
        cluster.create(pod)
    assert error.value.code == 403 and 'serviceaccount "nobody" not found' in str(error.value)


def test_the_tiny_sample_runs_in_a_fresh_namespace(
    cluster: KubeEmulator, pod_runner: PodRunner, tmp_path: Path
) -> None:
    """kubectl apply -n <any namespace> -f manifests/samples/sftdataprep-tiny.yaml just works: real
    sft-prep workers run as the operator-made ServiceAccount and report progress into the status."""
    kube = cluster
    kube.create_namespace("brand-new")
    pod_runner.path_map[IMAGE_SAMPLES] = REPO / "workloads" / "sft_prep" / "samples"
    pod_runner.config.pvc_root = tmp_path / "pvcs"
    pod_runner.extra_env["SFT_PROGRESS_INTERVAL"] = "0.05"
    docs = [d for d in yaml.safe_load_all(SAMPLE.read_text()) if d]
    with run_operator("brand-new"):
        for doc in docs:
            kube.create(in_ns(doc, "brand-new"))
        status = kube.wait_for(
            lambda: (
                s
                if (s := (kube.get("SFTDataPrep", "tiny", "brand-new").get("status") or {})).get("phase")
                in ("Succeeded", "Failed")
                else None
            ),
            90,
            interval=0.05,
            message="the tiny sample to finish",
        )
    assert status["phase"] == "Succeeded", status
    pods = kube.list("Pod", namespace="brand-new")
    assert pods and {p["spec"]["serviceAccountName"] for p in pods} == {"tiny-prep-workload"}
    assert set(status["progress"]["workers"]) == {"0", "1"}  # each worker patched its own CR's status
