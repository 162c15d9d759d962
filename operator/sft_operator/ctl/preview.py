"""``sftctl preview DIR|NAME [--bin N]``: one packed bin decoded, trained tokens marked.

The check that the loss mask is what the user meant. The marks come from the trainer's
own collate, :func:`sft_train.packed_data.split_row` (what both engines train on, Megatron-Bridge's
packed collate): ``loss_mask[j] = 1`` means the label ``input_ids[j+1]`` is trained, except after an
eos token (Megatron-Bridge 0.6.2 sets ``loss_mask[tokens == eos_id] = 0``), so the ``\n`` that follows
``<|im_end|>`` is context, not trained; the first token of a sub-sequence is never a label. The eos
is the prep tokenizer's (``metadata.json`` ``tokenizer.eos_token``; the trainer uses its base model's,
which is the same token for a model and its own tokenizer). Sub-sequences start at ``seq_start_id``
and are shown one by one.

Trained text is green on a terminal (``--color always|never|auto``) and wrapped in ``⟦ ⟧`` otherwise.
A warning names every field a custom chat template dropped (``metadata.json``
``template_dropped_fields``: messages whose ``reasoning_content`` or tool call the template rendered
nowhere), and rows dropped or truncated by reason.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, TextIO

from sft_common import storage

GREEN = "\x1b[1;32m"
DIM = "\x1b[2m"
RESET = "\x1b[0m"
OPEN, CLOSE = "⟦", "⟧"


class PreviewError(RuntimeError):
    pass


@dataclass(frozen=True)
class Span:
    text: str
    trained: bool


@dataclass(frozen=True)
class SubSequence:
    start: int
    end: int
    trained_tokens: int
    spans: list[Span]


def trained_positions(
    input_ids: Sequence[int], loss_mask: Sequence[int], starts: Sequence[int], eos_id: int | None
) -> list[bool]:
    """Per position of the bin: is this token a trained label, as the trainer's collate decides."""
    import numpy as np

    from sft_train.packed_data import boundaries, split_row

    ids, mask, begins = np.asarray(input_ids), np.asarray(loss_mask), np.asarray(starts, dtype=np.int64)
    out = [False] * len(ids)
    spans = [(s, e) for s, e in boundaries(begins, len(ids)) if e - s >= 2]  # split_row skips the others
    for (begin, _end), sub in zip(spans, split_row(ids, mask, begins, eos_id), strict=True):
        for k in np.flatnonzero(sub.loss_mask):
            out[begin + 1 + int(k)] = True
    return out


def split_bin(
    input_ids: Sequence[int],
    loss_mask: Sequence[int],
    starts: Sequence[int],
    decode: Callable[[Sequence[int]], str],
    eos_id: int | None = None,
) -> list[SubSequence]:
    """The bin as sub-sequences of runs of trained / untrained tokens, decoded run by run."""
    if len(input_ids) != len(loss_mask):
        raise PreviewError(f"input_ids ({len(input_ids)}) and loss_mask ({len(loss_mask)}) differ in length")
    starts = list(starts) or [0]
    trained = trained_positions(input_ids, loss_mask, starts, eos_id)
    bounds = [*starts, len(input_ids)]
    out = []
    for begin, end in pairwise(bounds):
        spans: list[Span] = []
        run_start = begin
        for p in range(begin + 1, end + 1):
            if p == end or trained[p] != trained[run_start]:
                spans.append(Span(decode(input_ids[run_start:p]), trained[run_start]))
                run_start = p
        out.append(SubSequence(begin, end, sum(trained[begin:end]), spans))
    return out


def eos_id_of(tokenizer: Any, meta: Mapping[str, Any]) -> int | None:
    """The id of the eos token sft-prep recorded (``<|im_end|>`` for the chat templates)."""
    eos = (meta.get("tokenizer") or {}).get("eos_token") or "<|im_end|>"
    ids = tokenizer.encode_many([eos])[0]
    return int(ids[0]) if len(ids) == 1 else None


def render(subsequences: list[SubSequence], color: bool) -> str:
    lines = []
    for k, sub in enumerate(subsequences):
        n = sub.end - sub.start
        header = (
            f"── sub-sequence {k + 1}/{len(subsequences)}: positions {sub.start}–{sub.end - 1} "
            f"({n} tokens, {sub.trained_tokens} trained) "
        )
        lines.append((DIM + header + "─" * 8 + RESET) if color else header + "─" * 8)
        text = []
        for span in sub.spans:
            if not span.trained:
                text.append(span.text)
            elif color:
                text.append(GREEN + span.text + RESET)
            else:
                text.append(OPEN + span.text + CLOSE)
        lines.append("".join(text).rstrip("\n"))
    return "\n".join(lines)


