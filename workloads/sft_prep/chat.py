"""Parse and validate one OpenAI-format chat row into a normalized :class:`Conversation`.

Why a strict parser in front of the template: upstream (NVIDIA-NeMo/Nemotron data prep) feeds raw
rows to Jinja, so a ``None`` user content renders as the text ``"None"`` and a list of content parts
renders as a Python repr — silently training on garbage. Here every row is checked once, turned
into plain immutable values, and anything the template would mangle is dropped with a stable
snake_case reason that the pipeline counts (``RowError.reason``) and a short ``detail``.

Accepted shape (one row, already decoded from JSON or Parquet)::

    {"messages": [{"role": "system"|"user"|"assistant"|"tool",
                   "content": str | [{"type": "text", "text": str}, ...] | None (assistant only),
                   "reasoning_content": str | None,             # assistant only
                   "tool_calls": [{"type": "function",
                                   "function": {"name": str, "arguments": dict | JSON-object str}}],
                   "name": str, "tool_call_id": str}],          # tool only, optional
     "tools": [{"type": "function", "function": {"name": str, ...}}] | JSON str | None}

Content given as a list of parts is accepted when every part is a text part; the texts are joined
with no separator (the OpenAI API's own meaning of a multi-part text message). Image, audio or file
parts are rejected (``non_text_content``): this pipeline trains a text model.

Reasoning written inline — an assistant ``content`` that opens with ``<think>…</think>`` and has no
``reasoning_content`` (the common export format of reasoning models and of vLLM/SGLang without a
reasoning parser) — is split into ``reasoning_content`` and the answer after ``</think>``
(:func:`split_inline_reasoning`), so it renders, masks and splits into per-user-turn sequences exactly
as the same row written with ``reasoning_content`` (the field the reference nano3 template renders).
Without the split the nano3 template keeps the tags verbatim in the content, so the turn no longer
starts with the generation prompt and the row was dropped as ``template_mismatch``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

ROLES = ("system", "user", "assistant", "tool")

#: Every reason a row can be dropped for, with what it means (documentation and a closed set for tests).
REASONS: dict[str, str] = {
    "bad_json": "the line is not valid JSON (or not a JSON object, or nested too deeply)",
    "bad_text": "a string holds a lone UTF-16 surrogate (e.g. \\ud800): not text, cannot be encoded",
    "row_too_large": "the line is longer than max_row_bytes (refused before parsing)",
    "bad_row_type": "the row is not an object",
    "missing_messages": "the row has no messages field",
    "bad_messages_type": "messages is not a list",
    "empty_conversation": "messages is an empty list",
    "bad_message_type": "a message is not an object",
    "missing_role": "a message has no role",
    "unknown_role": "a message role is not system, user, assistant or tool",
    "bad_content_type": "content is neither a string nor a list of text parts (or None outside assistant)",
    "non_text_content": "content has a non-text part (image, audio, file)",
    "bad_reasoning_type": "reasoning_content is not a string",
    "bad_tool_calls": "tool_calls is malformed (not a list of {function: {name, arguments}})",
    "bad_tool_arguments": "tool call arguments are not a JSON object (or a string holding one)",
    "bad_tools": "tools is not a list of function definitions with names",
    "no_assistant_turn": "there is no assistant message to train on",
    "tool_call_text_without_tools_header": (
        "<tool_call> text in a message but no '# Tools' header (upstream's filter)"
    ),
    "template_mismatch": "incremental rendering of a prefix does not match the full render",
    "template_error": "the chat template raised an error for this row",
    "no_trainable_tokens": "no sequence of the row has a trainable token (after truncation)",
}

_DETAIL_LIMIT = 200


class RowError(Exception):
    """A row that cannot become training data; counted by ``reason`` and never fatal to the run."""

    def __init__(self, reason: str, detail: str) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown RowError reason {reason!r}; add it to chat.REASONS")
        self.reason = reason
        self.detail = shorten(detail)
        super().__init__(f"{reason}: {self.detail}")

    def __reduce__(self) -> tuple[type[RowError], tuple[str, str]]:
        # Readers may run in worker processes; the default Exception pickling would lose ``detail``.
        return (type(self), (self.reason, self.detail))


def shorten(text: str, limit: int = _DETAIL_LIMIT) -> str:
    """Cap user-derived text in details and examples so that no raw conversation leaks in bulk."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(slots=True)
class ToolCall:
    name: str
    arguments: dict[str, Any]


@dataclass(slots=True)  # not frozen: a frozen init costs 4x, and these are made per message
class Message:
    role: str
    content: str
    reasoning_content: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    name: str | None = None
    tool_call_id: str | None = None

    def to_template_dict(self) -> dict[str, Any]:
        """The dict a Jinja chat template sees. Optional keys appear only when set, because
        templates test them with ``is defined``; absent and ``None`` render the same in nano3."""
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.reasoning_content is not None:
            out["reasoning_content"] = self.reasoning_content
        if self.tool_calls:
            out["tool_calls"] = [
                {"type": "function", "function": {"name": tc.name, "arguments": tc.arguments}}
                for tc in self.tool_calls
            ]
        if self.name is not None:
            out["name"] = self.name
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        return out


