"""The workload's final word: a JSON summary on stdout and in the container termination message.

Everything written here passes through :func:`sft_common.redact.redact` first: the termination message
becomes ``status.failure`` and an Event, so a credential in an error message must not get that far.

Kubernetes keeps at most 4096 bytes of ``/dev/termination-log``; the operator reads it into the CR
status (outputs on success, a concrete reason on failure). ``SFT_TERMINATION_LOG`` overrides the
path (tests, local runs); without it the default path is used only when it is writable.

The message is a typed contract: :class:`PrepResult` (sft-prep), :class:`TrainResult` (sft-train) and
:class:`FailureResult` (either), camelCase JSON with ``status`` ``succeeded``/``failed``. The workloads
emit these models, the operator parses them (:func:`parse_result`), and test fixtures build them, so
every key is spelled once, here. Parsing ignores unknown keys (a newer workload may add some).
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, TypeVar

from pydantic import ConfigDict, ValidationError

from sft_common.config import ConfigError, ConfigModel
from sft_common.redact import redact, redact_value
from sft_common.storage import StorageError

DEFAULT_TERMINATION_LOG = "/dev/termination-log"
LIMIT = 4096

# Exit codes, the contract between the workloads, the rendered pod command and the backends' restart
# policies (Job/JobSet podFailurePolicy, PyTorchJob's ExitCode policy: 1-127 permanent, 128-255 retryable).
EXIT_FAILED = 1
"""A failure that may pass on a retry (storage unavailable, NCCL, a crash): retryable."""
EXIT_CONFIG = 2
"""Bad input the user must fix (config, data, checkpoint mismatch): fail fast, never retried."""
EXIT_PREEMPTED = 143
"""128 + SIGTERM: the run saved a checkpoint at the current step and stopped; retryable, resumes."""
EXIT_RETRY = 200
"""EXIT_FAILED as ``sft-torchrun --retryable-exit-code=200`` reports it, for a restart policy that
retries only exit codes >= 128: training-operator v1's ``restartPolicy: ExitCode``
(pkg/util/train/train_util.go IsRetryableExitCode: ``exitCode >= 128``; 1-127 fail the PyTorchJob for
good). 200 is above every 128 + signal number (Linux signals end at 64), so it never reads as a kill;
the failure classifier reads it as it reads exit 1."""
RETRYABLE_OPTION = "--retryable-exit-code="
"""``sft-torchrun``'s own option (before torchrun's arguments): the code that reports exit 1."""
EXIT_CODES_DIR_ENV = "SFT_EXIT_CODES_DIR"
"""A directory where :func:`run_main` records each process's exit code (``<pid>``), set by
``sft-torchrun`` for its workers: torchrun itself exits 1 whatever its workers exited with."""


class Reason:
    """The ``reason`` values of :class:`FailureResult` that the operator's failure classifier reads
    (beside the config reasons each workload defines: InvalidConfig, DataNotFound, ...)."""

    PREEMPTED = "Preempted"
    """SIGTERM: a checkpoint was saved at ``iteration`` (exit 143)."""
    CHECKPOINT_MISMATCH = "CheckpointMismatch"
    """The newest checkpoint in checkpoint.save was written by a run with another identity (exit 2)."""
    NO_SPACE = "NoSpace"
    """ENOSPC/EDQUOT while writing ``path`` (exit 1)."""
    STORAGE_UNAVAILABLE = "StorageUnavailable"
    """An object store or filesystem that answered before stopped answering (exit 1, retryable)."""
    CUDA_OUT_OF_MEMORY = "CUDAOutOfMemory"
    NCCL_TIMEOUT = "NCCLTimeout"
    NCCL_ERROR = "NCCLError"
    DATA_ERROR = "DataError"
    """The data cannot train this model (token ids past the vocabulary, empty or unreadable shards,
    a loss mask that trains nothing or everything): exit 2."""


class Contract(ConfigModel):
    """camelCase out, unknown keys ignored on the way in (a newer workload may add some)."""

    model_config = ConfigDict(extra="ignore")


class ResultModel(Contract):
    """Base of the termination-message models."""

    truncated: bool | None = None
    """Set by :func:`fit` when keys were dropped to stay within the 4096-byte limit."""

    def payload(self) -> dict[str, Any]:
        """The camelCase JSON object (``None`` values kept: "not produced" is information)."""
        out = self.model_dump(mode="json", by_alias=True)
        if out.get("truncated") is None:
            out.pop("truncated", None)
        return out


class PrepTotals(Contract):
    """Counts over all splits, from metadata.json."""

    rows: int | None = None
    """Input rows read."""
    sequences: int | None = None
    """Sequences packed."""
    tokens: int | None = None
    """Tokens packed."""
    trainable_tokens: int | None = None
    """Tokens with loss_mask 1."""
    bins: int | None = None
    """Packed bins (Parquet rows)."""


class PrepResult(ResultModel):
    """What one sft-prep worker reports; the worker that wrote metadata.json carries the totals."""

    status: Literal["succeeded"] = "succeeded"
    output_dir: str | None = None
    blend: str | None = None
    """URI of blend.json (None from a worker that did not write it)."""
    metadata: str | None = None
    """URI of metadata.json (None from a worker that did not write it)."""
    pack_size: int | None = None
    pad_seq_to_mult: int = 1
    """Every packed sequence's length is a multiple of this (sft-prep ``pad_seq_to_mult``): what the
    trainer's context/sequence parallelism needs (see the SFTRun data checks)."""
    shards_done: int | None = None
    shards_total: int | None = None
    worker: int | None = None
    packing_efficiency: float | None = None
    totals: PrepTotals | None = None
    run_id: str | None = None
    config_hash: str | None = None
    shards_built: int | None = None
    shards_skipped: int | None = None
    committed: bool | None = None
    up_to_date: bool | None = None

    def payload(self) -> dict[str, Any]:
        out = super().payload()
        if out.get("totals") is None:
            out.pop("totals", None)  # only the worker that wrote metadata.json reports totals
        return out


