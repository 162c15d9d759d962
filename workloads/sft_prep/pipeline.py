"""One worker's run: plan → (its shards: read → process → pack → Parquet → receipt) → maybe commit.

Worker ``I`` of ``N`` builds the shards whose global index ``s`` satisfies ``s % N == I``. A shard is
the unit of memory (its sequences are held until packed and written; one shard is written in a
background thread while the next is tokenized, so at most two are held), of resumption (a receipt
is written after its Parquet file) and of parallelism. After its own shards, every worker checks
whether all receipts of the run are present; if so it commits: deletes stale files, writes
``blend.json`` and then ``metadata.json`` (the commit marker). Receipts are written before that
check, so the worker that completes the last shard always sees every receipt and commits before it
exits; when two commit at once they write identical bytes (the content is a pure function of the
receipts).

Inside a worker, rows stream from the readers in batches to the text stage (parse, render, chunk,
tokenize): in this process with two batches overlapping (the tokenizer releases the GIL), or, for
large inputs on 4+ CPUs or with ``--processes P``, in P worker processes, since the Python half of
the work would otherwise cap a many-core pod at one core (see ``engine.default_processes``). Batches
are consumed in order either way, so the shards are byte-identical whatever the parallelism.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import IO, Any

import numpy as np

from sft_common import storage
from sft_common.config import ConfigError, ConfigModel, validate
from sft_common.progress import LEASE_WAIT_KEY, LeaseWait, OwnerStatusPatcher, Progress, utcnow_iso
from sft_prep import engine
from sft_prep.config import DatasetSpec, PrepConfig
from sft_prep.identity import Identity, make_identity
from sft_prep.lease import OutputLease, lease_ttl, prepare_output_dir
from sft_prep.metadata import build_blend, build_metadata
from sft_prep.packing import pack
from sft_prep.padding import pad_sequences
from sft_prep.parquet_shard import PackedBins, SequenceStore, packed_parts, write_shard
from sft_prep.process import ProcessResult
from sft_prep.readers import RawRow, ReadMeter, SourceFile, iter_rows, resolve_files
from sft_prep.receipts import RECEIPT_VERSION, Layout, is_done, matches, read_all, read_json, write_json
from sft_prep.sharding import (
    MIN_SHARD_BYTES_PER_PACK_TOKEN,
    Shard,
    effective_num_shards,
    plan_shards,
    plan_split_warnings,
    realized_split_warnings,
)
from sft_prep.stats import ShardCounts
from sft_prep.summary import render_summary, result_payload

TEMP_FILE_AGE = 60.0
"""Seconds after which a temp file in the output root is a leftover of a killed write."""
BATCH_ROWS = 256
"""Rows handed to the processor at once: large enough for batched tokenization, small for memory."""


class NoTrainingData(ConfigError):
    """Every row was dropped: almost always a wrong messages_field, template or input; fail loudly
    and fast (exit 2, one line: rerunning the same data cannot help)."""

    reason = "NoTrainingData"

    def __init__(self, meta: dict[str, Any]) -> None:
        drops = ", ".join(f"{k} {v}" for k, v in sorted(meta["dropped"].items(), key=lambda kv: -kv[1])[:5])
        super().__init__(
            f"no training data: {meta['totals']['rows']} rows read, none kept (dropped: {drops or 'none'}); "
            "check datasets[].messages_field, the input files and chat_template — see metadata.json examples"
        )


class PackSizeTooSmall(ConfigError):
    """No sequence keeps a trained token within the length limit: a config problem (exit 2)."""

    reason = "PackSizeTooSmall"


def no_data_error(cfg: PrepConfig, meta: dict[str, Any], counts: ShardCounts) -> Exception:
    """Why a run kept nothing: a too-small pack_size / max_doc_tokens (with a size that would work),
    or else NoTrainingData."""
    cut = counts.rows.cut_off
    if not cut.get("sequences"):
        return NoTrainingData(meta)
    key = (
        "max_doc_tokens"
        if cfg.max_doc_tokens is not None and cfg.max_doc_tokens < cfg.pack_size
        else "pack_size"
    )
    suggest = 1 << max(6, (max(cut["max_length"], cut["min_to_train"]) - 1).bit_length())
    return PackSizeTooSmall(
        f"{key} {cfg.doc_limit} is too small to hold any sequence: truncated to {cfg.doc_limit} tokens, "
        f"{cut['sequences']} sequence(s) kept no trained token (the first trained token comes after at "
        f"least {cut['min_to_train']} tokens; the longest sequence is {cut['max_length']} tokens); "
        f"try {key}={min(suggest, 1_048_576)}"
    )


class BlendFile(ConfigModel):
    """The JSON file named by ``blend_path``."""

    datasets: list[DatasetSpec]
    """Input datasets, as in the config's ``datasets``."""


