"""Rows in, tokenized training sequences + counters out: the text-semantics stage of sft-prep.

Contract (what the pipeline — readers, sharding, packing, Parquet — relies on)::

    proc = RowProcessor(tokenizer, template, doc_limit)        # or RowProcessor.from_config(cfg)
    result = proc.process(rows, messages_field="messages", tools_field="tools")
    # rows: Iterable[tuple[dataset_name: str, row_ref: int | str, row: Mapping | RowError]]
    #       a reader passes RowError("bad_json", ...) for a line it could not decode.
    result.sequences  # list[Sequence], in input order (a row may give several: one per user turn)
    result.ids, result.mask, result.lengths  # the same sequences end to end (what a shard stores)
    result.counts     # Counts; merge batches with counts.merge(other); counts.to_dict() for JSON

* ``Sequence.input_ids`` is int32 and ``Sequence.loss_mask`` uint8, same length, **unrolled**:
  ``loss_mask[j] == 1`` iff token ``j`` belongs to an assistant turn (including its ``<|im_end|>\\n``).
  Rolling the mask onto labels (per sub-sequence, after packing) is the packer's job. Both arrays
  are read-only views into one buffer per batch: copy before changing them.
* Sequences are at most ``doc_limit`` tokens: longer ones keep their head (``Sequence.truncated``;
  ``counts.truncated`` counts the kept ones). A sequence left with no trainable token is dropped
  (``counts.dropped_sequences['no_trainable_tokens']``); a row left with no sequence counts once in
  ``counts.dropped[reason]``. Every row counts in ``counts.rows``; ``rows == rows_kept +
  sum(dropped.values())``.
* Nothing in a row can raise out of ``process``: malformed rows, template errors and template
  mismatches become ``RowError`` reasons (``chat.REASONS``) with up to ``MAX_EXAMPLES`` examples per
  reason (dataset, row index, a detail of at most 200 characters — never the raw conversation).
* Feed batches of a few hundred rows: all sequences of a batch are tokenized in one parallel
  ``encode_batch``, whole sequences cut at chunk boundaries (:mod:`sft_prep.joint_encode`), with no text
  encoded twice (a reasoning row's repeated history, a repeated system block:
  :mod:`sft_prep.sequence_encode`); the ids are the same as chunk by chunk. A processor is reusable
  and holds no per-batch state, so one per process is enough.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from sft_prep.chat import Conversation, RowError, parse_conversation, shorten
from sft_prep.chunking import Chunk, split_generic
from sft_prep.nano3_fast import split_nano3
from sft_prep.ranges import gather_index
from sft_prep.sequence_encode import SeqChunks, encode_sequences, safe_markers, seq_chunks
from sft_prep.template import ChatTemplate, load_template
from sft_prep.tokenizer import CHAT_TOKENS, Tokenizer, load_tokenizer

MAX_EXAMPLES = 5

RowRef = int | str
"""Where a row came from: an index, or a reader location such as ``file.jsonl:17``."""
Row = tuple[str, RowRef, "Mapping[str, Any] | RowError"]


@dataclass(slots=True)
class Sequence:
    """One training sequence (before packing)."""

    input_ids: np.ndarray
    """int32 token ids."""
    loss_mask: np.ndarray
    """uint8, 1 on assistant tokens (unrolled: aligned with input_ids, not with labels)."""
    truncated: bool
    """Whether the tail beyond doc_limit was cut off."""
    dataset: str
    row_index: RowRef

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])


@dataclass
class Counts:
    """Additive statistics of processed rows (merge across batches, shards and workers)."""

    rows: int = 0
    rows_kept: int = 0
    sequences: int = 0
    tokens: int = 0
    trainable_tokens: int = 0
    truncated: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    """Rows that produced no sequence, by reason."""
    dropped_sequences: Counter[str] = field(default_factory=Counter)
    """Sequences dropped from otherwise kept or dropped rows, by reason."""
    examples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """reason → up to MAX_EXAMPLES {dataset, row, detail}."""
    encoding: Counter[str] = field(default_factory=Counter)
    """Sequences tokenized whole (``joint``) or chunk by chunk (``fallback_<reason>``), before any drop;
    empty when joint encoding is disabled. Carried in the counts (not only in the processor) so that
    receipts, worker processes and pods add up to the run's numbers in metadata.json."""
    template_dropped: Counter[str] = field(default_factory=Counter)
    """Messages whose field (``reasoning_content``, ``tool_calls``) was set but appears in none of the
    row's rendered sequences: a custom chat template that ignores it (:func:`template_dropped_fields`)."""
    cut_off: dict[str, int] = field(default_factory=dict)
    """Sequences whose every trained token lay beyond ``doc_limit`` (truncation left none):
    ``sequences``, ``min_to_train`` (the fewest tokens any of them needs to reach its first trained
    token) and ``max_length`` (the longest of them whole); what a too-small pack_size error suggests."""
    reused: Counter[str] = field(default_factory=Counter)
    """``sequences`` that took ids already encoded for another sequence (a reasoning row's history, a
    system block repeated in the batch) instead of encoding the text again, and the ``tokens`` so
    reused (:mod:`sft_prep.sequence_encode`). Depends on how rows fall into batches."""

    def add_example(self, reason: str, dataset: str, row: RowRef, detail: str) -> None:
        bucket = self.examples.setdefault(reason, [])
        if len(bucket) < MAX_EXAMPLES:
            bucket.append({"dataset": dataset, "row": row, "detail": shorten(detail)})

    def add_cut_off(self, sequences: int, min_to_train: int, max_length: int) -> None:
        mine = self.cut_off
        self.cut_off = {
            "sequences": mine.get("sequences", 0) + sequences,
            "min_to_train": min(mine.get("min_to_train", min_to_train), min_to_train),
            "max_length": max(mine.get("max_length", 0), max_length),
        }

    def merge(self, other: Counts) -> None:
        self.rows += other.rows
        self.rows_kept += other.rows_kept
        self.sequences += other.sequences
        self.tokens += other.tokens
        self.trainable_tokens += other.trainable_tokens
        self.truncated += other.truncated
        self.dropped.update(other.dropped)
        self.dropped_sequences.update(other.dropped_sequences)
        self.encoding.update(other.encoding)
        self.reused.update(other.reused)
        self.template_dropped.update(other.template_dropped)
        if other.cut_off:
            self.add_cut_off(**other.cut_off)
        for reason, items in other.examples.items():
            for item in items:
                self.add_example(reason, item["dataset"], item["row"], item["detail"])

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "rows_kept": self.rows_kept,
            "sequences": self.sequences,
            "tokens": self.tokens,
            "trainable_tokens": self.trainable_tokens,
            "truncated": self.truncated,
            "dropped": dict(sorted(self.dropped.items())),
            "dropped_sequences": dict(sorted(self.dropped_sequences.items())),
            "examples": {k: list(v) for k, v in sorted(self.examples.items())},
            "encoding": dict(sorted(self.encoding.items())),
            "reused": dict(sorted(self.reused.items())),
            "template_dropped": dict(sorted(self.template_dropped.items())),
            **({"cut_off": dict(self.cut_off)} if self.cut_off else {}),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Counts:
        return cls(
            rows=int(data.get("rows", 0)),
            rows_kept=int(data.get("rows_kept", 0)),
            sequences=int(data.get("sequences", 0)),
            tokens=int(data.get("tokens", 0)),
            trainable_tokens=int(data.get("trainable_tokens", 0)),
            truncated=int(data.get("truncated", 0)),
            dropped=Counter(data.get("dropped", {})),
            dropped_sequences=Counter(data.get("dropped_sequences", {})),
            examples={k: list(v) for k, v in data.get("examples", {}).items()},
            encoding=Counter(data.get("encoding", {})),
            reused=Counter(data.get("reused", {})),
            template_dropped=Counter(data.get("template_dropped", {})),
            cut_off={k: int(v) for k, v in (data.get("cut_off") or {}).items()},
        )


