"""RowProcessor: the contract the pipeline relies on (dtypes, masks, counters, truncation, decode checks)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from prep.chat_strategies import chat
from sft_prep import nano3_fast
from sft_prep.chat import RowError, parse_conversation
from sft_prep.process import MAX_EXAMPLES, Counts, RowProcessor
from sft_prep.template import ChatTemplate, builtin_nano3_text


@pytest.fixture(scope="module")
def processor(sample_tokenizer, nano3) -> RowProcessor:  # type: ignore[no-untyped-def]
    return RowProcessor(sample_tokenizer, nano3, 4096)


def test_samples_counts_and_dtypes(processor: RowProcessor, sample_rows: list[Any]) -> None:
    result = processor.process(sample_rows)
    c = result.counts
    assert processor.fast and processor.describe()["chunker"] == "nano3-native"
    assert c.rows == len(sample_rows)
    assert dict(c.dropped) == {
        "bad_json": 1,
        "unknown_role": 1,
        "bad_content_type": 1,
        "no_assistant_turn": 1,
        "empty_conversation": 1,
        "missing_messages": 1,
    }
    assert c.rows_kept == c.rows - 6 == c.rows - sum(c.dropped.values())
    assert c.sequences == len(result.sequences) > c.rows_kept  # reasoning rows give one per user turn
    assert c.tokens == sum(len(s) for s in result.sequences)
    assert c.trainable_tokens == sum(int(s.loss_mask.sum()) for s in result.sequences)
    assert c.truncated == 0 and not c.dropped_sequences
    for s in result.sequences:
        assert s.input_ids.dtype == np.int32 and s.loss_mask.dtype == np.uint8
        assert s.input_ids.shape == s.loss_mask.shape and s.loss_mask.max() == 1
    assert c.examples["bad_json"][0]["dataset"] == "samples"


def test_decode_check(processor: RowProcessor, sample_rows: list[Any]) -> None:
    """Mask-1 tokens decode to exactly the assistant chunks (with <|im_end|>\\n); all tokens to the render."""
    tok = processor.tokenizer
    good = [r for r in sample_rows if not isinstance(r[2], RowError)][:200]
    result = processor.process(good)
    expected = []
    for _, _, row in good:
        try:
            expected.extend(nano3_fast.split_nano3(parse_conversation(row)))
        except RowError:
            continue
    assert len(expected) == len(result.sequences)
    for seq, chunks in zip(result.sequences, expected, strict=True):
        ids = seq.input_ids.tolist()
        assert tok.decode(ids) == "".join(c.text for c in chunks)
        trained = "".join(c.text for c in chunks if c.trainable)
        # decode runs of mask-1 tokens separately: each run is one or more whole assistant chunks
        runs, current = [], []
        for t, m in zip(ids, seq.loss_mask.tolist(), strict=True):
            if m:
                current.append(t)
            elif current:
                runs.append(current)
                current = []
        if current:
            runs.append(current)
        assert "".join(tok.decode(r) for r in runs) == trained
        assert all(tok.decode(r).endswith("<|im_end|>\n") for r in runs)


def test_mask_follows_roles_exactly(processor: RowProcessor, tiny_rows: dict[str, dict[str, Any]]) -> None:
    result = processor.process([("tiny", 0, tiny_rows["single"])])
    (seq,) = result.sequences
    tok = processor.tokenizer
    (prompt, answer) = tok.encode_many(
        [
            "<|im_start|>system\n<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think></think>",
            "Hello!<|im_end|>\n",
        ]
    )
    system, user = tok.encode_many(
        [
            "<|im_start|>system\n<|im_end|>\n",
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think></think>",
        ]
    )
    assert seq.input_ids.tolist() == system + user + answer
    assert seq.loss_mask.tolist() == [0] * (len(system) + len(user)) + [1] * len(answer)
    assert len(prompt) == len(system) + len(user)


def test_reader_errors_and_mismatches_are_counted_not_raised(processor: RowProcessor) -> None:
    mismatch = {
        "messages": [
            {"role": "user", "content": "u1"},
            {"role": "assistant", "content": "  lead", "tool_calls": [{"function": {"name": "f"}}]},
            {"role": "tool", "content": "r"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": "u2"},
            {"role": "assistant", "content": "bye"},
        ]
    }
    rows = [
        ("d", "a.jsonl:1", RowError("bad_json", "Expecting value")),
        ("d", "a.jsonl:2", mismatch),
        ("d", "a.jsonl:3", chat(("user", "q"), ("assistant", "a"))),
    ]
    result = processor.process(rows)
    assert dict(result.counts.dropped) == {"bad_json": 1, "template_mismatch": 1}
    assert result.counts.examples["template_mismatch"] == [
        {"dataset": "d", "row": "a.jsonl:2", "detail": "Template mismatch at message 1 (assistant)"}
    ]
    assert [s.row_index for s in result.sequences] == ["a.jsonl:3"]


def test_truncation_keeps_the_head_and_is_counted(sample_tokenizer, nano3) -> None:  # type: ignore[no-untyped-def]
    row = chat(("user", "Tell me a story."), ("assistant", "Once upon a time " * 40))
    full = RowProcessor(sample_tokenizer, nano3, 4096).process([("d", 0, row)]).sequences[0]
    limit = len(full) // 2
    result = RowProcessor(sample_tokenizer, nano3, limit).process([("d", 0, row)])
    (seq,) = result.sequences
    assert seq.truncated and result.counts.truncated == 1 and len(seq) == limit
    assert seq.input_ids.tolist() == full.input_ids[:limit].tolist()
    assert seq.loss_mask.tolist() == full.loss_mask[:limit].tolist()


def test_sequences_without_trainable_tokens_after_truncation_are_dropped(sample_tokenizer, nano3) -> None:  # type: ignore[no-untyped-def]
    long_user = chat(("user", "word " * 200), ("assistant", "ok"))
    result = RowProcessor(sample_tokenizer, nano3, 40).process(
        [("d", 7, long_user), ("d", 8, chat(("user", "q"), ("assistant", "a")))]
    )
    assert result.counts.dropped_sequences == {"no_trainable_tokens": 1}
    assert result.counts.dropped == {"no_trainable_tokens": 1}
    assert result.counts.examples["no_trainable_tokens"][0]["row"] == 7
    assert result.counts.rows == 2 and result.counts.rows_kept == 1
    assert result.counts.truncated == 0  # counts kept sequences only; the cut one is in dropped_sequences


def test_reasoning_rows_whose_user_turns_never_get_a_reply_are_dropped(processor: RowProcessor) -> None:
    row = {
        "messages": [
            {"role": "assistant", "content": "hi", "reasoning_content": "greet"},
            {"role": "user", "content": "q"},
        ]
    }
    result = processor.process([("d", 0, row)])
    assert result.counts.dropped == {"no_trainable_tokens": 1} and not result.sequences


def test_generic_path_gives_the_same_tokens(
    sample_tokenizer, sample_rows: list[Any], processor: RowProcessor
) -> None:  # type: ignore[no-untyped-def]
    renamed = ChatTemplate.from_text(
        "copy.jinja", builtin_nano3_text() + "\n"
    )  # same format, not the built-in
    generic = RowProcessor(sample_tokenizer, renamed, 4096)
    assert not generic.fast and generic.describe()["chunker"] == "jinja-incremental"
    rows = sample_rows[:150]
    a, b = processor.process(rows), generic.process(rows)
    assert a.counts.to_dict() == b.counts.to_dict()
    for x, y in zip(a.sequences, b.sequences, strict=True):
        assert np.array_equal(x.input_ids, y.input_ids) and np.array_equal(x.loss_mask, y.loss_mask)


def _data_counts(counts: Counts) -> dict[str, Any]:
    return {k: v for k, v in counts.to_dict().items() if k not in ("encoding", "reused")}


def test_counts_merge_and_roundtrip(processor: RowProcessor, sample_rows: list[Any]) -> None:
    whole = processor.process(sample_rows).counts
    merged = Counts()
    for start in range(0, len(sample_rows), 100):
        merged.merge(processor.process(sample_rows[start : start + 100]).counts)
    # How the work was done depends on what else is in a batch (a repeated chunk is encoded once per
    # batch); what came out does not.
    assert merged.reused["tokens"] < whole.reused["tokens"]
    assert _data_counts(merged) == _data_counts(whole)
    assert Counts.from_dict(whole.to_dict()).to_dict() == whole.to_dict()


def test_examples_are_capped_and_short(processor: RowProcessor) -> None:
    rows = [("d", i, chat(("villain" + "x" * 500, "boo"), ("assistant", "a"))) for i in range(20)]
    counts = processor.process(rows).counts
    assert counts.dropped == {"unknown_role": 20}
    assert len(counts.examples["unknown_role"]) == MAX_EXAMPLES
    assert all(len(e["detail"]) <= 200 for e in counts.examples["unknown_role"])


def test_invalid_arguments(sample_tokenizer) -> None:  # type: ignore[no-untyped-def]
    plain = ChatTemplate.from_text("plain", "{{ messages }}")
    with pytest.raises(ValueError, match="nano3 template only"):
        RowProcessor(sample_tokenizer, plain, 100, fast=True)
    with pytest.raises(ValueError, match="doc_limit"):
        RowProcessor(sample_tokenizer, plain, 1)


def test_split_chat_tokens_fail_only_for_templates_that_use_them(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tokenizers import Tokenizer as RustTokenizer
    from tokenizers import models, pre_tokenizers

    from sft_common.config import ConfigError
    from sft_prep.tokenizer import load_tokenizer

    rust = RustTokenizer(
        models.WordLevel({"<": 0, "|": 1, "im_start": 2, ">": 3, "[UNK]": 4}, unk_token="[UNK]")
    )
    rust.pre_tokenizer = pre_tokenizers.Split(pattern="|", behavior="isolated")
    rust.save(str(tmp_path / "tokenizer.json"))
    tok = load_tokenizer(str(tmp_path))
    with pytest.raises(ConfigError, match="one special token"):
        RowProcessor(tok, ChatTemplate.from_text("nano3", builtin_nano3_text()), 100)
    plain = RowProcessor(
        tok, ChatTemplate.from_text("plain", "{% for m in messages %}{{ m.content }}{% endfor %}"), 100
    )
    assert plain.chat_token_ids == {}


def test_empty_and_all_bad_batches(processor: RowProcessor) -> None:
    assert processor.process([]).counts.to_dict()["rows"] == 0
    result = processor.process([("d", 0, RowError("bad_json", "x")), ("d", 1, chat(("user", "only")))])
    assert result.sequences == [] and dict(result.counts.dropped) == {"bad_json": 1, "no_assistant_turn": 1}


def test_sequences_are_read_only_views(processor: RowProcessor, tiny_rows: dict[str, dict[str, Any]]) -> None:
    (seq,) = processor.process([("d", 0, tiny_rows["single"])]).sequences
    with pytest.raises(ValueError, match="read-only"):
        seq.loss_mask[0] = 1


@pytest.mark.parametrize("doc_limit", [4096, 60, 12])
def test_batch_arrays_are_the_kept_sequences_end_to_end(
    sample_tokenizer, nano3, sample_rows: list[Any], doc_limit: int
) -> None:  # type: ignore[no-untyped-def]
    """What the shard store takes (``ids``/``mask``/``lengths``) is exactly the sequences, also when
    truncation shortens some and drops others."""
    result = RowProcessor(sample_tokenizer, nano3, doc_limit).process(sample_rows[:120])
    seqs = result.sequences
    assert result.lengths.tolist() == [len(s) for s in seqs]
    assert result.ids.tolist() == [t for s in seqs for t in s.input_ids.tolist()]
    assert result.mask.tolist() == [m for s in seqs for m in s.loss_mask.tolist()]
    assert (result.ids.dtype, result.mask.dtype, result.lengths.dtype) == (np.int32, np.uint8, np.int64)
    if doc_limit == 60:
        assert result.counts.truncated and result.counts.dropped_sequences
    if doc_limit == 12:
        assert not seqs and len(result.ids) == 0


CHATML_WITHOUT_REASONING = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def test_fields_a_custom_template_drops_are_counted(sample_tokenizer, sample_rows: list[Any]) -> None:  # type: ignore[no-untyped-def]
    """A template that never renders reasoning_content (or tool calls) silently trains on answers
    without their reasoning: each such message is counted (metadata.json template_dropped_fields,
    which `sftctl preview` warns about); the built-in format through the same generic path counts none
    (test_generic_path_gives_the_same_tokens compares the whole counts, this key included)."""
    rows = [
        (
            "d",
            0,
            {
                "messages": [
                    {"role": "user", "content": "2+2?"},
                    {"role": "assistant", "content": "4", "reasoning_content": "two plus two is four"},
                    {"role": "user", "content": "and 3+3?"},
                    {"role": "assistant", "content": "6", "reasoning_content": "three plus three is six"},
                ]
            },
        ),
        (
            "d",
            1,
            {
                "messages": [
                    {"role": "user", "content": "weather?"},
                    {
                        "role": "assistant",
                        "content": "",
                        "tool_calls": [
                            {
                                "type": "function",
                                "function": {"name": "get_weather", "arguments": {"city": "Paris"}},
                            }
                        ],
                    },
                    {"role": "tool", "content": "sunny"},
                    {"role": "assistant", "content": "It is sunny."},
                ]
            },
        ),
    ]
    plain = RowProcessor(
        sample_tokenizer, ChatTemplate.from_text("plain.jinja", CHATML_WITHOUT_REASONING), 4096
    )
    counts = plain.process(rows).counts
    assert counts.template_dropped == {"reasoning_content": 2, "tool_calls": 1}
    assert Counts.from_dict(counts.to_dict()).template_dropped == counts.template_dropped
    copy = RowProcessor(
        sample_tokenizer, ChatTemplate.from_text("copy.jinja", builtin_nano3_text() + "\n"), 4096
    )
    assert copy.process(rows + sample_rows[:150]).counts.template_dropped == {}
