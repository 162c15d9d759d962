"""The sequences of a batch of rows → token ids and loss mask, encoding no text twice.

The reference semantics are per chunk: every role-labelled chunk is encoded on its own and the ids
concatenated (:mod:`sft_prep.joint_encode` gets the same ids from fewer, longer encodings). Two kinds
of repetition are common in SFT data, and neither is encoded again here:

* **A reasoning row's history.** Such a conversation gives one training sequence per user turn (the
  reference recipe's rule), and sequence *k* repeats, as context, the whole conversation up to turn
  *k*: encoding each from scratch tokenizes that history again for every later turn (about a quarter
  of all tokenizer work on a mix with a fifth of reasoning rows). Each row's longest sequence (the
  *reference*) is encoded once; every other sequence of the row takes the ids of the text it shares
  with it and encodes only its own tail.
* **A repeated first chunk.** The system block (prompt plus tool definitions) is often identical
  across rows; within a batch each distinct one is encoded once. A chunk's ids depend on its text
  only, so this needs no proof; the batch (not the process) is the scope so that the counts in
  metadata.json do not depend on which worker or process saw which rows.

Why a shared history is exactly the reference. Sequence *k* and the reference agree on a text prefix;
the cut ``p`` is placed at the last occurrence, inside that prefix and before anything either of them
trains on, of a chat control token that is an added token (``<|im_start|>``/``<|im_end|>``). The chunk
containing ``p`` is cut there into ``X`` (shared) and ``Y`` (the tail, starting with the control
token). In the reference's encoding ``p`` then is an internal chunk boundary, which
:func:`sft_prep.joint_encode.encode_chunks` accepts only where the token starting at ``p`` is the added
token: the tokenizer extracts it before anything else, so the text before ``p`` is tokenized as a
segment of its own, independently of what follows. That makes the ids of the shared text equal in
both sequences and equal to encoding ``X`` and ``Y`` apart, which in turn equals encoding the uncut
chunk (the reference). Where the reference's encoding cannot prove a cut (any fallback in a row with
a cut), the row is encoded again without cuts, so nothing rests on an unproven boundary. Tokenizers
whose normalizer is the identity on ASCII only cut ASCII rows only.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import chain

import numpy as np

from sft_prep.chunking import Chunk
from sft_prep.joint_encode import OUTCOMES, encode_chunks, encode_per_chunk
from sft_prep.ranges import gather_index, group_sums
from sft_prep.tokenizer import Tokenizer

SeqChunks = tuple[list[str], list[bool]]
"""One sequence: its non-empty chunk texts and, per chunk, whether it is trained (assistant)."""


def seq_chunks(chunks: Iterable[Chunk]) -> SeqChunks:
    """A chunker's output for one sequence in the form encoded here (empty chunks carry no tokens)."""
    kept = [c for c in chunks if c.text]
    return [c.text for c in kept], [c.trainable for c in kept]


MIN_SHARED_CHARS = 64
"""Shorter shared histories and first chunks are encoded again: reuse costs more than it saves."""


@dataclass
class EncodedSequences:
    ids: np.ndarray
    """int32 ids of all sequences of the batch, end to end, in input order."""
    mask: np.ndarray
    """uint8, 1 on tokens of trained chunks (unrolled), aligned with ``ids``."""
    lengths: np.ndarray
    """int64 tokens per sequence."""
    outcomes: Counter[str]
    """Sequences by how their own text was encoded (``joint`` / ``fallback_<reason>``); empty for the
    per-chunk reference."""
    reused_sequences: int = 0
    """Sequences that took ids encoded for another sequence (their history or first chunk)."""
    reused_tokens: int = 0
    """Tokens in the output beyond those the tokenizer produced: the tokens not encoded again."""


