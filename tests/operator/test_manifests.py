"""manifests/: the operator Deployment, RBAC and sample CRs are valid and say what they claim."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from prep_objects import k8s_versions

from kubeemu import KubeEmulator
from sft_operator.__main__ import parse_args
from sft_operator.render import dataprep as render
from sft_operator.render.pods import WorkloadDefaults

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"
SAMPLES = sorted((MANIFESTS / "samples").glob("sftdataprep-*.yaml"))
BUILTIN_GROUPS = ("v1", "apps/v1", "rbac.authorization.k8s.io/v1", "batch/v1")


def docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


@pytest.mark.parametrize("version", k8s_versions())
def test_builtin_objects_pass_kubernetes_validate(version: str) -> None:
    paths = [
        MANIFESTS / "operator.yaml",
        MANIFESTS / "rbac.yaml",
        *sorted((MANIFESTS / "samples").glob("*.yaml")),
    ]
    checked = 0
    for path in paths:
        for doc in docs(path):
            if doc["apiVersion"] in BUILTIN_GROUPS:
                kubernetes_validate.validate(doc, version, strict=True)
                checked += 1
    assert checked >= 6  # operator.yaml (3), rbac.yaml (2), the samples' PVC


def test_operator_deployment_is_hardened_and_runs_our_cli() -> None:
    (deployment,) = [d for d in docs(MANIFESTS / "operator.yaml") if d["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["serviceAccountName"] == "sft-operator"
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "ready"}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    args = parse_args(container["args"])  # the flags exist and parse
    assert args.all_namespaces and args.liveness == "http://0.0.0.0:8080/healthz" and not args.standalone
    assert args.readiness == f"http://0.0.0.0:{ports['ready']}/readyz"
    assert args.metrics == f"http://0.0.0.0:{ports['metrics']}/metrics"


def test_cli_scopes() -> None:
    args = parse_args(["-n", "team-a", "--namespace", "team-b", "--standalone", "--log-level", "debug"])
    assert args.namespaces == ["team-a", "team-b"] and args.standalone and args.log_level == "DEBUG"
    with pytest.raises(SystemExit):
        parse_args([])  # a scope is required
    with pytest.raises(SystemExit):
        parse_args(["-n", "a", "-A"])  # not both


@pytest.mark.parametrize("path", SAMPLES, ids=[p.name for p in SAMPLES])
def test_samples_are_admitted_and_render_valid_children(path: Path, kube: KubeEmulator) -> None:
    kube.apply(MANIFESTS / "crds")
    for doc in docs(path):
        if doc["kind"] != "SFTDataPrep":
            continue
        created = kube.create(doc)  # the CRD schema (generated) accepts it
        children = render.render(created, WorkloadDefaults(prep_image="ghcr.io/sft-operator/sft-prep:0.1.0"))
        for obj in (children.config_map, children.job):
            kubernetes_validate.validate(obj, k8s_versions()[-1], strict=True)


def test_super3_sample_mirrors_the_reference_recipe() -> None:
    (cr,) = [d for d in docs(MANIFESTS / "samples" / "sftdataprep-super3.yaml") if d["kind"] == "SFTDataPrep"]
    spec = cr["spec"]
    # NVIDIA-NeMo/Nemotron super3/stage1_sft/config/data_prep/default.yaml
    assert spec["packSize"] == 4096 and spec["algorithm"] == "first_fit_shuffle" and spec["seed"] == 42
    assert spec["numShards"] == 128 and spec["validRatio"] == 0.01 and spec["testRatio"] == 0.01
    assert spec["parquetRowGroupSize"] == 1000 and spec["parquetCompression"] == "zstd"
    assert spec["chatTemplate"] == "nano3" and spec["blendPath"].startswith("s3://")
    assert all("secretRef" in e for e in spec["envFrom"])  # credentials only from Secrets
