"""The workload's final word: a JSON summary on stdout and in the container termination message.

Everything written here passes through :func:`sft_common.redact.redact` first: the termination message
becomes ``status.failure`` and an Event, so a credential in an error message must not get that far.

Kubernetes keeps at most 4096 bytes of ``/dev/termination-log``; the operator reads it into the CR
status (outputs on success, a concrete reason on failure). ``SFT_TERMINATION_LOG`` overrides the
path (tests, local runs); without it the default path is used only when it is writable.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sft_common.config import ConfigError
from sft_common.redact import redact, redact_value

DEFAULT_TERMINATION_LOG = "/dev/termination-log"
LIMIT = 4096


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


def report_success(summary: Mapping[str, Any]) -> None:
    payload = redact_value({"status": "succeeded", **summary})
    print(json.dumps({"event": "result", **payload}, default=str), flush=True)
    write_termination_message(payload)


def report_failure(reason: str, message: str, **extra: Any) -> None:
    payload = redact_value({"status": "failed", "reason": reason, "message": message, **extra})
    print(json.dumps({"event": "result", **payload}, default=str), file=sys.stderr, flush=True)
    write_termination_message(payload)


def run_main(main: Callable[[Sequence[str]], int | None], argv: Sequence[str] | None = None) -> int:
    """Run a CLI body with the shared error contract: exit 2 for bad input, 1 for failures."""
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
        report_failure(getattr(exc, "reason", type(exc).__name__), str(exc) or type(exc).__name__)
        return 1
