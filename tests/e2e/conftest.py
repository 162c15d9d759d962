"""e2e fixtures: the emulated cluster (kubeemu) with our CRDs and the local pod runner."""

from __future__ import annotations

from kubeemu.fixtures import kube, pod_runner  # noqa: F401  (fixtures)
