"""One storage abstraction for local paths, ``file://`` URIs and ``s3://`` object stores.

Workloads write every output through here so that a run can target a PVC mount or a bucket with
the same code. Writes are atomic on both: locally a temp file in the target directory is renamed
over the destination; on S3 a single PUT (or completed multipart upload) is atomic by nature.
S3 credentials and endpoint come from the standard AWS environment (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL``/``AWS_ENDPOINT_URL_S3``, ``AWS_REGION``), which
the operator fills from Secret references, never from the spec.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import glob as _glob
import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

from sft_common.config import ConfigError


class StorageError(OSError):
    """An I/O problem with a URI, phrased for the user (which URI, what went wrong)."""

    path: str | None = None
    """The file or URI it is about (the termination message's ``path``)."""


class StorageAccessError(StorageError, ConfigError):
    """The store cannot be used at all as configured (no credentials, endpoint unreachable, access
    denied, no such bucket): a ConfigError, so a CLI exits 2 with this sentence, not a traceback."""


class StorageFault(StorageError):
    """A store that worked stopped working (a full disk, an endpoint that answered before and does not
    now): exit 1 with this sentence and no traceback (``quiet``), so the run is retried and resumes."""

    quiet = True
    reason = "StorageFault"

    def __init__(self, message: str, path: str | None) -> None:
        super().__init__(message)
        self.path = path


class NoSpace(StorageFault):
    """ENOSPC/EDQUOT while writing ``path`` (``sft_common.result.Reason.NO_SPACE``)."""

    reason = "NoSpace"


class StorageUnavailable(StorageFault):
    """An S3 endpoint that answered earlier in this process stopped answering, after boto's own
    retries with backoff (``sft_common.result.Reason.STORAGE_UNAVAILABLE``)."""

    reason = "StorageUnavailable"


_NO_SPACE_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
_NO_SPACE_TEXT = (
    "No space left on device",
    "Disk quota exceeded",
    "[Errno 28]",
    "[Errno 122]",
    # torch.save's PytorchStreamWriter after a short write: "[enforce fail at inline_container.cc:…] .
    # unexpected pos N vs M" or "… file write failed" (the errno is lost there; a short write of a
    # local file is a full disk or quota)
    "unexpected pos",
    "file write failed",
)


def _in_chain(exc: BaseException, found: Callable[[BaseException], bool]) -> BaseException | None:
    """The first exception of ``exc``'s cause/context chain for which ``found`` holds, or None."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if found(current):
            return current
        current = current.__cause__ or current.__context__
    return None


def _no_space_cause(exc: BaseException) -> BaseException | None:
    """The out-of-space error in ``exc``'s chain: an OSError with ENOSPC/EDQUOT, or a wrapper whose text
    carries one (torch's stream writer, torch.distributed.checkpoint's CheckpointException)."""
    return _in_chain(
        exc,
        lambda e: (
            (isinstance(e, OSError) and e.errno in _NO_SPACE_ERRNOS)
            or any(text in str(e) for text in _NO_SPACE_TEXT)
        ),
    )


def _free_space(path: str) -> str:
    """Free bytes on the file system of ``path`` (its nearest existing ancestor), for the message."""
    probe = Path(path.removeprefix("file://")).absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        usage = shutil.disk_usage(probe)
    except OSError:
        return "free space unknown"
    return f"{_size(usage.free)} free of {_size(usage.total)}"


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover - the loop returns


def no_space(path: str, cause: BaseException) -> NoSpace:
    """The :class:`NoSpace` for a write to ``path`` that ran out of room."""
    return NoSpace(
        f"no space left writing {path} ({type(cause).__name__}: {cause}); {_free_space(path)} there now "
        "(a failed write is removed); free space on that volume or give it more (a bigger PVC or "
        "node-local scratch, or fewer checkpoints kept), then rerun to resume",
        path,
    )


@contextlib.contextmanager
def space_guard(path: str) -> Iterator[None]:
    """Turn running out of space inside the block into :class:`NoSpace` naming ``path`` (or the file
    the OSError names): what checkpoint saves and every local write of this module run under. A remote
    ``path`` is written through local scratch, which is then what fills up: the temp dir is named."""
    try:
        yield
    except StorageFault:
        raise
    except Exception as exc:
        cause = _no_space_cause(exc)
        if cause is None:
            raise
        where = path if not is_remote(path) else tempfile.gettempdir()
        if isinstance(cause, OSError) and cause.filename:
            where = str(cause.filename)
        raise no_space(where, cause) from exc


def is_remote(uri: str) -> bool:
    return uri.startswith("s3://")


def _local(uri: str) -> Path:
    if uri.startswith("file://"):
        uri = uri[len("file://") :]
    return Path(uri)


def join(base: str, *parts: str) -> str:
    """Join URI segments with '/', keeping the scheme."""
    out = base.rstrip("/") if base not in ("/", "") else base
    for part in parts:
        part = part.strip("/")
        if part:
            out = f"{out}/{part}" if out and not out.endswith("/") else f"{out}{part}"
    return out


def parent(uri: str) -> str:
    head, _, _ = uri.rstrip("/").rpartition("/")
    return head


def name(uri: str) -> str:
    return uri.rstrip("/").rpartition("/")[2]


# --------------------------------------------------------------------------- S3


def split_s3(uri: str) -> tuple[str, str]:
    rest = uri[len("s3://") :]
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise StorageError(f"{uri}: an s3:// URI needs a bucket name")
    return bucket, key


@lru_cache(maxsize=1)
def _s3_client() -> Any:
    try:
        import boto3
    except ImportError as exc:  # pragma: no cover - boto3 ships with the prep/train extras
        raise StorageError("s3:// URIs need boto3 (pip install 'sft-operator[prep]')") from exc
    from botocore.config import Config

    # Bounded connect time; boto's standard retry mode retries connection errors, throttling and 5xx
    # with exponential backoff (AWS_MAX_ATTEMPTS / AWS_RETRY_MODE change it, as for any AWS client).
    retries = {
        "max_attempts": int(os.environ.get("AWS_MAX_ATTEMPTS") or 5),
        "mode": os.environ.get("AWS_RETRY_MODE") or "standard",
    }
    config = Config(connect_timeout=10, read_timeout=60, retries=retries)
    client = boto3.client("s3", endpoint_url=_endpoint(), config=config)
    # "after-call" fires only when a response came back (an error status included), never when the
    # request could not be sent: from then on a connection error is an outage, not a wrong endpoint.
    client.meta.events.register("after-call.s3", _mark_answered)
    return client


_answered: dict[str, bool] = {}


def _mark_answered(**_: Any) -> None:
    _answered["s3"] = True


def _endpoint() -> str | None:
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


def reset_clients() -> None:
    """Forget cached clients (tests change the endpoint between cases)."""
    _s3_client.cache_clear()
    _answered.clear()


_DENIED = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403", "ExpiredToken"}


_TRANSIENT_CODES = {"InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout", "500", "502", "503"}


def _connection_error(exc: BaseException) -> BaseException | None:
    """The connection-level error in ``exc``'s chain (boto3's S3UploadFailedError wraps one), or None."""
    from botocore.exceptions import ConnectionError as BotoConnectionError
    from botocore.exceptions import HTTPClientError, IncompleteReadError
    from urllib3.exceptions import HTTPError as Urllib3Error

    boto: tuple[type[BaseException], ...] = (BotoConnectionError, HTTPClientError, IncompleteReadError)
    lost = (*boto, Urllib3Error, ConnectionError, TimeoutError)
    return _in_chain(exc, lambda e: isinstance(e, lost))


def _s3_error(uri: str, exc: Exception) -> StorageError:
    """The exception as a sentence naming ``uri``; problems of the setup (credentials, endpoint,
    access, bucket) become :class:`StorageAccessError` with the fix, and an endpoint that answered
    before in this process and fails now is :class:`StorageUnavailable` (retryable, not the user's
    config)."""
    if isinstance(exc, StorageError):
        return exc
    full = _no_space_cause(exc)
    if full is not None:  # the local side of a transfer (a download to a full disk)
        return no_space(str(getattr(full, "filename", None) or uri), full)
    kind = type(exc).__name__
    code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
    lost = _connection_error(exc)
    if _answered.get("s3") and (lost is not None or code in _TRANSIENT_CODES):
        detail = f"{type(lost).__name__}: {lost}" if lost is not None else f"{code}: {exc}"
        return StorageUnavailable(
            f"{uri}: the S3 endpoint {_endpoint() or '(AWS default)'} answered earlier but failed now, "
            f"after retries ({detail}); the run stops with a retryable failure and resumes from its "
            "last complete checkpoint once the store is back",
            uri,
        )
    if kind in ("NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError"):
        return StorageAccessError(
            f"{uri}: no S3 credentials ({exc}); set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
            "(the operator fills them from the CR's storage secret)"
        )
    if lost is not None:  # first contact: the endpoint never answered this process
        return StorageAccessError(
            f"{uri}: cannot reach the S3 endpoint {_endpoint() or '(AWS default)'} ({lost}); "
            "check AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_S3 and the network"
        )
    if code in _DENIED:
        return StorageAccessError(
            f"{uri}: access denied ({code}); check the credentials and the bucket policy for this prefix"
        )
    if code == "NoSuchBucket":
        return StorageAccessError(f"{uri}: the bucket does not exist; create it or fix the URI")
    return StorageError(f"{uri}: {kind}: {exc}")


# --------------------------------------------------------------------------- reading


def exists(uri: str) -> bool:
    if is_remote(uri):
        bucket, key = split_s3(uri)
        client = _s3_client()
        try:
            client.head_object(Bucket=bucket, Key=key)
            return True
        except client.exceptions.ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("404", "NoSuchKey", "NotFound"):
                # maybe a "directory": any object below it
                try:
                    resp = client.list_objects_v2(Bucket=bucket, Prefix=key.rstrip("/") + "/", MaxKeys=1)
                except Exception as exc2:
                    raise _s3_error(uri, exc2) from exc2
                return resp.get("KeyCount", 0) > 0
            raise _s3_error(uri, exc) from exc
        except Exception as exc:
            raise _s3_error(uri, exc) from exc
    return _local(uri).exists()


def read_bytes(uri: str) -> bytes:
    if is_remote(uri):
        bucket, key = split_s3(uri)
        try:
            return _s3_client().get_object(Bucket=bucket, Key=key)["Body"].read()
        except Exception as exc:
            raise _s3_error(uri, exc) from exc
    try:
        return _local(uri).read_bytes()
    except OSError as exc:
        raise StorageError(f"{uri}: {exc.strerror or exc}") from exc


def read_text(uri: str) -> str:
    return read_bytes(uri).decode("utf-8")


def read_json_object(uri: str) -> dict[str, Any] | None:
    """The JSON object stored at ``uri``; None when there is none, or it is not a readable JSON object
    (a missing or foreign file is an answer here, not an error)."""
    if not exists(uri):
        return None
    try:
        value = json.loads(read_text(uri))
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def size(uri: str) -> int:
    """Size of one file or object in bytes (used to balance input files across shards)."""
    if is_remote(uri):
        bucket, key = split_s3(uri)
        try:
            return int(_s3_client().head_object(Bucket=bucket, Key=key)["ContentLength"])
        except Exception as exc:
            raise _s3_error(uri, exc) from exc
    try:
        return _local(uri).stat().st_size
    except OSError as exc:
        raise StorageError(f"{uri}: {exc.strerror or exc}") from exc


def listdir(uri: str) -> list[str]:
    """Full URIs of every file below ``uri`` (recursive), sorted."""
    if is_remote(uri):
        bucket, key = split_s3(uri)
        prefix = key.rstrip("/") + "/" if key else ""
        out: list[str] = []
        paginator = _s3_client().get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
                out.extend(f"s3://{bucket}/{obj['Key']}" for obj in page.get("Contents", []))
        except Exception as exc:
            raise _s3_error(uri, exc) from exc
        return sorted(out)
    root = _local(uri)
    if not root.is_dir():
        return []
    return sorted(str(p) for p in root.rglob("*") if p.is_file())


def list_sizes(uri: str) -> dict[str, int]:
    """Path below ``uri`` (``a/b.bin``) → size in bytes of every file there, from one listing."""
    if is_remote(uri):
        bucket, key = split_s3(uri)
        prefix = key.rstrip("/") + "/" if key else ""
        out: dict[str, int] = {}
        try:
            for page in _s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                out.update((obj["Key"][len(prefix) :], int(obj["Size"])) for obj in page.get("Contents", []))
        except Exception as exc:
            raise _s3_error(uri, exc) from exc
        return dict(sorted(out.items()))
    root = _local(uri)
    if not root.is_dir():
        return {}
    return {p.relative_to(root).as_posix(): p.stat().st_size for p in sorted(root.rglob("*")) if p.is_file()}


def glob(pattern: str) -> list[str]:
    """Expand ``*``, ``?`` and ``[...]`` in a path or ``s3://`` URI; a plain URI maps to itself if present."""
    if not any(ch in pattern for ch in "*?["):
        return [pattern] if exists(pattern) else []
    if is_remote(pattern):
        bucket, key = split_s3(pattern)
        static = key[: min(key.find(c) for c in "*?[" if c in key)]
        base = f"s3://{bucket}/{static.rpartition('/')[0]}"
        return [u for u in listdir(base) if fnmatch.fnmatchcase(u, pattern)]
    prefix = "file://" if pattern.startswith("file://") else ""
    return sorted(prefix + p for p in _glob.glob(str(_local(pattern)), recursive=True) if os.path.isfile(p))


