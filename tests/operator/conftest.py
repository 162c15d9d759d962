"""Fixtures for operator tests: the emulated cluster with our CRDs, and the real operator (kopf)."""

from __future__ import annotations

import pytest
from operator_harness import OperatorFactory, run_operator

from kubeemu import KubeEmulator
from kubeemu.fixtures import PROJECT_CRDS, kube, pod_runner  # noqa: F401  (fixtures)


@pytest.fixture
def cluster(kube: KubeEmulator) -> KubeEmulator:  # noqa: F811
    kube.apply(PROJECT_CRDS)
    return kube


@pytest.fixture
def operator(cluster: KubeEmulator) -> OperatorFactory:
    """``with operator(): ...`` runs the real operator for the block (cluster already has the CRDs)."""
    return run_operator
