"""Reasoning written inline (``<think>…</think>`` at the start of the assistant content, the export
format of reasoning models) trains exactly as the same rows written with ``reasoning_content`` — the
field the reference nano3 template renders (NVIDIA-NeMo/Nemotron data_prep/templates/nano3.jinja:
``<think>\\n{reasoning}\\n</think>\\n{content}``) — through ``sft-prep`` as a user runs it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from prep.pipeline_support import CHATS, read_rows, run_cli, write_config
from sft_prep.chat import parse_conversation, split_inline_reasoning
from sft_prep.chunking import split_generic
from sft_prep.nano3_fast import split_nano3
from sft_prep.template import load_template


def _reasoning_rows() -> list[dict[str, Any]]:
    """The bundled rows with ``reasoning_content`` (blank ones included) and the tool rows."""
    rows = []
    for line in CHATS.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if row.get("source") in ("generated:reasoning", "generated:tools"):
            rows.append(row)
    return rows


def _inline(row: dict[str, Any]) -> dict[str, Any]:
    """The same row as an exporter writes it: the reasoning inside the content, no reasoning field."""
    messages = []
    for msg in row["messages"]:
        msg = dict(msg)
        reasoning = msg.pop("reasoning_content", None)
        if msg["role"] == "assistant" and reasoning is not None:
            content = msg.get("content")
            if isinstance(content, list):
                content = "".join(part["text"] for part in content)
            msg["content"] = f"<think>\n{reasoning}\n</think>\n{content or ''}"
        messages.append(msg)
    return {**row, "messages": messages}


def _prep(tmp_path: Path, name: str, rows: list[dict[str, Any]]) -> tuple[dict[str, Any], list[dict]]:
    data = tmp_path / f"{name}.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    config = write_config(
        tmp_path,
        f"{name}.yaml",
        datasets=[{"name": name, "path": str(data)}],
        num_shards=1,
        output_dir=str(tmp_path / name),
    )
    code, _ = run_cli("--config", str(config))
    assert code == 0
    meta = json.loads((tmp_path / name / "metadata.json").read_text())
    shards = sorted((tmp_path / name / "splits" / "train").glob("*.parquet"))
    return meta, [r for shard in shards for r in read_rows(shard)]


def test_inline_think_rows_give_the_same_tokens_and_mask_as_reasoning_content(tmp_path: Path) -> None:
    rows = _reasoning_rows()
    inline = [_inline(r) for r in rows]
    assert sum("<think>" in json.dumps(r) for r in inline) >= 100  # the test really exercises inline rows
    golden_meta, golden = _prep(tmp_path, "field", rows)
    meta, got = _prep(tmp_path, "inline", inline)
    assert meta["totals"]["rows_dropped"] == golden_meta["totals"]["rows_dropped"] == 0, meta["dropped"]
    assert meta["totals"]["sequences"] == golden_meta["totals"]["sequences"]
    assert [r["input_ids"] for r in got] == [r["input_ids"] for r in golden]
    assert [r["loss_mask"] for r in got] == [r["loss_mask"] for r in golden]
    assert [r["seq_start_id"] for r in got] == [r["seq_start_id"] for r in golden]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("<think>\nR\n</think>\nA", ("R", "A")),
        ("<think>R</think>A", ("R", "A")),
        ("  <think>\nline 1\n\nline 2\n</think>\n\nA", ("line 1\n\nline 2", "A")),
        ("<think></think>A", ("", "A")),
        ("<think>\n  \n</think>\nA", ("  ", "A")),
        ("A <think>R</think> B", (None, "A <think>R</think> B")),  # not leading: not reasoning
        ("<think>unclosed", (None, "<think>unclosed")),
    ],
)
def test_split_inline_reasoning(content: str, expected: tuple[str | None, str]) -> None:
    assert split_inline_reasoning(content) == expected


def test_an_explicit_reasoning_field_wins_over_think_tags_in_the_content() -> None:
    row = {
        "messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "<think>quoted</think>a", "reasoning_content": "real"},
        ]
    }
    msg = parse_conversation(row).messages[1]
    assert (msg.reasoning_content, msg.content) == ("real", "<think>quoted</think>a")


def test_a_mismatch_names_the_assistant_turn_not_the_user_turn_before_it(tmp_path: Path) -> None:
    """Think tags in the middle of an answer cannot be reasoning; the row is dropped as before, and
    the example names the assistant message (index 2), where the render departs from the prompt."""
    row = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": "Sure. <think>add</think> 4"},
        ]
    }
    conv = parse_conversation(row)
    for split in (lambda c: split_generic(c, load_template("nano3")), split_nano3):
        with pytest.raises(Exception, match=r"Template mismatch at message 2 \(assistant\)"):
            split(conv)
    meta, _ = _prep(
        tmp_path,
        "mid",
        [row, {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}],
    )
    assert meta["dropped"] == {"template_mismatch": 1}
    assert any("message 2 (assistant)" in json.dumps(e) for e in meta["examples"]["template_mismatch"])
