"""Whole-sequence encoding cut at chunk boundaries gives exactly the per-chunk (reference) token ids.

Checked on both the bundled 3k sample BPE (NFC normalizer: the ASCII-only rule) and the real 151k Qwen
vocabulary, for random chunk lists over an alphabet built to break naive cutting (runs of spaces and
newlines at boundaries, digits after spaces, words split mid-way, multi-byte characters, special-token
text written literally), and end to end through ``RowProcessor`` on random conversations.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prep.chat_strategies import chat, chat_rows, realistic_rows
from prep.pipeline_support import edited_tokenizer
from sft_prep.joint_encode import FALLBACK_REASONS, encode_chunks, encode_per_chunk
from sft_prep.process import Counts, RowProcessor
from sft_prep.template import ChatTemplate
from sft_prep.tokenizer import Tokenizer

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_PIECES = [
    " ", "  ", "\n", "\n\n", "\t", " \n", "a", "ab", "Hello", " world", "5", "42", "ü", "数字", "🙂",
    "<|im_end|>", "<|im_start|>", "<think>", "</think>", "<tool_call>", "<|im_", "end|>", "'s", "!!", "\r\n",
]  # fmt: skip
chunk_text = st.lists(st.sampled_from(_PIECES), min_size=1, max_size=5).map("".join)
chunk_lists = st.lists(st.lists(chunk_text, min_size=1, max_size=5), min_size=1, max_size=6)


def _assert_same_as_per_chunk(tokenizer: Tokenizer, sequences: list[list[str]]) -> dict[str, int]:
    got = encode_chunks(tokenizer, sequences)
    ids, lengths = encode_per_chunk(tokenizer, [c for s in sequences for c in s])
    assert got.ids.dtype == np.int32 and got.chunk_lengths.dtype == np.int64
    assert got.ids.tolist() == ids.tolist()
    assert got.chunk_lengths.tolist() == lengths.tolist()
    assert sum(got.stats.values()) == len(sequences)
    return dict(got.stats)


@pytest.mark.parametrize("tokenizer", ["sample", "qwen"], indirect=True)
@SETTINGS
@given(chunk_lists)
def test_random_chunk_lists_encode_like_per_chunk(tokenizer: Tokenizer, sequences: list[list[str]]) -> None:
    stats = _assert_same_as_per_chunk(tokenizer, sequences)
    assert {k.removeprefix("fallback_") for k in stats} <= {"joint", *FALLBACK_REASONS}


@pytest.mark.parametrize(
    ("chunks", "outcome"),
    [
        # A token start that is not a segment boundary: "a  " alone is a, "  " but a, " ", " " jointly.
        (["a  ", "5"], "fallback_unproven_boundary"),
        (["x\n\n", "\nb"], "fallback_straddle"),  # "\n\n\n" is one token jointly
        (["<think>\n", " y"], "fallback_unproven_boundary"),  # whitespace after the lone "\n"
        (["<|im_start|>assistant\n<think>\n", "Let me think."], "joint"),  # the newline rule
        (["<|im_end|>\n", "<|im_start|>user\nhi"], "joint"),
        (["<|im_start|>assistant\n<think></think>", "  lead"], "joint"),  # after an added token
        (["tail mid-wo", "rd<|im_end|>\n"], "fallback_straddle"),
    ],
)
def test_adversarial_boundaries(qwen_tokenizer: Tokenizer, chunks: list[str], outcome: str) -> None:
    assert _assert_same_as_per_chunk(qwen_tokenizer, [chunks]) == {outcome: 1}


def test_naive_token_start_cutting_would_be_wrong(qwen_tokenizer: Tokenizer) -> None:
    """Why rule 2/3 exist: the joint ids of "a  5" cut at the token start before "5" differ from per-chunk."""
    joint = qwen_tokenizer.encode_many(["a  5"])[0]
    per_chunk = qwen_tokenizer.encode_many(["a  ", "5"])
    assert joint[-1] == per_chunk[1][0] and joint[:-1] != per_chunk[0]


def test_mixed_batch_keeps_order_and_counts_fallbacks(qwen_tokenizer: Tokenizer) -> None:
    sequences = [["<|im_end|>\n", "ok"], ["a  ", "5"], [], ["solo"], ["x\n\n", "\nb"], ["<|im_end|>\n", "z"]]
    stats = _assert_same_as_per_chunk(qwen_tokenizer, sequences)
    assert stats == {"joint": 4, "fallback_unproven_boundary": 1, "fallback_straddle": 1}


def test_nfc_tokenizer_encodes_non_ascii_sequences_per_chunk(sample_tokenizer: Tokenizer) -> None:
    # "e" + combining acute composes to "é" only when the chunks are joined.
    sequences = [["cafe", "\u0301!"], ["<|im_end|>\n", "<|im_start|>x"]]
    stats = _assert_same_as_per_chunk(sample_tokenizer, sequences)
    assert stats == {"fallback_non_ascii": 1, "joint": 1}


def _prefix_space(spec: dict[str, Any]) -> None:
    spec["pre_tokenizer"]["pretokenizers"][1]["add_prefix_space"] = True


def _lstrip(spec: dict[str, Any]) -> None:
    spec["added_tokens"][2]["lstrip"] = True


def _lowercase(spec: dict[str, Any]) -> None:
    spec["normalizer"] = {"type": "Lowercase"}


@pytest.mark.parametrize(
    ("edit", "why"),
    [
        (_prefix_space, "pre-tokenizer"),
        (_lstrip, "added token strips"),
        (_lowercase, "normalizer Lowercase"),
    ],
)
def test_unsafe_tokenizers_encode_every_chunk_on_its_own(
    tmp_path: Path, sample_tokenizer_dir: Path, edit: Any, why: str
) -> None:
    tok = edited_tokenizer(tmp_path, sample_tokenizer_dir, edit)
    plan, reason = tok.joint_plan
    assert plan is None and why in reason
    sequences = [["Hi", " there"], ["<|im_end|>\n", "<|im_start|>x"]]
    assert _assert_same_as_per_chunk(tok, sequences) == {"fallback_tokenizer": 2}


def test_newline_rule_only_for_known_split_patterns(tmp_path: Path, sample_tokenizer_dir: Path) -> None:
    def other_regex(spec: dict[str, Any]) -> None:
        spec["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = r"\s+|\S+"

    tok = edited_tokenizer(tmp_path, sample_tokenizer_dir, other_regex)
    plan, _ = tok.joint_plan
    assert plan is not None and plan.newline_id is None
    stats = _assert_same_as_per_chunk(tok, [["<think>\n", "Let me"]])
    assert stats == {"fallback_unproven_boundary": 1}


def _both(tokenizer: Tokenizer, nano3: ChatTemplate) -> tuple[RowProcessor, RowProcessor]:
    return RowProcessor(tokenizer, nano3, 1 << 16), RowProcessor(tokenizer, nano3, 1 << 16, joint=False)


def _same_results(joint: RowProcessor, ref: RowProcessor, rows: list[dict[str, Any]]) -> None:
    batch = [("d", i, row) for i, row in enumerate(rows)]
    got, want = joint.process(batch), ref.process(batch)
    got_counts, want_counts = got.counts.to_dict(), want.counts.to_dict()
    # How the ids were computed differs (that is the point); what came out must not.
    assert want_counts.pop("encoding") == {}
    assert want_counts.pop("reused") == {}
    got_counts.pop("reused")  # how much history was shared, when the processor shares it
    encoded = want_counts["sequences"] + sum(want_counts["dropped_sequences"].values())
    assert sum(got_counts.pop("encoding").values()) == encoded  # each sequence once, kept or dropped
    assert got_counts == want_counts
    assert len(got.sequences) == len(want.sequences)
    for a, b in zip(got.sequences, want.sequences, strict=True):
        assert a.input_ids.tolist() == b.input_ids.tolist()
        assert a.loss_mask.tolist() == b.loss_mask.tolist()
        assert (a.truncated, a.row_index) == (b.truncated, b.row_index)


@pytest.mark.parametrize("tokenizer", ["sample", "qwen"], indirect=True)
@SETTINGS
@given(st.lists(chat_rows() | realistic_rows(), min_size=1, max_size=4))
def test_row_processor_joint_equals_per_chunk(
    tokenizer: Tokenizer, nano3: ChatTemplate, rows: list[dict[str, Any]]
) -> None:
    _same_results(*_both(tokenizer, nano3), rows)


def test_adversarial_conversations(qwen_tokenizer: Tokenizer, nano3: ChatTemplate) -> None:
    rows = [
        chat(("user", "  leading spaces"), ("assistant", "\n\nleading newlines")),
        chat(("user", "ends mid-wo"), ("assistant", "rd and more")),
        chat(("user", "literal <|im_end|> inside"), ("assistant", "<|im_start|>fake\n<|im_end|>")),
        chat(("user", "数字 🙂"), ("assistant", "ü é 🙂")),
        {
            "messages": [
                {"role": "user", "content": "q1"},
                {"role": "assistant", "content": "a1", "reasoning_content": " starts with a space"},
                {"role": "user", "content": "q2"},
                {"role": "assistant", "content": "a2", "reasoning_content": "\nstarts with a newline"},
                {"role": "user", "content": "q3"},
                {"role": "assistant", "content": "a3", "reasoning_content": "Plain start."},
            ]
        },
    ]
    joint, ref = _both(qwen_tokenizer, nano3)
    _same_results(joint, ref, rows)
    assert joint.describe()["encoding"] == {"strategy": "joint", "why": "byte-level BPE"}
    assert ref.describe()["encoding"] == {"strategy": "per-chunk", "why": "disabled"}
    # The numbers travel in the batch's counts (receipts → metadata.json), also across merges.
    counts = joint.process([("d", i, row) for i, row in enumerate(rows)]).counts
    assert counts.encoding["joint"] > 0
    assert sum(counts.encoding.values()) == 7  # 4 single-sequence rows + 3 user turns
    restored = Counts.from_dict(json.loads(json.dumps(counts.to_dict())))
    restored.merge(counts)
    assert restored.encoding == Counter({k: 2 * v for k, v in counts.encoding.items()})
    assert ref.process([("d", 0, rows[0])]).counts.encoding == Counter(), "per-chunk: nothing to report"


def test_added_tokens_that_the_model_can_produce_prove_nothing(
    tmp_path: Path, sample_tokenizer_dir: Path
) -> None:
    """An added token that is also a BPE merge result may come from ordinary text, not from extraction."""
    spec = json.loads((sample_tokenizer_dir / "tokenizer.json").read_text(encoding="utf-8"))
    merges = spec["model"]["merges"]
    first = merges[0] if isinstance(merges[0], str) else " ".join(merges[0])
    merged = first.replace(" ", "")
    merged_id = spec["model"]["vocab"][merged]

    def add_merged(s: dict[str, Any]) -> None:
        s["added_tokens"].append(
            {"id": merged_id, "content": merged, "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": False}
        )  # fmt: skip

    tok = edited_tokenizer(tmp_path, sample_tokenizer_dir, add_merged)
    plan, _ = tok.joint_plan
    assert plan is not None and not plan.added[merged_id]
    assert plan.added[tok.check_chat_tokens()["<|im_end|>"]]
