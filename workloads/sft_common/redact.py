"""Secrets out of everything copied into status, Events and logs: one function, used at every seam.

A credential reaches text in ways nobody plans: a URL with ``user:password@`` in an exception
message, an ``Authorization`` header in a library's debug line, ``HF_TOKEN=...`` echoed by a shell.
That text flows into the container termination message, from there into ``status.failure`` and an
Event, and into the logs. :func:`redact` replaces what it recognises with ``[REDACTED]``:

* the userinfo of any URL (``scheme://user:password@host`` → ``scheme://[REDACTED]@host``);
* ``Bearer``/``Basic`` credentials and ``Authorization: token ...``;
* PEM private-key blocks and JSON Web Tokens (e.g. ServiceAccount tokens);
* AWS access key ids (``AKIA``/``ASIA``... followed by 16 upper-case letters or digits);
* Hugging Face tokens (``hf_...``, ``api_org_...``) and GitHub tokens (``ghp_...``, ``github_pat_...``);
* W&B API keys (40 hex digits after ``wandb``/``WANDB``, or ``local-`` + 40 hex digits);
* the value of any ``name=value`` / ``name: value`` / ``"name": "value"`` whose name ends in
  password, secret, token, api key, access key, credential, signature or private key
  (``AWS_SECRET_ACCESS_KEY=...``, ``?X-Amz-Signature=...``, ``"hf_token": "..."``), but not the
  tokenizer's ``pad_token``/``eos_token``-style names.

It is idempotent (redacting twice changes nothing more), so a status derived from redacted text
compares equal to the stored one and no reconcile patches the same value twice.

Seams that use it: the workloads' result and termination message (``sft_common.result``) and their
status patches (``sft_common.progress``); the operator's status patches
(``sft_operator.status.patch.merge_patch``), its Events (``sft_operator.kube.events``) and its log
records (:func:`install_log_redaction`, which also covers kopf's log-to-Event posting).
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Mapping
from typing import Any

REDACTED = "[REDACTED]"

_SECRET_NAME = (
    r"[A-Za-z0-9_.-]*?(?:password|passwd|passphrase|secret|token|api[_-]?key|access[_-]?key|"
    r"secret[_-]?key|session[_-]?key|private[_-]?key|credentials?|signature)"
)
_TOKENIZER_NAMES = re.compile(r"(?i)(?:^|[_.-])(?:pad|eos|bos|unk|sep|cls|mask|im_start|im_end)_token$")
_HARMLESS_VALUES = frozenset({"none", "null", "true", "false"})

_PATTERNS: tuple[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]], ...] = (
    (
        re.compile(
            r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|$)", re.S
        ),
        REDACTED,
    ),
    (re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s@?#\[\]]+@"), rf"\1{REDACTED}@"),
    (re.compile(r"(?i)\b(bearer|basic)(\s+)(?!\[REDACTED\])[A-Za-z0-9._~+/=-]{8,}"), rf"\1\2{REDACTED}"),
    (re.compile(r"(?i)\b(authorization\s*[:=]\s*token\s+)(?!\[REDACTED\])\S+"), rf"\1{REDACTED}"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}"), REDACTED),
    (re.compile(r"\b(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|ANPA|ANVA|APKA)[A-Z0-9]{16}\b"), REDACTED),
    (re.compile(r"\b(?:hf_|api_org_)[A-Za-z0-9]{20,}\b"), REDACTED),
    (re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,})\b"), REDACTED),
    (re.compile(r"(?i)(\bwandb\b[^\n]{0,64}?)\b[0-9a-f]{40}\b"), rf"\1{REDACTED}"),
    (re.compile(r"\blocal-[0-9a-f]{40}\b"), REDACTED),
)

_ASSIGNMENT = re.compile(
    rf"""(?ix)
    (?P<name>\b{_SECRET_NAME})(?![A-Za-z0-9])   # a name ending in a secret word
    (?P<sep>["']?\s*[=:]\s*)                     # = or : (and the closing quote of a JSON key)
    (?P<quote>["']?)(?!\[REDACTED\])
    (?P<value>[^\s"',;&}}\])]+)
    """
)


def _assignment(match: re.Match[str]) -> str:
    name, value = match.group("name"), match.group("value")
    if _TOKENIZER_NAMES.search(name) or value.lower() in _HARMLESS_VALUES:
        return match.group(0)
    return f"{name}{match.group('sep')}{match.group('quote')}{REDACTED}"


def redact(text: str) -> str:
    """``text`` with every credential it recognises replaced by ``[REDACTED]`` (see the module doc)."""
    if not text:
        return text
    if len(text) <= MEMO_MAX_CHARS:
        return _redact_memo(text)
    return _redact(text)


MEMO_MAX_CHARS = 8192
"""Texts up to this long are remembered (:func:`_redact_memo`); longer ones are rare and redacted anew."""


@functools.lru_cache(maxsize=4096)
def _redact_memo(text: str) -> str:
    """The operator redacts its whole status on every reconcile (``status.patch.merge_patch``), and
    almost every string in it is the same as last time: a dict lookup instead of 11 regex passes."""
    return _redact(text)


def _redact(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return _ASSIGNMENT.sub(_assignment, text)


def redact_value(value: Any) -> Any:
    """A copy of JSON-like ``value`` with every string (keys kept, values) passed through :func:`redact`."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {key: redact_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value(item) for item in value]
    return value


def _redact_record(record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except Exception:  # a broken format string: leave it to the formatter to report
        return
    record.msg, record.args = redact(message), None
    if record.exc_info and not record.exc_text:
        record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
    if record.stack_info:
        record.stack_info = redact(record.stack_info)


class _RedactingFactory:
    """A log record factory that redacts each record the wrapped factory makes."""

    def __init__(self, wrapped: Callable[..., logging.LogRecord]) -> None:
        self.wrapped = wrapped

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = self.wrapped(*args, **kwargs)
        _redact_record(record)
        return record


def install_log_redaction() -> None:
    """Redact every log record as it is created (any logger, any handler, kopf's Event poster too).

    Idempotent: installing twice wraps the record factory once.
    """
    current = logging.getLogRecordFactory()
    if not isinstance(current, _RedactingFactory):
        logging.setLogRecordFactory(_RedactingFactory(current))
