"""The pipeline's view of the text stage: load tokenizer + template once, turn raw rows into sequences.

Kept apart from :mod:`sft_prep.pipeline` so the pipeline depends on one small surface of the text
semantics (``process.RowProcessor``), and so the run identity can fingerprint exactly what decides the
token stream: the tokenizer's serialized rules (not only its name) and the template text.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from sft_common.config import ConfigError
from sft_common.cpus import usable_cpus
from sft_common.lifetime import die_with_parent
from sft_prep import padding
from sft_prep.config import PrepConfig
from sft_prep.parquet_shard import SequenceStore
from sft_prep.process import Counts as RowCounts
from sft_prep.process import ProcessResult, RowProcessor
from sft_prep.readers import RawRow
from sft_prep.stats import ShardCounts
from sft_prep.template import load_template
from sft_prep.tokenizer import Tokenizer, load_tokenizer


def tokenizer_fingerprint(tokenizer: Tokenizer) -> str:
    """Hash of the tokenizer's rules: the serialized Rust tokenizer when there is one."""
    backend = tokenizer.backend
    tok = getattr(backend, "tok", None)
    serialized = getattr(backend, "serialized", None)
    if callable(serialized):
        return hashlib.sha256(serialized().encode()).hexdigest()
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
    encoding_info: dict[str, Any]
    """How sequences are tokenized (``strategy``, ``why``) for metadata.json; not part of the run
    identity, which the tokenizer and template already decide."""
    pad_id: int | None = None
    """Token that pads sequences to ``pad_seq_to_mult`` (the eos id); None when nothing is padded."""

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
    pad_id = padding.pad_token_id(tokenizer) if cfg.pad_seq_to_mult > 1 else None
    return Engine(processor, tokenizer_info, template_info, info["encoding"], pad_id)


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
            ((self.dataset, raw.location, raw.decoded()) for raw in rows),
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
    store.extend(result.ids, result.mask, result.lengths)
    return len(result.lengths)


# --------------------------------------------------------------------------- worker processes

_CHILD: RowProcessor | None = None


def _init_child(config_json: str, parent_pid: int | None = None) -> None:
    """Build this process's own processor. One tokenizer thread per process: the processes are the
    parallelism, and Rust thread pools in every process would only fight over the same cores."""
    global _CHILD
    if parent_pid is not None:
        die_with_parent(parent_pid)
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    cfg = PrepConfig.model_validate_json(config_json)
    tokenizer = load_tokenizer(cfg.tokenizer.model, cfg.tokenizer.revision)
    _CHILD = RowProcessor(tokenizer, load_template(cfg.chat_template, tokenizer.chat_template), cfg.doc_limit)


_ChildResult = tuple[np.ndarray, np.ndarray, np.ndarray, RowCounts]


def _child_process(dataset: str, messages_field: str, tools_field: str, rows: list[RawRow]) -> _ChildResult:
    """Decode, render, chunk, tokenize one batch; return its sequences concatenated (cheap to pickle)."""
    assert _CHILD is not None, "worker process not initialised"
    result = _CHILD.process(
        ((dataset, raw.location, raw.decoded()) for raw in rows),
        messages_field=messages_field,
        tools_field=tools_field,
    )
    return result.ids, result.mask, result.lengths, result.counts


@dataclass
class BatchSequences:
    """One batch's sequences, concatenated, with the batch's counts (not yet packed: the store packs them)."""

    ids: np.ndarray
    mask: np.ndarray
    lengths: np.ndarray
    counts: RowCounts


class ProcessRunner:
    """The text stage in ``processes`` worker processes, results in submission order.

    Parsing, rendering and chunking are Python and run on one core per process; with one process the
    tokenizer would use every core while the Python half of the work stays serial, so on a many-core
    pod throughput would stop at one core's worth of Python. JSON lines travel undecoded (bytes), and
    sequences come back as three arrays per batch. Start-up (imports, tokenizer load) costs about a
    second per process, so the pipeline uses this only for large inputs on 4+ CPUs or when asked to.
    """

    def __init__(self, cfg: PrepConfig, processes: int) -> None:
        self.processes = processes
        self._pool = ProcessPoolExecutor(
            max_workers=processes,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_child,
            initargs=(cfg.model_dump_json(), os.getpid()),
        )
        self._pending: deque[tuple[int, Future[tuple[np.ndarray, np.ndarray, np.ndarray, RowCounts]]]] = (
            deque()
        )

    def submit(
        self, dataset: str, messages_field: str, tools_field: str, rows: Sequence[RawRow]
    ) -> Iterator[tuple[int, BatchSequences]]:
        future = self._pool.submit(_child_process, dataset, messages_field, tools_field, list(rows))
        self._pending.append((len(rows), future))
        while len(self._pending) > 2 * self.processes:
            yield self._pop()

    def drain(self) -> Iterator[tuple[int, BatchSequences]]:
        while self._pending:
            yield self._pop()

    def _pop(self) -> tuple[int, BatchSequences]:
        n, future = self._pending.popleft()
        return n, BatchSequences(*future.result())

    def close(self) -> None:
        for _, future in self._pending:
            future.cancel()
        self._pending.clear()
        self._pool.shutdown(wait=True, cancel_futures=True)


def default_processes(input_bytes: int, cpus: int | None = None) -> int:
    """Worker processes for a worker that reads ``input_bytes`` with ``cpus`` usable CPUs (default:
    :func:`usable_cpus`): 1 for small inputs (start-up would dominate) and for fewer than
    ``MIN_CPUS_FOR_PROCESSES`` CPUs, else the CPUs, at most 8 (``SFT_PREP_PROCESSES`` overrides)."""
    override = os.environ.get("SFT_PREP_PROCESSES")
    if override:
        try:
            return max(1, int(override))
        except ValueError:
            raise ConfigError(f"SFT_PREP_PROCESSES must be an integer, got {override!r}") from None
    if input_bytes < 64 * 2**20:
        return 1
    cpus = usable_cpus() if cpus is None else cpus
    if cpus < MIN_CPUS_FOR_PROCESSES:
        return 1
    return max(1, min(cpus, 8))


MIN_CPUS_FOR_PROCESSES = 4
"""Below this, one process with a threaded tokenizer is faster and cheaper than a process pool.

In one process the tokenizer's Rust threads use every core while Python (parse, render, chunk) runs
on one (about a fifth of the CPU time), so one process keeps ~2 cores busy. A pool costs a tokenizer
load and joint plan per process, pickling rows and results, and a parent competing for the cores:
on 2 CPUs and 100k conversations (bench-prep) a pool of 2 took 28.3 s wall / 53.6 CPU-s against
28.1 s / 47.6 CPU-s for one process. With 4+ CPUs the serial Python half would cap one process, so
use a pool."""