@dataclass
class _RowLayout:
    """What to encode for one row (``units``) and how its sequences are put together from it."""

    units: list[list[str]]
    pieces: list[list[int]]
    """Per sequence, the chunks it consists of: ``i >= 0`` is the row's unit chunk ``i`` (units laid
    end to end); ``i < 0`` is ``borrowed[-i - 1]``."""
    piece_flags: list[list[bool]]
    """Per sequence and piece, whether it is trained, from the sequence's own chunks."""
    own_unit: list[int]
    """Per sequence, the unit holding its own text (whose outcome it reports)."""
    borrowed: list[tuple[int, int]]
    """(row, unit chunk) in the batch's first pass whose ids stand for an identical chunk here."""
    cut: bool
    """Whether a chunk was cut for sharing, which relies on the reference's encoding proving the cut."""
    reused: int
    """Sequences that take ids encoded for another sequence."""


class _Builder:
    """Collects one row's units; a unit whose first chunk has the text of an earlier unit's first
    chunk in the batch (``seen``) borrows that chunk's ids instead of encoding it again."""

    def __init__(self, row: int, seen: dict[str, tuple[int, int]] | None) -> None:
        self.row = row
        self.seen = seen
        self.units: list[list[str]] = []
        self.chunks = 0
        self.borrowed: list[tuple[int, int]] = []

    def unit(self, texts: list[str], flags: list[bool]) -> tuple[list[int], list[bool]]:
        """Add a unit; returns the refs and flags of its chunks (see ``_RowLayout.pieces``)."""
        refs: list[int] = []
        if self.seen is not None and len(texts) > 1 and len(texts[0]) >= MIN_SHARED_CHARS:
            lender = self.seen.get(texts[0])
            if lender is None:
                self.seen[texts[0]] = (self.row, self.chunks)
            else:
                self.borrowed.append(lender)
                refs.append(-len(self.borrowed))
                texts = texts[1:]
        refs.extend(range(self.chunks, self.chunks + len(texts)))
        self.units.append(texts)
        self.chunks += len(texts)
        return refs, flags

    def layout(
        self, pieces: list[list[int]], flags: list[list[bool]], own_unit: list[int], heads: set[int]
    ) -> _RowLayout:
        """``heads``: the sequences that start with the reference's chunks (their history)."""
        reused = sum(1 for k, refs in enumerate(pieces) if k in heads or (refs and refs[0] < 0))
        return _RowLayout(self.units, pieces, flags, own_unit, self.borrowed, bool(heads), reused)


def safe_markers(markers: tuple[str, ...], added_texts: tuple[str, ...]) -> tuple[str, ...]:
    """The markers a cut may be placed before: no other added token may contain one past its first
    character, or the tokenizer could match that longer token across the cut instead."""
    return tuple(m for m in markers if not any(m in t[1:] for t in added_texts if t != m))


def _common_prefix(a: str, b: str) -> int:
    """Length of the common prefix, by bisection with C-speed slice comparisons."""
    lo, hi = 0, min(len(a), len(b))  # a[:lo] == b[:lo]; the answer is at most hi
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _context_chars(texts: list[str], flags: list[bool]) -> int:
    """Characters before the first trained chunk."""
    n = 0
    for text, flag in zip(texts, flags, strict=True):
        if flag:
            break
        n += len(text)
    return n


def _plain(row: list[SeqChunks], b: _Builder) -> _RowLayout:
    pieces, flags = [], []
    for texts, seq_flags in row:
        refs, refs_flags = b.unit(texts, seq_flags)
        pieces.append(refs)
        flags.append(refs_flags)
    return b.layout(pieces, flags, list(range(len(row))), heads=set())


def _cut(
    texts: list[str], flags: list[bool], cuts: list[int]
) -> tuple[list[str], list[bool], dict[int, int]]:
    """Split the chunks at the char offsets ``cuts`` (sorted); also returns offset → index of the first
    piece starting there."""
    out: list[str] = []
    out_flags: list[bool] = []
    first: dict[int, int] = {}
    start = 0
    todo = iter(cuts)
    cut = next(todo, None)
    for text, flag in zip(texts, flags, strict=True):
        end = start + len(text)
        begin = start
        while cut is not None and cut < end:
            if cut > begin:
                out.append(text[begin - start : cut - start])
                out_flags.append(flag)
                begin = cut
            first[cut] = len(out)
            cut = next(todo, None)
        out.append(text[begin - start :])
        out_flags.append(flag)
        start = end
    return out, out_flags, first


