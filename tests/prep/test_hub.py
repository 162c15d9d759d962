"""``hf://`` datasets: the ``datasets`` package ships with the prep extra and image, and streams rows.

The hub is not reachable here, so ``datasets.load_dataset`` is pointed at a local JSON file through
the library's own ``json`` builder: the rows still come from a real streaming ``IterableDataset``.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

from prep.chat_strategies import chat
from prep.pipeline_support import run_cli, write_config

REPO = Path(__file__).resolve().parents[2]


def test_the_prep_extra_and_the_prep_image_ship_datasets() -> None:
    extra = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["prep"]
    assert any(req.split(">")[0].split("=")[0].strip() == "datasets" for req in extra), extra
    pins = (REPO / "images" / "prep" / "requirements.txt").read_text().splitlines()
    assert any(line.startswith("datasets==") for line in pins)


def test_an_hf_dataset_streams_through_the_datasets_library(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    datasets = pytest.importorskip("datasets")
    rows = [chat(("user", f"q{i}"), ("assistant", f"a{i}")) for i in range(12)]
    local = tmp_path / "train.jsonl"
    local.write_text("".join(json.dumps(r) + "\n" for r in rows))
    seen: list[tuple[Any, ...]] = []
    real = datasets.load_dataset

    def load_dataset(repo: str, subset: Any = None, **kwargs: Any) -> Any:
        seen.append((repo, subset, kwargs.get("split"), kwargs.get("streaming")))
        return real("json", data_files={"train": str(local)}, **kwargs)

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    config = write_config(tmp_path, datasets=[{"name": "hub", "path": "hf://org/chats"}], num_shards=2)
    code, _ = run_cli("--config", str(config))
    meta = json.loads((tmp_path / "out" / "metadata.json").read_text())
    assert code == 0 and meta["totals"]["rows"] == 12 and meta["dropped"] == {}
    assert seen and all(s == ("org/chats", None, "train", True) for s in seen)
