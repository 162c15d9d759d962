"""sftctl tests: cluster commands against the emulated API server (kubeemu), local runs for real."""

from __future__ import annotations

from kubeemu.fixtures import kube, pod_runner  # noqa: F401  (fixtures)
