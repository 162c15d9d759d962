"""charts/sync_chart.py: the one mechanism that keeps the chart's copies equal to manifests/."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from types import ModuleType

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def sync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The sync module pointed at a scratch copy of manifests/ and the chart."""
    spec = importlib.util.spec_from_file_location("sync_chart_under_test", REPO / "charts" / "sync_chart.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    shutil.copytree(REPO / "manifests", tmp_path / "manifests")
    shutil.copytree(REPO / "charts" / "sft-operator", tmp_path / "charts" / "sft-operator")
    monkeypatch.setattr(module, "REPO", tmp_path)
    monkeypatch.setattr(module, "CHART", tmp_path / "charts" / "sft-operator")
    monkeypatch.setattr(module, "MANIFEST_CRDS", tmp_path / "manifests" / "crds")
    monkeypatch.setattr(module, "MANIFEST_RBAC", tmp_path / "manifests" / "rbac.yaml")
    monkeypatch.setattr(module, "HEALTH_LUA", tmp_path / "manifests" / "argocd" / "health.lua")
    monkeypatch.setattr(module, "ARGOCD_CM_PATCH", tmp_path / "manifests" / "argocd" / "argocd-cm-patch.yaml")
    return module


def test_split_rules_moves_only_cluster_scoped_resources(sync: ModuleType) -> None:
    rules = [
        {"apiGroups": ["kopf.dev"], "resources": ["clusterkopfpeerings", "kopfpeerings"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["namespaces", "pods"], "verbs": ["list"]},
        {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create"]},
        {"nonResourceURLs": ["/healthz"], "verbs": ["get"]},
    ]
    split = sync.split_rules(rules)
    assert split["clusterScoped"] == [
        {"apiGroups": ["kopf.dev"], "resources": ["clusterkopfpeerings"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list"]},
        {"nonResourceURLs": ["/healthz"], "verbs": ["get"]},
    ]
    assert split["namespaced"] == [
        {"apiGroups": ["kopf.dev"], "resources": ["kopfpeerings"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
        {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create"]},
    ]
    assert "&id" not in yaml.safe_dump(split), "no YAML anchors in generated files"


def test_check_reports_stale_and_orphaned_copies_and_sync_fixes_them(sync: ModuleType) -> None:
    sync.sync()  # the scratch copy may start stale when manifests/ just changed
    assert sync.stale_files() == []
    crd = next((sync.MANIFEST_CRDS).glob("*.yaml"))
    crd.write_text(crd.read_text() + "# changed\n")
    orphan = sync.CHART / "crds" / "removed-kind.yaml"
    orphan.write_text("kind: CustomResourceDefinition\n")
    sync.HEALTH_LUA.write_text(sync.HEALTH_LUA.read_text() + "-- changed\n")
    problems = sync.stale_files()
    assert f"charts/sft-operator/crds/{crd.name} is out of date" in problems
    assert (
        "charts/sft-operator/crds/removed-kind.yaml has no source in manifests/crds (delete it)" in problems
    )
    assert "charts/sft-operator/files/argocd-health.lua is out of date" in problems
    assert "manifests/argocd/argocd-cm-patch.yaml is out of date" in problems
    assert sync.main(["--check"]) == 1
    changed = sync.sync()
    assert "charts/sft-operator/crds/removed-kind.yaml (deleted)" in changed
    assert sync.stale_files() == []
    assert (sync.CHART / "crds" / crd.name).read_bytes() == crd.read_bytes()


def test_rbac_change_reaches_the_chart_rules(sync: ModuleType) -> None:
    docs = list(yaml.safe_load_all(sync.MANIFEST_RBAC.read_text()))
    role = next(
        d for d in docs if d and d["kind"] == "ClusterRole" and d["metadata"]["name"] == "sft-operator"
    )
    role["rules"].append({"apiGroups": ["kubeflow.org"], "resources": ["pytorchjobs"], "verbs": ["create"]})
    sync.MANIFEST_RBAC.write_text(yaml.safe_dump_all(docs))
    assert "charts/sft-operator/files/operator-rules.yaml is out of date" in sync.stale_files()
    sync.sync()
    rules = yaml.safe_load((sync.CHART / "files" / "operator-rules.yaml").read_text())
    assert {"apiGroups": ["kubeflow.org"], "resources": ["pytorchjobs"], "verbs": ["create"]} in rules[
        "namespaced"
    ]


def test_two_operator_cluster_roles_are_an_error(sync: ModuleType) -> None:
    text = sync.MANIFEST_RBAC.read_text()
    sync.MANIFEST_RBAC.write_text(
        text + "\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\n"
        "metadata: {name: another}\nrules: []\n"
    )
    with pytest.raises(SystemExit, match="expected one operator ClusterRole"):
        sync.expected_files()