def warnings(meta: Mapping[str, Any]) -> list[str]:
    out = []
    template = (meta.get("chat_template") or {}).get("name", "?")
    for field, count in (meta.get("template_dropped_fields") or {}).items():
        if count:
            out.append(
                f"the chat template {template} dropped {field} from {count} message(s): that text is in the "
                "source data but not in the packed tokens; use a template that renders it (e.g. nano3)"
            )
    dropped = meta.get("dropped") or {}
    if dropped:
        text = ", ".join(f"{k} {v}" for k, v in dropped.items())
        out.append(f"rows dropped by reason: {text} (examples in metadata.json)")
    truncated = (meta.get("truncated") or {}).get("sequences")
    if truncated:
        out.append(f"{truncated} sequence(s) truncated to max_doc_tokens {meta.get('max_doc_tokens')}")
    return out


def _data_dir_of(args: argparse.Namespace, connect: Callable[[argparse.Namespace], Any]) -> str:
    target = args.target
    if "://" in target or storage.exists(storage.join(target, "metadata.json")):
        return target
    from pathlib import Path

    if Path(target).exists():
        raise PreviewError(f"{target} has no metadata.json: not an sft-prep output directory")
    from sft_operator.api.meta import DATAPREP
    from sft_operator.ctl.cluster import find

    (cr,) = find(connect(args), target, want=DATAPREP)
    out = ((cr.get("status") or {}).get("outputs") or {}).get("outputDir")
    if not out:
        phase = (cr.get("status") or {}).get("phase")
        raise PreviewError(f"SFTDataPrep/{target} has no status.outputs.outputDir yet (phase {phase})")
    return str(out)


def run(
    args: argparse.Namespace, connect: Callable[[argparse.Namespace], Any], out: TextIO | None = None
) -> int:
    out = out or sys.stdout
    import pyarrow.parquet as pq

    from sft_operator.ctl.cluster import ClusterError

    try:
        data_dir = _data_dir_of(args, connect)
        meta = json.loads(storage.read_text(storage.join(data_dir, "metadata.json")))
        files = sorted(storage.glob(storage.join(data_dir, "splits", args.split, "*.parquet")))
        if not files:
            raise PreviewError(f"{data_dir} has no {args.split} shards")
        if not 0 <= args.shard < len(files):
            raise PreviewError(f"--shard {args.shard}: the {args.split} split has shards 0–{len(files) - 1}")
        table = pq.read_table(io.BytesIO(storage.read_bytes(files[args.shard])))
        if not 0 <= args.bin < table.num_rows:
            raise PreviewError(f"--bin {args.bin}: {files[args.shard]} has bins 0–{table.num_rows - 1}")
        row = table.slice(args.bin, 1).to_pylist()[0]
    except PreviewError as exc:
        raise ClusterError(str(exc)) from None
    from sft_prep.tokenizer import load_tokenizer

    tok_name = (
        args.tokenizer
        or (meta.get("tokenizer") or {}).get("model")
        or (meta.get("tokenizer") or {}).get("name")
    )
    try:
        tokenizer = load_tokenizer(str(tok_name))
    except Exception as exc:
        raise ClusterError(
            f"cannot load tokenizer {tok_name} (from metadata.json; pass --tokenizer): {exc}"
        ) from None
    color = args.color == "always" or (args.color == "auto" and out.isatty())
    subs = split_bin(
        row["input_ids"],
        row["loss_mask"],
        row.get("seq_start_id") or [0],
        tokenizer.decode,
        eos_id_of(tokenizer, meta),
    )
    trained = sum(s.trained_tokens for s in subs)
    n = len(row["input_ids"])
    pack = meta.get("pack_size")
    print(
        f"{files[args.shard]} bin {args.bin}: {n} of {pack} tokens, {len(subs)} sub-sequence(s), "
        f"{trained} trained tokens",
        file=out,
    )
    legend = f"{GREEN}trained{RESET}" if color else f"{OPEN}trained{CLOSE}"
    print(f"legend: {legend} = labels the loss is computed on; the rest is context", file=out)
    for warning in warnings(meta):
        print(f"warning: {warning}", file=out)
    print(render(subs, color), file=out)
    return 0