class CheckpointInfo(Contract):
    """The newest complete checkpoint of a run: written by sft-train's rank 0 into
    ``status.progress.checkpoint`` (on each save) and into its :class:`TrainResult`; the operator shows it
    as ``status.checkpoints``."""

    latest_iteration: int | None = None
    uri: str | None = None
    """URI of the checkpoint directory of that iteration."""
    time: str | None = None
    """When its complete marker was written (RFC 3339, UTC)."""
    resumed_from: int | None = None
    """The iteration this process resumed from (None: it started fresh)."""


class TrainResult(ResultModel):
    """What sft-train's global rank 0 reports when training ended without an error."""

    status: Literal["succeeded"] = "succeeded"
    checkpoint: str | None = None
    """URI of the checkpoint directory (checkpoint.save)."""
    last_iteration: int | None = None
    final_loss: float | None = None
    hf_export: str | None = None
    finished: bool = True
    """False when train.exit_interval stopped it before trainIters."""
    checkpoints: CheckpointInfo | None = None


class FailureResult(ResultModel):
    """What either workload reports when it failed for a reason it knows."""

    model_config = ConfigDict(extra="allow")

    status: Literal["failed"] = "failed"
    reason: str = "Failed"
    """CamelCase reason (InvalidConfig, DataError, :class:`Reason` ...)."""
    message: str = ""
    path: str | None = None
    """The file or URI the failure is about (NoSpace, StorageUnavailable, DataError), when known."""
    iteration: int | None = None
    """The iteration the run stopped at (Preempted: the one saved), when known."""
    checkpoints: CheckpointInfo | None = None

    def payload(self) -> dict[str, Any]:
        out = super().payload()
        for key in ("path", "iteration", "checkpoints"):
            if out.get(key) is None:
                out.pop(key, None)  # optional detail: absent rather than null
        return out


SuccessT = TypeVar("SuccessT", PrepResult, TrainResult)


def parse_result(text: str | None, success: type[SuccessT]) -> SuccessT | FailureResult | None:
    """The workload's result from a termination message; None when it is absent, a log tail
    (``FallbackToLogsOnError``) or not one of ours."""
    if not text or not text.strip().startswith("{"):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if not isinstance(value, dict):
        return None
    status = value.get("status")
    try:
        if status == "succeeded":
            return success.model_validate(value)
        if status == "failed":
            return FailureResult.model_validate(value)
    except ValidationError:
        return None
    return None