@dataclass(slots=True)
class Conversation:
    messages: tuple[Message, ...]
    tools: tuple[dict[str, Any], ...] | None = None

    @property
    def has_thinking(self) -> bool:
        """Upstream's rule (``create_masked_messages``): any non-empty ``reasoning_content`` string.

        Note that a whitespace-only reasoning string counts here although the template renders it
        as empty ``<think></think>``; we keep upstream's rule because it decides the per-user-turn
        split and the generation prompt, and so the token stream."""
        return any(m.reasoning_content for m in self.messages)

    def template_messages(self) -> list[dict[str, Any]]:
        return [m.to_template_dict() for m in self.messages]

    def template_tools(self) -> list[dict[str, Any]] | None:
        return list(self.tools) if self.tools else None


_LONE_SURROGATE_ESCAPE = re.compile(
    rb"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})"
    rb"|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2}"
)
"""A JSON escape of a UTF-16 surrogate that is not half of a valid pair. Raw UTF-8 cannot carry a
surrogate, so only a line matching this (an escaped backslash may fool it: the row is then walked
and passes) can hold one."""


def parse_json_row(line: str | bytes) -> dict[str, Any]:
    """Decode one JSONL line; raises ``RowError('bad_json')`` (readers may use this), or
    ``RowError('bad_text')`` for a lone surrogate escape, which no tokenizer can encode."""
    try:
        row = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        where = (
            f"{exc.msg.removesuffix(' at')} at line {exc.lineno} column {exc.colno}"
            if isinstance(exc, json.JSONDecodeError)
            else str(exc)
        )
        raise RowError("bad_json", where) from None
    except RecursionError:
        raise RowError("bad_json", "nested too deeply (arrays/objects nested about 1000 levels)") from None
    if not isinstance(row, dict):
        raise RowError("bad_json", f"a JSON {type(row).__name__}, not an object")
    raw = line.encode("utf-8", "surrogatepass") if isinstance(line, str) else line
    if _LONE_SURROGATE_ESCAPE.search(raw):
        check_text(row)
    return row


