"""The Helm chart, rendered and linted by the real helm binary, validated against Kubernetes schemas."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploytools import (
    CHART,
    REPO,
    KubeTools,
    crd_schemas,
    helm,
    normalize_rules,
    render_chart,
    validate_manifest,
)
from kubernetes_validate.utils import latest_version

DIGEST = "sha256:" + "ab" * 32
OPERATOR_ONLY_ENV = "SFT_"

VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "namespaced": {
        "watch": {"clusterWide": False, "namespaces": ["ml-team", "research"]},
        "argocd": {"healthChecks": {"enabled": True, "namespace": "gitops"}},
        "logLevel": "debug",
    },
    "pinned-and-scheduled": {
        "image": {
            "repository": "registry.example.com/ml/sft-operator",
            "digest": DIGEST,
            "pullPolicy": "Always",
        },
        "imagePullSecrets": [{"name": "regcred"}],
        "workloads": {
            "prepImage": {"repository": "registry.example.com/ml/sft-prep", "tag": "0.1.0-rc1"},
            "trainerImage": {"repository": "registry.example.com/ml/sft-trainer", "digest": DIGEST},
            "serviceAccount": {"name": "trainer-sa"},
        },
        "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}}},
        "logFormat": "json",
        "resources": {"requests": {"cpu": "250m", "memory": "300Mi"}, "limits": {"cpu": 1, "memory": "1Gi"}},
        "nodeSelector": {"node-role.kubernetes.io/control-plane": ""},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ops", "effect": "NoSchedule"}],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}
                            ]
                        }
                    ]
                }
            }
        },
        "priorityClassName": "system-cluster-critical",
        "extraEnv": [{"name": "HTTPS_PROXY", "value": "http://proxy.internal:3128"}],
        "podAnnotations": {"example.com/team": "ml"},
        "replicaCount": 2,
    },
    "bring-your-own-identity": {
        "fullnameOverride": "sft",
        "serviceAccount": {"create": False, "name": "platform-operator"},
        "rbac": {"create": False},
        "workloads": {"serviceAccount": {"name": "shared-workload"}},
        "livenessPort": 9090,
        "readinessPort": 9091,
        "metrics": {"port": 9100},
    },
}


@pytest.fixture
def values_file(tmp_path: Path) -> Any:
    def write(values: dict[str, Any]) -> Path:
        path = tmp_path / "values.yaml"
        path.write_text(yaml.safe_dump(values))
        return path

    return write


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def operator_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = by_kind(docs, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_lint_strict_with_every_value_set(
    kube_tools: KubeTools, helm_env: dict[str, str], values_file: Any
) -> None:
    for name, values in VALUE_SETS.items():
        proc = helm(kube_tools, helm_env, "lint", "--strict", CHART, "--values", values_file(values))
        assert "1 chart(s) linted, 0 chart(s) failed" in proc.stdout, (name, proc.stdout)


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_every_rendered_object_is_valid_kubernetes(
    kube_tools: KubeTools, helm_env: dict[str, str], values_file: Any, name: str
) -> None:
    version = latest_version()
    docs = render_chart(
        kube_tools, helm_env, values_file(VALUE_SETS[name]), "--include-crds", "--kube-version", version
    )
    crds = by_kind(docs, "CustomResourceDefinition")
    assert crds, "CRDs must be rendered with --include-crds"
    schemas = crd_schemas(crds)
    for doc in docs:
        if doc["apiVersion"] == "monitoring.coreos.com/v1":
            continue  # no CRD schema here: test_metrics_service_and_service_monitor checks it
        validate_manifest(doc, version, schemas)


def test_defaults_are_cluster_wide_hardened_and_wired(
    kube_tools: KubeTools, helm_env: dict[str, str]
) -> None:
    docs = render_chart(kube_tools, helm_env)
    container = operator_container(docs)
    env = env_of(container)
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert container["image"] == f"ghcr.io/sft-operator/sft-operator:{chart['appVersion']}"
    assert container["args"] == [
        "--all-namespaces",
        "--liveness=http://0.0.0.0:8080/healthz",
        "--readiness=http://0.0.0.0:8081/readyz",
        "--metrics=http://0.0.0.0:9090/metrics",
        "--log-level=INFO",
        "--log-format=text",
        "--peering=sft-sft-operator",
        "--concurrency=32",
    ]
    assert env["SFT_ALLOWED_EXTRA_VOLUME_TYPES"] == "" and env["SFT_ALLOWED_SERVICE_ACCOUNTS"] == ""
    assert by_kind(docs, "Deployment")[0]["spec"]["strategy"]["rollingUpdate"] == {
        "maxSurge": 1,
        "maxUnavailable": 0,
    }
    (peering,) = by_kind(docs, "ClusterKopfPeering")
    assert peering["metadata"]["name"] == "sft-sft-operator"
    assert env["SFT_DEFAULT_PREP_IMAGE"] == f"ghcr.io/sft-operator/sft-prep:{chart['appVersion']}"
    assert env["SFT_DEFAULT_TRAINER_IMAGE"] == f"ghcr.io/sft-operator/sft-trainer:{chart['appVersion']}"
    assert "SFT_WORKLOAD_SERVICE_ACCOUNT" not in env  # each CR gets its own identity from the operator
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    pod = by_kind(docs, "Deployment")[0]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "ready"}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"health": 8080, "ready": 8081, "metrics": 9090}
    assert not by_kind(docs, "ServiceMonitor")  # off by default
    # Cluster-wide: namespaced rules through a ClusterRole, no Roles for the operator.
    roles = {r["metadata"]["name"]: r for r in by_kind(docs, "ClusterRole")}
    assert set(roles) == {"sft-sft-operator", "sft-sft-operator-cluster"}
    assert by_kind(docs, "Role") == [] and by_kind(docs, "RoleBinding") == []
    assert {b["roleRef"]["name"] for b in by_kind(docs, "ClusterRoleBinding")} == set(roles)
    # Workload identities are the operator's, per CR (sft_operator.render.identity): none in the chart.
    assert [s["metadata"]["name"] for s in by_kind(docs, "ServiceAccount")] == ["sft-sft-operator"]


def test_namespaced_mode_grants_nothing_namespaced_cluster_wide(
    kube_tools: KubeTools, helm_env: dict[str, str], values_file: Any
) -> None:
    docs = render_chart(kube_tools, helm_env, values_file(VALUE_SETS["namespaced"]))
    args = operator_container(docs)["args"]
    assert args[:2] == ["--namespace=ml-team", "--namespace=research"]
    assert "--log-level=DEBUG" in args
    assert sorted(p["metadata"]["namespace"] for p in by_kind(docs, "KopfPeering")) == ["ml-team", "research"]
    assert not by_kind(docs, "ClusterKopfPeering")
    (cluster_role,) = by_kind(docs, "ClusterRole")
    cluster_resources = {res for _, res, _ in normalize_rules(cluster_role["rules"])}
    assert cluster_resources <= {"customresourcedefinitions", "namespaces", "clusterkopfpeerings"}
    operator_roles = [r for r in by_kind(docs, "Role") if r["metadata"]["name"] == "sft-sft-operator"]
    assert sorted(r["metadata"]["namespace"] for r in operator_roles) == ["ml-team", "research"]
    bindings = [b for b in by_kind(docs, "RoleBinding") if b["roleRef"]["name"] == "sft-sft-operator"]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["ml-team", "research"]
    for binding in bindings:
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "sft-sft-operator", "namespace": "sft-system"}
        ]


def test_metrics_service_and_service_monitor(
    kube_tools: KubeTools, helm_env: dict[str, str], values_file: Any
) -> None:
    """The Service exposes the container's named metrics port and the ServiceMonitor selects that
    Service and port. Fields as in prometheus-operator's ServiceMonitor API (monitoring.coreos.com/v1:
    spec.selector and spec.endpoints[].port, the name of a Service port, are what it matches on;
    namespaceSelector.matchNames limits the namespaces; path, interval, scrapeTimeout per endpoint)."""
    docs = render_chart(kube_tools, helm_env, values_file(VALUE_SETS["pinned-and-scheduled"]))
    container = operator_container(docs)
    assert "--metrics=http://0.0.0.0:9090/metrics" in container["args"]
    assert "--log-format=json" in container["args"]
    (service,) = by_kind(docs, "Service")
    (port,) = service["spec"]["ports"]
    assert port["name"] == "metrics" and port["targetPort"] == "metrics"
    assert {"name": "metrics", "containerPort": 9090, "protocol": "TCP"} in container["ports"]
    (deployment,) = by_kind(docs, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    (monitor,) = by_kind(docs, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [service["metadata"]["namespace"]]}
    assert monitor["spec"]["endpoints"] == [
        {"port": "metrics", "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s"}
    ]
    # metrics off: no flag value, port, Service or ServiceMonitor
    off = render_chart(kube_tools, helm_env, values_file({"metrics": {"enabled": False}}))
    assert "--metrics=none" in operator_container(off)["args"]
    assert not by_kind(off, "Service") and not by_kind(off, "ServiceMonitor")
    assert "metrics" not in {p["name"] for p in operator_container(off)["ports"]}


def test_images_resources_and_scheduling_are_configurable(
    kube_tools: KubeTools, helm_env: dict[str, str], values_file: Any
) -> None:
    values = VALUE_SETS["pinned-and-scheduled"]
    docs = render_chart(kube_tools, helm_env, values_file(values))
    (deployment,) = by_kind(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = operator_container(docs)
    env = env_of(container)
    assert container["image"] == f"registry.example.com/ml/sft-operator@{DIGEST}"
    assert container["imagePullPolicy"] == "Always"
    assert env["SFT_DEFAULT_PREP_IMAGE"] == "registry.example.com/ml/sft-prep:0.1.0-rc1"
    assert env["SFT_DEFAULT_TRAINER_IMAGE"] == f"registry.example.com/ml/sft-trainer@{DIGEST}"
    assert env["SFT_WORKLOAD_SERVICE_ACCOUNT"] == "trainer-sa"
    assert env["HTTPS_PROXY"] == "http://proxy.internal:3128"
    assert container["resources"] == values["resources"]
    assert pod["nodeSelector"] == values["nodeSelector"]
    assert pod["tolerations"] == values["tolerations"]
    assert pod["affinity"] == values["affinity"]
    assert pod["priorityClassName"] == "system-cluster-critical"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["template"]["metadata"]["annotations"]["example.com/team"] == "ml"


def test_existing_identities_render_no_rbac(
    kube_tools: KubeTools, helm_env: dict[str, str], values_file: Any
) -> None:
    docs = render_chart(kube_tools, helm_env, values_file(VALUE_SETS["bring-your-own-identity"]))
    assert {d["kind"] for d in docs} == {"Deployment", "ClusterKopfPeering", "Service"}
    (deployment,) = by_kind(docs, "Deployment")
    assert deployment["metadata"]["name"] == "sft"
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "platform-operator"
    container = operator_container(docs)
    assert container["ports"][0]["containerPort"] == 9090
    assert "--liveness=http://0.0.0.0:9090/healthz" in container["args"]
    assert env_of(container)["SFT_WORKLOAD_SERVICE_ACCOUNT"] == "shared-workload"


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"logLevel": "verbose"}, "/logLevel"),
        ({"watch": {"clusterWide": False, "namespaces": []}}, "/watch/namespaces"),
        ({"watch": {"clusterWide": True, "namespaces": ["ml"]}}, "/watch/namespaces"),
        ({"watch": {"clusterWide": False, "namespaces": ["Not_A_Namespace"]}}, "/watch/namespaces/0"),
        ({"imag": {"tag": "x"}}, "'imag' not allowed"),
        ({"image": {"repository": "x/y", "digest": "sha256:123"}}, "/image/digest"),
        ({"replicaCount": 0}, "/replicaCount"),
        ({"resources": {"limits": {"memory": "lots"}}}, "/resources/limits/memory"),
        ({"tolerations": [{"key": "a", "operator": "Maybe"}]}, "/tolerations/0/operator"),
        ({"extraEnv": [{"name": "SFT_LOG_LEVEL", "value": "debug"}]}, "/extraEnv/0/name"),
        ({"livenessPort": 80}, "/livenessPort"),
        ({"peering": {"enabled": False}, "replicaCount": 2}, "/replicaCount"),
        ({"logFormat": "xml"}, "/logFormat"),
        ({"readinessPort": 80}, "/readinessPort"),
        ({"metrics": {"serviceMonitor": {"interval": "often"}}}, "/metrics/serviceMonitor/interval"),
        ({"workloads": {"namespaces": ["ml"]}}, "'namespaces' not allowed"),
        ({"readinessPort": 8080}, "metrics.port must differ"),
        (
            {"metrics": {"service": {"enabled": False}, "serviceMonitor": {"enabled": True}}},
            "needs metrics.service",
        ),
        # the operator's own pod: the restricted Pod Security Standard, nothing that escalates
        ({"securityContext": {"privileged": True}}, "/securityContext/privileged"),
        (
            {"securityContext": {"allowPrivilegeEscalation": True}},
            "/securityContext/allowPrivilegeEscalation",
        ),
        (
            {"securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}}},
            "/securityContext/capabilities/add/0",
        ),
        ({"securityContext": {"runAsUser": 0}}, "/securityContext/runAsUser"),
        ({"securityContext": {"runAsNonRoot": False}}, "/securityContext/runAsNonRoot"),
        (
            {"securityContext": {"seccompProfile": {"type": "Unconfined"}}},
            "/securityContext/seccompProfile/type",
        ),
        ({"securityContext": {"procMount": "Unmasked"}}, "/securityContext/procMount"),
        ({"podSecurityContext": {"runAsUser": 0}}, "/podSecurityContext/runAsUser"),
        ({"podSecurityContext": {"sysctls": [{"name": "kernel.x", "value": "1"}]}}, "'sysctls' not allowed"),
        ({"podSecurityContext": {"windowsOptions": {"hostProcess": True}}}, "'windowsOptions' not allowed"),
        (
            {"workloads": {"policy": {"extraVolumeTypes": ["host path"]}}},
            "/workloads/policy/extraVolumeTypes/0",
        ),
        ({"workloads": {"policy": {"serviceAccounts": ["Admin"]}}}, "/workloads/policy/serviceAccounts/0"),
        ({"rbac": {"podLogs": "no"}}, "/rbac/podLogs"),
    ],
)
def test_schema_rejects_bad_values(
    kube_tools: KubeTools, helm_env: dict[str, str], values_file: Any, values: dict[str, Any], expected: str
) -> None:
    proc = helm(kube_tools, helm_env, "template", "sft", CHART, "--values", values_file(values), check=False)
    assert proc.returncode != 0, f"helm accepted bad values {values}"
    assert expected in proc.stderr, proc.stderr


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_rendered_args_are_accepted_by_the_operator_cli(
    kube_tools: KubeTools, helm_env: dict[str, str], values_file: Any, name: str
) -> None:
    """The Deployment's args must parse with the operator's own argparse (no drift between the two)."""
    main = pytest.importorskip("sft_operator.__main__")
    values = VALUE_SETS[name]
    args = operator_container(render_chart(kube_tools, helm_env, values_file(values)))["args"]
    parsed = main.parse_args(args)
    watch = values.get("watch", {"clusterWide": True})
    assert parsed.all_namespaces is watch["clusterWide"]
    assert (parsed.namespaces or []) == ([] if watch["clusterWide"] else watch["namespaces"])
    assert parsed.log_level == values.get("logLevel", "info").upper()
    assert parsed.liveness == f"http://0.0.0.0:{values.get('livenessPort', 8080)}/healthz"
    assert parsed.readiness == f"http://0.0.0.0:{values.get('readinessPort', 8081)}/readyz"
    assert parsed.metrics == f"http://0.0.0.0:{values.get('metrics', {}).get('port', 9090)}/metrics"
    assert parsed.log_format == values.get("logFormat", "text")
    assert parsed.standalone is False


def test_single_replica_without_peering_runs_standalone(
    kube_tools: KubeTools, helm_env: dict[str, str], values_file: Any
) -> None:
    docs = render_chart(kube_tools, helm_env, values_file({"peering": {"enabled": False}}))
    assert "--standalone" in operator_container(docs)["args"]
    assert by_kind(docs, "Deployment")[0]["spec"]["strategy"] == {"type": "Recreate"}
    assert not by_kind(docs, "ClusterKopfPeering") and not by_kind(docs, "KopfPeering")


def test_chart_refuses_clusters_without_cel(kube_tools: KubeTools, helm_env: dict[str, str]) -> None:
    proc = helm(kube_tools, helm_env, "template", "sft", CHART, "--kube-version", "1.28.0", check=False)
    assert proc.returncode != 0
    assert "kubeVersion" in proc.stderr or "incompatible" in proc.stderr, proc.stderr


def test_notes_name_the_watched_and_workload_namespaces(
    kube_tools: KubeTools, helm_env: dict[str, str], values_file: Any
) -> None:
    proc = helm(
        kube_tools,
        helm_env,
        "install",
        "sft",
        CHART,
        "--dry-run=client",
        "--namespace",
        "ops",
        "--values",
        values_file(VALUE_SETS["namespaced"]),
    )
    notes = proc.stdout.split("NOTES:", 1)[1]
    assert "only in: ml-team, research" in notes
    assert "Each SFTDataPrep/SFTRun gets its own workload ServiceAccount" in notes
    assert "kubectl -n gitops patch configmap argocd-cm" in notes
    assert "rollout status deployment/sft-sft-operator" in notes


def test_chart_crds_are_byte_identical_to_manifests() -> None:
    manifests = {p.name: p.read_bytes() for p in (REPO / "manifests" / "crds").glob("*.yaml")}
    chart = {p.name: p.read_bytes() for p in (CHART / "crds").glob("*")}
    assert manifests, "manifests/crds is empty"
    assert chart == manifests, (
        "run `make crds` (python charts/sync_chart.py) to copy manifests/crds into the chart"
    )


def test_every_chart_copy_is_in_sync() -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "charts" / "sync_chart.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr


def test_argocd_health_configmap_carries_the_lua_verbatim(
    kube_tools: KubeTools, helm_env: dict[str, str], values_file: Any
) -> None:
    lua = (REPO / "manifests" / "argocd" / "health.lua").read_text()
    docs = render_chart(kube_tools, helm_env, values_file(VALUE_SETS["namespaced"]))
    (configmap,) = by_kind(docs, "ConfigMap")
    assert configmap["metadata"]["namespace"] == "gitops"
    assert configmap["data"] == {
        "resource.customizations.health.sft.dev_SFTDataPrep": lua,
        "resource.customizations.health.sft.dev_SFTRun": lua,
    }
    patch = yaml.safe_load((REPO / "manifests" / "argocd" / "argocd-cm-patch.yaml").read_text())
    assert patch["metadata"]["name"] == "argocd-cm"
    assert patch["data"] == configmap["data"]


def test_chart_rules_equal_manifests_rbac(
    kube_tools: KubeTools, helm_env: dict[str, str], values_file: Any
) -> None:
    """The chart grants exactly what manifests/rbac.yaml grants, cluster-wide and namespaced."""
    rbac_path = REPO / "manifests" / "rbac.yaml"
    if not rbac_path.exists():
        pytest.fail("manifests/rbac.yaml is missing: the operator's RBAC has no source of truth")
    manifests = [d for d in yaml.safe_load_all(rbac_path.read_text()) if d]
    operator_roles = [
        d for d in manifests if d["kind"] == "ClusterRole" and "workload" not in d["metadata"]["name"]
    ]
    assert len(operator_roles) == 1
    expected = normalize_rules(operator_roles[0]["rules"])

    cluster_wide = render_chart(kube_tools, helm_env)
    granted = set().union(*(normalize_rules(r["rules"]) for r in by_kind(cluster_wide, "ClusterRole")))
    assert granted == expected

    namespaced = render_chart(kube_tools, helm_env, values_file(VALUE_SETS["namespaced"]))
    (cluster_role,) = by_kind(namespaced, "ClusterRole")
    roles = [r for r in by_kind(namespaced, "Role") if r["metadata"]["name"] == "sft-sft-operator"]
    assert len(roles) == 2
    for role in roles:
        assert normalize_rules(cluster_role["rules"]) | normalize_rules(role["rules"]) == expected


def test_workload_policy_reaches_the_operator_and_parses_there(
    kube_tools: KubeTools, helm_env: dict[str, str], values_file: Any
) -> None:
    """workloads.policy becomes the env the operator reads into its WorkloadPolicy (no drift)."""
    pods = pytest.importorskip("sft_operator.render.pods")
    values = {
        "workloads": {"policy": {"extraVolumeTypes": ["nfs", "hostPath"], "serviceAccounts": ["a", "b"]}}
    }
    env = env_of(operator_container(render_chart(kube_tools, helm_env, values_file(values))))
    policy = pods.WorkloadDefaults.from_env({k: v for k, v in env.items() if isinstance(v, str)}).policy
    assert policy == pods.WorkloadPolicy(frozenset({"nfs", "hostPath"}), frozenset({"a", "b"}))


@pytest.mark.parametrize("cluster_wide", [True, False])
def test_pod_logs_off_grants_no_pods_log_and_reads_none(
    kube_tools: KubeTools, helm_env: dict[str, str], values_file: Any, cluster_wide: bool
) -> None:
    """rbac.podLogs=false: no pods/log rule anywhere, and the operator is told to read no logs."""
    watch = {"clusterWide": cluster_wide, "namespaces": [] if cluster_wide else ["ml-team"]}
    docs = render_chart(kube_tools, helm_env, values_file({"watch": watch, "rbac": {"podLogs": False}}))
    granted = set().union(
        *(normalize_rules(r["rules"]) for r in by_kind(docs, "ClusterRole") + by_kind(docs, "Role"))
    )
    assert not [g for g in granted if g[1] == "pods/log"]
    assert ("", "pods", "watch") in granted
    assert "--log-tail-lines=0" in operator_container(docs)["args"]
    with_logs = render_chart(kube_tools, helm_env, values_file({"watch": watch}))
    assert "--log-tail-lines=0" not in operator_container(with_logs)["args"]