@contextlib.contextmanager
def local_path(uri: str) -> Iterator[Path]:
    """A local file path for ``uri``: the file itself, or a temporary download of a remote object."""
    if not is_remote(uri):
        yield _local(uri)
        return
    with tempfile.TemporaryDirectory(prefix="sft-dl-") as tmp:
        dest = Path(tmp) / (name(uri) or "object")
        bucket, key = split_s3(uri)
        try:
            _s3_client().download_file(bucket, key, str(dest))
        except Exception as exc:
            raise _s3_error(uri, exc) from exc
        yield dest


def download_file(uri: str, dest: Path) -> None:
    """Copy one file or object to ``dest`` atomically (a temp name in its directory, then a rename)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp_name = str(create_temp(dest.parent, f".{dest.name}.", ".part"))
    try:
        if is_remote(uri):
            bucket, key = split_s3(uri)
            try:
                _s3_client().download_file(bucket, key, tmp_name)
            except Exception as exc:
                raise _s3_error(uri, exc) from exc
        else:
            with space_guard(str(dest)):
                shutil.copyfile(_local(uri), tmp_name)
        os.replace(tmp_name, dest)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)


def download_tree(uri: str, dest: Path) -> Path:
    """Copy every object below a remote prefix to ``dest`` (for tokenizers and checkpoints)."""
    if not is_remote(uri):
        return _local(uri)
    prefix = uri.rstrip("/") + "/"
    files = listdir(uri)
    if not files:
        raise StorageError(f"{uri}: no objects below this prefix")
    for file_uri in files:
        target = dest / file_uri[len(prefix) :]
        target.parent.mkdir(parents=True, exist_ok=True)
        bucket, key = split_s3(file_uri)
        try:
            _s3_client().download_file(bucket, key, str(target))
        except Exception as exc:
            raise _s3_error(file_uri, exc) from exc
    return dest


# --------------------------------------------------------------------------- writing


def create_temp(directory: Path, prefix: str, suffix: str) -> Path:
    """A new empty file in ``directory`` with a unique name, mode 0666 less the umask.

    Not ``tempfile.mkstemp``: it creates 0600 whatever the umask, and the file keeps that mode when it
    is renamed into place, so on a shared volume another uid (the trainer reading the prep's shards)
    could not read it. Created with O_EXCL like mkstemp, so the name is ours alone."""
    for _ in range(100):
        path = directory / f"{prefix}{secrets.token_hex(6)}{suffix}"
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666))
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"{directory}: no free temporary name for {prefix}*{suffix}")


def current_umask() -> int:
    """The process umask, read without changing it (``os.umask`` can only swap it, which races with
    other threads creating files); Linux reports it in /proc/self/status."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def respect_umask(root: Path) -> None:
    """Give ``root`` and everything below it the modes a plain create would (0666/0777 less the umask).

    For trees written by libraries that create private files (safetensors 0.8 writes 0600, like
    ``mkstemp``/``mkdtemp``) before they are published on a volume that other uids read."""
    mask = current_umask()
    os.chmod(root, 0o777 & ~mask)
    for path in root.rglob("*"):
        if path.is_symlink():
            continue
        os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~mask)


