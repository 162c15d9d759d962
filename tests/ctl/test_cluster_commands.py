"""sftctl's cluster commands (apply, get, watch, describe, logs) against the emulated API server.

kubeemu serves the real CRDs (schema, defaults, status subresource), so the official ``kubernetes``
client talks to it exactly as to an apiserver; KUBECONFIG points at it (the ``kube`` fixture), with
the context ``kubeemu`` and namespace ``default``.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubeemu import KubeEmulator
from kubeemu.fixtures import PROJECT_CRDS
from sft_operator import backends
from sft_operator.ctl import logs
from sft_operator.ctl.main import main
from sft_operator.render import dataprep as render_dataprep

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "manifests" / "samples"


def sftctl(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def succeeded(kube: KubeEmulator, kind: str, name: str, **extra: Any) -> None:
    kube.patch_status(
        kind,
        name,
        {
            "phase": "Succeeded",
            "message": "done",
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "Succeeded",
                    "message": "done",
                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                }
            ],
            **extra,
        },
    )


def test_apply_creates_then_configures_and_get_lists_both_kinds(
    kube: KubeEmulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    kube.apply(PROJECT_CRDS)
    both = tmp_path / "both.yaml"
    both.write_text(
        (SAMPLES / "sftdataprep-tiny.yaml").read_text()
        + "\n---\n"
        + (SAMPLES / "sftrun-tiny.yaml").read_text()
    )
    code, out, err = sftctl(capsys, "apply", "-f", str(both))
    assert code == 0, err
    assert "sftdataprep.sft.dev/tiny created (context kubeemu, namespace default)" in out
    assert "sftrun.sft.dev/tiny created" in out
    assert "skipping PersistentVolumeClaim/sft-data" in err
    assert kube.get("SFTDataPrep", "tiny")["spec"]["packSize"] == 512
    # re-apply with a change: configured, the change lands
    both.write_text(both.read_text().replace("trainIters: 20", "trainIters: 30"))
    code, out, _ = sftctl(capsys, "apply", "-f", str(both))
    assert code == 0 and "sftrun.sft.dev/tiny configured" in out
    assert kube.get("SFTRun", "tiny")["spec"]["train"]["trainIters"] == 30

    kube.patch_status(
        "SFTRun",
        "tiny",
        {
            "phase": "Running",
            "message": "1 of 1 pods running",
            "progress": {"iterations": "5/30", "loss": 3.14159, "etaSeconds": 75, "tokensPerSecond": 1500.0},
        },
    )
    code, out, _ = sftctl(capsys, "get")  # kubectl's shape: a table per kind (test_kubectl_shape.py)
    assert code == 0
    prep_block, run_block = out.split("\n\n")
    assert prep_block.splitlines()[0].split()[:3] == ["NAME", "PHASE", "SHARDS"]
    assert prep_block.splitlines()[1].startswith("sftdataprep.sft.dev/tiny ")
    header, run_line = run_block.splitlines()
    assert header.split() == ["NAME", "PHASE", "ITERATION", "LOSS", "TOKENS", "ETA", "AGE", "MESSAGE"]
    assert run_line.split()[:4] == ["sftrun.sft.dev/tiny", "Running", "5/30", "3.14159"]
    assert run_line.endswith("1 of 1 pods running")
    code, out, _ = sftctl(capsys, "get", "sftrun/tiny")
    assert code == 0 and out.splitlines()[1].startswith("tiny ") and len(out.splitlines()) == 2


def test_apply_refuses_an_invalid_spec_naming_the_document_and_key(
    kube: KubeEmulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    kube.apply(PROJECT_CRDS)
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        (SAMPLES / "sftdataprep-tiny.yaml").read_text().replace("parallelism: 2", "parallelism: 3")
    )
    code, _, err = sftctl(capsys, "apply", "-f", str(bad))
    assert code == 2
    assert "bad.yaml#2 (SFTDataPrep/tiny)" in err and "parallelism (3) exceeds numShards (2)" in err
    assert kube.get_or_none("SFTDataPrep", "tiny") is None  # nothing was sent


def test_errors_name_the_context_and_namespace(
    kube: KubeEmulator, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kube.apply(PROJECT_CRDS)
    code, _, err = sftctl(capsys, "describe", "nope", "-n", "team-a")
    assert code == 1
    assert "no SFTDataPrep or SFTRun named nope (context kubeemu, namespace team-a)" in err
    # an API server that is not there
    config = yaml.safe_load(Path(kube.write_kubeconfig(tmp_path / "k")).read_text())
    config["clusters"][0]["cluster"]["server"] = "http://127.0.0.1:9"
    (tmp_path / "dead").write_text(yaml.safe_dump(config))
    code, _, err = sftctl(capsys, "get", "--kubeconfig", str(tmp_path / "dead"))
    assert code == 1 and "(context kubeemu, namespace default)" in err and "reachable" in err
    code, _, err = sftctl(capsys, "get", "--context", "other")
    assert code == 1 and "context 'other' is not in" in err and "kubeemu" in err
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    code, _, err = sftctl(capsys, "get")
    assert code == 1 and "no kubeconfig" in err and "run --local" in err


def test_watch_ends_when_everything_finished_and_fails_when_one_failed(
    kube: KubeEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    kube.apply(PROJECT_CRDS)
    (prep,) = [
        d
        for d in yaml.safe_load_all((SAMPLES / "sftdataprep-tiny.yaml").read_text())
        if d["kind"] == "SFTDataPrep"
    ]
    kube.create({**prep, "metadata": {"name": "a", "namespace": "default"}})
    kube.create({**prep, "metadata": {"name": "b", "namespace": "default"}})
    kube.patch_status("SFTDataPrep", "a", {"phase": "Running", "message": "working"})
    timer = threading.Timer(1.0, lambda: succeeded(kube, "SFTDataPrep", "a", progress={"shards": "2/2"}))
    timer.start()
    try:
        code, out, _ = sftctl(capsys, "watch", "sftdataprep/a", "--interval", "0.2", "--timeout", "30")
    finally:
        timer.cancel()
    assert code == 0
    assert "Running" in out and out.rstrip().splitlines()[-1].split()[:3] == [
        "SFTDataPrep/a",
        "Succeeded",
        "2/2",
    ]
    kube.patch_status("SFTDataPrep", "b", {"phase": "Failed", "message": "bad rows"})
    code, out, _ = sftctl(capsys, "watch", "a", "b", "--interval", "0.1", "--timeout", "10")
    assert code == 1 and "bad rows" in out
    kube.patch_status("SFTDataPrep", "b", {"phase": "Running"})
    code, _, err = sftctl(capsys, "watch", "b", "--interval", "0.1", "--timeout", "0.5")
    assert code == 1 and "timed out" in err


def _pod(
    name: str, labels: dict[str, str], annotations: dict[str, str] | None = None, container: str = "prep"
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "default",
            "labels": labels,
            "annotations": annotations or {},
        },
        "spec": {"containers": [{"name": container, "image": "x"}]},
    }


def test_logs_finds_the_pod_by_the_operators_labels(
    kube: KubeEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    """Which pod: by the labels render.meta.child_labels puts on every child pod and the indexes the
    Job controller (completion-index annotation) and the training-operator (replica-type/index labels)
    add; the log itself comes from the emulator's pods/NAME/log."""
    kube.apply(PROJECT_CRDS)
    (prep,) = [
        d
        for d in yaml.safe_load_all((SAMPLES / "sftdataprep-tiny.yaml").read_text())
        if d["kind"] == "SFTDataPrep"
    ]
    prep["metadata"]["namespace"] = "default"
    created = kube.create(prep)
    children = render_dataprep.render(created, render_dataprep.WorkloadDefaults(prep_image="img"))
    labels = children.job["spec"]["template"]["metadata"]["labels"]
    index = "batch.kubernetes.io/job-completion-index"
    kube.create(_pod("tiny-prep-0-aaaaa", labels, {index: "0"}))
    kube.create(_pod("tiny-prep-1-bbbbb", labels, {index: "1"}))
    kube.create(_pod("unrelated", {"app": "other"}, {index: "1"}))
    logs_by_pod = {"tiny-prep-0-aaaaa": "worker zero\n", "tiny-prep-1-bbbbb": "worker one\n"}
    kube.store.log_provider = lambda ns, name, container, tail: logs_by_pod.get(name, "")
    code, out, err = sftctl(capsys, "logs", "tiny", "--worker", "1")
    assert code == 0 and out == "worker one\n" and "# pod tiny-prep-1-bbbbb" in err
    code, out, _ = sftctl(capsys, "logs", "sftdataprep/tiny")
    assert code == 0 and out == "worker zero\n"
    # a failed prep: the pod its status blames
    kube.patch_status(
        "SFTDataPrep",
        "tiny",
        {"phase": "Failed", "failure": {"reason": "X", "message": "m", "pod": "tiny-prep-1-bbbbb"}},
    )
    code, out, _ = sftctl(capsys, "logs", "tiny")
    assert out == "worker one\n"
    code, _, err = sftctl(capsys, "logs", "tiny", "--worker", "7")
    assert code == 1 and "no pod for worker 7 (it has workers [0, 1])" in err
    code, _, err = sftctl(capsys, "logs", "tiny", "--node", "0")
    assert code == 1 and "no SFTRun named tiny" in err


