"""Streaming input: JSONL (optionally gzipped), Parquet and Hugging Face hub datasets → raw chat rows.

Rows are yielded one at a time so that a worker's memory is bounded by the shard it builds, never by
the dataset. A line that is not JSON (or nested too deeply, or holding a lone surrogate, or longer than
``max_row_bytes``, refused before it is parsed) and a Parquet or hub row whose strings are over
``max_row_bytes`` become a :class:`RowError` row: counted downstream,
never fatal. A file that cannot be read as a whole (not gzip, truncated, not Parquet, unreadable)
stops the run with :class:`InputFileError` (exit 2) naming the file and what is wrong: skipping it
would silently train on part of the data.

JSONL is read as UTF-8 (a BOM is dropped) in chunks split on ``\n``, so a line's memory is bounded
by ``max_row_bytes``. A UTF-16/UTF-32 file (BOM, or NUL bytes in the first bytes) is transcoded,
and a file whose first 64 KiB have ``\r`` but no ``\n`` (old Mac line endings) is split on ``\r``;
both are said on stderr once per file.
A shard reads a :class:`~sft_prep.sharding.ShardSource`: the concatenation of some files, optionally cut
to the first ``limit`` rows (``sample``), keeping the rows whose index is ``remainder`` modulo
``modulus``. Rows owned by other shards are skipped before JSON decoding, which keeps that cheap.
"""

from __future__ import annotations

import codecs
import gzip
import io
import os
import re
import sys
import zlib
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from sft_common import storage
from sft_common.config import ConfigError
from sft_prep.chat import RowError, parse_json_row
from sft_prep.config import DatasetSpec

JSONL_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz", ".ndjson")
PARQUET_SUFFIXES = (".parquet",)
HF_SCHEME = "hf://"
READ_CHUNK = 1 << 20
"""Bytes read at a time from a JSONL stream."""
SNIFF_BYTES = 64 * 1024
"""Bytes looked at to decide a JSONL file's encoding and line ending."""


class InputFileError(ConfigError):
    """An input file that cannot be read as a whole: the message names it and says what is wrong."""

    reason = "BadInputFile"


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
        if not storage.is_remote(uri) and not os.access(storage._local(uri), os.R_OK):
            raise InputFileError(
                f"{where}.path: {uri} is not readable by this user (uid {os.getuid()}); "
                "fix its permissions (e.g. chmod a+r) or the volume's fsGroup"
            )
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
    max_row_bytes: int | None = None,
) -> Iterator[RawRow]:
    """Rows of the concatenated ``files`` with index ≡ remainder (mod modulus), among the first ``limit``.

    ``decode=False`` leaves JSONL lines as bytes, so JSON decoding can happen in a worker process.
    A row over ``max_row_bytes`` becomes ``RowError('row_too_large')``: a JSONL line by its length,
    unread; a Parquet or hub row by the UTF-8 bytes of its strings (:func:`text_bytes`).
    """
    index = 0
    for uri in files:
        if limit is not None and index >= limit:
            return
        fmt = input_format(uri)
        if fmt == "jsonl":
            rows, where = _jsonl(uri, meter, max_row_bytes), f"{storage.name(uri)}:"
        elif fmt == "parquet":
            rows, where = _parquet(uri, spec, meter, max_row_bytes), f"{storage.name(uri)}#"
        else:
            rows, where = _hub(uri, spec, max_row_bytes), f"{uri[len(HF_SCHEME) :].strip('/')}#"
        # Every worker reads every line of a file and keeps its share: the per-line work for the
        # others' rows is kept to a counter (no location string, no decoding).
        try:
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
        except ConfigError:
            raise
        except Exception as exc:
            raise InputFileError(f"{uri}: {describe_read_error(uri, exc)}") from None
        finally:
            rows.close()


def describe_read_error(uri: str, exc: BaseException) -> str:
    """What is wrong with a file that failed mid-read, in words (and what to do)."""
    if isinstance(exc, gzip.BadGzipFile):
        return f"not a gzip file ({exc}); rename it without .gz if it is plain JSONL, or recompress it"
    if isinstance(exc, EOFError):
        return "truncated: the compressed stream ends early (an interrupted copy?); copy the file again"
    if isinstance(exc, zlib.error):
        return f"corrupt compressed data ({exc}); copy or recompress the file"
    if isinstance(exc, UnicodeError):
        return f"not decodable text ({exc}); convert it to UTF-8 (e.g. iconv -t UTF-8)"
    if isinstance(exc, storage.StorageError):
        return str(exc).removeprefix(f"{uri}: ")
    if isinstance(exc, OSError):
        return f"cannot be read: {exc.strerror or exc}"
    name = type(exc).__name__
    if name.startswith("Arrow") or type(exc).__module__.startswith("pyarrow"):
        return f"not a readable Parquet file ({name}: {exc}); is it truncated or another format?"
    return f"{name}: {exc}"