@contextlib.contextmanager
def atomic_write_path(uri: str) -> Iterator[Path]:
    """Yield a temp path to write; on success it becomes ``uri`` atomically, on error it vanishes."""
    if is_remote(uri):
        with tempfile.TemporaryDirectory(prefix="sft-up-") as scratch:
            path = Path(scratch) / (name(uri) or "object")
            with space_guard(scratch):
                yield path
            bucket, key = split_s3(uri)
            try:
                _s3_client().upload_file(str(path), bucket, key)
            except Exception as exc:
                raise _s3_error(uri, exc) from exc
        return
    dest = _local(uri)
    with space_guard(uri):
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = create_temp(dest.parent, f".{dest.name}.", ".tmp")
        try:
            yield tmp
            os.replace(tmp, dest)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()


def write_bytes(uri: str, data: bytes) -> None:
    """Atomically replace ``uri`` with ``data``."""
    with atomic_write_path(uri) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def write_text(uri: str, text: str) -> None:
    write_bytes(uri, text.encode("utf-8"))


def upload_file(path: Path, uri: str) -> None:
    """Atomically place a finished local file at ``uri`` (an object upload is atomic by itself, so a
    remote target is uploaded straight from ``path``, without a temporary copy)."""
    if is_remote(uri):
        bucket, key = split_s3(uri)
        try:
            _s3_client().upload_file(str(path), bucket, key)
        except Exception as exc:
            raise _s3_error(uri, exc) from exc
        return
    with atomic_write_path(uri) as tmp:
        shutil.copyfile(path, tmp)


