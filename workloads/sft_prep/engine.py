"""The pipeline's view of the text stage: load tokenizer + template once, turn raw rows into sequences.

Kept apart from :mod:`sft_prep.pipeline` so the pipeline depends on one small surface of the text
semantics (``process.RowProcessor``), and so the run identity can fingerprint exactly what decides the
token stream: the tokenizer's serialized rules (not only its name) and the template text.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sft_prep.config import PrepConfig
from sft_prep.parquet_shard import SequenceStore
from sft_prep.process import ProcessResult, RowProcessor
from sft_prep.readers import RawRow
from sft_prep.stats import ShardCounts
from sft_prep.template import load_template
from sft_prep.tokenize import Tokenizer, load_tokenizer


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tokenizer_fingerprint(tokenizer: Tokenizer) -> str:
    """Hash of the tokenizer's rules: the serialized Rust tokenizer when there is one."""
    backend = tokenizer.backend
    tok = getattr(backend, "tok", None)
    to_str = getattr(tok, "to_str", None)
    if callable(to_str):
        return hashlib.sha256(to_str().encode()).hexdigest()
    # transformers fallback: the vocabulary decides the ids
    vocab = getattr(tok, "get_vocab", None)
    if callable(vocab):
        return hashlib.sha256(repr(sorted(vocab().items())).encode()).hexdigest()
    return hashlib.sha256(tokenizer.name.encode()).hexdigest()


@dataclass
class Engine:
    processor_: RowProcessor
    tokenizer_info: dict[str, Any]
    template_info: dict[str, Any]

    def processor(self) -> RowProcessor:
        return self.processor_


def load(cfg: PrepConfig) -> Engine:
    """Everything that can fail on a bad tokenizer/template setting fails here, before any shard."""
    tokenizer = load_tokenizer(cfg.tokenizer.model, cfg.tokenizer.revision)
    template = load_template(cfg.chat_template, tokenizer.chat_template)
    processor = RowProcessor(tokenizer, template, cfg.doc_limit)
    info = processor.describe()
    tokenizer_info = {
        **info["tokenizer"],
        "model": cfg.tokenizer.model,
        "revision": cfg.tokenizer.revision,
        "sha256": tokenizer_fingerprint(tokenizer),
    }
    template_info = {
        "name": template.name,
        "sha256": hashlib.sha256(template.text.encode()).hexdigest(),
        "chunker": info["chunker"],
    }
    return Engine(processor, tokenizer_info, template_info)


class BatchRunner:
    """Run ``RowProcessor.process`` on a few batches at once; results come back in submission order.

    Why threads help although Python has a GIL: a batch spends most of its time in the tokenizer's
    ``encode_batch``, which releases the GIL and runs in Rust threads, while parsing, rendering and
    chunking the next batch is Python. Overlapping the two keeps the cores busy. The processor holds no
    per-batch state, and results are consumed in order, so the output is identical to a serial run.

    The row reference passed on is the reader's location (``file.jsonl:LINE`` / ``file.parquet#ROW``),
    which is what a person needs to find a dropped row.
    """

    def __init__(
        self, processor: RowProcessor, dataset: str, messages_field: str, tools_field: str, depth: int = 2
    ) -> None:
        self.processor = processor
        self.dataset = dataset
        self.messages_field = messages_field
        self.tools_field = tools_field
        self.depth = max(1, depth)
        self._pool = ThreadPoolExecutor(max_workers=self.depth, thread_name_prefix="sft-prep-batch")
        self._pending: deque[tuple[int, Future[ProcessResult]]] = deque()

    def _run(self, rows: Sequence[RawRow]) -> ProcessResult:
        return self.processor.process(
            ((self.dataset, raw.location, raw.row) for raw in rows),  # type: ignore[misc]
            messages_field=self.messages_field,
            tools_field=self.tools_field,
        )

    def submit(self, rows: Sequence[RawRow]) -> Iterator[tuple[int, ProcessResult]]:
        """Queue a batch; yields (rows, result) of the oldest batches once ``depth`` are in flight."""
        self._pending.append((len(rows), self._pool.submit(self._run, list(rows))))
        while len(self._pending) > self.depth:
            n, future = self._pending.popleft()
            yield n, future.result()

    def drain(self) -> Iterator[tuple[int, ProcessResult]]:
        while self._pending:
            n, future = self._pending.popleft()
            yield n, future.result()

    def close(self) -> None:
        for _, future in self._pending:
            future.cancel()
        self._pending.clear()
        self._pool.shutdown(wait=True)

    def __enter__(self) -> BatchRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def consume(result: ProcessResult, counts: ShardCounts, store: SequenceStore) -> int:
    """Add one batch's sequences to the shard; returns how many."""
    counts.rows.merge(result.counts)
    for seq in result.sequences:
        store.add(seq.input_ids, seq.loss_mask)
    return len(result.sequences)
