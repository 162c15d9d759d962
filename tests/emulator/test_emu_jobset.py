"""JobSet (``jobset.x-k8s.io/v1alpha2``) served and run by the emulator as the real JobSet does.

Facts checked against kubernetes-sigs/jobset (main, Aug 2026): field names/types from
``api/jobset/v1alpha2/jobset_types.go``; labels, condition types, reasons and messages from
``pkg/constants/constants.go`` and ``pkg/controllers/{jobset_controller,failure_policy}.go``; defaults
and create checks from ``pkg/webhooks/jobset_webhook.go``. Pod hostnames ``<job>-<index>`` of an
Indexed Job: kubernetes.io "Job with Pod-to-Pod Communication". Manifests here are hand-written.
"""

from __future__ import annotations

import sys
from typing import Any

import pytest

from kubeemu import ApiError, KubeEmulator, PodRunner

# Pod 0 serves on $MASTER_PORT, the others connect to $MASTER_ADDR:$MASTER_PORT (the JobSet DNS name of
# pod 0) and send their hostname; pod 0 prints what it received. `hold` keeps attempt 0 running until
# killed (for the mid-run kill test); `fail_first` makes pod 1 of attempt 0 exit 3.
RENDEZVOUS = r"""
import os, socket, sys, time
index = int(os.environ["JOB_COMPLETION_INDEX"]); attempt = os.environ["ATTEMPT"]
nodes = int(os.environ["NODES"]); port = int(os.environ["MASTER_PORT"])
host, master = os.environ["HOSTNAME"], os.environ["MASTER_ADDR"]
print("host", host, "attempt", attempt, "master", master, port, flush=True)
if os.environ.get("MODE") == "hold" and attempt == "0":
    time.sleep(120)
if os.environ.get("MODE") == "fail_first" and attempt == "0" and index == 1:
    sys.exit(3)
if index == 0:
    server = socket.create_server(("0.0.0.0", port), reuse_port=False)
    server.settimeout(60)
    for _ in range(nodes - 1):
        conn, _ = server.accept()
        print("peer", conn.recv(200).decode(), flush=True)
        conn.close()
else:
    deadline = time.time() + 60
    while True:
        try:
            conn = socket.create_connection((os.environ["MASTER_ADDR"], port), timeout=5)
            break
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.1)
    conn.sendall(f"{os.environ['HOSTNAME']}@{attempt}".encode())
    conn.close()
"""


def jobset(name: str, nodes: int = 2, mode: str = "", **spec: Any) -> dict[str, Any]:
    env = [
        {"name": "NODES", "value": str(nodes)},
        {"name": "MODE", "value": mode},
        {"name": "MASTER_ADDR", "value": f"{name}-node-0-0.{name}"},
        {"name": "MASTER_PORT", "value": "23456"},
        {
            "name": "ATTEMPT",
            "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['jobset.sigs.k8s.io/restart-attempt']"}},
        },
    ]
    container = {"name": "node", "image": "local", "command": [sys.executable, "-c", RENDEZVOUS], "env": env}
    return {
        "apiVersion": "jobset.x-k8s.io/v1alpha2",
        "kind": "JobSet",
        "metadata": {"name": name},
        "spec": {
            "replicatedJobs": [
                {
                    "name": "node",
                    "replicas": 1,
                    "template": {
                        "spec": {
                            "parallelism": nodes,
                            "completions": nodes,
                            "backoffLimit": 0,
                            "template": {"spec": {"restartPolicy": "Never", "containers": [container]}},
                        }
                    },
                }
            ],
            **spec,
        },
    }


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    for item in (obj.get("status") or {}).get("conditions") or []:
        if item["type"] == type_ and item["status"] == "True":
            return item
    return None


def pods_of(kube: KubeEmulator, name: str, attempt: int | None = None) -> list[dict[str, Any]]:
    selector = f"jobset.sigs.k8s.io/jobset-name={name}"
    if attempt is not None:
        selector += f",jobset.sigs.k8s.io/restart-attempt={attempt}"
    return kube.list("pods", "default", label_selector=selector)


@pytest.fixture
def jobsets(kube: KubeEmulator) -> KubeEmulator:
    kube.install_jobset_crd()
    return kube