_LONG_DIGITS = re.compile(rb"[0-9]{19}")
"""A run of 19+ digits: the only valid JSON whose value orjson and ``json`` decode differently
(an integer beyond 64 bits becomes a float in orjson, stays an exact int in ``json``)."""


def decode_line(line: bytes) -> dict[str, Any] | RowError:
    """JSON-decode a line only once it is known to be ours (other shards' rows cost a line split).

    orjson decodes (~3x faster than ``json``, which was a tenth of the serial path's CPU); a line it
    accepts decodes to what ``json`` gives, so it is returned as is. Every line it refuses goes through
    :func:`~sft_prep.chat.parse_json_row` (``json``), so a bad row gets the same reason and message
    as before, and ``json``'s extensions stay rows as before: NaN/Infinity, a UTF-8 BOM, lone
    surrogates (orjson refuses them, ``json`` decodes them and the row is counted ``bad_text``),
    nesting over orjson's 1024 levels. A line with 19+ consecutive digits goes to ``json`` too, since
    orjson turns an integer beyond 64 bits into a float (tests/prep/test_hostile_inputs.py
    compares both parsers line by line).
    """
    try:
        if _LONG_DIGITS.search(line) is None:
            row = orjson.loads(line)
            if isinstance(row, dict):
                return row
    except orjson.JSONDecodeError:
        pass
    try:
        return parse_json_row(line)
    except RowError as err:
        return err


_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


def sniff_jsonl(head: bytes) -> tuple[str, int, bytes]:
    """(encoding, BOM length, line separator) of a JSONL file from its first bytes.

    JSON text starts with ASCII (``{``, whitespace), so a UTF-16/32 file without a BOM shows NUL bytes
    around it; UTF-8 text never holds NUL bytes."""
    found = [(bom, encoding) for bom, encoding in _BOMS if head.startswith(bom)]
    if found:
        bom, encoding = found[0]
    else:
        bom, encoding = b"", "utf-8"
        if b"\0" in head[:4]:
            first = head[:4]
            encoding = (
                "utf-32-le"
                if first[1:4] == b"\0\0\0"
                else "utf-32-be"
                if first[:3] == b"\0\0\0"
                else "utf-16-le"
                if first[1:2] == b"\0"
                else "utf-16-be"
            )
    text = head if encoding == "utf-8" else head[len(bom) :].decode(encoding, errors="ignore").encode()
    separator = b"\r" if b"\r" in text and b"\n" not in text else b"\n"
    return encoding, len(bom), separator


def _jsonl(
    uri: str, meter: ReadMeter | None, max_row_bytes: int | None
) -> Generator[tuple[int, Any], None, None]:
    """(1-based line number, line or RowError) of the non-blank lines."""
    limit = max_row_bytes or sys.maxsize
    with storage.local_path(uri) as local:
        raw = open(local, "rb")  # noqa: SIM115 - wrapped below and closed in finally
        try:
            stream: io.BufferedIOBase | gzip.GzipFile = (
                gzip.GzipFile(fileobj=raw) if uri.lower().endswith(".gz") else raw
            )
            compressed = stream is not raw
            head = stream.read(SNIFF_BYTES)
            encoding, bom, separator = sniff_jsonl(head)
            if encoding != "utf-8" or separator != b"\n":
                print(
                    f"sft-prep: {storage.name(uri)}: reading as {encoding.upper()}"
                    + (" with CR-only line endings" if separator == b"\r" else ""),
                    file=sys.stderr,
                )
            base = meter.done_bytes if meter is not None else 0.0
            consumed = 0

            def read(n: int) -> bytes:
                nonlocal consumed
                data = stream.read(n)
                consumed += len(data)
                if meter is not None:
                    meter.done_bytes = base + (raw.tell() if compressed else consumed + len(head))
                return data

            if encoding == "utf-8":
                first = head[bom:]
            else:  # transcode to UTF-8 chunk by chunk (an incremental decoder keeps split characters)
                # surrogatepass: a lone surrogate stays one bad row (bad_json), not a failed file
                decoder = codecs.getincrementaldecoder(encoding)("surrogatepass")
                plain = read

                def read(n: int) -> bytes:
                    data = plain(n)
                    return decoder.decode(data, final=not data).encode("utf-8", "surrogatepass")

                first = decoder.decode(head[bom:]).encode("utf-8", "surrogatepass")
            for lineno, line, size in split_lines(first, read, separator, limit):
                if line is None:
                    yield lineno, _too_large("line", size, limit)
                elif line and not line.isspace():  # blank lines (often a trailing newline) are not rows
                    yield lineno, line
        finally:
            raw.close()