def load_datasets(cfg: PrepConfig) -> list[DatasetSpec]:
    if not cfg.blend_path:
        return list(cfg.datasets)
    import json

    try:
        data = json.loads(storage.read_text(cfg.blend_path))
    except (storage.StorageError, ValueError) as exc:
        raise ConfigError(f"blend_path: cannot read {cfg.blend_path} as JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f'blend_path: {cfg.blend_path} must hold an object {{"datasets": [...]}}')
    try:
        blend = validate(BlendFile, data)
    except ConfigError as exc:
        raise ConfigError(f"blend_path {cfg.blend_path}: {exc}") from None
    names = [d.name for d in blend.datasets]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if not names or dupes:
        raise ConfigError(
            f"blend_path {cfg.blend_path}: need ≥1 dataset with unique names (repeated: {dupes})"
        )
    return blend.datasets


@dataclass
class Collected:
    """One shard's tokenized sequences, concatenated in input order, waiting to be packed and written."""

    counts: ShardCounts
    ids: np.ndarray
    mask: np.ndarray
    lengths: np.ndarray
    started: float
    """time.monotonic() when the shard was started (for its receipt)."""


@dataclass
class WorkerTotals:
    """What this worker did, for progress and the final message."""

    rows: int = 0
    tokens: int = 0
    sequences: int = 0
    bins: int = 0
    built: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)


