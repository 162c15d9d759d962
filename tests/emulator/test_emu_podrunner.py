"""The local pod runner: Jobs and PyTorchJobs run their pods as local subprocesses."""

from __future__ import annotations

import base64
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from kubeemu import KubeEmulator, PodRunner


def python(code: str, *args: str) -> dict[str, Any]:
    return {"name": "main", "image": "local", "command": [sys.executable, "-c", code, *args]}


def job(name: str, container: dict[str, Any], **spec: Any) -> dict[str, Any]:
    pod_spec: dict[str, Any] = {"restartPolicy": "Never", "containers": [container]}
    pod_spec.update(spec.pop("pod", {}))
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {"template": {"spec": pod_spec}, **spec},
    }


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    for item in (obj.get("status") or {}).get("conditions") or []:
        if item["type"] == type_ and item["status"] == "True":
            return item
    return None


def test_indexed_job_completes_with_termination_messages(
    kube: KubeEmulator, pod_runner: PodRunner, api: Any
) -> None:
    code = (
        "import os, sys, json; print('worker', os.environ['JOB_COMPLETION_INDEX'], 'args', sys.argv[1:]); "
        "open(os.environ['SFT_TERMINATION_LOG'], 'w').write(json.dumps({'worker': int(sys.argv[1])}))"
    )
    kube.create(
        job(
            "prep",
            python(code, "$(JOB_COMPLETION_INDEX)"),
            completionMode="Indexed",
            completions=3,
            parallelism=2,
            backoffLimit=0,
        )
    )
    done = kube.wait_for_object("jobs", "prep", lambda o: condition(o, "Complete"), timeout=20)
    status = done["status"]
    assert (status["succeeded"], status["failed"], status["active"]) == (3, 0, 0)
    assert status["completedIndexes"] == "0-2" and status["startTime"] and status["completionTime"]
    assert condition(done, "SuccessCriteriaMet")

    pods = kube.list("pods", "default", label_selector="batch.kubernetes.io/job-name=prep")
    assert len(pods) == 3
    by_index = {
        int(p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]): p for p in pods
    }
    for index, pod in by_index.items():
        assert pod["status"]["phase"] == "Succeeded"
        terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
        assert (terminated["exitCode"], terminated["reason"]) == (0, "Completed")
        assert json.loads(terminated["message"]) == {"worker": index}
        status_code, log = api("GET", f"/api/v1/namespaces/default/pods/{pod['metadata']['name']}/log")
        assert status_code == 200 and log == f"worker {index} args ['{index}']\n"


