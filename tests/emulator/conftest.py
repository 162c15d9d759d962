"""Fixtures for the emulator's own tests: the `kube` fixture plus a tiny raw HTTP client."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kubeemu.emulator import KubeEmulator
from kubeemu.fixtures import kube, pod_runner  # noqa: F401  (fixtures)

WIDGETS_CRD = Path(__file__).with_name("widgets_crd.yaml")
Api = Callable[..., tuple[int, Any]]


@pytest.fixture
def api(kube: KubeEmulator) -> Api:  # noqa: F811  (the imported fixture)
    """``api(method, path, body=None, content_type=...)`` -> (HTTP status, decoded JSON or text)."""

    def call(
        method: str, path: str, body: Any = None, content_type: str = "application/json"
    ) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(kube.url + path, data=data, method=method)
        request.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                status, raw, kind = response.status, response.read(), response.headers.get("Content-Type", "")
        except urllib.error.HTTPError as error:
            status, raw, kind = error.code, error.read(), error.headers.get("Content-Type", "")
        return status, json.loads(raw) if "json" in kind else raw.decode()

    return call


@pytest.fixture
def widgets(kube: KubeEmulator) -> KubeEmulator:  # noqa: F811
    """The emulator with the sample ``widgets.example.com`` CRD installed."""
    kube.apply(WIDGETS_CRD)
    return kube
