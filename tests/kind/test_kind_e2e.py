"""`make e2e-kind` as a pytest test: the real operator, chart and images on a kind cluster.

Skips (with the reason) where there is no Docker engine or no kind/helm/kubectl, as on the
development machines of this project; CI runs it through .github/workflows/e2e-kind.yaml.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

RUN_SH = Path(__file__).resolve().parent / "run.sh"
TOOLS = ("docker", "kind", "kubectl", "helm")


def _why_not() -> str | None:
    reasons = []
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        reasons.append(f"{', '.join(missing)} on PATH")
    if shutil.which("docker") is not None:
        try:
            info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30)
            if info.returncode != 0:
                reasons.append("a running Docker engine (`docker info` failed)")
        except subprocess.TimeoutExpired:
            reasons.append("a running Docker engine (`docker info` timed out)")
    return (
        f"kind e2e needs {' and '.join(reasons)}; run `make e2e-kind` where they exist" if reasons else None
    )


REASON = _why_not()


@pytest.mark.kind
@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.skipif(REASON is not None, reason=REASON or "")
def test_tiny_pipeline_on_kind(tmp_path: Path) -> None:
    env = {**os.environ, "ARTIFACTS": os.environ.get("ARTIFACTS", str(tmp_path / "artifacts"))}
    proc = subprocess.run(["bash", str(RUN_SH)], env=env, timeout=3500)
    assert proc.returncode == 0, f"tests/kind/run.sh failed; diagnostics in {env['ARTIFACTS']}"