def test_failing_pod_fails_the_job_with_log_fallback(kube: KubeEmulator, pod_runner: PodRunner) -> None:
    container = python("import sys; print('line one'); print('boom: bad input'); sys.exit(3)")
    container["terminationMessagePolicy"] = "FallbackToLogsOnError"
    kube.create(job("bad", container, backoffLimit=1))
    failed = kube.wait_for_object("jobs", "bad", lambda o: condition(o, "Failed"), timeout=20)
    assert (condition(failed, "Failed") or {}).get("reason") == "BackoffLimitExceeded"
    assert failed["status"]["failed"] == 2  # backoffLimit 1: the second failure fails the Job
    terminated = kube.list("pods", "default")[0]["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (3, "Error")
    assert terminated["message"] == "line one\nboom: bad input\n"


def test_suspended_job_runs_nothing_until_resumed(kube: KubeEmulator, pod_runner: PodRunner) -> None:
    kube.create(job("later", python("pass"), suspend=True))
    suspended = kube.wait_for_object("jobs", "later", lambda o: condition(o, "Suspended"))
    assert "startTime" not in suspended["status"] and kube.list("pods", "default") == []
    kube.patch("jobs", "later", {"spec": {"suspend": False}})
    done = kube.wait_for_object("jobs", "later", lambda o: condition(o, "Complete"), timeout=20)
    resumed = next(c for c in done["status"]["conditions"] if c["type"] == "Suspended")
    assert (resumed["status"], resumed["reason"]) == ("False", "JobResumed")


def test_pod_environment_volumes_and_path_mapping(
    kube: KubeEmulator, pod_runner: PodRunner, tmp_path: Path
) -> None:
    tool = tmp_path / "tool.py"
    tool.write_text(
        "import os, sys, pathlib\n"
        "config = pathlib.Path(sys.argv[sys.argv.index('--config') + 1]).read_text()\n"
        "out = pathlib.Path(config.split('output: ')[1].strip())\n"
        "out.mkdir(parents=True, exist_ok=True)\n"
        "values = [os.environ[k] for k in ('TOKEN', 'APP_MODE', 'POD')]\n"
        "(out / 'result.txt').write_text(' '.join(values))\n"
    )
    data_dir = tmp_path / "data"
    pod_runner.executables["sft-tool"] = [sys.executable, str(tool)]
    pod_runner.path_map["/data"] = data_dir
    kube.create(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "cfg"},
            "data": {"config.yaml": "output: /data/out\n", "APP_MODE": "fast"},
        }
    )
    container = {
        "name": "main",
        "image": "local",
        "command": ["sft-tool"],
        "args": ["--config", "/etc/sft/config.yaml"],
        "env": [
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        ],
        "envFrom": [{"configMapRef": {"name": "cfg"}}],
        "volumeMounts": [{"name": "config", "mountPath": "/etc/sft"}],
    }
    volumes = [
        {
            "name": "config",
            "configMap": {"name": "cfg", "items": [{"key": "config.yaml", "path": "config.yaml"}]},
        }
    ]
    kube.create(job("tool", container, pod={"volumes": volumes}))
    # The Secret does not exist yet: the kubelet keeps the container waiting, and retries.
    waiting = kube.wait_for(
        lambda: [
            p
            for p in kube.list("pods", "default")
            if p["status"].get("containerStatuses")
            and p["status"]["containerStatuses"][0]["state"].get("waiting", {}).get("reason")
            == "CreateContainerConfigError"
        ]
    )
    assert (
        'secret "creds" not found'
        in waiting[0]["status"]["containerStatuses"][0]["state"]["waiting"]["message"]
    )
    secret_value = base64.b64encode(b"not-a-real-token").decode()
    kube.create(
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"}, "data": {"token": secret_value}}
    )
    kube.wait_for_object("jobs", "tool", lambda o: condition(o, "Complete"), timeout=20)
    pod_name = kube.list("pods", "default")[0]["metadata"]["name"]
    assert (data_dir / "out" / "result.txt").read_text() == f"not-a-real-token fast {pod_name}"


def test_deleting_a_job_in_background_kills_its_pods(
    kube: KubeEmulator, pod_runner: PodRunner, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pid"
    code = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    kube.create(job("sleepy", python(code)))
    kube.wait_for(lambda: pid_file.exists() and pid_file.read_text())
    running = kube.wait_for_object("jobs", "sleepy", lambda o: o["status"].get("ready") == 1)
    assert running["status"]["active"] == 1
    pid = int(pid_file.read_text())
    kube.delete("jobs", "sleepy", propagation="Background")
    kube.wait_for(lambda: not kube.list("pods", "default"))

    def dead() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False

    kube.wait_for(dead, timeout=10, message=f"process {pid} to be killed")


PYTORCHJOB_CODE = (
    "import json, os, sys\n"
    "keys = ['MASTER_ADDR', 'MASTER_PORT', 'WORLD_SIZE', 'RANK', 'PET_NNODES', 'PET_NPROC_PER_NODE',\n"
    "        'PET_NODE_RANK']\n"
    "marker = os.path.join(sys.argv[1], 'failed-once-' + os.environ['RANK'])\n"
    "if os.environ['RANK'] == '1' and not os.path.exists(marker):\n"
    "    open(marker, 'w').close(); sys.exit(1)\n"
    "open(os.environ['SFT_TERMINATION_LOG'], 'w').write(json.dumps({k: os.environ[k] for k in keys}))\n"
    "open(os.path.join(sys.argv[1], 'done-' + os.environ['RANK']), 'w').close()\n"
    "if os.environ['RANK'] == '0':  # like a rendezvous: the master finishes after the workers\n"
    "    import time\n"
    "    while not all(os.path.exists(os.path.join(sys.argv[1], f'done-{r}')) for r in (1, 2)):\n"
    "        time.sleep(0.02)\n"
)


def pytorchjob(name: str, workdir: Path, **run_policy: Any) -> dict[str, Any]:
    def replica(replicas: int) -> dict[str, Any]:
        container = {
            "name": "pytorch",
            "image": "local",
            "command": [sys.executable, "-c", PYTORCHJOB_CODE, str(workdir)],
        }
        return {
            "replicas": replicas,
            "restartPolicy": "OnFailure",
            "template": {"spec": {"containers": [container]}},
        }

    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {"name": name},
        "spec": {
            "nprocPerNode": "2",
            "runPolicy": run_policy,
            "pytorchReplicaSpecs": {"Master": replica(1), "Worker": replica(2)},
        },
    }


