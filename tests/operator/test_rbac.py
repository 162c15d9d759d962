"""manifests/rbac.yaml grants exactly what the operator uses: every request it makes is allowed, and
every rule is exercised by a full lifecycle (create, run, fail, suspend, peering aside)."""

from __future__ import annotations

import json

from operator_harness import NAMESPACE, OperatorFactory
from rbac_rules import access_of, allowed, assert_least_privilege, cluster_role
from test_operator_dataprep import backoff_limit_exceeded, make_pod, prep, wait_status

from kubeemu import KubeEmulator


def test_access_parsing() -> None:
    assert access_of("GET", "/apis/batch/v1/namespaces/x/jobs", {"watch": "true"}) == (
        "watch",
        "batch",
        "jobs",
    )
    assert access_of("GET", "/api/v1/namespaces/x/pods/p/log", {}) == ("get", "", "pods/log")
    assert access_of("PATCH", "/apis/sft.dev/v1alpha1/namespaces/x/sftdatapreps/a/status", {}) == (
        "patch",
        "sft.dev",
        "sftdatapreps/status",
    )
    assert access_of("GET", "/api/v1/namespaces", {}) == ("list", "", "namespaces")
    assert access_of("GET", "/apis/batch/v1", {}) is None  # discovery


def test_operator_requests_are_within_its_cluster_role(
    cluster: KubeEmulator, operator: OperatorFactory
) -> None:
    kube = cluster
    with operator():
        kube.create(prep())
        job = kube.wait_for_object("Job", "demo-prep", timeout=15)
        kube.patch("SFTDataPrep", "demo", {"spec": {"suspend": True}})
        kube.wait_for_object("Job", "demo-prep", lambda j: j["spec"]["suspend"], timeout=15)
        make_pod(
            kube,
            job,
            0,
            "Failed",
            {
                "exitCode": 1,
                "reason": "Error",
                "message": json.dumps({"status": "failed", "reason": "Boom", "message": "x"}),
            },
        )
        backoff_limit_exceeded(kube, at="2026-11-25T10:00:00Z")
        wait_status(kube, lambda s: s.get("phase") == "Failed")
        kube.wait_for(lambda: [e for e in kube.events(NAMESPACE, "demo") if e["type"] == "Warning"], 15)
    # the namespaced rules of our own resources are all exercised (least privilege, not a wish list)
    assert_least_privilege(
        kube.requests,
        [
            ("create", "batch", "jobs"),
            ("patch", "batch", "jobs"),
            ("watch", "batch", "jobs"),
            ("create", "", "configmaps"),
            ("patch", "sft.dev", "sftdatapreps/status"),
            ("watch", "sft.dev", "sftdatapreps"),
            ("watch", "", "pods"),
            ("get", "", "pods/log"),
            ("create", "", "events"),
            ("create", "", "serviceaccounts"),
            ("create", "rbac.authorization.k8s.io", "roles"),
            ("create", "rbac.authorization.k8s.io", "rolebindings"),
        ],
    )


def test_operator_holds_every_permission_it_grants_workloads() -> None:
    """Kubernetes RBAC lets a subject create a Role (or bind one) only with permissions it holds
    itself, unless it has `escalate`/`bind` (which the operator must not need): every rule of a
    workload Role, resourceNames included, is covered by the operator's own rules."""
    from sft_operator.api.meta import DATAPREP, RUN
    from sft_operator.render.identity import status_rule

    rules = cluster_role("sft-operator")
    for info in (DATAPREP, RUN):
        rule = status_rule(info, "some-run")
        assert rule["resourceNames"] == ["some-run"] and rule["verbs"] == ["patch"]
        for verb in rule["verbs"]:
            for resource in rule["resources"]:
                assert allowed((verb, rule["apiGroups"][0], resource), rules), (info.kind, resource)
    granted = {verb for rule in rules for verb in rule["verbs"]}
    assert not granted & {"escalate", "bind", "impersonate", "*"}


def test_without_log_tail_lines_the_operator_reads_no_pod_logs(
    cluster: KubeEmulator, operator: OperatorFactory
) -> None:
    """The chart's rbac.podLogs=false grants no pods/log and passes --log-tail-lines=0: the operator must
    then never ask for a log, and still report the failure from the termination message."""
    kube = cluster
    with operator(log_tail_lines=0):
        kube.create(prep())
        job = kube.wait_for_object("Job", "demo-prep", timeout=15)
        message = json.dumps({"status": "failed", "reason": "Boom", "message": "x"})
        make_pod(kube, job, 0, "Failed", {"exitCode": 1, "reason": "Error", "message": message})
        backoff_limit_exceeded(kube, at="2026-11-25T10:00:00Z")
        st = wait_status(kube, lambda s: s.get("phase") == "Failed")
    assert st["failure"]["reason"] == "Boom"
    assert not [r for r in kube.requests if r.url.path.endswith("/log")]
