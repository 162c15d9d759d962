"""The console scripts: ``sftctl`` and the kubectl plugin ``kubectl-sft`` (kubectl runs any
``kubectl-<name>`` executable on the PATH as ``kubectl <name>``)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from sft_operator.ctl import main as ctl_main

REPO = Path(__file__).resolve().parents[2]


def test_both_scripts_are_installed_and_point_at_the_cli() -> None:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["sftctl"] == "sft_operator.ctl.main:main"
    assert scripts["kubectl-sft"] == "sft_operator.ctl.main:kubectl_plugin"


def test_the_plugin_names_itself_as_kubectl_shows_it(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.argv", ["kubectl-sft", "--help"])
    with pytest.raises(SystemExit) as exc:
        ctl_main.kubectl_plugin()
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: kubectl sft")
    for command in ("apply", "run", "get", "watch", "describe", "logs", "preview", "report"):
        assert command in out


def test_logs_takes_either_node_or_worker(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        ctl_main.main(["logs", "x", "--node", "0", "--worker", "1"])
    assert "not allowed with argument" in capsys.readouterr().err