def test_pytorchjob_runs_master_and_workers(
    kube: KubeEmulator, pod_runner: PodRunner, tmp_path: Path
) -> None:
    kube.install_pytorchjob_crd()
    kube.create(pytorchjob("train", tmp_path))
    done = kube.wait_for_object("pytorchjobs", "train", lambda o: condition(o, "Succeeded"), timeout=30)
    types = {c["type"]: c for c in done["status"]["conditions"]}
    assert types["Created"]["status"] == "True" and types["Running"]["status"] == "False"
    assert types["Restarting"]["reason"] in ("PyTorchJobRestarting", "PyTorchJobRunning")  # rank 1 restarted
    assert done["status"]["replicaStatuses"]["Master"]["succeeded"] == 1

    pods = {p["metadata"]["name"]: p for p in kube.list("pods", "default")}
    assert set(pods) == {"train-master-0", "train-worker-0", "train-worker-1"}
    master_env = json.loads(
        pods["train-master-0"]["status"]["containerStatuses"][0]["state"]["terminated"]["message"]
    )
    assert master_env["MASTER_ADDR"] == "localhost" and int(master_env["MASTER_PORT"]) > 0
    assert (master_env["WORLD_SIZE"], master_env["PET_NNODES"], master_env["PET_NPROC_PER_NODE"]) == (
        "6",
        "3",
        "2",
    )
    ranks = sorted(
        json.loads(p["status"]["containerStatuses"][0]["state"]["terminated"]["message"])["RANK"]
        for p in pods.values()
    )
    assert ranks == ["0", "1", "2"]
    worker0 = pods["train-worker-0"]
    assert worker0["metadata"]["labels"]["training.kubeflow.org/replica-type"] == "worker"
    assert worker0["status"]["containerStatuses"][0]["restartCount"] == 1  # rank 1 failed once, restarted


def test_pytorchjob_backoff_limit_and_suspend(
    kube: KubeEmulator, pod_runner: PodRunner, tmp_path: Path
) -> None:
    kube.install_pytorchjob_crd()
    kube.create(pytorchjob("strict", tmp_path, backoffLimit=0))
    failed = kube.wait_for_object("pytorchjobs", "strict", lambda o: condition(o, "Failed"), timeout=30)
    assert (condition(failed, "Failed") or {}).get("reason") == "BackoffLimitExceeded"

    kube.create(pytorchjob("paused", tmp_path, suspend=True))
    paused = kube.wait_for_object("pytorchjobs", "paused", lambda o: condition(o, "Suspended"))
    assert condition(paused, "Suspended")["reason"] == "PyTorchJobSuspended"
    assert not [p for p in kube.list("pods", "default") if p["metadata"]["name"].startswith("paused-")]
    time.sleep(0.3)
    assert not [p for p in kube.list("pods", "default") if p["metadata"]["name"].startswith("paused-")]


