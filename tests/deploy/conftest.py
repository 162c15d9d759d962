"""Fixtures for deployment tests (see deploytools for where helm and kubectl come from)."""

from __future__ import annotations

import os

import pytest
from deploytools import KubeTools, find_kube_tools


@pytest.fixture(scope="session")
def kube_tools() -> KubeTools:
    try:
        return find_kube_tools()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def helm_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An environment that keeps helm away from the user's config, cache and any cluster."""
    home = tmp_path_factory.mktemp("helm-home")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HELM_", "KUBECONFIG"))}
    env.update(
        HELM_CACHE_HOME=str(home / "cache"),
        HELM_CONFIG_HOME=str(home / "config"),
        HELM_DATA_HOME=str(home / "data"),
        KUBECONFIG=str(home / "no-kubeconfig"),
    )
    return env
