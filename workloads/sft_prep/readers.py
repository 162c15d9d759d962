"""Streaming input: JSONL (optionally gzipped), Parquet and Hugging Face hub datasets → raw chat rows.

Rows are yielded one at a time so that a worker's memory is bounded by the shard it builds, never by
the dataset. A line that is not JSON becomes a :class:`RowError` row (counted downstream, never fatal).
A shard reads a :class:`~sft_prep.sharding.ShardSource`: the concatenation of some files, optionally cut
to the first ``limit`` rows (``sample``), keeping the rows whose index is ``remainder`` modulo
``modulus``. Rows owned by other shards are skipped before JSON decoding, which keeps that cheap.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sft_common import storage
from sft_common.config import ConfigError
from sft_prep.chat import RowError, parse_json_row
from sft_prep.config import DatasetSpec

JSONL_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz", ".ndjson")
PARQUET_SUFFIXES = (".parquet",)
HF_SCHEME = "hf://"


@dataclass(frozen=True)
class SourceFile:
    """One input file (or a whole hub dataset) with its size, which balances files across shards."""

    uri: str
    size: int


@dataclass(slots=True)  # not frozen: one per row, and a frozen init costs 4x
class RawRow:
    """A row as read: where it came from (for error examples) and the decoded object or its error."""

    location: str
    """'file.jsonl:LINE' (1-based line) or 'file.parquet#ROW' (0-based row)."""
    row: dict[str, Any] | RowError | bytes
    """Decoded row, its error, or (``decode=False``) the raw JSON line for a worker process to decode."""

    def decoded(self) -> dict[str, Any] | RowError:
        return decode_line(self.row) if isinstance(self.row, bytes) else self.row


class ReadMeter:
    """Bytes consumed so far versus bytes to read: the fraction behind a shard's ETA."""

    def __init__(self, total_bytes: int) -> None:
        self.total_bytes = max(total_bytes, 0)
        self.done_bytes = 0.0

    @property
    def fraction(self) -> float:
        return min(self.done_bytes / self.total_bytes, 1.0) if self.total_bytes else 0.0


def input_format(uri: str) -> str:
    lower = uri.lower()
    if lower.startswith(HF_SCHEME):
        return "hf"
    if lower.endswith(PARQUET_SUFFIXES):
        return "parquet"
    if lower.endswith(JSONL_SUFFIXES):
        return "jsonl"
    raise ConfigError(
        f"{uri}: unsupported input file type; use JSONL ({', '.join(JSONL_SUFFIXES)}) or Parquet (.parquet)"
    )


def resolve_files(spec: DatasetSpec, where: str) -> list[SourceFile]:
    """Expand a dataset's path (file, directory, glob, s3 prefix, hf://) into sized input files."""
    path = spec.path
    if path.startswith(HF_SCHEME):
        if not path[len(HF_SCHEME) :].strip("/"):
            raise ConfigError(f"{where}.path: {path!r} needs a dataset id, e.g. hf://org/name")
        return [SourceFile(path, 0)]
    if any(ch in path for ch in "*?["):
        uris = storage.glob(path)
    elif storage.exists(path) and _is_container(path):
        uris = [u for u in storage.listdir(path) if u.lower().endswith(JSONL_SUFFIXES + PARQUET_SUFFIXES)]
    elif storage.exists(path):
        uris = [path]
    else:
        raise ConfigError(f"{where}.path: {path} does not exist")
    uris = sorted(u for u in uris if not storage.name(u).startswith("."))
    if not uris:
        raise ConfigError(f"{where}.path: no JSONL or Parquet files found at {path}")
    for uri in uris:
        input_format(uri)  # unsupported types fail here, before any work
    return [SourceFile(u, storage.size(u)) for u in uris]


def _is_container(uri: str) -> bool:
    if storage.is_remote(uri):
        # an exact object is a file; otherwise exists() was true because keys live below it
        _, key = storage.split_s3(uri)
        return not key or not _s3_object_exists(uri)
    return storage._local(uri).is_dir()


def _s3_object_exists(uri: str) -> bool:
    try:
        storage.size(uri)
        return True
    except storage.StorageError:
        return False


