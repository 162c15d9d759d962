"""Argo CD Applications, the GitOps pipeline, the kind e2e manifests and the CI workflow, checked offline.

Custom resources are validated twice: against the operator's pydantic models (the semantic checks the
operator applies) and against the generated CRD schemas (what the apiserver would enforce).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploytools import (
    CHART,
    REPO,
    KubeTools,
    crd_schemas,
    load_crds,
    render_chart,
    validate_manifest,
)
from kubernetes_validate.utils import latest_version

ARGOCD = REPO / "manifests" / "argocd"
KIND = REPO / "tests" / "kind"
WORKFLOW = REPO / ".github" / "workflows" / "e2e-kind.yaml"


def docs_of(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def spec_models() -> dict[str, Any]:
    from sft_operator.api.dataprep import SFTDataPrepSpec
    from sft_operator.api.sftrun import SFTRunSpec

    return {"SFTDataPrep": SFTDataPrepSpec, "SFTRun": SFTRunSpec}


def check_custom_resources(docs: list[dict[str, Any]]) -> None:
    """Every sft.dev object passes its pydantic model and, where the CRD exists, the CRD schema."""
    models = spec_models()
    schemas = crd_schemas(load_crds(REPO / "manifests" / "crds"))
    for doc in docs:
        if not doc["apiVersion"].startswith("sft.dev/"):
            continue
        models[doc["kind"]].model_validate(doc["spec"])
        if (doc["apiVersion"], doc["kind"]) in schemas:
            validate_manifest(doc, latest_version(), schemas)


def test_chart_application_points_at_the_chart_with_valid_values(
    kube_tools: KubeTools, helm_env: dict[str, str], tmp_path: Path
) -> None:
    (app,) = docs_of(ARGOCD / "application-chart.yaml")
    assert app["kind"] == "Application" and app["apiVersion"] == "argoproj.io/v1alpha1"
    source = app["spec"]["source"]
    assert (REPO / source["path"]) == CHART
    assert "ServerSideApply=true" in app["spec"]["syncPolicy"]["syncOptions"]
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(source["helm"]["valuesObject"]))
    docs = render_chart(kube_tools, helm_env, values, release=source["helm"]["releaseName"])
    assert any(d["kind"] == "ConfigMap" and d["metadata"]["namespace"] == "argocd" for d in docs)


def test_pipeline_application_orders_prep_before_run() -> None:
    (app,) = docs_of(ARGOCD / "application-pipeline.yaml")
    path = REPO / app["spec"]["source"]["path"]
    assert path.is_dir()
    objects = [d for f in sorted(path.glob("*.yaml")) for d in docs_of(f)]
    waves = {d["kind"]: int(d["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"]) for d in objects}
    assert waves == {"SFTDataPrep": 0, "SFTRun": 1}
    preps = {d["metadata"]["name"] for d in objects if d["kind"] == "SFTDataPrep"}
    (run,) = [d for d in objects if d["kind"] == "SFTRun"]
    assert run["spec"]["data"]["dataPrepRef"]["name"] in preps
    assert app["spec"]["syncPolicy"]["automated"]["prune"] is False
    check_custom_resources(objects)


def test_gitops_pipeline_keeps_secrets_out_of_git() -> None:
    for path in (ARGOCD / "pipeline").glob("*.yaml"):
        for doc in docs_of(path):
            for entry in doc["spec"].get("env", []):
                assert not re.search(r"(?i)key|secret|token|password", entry["name"]), entry
            assert doc["spec"].get("envFrom"), f"{path.name}: credentials must come from Secret references"


def test_kind_manifests_are_valid() -> None:
    version = latest_version()
    for doc in docs_of(KIND / "manifests" / "base-model.yaml"):
        validate_manifest(doc, version, {})
    pipeline = docs_of(KIND / "manifests" / "pipeline.yaml")
    assert [d["kind"] for d in pipeline] == ["SFTDataPrep", "SFTRun"]
    check_custom_resources(pipeline)


def test_kind_pipeline_uses_what_run_sh_builds_and_mounts() -> None:
    script = (KIND / "run.sh").read_text()
    built = set(re.findall(r"for image in ([a-z -]+); do", script)[0].split())
    loaded = {f"sft-{name}:e2e" for name in built}
    pipeline = docs_of(KIND / "manifests" / "pipeline.yaml")
    base_model = docs_of(KIND / "manifests" / "base-model.yaml")
    (pvc,) = [d for d in base_model if d["kind"] == "PersistentVolumeClaim"]
    (job,) = [d for d in base_model if d["kind"] == "Job"]
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] in loaded
    for doc in pipeline:
        assert doc["spec"]["image"] in loaded
        # the loaded images are present: Never for the prep; the run's IfNotPresent (a TrainJob takes
        # the pull policy from its runtime) finds the loaded, non-latest tag too
        assert doc["spec"]["imagePullPolicy"] == ("Never" if doc["kind"] == "SFTDataPrep" else "IfNotPresent")
        claims = {v["persistentVolumeClaim"]["claimName"] for v in doc["spec"]["volumes"]}
        assert claims == {pvc["metadata"]["name"]}
    (run,) = [d for d in pipeline if d["kind"] == "SFTRun"]
    mount = job["spec"]["template"]["spec"]["containers"][0]["command"][2]
    assert run["spec"]["model"]["pretrainedCheckpoint"] == mount, "the run must train the model the Job made"


def test_kind_values_watch_the_pipeline_namespace(kube_tools: KubeTools, helm_env: dict[str, str]) -> None:
    script = (KIND / "run.sh").read_text()
    namespace = re.search(r"^NS=(\S+)$", script, re.MULTILINE)
    assert namespace is not None
    docs = render_chart(kube_tools, helm_env, KIND / "values-e2e.yaml", namespace="sft-system")
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert f"--namespace={namespace.group(1)}" in container["args"]
    assert container["image"] == "sft-operator:e2e" and container["imagePullPolicy"] == "Never"
    # the pipeline names no ServiceAccount: the operator creates each CR's own (render.identity)
    for doc in docs_of(KIND / "manifests" / "pipeline.yaml"):
        assert "serviceAccountName" not in doc["spec"]
    assert f"deployment/{deployment['metadata']['name']}" in script, "run.sh collects the operator's logs"


def test_ci_workflow_runs_make_e2e_kind_and_keeps_diagnostics() -> None:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    triggers = workflow.get("on", workflow.get(True))
    assert {"pull_request", "push"} <= set(triggers)
    (job,) = workflow["jobs"].values()
    assert job["runs-on"].startswith("ubuntu-")
    assert job["timeout-minutes"] <= 90
    runs = [step.get("run", "") for step in job["steps"]]
    assert "make e2e-kind" in runs
    uses = [step["uses"] for step in job["steps"] if "uses" in step]
    for action in uses:
        assert re.fullmatch(r"[\w.-]+/[\w.-]+@v\d+(\.\d+)*", action), f"{action} is not pinned to a release"
    upload = next(step for step in job["steps"] if step.get("uses", "").startswith("actions/upload-artifact"))
    assert upload["if"] == "failure()"
    kind_step = next(step for step in job["steps"] if step.get("uses", "").startswith("helm/kind-action"))
    assert kind_step["with"]["install_only"] is True, "run.sh creates (and deletes) its own cluster"


@pytest.mark.parametrize("target", ["images", "e2e-kind", "chart-sync"])
def test_makefile_has_the_deploy_targets(target: str) -> None:
    makefile = (REPO / "Makefile").read_text()
    assert re.search(rf"^{re.escape(target)}:", makefile, re.MULTILINE)
    assert "charts/sync_chart.py" in makefile.split("\ncrds:", 1)[1].split("\n\n", 1)[0], (
        "`make crds` must also sync the chart"
    )


def test_crd_schema_check_rejects_a_bad_custom_resource() -> None:
    """Guards the validations above: a value out of the CRD's bounds must fail the schema check."""
    import jsonschema

    (prep, _) = docs_of(KIND / "manifests" / "pipeline.yaml")
    prep["spec"]["packSize"] = 8
    schemas = crd_schemas(load_crds(REPO / "manifests" / "crds"))
    with pytest.raises(jsonschema.ValidationError, match=r"8 is less than the minimum of 16"):
        validate_manifest(prep, latest_version(), schemas)


@pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make to run the Makefile target")
def test_make_images_stops_with_a_clear_message_without_docker(tmp_path: Path) -> None:
    """`make images` where `docker info` fails: a non-zero exit and a message, no half-built images."""
    fake_docker = tmp_path / "docker"
    fake_docker.write_text("#!/bin/sh\necho 'Cannot connect to the Docker daemon' >&2\nexit 1\n")
    fake_docker.chmod(0o755)
    proc = subprocess.run(
        ["make", "-C", str(REPO), "images", f"DOCKER={fake_docker}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "make images: no Docker engine reachable" in proc.stderr
    assert "building" not in proc.stdout
