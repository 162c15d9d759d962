"""Splits take whole shards (the reference's rule); when that cannot give the ratio asked for, the run
says so on stdout, in the summary and in metadata.json ``warnings``; small inputs get fewer shards."""

from __future__ import annotations

import json
from pathlib import Path

from prep.chat_strategies import chat
from prep.pipeline_support import run_cli, write_config
from sft_prep.sharding import effective_num_shards


def _meta(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "out" / "metadata.json").read_text())


def test_valid_ratio_with_two_shards_warns_that_there_is_no_valid_split(tmp_path: Path) -> None:
    code, out = run_cli("--config", str(write_config(tmp_path, num_shards=2, valid_ratio=0.1)))
    meta = _meta(tmp_path)
    assert code == 0 and meta["splits"]["valid"]["shards"] == 0
    [warning] = meta["warnings"]
    assert warning.startswith("valid_ratio 0.1 gives no valid split") and "raise num_shards" in warning
    assert out.count(f"WARNING: {warning}") == 2, "said when planned and again in the summary"


def test_a_ratio_far_from_what_whole_shards_give_is_warned(tmp_path: Path) -> None:
    code, _ = run_cli("--config", str(write_config(tmp_path, num_shards=8, valid_ratio=0.01)))
    meta = _meta(tmp_path)
    assert code == 0 and meta["num_shards"] == 8 and meta["splits"]["valid"]["shards"] == 1
    assert any(w.startswith("valid_ratio 0.01 gives 1 of 8 shards (12%)") for w in meta["warnings"])
    assert any(w.startswith("valid holds ") and "asked 1.0%" in w for w in meta["warnings"])


def test_a_split_close_to_the_ratio_is_quiet(tmp_path: Path) -> None:
    code, _ = run_cli("--config", str(write_config(tmp_path, num_shards=8, valid_ratio=0.125)))
    meta = _meta(tmp_path)
    assert code == 0 and meta["splits"]["valid"]["shards"] == 1
    assert [w for w in meta["warnings"] if w.startswith("valid_ratio")] == []


def test_twenty_rows_are_not_spread_over_eight_shards(tmp_path: Path) -> None:
    rows = [chat(("user", f"question {i} " * 20), ("assistant", f"answer {i} " * 30)) for i in range(20)]
    (tmp_path / "few.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    fields = {"datasets": [{"name": "few", "path": str(tmp_path / "few.jsonl")}], "num_shards": 8}
    code, _ = run_cli("--config", str(write_config(tmp_path, **fields)))
    meta = _meta(tmp_path)
    assert code == 0 and meta["num_shards"] == 1 and meta["num_shards_requested"] == 8
    assert meta["totals"]["bins"] <= meta["lower_bound_bins"] + 1 < 8, "not one mostly empty bin per shard"
    assert any(w.startswith("num_shards 8 lowered to 1") for w in meta["warnings"])


def test_effective_num_shards() -> None:
    mib = 2**20
    assert effective_num_shards(100 * mib, 8, 1, 4096, None) == 8
    assert effective_num_shards(300_000, 8, 1, 4096, None) == 3  # 128 KiB a shard
    assert effective_num_shards(10_000, 8, 3, 4096, None) == 3  # one per dataset at least
    assert effective_num_shards(10_000, 8, 1, 4096, 50) == 8  # sample: sizes say nothing
    assert effective_num_shards(0, 8, 1, 4096, None) == 8  # hub datasets: size unknown
