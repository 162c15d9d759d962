"""An operator you can watch: Prometheus ``/metrics`` that move as CRs reconcile, and a readiness probe
that follows the API server (down → 503, back → 200) and the login (failing → 503, fixed → 200).

The real operator (kopf) against the emulator; metrics are scraped over HTTP and parsed with
prometheus_client's own text parser, as Prometheus would read them.
"""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from pathlib import Path

import kmock
import pytest
import yaml
from operator_harness import NAMESPACE, WAIT, run_operator
from prometheus_client.parser import text_string_to_metric_families
from test_operator_dataprep import make_pod, prep, wait_status

from kubeemu import KubeEmulator
from tcp_proxy import TcpProxy

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(url: str) -> tuple[int, str]:
    """(status, body) of a GET; status 0 when nothing listens."""
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


def scrape(url: str) -> Samples:
    status, text = get(url)
    assert status == 200, text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def endpoints() -> dict[str, str]:
    return {
        "metrics_endpoint": f"http://127.0.0.1:{free_port()}/metrics",
        "readiness_endpoint": f"http://127.0.0.1:{free_port()}/readyz",
    }


def counted(samples: Samples, phase: str) -> bool:
    """One SFTDataPrep in ``phase`` and no reconcile running (its counters are final)."""
    return (
        value(samples, "sft_operator_resources", kind="SFTDataPrep", phase=phase) == 1
        and value(samples, "sft_operator_workqueue_in_flight") == 0
        and value(samples, "sft_operator_workqueue_depth") == 0
    )


def test_metrics_follow_reconciles(cluster: KubeEmulator) -> None:
    kube = cluster
    urls = endpoints()
    metrics = urls["metrics_endpoint"]
    # the first two Job creations fail with a 500: reconcile errors, retries and API errors by verb
    kube.requests["post", kmock.resource("batch", "v1", "jobs")][:2] << 500
    with run_operator(**urls):
        kube.wait_for(lambda: get(metrics)[0] == 200, WAIT, message="/metrics served")
        before = scrape(metrics)
        assert value(before, "sft_operator_resources", kind="SFTDataPrep", phase="Pending") == 0
        assert ("sft_operator_workqueue_depth", ()) in before

        kube.create(prep())
        job = kube.wait_for_object("Job", "demo-prep", timeout=WAIT)
        wait_status(kube, lambda s: s.get("phase") == "Pending" and s.get("jobRef"))
        samples = kube.wait_for(
            lambda: s if counted(s := scrape(metrics), "Pending") else None,
            WAIT,
            message="the Pending SFTDataPrep counted",
        )
        assert value(samples, "sft_operator_reconciles_total", kind="SFTDataPrep", result="error") == 2
        assert value(samples, "sft_operator_reconciles_total", kind="SFTDataPrep", result="success") >= 1
        assert value(samples, "sft_operator_api_errors_total", verb="create", code="500") == 2
        assert value(samples, "sft_operator_workqueue_retries_total") == 2
        assert value(samples, "sft_operator_children_created_total", kind="Job") == 1
        assert value(samples, "sft_operator_children_created_total", kind="ConfigMap") == 1
        count = value(samples, "sft_operator_reconcile_duration_seconds_count", kind="SFTDataPrep")
        reconciles = sum(
            value(samples, "sft_operator_reconciles_total", kind="SFTDataPrep", result=r)
            for r in ("success", "requeue", "error")
        )
        assert count == reconciles >= 3
        assert value(samples, "sft_operator_workqueue_adds_total") >= 1

        kube.patch_status("Job", "demo-prep", {"active": 2, "startTime": "2026-11-25T10:00:00Z"})
        make_pod(kube, job, 0, "Running")
        wait_status(kube, lambda s: s.get("phase") == "Running")
        samples = kube.wait_for(
            lambda: s if counted(s := scrape(metrics), "Running") else None,
            WAIT,
            message="the Running SFTDataPrep counted",
        )
        assert value(samples, "sft_operator_resources", kind="SFTDataPrep", phase="Pending") == 0
        assert value(samples, "sft_operator_children_created_total", kind="Job") == 1  # never twice
        assert value(samples, "sft_operator_reconciles_total", kind="SFTDataPrep", result="success") > value(
            before, "sft_operator_reconciles_total", kind="SFTDataPrep", result="success"
        )


def write_kubeconfig(kube: KubeEmulator, path: Path, server: str) -> Path:
    config = kube.kubeconfig()
    config["clusters"][0]["cluster"]["server"] = server
    path.write_text(yaml.safe_dump(config))
    return path


def test_readiness_follows_the_api_server(
    cluster: KubeEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kube = cluster
    host, port = kube.url.removeprefix("http://").split(":")
    with TcpProxy(host, int(port)) as proxy:
        monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(kube, tmp_path / "kubeconfig", proxy.url)))
        urls = endpoints()
        ready = urls["readiness_endpoint"]
        with run_operator(**urls):
            kube.wait_for(lambda: get(ready)[0] == 200, WAIT, message="ready while the API server answers")
            assert get(ready)[1].strip() == "ok"

            proxy.down()
            _status, reason = kube.wait_for(
                lambda: r if (r := get(ready))[0] == 503 else None, WAIT, message="unready while it is down"
            )
            assert "unreachable" in reason and proxy.url.removeprefix("http://") in reason

            proxy.up()
            kube.wait_for(lambda: get(ready)[0] == 200, WAIT, message="ready again once it is back")
            # and the operator still works through the restored connection
            kube.create(prep())
            kube.wait_for_object("Job", "demo-prep", timeout=WAIT)


def test_readiness_fails_while_login_fails(
    cluster: KubeEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kube = cluster
    path = tmp_path / "kubeconfig"  # not there yet: no credentials at all
    monkeypatch.setenv("KUBECONFIG", str(path))
    urls = endpoints()
    ready = urls["readiness_endpoint"]
    with run_operator(login_backoff=0.5, **urls):
        _status, reason = kube.wait_for(
            lambda: r if (r := get(ready))[0] == 503 and "login" in r[1] else None,
            WAIT,
            message="unready while the login fails",
        )
        assert reason.startswith("login failed:") and "kubeconfig" in reason
        write_kubeconfig(kube, path, kube.url)
        kube.wait_for(lambda: get(ready)[0] == 200, WAIT, message="ready once the login succeeds")
        kube.create(prep())
        kube.wait_for_object("Job", "demo-prep", namespace=NAMESPACE, timeout=WAIT)
