"""pytest fixtures: ``kube`` (a running emulator with KUBECONFIG pointing at it) and ``pod_runner``.

Use from a folder's conftest.py: ``from kubeemu.fixtures import kube, pod_runner  # noqa: F401``
(``pytest_plugins = ["kubeemu.fixtures"]`` works only in the top-level conftest).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .emulator import KubeEmulator
from .podrunner import PodRunner

REPO_ROOT = Path(__file__).resolve().parents[2]
PROJECT_CRDS = REPO_ROOT / "manifests" / "crds"


@pytest.fixture
def kube(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[KubeEmulator]:
    """A fresh emulated cluster (namespaces ``default`` and ``kube-system``), stopped on teardown.

    ``KUBECONFIG`` points at it, so ``kopf.testing.KopfRunner`` and any kubeconfig-reading client
    connect to it; in-cluster variables are removed so nothing tries a service-account login.
    No CRDs are installed: call ``kube.apply(PROJECT_CRDS)`` (or any CRD paths/dicts).
    """
    emulator = KubeEmulator().start()
    try:
        path = emulator.write_kubeconfig(tmp_path_factory.mktemp("kubeemu") / "kubeconfig")
        monkeypatch.setenv("KUBECONFIG", str(path))
        kube_config = sys.modules.get("kubernetes.config.kube_config")
        if kube_config is not None:
            # The official client (sftctl's, and kopf's default login when it is installed) reads
            # $KUBECONFIG once, at import: an earlier test's import in this process would point it at
            # that test's (gone) emulator.
            monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(path))
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        monkeypatch.delenv("KUBERNETES_SERVICE_PORT", raising=False)
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def pod_runner(kube: KubeEmulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PodRunner]:
    """A started :class:`~kubeemu.podrunner.PodRunner` playing the Job, PyTorchJob, JobSet and TrainJob
    controllers.

    Configure it before creating Jobs: ``pod_runner.executables["sft-prep"] = ".venv/bin/sft-prep"``,
    ``pod_runner.path_map["/data"] = tmp_path``. Every subprocess is killed on teardown.
    """
    runner = PodRunner(kube, work_dir=tmp_path_factory.mktemp("pods"))
    runner.start()
    try:
        yield runner
    finally:
        runner.stop()
