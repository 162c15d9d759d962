"""``python -m sft_operator`` as a process against the emulator: liveness endpoint, kopf peering (one
active instance), namespace scoping."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from test_operator_dataprep import prep

from kubeemu import KubeEmulator

TIMEOUT = 20


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def operator_process(kubeconfig: Path, *args: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "SFT_DEFAULT_PREP_IMAGE": "ghcr.io/sft-operator/sft-prep:t",
    }
    for flag in ("--readiness", "--metrics"):  # default ports would collide between tests
        if flag not in args:
            args = (*args, flag, "none")
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sft_operator", *args], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


def healthz(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
            return resp.status
    except OSError:
        return 0


def test_process_serves_liveness_and_peers(cluster: KubeEmulator, tmp_path: Path) -> None:
    kube = cluster
    kube.create(
        {
            "apiVersion": "kopf.dev/v1",
            "kind": "KopfPeering",
            "metadata": {"name": "sft-operator", "namespace": "default"},
        }
    )
    kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
    port = free_port()
    log = tmp_path / "operator.log"
    args = [
        "--namespace",
        "default",
        "--peering",
        "sft-operator",
        "--liveness",
        f"http://127.0.0.1:{port}/healthz",
    ]
    with operator_process(kubeconfig, *args, log=log):
        kube.wait_for(lambda: healthz(port) == 200, TIMEOUT, message=f"liveness; log: {log}")
        kube.create(prep())
        job = kube.wait_for_object("Job", "demo-prep", timeout=TIMEOUT)
        assert job["spec"]["template"]["spec"]["containers"][0]["image"] == "ghcr.io/sft-operator/sft-prep:t"
        peering = kube.wait_for(
            lambda: (
                kube.get("KopfPeering", "sft-operator", "default", api_version="kopf.dev/v1").get("status")
                or {}
            ),
            TIMEOUT,
            message="the operator announcing itself in the KopfPeering",
        )
        assert len(peering) == 1  # one instance registered


def test_process_ignores_other_namespaces(cluster: KubeEmulator, tmp_path: Path) -> None:
    kube = cluster
    kube.create_namespace("other")
    kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
    other = prep()
    other["metadata"]["namespace"] = "other"
    with operator_process(
        kubeconfig, "--namespace", "default", "--standalone", "--liveness", "none", log=tmp_path / "log"
    ):
        kube.create(other)
        kube.create(prep("mine"))
        kube.wait_for_object("Job", "mine-prep", timeout=TIMEOUT)
        time.sleep(0.5)
        assert kube.get_or_none("Job", "demo-prep", "other") is None


def test_only_one_of_two_instances_is_active(cluster: KubeEmulator, tmp_path: Path) -> None:
    """kopf peering: the instance with the higher priority (the newer one by default) works, the other
    pauses, so two replicas never reconcile the same CR at once."""
    kube = cluster
    kube.create(
        {
            "apiVersion": "kopf.dev/v1",
            "kind": "KopfPeering",
            "metadata": {"name": "sft-operator", "namespace": "default"},
        }
    )
    kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
    common = [
        "--namespace",
        "default",
        "--peering",
        "sft-operator",
        "--liveness",
        "none",
        "--log-level",
        "INFO",
    ]
    old_log, new_log = tmp_path / "old.log", tmp_path / "new.log"
    with operator_process(kubeconfig, *common, "--priority", "100", log=old_log):
        kube.wait_for(
            lambda: (
                len(
                    kube.get("KopfPeering", "sft-operator", "default", api_version="kopf.dev/v1").get(
                        "status"
                    )
                    or {}
                )
                == 1
            ),
            TIMEOUT,
        )
        with operator_process(kubeconfig, *common, "--priority", "200", log=new_log):
            kube.wait_for(
                lambda: "Pausing operations" in old_log.read_text(), TIMEOUT, message=f"old pauses: {old_log}"
            )
            kube.create(prep())
            kube.wait_for_object("Job", "demo-prep", timeout=TIMEOUT)
            assert "Pausing operations" not in new_log.read_text()


def test_process_serves_readiness_and_metrics_and_logs_json(cluster: KubeEmulator, tmp_path: Path) -> None:
    """The flags the chart passes: --readiness, --metrics and --log-format json, on a real process."""
    kube = cluster
    kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
    ready, metrics = free_port(), free_port()
    log = tmp_path / "operator.log"
    args = [
        "--namespace",
        "default",
        "--standalone",
        "--liveness",
        "none",
        "--readiness",
        f"http://127.0.0.1:{ready}/readyz",
        "--metrics",
        f"http://127.0.0.1:{metrics}/metrics",
        "--log-format",
        "json",
    ]

    def fetch(url: str) -> str | None:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return resp.read().decode() if resp.status == 200 else None
        except OSError:
            return None

    with operator_process(kubeconfig, *args, log=log):
        kube.wait_for(
            lambda: fetch(f"http://127.0.0.1:{ready}/readyz"), TIMEOUT, message=f"ready; log: {log}"
        )
        kube.create(prep())
        kube.wait_for_object("Job", "demo-prep", timeout=TIMEOUT)
        text = kube.wait_for(
            lambda: (
                t
                if (t := fetch(f"http://127.0.0.1:{metrics}/metrics"))
                and 'sft_operator_children_created_total{kind="Job"} 1.0' in t
                else None
            ),
            TIMEOUT,
            message="the Job counted in /metrics",
        )
        assert 'sft_operator_reconciles_total{kind="SFTDataPrep",result="success"}' in text
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    assert lines
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"message", "severity", "timestamp"} <= set(r) for r in records)
    assert any((r.get("object") or {}).get("name") == "demo" for r in records)  # kopf's per-object refs
