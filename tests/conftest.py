"""Suite-wide settings: tests never write a real termination log or patch a real API server."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    for var in list(__import__("os").environ):
        if var.startswith("SFT_OWNER_") or var.startswith("WANDB_"):
            monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("SFT_TERMINATION_LOG", str(tmp_path_factory.mktemp("term") / "termination-log"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