def test_node_rank_follows_the_training_operator() -> None:
    """Master is node 0; Worker replica i is node i+1 (training-operator v1 sets RANK that way:
    pkg/controller.v1/pytorch/envvar.go adds 1 to a Worker's index)."""

    def ptj_pod(kind: str, index: int) -> dict[str, Any]:
        pod = _pod(
            f"r-train-{kind.lower()}-{index}",
            {
                "training.kubeflow.org/replica-type": kind.lower(),
                "training.kubeflow.org/replica-index": str(index),
            },
            container="pytorch",
        )
        # the training-operator's controller reference on each replica pod
        owner = {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "name": "r-train", "controller": True}
        pod["metadata"]["ownerReferences"] = [owner]
        return pod

    pods = [ptj_pod("Master", 0), ptj_pod("Worker", 0), ptj_pod("Worker", 1)]
    assert [logs.node_rank(p, backends.named("pytorchjob")) for p in pods] == [0, 1, 2]
    # a run without status.backend (started before it was recorded): the pods' owner says which
    cr = {"kind": "SFTRun", "metadata": {"name": "r"}, "status": {}}
    assert logs.choose_pod(cr, pods, None, None)["metadata"]["name"] == "r-train-master-0"
    assert logs.choose_pod(cr, pods, 2, None)["metadata"]["name"] == "r-train-worker-1"
    with pytest.raises(Exception, match="--worker is for SFTDataPrep"):
        logs.choose_pod(cr, pods, None, 1)