def template_dropped_fields(conv: Conversation, sequences: list[list[Chunk]]) -> Counter[str]:
    """Messages whose ``reasoning_content`` or tool call is in the data but in none of the rendered
    sequences. Reasoning a template strips from the history still shows up, because a row with
    reasoning becomes one sequence per user turn; a template that never renders the field does not."""
    text = "".join(chunk.text for seq in sequences for chunk in seq)
    dropped: Counter[str] = Counter()
    for message in conv.messages:
        reasoning = (message.reasoning_content or "").strip()
        if reasoning and reasoning not in text:
            dropped["reasoning_content"] += 1
        if any(call.name not in text for call in message.tool_calls):
            dropped["tool_calls"] += 1
    return dropped


@dataclass
class ProcessResult:
    counts: Counts
    ids: np.ndarray
    """The kept sequences' ids end to end (int32, read-only; what a shard stores)."""
    mask: np.ndarray
    """Their unrolled mask (uint8, read-only), aligned with ``ids``."""
    lengths: np.ndarray
    """Their lengths (int64)."""
    origins: list[tuple[bool, str, RowRef]]
    """Per kept sequence: whether it was truncated, its dataset and its row reference."""

    @cached_property
    def sequences(self) -> list[Sequence]:
        """The kept sequences as views of ``ids``/``mask``, made on first use: the pipeline stores the
        arrays whole and never needs one object per sequence."""
        ends = np.cumsum(self.lengths).tolist()
        out = []
        begin = 0
        for end, (truncated, dataset, row) in zip(ends, self.origins, strict=True):
            out.append(Sequence(self.ids[begin:end], self.mask[begin:end], truncated, dataset, row))
            begin = end
        return out