def delete(uri: str) -> None:
    if is_remote(uri):
        bucket, key = split_s3(uri)
        try:
            _s3_client().delete_object(Bucket=bucket, Key=key)
        except Exception as exc:
            raise _s3_error(uri, exc) from exc
        return
    with contextlib.suppress(FileNotFoundError):
        _local(uri).unlink()


def delete_tree(uri: str) -> None:
    if is_remote(uri):
        for file_uri in listdir(uri):
            delete(file_uri)
        return
    shutil.rmtree(_local(uri), ignore_errors=True)


# --------------------------------------------------------------------------- directories published whole

COMPLETE = "sft-checkpoint.json"
"""The object written last into a directory published whole (:func:`publish_tree`, the checkpoint
uploads): a directory (an S3 prefix) without it is an upload that was cut, never a checkpoint, and
:func:`complete_dirs` does not list it. S3 has no rename, so this is how a multi-object upload becomes
visible all at once. The same file carries a checkpoint's ledger record (the run's identity), so one
file says both "complete" and "whose"."""


def upload_tree(local: Path, uri: str) -> int:
    """Upload every file below ``local`` to ``uri`` (same relative paths) but the :data:`COMPLETE`
    marker (it goes last, :func:`publish_tree`) and partial downloads (``*.part``); returns how many."""
    count = 0
    for path in sorted(local.rglob("*")):
        if path.is_file() and path.name != COMPLETE and not path.name.endswith(".part"):
            upload_file(path, join(uri, path.relative_to(local).as_posix()))
            count += 1
    return count