def _share(row: list[SeqChunks], markers: tuple[str, ...], ascii_only: bool, b: _Builder) -> _RowLayout:
    full = ["".join(texts) for texts, _ in row]
    if ascii_only and not all(t.isascii() for t in full):
        return _plain(row, b)
    ref = max(range(len(row)), key=lambda i: (len(full[i]), i))
    reference = full[ref]
    ref_context = _context_chars(*row[ref])
    cut_at: dict[int, int] = {}
    for k, text in enumerate(full):
        if k == ref:
            continue
        # The shared head takes its mask from the reference, so it must be context (mask 0) in both.
        common = _common_prefix(text, reference)
        context = min(ref_context, _context_chars(*row[k]))
        p = max(text.rfind(m, 0, min(common, context + len(m))) for m in markers)
        if p >= MIN_SHARED_CHARS:
            cut_at[k] = p
    if not cut_at:
        return _plain(row, b)
    ref_texts, ref_flags, first = _cut(*row[ref], sorted(set(cut_at.values())))
    ref_refs, ref_refs_flags = b.unit(ref_texts, ref_flags)
    pieces: list[list[int]] = [[] for _ in row]
    flags: list[list[bool]] = [[] for _ in row]
    own_unit = [0] * len(row)
    pieces[ref], flags[ref] = ref_refs, ref_refs_flags
    for k, (texts, seq_flags) in enumerate(row):
        if k == ref:
            continue
        cut = cut_at.get(k)
        head = first[cut] if cut is not None else 0
        if cut is not None:
            texts, seq_flags, first_k = _cut(texts, seq_flags, [cut])
            texts, seq_flags = texts[first_k[cut] :], seq_flags[first_k[cut] :]
        own_unit[k] = len(b.units)
        refs, refs_flags = b.unit(texts, seq_flags)
        pieces[k] = ref_refs[:head] + refs
        flags[k] = ref_refs_flags[:head] + refs_flags
    return b.layout(pieces, flags, own_unit, heads=set(cut_at))


def _layouts(rows: list[list[SeqChunks]], markers: tuple[str, ...], ascii_only: bool) -> list[_RowLayout]:
    seen: dict[str, tuple[int, int]] = {}
    return [
        _share(row, markers, ascii_only, _Builder(r, seen))
        if markers and len(row) > 1
        else _plain(row, _Builder(r, seen))
        for r, row in enumerate(rows)
    ]


