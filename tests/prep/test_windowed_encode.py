"""A long text encoded in windows gives exactly the ids of the whole text (issue 13: one 10 MB row
took 1.6 GB, the tokenizer's ~100 bytes per character while it encodes).

The windows are cut only before a single space between two letters or numbers
(``tokenizer.window_cuts``); the texts here are built to break any looser rule: runs of spaces, a
space before digits or punctuation, contractions, NFC pairs, multi-byte and non-Latin letters,
control-token text written literally. Checked on the bundled sample BPE (NFC normalizer) and on the
real 151k Qwen vocabulary, with the window sizes shrunk so that every text is cut many times.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sft_prep.tokenizer as tokenizer_module
from prep.chat_strategies import chat_rows, realistic_rows
from prep.pipeline_support import edited_tokenizer
from sft_prep.process import RowProcessor
from sft_prep.template import ChatTemplate
from sft_prep.tokenizer import Tokenizer, flatten, window_cuts

_PIECES = [
    " ", "  ", "   ", "\n", " \n", "\t", "a", "Hello", " world", "it", "'s", "'S", "5", "42", "²", "Ⅻ",
    "ü", "e\u0301", "\u0301", "Привет", "мир", "αβγ", "שלום", "数字", "🙂", "!!", ".", "_", "\r\n",
    "中文", "。", "、", "「", "」", "！", "：", "＿", "々", "〇", "ｱ", "한국어",
    "\u3000", "の", "，", "在", "请",
    "<|im_end|>", "<|im_start|>", "<think>", "<|im_", "end|>",
]  # fmt: skip
texts = st.lists(st.sampled_from(_PIECES), min_size=1, max_size=60).map("".join)
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def small_windows() -> Any:
    """Every text over 8 characters is cut about every 3 characters, at most 10 per tokenizer call."""
    return mock.patch.multiple(tokenizer_module, LONG_TEXT_CHARS=8, WINDOW_CHARS=3, WINDOW_BATCH_CHARS=10)


def _whole(tokenizer: Tokenizer, batch: list[str]) -> tuple[list[int], list[int]]:
    flat, lengths = flatten(tokenizer.encode_many(batch))
    return flat.tolist(), lengths.tolist()


@pytest.mark.parametrize("tokenizer", ["sample", "qwen"], indirect=True)
@SETTINGS
@given(st.lists(texts, min_size=1, max_size=4))
def test_windowed_encoding_equals_the_whole_text(tokenizer: Tokenizer, batch: list[str]) -> None:
    assert tokenizer.joint_plan[0] is not None and tokenizer.joint_plan[0].window_cuts
    with small_windows():
        flat, lengths = tokenizer.encode_flat(batch)
    assert flat.dtype == np.int32 and lengths.dtype == np.int64
    assert (flat.tolist(), lengths.tolist()) == _whole(tokenizer, batch)


def test_the_cuts_are_where_the_rule_says() -> None:
    text = "one two  three 42 ²x Привет мир, a .b it's 数字 数"
    assert [text[p - 1 : p + 2] for p in window_cuts(text, 1)] == ["e t", "e 4", "2 ²", "x П", "т м", "b i"]


@pytest.mark.parametrize("tokenizer", ["sample", "qwen"], indirect=True)
def test_a_looser_cut_would_change_the_ids(tokenizer: Tokenizer) -> None:
    """Why not before just any space: inside a run of spaces the pre-tokens change ("x  \n" is x,
    "  \n" whole but x, " " | " \n" cut there), so windows cut that way differ from the whole text."""
    text = "x  \n" * 10
    assert window_cuts(text, 1) == []
    with small_windows(), mock.patch.object(tokenizer_module, "_WINDOW_CUT", re.compile("(?<= ) ")):
        assert tokenizer.encode_flat([text])[0].tolist() != tokenizer.encode_many([text])[0]


def test_cutting_after_cjk_punctuation_would_change_the_ids(qwen_tokenizer: Tokenizer) -> None:
    """CJK text is cut before its punctuation, never after: there the mark leads the next word's
    pre-token, and Qwen has tokens such as "，在" that would be lost."""
    text = "中文，在" * 10
    assert [text[p] for p in window_cuts(text, 1)] == ["，"] * 10
    with small_windows(), mock.patch.object(tokenizer_module, "_WINDOW_CUT", re.compile("(?<=，)")):
        assert qwen_tokenizer.encode_flat([text])[0].tolist() != qwen_tokenizer.encode_many([text])[0]


def test_long_texts_are_really_cut(sample_tokenizer: Tokenizer, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []
    encode = sample_tokenizer.backend.encode_many
    monkeypatch.setattr(sample_tokenizer.backend, "encode_many", lambda b: calls.append(b) or encode(b))
    text = " ".join(["alpha", "beta", "gamma"] * 40_000)  # ~600k characters
    _, lengths = sample_tokenizer.encode_flat(["short one", text, "x"])
    assert lengths.tolist() == [len(ids) for ids in encode(["short one", text, "x"])]
    assert calls[0] == ["short one", "", "x"]  # the long text is left out of the batch call
    windows = [w for call in calls[1:] for w in call]
    assert "".join(windows) == text and max(map(len, windows)) < tokenizer_module.WINDOW_CHARS + 10
    assert all(sum(map(len, call)) <= tokenizer_module.WINDOW_BATCH_CHARS for call in calls[1:])


def _spaced_added_token(spec: dict[str, Any]) -> None:
    spec["added_tokens"].append({**spec["added_tokens"][-1], "id": 3100, "content": "b c"})


def _other_regex(spec: dict[str, Any]) -> None:
    spec["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = r"\s+|\S+"


@pytest.mark.parametrize("edit", [_spaced_added_token, _other_regex])
def test_no_windows_where_the_cut_is_not_proven(
    tmp_path: Path, sample_tokenizer_dir: Path, edit: Any
) -> None:
    """An added token with a space could span the cut; an unknown regex may join across it."""
    tok = edited_tokenizer(tmp_path, sample_tokenizer_dir, edit)
    plan, _ = tok.joint_plan
    assert plan is not None and not plan.window_cuts
    batch = ["ab c d " * 5, "x"]
    with small_windows():
        flat, lengths = tok.encode_flat(batch)
    assert (flat.tolist(), lengths.tolist()) == _whole(tok, batch)


@pytest.mark.parametrize("tokenizer", ["sample", "qwen"], indirect=True)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(chat_rows() | realistic_rows(), min_size=1, max_size=4))
def test_rows_give_the_same_sequences_with_windows(
    tokenizer: Tokenizer, nano3: ChatTemplate, rows: list[dict[str, Any]]
) -> None:
    batch = [("d", i, row) for i, row in enumerate(rows)]
    plain = RowProcessor(tokenizer, nano3, 4096).process(batch)
    with small_windows():
        windowed = RowProcessor(tokenizer, nano3, 4096).process(batch)
    assert windowed.ids.tolist() == plain.ids.tolist() and windowed.mask.tolist() == plain.mask.tolist()
    assert windowed.lengths.tolist() == plain.lengths.tolist()