def iter_rows(
    files: tuple[str, ...],
    spec: DatasetSpec,
    *,
    modulus: int = 1,
    remainder: int = 0,
    limit: int | None = None,
    meter: ReadMeter | None = None,
    decode: bool = True,
) -> Iterator[RawRow]:
    """Rows of the concatenated ``files`` with index ≡ remainder (mod modulus), among the first ``limit``.

    ``decode=False`` leaves JSONL lines as bytes, so JSON decoding can happen in a worker process.
    """
    index = 0
    for uri in files:
        if limit is not None and index >= limit:
            return
        fmt = input_format(uri)
        if fmt == "jsonl":
            rows, where = _jsonl(uri, meter), f"{storage.name(uri)}:"
        elif fmt == "parquet":
            rows, where = _parquet(uri, spec, meter), f"{storage.name(uri)}#"
        else:
            rows, where = _hub(uri, spec), f"{uri[len(HF_SCHEME) :].strip('/')}#"
        # Every worker reads every line of a file and keeps its share: the per-line work for the
        # others' rows is kept to a counter (no location string, no decoding).
        for number, payload in rows:
            if limit is not None and index >= limit:
                return
            mine = index % modulus == remainder
            index += 1
            if mine:
                yield RawRow(
                    f"{where}{number}",
                    decode_line(payload) if decode and isinstance(payload, bytes) else payload,
                )


def decode_line(line: bytes) -> dict[str, Any] | RowError:
    """JSON-decode a line only once it is known to be ours (other shards' rows cost a line split)."""
    try:
        return parse_json_row(line)
    except RowError as err:
        return err


def _jsonl(uri: str, meter: ReadMeter | None) -> Iterator[tuple[int, bytes]]:
    """(1-based line number, line) of the non-blank lines."""
    with storage.local_path(uri) as local:
        raw = open(local, "rb")  # noqa: SIM115 - wrapped below and closed in finally
        try:
            stream: io.BufferedIOBase | gzip.GzipFile = (
                gzip.GzipFile(fileobj=raw) if uri.lower().endswith(".gz") else raw
            )
            base = meter.done_bytes if meter is not None else 0.0
            compressed = stream is not raw
            for lineno, line in enumerate(stream, start=1):
                if meter is not None:
                    meter.done_bytes = base + raw.tell() if compressed else meter.done_bytes + len(line)
                if not line or line.isspace():
                    continue  # blank lines (often a trailing newline) are not rows
                yield lineno, line
        finally:
            raw.close()


def _parquet(uri: str, spec: DatasetSpec, meter: ReadMeter | None) -> Iterator[tuple[int, Any]]:
    """(0-based row number, record)."""
    import pyarrow.parquet as pq

    with storage.local_path(uri) as local:
        pf = pq.ParquetFile(local)
        columns = pf.schema_arrow.names
        if spec.messages_field not in columns:
            raise ConfigError(
                f"{uri}: no column {spec.messages_field!r} (messages_field); "
                f"columns are: {', '.join(columns)}"
            )
        wanted = [c for c in (spec.messages_field, spec.tools_field) if c in columns]
        total_rows = max(pf.metadata.num_rows, 1)
        file_size = local.stat().st_size
        row = 0
        for batch in pf.iter_batches(batch_size=512, columns=wanted):
            for record in batch.to_pylist():
                yield row, record
                row += 1
            if meter is not None:
                meter.done_bytes += file_size * batch.num_rows / total_rows


def _hub(uri: str, spec: DatasetSpec) -> Iterator[tuple[int, Any]]:
    """A hub dataset streamed with the ``datasets`` library, imported only when a dataset needs it."""
    repo = uri[len(HF_SCHEME) :].strip("/")
    try:
        import datasets  # type: ignore[import-not-found]
    except ImportError:
        raise ConfigError(
            f"{uri}: hf:// inputs need the 'datasets' package (pip install datasets), not installed; "
            "or download the dataset and point path at its JSONL/Parquet files"
        ) from None
    try:
        stream = datasets.load_dataset(repo, spec.subset, split=spec.split, streaming=True)
        iterator = iter(stream)
    except Exception as exc:
        raise ConfigError(
            f"{uri}: cannot open hub dataset {repo!r} (split {spec.split!r}, subset {spec.subset!r}): "
            f"{type(exc).__name__}: {exc}. Offline (HF_HUB_OFFLINE=1) or no access? Check the id, split, "
            "subset and HF_TOKEN, or download the files and use a local/s3 path."
        ) from None
    for i, record in enumerate(iterator):
        yield i, dict(record)