@pytest.mark.parametrize("policy", ["Never"])
def test_pytorchjob_replica_failure_fails_the_job(
    kube: KubeEmulator, pod_runner: PodRunner, tmp_path: Path, policy: str
) -> None:
    kube.install_pytorchjob_crd()
    body = pytorchjob("brittle", tmp_path)
    for spec in body["spec"]["pytorchReplicaSpecs"].values():
        spec["restartPolicy"] = policy
    kube.create(body)
    failed = kube.wait_for_object("pytorchjobs", "brittle", lambda o: condition(o, "Failed"), timeout=30)
    assert (
        condition(failed, "Failed")["message"]
        == "PyTorchJob brittle is failed because 1 Worker replica(s) failed."
    )


def test_active_deadline_fails_the_job(kube: KubeEmulator, pod_runner: PodRunner) -> None:
    kube.create(job("slow", python("import time; time.sleep(30)"), activeDeadlineSeconds=1))
    failed = kube.wait_for_object("jobs", "slow", lambda o: condition(o, "Failed"), timeout=10)
    assert condition(failed, "Failed")["reason"] == "DeadlineExceeded"
    kube.wait_for(lambda: not kube.list("pods", "default"), message="the running pod to be deleted")


def test_pvc_volumes_map_to_the_runner_pvc_root(
    kube: KubeEmulator, pod_runner: PodRunner, tmp_path: Path
) -> None:
    pod_runner.config.pvc_root = tmp_path / "pvcs"
    container = python("import pathlib; pathlib.Path('/out/data.txt').write_text('persisted')")
    container["volumeMounts"] = [{"name": "output", "mountPath": "/out"}]
    volumes = [{"name": "output", "persistentVolumeClaim": {"claimName": "results"}}]
    kube.create(job("writer", container, pod={"volumes": volumes}))
    kube.wait_for_object("jobs", "writer", lambda o: condition(o, "Complete"), timeout=20)
    assert (tmp_path / "pvcs" / "results" / "data.txt").read_text() == "persisted"


def test_missing_executable_is_a_start_error(kube: KubeEmulator, pod_runner: PodRunner) -> None:
    container = {"name": "main", "image": "local", "command": ["no-such-tool-kubeemu"]}
    kube.create(job("broken", container, backoffLimit=0))
    kube.wait_for_object("jobs", "broken", lambda o: condition(o, "Failed"), timeout=20)
    terminated = kube.list("pods", "default")[0]["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (128, "StartError")
    assert "no-such-tool-kubeemu" in terminated["message"]


def test_a_deleted_running_pod_counts_as_failed(kube: KubeEmulator, pod_runner: PodRunner) -> None:
    # Upstream isPodFailed: "Count deleted Pods as failures to account for orphan Pods that never have
    # a chance to reach the Failed phase" (no podFailurePolicy). The replacement pod then succeeds.
    code = "import os, time; time.sleep(30 if not os.path.exists('marker') else 0); open('marker', 'w')"
    kube.create(job("evicted", python(code), backoffLimit=1, pod={"restartPolicy": "Never"}))
    running = kube.wait_for(
        lambda: [
            p for p in kube.list("pods", "default") if (p.get("status") or {}).get("phase") == "Running"
        ],
        timeout=20,
    )
    assert running is not None
    kube.delete("pods", running[0]["metadata"]["name"])
    counted = kube.wait_for_object("jobs", "evicted", lambda o: o["status"].get("failed") == 1, timeout=20)
    assert not condition(counted, "Failed")  # 1 failure, backoffLimit 1: replaced, not failed

    kube.create(job("strict", python("import time; time.sleep(30)"), backoffLimit=0))
    pod = kube.wait_for(
        lambda: next(
            (
                p
                for p in kube.list("pods", "default", label_selector="batch.kubernetes.io/job-name=strict")
                if (p.get("status") or {}).get("phase") == "Running"
            ),
            None,
        ),
        timeout=20,
    )
    assert pod is not None
    kube.delete("pods", pod["metadata"]["name"])
    failed = kube.wait_for_object("jobs", "strict", lambda o: condition(o, "Failed"), timeout=20)
    assert (condition(failed, "Failed") or {}).get("reason") == "BackoffLimitExceeded"