def split_lines(
    first: bytes, read: Callable[[int], bytes], separator: bytes, limit: int
) -> Iterator[tuple[int, bytes | None, int]]:
    """(1-based number, line without its separator or None when longer than ``limit``, its size).

    Memory stays near ``limit`` + one chunk: the parts of a too-long line are counted, not kept."""
    lineno = 0
    head: list[bytes] = []  # parts of the line being read
    held = 0  # bytes in head
    over = -1  # >= 0: the line being read is too long; its size so far
    chunk = first
    while True:
        if not chunk:
            chunk = read(READ_CHUNK)
            if not chunk:
                break
        parts = chunk.split(separator)
        chunk = b""
        tail = parts.pop()
        for i, part in enumerate(parts):
            lineno += 1
            if i == 0 and (head or over >= 0):
                if over >= 0:
                    yield lineno, None, over + len(part)
                    over = -1
                    continue
                part = b"".join((*head, part))
                head, held = [], 0
            if len(part) > limit:
                yield lineno, None, len(part)
            else:
                yield lineno, part, len(part)
        if over >= 0:
            over += len(tail)
        elif held + len(tail) > limit:
            over, head, held = held + len(tail), [], 0
        elif tail:
            head.append(tail)
            held += len(tail)
    if over >= 0:
        yield lineno + 1, None, over
    elif head:
        line = b"".join(head)
        yield lineno + 1, line, len(line)


def _too_large(what: str, size: int, limit: int) -> RowError:
    detail = f"{what} of {size:,} bytes > max_row_bytes {limit:,}; raise max_row_bytes to keep it"
    return RowError("row_too_large", detail)


def text_bytes(value: Any, stop: int = sys.maxsize) -> int:
    """UTF-8 bytes of all strings in a decoded row (keys too), counted until past ``stop``: the size
    ``max_row_bytes`` limits for rows that are not JSONL lines.

    >>> text_bytes({"messages": [{"role": "user", "content": "hé"}]})
    26
    """
    total = 0
    todo = [value]
    while todo and total <= stop:
        item = todo.pop()
        if isinstance(item, str):
            total += len(item) if item.isascii() else len(item.encode("utf-8", "surrogatepass"))
        elif isinstance(item, dict):
            todo.extend(item.keys())
            todo.extend(item.values())
        elif isinstance(item, list | tuple):
            todo.extend(item)
        elif isinstance(item, bytes):
            total += len(item)
    return total


def _checked(record: Any, limit: int | None) -> Any:
    """The record, or ``row_too_large`` when its strings exceed ``limit``."""
    if limit is not None:
        size = text_bytes(record, limit)
        if size > limit:
            return _too_large("row", size, limit)
    return record


def _parquet(
    uri: str, spec: DatasetSpec, meter: ReadMeter | None, max_row_bytes: int | None
) -> Generator[tuple[int, Any], None, None]:
    """(0-based row number, record or RowError). A batch smaller than ``max_row_bytes`` in Arrow
    holds no row over it, so only large batches are measured row by row."""
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
            limit = max_row_bytes if max_row_bytes is not None and batch.nbytes > max_row_bytes else None
            for record in batch.to_pylist():
                yield row, _checked(record, limit)
                row += 1
            if meter is not None:
                meter.done_bytes += file_size * batch.num_rows / total_rows


def _hub(uri: str, spec: DatasetSpec, max_row_bytes: int | None) -> Generator[tuple[int, Any], None, None]:
    """A hub dataset streamed with the ``datasets`` library, imported only when a dataset needs it."""
    repo = uri[len(HF_SCHEME) :].strip("/")
    try:
        import datasets
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
        yield i, _checked(dict(record), max_row_bytes)