def publish_tree(local: Path, uri: str, marker: bytes) -> int:
    """:func:`upload_tree`, then the :data:`COMPLETE` marker holding ``marker`` last; returns how many
    files went before it."""
    count = upload_tree(local, uri)
    write_bytes(join(uri, COMPLETE), marker)
    return count


def complete_dirs(uri: str, pattern: str = "*") -> list[str]:
    """URIs of the child directories of ``uri`` whose names match ``pattern`` and that hold the
    :data:`COMPLETE` marker, sorted; a directory an interrupted upload left is not among them."""
    return sorted(parent(marker) for marker in glob(join(uri, pattern, COMPLETE)))


# --------------------------------------------------------------------------- conditional writes


def read_versioned(uri: str) -> tuple[bytes, str] | None:
    """(content, version) of a small object, or None when absent. The version is what
    :func:`put_if` compares: the ETag on S3, a content hash locally."""
    if is_remote(uri):
        bucket, key = split_s3(uri)
        client = _s3_client()
        try:
            resp = client.get_object(Bucket=bucket, Key=key)
            return resp["Body"].read(), str(resp["ETag"])
        except client.exceptions.NoSuchKey:
            return None
        except Exception as exc:
            raise _s3_error(uri, exc) from exc
    try:
        data = _local(uri).read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StorageError(f"{uri}: {exc.strerror or exc}") from exc
    return data, _digest(data)


def put_if(uri: str, data: bytes, version: str | None) -> bool:
    """Write ``data`` only if ``uri`` is absent (``version`` None) or still at ``version``; False when
    another writer got there first. S3: a conditional PUT (``If-None-Match: *`` / ``If-Match``).
    Locally: ``O_EXCL`` create, or an exclusive ``flock`` while comparing and rewriting in place."""
    if is_remote(uri):
        bucket, key = split_s3(uri)
        client = _s3_client()
        cond = {"IfNoneMatch": "*"} if version is None else {"IfMatch": version}
        try:
            client.put_object(Bucket=bucket, Key=key, Body=data, **cond)
            return True
        except client.exceptions.ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409", "NoSuchKey"):
                return False
            raise _s3_error(uri, exc) from exc
        except Exception as exc:
            raise _s3_error(uri, exc) from exc
    import fcntl

    path = _local(uri)
    if version is None:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as new:
            new.write(data)
            new.flush()
            os.fsync(new.fileno())
        return True
    try:
        fh = open(path, "r+b")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return False
    with fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        if _digest(fh.read()) != version:
            return False
        fh.seek(0)
        fh.write(data)
        fh.truncate()
        fh.flush()
        os.fsync(fh.fileno())
    return True


def _digest(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()
