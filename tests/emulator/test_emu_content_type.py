"""Every response carries its own Content-Type, whatever was served before it (issue 13).

Regression: kmock 0.8's ``Response._render`` merges the headers of the response a callable returns
into the (shared, frozen-but-mutated) reaction that serves every request, so after one
``GET pods/NAME/log`` (``text/plain``) every later JSON answer of the emulator said ``text/plain``
and the next kopf start died with aiohttp's ``ContentTypeError``. kopf decodes with
``response.json()``, which insists on ``application/json``.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

from kopf.testing import KopfRunner

from kubeemu import KubeEmulator

OPERATOR = Path(__file__).with_name("kubeemu_trivial_operator.py")


def fetch(kube: KubeEmulator, path: str) -> tuple[int, str, bytes]:
    """(status, Content-Type, body) of a plain GET."""
    try:
        with urllib.request.urlopen(kube.url + path, timeout=10) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type", ""), error.read()


def make_pod(kube: KubeEmulator) -> None:
    kube.create(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "main", "image": "busybox"}]},
        }
    )


def test_json_responses_after_a_pod_log_stay_json(kube: KubeEmulator) -> None:
    make_pod(kube)
    status, kind, body = fetch(kube, "/api/v1/namespaces/default/pods/p/log")
    assert (status, kind.split(";")[0], body) == (200, "text/plain", b"")
    for path, expected in [
        ("/api/v1/namespaces/default/configmaps", 200),
        ("/api/v1/namespaces/default/pods/p", 200),
        ("/api/v1/namespaces/default/pods/missing", 404),
        ("/apis", 200),
        ("/version", 200),
    ]:
        status, kind, body = fetch(kube, path)
        assert (status, kind.split(";")[0]) == (expected, "application/json"), path
        json.loads(body)
    # ... and a log after that is plain text again.
    assert fetch(kube, "/api/v1/namespaces/default/pods/p/log")[1].startswith("text/plain")


def test_kopf_starts_after_a_pod_log_was_read(widgets: KubeEmulator) -> None:
    make_pod(widgets)
    assert fetch(widgets, "/api/v1/namespaces/default/pods/p/log")[0] == 200
    with KopfRunner(["run", "-A", "--standalone", str(OPERATOR)]) as runner:
        widgets.create(
            {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 2}}
        )
        widgets.wait_for_object(
            "widgets", "w", lambda o: o.get("status", {}).get("phase") == "Running", timeout=15
        )
    assert runner.exit_code == 0, runner.output
    assert "ContentTypeError" not in runner.output
