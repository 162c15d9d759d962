"""The sequences of a batch of rows → token ids and loss mask, with history shared inside a row encoded once.

A conversation with reasoning gives one training sequence per user turn (the reference recipe's rule),
and sequence *k* repeats, as context, the whole conversation up to turn *k*. Encoding every sequence
from scratch (as the reference does) tokenizes that history again for every later turn: on an SFT mix
with a fifth of reasoning rows that is about a quarter of all tokenizer work. Here each row's longest
sequence (the *reference*) is encoded once; every other sequence of the row takes the ids of the text it
shares with it and encodes only its own tail.

Why the result is exactly the per-chunk reference. Sequence *k* and the reference agree on a text
prefix; the cut ``p`` is placed at the last occurrence, inside that prefix, of a chat control token
that is an added token (``<|im_start|>``/``<|im_end|>``). The chunk containing ``p`` is cut there into
``X`` (shared) and ``Y`` (the tail, starting with the control token). In the reference's encoding ``p``
then is an internal chunk boundary, which :func:`sft_prep.joint_encode.encode_chunks` accepts only where
the token starting at ``p`` is the added token: the tokenizer extracts it before anything else, so the
text before ``p`` is tokenized as a segment of its own, independently of what follows. That makes the
ids of the shared text equal in both sequences and equal to encoding ``X`` and ``Y`` apart, which in
turn equals encoding the uncut chunk (the reference). Where the reference's encoding cannot prove a cut
(any fallback in a sharing row), the row is encoded again without sharing, so nothing rests on an
unproven boundary. Tokenizers whose normalizer is the identity on ASCII only share in ASCII rows only.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from itertools import chain

import numpy as np

from sft_prep.joint_encode import OUTCOMES, encode_chunks, encode_per_chunk
from sft_prep.tokenize import Tokenizer

SeqChunks = tuple[list[str], list[bool]]
"""One sequence: its non-empty chunk texts and, per chunk, whether it is trained (assistant)."""

MIN_SHARED_CHARS = 64
"""Shorter shared heads are encoded again: an extra unit costs more than it saves."""


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
    """Sequences whose head was taken from another sequence of the same row."""
    reused_tokens: int = 0
    """Tokens of those heads, i.e. tokens not encoded a second time."""


@dataclass
class _RowLayout:
    """What to encode for one row (``units``) and how its sequences are put together from it."""

    units: list[list[str]]
    flags: list[bool]
    """Per unit chunk (all units of the row, in order)."""
    pieces: list[list[int]]
    """Per sequence, the row's unit chunks it consists of (row-local indices)."""
    own_unit: list[int]
    """Per sequence, the unit holding its own text (whose outcome it reports)."""
    shared: bool


def safe_markers(markers: tuple[str, ...], added_texts: tuple[str, ...]) -> tuple[str, ...]:
    """The markers a cut may be placed before: no other added token may contain one past its first
    character, or the tokenizer could match that longer token across the cut instead."""
    return tuple(m for m in markers if not any(m in t[1:] for t in added_texts if t != m))


def _common_prefix(a: str, b: str) -> int:
    """Length of the common prefix, in O(log n) C-speed comparisons."""
    lo, hi = 0, min(len(a), len(b))
    if a[:hi] == b[:hi]:
        return hi
    while lo < hi:  # invariant: a[:lo] == b[:lo] and a[:hi+1] != b[:hi+1] ... narrowed by halves
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


def _plain(row: list[SeqChunks]) -> _RowLayout:
    units, flags, pieces = [], [], []
    at = 0
    for texts, seq_flags in row:
        units.append(texts)
        flags.extend(seq_flags)
        pieces.append(list(range(at, at + len(texts))))
        at += len(texts)
    return _RowLayout(units, flags, pieces, list(range(len(row))), False)


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


def _share(row: list[SeqChunks], markers: tuple[str, ...], ascii_only: bool) -> _RowLayout:
    full = ["".join(texts) for texts, _ in row]
    ref = max(range(len(row)), key=lambda i: (len(full[i]), i))
    if ascii_only and not all(t.isascii() for t in full):
        return _plain(row)
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
        return _plain(row)
    ref_texts, ref_flags, first = _cut(*row[ref], sorted(set(cut_at.values())))
    units, flags = [ref_texts], list(ref_flags)
    pieces: list[list[int]] = [[] for _ in row]
    own_unit = [0] * len(row)
    pieces[ref] = list(range(len(ref_texts)))
    at = len(ref_texts)
    for k, (texts, seq_flags) in enumerate(row):
        if k == ref:
            continue
        p = cut_at.get(k)
        if p is None:
            tail, tail_flags = texts, seq_flags
            head: list[int] = []
        else:
            pieces_k, flags_k, first_k = _cut(texts, seq_flags, [p])
            start = first_k[p]
            tail, tail_flags = pieces_k[start:], flags_k[start:]
            head = list(range(first[p]))
        own_unit[k] = len(units)
        units.append(tail)
        flags.extend(tail_flags)
        pieces[k] = head + list(range(at, at + len(tail)))
        at += len(tail)
    return _RowLayout(units, flags, pieces, own_unit, True)


def _layouts(rows: list[list[SeqChunks]], markers: tuple[str, ...], ascii_only: bool) -> list[_RowLayout]:
    if not markers:
        return [_plain(row) for row in rows]
    return [_share(row, markers, ascii_only) if len(row) > 1 else _plain(row) for row in rows]