def encode_sequences(
    tokenizer: Tokenizer, rows: list[list[SeqChunks]], *, joint: bool = True, markers: tuple[str, ...] = ()
) -> EncodedSequences:
    """Ids and unrolled mask of every sequence of ``rows`` (each row: its sequences), identical to
    encoding every chunk on its own. ``joint=False`` does exactly that (the reference); otherwise
    sequences are encoded whole and cut (:mod:`sft_prep.joint_encode`), repeated chunks are encoded
    once per batch, and rows share their history at cuts before one of ``markers`` (see the module
    docstring; ``()`` cuts nothing)."""
    if not joint:
        seqs = [s for row in rows for s in row]
        flat, lengths = encode_per_chunk(tokenizer, [t for texts, _ in seqs for t in texts])
        chunk_flags = np.fromiter(chain.from_iterable(f for _, f in seqs), dtype=np.uint8, count=len(lengths))
        chunks_per_seq = np.fromiter((len(t) for t, _ in seqs), dtype=np.int64, count=len(seqs))
        seq_lengths = group_sums(lengths, chunks_per_seq)
        return EncodedSequences(flat, np.repeat(chunk_flags, lengths), seq_lengths, Counter())

    plan, _ = tokenizer.joint_plan
    layouts = _layouts(rows, markers if plan is not None else (), bool(plan and plan.ascii_only))
    first = _Pass(tokenizer, layouts, unit_offset=0, chunk_offset=0)
    placed = list(zip(layouts, first.unit_base, first.chunk_base, strict=True))
    passes = [first]
    # A row with a cut chunk and any unit encoded per chunk may rest on an unproven cut: encode it
    # again without cuts (and without borrowing, so nothing depends on the first pass).
    redo = [r for r in first.failed_rows() if layouts[r].cut]
    if redo:
        plain = [_plain(rows[r], _Builder(r, None)) for r in redo]
        again = _Pass(tokenizer, plain, len(first.outcome), len(first.chunk_lengths))
        passes.append(again)
        for r, lay, unit_base, chunk_base in zip(redo, plain, again.unit_base, again.chunk_base, strict=True):
            placed[r] = (lay, unit_base, chunk_base)
    flat = np.concatenate([p.encoded.ids for p in passes])
    chunk_lengths = np.concatenate([p.chunk_lengths for p in passes])
    outcome = np.concatenate([p.outcome for p in passes])

    pieces: list[int] = []
    piece_flags: list[bool] = []
    per_seq: list[int] = []
    own: list[int] = []
    reused = 0
    for lay, unit_base, chunk_base in placed:
        lent = [first.chunk_base[r] + c for r, c in lay.borrowed]
        for refs, flags, unit in zip(lay.pieces, lay.piece_flags, lay.own_unit, strict=True):
            pieces.extend([chunk_base + i if i >= 0 else lent[-i - 1] for i in refs])
            piece_flags.extend(flags)
            per_seq.append(len(refs))
            own.append(unit_base + unit)
        reused += lay.reused
    idx = np.array(pieces, dtype=np.int64)
    piece_len = chunk_lengths[idx]
    if len(idx) == len(chunk_lengths) and bool((idx == np.arange(len(idx))).all()):
        ids = flat  # nothing shared: the encoding is already in sequence order
    else:
        ids = flat[gather_index((np.cumsum(chunk_lengths) - chunk_lengths)[idx], piece_len)]
    seq_lengths = group_sums(piece_len, np.array(per_seq, dtype=np.int64))
    outcomes = Counter(OUTCOMES[i] for i in outcome[np.array(own, dtype=np.int64)].tolist())
    discarded = sum(first.row_tokens(r) for r in redo)  # first-pass work of the rows encoded again
    encoded_tokens = int(chunk_lengths.sum()) - discarded
    return EncodedSequences(
        ids,
        np.repeat(np.array(piece_flags, dtype=np.uint8), piece_len),
        seq_lengths,
        outcomes,
        reused,
        int(seq_lengths.sum()) - encoded_tokens,
    )


class _Pass:
    """One ``encode_chunks`` call over the units of some rows, with where each row's units landed."""

    def __init__(
        self, tokenizer: Tokenizer, layouts: list[_RowLayout], unit_offset: int, chunk_offset: int
    ) -> None:
        self.layouts = layouts
        self.encoded = encode_chunks(tokenizer, [u for lay in layouts for u in lay.units])
        self.chunk_lengths = self.encoded.chunk_lengths
        self.outcome = self.encoded.outcome
        self._units = np.fromiter((len(lay.units) for lay in layouts), dtype=np.int64, count=len(layouts))
        self._chunks = np.fromiter(
            (sum(map(len, lay.units)) for lay in layouts), dtype=np.int64, count=len(layouts)
        )
        self.unit_base: list[int] = (unit_offset + np.cumsum(self._units) - self._units).tolist()
        self.chunk_base: list[int] = (chunk_offset + np.cumsum(self._chunks) - self._chunks).tolist()
        self._chunk_offset = chunk_offset

    def failed_rows(self) -> list[int]:
        bad = self.outcome != 0
        if not bad.any():
            return []
        return sorted(set(np.repeat(np.arange(len(self.layouts)), self._units)[bad].tolist()))

    def row_tokens(self, r: int) -> int:
        start = self.chunk_base[r] - self._chunk_offset
        return int(self.chunk_lengths[start : start + int(self._chunks[r])].sum())