def termination_log_path() -> str | None:
    path = os.environ.get("SFT_TERMINATION_LOG")
    if path:
        return path
    if os.path.exists(DEFAULT_TERMINATION_LOG) and os.access(DEFAULT_TERMINATION_LOG, os.W_OK):
        return DEFAULT_TERMINATION_LOG
    return None


def fit(payload: Mapping[str, Any], limit: int = LIMIT) -> str:
    """JSON of ``payload`` within ``limit`` bytes: long strings are cut, then big lists/dicts dropped."""
    data = dict(payload)
    text = json.dumps(data, default=str)
    if len(text.encode()) <= limit:
        return text
    for key, value in list(data.items()):
        if isinstance(value, str) and len(value) > 1000:
            data[key] = "..." + value[-1000:]
    text = json.dumps(data, default=str)
    sizes = sorted(data, key=lambda k: len(json.dumps(data[k], default=str)), reverse=True)
    for key in sizes:
        if len(text.encode()) <= limit:
            break
        if key in ("status", "reason", "message"):
            continue
        data.pop(key)
        data["truncated"] = True
        text = json.dumps(data, default=str)
    return text.encode()[:limit].decode(errors="ignore")


def write_termination_message(payload: Mapping[str, Any]) -> None:
    path = termination_log_path()
    if not path:
        return
    try:
        with open(path, "w") as fh:
            fh.write(fit(payload))
    except OSError as exc:
        print(f"warning: could not write termination message to {path}: {exc}", file=sys.stderr)


def report_success(result: PrepResult | TrainResult) -> None:
    payload = redact_value(result.payload())
    print(json.dumps({"event": "result", **payload}, default=str), flush=True)
    write_termination_message(payload)


def report_failure(reason: str, message: str, **extra: Any) -> None:
    """The failure as JSON: always in the termination message, and as a ``result`` line in the log
    unless stderr is a terminal, where the ``error:`` line already said it (a person reads it; log
    collectors and ``sftctl`` read a pipe)."""
    payload = redact_value(FailureResult(reason=reason, message=message, **extra).payload())
    if not _is_terminal(sys.stderr):
        print(json.dumps({"event": "result", **payload}, default=str), file=sys.stderr, flush=True)
    write_termination_message(payload)


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # replaced or closed stream
        return False


def run_main(main: Callable[[Sequence[str]], int | None], argv: Sequence[str] | None = None) -> int:
    """Run a CLI body with the shared error contract: exit 2 for bad input, 1 for failures; the code is
    also recorded under :data:`EXIT_CODES_DIR_ENV` when a launcher asked for it."""
    code = _run_main(main, argv)
    record_exit_code(code)
    return code


def record_exit_code(code: int) -> None:
    """Write ``code`` to ``$SFT_EXIT_CODES_DIR/<pid>`` (no-op without the variable; best effort)."""
    folder = os.environ.get(EXIT_CODES_DIR_ENV)
    if folder:
        try:
            with open(os.path.join(folder, str(os.getpid())), "w") as out:
                out.write(str(code))
        except OSError:
            pass


def _run_main(main: Callable[[Sequence[str]], int | None], argv: Sequence[str] | None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        return int(main(args) or 0)
    except ConfigError as exc:
        print(f"error: {redact(str(exc))}", file=sys.stderr)
        report_failure(getattr(exc, "reason", "InvalidConfig"), str(exc))
        return 2
    except KeyboardInterrupt:
        report_failure("Interrupted", "interrupted")
        return 130
    except Exception as exc:
        if getattr(exc, "quiet", False):  # expected, and its message says it all
            print(f"error: {redact(str(exc))}", file=sys.stderr)
        else:
            # the traceback is the pod log, which FallbackToLogsOnError may turn into the termination message
            print(redact(traceback.format_exc()), file=sys.stderr, end="")
        # a storage fault names the file or URI it is about (FailureResult.path)
        path = exc.path if isinstance(exc, StorageError) else None
        report_failure(getattr(exc, "reason", type(exc).__name__), str(exc) or type(exc).__name__, path=path)
        return 1
