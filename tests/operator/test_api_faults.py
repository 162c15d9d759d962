"""A real ``python -m sft_operator`` behind a fault-injecting HTTP proxy (``fault_proxy``) in front of
the emulator: the faults a hostile API server and a busy cluster produce, and what the operator must
do about each (issue 22).

Each test would fail without its fix: the watch ERROR event ended the process (kopf's WatchingError),
Retry-After was ignored (retried after 0.5 s), a refused child left no status, an Event was lost with
a status patch's response, and replicas started in the same second both paused forever.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from fault_proxy import FaultProxy
from operator_harness import NAMESPACE, condition, wait_status
from prometheus_client.parser import text_string_to_metric_families
from test_observability import get
from test_operator_cli import free_port
from test_operator_dataprep import make_pod, prep

from kubeemu import KubeEmulator

WAIT = 30.0
PREP = "SFTDataPrep"
pytestmark = pytest.mark.slow  # real operator processes, faults that take seconds to ride out


def metric(url: str, name: str) -> float:
    """Sum of every sample called ``name`` (all label values)."""
    status, text = get(url)
    assert status == 200, text
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == name)


class Operator:
    """One operator process with its endpoints and log."""

    def __init__(self, proc: subprocess.Popen[bytes], log: Path, ready: str, metrics: str) -> None:
        self.proc, self.log, self.ready, self.metrics = proc, log, ready, metrics

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None


@contextmanager
def operator_through(
    kube: KubeEmulator, server: str, tmp_path: Path, *extra: str, name: str = "operator"
) -> Iterator[Operator]:
    """``python -m sft_operator`` whose kubeconfig points at ``server`` (the proxy)."""
    config = kube.kubeconfig()
    config["clusters"][0]["cluster"]["server"] = server
    kubeconfig = tmp_path / f"{name}.kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(config))
    ready, metrics = f"http://127.0.0.1:{free_port()}/readyz", f"http://127.0.0.1:{free_port()}/metrics"
    args = ["--namespace", NAMESPACE, "--liveness", "none", "--readiness", ready, "--metrics", metrics]
    if "--peering" not in extra:
        args.append("--standalone")
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "SFT_DEFAULT_PREP_IMAGE": "ghcr.io/x/sft-prep:t"}
    log = tmp_path / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sft_operator", *args, *extra],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield Operator(proc, log, ready, metrics)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture
def proxy(cluster: KubeEmulator) -> Iterator[FaultProxy]:
    with FaultProxy(cluster.url) as p:
        yield p


def wait_ready(kube: KubeEmulator, op: Operator, ready: bool = True, timeout: float = WAIT) -> str:
    def check() -> str | None:
        status, text = get(op.ready)
        assert op.alive(), f"the operator exited ({op.proc.returncode}):\n{op.text()[-3000:]}"
        return (text or "ok") if (status == 200) == ready else None

    return kube.wait_for(check, timeout, message=f"/readyz {'200' if ready else '503'}; log {op.log}")


# ------------------------------------------------------------------------------------- point 1
def test_watch_error_events_are_ridden_out_and_reported(
    cluster: KubeEmulator, proxy: FaultProxy, tmp_path: Path
) -> None:
    """Watch ERROR events with code 500 (three in a row) on the SFTDataPrep stream: the process stays
    up, /readyz is 503 while it cannot watch and 200 again by itself, the blind time is logged and
    counted, and the operator still works afterwards."""
    kube = cluster
    with operator_through(kube, proxy.url, tmp_path) as op:
        wait_ready(kube, op)
        proxy.watch_error(r"/sftdatapreps$", code=500, times=3)
        proxy.cut_streams()  # the streams reconnect and meet the ERROR events
        reason = wait_ready(kube, op, ready=False)
        assert "not watching sftdatapreps" in reason and "500" in reason, reason
        wait_ready(kube, op)
        assert op.alive()
        assert metric(op.metrics, "sft_operator_watch_errors_total") >= 3
        assert metric(op.metrics, "sft_operator_watch_blind_seconds_total") > 1.0
        assert "watching sftdatapreps" in op.text() and "s blind" in op.text()
        kube.create(prep())
        kube.wait_for_object("Job", "demo-prep", timeout=WAIT)


def test_an_api_outage_is_ridden_out(cluster: KubeEmulator, proxy: FaultProxy, tmp_path: Path) -> None:
    """Every request answered 503 and the streams cut for ~8 s: unready meanwhile, alive, and a CR
    created during the outage gets its Job once the API server is back."""
    kube = cluster
    with operator_through(kube, proxy.url, tmp_path) as op:
        wait_ready(kube, op)
        proxy.outage(503)
        wait_ready(kube, op, ready=False)
        kube.create(prep())
        time.sleep(8)
        assert op.alive(), op.text()[-3000:]
        assert kube.get_or_none("Job", "demo-prep") is None
        proxy.restore()
        wait_ready(kube, op)
        kube.wait_for_object("Job", "demo-prep", timeout=WAIT)
        assert metric(op.metrics, "sft_operator_watch_blind_seconds_total") >= 5


def test_retry_after_is_honoured(cluster: KubeEmulator, proxy: FaultProxy, tmp_path: Path) -> None:
    """429 with Retry-After: 3 on the Job create: the next try comes no sooner than 3 s later."""
    kube = cluster
    rule = proxy.fail(
        "POST",
        r"/jobs$",
        429,
        "too many requests",
        reason="TooManyRequests",
        headers={"Retry-After": "3"},
        times=1,
    )
    with operator_through(kube, proxy.url, tmp_path) as op:
        wait_ready(kube, op)
        kube.create(prep())
        kube.wait_for_object("Job", "demo-prep", timeout=WAIT)
        posts = proxy.requests("POST", r"/jobs$")
        assert len(posts) >= 2 and posts[0][1] == 429 and rule.hits, posts
        assert posts[1][0] - rule.hits[0] >= 2.9, (posts, op.text()[-3000:])


def test_backoff_starts_over_once_the_api_answers(
    cluster: KubeEmulator, proxy: FaultProxy, tmp_path: Path
) -> None:
    """A burst of failed status patches (CR events keep triggering while they fail) must not leave the
    next try a minute away once the API server is healthy again."""
    kube = cluster
    with operator_through(kube, proxy.url, tmp_path) as op:
        wait_ready(kube, op)
        rule = proxy.fail("PATCH", r"/sftdatapreps/demo/status$", 500, times=None)
        kube.create(prep())
        kube.wait_for(lambda: len(rule.hits) >= 1, WAIT)
        for i in range(7):  # spec changes: each event triggers a reconcile that fails again
            kube.patch("SFTDataPrep", "demo", {"metadata": {"annotations": {"poke": str(i)}}})
            time.sleep(0.3)
        kube.wait_for(lambda: len(rule.hits) >= 6, WAIT)
        time.sleep(1)
        proxy.remove(rule)
        healed = time.monotonic()
        # the API server is healthy again: the operator's next successful call (another CR's
        # reconcile) restarts the backoff of every CR waiting on one
        kube.create(prep("other", outputDir="s3://bucket/other"))
        wait_status(kube, PREP, "demo", lambda s: s.get("jobRef"), "status after the burst", timeout=WAIT)
        assert time.monotonic() - healed < 15, "the status lagged behind a healthy API server"


# ------------------------------------------------------------------------------------- point 2
QUOTA_MESSAGE = (
    'jobs.batch "demo-prep" is forbidden: exceeded quota: train-quota, requested: count/jobs.batch=1, '
    "used: count/jobs.batch=4, limited: count/jobs.batch=4"
)
"""The ResourceQuota admission plugin's message (k8s.io/apiserver/pkg/admission/plugin/resourcequota/
controller.go: "exceeded quota: %s, requested: %s, used: %s, limited: %s"), wrapped by the handler's
Forbidden error: `<resource> "<name>" is forbidden: <message>`."""


def test_a_refused_child_is_stalled_with_the_api_message(
    cluster: KubeEmulator, proxy: FaultProxy, tmp_path: Path
) -> None:
    kube = cluster
    rule = proxy.fail("POST", r"/jobs$", 403, QUOTA_MESSAGE, reason="Forbidden", times=None)
    with operator_through(kube, proxy.url, tmp_path) as op:
        wait_ready(kube, op)
        kube.create(prep())
        st = wait_status(kube, PREP, "demo", lambda s: s.get("conditions"), "a status", timeout=WAIT)
        stalled = condition(st, "Stalled")
        assert stalled["status"] == "True" and stalled["reason"] == "QuotaExceeded", st
        assert "train-quota" in stalled["message"] and "create jobs" in stalled["message"]
        kube.wait_for(
            lambda: [e for e in kube.events(NAMESPACE, "demo") if e["reason"] == "QuotaExceeded"],
            WAIT,
            message="a QuotaExceeded event",
        )
        proxy.remove(rule)  # the quota was raised: the re-check creates the Job
        kube.wait_for_object("Job", "demo-prep", timeout=WAIT)
        wait_status(kube, PREP, "demo", lambda s: condition(s, "Stalled")["status"] != "True")


def test_a_transient_error_keeps_the_status_and_says_retrying(
    cluster: KubeEmulator, proxy: FaultProxy, tmp_path: Path
) -> None:
    kube = cluster
    with operator_through(kube, proxy.url, tmp_path) as op:
        wait_ready(kube, op)
        kube.create(prep())
        kube.wait_for_object("Job", "demo-prep", timeout=WAIT)
        before = wait_status(kube, PREP, "demo", lambda s: s.get("jobRef"))
        rule = proxy.fail(
            "PATCH", r"/jobs/demo-prep$", 503, "etcd leader changed", reason="ServiceUnavailable"
        )
        kube.patch("SFTDataPrep", "demo", {"spec": {"suspend": True}})
        st = wait_status(
            kube,
            PREP,
            "demo",
            lambda s: "retrying" in condition(s, "Reconciling").get("message", ""),
            "a Reconciling retry message",
            timeout=WAIT,
        )
        assert "patch jobs" in condition(st, "Reconciling")["message"]
        assert st["phase"] == before["phase"] and st["jobRef"] == before["jobRef"]
        proxy.remove(rule)
        kube.wait_for(lambda: kube.get("Job", "demo-prep")["spec"].get("suspend") is True, WAIT)


# ------------------------------------------------------------------------------------- point 4
def test_events_do_not_depend_on_the_status_patch_response(
    cluster: KubeEmulator, proxy: FaultProxy, tmp_path: Path
) -> None:
    """The first status patch (Pending, with the Job) is applied but its response never arrives: the
    Events of that transition are still posted, each exactly once."""
    kube = cluster
    rule = proxy.drop_response("PATCH", r"/sftdatapreps/demo/status$", times=1)
    with operator_through(kube, proxy.url, tmp_path) as op:
        wait_ready(kube, op)
        kube.create(prep())
        kube.wait_for_object("Job", "demo-prep", timeout=WAIT)
        kube.wait_for(lambda: rule.hits, WAIT, message="the dropped status patch")
        kube.patch_status("Job", "demo-prep", {"active": 2, "startTime": "2026-11-25T10:00:00Z"})
        make_pod(kube, kube.get("Job", "demo-prep"), 0, "Running")
        wait_status(kube, PREP, "demo", lambda s: s.get("phase") == "Running", timeout=WAIT)
        reasons = kube.wait_for(
            lambda: (
                r
                if {"JobCreated", "Pending", "Running"}
                <= set(r := [e["reason"] for e in kube.events(NAMESPACE, "demo")])
                else None
            ),
            WAIT,
            message="JobCreated, Pending and Running events",
        )
        time.sleep(1)
        reasons = [e["reason"] for e in kube.events(NAMESPACE, "demo")]
        assert sorted(reasons) == sorted(set(reasons)), reasons  # each once


# ------------------------------------------------------------------------------------- point 3
def test_two_replicas_started_together_one_active_and_takeover(
    cluster: KubeEmulator, proxy: FaultProxy, tmp_path: Path
) -> None:
    """Two replicas started in the same instant with default priorities: exactly one works; SIGKILL
    it and the other takes over within 30 s."""
    kube = cluster
    kube.create(
        {
            "apiVersion": "kopf.dev/v1",
            "kind": "KopfPeering",
            "metadata": {"name": "sft-operator", "namespace": NAMESPACE},
        }
    )
    peering = ("--peering", "sft-operator", "--peering-lifetime", "10")
    with (
        operator_through(kube, kube.url, tmp_path, *peering, name="a") as a,
        operator_through(kube, kube.url, tmp_path, *peering, name="b") as b,
    ):
        kube.wait_for(
            lambda: (
                len(
                    kube.get("KopfPeering", "sft-operator", NAMESPACE, api_version="kopf.dev/v1").get(
                        "status"
                    )
                    or {}
                )
                == 2
            ),
            WAIT,
            message="both replicas in the peering",
        )
        paused = kube.wait_for(
            lambda: [op for op in (a, b) if "Pausing operations" in op.text()] or None,
            WAIT,
            message="one pauses",
        )
        time.sleep(2)
        paused = [op for op in (a, b) if "Pausing operations" in op.text()]
        assert len(paused) == 1, (a.text()[-2000:], b.text()[-2000:])
        (standby,) = paused
        active = a if standby is b else b
        kube.create(prep())
        kube.wait_for_object("Job", "demo-prep", timeout=WAIT)

        active.proc.send_signal(signal.SIGKILL)
        active.proc.wait(10)
        died = time.monotonic()
        kube.create(prep("second", outputDir="s3://bucket/out2"))
        kube.wait_for_object("Job", "second-prep", timeout=30)
        assert time.monotonic() - died < 30
        assert standby.alive()
        assert json.dumps(kube.get("SFTDataPrep", "second").get("status") or {})


def test_events_refused_for_a_while_do_not_hold_the_status_and_are_posted_later(
    cluster: KubeEmulator, proxy: FaultProxy, tmp_path: Path
) -> None:
    """The Events API answers 503 (an EventRateLimit-like storm): the status still moves, and the kept
    Events are posted once it answers again, each once."""
    kube = cluster
    rule = proxy.fail("POST", r"/events$", 503, "too many events", reason="ServiceUnavailable")
    with operator_through(kube, proxy.url, tmp_path) as op:
        wait_ready(kube, op)
        kube.create(prep())
        wait_status(kube, PREP, "demo", lambda s: s.get("jobRef"), "the status, Events failing", timeout=WAIT)
        assert kube.events(NAMESPACE, "demo") == []
        proxy.remove(rule)
        kube.wait_for(
            lambda: {"JobCreated", "Pending"} <= {e["reason"] for e in kube.events(NAMESPACE, "demo")},
            WAIT,
            message="the kept Events posted",
        )
        reasons = [e["reason"] for e in kube.events(NAMESPACE, "demo")]
        assert len(reasons) == len(set(reasons)), reasons