class Worker:
    def __init__(
        self,
        cfg: PrepConfig,
        worker_index: int = 0,
        num_workers: int = 1,
        stdout: IO[str] | None = None,
        processes: int = 0,
    ) -> None:
        if num_workers < 1:
            raise ConfigError(f"--num-workers must be ≥ 1 (got {num_workers})")
        if not 0 <= worker_index < num_workers:
            raise ConfigError(f"--worker-index must be in 0..{num_workers - 1} (got {worker_index})")
        self.cfg = cfg
        self.worker_index = worker_index
        self.num_workers = num_workers
        self.stdout = stdout or sys.stdout
        self.layout = Layout(cfg.output_dir)
        self.totals = WorkerTotals()
        self.processes = processes
        """Text-stage processes (0: automatic, see engine.default_processes)."""
        self.pool: engine.ProcessRunner | None = None
        self.lease: OutputLease | None = None
        self._completed = 0.0
        self._lease_reporter: OwnerStatusPatcher | None = None

    # ----------------------------------------------------------------------------- setup
    def prepare(self) -> None:
        """Resolve inputs, tokenizer, template and the plan; everything that can fail on bad config."""
        cfg = self.cfg
        self.specs = {d.name: d for d in load_datasets(cfg)}
        self.inputs: list[tuple[DatasetSpec, list[SourceFile]]] = [
            (spec, resolve_files(spec, f"datasets[{i}]")) for i, spec in enumerate(self.specs.values())
        ]
        self.engine = engine.load(cfg)
        self.identity: Identity = make_identity(
            cfg, self.inputs, self.engine.tokenizer_info, self.engine.template_info, self.num_workers
        )
        total_bytes = sum(f.size for _, files in self.inputs for f in files)
        unsized = any(f.size <= 0 for _, files in self.inputs for f in files)
        num_shards = effective_num_shards(
            0 if unsized else total_bytes, cfg.num_shards, len(self.inputs), cfg.pack_size, cfg.sample
        )
        self.warnings: list[str] = []
        """Said on stdout now and kept in metadata.json and the summary."""
        lowered = None
        if num_shards < cfg.num_shards:
            lowered = (
                f"num_shards {cfg.num_shards} lowered to {num_shards}: {total_bytes:,} bytes of input give "
                f"each shard at least {MIN_SHARD_BYTES_PER_PACK_TOKEN} x pack_size bytes, or bins would "
                "be packed from a few rows each"
            )
        self.shards: list[Shard] = plan_shards(
            self.inputs, num_shards, cfg.valid_ratio, cfg.test_ratio, cfg.seed, cfg.sample
        )
        drawn = [s for s in self.shards if self.specs[s.dataset].output_split is None]
        split_warnings = plan_split_warnings(cfg.valid_ratio, cfg.test_ratio, drawn, lowered)
        if lowered and not any(w.startswith(lowered) for w in split_warnings):
            self.warnings.append(lowered)
        self.warnings += split_warnings
        for warning in self.warnings:
            print(f"sft-prep: WARNING: {warning}", file=self.stdout)
        self.mine = [s for s in self.shards if s.index % self.num_workers == self.worker_index]

    def _same_run(self, record: dict[str, Any] | None) -> bool:
        if not record:
            return False
        if self.identity.forced:
            return record.get("run_id") == self.identity.run_id
        return record.get("config_hash") == self.identity.config_hash

    # ----------------------------------------------------------------------------- run
    def run(self) -> dict[str, Any]:
        """Prepare, take the output's lease, build this worker's shards, maybe commit."""
        self.prepare()
        prepare_output_dir(self.cfg.output_dir)
        lease = OutputLease(
            self.cfg.output_dir, self.identity.run_id, self.worker_index, lease_ttl(), self._report_lease_wait
        )
        self.lease = lease
        try:
            lease.acquire()  # inside: an interrupt just after the lease is written still frees it
            self._sweep_temp_files()
            result = self._run()
        except BaseException as exc:
            # Alone, nobody else renews it: free the output for a corrected config at once. With
            # several workers the others may still be writing; it expires unless they renew it. On
            # SIGTERM (KeyboardInterrupt: the prep or its pods were deleted) every worker frees it.
            with contextlib.suppress(Exception):  # never hide why the run failed
                if self.num_workers == 1 or isinstance(exc, KeyboardInterrupt):
                    lease.release()
                else:
                    lease.stop()
            raise
        if result.get("metadata"):  # committed or up to date: nobody writes here any more
            lease.release()
        else:
            lease.stop()
        return result

    def _report_lease_wait(self, wait: LeaseWait | None) -> None:
        """Put a wait for another run's lease into this worker's progress entry of its CR's status
        (``status.progress.workers.<i>.leaseWait``, null when it ends), where the operator makes the
        SFTDataPrep's message of it: the holder was only in the pod log."""
        if self._lease_reporter is None:
            self._lease_reporter = OwnerStatusPatcher.from_env(subkey=str(self.worker_index))
            if self._lease_reporter is None:  # not run by the operator: the log line says it
                return
        body = wait.model_dump(mode="json", by_alias=True) if wait is not None else None
        self._lease_reporter.submit({LEASE_WAIT_KEY: body}, force=True)
        if wait is None:
            self._lease_reporter.close()
            self._lease_reporter = None

    def _run(self) -> dict[str, Any]:
        meta = read_json(self.layout.metadata)
        if self._same_run(meta):
            assert meta is not None
            missing = self._missing_files(meta)
            if not missing and meta["totals"]["bins"] == 0:
                raise self._no_data(meta)
            if not missing:
                print(
                    f"sft-prep: {self.cfg.output_dir} is up to date "
                    f"(config {self.identity.config_hash}); nothing to do",
                    file=self.stdout,
                )
                return self._finish(meta, committed=False, up_to_date=True)
            print(
                f"sft-prep: {len(missing)} shard file(s) of the finished run are gone (e.g. {missing[0]}); "
                "withdrawing metadata.json and rebuilding them",
                file=self.stdout,
            )
            storage.delete(self.layout.metadata)
            storage.delete(self.layout.blend)
        elif meta is not None:
            self._retire(meta)
        todo_bytes = sum(s.input_bytes for s in self.mine)
        processes = self.processes or engine.default_processes(todo_bytes)
        self.pool = engine.ProcessRunner(self.cfg, processes) if processes > 1 and self.mine else None
        progress = Progress(
            "sft-prep",
            total=len(self.mine),
            unit="shards",
            rates=("tokens", "rows"),
            owner_key=str(self.worker_index),
        )
        # A shard's tail (pack, lay out, compress, write, receipt) is single-threaded numpy/Arrow work;
        # one background thread does it while the next shard's rows are tokenized, so the cores do not
        # idle. At most one shard is being written while the next is collected: memory stays two
        # shards at most, and shards (and receipts) are still finished in order.
        finisher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sft-prep-write")
        writing: tuple[int, Shard, Future[dict[str, Any]]] | None = None

        def finished(item: tuple[int, Shard, Future[dict[str, Any]]]) -> None:
            done, shard, future = item
            self.totals.bins += int(future.result()["stats"]["bins"])
            self.totals.built.append(shard.index)
            self._advance(progress, done + 1)

        try:
            for done, shard in enumerate(self.mine):
                if is_done(
                    self.layout,
                    shard.index,
                    self.identity.config_hash,
                    self.identity.run_id,
                    self.identity.forced,
                ):
                    self.totals.skipped.append(shard.index)
                    self._advance(progress, done + 1)
                    continue
                collected = self.collect(shard, progress, done)
                if writing is not None:
                    finished(writing)
                writing = (done, shard, finisher.submit(self.finish, shard, collected))
                del collected  # only the writer may hold the shard now, so it is freed once written
            if writing is not None:
                finished(writing)
                writing = None
        finally:
            if writing is not None:  # failed while collecting: let the write in flight end first
                writing[2].exception()
            finisher.shutdown(wait=True)
            progress.close(**self._metrics())
            if self.pool is not None:
                self.pool.close()
                self.pool = None
        meta = self.commit()
        if meta is not None and meta["totals"]["bins"] == 0:
            raise self._no_data(meta)
        if meta is None:
            meta = read_json(self.layout.metadata)
            meta = meta if self._same_run(meta) else None
            return self._finish(meta, committed=False)
        return self._finish(meta, committed=True)

    def _no_data(self, meta: dict[str, Any]) -> Exception:
        receipts = read_all(self.layout, [s.index for s in self.shards]).values()
        counts = ShardCounts.total(ShardCounts.from_dict(r["stats"]) for r in receipts if r)
        return no_data_error(self.cfg, meta, counts)

    def _missing_files(self, meta: dict[str, Any]) -> list[str]:
        present = {_normalize(u) for u in storage.listdir(self.layout.splits_dir)}
        wanted = [self.layout.uri(s["file"]) for s in meta.get("shards", []) if s.get("file")]
        return [u for u in wanted if _normalize(u) not in present]

    def _advance(self, progress: Progress, completed: float) -> None:
        """Report progress in shards; never backwards (a shard's write ends after the next shard's
        rows have been counted in)."""
        self._completed = max(self._completed, completed)
        progress.update(completed=self._completed, **self._metrics())

    def _metrics(self) -> dict[str, int]:
        t = self.totals
        return {"rows": t.rows, "tokens": t.tokens, "sequences": t.sequences, "bins": t.bins}

    def _retire(self, old: dict[str, Any]) -> None:
        """Another config's output is here: withdraw its commit marker before writing anything."""
        old_id = str(old.get("run_id") or "unknown")
        write_json(self.layout.history(old_id), old)
        storage.delete(self.layout.metadata)
        storage.delete(self.layout.blend)
        print(
            f"sft-prep: replacing the run {old_id} in {self.cfg.output_dir} (config or --force changed); "
            f"its metadata is kept as {self.layout.history(old_id)}",
            file=self.stdout,
        )

    # ----------------------------------------------------------------------------- one shard
    def collect(self, shard: Shard, progress: Progress, done: int) -> Collected:
        """Read, parse, render and tokenize one shard's rows (in this thread and the text stage)."""
        spec = self.specs[shard.dataset]
        started = time.monotonic()
        counts = ShardCounts()
        store = SequenceStore()
        meter = ReadMeter(shard.input_bytes)
        processor = self.engine.processor()
        batch: list[RawRow] = []

        def rows() -> Iterator[RawRow]:
            for source in shard.sources:
                yield from iter_rows(
                    source.files,
                    spec,
                    modulus=source.modulus,
                    remainder=source.remainder,
                    limit=source.limit,
                    meter=meter,
                    decode=self.pool is None,
                    max_row_bytes=self.cfg.max_row_bytes,
                )

        def account(n: int, sequences: int, tokens: int) -> None:
            self.totals.rows += n
            self.totals.sequences += sequences
            self.totals.tokens += tokens
            self._advance(progress, done + meter.fraction)

        if self.pool is not None:
            pool = self.pool

            def take_sequences(results: Iterator[tuple[int, engine.BatchSequences]]) -> None:
                for n, sequences_batch in results:
                    counts.rows.merge(sequences_batch.counts)
                    store.extend(sequences_batch.ids, sequences_batch.mask, sequences_batch.lengths)
                    account(n, len(sequences_batch.lengths), sequences_batch.counts.tokens)

            for raw in rows():
                batch.append(raw)
                if len(batch) >= BATCH_ROWS:
                    take_sequences(pool.submit(shard.dataset, spec.messages_field, spec.tools_field, batch))
                    batch = []
            if batch:
                take_sequences(pool.submit(shard.dataset, spec.messages_field, spec.tools_field, batch))
            take_sequences(pool.drain())
        else:

            def take(results: Iterator[tuple[int, ProcessResult]]) -> None:
                for n, result in results:
                    account(n, engine.consume(result, counts, store), result.counts.tokens)

            with engine.BatchRunner(
                processor, shard.dataset, spec.messages_field, spec.tools_field
            ) as runner:
                for raw in rows():
                    batch.append(raw)
                    if len(batch) >= BATCH_ROWS:
                        take(runner.submit(batch))
                        batch = []
                if batch:
                    take(runner.submit(batch))
                take(runner.drain())

        ids, mask, lengths = store.take()
        return Collected(counts, ids, mask, lengths, started)

    def finish(self, shard: Shard, collected: Collected) -> dict[str, Any]:
        """Pack, lay out, write the Parquet file, then the receipt; returns the receipt. Runs in the
        writer thread, so it touches only this shard's data (no worker totals, no progress)."""
        cfg = self.cfg
        counts, ids, mask, lengths = collected.counts, collected.ids, collected.mask, collected.lengths
        started = collected.started
        if cfg.pad_seq_to_mult > 1:
            assert self.engine.pad_id is not None
            real_tokens = len(ids)
            ids, mask, lengths = pad_sequences(ids, mask, lengths, cfg.pad_seq_to_mult, self.engine.pad_id)
            counts.pad_tokens = len(ids) - real_tokens
        packing = pack(lengths, cfg.pack_size, cfg.algorithm, seed=shard_seed(cfg.seed, shard.index))
        bin_order = None
        if cfg.algorithm != "first_fit_shuffle" and packing.num_bins > 1:
            # Decreasing algorithms create bins longest-first; write them in a seeded random order so a
            # sequential reader does not see all long conversations first.
            bin_order = np.random.default_rng(shard_seed(cfg.seed, shard.index)).permutation(packing.num_bins)
        counts.bins = packing.num_bins

        def parts() -> Iterator[PackedBins]:
            for part in packed_parts(ids, mask, lengths, packing, bin_order, cfg.parquet_row_group_size):
                counts.label_tokens += int(part.loss_mask.sum(dtype=np.int64))
                yield part

        rel: str | None = None
        size = 0
        if packing.num_bins:
            rel = shard.rel_path
            size = write_shard(
                self.layout.uri(rel), parts(), cfg.parquet_row_group_size, cfg.parquet_compression
            )
        receipt = {
            "version": RECEIPT_VERSION,
            "status": "completed",
            "shard": shard.index,
            "name": shard.name,
            "dataset": shard.dataset,
            "split": shard.split,
            "weight": shard.weight,
            "file": rel,
            "bytes": size,
            "config_hash": self.identity.config_hash,
            "run_id": self.identity.run_id,
            "worker": self.worker_index,
            "seconds": round(time.monotonic() - started, 3),
            "completed_at": utcnow_iso(),
            "stats": counts.to_dict(),
        }
        write_json(self.layout.receipt(shard.index), receipt)
        return receipt

    # ----------------------------------------------------------------------------- commit
    def commit(self) -> dict[str, Any] | None:
        """Write blend.json and metadata.json if every shard of this run has its receipt."""
        ident = self.identity
        receipts = read_all(self.layout, [s.index for s in self.shards])
        if not all(matches(r, ident.config_hash, ident.run_id, ident.forced) for r in receipts.values()):
            return None
        if self.lease is not None:
            self.lease.check()
        done = {i: r for i, r in receipts.items() if r is not None}
        self._delete_stale(done)
        sources = {spec.name: [f.uri for f in files] for spec, files in self.inputs}
        meta = build_metadata(
            config=self.cfg.model_dump(mode="json"),
            identity=ident.to_dict(),
            shards=self.shards,
            receipts=done,
            sources=sources,
            encoding=self.engine.encoding_info,
            pad_token_id=self.engine.pad_id,
        )
        meta["num_shards_requested"] = self.cfg.num_shards
        meta["warnings"] = self.warnings + realized_split_warnings(
            self.cfg.valid_ratio, self.cfg.test_ratio, meta["splits"]
        )
        write_json(self.layout.blend, build_blend(self.cfg.output_dir, self.shards, done))
        write_json(self.layout.metadata, meta)
        from sft_prep.wandb_log import log_artifact

        log_artifact(self.cfg, meta, self.layout)
        return meta

    def _sweep_temp_files(self) -> None:
        """Temp files of atomic writes a kill interrupted (``.metadata.json.XXXX.tmp``) in the output
        root. Only old ones: a worker of this run may be committing right now (a write takes
        milliseconds). splits/ and receipts/ are cleaned at commit."""
        if storage.is_remote(self.cfg.output_dir):
            return  # S3 writes are single PUTs: nothing is left behind
        root = storage._local(self.cfg.output_dir)
        cutoff = time.time() - TEMP_FILE_AGE
        for path in root.glob(".*.tmp"):
            with contextlib.suppress(OSError):
                if path.is_file() and path.stat().st_mtime < cutoff:
                    path.unlink()
                    print(f"sft-prep: removed {path.name}, left by an interrupted write", file=self.stdout)

    def _delete_stale(self, receipts: dict[int, dict[str, Any]]) -> None:
        """Files of earlier configs (other shard counts/splits) and stray temp files must not be read."""
        keep = {_normalize(self.layout.uri(r["file"])) for r in receipts.values() if r.get("file")}
        keep |= {_normalize(self.layout.receipt(i)) for i in receipts}
        for directory in (self.layout.splits_dir, self.layout.receipts_dir):
            for uri in storage.listdir(directory):
                if _normalize(uri) not in keep:
                    storage.delete(uri)

    # ----------------------------------------------------------------------------- result
    def _finish(
        self, meta: dict[str, Any] | None, committed: bool, up_to_date: bool = False
    ) -> dict[str, Any]:
        if meta is not None:
            print(render_summary(meta), file=self.stdout)
        elif self.num_workers > 1:
            print(
                f"sft-prep: worker {self.worker_index} finished its {len(self.mine)} shard(s); "
                "another worker writes blend.json and metadata.json when the last shard is done",
                file=self.stdout,
            )
        receipts = read_all(self.layout, [s.index for s in self.shards]) if meta is None else None
        done = (
            len(self.shards)
            if meta is not None
            else sum(
                matches(r, self.identity.config_hash, self.identity.run_id, self.identity.forced)
                for r in (receipts or {}).values()
            )
        )
        return result_payload(
            output_dir=self.cfg.output_dir,
            blend=self.layout.blend if meta is not None else None,
            metadata_uri=self.layout.metadata if meta is not None else None,
            meta=meta,
            pack_size=self.cfg.pack_size,
            pad_seq_to_mult=self.cfg.pad_seq_to_mult,
            shards_done=done,
            shards_total=len(self.shards),
            worker=self.worker_index,
            extra={
                "runId": self.identity.run_id,
                "configHash": self.identity.config_hash,
                "shardsBuilt": len(self.totals.built),
                "shardsSkipped": len(self.totals.skipped),
                "committed": committed,
                "upToDate": up_to_date,
            },
        )


def _normalize(uri: str) -> str:
    return uri[len("file://") :] if uri.startswith("file://") else uri


def shard_seed(seed: int, shard_index: int) -> int:
    """Independent, reproducible randomness per shard (first_fit_shuffle order, bin order)."""
    return int(np.random.SeedSequence([seed & 0xFFFFFFFF, shard_index]).generate_state(1)[0])


def run(
    cfg: PrepConfig,
    worker_index: int = 0,
    num_workers: int = 1,
    stdout: IO[str] | None = None,
    processes: int = 0,
) -> dict[str, Any]:
    return Worker(cfg, worker_index, num_workers, stdout, processes).run()


__all__: Sequence[str] = ("Worker", "load_datasets", "run", "shard_seed")