def encode_sequences(
    tokenizer: Tokenizer, rows: list[list[SeqChunks]], *, joint: bool = True, markers: tuple[str, ...] = ()
) -> EncodedSequences:
    """Ids and unrolled mask of every sequence of ``rows`` (each row: its sequences), identical to
    encoding every chunk on its own. ``joint=False`` does exactly that (the reference); otherwise
    sequences are encoded whole and cut (:mod:`sft_prep.joint_encode`), and rows share their history
    at cuts before one of ``markers`` (see the module docstring; ``()`` shares nothing)."""
    if not joint:
        seqs = [s for row in rows for s in row]
        flat, lengths = encode_per_chunk(tokenizer, [t for texts, _ in seqs for t in texts])
        flags = np.fromiter(chain.from_iterable(f for _, f in seqs), dtype=np.uint8, count=len(lengths))
        per_seq = np.fromiter((len(t) for t, _ in seqs), dtype=np.int64, count=len(seqs))
        seq_lengths = _sums(lengths, per_seq)
        return EncodedSequences(flat, np.repeat(flags, lengths), seq_lengths, Counter())

    plan, _ = tokenizer.joint_plan
    layouts = _layouts(rows, markers if plan is not None else (), bool(plan and plan.ascii_only))
    first = _Pass(tokenizer, layouts, unit_offset=0, chunk_offset=0)
    placed = list(zip(layouts, first.unit_base, first.chunk_base, strict=True))
    passes = [first]
    # A sharing row with any unit encoded per chunk may rest on an unproven cut: encode it again plainly.
    redo = [r for r in first.failed_rows() if layouts[r].shared]
    if redo:
        again = _Pass(
            tokenizer, [_plain(rows[r]) for r in redo], len(first.outcome), len(first.chunk_lengths)
        )
        passes.append(again)
        for r, lay, unit_base, chunk_base in zip(
            redo, again.layouts, again.unit_base, again.chunk_base, strict=True
        ):
            placed[r] = (lay, unit_base, chunk_base)
    flat = np.concatenate([p.encoded.ids for p in passes])
    chunk_lengths = np.concatenate([p.chunk_lengths for p in passes])
    chunk_flags = np.concatenate([p.flags for p in passes])
    outcome = np.concatenate([p.outcome for p in passes])

    pieces: list[int] = []
    per_seq: list[int] = []
    own: list[int] = []
    reused = 0
    for lay, unit_base, chunk_base in placed:
        for seq_pieces, unit in zip(lay.pieces, lay.own_unit, strict=True):
            pieces.extend([chunk_base + i for i in seq_pieces])
            per_seq.append(len(seq_pieces))
            own.append(unit_base + unit)
        if lay.shared:
            reused += len(lay.pieces) - 1
    idx = np.array(pieces, dtype=np.int64)
    piece_len = chunk_lengths[idx]
    if len(idx) == len(chunk_lengths) and bool((idx == np.arange(len(idx))).all()):
        ids = flat  # nothing shared: the encoding is already in sequence order
    else:
        chunk_start = np.cumsum(chunk_lengths) - chunk_lengths
        out_start = np.cumsum(piece_len) - piece_len
        ids = flat[np.repeat(chunk_start[idx] - out_start, piece_len) + np.arange(int(piece_len.sum()))]
    seq_lengths = _sums(piece_len, np.array(per_seq, dtype=np.int64))
    outcomes = Counter(OUTCOMES[i] for i in outcome[np.array(own, dtype=np.int64)].tolist())
    discarded = sum(first.row_tokens(r) for r in redo)  # first-pass work of the rows encoded again
    encoded_tokens = int(chunk_lengths.sum()) - discarded
    return EncodedSequences(
        ids,
        np.repeat(chunk_flags[idx], piece_len),
        seq_lengths,
        outcomes,
        reused,
        int(seq_lengths.sum()) - encoded_tokens,
    )


class _Pass:
    """One ``encode_chunks`` call over the units of some rows, with where each row's units landed."""

    def __init__(self, tokenizer: Tokenizer, layouts: list[_RowLayout], unit_offset: int, chunk_offset: int):
        self.layouts = layouts
        self.encoded = encode_chunks(tokenizer, [u for lay in layouts for u in lay.units])
        self.chunk_lengths = self.encoded.chunk_lengths
        self.outcome = self.encoded.outcome
        self.flags = np.fromiter(
            chain.from_iterable(lay.flags for lay in layouts), dtype=np.uint8, count=len(self.chunk_lengths)
        )
        units = np.fromiter((len(lay.units) for lay in layouts), dtype=np.int64, count=len(layouts))
        chunks = np.fromiter((len(lay.flags) for lay in layouts), dtype=np.int64, count=len(layouts))
        self._units = units
        self.unit_base = (unit_offset + np.cumsum(units) - units).tolist()
        self.chunk_base = (chunk_offset + np.cumsum(chunks) - chunks).tolist()
        self._chunk_offset = chunk_offset

    def failed_rows(self) -> list[int]:
        bad = self.outcome != 0
        if not bad.any():
            return []
        unit_row = np.repeat(np.arange(len(self.layouts)), self._units)
        return sorted(set(unit_row[bad].tolist()))

    def row_tokens(self, r: int) -> int:
        start = self.chunk_base[r] - self._chunk_offset
        return int(self.chunk_lengths[start : start + len(self.layouts[r].flags)].sum())


def _sums(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Sums of consecutive groups of ``counts`` values (groups may be empty)."""
    ends = np.cumsum(values)
    stops = np.cumsum(counts)
    totals = np.concatenate(([0], ends))[stops]
    return np.diff(totals, prepend=0).astype(np.int64)
