"""Sequences that share text reuse its ids and still get exactly the per-chunk (reference) ids and mask.

Two kinds of reuse (``sft_prep.sequence_encode``): a reasoning row's later sequences take the history
they share with the row's longest one (a chunk cut before a control token), and a first chunk repeated
in a batch (a system prompt with tool definitions) is encoded once. Each test compares with
``joint=False``, which encodes every chunk on its own, and checks that the reuse really happened.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sft_prep.chat import RowError, parse_conversation
from sft_prep.nano3_fast import split_nano3
from sft_prep.process import RowProcessor
from sft_prep.sequence_encode import (
    MIN_SHARED_CHARS,
    EncodedSequences,
    SeqChunks,
    _common_prefix,
    encode_sequences,
    safe_markers,
    seq_chunks,
)
from sft_prep.template import ChatTemplate
from sft_prep.tokenizer import Tokenizer

MARKERS = ("<|im_start|>", "<|im_end|>")
LONG = "Background that is long enough to be worth sharing between the sequences of a row. "
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _rows(convs: list[dict[str, Any]]) -> list[list[SeqChunks]]:
    rows = []
    for row in convs:
        try:
            seqs = split_nano3(parse_conversation(row))
        except RowError:  # e.g. a template mismatch from a stray <think>: not this module's concern
            continue
        rows.append([seq_chunks(s) for s in seqs])
    return rows


def _same_as_reference(tokenizer: Tokenizer, rows: list[list[SeqChunks]]) -> EncodedSequences:
    got = encode_sequences(tokenizer, rows, markers=MARKERS)
    want = encode_sequences(tokenizer, rows, joint=False)
    assert got.lengths.tolist() == want.lengths.tolist()
    assert got.ids.tolist() == want.ids.tolist()
    assert got.mask.tolist() == want.mask.tolist()
    assert sum(got.outcomes.values()) == sum(len(r) for r in rows)  # every sequence reported once
    return got


def _reasoning_row(turns: int, reasoning: str = "Let me think about it.") -> dict[str, Any]:
    messages: list[dict[str, Any]] = [{"role": "system", "content": LONG}]
    for t in range(turns):
        messages.append({"role": "user", "content": f"Question {t}: {LONG}"})
        messages.append({"role": "assistant", "content": f"Answer {t}.", "reasoning_content": reasoning})
    return {"messages": messages}


@pytest.mark.parametrize("tokenizer", ["sample", "qwen"], indirect=True)
def test_reasoning_rows_share_their_history(tokenizer: Tokenizer) -> None:
    rows = _rows([_reasoning_row(4), _reasoning_row(2)])
    got = _same_as_reference(tokenizer, rows)
    # All but the longest sequence of each row; and the second row's system chunk repeats the first's.
    assert got.reused_sequences == 3 + 2
    # Sequence k of 4 repeats turns 0..k-1 as context: far more tokens are reused than encoded twice.
    assert got.reused_tokens > 0.4 * int(got.lengths.sum())
    assert got.outcomes == {"joint": 6}


@pytest.mark.parametrize("tokenizer", ["sample", "qwen"], indirect=True)
def test_a_repeated_first_chunk_is_encoded_once_per_batch(tokenizer: Tokenizer) -> None:
    tools = [{"type": "function", "function": {"name": "lookup", "description": LONG, "parameters": {}}}]
    row = {
        "tools": tools,
        "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}],
    }
    rows = _rows([row, row, row])
    got = _same_as_reference(tokenizer, rows)
    system_tokens = len(tokenizer.encode_many([rows[0][0][0][0]])[0])
    assert got.reused_sequences == 2 and got.reused_tokens == 2 * system_tokens


def test_a_borrowed_chunk_takes_its_mask_from_the_borrower(sample_tokenizer: Tokenizer) -> None:
    """Ids depend on the text only; whether a chunk is trained is the borrowing sequence's own."""
    text = "x" * MIN_SHARED_CHARS
    rows: list[list[SeqChunks]] = [[([text, " one"], [False, True])], [([text, " two"], [True, True])]]
    got = _same_as_reference(sample_tokenizer, rows)
    assert got.reused_sequences == 1
    first, second = np.split(got.mask, [int(got.lengths[0])])
    assert not first[: len(first) // 2].any() and second.all()


def test_a_cut_the_encoding_cannot_prove_makes_the_row_encode_again(sample_tokenizer: Tokenizer) -> None:
    """ "a  " + "5" tokenizes differently together and apart: the reference (longest) sequence falls
    back to per-chunk encoding, so its row is encoded again without sharing and nothing rests on the
    cut before its second ``<|im_start|>``."""
    head = "<|im_start|>system\n" + LONG + "<|im_end|>\n"
    turn = "<|im_start|>user\nq<|im_end|>\n"
    prompt = "<|im_start|>assistant\n<think></think>"
    longest: SeqChunks = ([head, turn + "a  ", "5" + turn + prompt, "yes<|im_end|>\n"],
                          [False, False, False, True])  # fmt: skip
    shorter: SeqChunks = ([head, turn + prompt, "no<|im_end|>\n"], [False, False, True])
    got = _same_as_reference(sample_tokenizer, [[shorter, longest]])
    assert got.reused_sequences == 0 and got.reused_tokens == 0
    assert got.outcomes["fallback_unproven_boundary"] == 1
    # Without markers nothing is cut; the repeated system chunk is still encoded once.
    no_cuts = encode_sequences(sample_tokenizer, [[shorter, longest]], markers=())
    assert no_cuts.reused_sequences == 1 and no_cuts.ids.tolist() == got.ids.tolist()


def test_a_trained_head_is_never_shared(sample_tokenizer: Tokenizer) -> None:
    """Without reasoning, an earlier assistant turn is the same text in both sequences but trained in
    one and context in the other; the cut stays before it."""
    row = {
        "messages": [
            {"role": "user", "content": LONG},
            {"role": "assistant", "content": "plain answer " + LONG},
            {"role": "user", "content": "and?"},
            {"role": "assistant", "content": "done", "reasoning_content": "think"},
        ]
    }
    got = _same_as_reference(sample_tokenizer, _rows([row]))
    assert got.reused_sequences == 1


def test_non_ascii_rows_share_only_without_a_normalizer(
    sample_tokenizer: Tokenizer, qwen_tokenizer: Tokenizer
) -> None:
    """NFC is the identity on ASCII only, so the bundled tokenizer (NFC) shares ASCII rows only; the
    Qwen tokenizer (no normalizer) shares every row."""
    rows = _rows([_reasoning_row(3, reasoning="Überlegung: ü é 🙂")])
    nfc, _ = sample_tokenizer.joint_plan
    plain, _ = qwen_tokenizer.joint_plan
    assert nfc is not None and nfc.ascii_only and plain is not None and not plain.ascii_only
    system = rows[0][0][0][0]  # the first chunk, repeated in every sequence: always reused
    nfc_system = len(sample_tokenizer.encode_many([system])[0])
    assert _same_as_reference(sample_tokenizer, rows).reused_tokens == 2 * nfc_system
    qwen_system = len(qwen_tokenizer.encode_many([system])[0])
    assert _same_as_reference(qwen_tokenizer, rows).reused_tokens > 3 * qwen_system  # and the history


def test_markers_inside_another_added_token_are_not_used() -> None:
    assert safe_markers(MARKERS, ("<|im_start|>", "<|im_end|>", "<|endoftext|>")) == MARKERS
    assert safe_markers(MARKERS, ("<|im_start|>", "<|im_end|>", "x<|im_end|>")) == ("<|im_start|>",)


@given(st.text("ab<", max_size=40), st.text("ab<", max_size=40))
def test_common_prefix(a: str, b: str) -> None:
    expected = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    assert _common_prefix(a, b) == expected


words = st.sampled_from(["Hello", " world", "5", "  ", "\n", "ü", "<think>", "a  ", "!"])
long_text = st.lists(words, min_size=0, max_size=30).map(lambda w: LONG + "".join(w))


@st.composite
def reasoning_batches(draw: st.DrawFn) -> list[dict[str, Any]]:
    systems = [LONG, LONG + " Be brief.", ""]
    rows = []
    for _ in range(draw(st.integers(1, 4))):
        msgs: list[dict[str, Any]] = []
        system = draw(st.sampled_from(systems))
        if system:
            msgs.append({"role": "system", "content": system})
        for _ in range(draw(st.integers(1, 4))):
            msgs.append({"role": "user", "content": draw(long_text)})
            reply: dict[str, Any] = {"role": "assistant", "content": draw(long_text)}
            if draw(st.booleans()):
                reply["reasoning_content"] = draw(long_text)
            msgs.append(reply)
        rows.append({"messages": msgs})
    return rows


@pytest.mark.parametrize("tokenizer", ["sample", "qwen"], indirect=True)
@SETTINGS
@given(reasoning_batches())
def test_sharing_equals_the_reference(tokenizer: Tokenizer, batch: list[dict[str, Any]]) -> None:
    _same_as_reference(tokenizer, _rows(batch))


def test_the_processor_reports_reuse_and_keeps_the_reference_output(
    sample_tokenizer: Tokenizer, nano3: ChatTemplate
) -> None:
    rows = [("d", i, row) for i, row in enumerate([_reasoning_row(3), _reasoning_row(3)])]
    shared = RowProcessor(sample_tokenizer, nano3, 1 << 16).process(rows)
    reference = RowProcessor(sample_tokenizer, nano3, 1 << 16, joint=False).process(rows)
    assert shared.ids.tolist() == reference.ids.tolist() and shared.mask.tolist() == reference.mask.tolist()
    assert shared.counts.reused["sequences"] == 2 + 3  # 2 per row by history, 1 by its system chunk
    assert shared.counts.reused["tokens"] > 0 and not reference.counts.reused