def test_crd_schema_defaults_and_webhook(jobsets: KubeEmulator) -> None:
    body = jobset("js")
    pod_spec = body["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]
    pod_spec["containers"][0]["imagePullPolicyy"] = "Never"  # misspelled: pruned, as a real apiserver does
    del pod_spec["restartPolicy"]
    body["spec"]["suspend"] = True
    created = jobsets.create(body)
    spec = created["spec"]
    # Webhook defaults (jobset_webhook.go Default) and CRD defaults (groupName, restartStrategy).
    assert spec["successPolicy"] == {"operator": "All"}
    assert spec["startupPolicy"] == {"startupPolicyOrder": "AnyOrder"}
    assert spec["network"] == {"enableDNSHostnames": True, "publishNotReadyAddresses": True}
    rjob = spec["replicatedJobs"][0]
    assert rjob["groupName"] == "default"
    assert rjob["template"]["spec"]["completionMode"] == "Indexed"
    template_spec = rjob["template"]["spec"]["template"]["spec"]
    assert template_spec["restartPolicy"] == "OnFailure"
    assert "imagePullPolicyy" not in template_spec["containers"][0]

    wrong = jobset("typed")
    wrong["spec"]["replicatedJobs"][0]["replicas"] = "two"
    with pytest.raises(ApiError) as typed:
        jobsets.create(wrong)
    assert typed.value.code == 422 and "replicas" in typed.value.message

    bad_policy = jobset(
        "policy", failurePolicy={"maxRestarts": 1, "rules": [{"action": "Retry", "name": "r"}]}
    )
    with pytest.raises(ApiError) as action:
        jobsets.create(bad_policy)
    assert action.value.code == 422 and "action" in action.value.message

    with pytest.raises(ApiError) as long_name:
        jobsets.create(jobset("a" * 52))  # "<name>-node-0-1-abcde" is over 63 characters
    assert long_name.value.code == 422 and "63" in long_name.value.message

    unknown = jobset("targets", successPolicy={"operator": "All", "targetReplicatedJobs": ["workers"]})
    with pytest.raises(ApiError) as target:
        jobsets.create(unknown)
    assert "invalid replicatedJob name 'workers'" in target.value.message

    # network and failurePolicy are immutable (x-kubernetes-validations self == oldSelf).
    with pytest.raises(ApiError) as immutable:
        jobsets.patch("jobsets", "js", {"spec": {"network": {"subdomain": "other"}}})
    assert immutable.value.code == 422 and "immutable" in immutable.value.message


def test_jobset_runs_indexed_pods_that_rendezvous_by_dns_name(
    jobsets: KubeEmulator, pod_runner: PodRunner
) -> None:
    jobsets.create(jobset("js"))
    done = jobsets.wait_for_object("jobsets", "js", lambda o: condition(o, "Completed"), timeout=60)
    status = done["status"]
    completed = condition(done, "Completed")
    assert completed is not None
    assert (completed["reason"], completed["message"]) == (
        "AllJobsCompleted",
        "jobset completed successfully",
    )
    assert status["terminalState"] == "Completed" and status["restarts"] == 0
    assert status["replicatedJobsStatus"] == [
        {"name": "node", "ready": 0, "succeeded": 1, "failed": 0, "active": 0, "suspended": 0}
    ]

    job = jobsets.get("jobs", "js-node-0")
    labels = job["metadata"]["labels"]
    assert labels["jobset.sigs.k8s.io/jobset-name"] == "js"
    assert labels["jobset.sigs.k8s.io/replicatedjob-name"] == "node"
    assert labels["jobset.sigs.k8s.io/job-index"] == "0"
    assert labels["jobset.sigs.k8s.io/job-global-index"] == "0"
    assert labels["jobset.sigs.k8s.io/restart-attempt"] == "0"
    assert labels["jobset.sigs.k8s.io/global-replicas"] == "1"
    assert labels["jobset.sigs.k8s.io/jobset-uid"] == done["metadata"]["uid"]
    assert len(labels["jobset.sigs.k8s.io/job-key"]) == 40
    assert job["metadata"]["annotations"]["jobset.sigs.k8s.io/job-index"] == "0"
    assert job["metadata"]["ownerReferences"][0]["kind"] == "JobSet"

    service = jobsets.get("services", "js")
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"] == {"jobset.sigs.k8s.io/jobset-name": "js"}

    pods = sorted(pods_of(jobsets, "js"), key=lambda p: p["spec"]["hostname"])
    assert [p["spec"]["hostname"] for p in pods] == ["js-node-0-0", "js-node-0-1"]
    assert {p["spec"]["subdomain"] for p in pods} == {"js"}
    assert all(p["metadata"]["labels"]["jobset.sigs.k8s.io/replicatedjob-name"] == "node" for p in pods)
    master_log = jobsets.pod_log(pods[0]["metadata"]["name"])
    assert "peer js-node-0-1@0" in master_log, master_log
    # The stored pod keeps what JobSet rendered; only the local process saw 127.0.0.1 and a free port.
    env = {e["name"]: e.get("value") for e in pods[1]["spec"]["containers"][0]["env"]}
    assert env["MASTER_ADDR"] == "js-node-0-0.js" and env["MASTER_PORT"] == "23456"
    assert "master 127.0.0.1" in jobsets.pod_log(pods[1]["metadata"]["name"])


def test_failed_pod_restarts_the_whole_group(jobsets: KubeEmulator, pod_runner: PodRunner) -> None:
    jobsets.create(jobset("js", mode="fail_first", failurePolicy={"maxRestarts": 2}))
    done = jobsets.wait_for_object("jobsets", "js", lambda o: condition(o, "Completed"), timeout=60)
    assert done["status"]["restarts"] == 1 and done["status"]["restartsCountTowardsMax"] == 1
    restarting = next(c for c in done["status"]["conditions"] if c["type"] == "RestartingJobSet")
    assert restarting["status"] == "False"  # set False again once the new attempt completed
    assert pods_of(jobsets, "js", attempt=0) == []  # the old attempt's Jobs and pods were deleted
    new = pods_of(jobsets, "js", attempt=1)
    assert len(new) == 2 and all(p["status"]["phase"] == "Succeeded" for p in new)
    assert jobsets.get("jobs", "js-node-0")["metadata"]["labels"]["jobset.sigs.k8s.io/restart-attempt"] == "1"


def test_killing_one_pod_mid_run_restarts_the_group(jobsets: KubeEmulator, pod_runner: PodRunner) -> None:
    jobsets.create(jobset("js", mode="hold", failurePolicy={"maxRestarts": 1}))

    def running() -> list[dict[str, Any]] | None:
        pods = pods_of(jobsets, "js", attempt=0)
        ok = len(pods) == 2 and all(p["status"].get("phase") == "Running" for p in pods)
        return pods if ok else None

    first = jobsets.wait_for(running, timeout=30)
    assert first is not None
    victim = next(p for p in first if p["spec"]["hostname"] == "js-node-0-1")
    pod_runner.kill_pod(victim["metadata"]["name"])

    done = jobsets.wait_for_object("jobsets", "js", lambda o: condition(o, "Completed"), timeout=60)
    assert done["status"]["restarts"] == 1
    message = "applying RestartJobSet failure policy action (first failed job: js-node-0)"
    events = {(e["reason"], e["message"]) for e in jobsets.events("default", involved_name="js")}
    assert ("DefaultFailurePolicy", message) in events  # the RestartingJobSet condition's event
    assert ("RestartJobSetFailurePolicyAction", message) in events
    killed = jobsets.get_or_none("pods", victim["metadata"]["name"])
    assert killed is None  # the old attempt's Jobs were deleted with their pods
    new_uids = {p["metadata"]["uid"] for p in pods_of(jobsets, "js", attempt=1)}
    assert len(new_uids) == 2 and not new_uids & {p["metadata"]["uid"] for p in first}


def test_restarts_exhausted_fails_the_jobset(jobsets: KubeEmulator, pod_runner: PodRunner) -> None:
    body = jobset("js", mode="fail_first", failurePolicy={"maxRestarts": 0})
    jobsets.create(body)
    failed = jobsets.wait_for_object("jobsets", "js", lambda o: condition(o, "Failed"), timeout=60)
    cond = condition(failed, "Failed")
    assert cond is not None and cond["reason"] == "ReachedMaxRestarts"
    assert (
        cond["message"]
        == "jobset failed due to reaching max number of restarts (first failed job: js-node-0)"
    )
    assert failed["status"]["terminalState"] == "Failed" and failed["status"]["restarts"] == 0


def test_no_failure_policy_fails_at_the_first_failed_job(
    jobsets: KubeEmulator, pod_runner: PodRunner
) -> None:
    jobsets.create(jobset("js", mode="fail_first"))
    failed = jobsets.wait_for_object("jobsets", "js", lambda o: condition(o, "Failed"), timeout=60)
    cond = condition(failed, "Failed")
    assert cond is not None and cond["reason"] == "FailedJobs"
    assert cond["message"] == "jobset failed due to one or more job failures (first failed job: js-node-0)"


def test_fail_jobset_rule_skips_restarts(jobsets: KubeEmulator, pod_runner: PodRunner) -> None:
    policy = {
        "maxRestarts": 3,
        "rules": [{"action": "FailJobSet", "onJobFailureReasons": ["BackoffLimitExceeded"]}],
    }
    jobsets.create(jobset("js", mode="fail_first", failurePolicy=policy))
    assert jobsets.get("jobsets", "js")["spec"]["failurePolicy"]["rules"][0]["name"] == "failurePolicyRule0"
    failed = jobsets.wait_for_object("jobsets", "js", lambda o: condition(o, "Failed"), timeout=60)
    cond = condition(failed, "Failed")
    assert cond is not None and cond["reason"] == "FailJobSetFailurePolicyAction"
    assert failed["status"]["restarts"] == 0


def test_suspend_and_resume(jobsets: KubeEmulator, pod_runner: PodRunner) -> None:
    jobsets.create(jobset("js", suspend=True))
    suspended = jobsets.wait_for_object("jobsets", "js", lambda o: condition(o, "Suspended"), timeout=20)
    cond = condition(suspended, "Suspended")
    assert cond is not None and (cond["reason"], cond["message"]) == ("SuspendedJobs", "jobset is suspended")
    assert jobsets.get("jobs", "js-node-0")["spec"]["suspend"] is True
    assert pods_of(jobsets, "js") == []
    assert suspended["status"]["replicatedJobsStatus"][0]["suspended"] == 1

    jobsets.patch("jobsets", "js", {"spec": {"suspend": False}})
    done = jobsets.wait_for_object("jobsets", "js", lambda o: condition(o, "Completed"), timeout=60)
    resumed = next(c for c in done["status"]["conditions"] if c["type"] == "Suspended")
    assert (resumed["status"], resumed["reason"]) == ("False", "ResumeJobs")


def test_ttl_after_finished_deletes_the_jobset_and_children(
    jobsets: KubeEmulator, pod_runner: PodRunner
) -> None:
    jobsets.create(jobset("js", nodes=1, ttlSecondsAfterFinished=0))
    jobsets.wait_for_deletion("jobsets", "js", timeout=60)
    jobsets.wait_for(lambda: not jobsets.list("jobs", "default") and not pods_of(jobsets, "js"), timeout=30)


def test_local_network_resolves_pod_dns_names_under_headless_services(kube: KubeEmulator) -> None:
    from kubeemu.localnet import LocalNetwork

    kube.create(
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "js"}, "spec": {"clusterIP": "None"}}
    )
    kube.create(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web"},
            "spec": {"ports": [{"port": 80}]},
        }
    )
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}
    pod["spec"] = {"hostname": "js-node-0-0", "subdomain": "js", "containers": [{"name": "c", "image": "i"}]}
    kube.create(pod)
    network = LocalNetwork(kube.store)
    resolve = lambda text: kube.call(network.resolve, text, "default")  # noqa: E731
    for name in ("js-node-0-0.js", "js-node-0-0.js.default", "js-node-0-0.js.default.svc.cluster.local"):
        assert resolve(name) == "127.0.0.1"
        assert resolve(f"--master-addr={name}") == "--master-addr=127.0.0.1"
        assert resolve(f"tcp://{name}:29500") == "tcp://127.0.0.1:29500"
    # Not a pod under a headless Service: left alone (a ClusterIP Service, another namespace, a path).
    for text in ("pod-0.web", "js-node-0-0.js.other", "/x/js-node-0-0.js", "x.js", "js-node-0-0.jsx", "a.js"):
        assert resolve(text) == text
    labels = {"jobset.sigs.k8s.io/jobset-uid": "u1"}
    pod = {"metadata": {"namespace": "default", "labels": labels}}
    env = {"MASTER_ADDR": "js-node-0-0.js", "MASTER_PORT": "23456", "OTHER_PORT": "1"}
    first = kube.call(network.localize_env, pod, env)
    assert (
        first["MASTER_ADDR"] == "127.0.0.1" and first["MASTER_PORT"] != "23456" and first["OTHER_PORT"] == "1"
    )
    again = kube.call(network.localize_env, pod, env)
    assert again["MASTER_PORT"] == first["MASTER_PORT"]  # every pod of one attempt agrees
    labels["jobset.sigs.k8s.io/restart-attempt"] = "1"
    assert kube.call(network.localize_env, pod, env)["MASTER_PORT"] != first["MASTER_PORT"]