class RowProcessor:
    """Chat rows → (chunks → tokens, loss mask) with a fixed tokenizer, template and length limit."""

    def __init__(
        self,
        tokenizer: Tokenizer,
        template: ChatTemplate,
        doc_limit: int,
        *,
        fast: bool | None = None,
        joint: bool = True,
    ) -> None:
        """``fast``: use the native nano3 chunker (default: exactly when ``template`` is the built-in
        nano3). ``joint``: encode each sequence once and cut it at chunk boundaries where that provably
        gives the per-chunk ids (:mod:`sft_prep.joint_encode`); ``False`` encodes every chunk on its own
        (the reference, for tests and benchmarks). Raises ConfigError if the tokenizer splits
        ``<|im_start|>``/``<|im_end|>`` and the template uses them."""
        if doc_limit < 2:
            raise ValueError(f"doc_limit must be at least 2, got {doc_limit}")
        self.tokenizer = tokenizer
        self.template = template
        self.doc_limit = doc_limit
        self.fast = template.is_builtin_nano3 if fast is None else fast
        if self.fast and not template.is_builtin_nano3:
            raise ValueError("the fast chunker implements the built-in nano3 template only")
        # Only the control tokens this template writes must be atomic (a foreign template may use others).
        used = tuple(t for t in CHAT_TOKENS if t in template.text)
        self.chat_token_ids = tokenizer.check_chat_tokens(used)
        self.joint = joint
        self.share_markers: tuple[str, ...] = ()
        """Control tokens before which a row's sequences may share their encoded history."""
        if joint:
            plan, _ = tokenizer.joint_plan  # built once here (~0.4 s for 151k ids), not in a batch thread
            if plan is not None:
                atomic = tuple(t for t, i in self.chat_token_ids.items() if plan.added[i])
                self.share_markers = safe_markers(atomic, plan.added_texts)

    @classmethod
    def from_config(cls, cfg: Any, cache_dir: Path | None = None) -> RowProcessor:
        """Build from a ``PrepConfig`` (tokenizer.model/revision, chat_template, doc_limit)."""
        tokenizer = load_tokenizer(cfg.tokenizer.model, cfg.tokenizer.revision, cache_dir)
        template = load_template(cfg.chat_template, tokenizer.chat_template)
        return cls(tokenizer, template, cfg.doc_limit)

    def describe(self) -> dict[str, Any]:
        """Tokenizer and template facts for metadata.json. How many sequences were encoded which way
        is in each batch's ``Counts.encoding``, summed from the receipts."""
        plan, why = self.tokenizer.joint_plan
        return {
            "tokenizer": self.tokenizer.describe(),
            "chat_template": self.template.name,
            "chunker": "nano3-native" if self.fast else "jinja-incremental",
            "doc_limit": self.doc_limit,
            "chat_token_ids": self.chat_token_ids,
            "encoding": {
                "strategy": "joint" if self.joint and plan is not None else "per-chunk",
                "why": why if self.joint else "disabled",
            },
        }

    def split(
        self,
        row: Mapping[str, Any],
        messages_field: str = "messages",
        tools_field: str = "tools",
        counts: Counts | None = None,
    ) -> list[list[Chunk]]:
        """Chunks of each sequence of one row; raises RowError. With ``counts``, the fields a custom
        template dropped are counted there (the built-in nano3 path renders every field)."""
        conv = parse_conversation(row, messages_field, tools_field)
        if self.fast:
            return split_nano3(conv)
        sequences = split_generic(conv, self.template)
        if counts is not None:
            counts.template_dropped.update(template_dropped_fields(conv, sequences))
        return sequences

    def process(
        self, rows: Iterable[Row], *, messages_field: str = "messages", tools_field: str = "tools"
    ) -> ProcessResult:
        counts = Counts()
        pending: list[tuple[str, RowRef, int]] = []  # row, number of sequences
        row_seqs: list[list[SeqChunks]] = []
        for dataset, index, row in rows:
            counts.rows += 1
            try:
                if isinstance(row, RowError):
                    raise row
                sequences = self.split(row, messages_field, tools_field, counts)
            except RowError as err:
                counts.dropped[err.reason] += 1
                counts.add_example(err.reason, dataset, index, err.detail)
                continue
            if not sequences:
                counts.dropped["no_trainable_tokens"] += 1
                counts.add_example(
                    "no_trainable_tokens", dataset, index, "no user turn is followed by a reply"
                )
                continue
            row_seqs.append([seq_chunks(seq) for seq in sequences])
            pending.append((dataset, index, len(sequences)))
        # One flat id array and one mask for the whole batch; sequences are slices of them.
        encoded = encode_sequences(self.tokenizer, row_seqs, joint=self.joint, markers=self.share_markers)
        flat, mask_all = encoded.ids, encoded.mask
        if self.joint:
            counts.encoding.update(encoded.outcomes)
            if encoded.reused_sequences:
                counts.reused.update(sequences=encoded.reused_sequences, tokens=encoded.reused_tokens)
        flat.setflags(write=False)  # sequences are views: a stray in-place edit must fail, not corrupt
        mask_all.setflags(write=False)
        # Per sequence, vectorised: where it starts, where it stops after truncation, what it trains.
        seq_end = np.cumsum(encoded.lengths)
        seq_begin = seq_end - encoded.lengths
        seq_stop = np.minimum(seq_end, seq_begin + self.doc_limit)
        trained = np.cumsum(mask_all, dtype=np.int32 if len(mask_all) < 2**31 else np.int64)

        def trained_before(tok: np.ndarray) -> np.ndarray:  # trained tokens before token index ``tok``
            return np.where(tok > 0, trained[np.maximum(tok - 1, 0)], 0) if len(trained) else tok * 0

        trainable_all = (trained_before(seq_stop) - trained_before(seq_begin)).tolist()
        begins, stops, ends = seq_begin.tolist(), seq_stop.tolist(), seq_end.tolist()
        origins: list[tuple[bool, str, RowRef]] = []
        kept_at: list[int] = []
        first = 0
        for dataset, index, n_sequences in pending:
            kept = 0
            for seq in range(first, first + n_sequences):
                begin, stop, trainable = begins[seq], stops[seq], trainable_all[seq]
                if trainable == 0:
                    counts.dropped_sequences["no_trainable_tokens"] += 1
                    if stop < ends[seq]:  # rare: truncation may have cut every trained token away
                        trained_at = np.flatnonzero(mask_all[begin : ends[seq]])
                        if trained_at.size:
                            counts.add_cut_off(1, int(trained_at[0]) + 1, ends[seq] - begin)
                    continue
                truncated = stop < ends[seq]
                counts.truncated += truncated
                counts.sequences += 1
                counts.tokens += stop - begin
                counts.trainable_tokens += trainable
                origins.append((truncated, dataset, index))
                kept_at.append(seq)
                kept += 1
            first += n_sequences
            if kept:
                counts.rows_kept += 1
            else:
                counts.dropped["no_trainable_tokens"] += 1
                counts.add_example(
                    "no_trainable_tokens",
                    dataset,
                    index,
                    f"{n_sequences} sequence(s), none with an assistant token within doc_limit",
                )
        if len(kept_at) == len(ends) and counts.truncated == 0:  # all kept whole: the arrays as they are
            ids, mask, lengths = flat, mask_all, encoded.lengths
        else:
            keep = np.array(kept_at, dtype=np.int64)
            lengths = seq_stop[keep] - seq_begin[keep]
            gather = gather_index(seq_begin[keep], lengths)
            ids, mask = flat[gather], mask_all[gather]
            ids.setflags(write=False)
            mask.setflags(write=False)
        return ProcessResult(counts, ids, mask, lengths, origins)
