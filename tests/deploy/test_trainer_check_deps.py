"""images/trainer/check_deps.py: the guard that replaces pip's resolver in the NeMo-based image."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "images" / "trainer" / "check_deps.py"


@pytest.fixture(scope="module")
def check_deps() -> ModuleType:
    spec = importlib.util.spec_from_file_location("trainer_check_deps", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_dev_environment_satisfies_the_train_extra(check_deps: ModuleType) -> None:
    assert check_deps.problems(["train"], ["torch"]) == []


def test_requirements_include_base_and_extra_but_not_other_extras(check_deps: ModuleType) -> None:
    names = {req.name for req in check_deps.requirements_for(["train"])}
    assert {"pydantic", "pyyaml", "torch", "peft"} <= {n.lower() for n in names}
    assert "kopf" not in {n.lower() for n in names}


def test_unknown_extra_and_missing_module_are_reported(check_deps: ModuleType) -> None:
    found = check_deps.problems(["train", "gpu-magic"], ["megatron_bridge_not_here.sub"])
    assert any("no extra 'gpu-magic'" in p for p in found)
    assert any("megatron_bridge_not_here.sub is not importable" in p for p in found)


def test_unsatisfied_version_is_reported(check_deps: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    real_version = check_deps.metadata.version

    def fake_version(name: str) -> str:
        return "4.0.0" if name.lower() == "transformers" else real_version(name)

    monkeypatch.setattr(check_deps.metadata, "version", fake_version)
    found = check_deps.problems(["train"], [])
    assert any(p.startswith("transformers 4.0.0 does not satisfy transformers>=") for p in found), found


def test_missing_pins_lists_only_absent_distributions(check_deps: ModuleType) -> None:
    lines = [
        "# comment",
        "",
        "boto3==0.0.1  # installed here, so never re-pinned",
        "surely-absent-dist-q==1.2",
    ]
    assert check_deps.missing_pins(lines) == ["surely-absent-dist-q==1.2"]


def test_cli_exit_codes() -> None:
    ok = subprocess.run([sys.executable, str(SCRIPT), "train"], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run(
        [sys.executable, str(SCRIPT), "train", "--module", "no_such_module_xyz"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 1
    assert "module no_such_module_xyz is not importable" in bad.stderr
    assert "images/trainer/requirements.txt" in bad.stderr


def test_missing_from_prints_nothing_when_the_base_has_everything(tmp_path: Path) -> None:
    """The Dockerfile skips the extra pip install when the output file is empty (`[ -s file ]`)."""
    pins = tmp_path / "requirements.txt"
    pins.write_text("# all installed here\npyyaml==1.0\n")
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--missing-from", str(pins)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0 and proc.stdout == ""
    pins.write_text("surely-absent-dist-q==1.2\n")
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--missing-from", str(pins)], capture_output=True, text=True, timeout=60
    )
    assert proc.stdout == "surely-absent-dist-q==1.2\n"