def test_success_policy_any_and_blocking_recreate(jobsets: KubeEmulator, pod_runner: PodRunner) -> None:
    body = jobset(
        "js",
        mode="fail_first",
        failurePolicy={"maxRestarts": 1, "restartStrategy": "BlockingRecreate"},
        successPolicy={"operator": "Any", "targetReplicatedJobs": ["node"]},
    )
    jobsets.create(body)
    done = jobsets.wait_for_object("jobsets", "js", lambda o: condition(o, "Completed"), timeout=60)
    assert done["status"]["restarts"] == 1


def test_deleting_one_pod_mid_run_restarts_the_group(jobsets: KubeEmulator, pod_runner: PodRunner) -> None:
    jobsets.create(jobset("js", mode="hold", failurePolicy={"maxRestarts": 1}))
    first = jobsets.wait_for(
        lambda: (
            (pods := pods_of(jobsets, "js", attempt=0))
            and len(pods) == 2
            and all(p["status"].get("phase") == "Running" for p in pods)
            and pods
        ),
        timeout=30,
    )
    assert first is not None
    jobsets.delete("pods", first[0]["metadata"]["name"])  # an eviction or a drained node
    done = jobsets.wait_for_object("jobsets", "js", lambda o: condition(o, "Completed"), timeout=60)
    assert done["status"]["restarts"] == 1