def check_text(value: Any, where: str = "row") -> None:
    """Raise ``RowError('bad_text')`` naming the first string (or key) below ``value`` that holds a
    lone surrogate. Iterative: the value may be nested as deeply as JSON allows."""
    stack: list[tuple[str, Any]] = [(where, value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            bad = lone_surrogate(item)
            if bad is not None:
                raise RowError("bad_text", f"{path}: lone surrogate \\u{ord(bad):04x} (not encodable text)")
        elif isinstance(item, Mapping):
            for key, sub in item.items():
                if isinstance(key, str) and lone_surrogate(key) is not None:
                    raise RowError("bad_text", f"{path}: a key holds a lone surrogate")
                stack.append((f"{path}.{key}" if path != "row" else str(key), sub))
        elif isinstance(item, list | tuple):
            stack.extend((f"{path}[{i}]", sub) for i, sub in reversed(list(enumerate(item))))


def lone_surrogate(text: str) -> str | None:
    """The first lone surrogate in ``text`` (json.loads joins valid pairs, so any left is lone)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return text[exc.start]
    return None


def _loads_field(raw: str, reason: str, what: str) -> Any:
    """json.loads of a string-valued field (tool arguments, tools) with the row-level checks."""
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise RowError(reason, f"{what} are not JSON ({exc.msg})") from None
    except RecursionError:
        raise RowError(reason, f"{what} are nested too deeply") from None
    if "\\u" in raw:
        check_text(value, what)
    return value


def _text(value: Any, where: str, *, allow_none: bool) -> str:
    if isinstance(value, str):
        return value
    if value is None and allow_none:
        return ""
    if isinstance(value, list):
        parts = []
        for part in value:
            if isinstance(part, str):
                parts.append(part)
                continue
            if not isinstance(part, Mapping):
                raise RowError("bad_content_type", f"{where}: content part is a {type(part).__name__}")
            kind = part.get("type", "text")
            if kind != "text":
                raise RowError("non_text_content", f"{where}: content part of type {kind!r}")
            text = part.get("text")
            if not isinstance(text, str):
                raise RowError("bad_content_type", f"{where}: text part without a string 'text'")
            parts.append(text)
        return "".join(parts)
    raise RowError("bad_content_type", f"{where}: content is {type(value).__name__}")


def _arguments(raw: Any, where: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if isinstance(raw, str):
        if not raw.strip():
            return {}
        raw = _loads_field(raw, "bad_tool_arguments", f"{where}: arguments")
    if not isinstance(raw, dict):
        raise RowError("bad_tool_arguments", f"{where}: arguments are a {type(raw).__name__}, not an object")
    return raw


def _tool_calls(raw: Any, where: str) -> tuple[ToolCall, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise RowError("bad_tool_calls", f"{where}: tool_calls is a {type(raw).__name__}")
    calls = []
    for j, call in enumerate(raw):
        if not isinstance(call, Mapping):
            raise RowError("bad_tool_calls", f"{where}.tool_calls[{j}] is a {type(call).__name__}")
        fn = call.get("function", call)
        if not isinstance(fn, Mapping) or not isinstance(fn.get("name"), str) or not fn["name"]:
            raise RowError("bad_tool_calls", f"{where}.tool_calls[{j}] has no function name")
        calls.append(ToolCall(fn["name"], _arguments(fn.get("arguments"), f"{where}.tool_calls[{j}]")))
    return tuple(calls)


def _tools(raw: Any) -> tuple[dict[str, Any], ...] | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        if not raw.strip():
            return None
        raw = _loads_field(raw, "bad_tools", "tools (a string)")
    if not isinstance(raw, list):
        raise RowError("bad_tools", f"tools is a {type(raw).__name__}, not a list")
    for j, tool in enumerate(raw):
        fn = tool.get("function", tool) if isinstance(tool, Mapping) else None
        if not isinstance(fn, Mapping) or not isinstance(fn.get("name"), str) or not fn["name"]:
            raise RowError("bad_tools", f"tools[{j}] is not a function definition with a name")
    return tuple(raw) or None


THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"


def split_inline_reasoning(content: str) -> tuple[str | None, str]:
    """``(reasoning, answer)`` of an assistant content that opens with an inline ``<think>`` block.

    The inverse of the nano3 render ``<think>\\n{reasoning}\\n</think>\\n{content}``: the newlines
    the template adds around the reasoning and before the answer are removed (the same rule as the
    Qwen3 template's own split), so ``<think>\\nR\\n</think>\\nA`` gives back exactly ``(R, A)``.
    Content that does not open with ``<think>`` (after leading whitespace), or has no ``</think>``
    after it, is returned unchanged with ``None`` reasoning: only a leading block is reasoning.
    """
    head = content.lstrip()
    if not head.startswith(THINK_OPEN):
        return None, content
    end = head.find(THINK_CLOSE, len(THINK_OPEN))
    if end < 0:
        return None, content
    reasoning = head[len(THINK_OPEN) : end].strip("\n")
    answer = head[end + len(THINK_CLOSE) :].lstrip("\n")
    return reasoning, answer


def _optional_str(msg: Mapping[str, Any], key: str, where: str) -> str | None:
    value = msg.get(key)
    if value is None or isinstance(value, str):
        return value
    raise RowError("bad_content_type", f"{where}.{key} is a {type(value).__name__}")


def parse_conversation(
    row: Any, messages_field: str = "messages", tools_field: str = "tools"
) -> Conversation:
    """Validate ``row`` and return its :class:`Conversation`; raise :class:`RowError` otherwise."""
    if type(row) is not dict and not isinstance(row, Mapping):
        raise RowError("bad_row_type", f"row is a {type(row).__name__}")
    if messages_field not in row or row[messages_field] is None:
        raise RowError("missing_messages", f"no {messages_field!r} field")
    raw_messages = row[messages_field]
    if isinstance(raw_messages, tuple):
        raw_messages = list(raw_messages)
    if not isinstance(raw_messages, list):
        raise RowError("bad_messages_type", f"{messages_field!r} is a {type(raw_messages).__name__}")
    if not raw_messages:
        raise RowError("empty_conversation", f"{messages_field!r} is empty")
    messages = []
    for i, msg in enumerate(raw_messages):
        where = f"messages[{i}]"
        if type(msg) is not dict and not isinstance(msg, Mapping):  # the dict test first: hot path
            raise RowError("bad_message_type", f"{where} is a {type(msg).__name__}")
        role = msg.get("role")
        if role is None:
            raise RowError("missing_role", f"{where} has no role")
        if role not in ROLES:
            raise RowError("unknown_role", f"{where} has role {shorten(str(role), 40)!r}")
        content = _text(msg.get("content"), where, allow_none=role == "assistant")
        if role == "assistant":
            reasoning = msg.get("reasoning_content")
            if reasoning is not None and not isinstance(reasoning, str):
                raise RowError(
                    "bad_reasoning_type", f"{where}.reasoning_content is a {type(reasoning).__name__}"
                )
            if reasoning is None and THINK_OPEN in content:
                reasoning, content = split_inline_reasoning(content)
            messages.append(Message(role, content, reasoning, _tool_calls(msg.get("tool_calls"), where)))
        elif role == "tool":
            name = _optional_str(msg, "name", where)
            messages.append(Message(role, content, None, (), name, _optional_str(msg, "tool_call_id", where)))
        else:
            messages.append(Message(role, content))
    if not any(m.role == "assistant" for m in messages):
        raise RowError("no_assistant_turn", f"{len(messages)} messages, none from the assistant")
    # Upstream's validate_conversation: pre-rendered <tool_call> text without a tools header means
    # the row was produced for another format; training on it would teach a broken protocol.
    texts = [m.content for m in messages] + [m.reasoning_content or "" for m in messages]
    if any("<tool_call>" in t for t in texts) and not any("# Tools" in t for t in texts):  # rare
        raise RowError(
            "tool_call_text_without_tools_header", "<tool_call> in message text, no '# Tools' header"
        )
    return Conversation(tuple(messages), _tools(row.get(tools_field)))
