"""Native renderer + chunker for the built-in nano3 template: same chunks as the generic path, linear time.

Why: the reference algorithm renders every prefix of a conversation with Jinja, O(turns²) template
work per row, which dominates prep time next to a Rust tokenizer. nano3 renders each message into a
segment that depends only on the message, whether it sits before the last user turn ("historic":
reasoning stripped), and its neighbours (tool blocks). So a prefix render is the system block plus
the prefix's segments plus a generation prompt, and the chunker's "is this prefix a prefix of the full
render?" check reduces to comparing the few segments whose historic flag differs between the prefix and
the full conversation — they are compared exactly, by building the prefix string, when they differ.

Every branch mirrors ``templates/nano3.jinja`` (and :mod:`sft_prep.chunking`); the property tests in
``tests/prep/test_fast_path.py`` check both the full render and the chunks against the Jinja path on
random conversations, including think tags inside content, blank reasoning and odd whitespace.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from sft_prep.chat import Conversation, Message
from sft_prep.chunking import (
    EMPTY_THINK_PROMPT,
    Chunk,
    mismatch,
    reasoning_renders_empty,
    split_leading_system,
    system_block_end,
    thinking_subconversations,
)

THINK_PROMPT = "<|im_start|>assistant\n<think>\n"
_EMPTY_THINK = "<think></think>"
_TOOLS_FOOTER = (
    "\n</tools>\n\nIf you choose to call a function ONLY reply in the following format with NO suffix:\n\n"
    "<tool_call>\n<function=example_function_name>\n<parameter=example_parameter_1>\nvalue_1\n</parameter>\n"
    "<parameter=example_parameter_2>\nThis is the value for the second parameter\nthat can span\n"
    "multiple lines\n</parameter>\n</function>\n</tool_call>\n\n<IMPORTANT>\nReminder:\n"
    "- Function calls MUST follow the specified format: an inner <function=...></function> block must be "
    "nested within <tool_call></tool_call> XML tags\n- Required parameters MUST be specified\n"
    "- You may provide optional reasoning for your function call in natural language BEFORE the function "
    "call, but NOT after\n- If there is no function call available, answer the question like normal with "
    "your current knowledge and do not tell the user about function calls\n</IMPORTANT>"
)


def _tojson(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _is_container(value: Any) -> bool:
    """Jinja's ``is mapping or (is sequence and is not string)`` for JSON-decoded values."""
    return isinstance(value, (Mapping, list, tuple))


def _value(value: Any) -> str:
    return _tojson(value) if _is_container(value) else str(value)


def _extras(obj: Any, known: tuple[str, ...]) -> str:
    if not isinstance(obj, Mapping):
        return ""
    return "".join(f"\n<{k}>{_value(v)}</{k}>" for k, v in obj.items() if k not in known)


def _tool_definition(entry: Mapping[str, Any]) -> str:
    fn = entry.get("function", entry)
    out = [f"\n<function>\n<name>{fn['name']}</name>"]
    if "description" in fn:
        out.append(f"\n<description>{str(fn['description']).strip()}</description>")
    out.append("\n<parameters>")
    params = fn.get("parameters")
    has_params = "parameters" in fn
    if has_params and isinstance(params, Mapping) and isinstance(params.get("properties"), Mapping):
        for pname, spec in params["properties"].items():
            out.append(f"\n<parameter>\n<name>{pname}</name>")
            if isinstance(spec, Mapping):
                if "type" in spec:
                    out.append(f"\n<type>{spec['type']}</type>")
                if "description" in spec:
                    out.append(f"\n<description>{str(spec['description']).strip()}</description>")
                if "enum" in spec:
                    out.append(f"\n<enum>{_tojson(spec['enum'])}</enum>")
                out.append(_extras(spec, ("name", "type", "description", "enum")))
            out.append("\n</parameter>")
    out.append(_extras(params, ("type", "properties", "required")))
    if isinstance(params, Mapping) and "required" in params:
        out.append(f"\n<required>{_tojson(params['required'])}</required>")
    out.append("\n</parameters>")
    out.append(_extras(fn, ("type", "name", "description", "parameters")))
    out.append("\n</function>")
    return "".join(out)


def system_block(system: str, tools: Sequence[Mapping[str, Any]] | None) -> str:
    out = "<|im_start|>system\n" + system
    if tools:
        if system:
            out += "\n\n"
        out += "# Tools\n\nYou have access to the following functions:\n\n<tools>"
        out += "".join(_tool_definition(t) for t in tools) + _TOOLS_FOOTER
    return out + "<|im_end|>\n"


def assistant_segment(m: Message, historic: bool) -> str:
    body = m.content
    if m.reasoning_content is not None and m.reasoning_content.strip():
        body = "<think>\n" + m.reasoning_content + "\n</think>\n" + body
    elif "<think>" not in body and "</think>" not in body:
        body = _EMPTY_THINK + body
    if m.tool_calls:
        out = ["<|im_start|>assistant\n"]
        if body.strip():
            if not historic:
                out.append(body.strip() + "\n")
            else:
                if "</think>" in body:
                    body = body.split("</think>")[-1]
                elif "<think>" in body:
                    body = body.split("<think>")[0]
                out.append(_EMPTY_THINK + body.strip() + "\n")
        else:
            out.append(_EMPTY_THINK)
        for call in m.tool_calls:
            out.append(f"<tool_call>\n<function={call.name}>\n")
            out.extend(f"<parameter={k}>\n{_value(v)}\n</parameter>\n" for k, v in call.arguments.items())
            out.append("</function>\n</tool_call>\n")
        out.append("<|im_end|>\n")
        return "".join(out)
    if historic and "<think>" in body and "</think>" in body:
        body = _EMPTY_THINK + body.split("</think>")[-1]
    return "<|im_start|>assistant\n" + body.strip() + "<|im_end|>\n"


class _Renderer:
    """Segments of one (sub-)conversation ``messages[:end]`` with nano3, memoized across prefixes."""

    def __init__(self, conv: Conversation) -> None:
        msgs = conv.messages
        self.messages = msgs
        self.offset = 1 if msgs[0].role == "system" else 0
        self.system = system_block(msgs[0].content if self.offset else "", conv.tools)
        last, upto = -1, []
        for i, m in enumerate(msgs):
            if m.role == "user":
                last = i
            upto.append(last)
        self.last_user_upto = upto  # index of the last user message at or before i (-1: none)
        self._assistant: dict[tuple[int, bool], str] = {}
        self._plain: dict[int, str] = {}  # user/system segments: the same in every sub-conversation

    def segment(self, i: int, historic: bool, end: int) -> str:
        """Segment of absolute message ``i`` inside ``messages[:end]``."""
        m = self.messages[i]
        if m.role == "assistant":
            key = (i, historic)
            seg = self._assistant.get(key)
            if seg is None:
                seg = self._assistant[key] = assistant_segment(m, historic)
            return seg
        if m.role == "tool":
            prev_exists = i > self.offset
            head = "<|im_start|>user\n" if prev_exists and self.messages[i - 1].role != "tool" else ""
            last = i == end - 1
            tail = "<|im_end|>\n" if last or self.messages[i + 1].role != "tool" else ""
            return head + "<tool_response>\n" + m.content + "\n</tool_response>\n" + tail
        seg = self._plain.get(i)
        if seg is None:
            seg = self._plain[i] = "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n"
        return seg

    def always_same(self, i: int) -> bool:
        """Whether assistant message ``i`` renders the same historic or not: plain text without
        reasoning, tool calls or think tags (most turns), so no prefix can disagree because of it."""
        m = self.messages[i]
        return not (m.reasoning_content or m.tool_calls or "think>" in m.content)


def _tail(messages: Sequence[Message], i: int, end: int, thinking: bool) -> str:
    """Generation prompt the chunker appends after prefix ``messages[:i+1]`` (see chunking.py)."""
    if i + 1 >= end or messages[i + 1].role != "assistant":
        return ""
    role = messages[i].role
    if thinking and role != "assistant" and reasoning_renders_empty(messages[i + 1]):
        return EMPTY_THINK_PROMPT
    if role in ("user", "tool"):
        return THINK_PROMPT if thinking else EMPTY_THINK_PROMPT
    return ""


class _Sub:
    """The full render of ``messages[:end]`` with per-message segment offsets."""

    def __init__(self, r: _Renderer, end: int) -> None:
        self.r = r
        self.end = end
        self.last_user = r.last_user_upto[end - 1]
        self.segments = [r.segment(i, i < self.last_user, end) if i >= r.offset else "" for i in range(end)]
        self.full = r.system + "".join(self.segments)
        ends = []
        pos = len(r.system)
        for seg in self.segments:
            pos += len(seg)
            ends.append(pos)
        self.ends = ends
        # differ_before[t]: how many messages before t render differently when not historic — only
        # those can make a prefix (where they are not historic yet) disagree with the full render.
        differ_before = [0] * (end + 1)
        msgs = r.messages
        for t in range(end):
            differs = (
                r.offset <= t < self.last_user
                and msgs[t].role == "assistant"
                and not r.always_same(t)
                and r.segment(t, False, end) != self.segments[t]
            )
            differ_before[t + 1] = differ_before[t] + differs
        self.differ_before = differ_before

    def prefix_end(self, i: int, thinking: bool) -> int:
        """``len(prefix render)`` after checking it is a prefix of ``full``; RowError otherwise."""
        r = self.r
        msgs = r.messages
        tail = _tail(msgs, i, self.end, thinking)
        prefix_user = r.last_user_upto[i]
        # Messages in [prefix_user, i] are not historic in the prefix; they match the full render
        # unless one of them is historic there and renders differently.
        if self.differ_before[i + 1] == self.differ_before[max(prefix_user, 0)]:
            pos = self.ends[i]
            if not self.full.startswith(tail, pos):
                raise mismatch(msgs[: self.end], i, prompt_only=True)
            return pos + len(tail)
        text = r.system + "".join(r.segment(t, t < prefix_user, i + 1) for t in range(r.offset, i + 1))
        if not self.full.startswith(text + tail):
            raise mismatch(msgs[: self.end], i, prompt_only=self.full.startswith(text))
        return len(text) + len(tail)

    def chunks(self, start: int, previous: int, thinking: bool) -> list[Chunk]:
        msgs = self.r.messages
        out = []
        for i in range(start, self.end):
            if msgs[i].role == "tool" and i + 1 < self.end and msgs[i + 1].role == "tool":
                continue
            pos = self.prefix_end(i, thinking)
            out.append(Chunk(msgs[i].role, self.full[previous:pos]))
            previous = pos
        return out


def render(conv: Conversation, *, add_generation_prompt: bool = False, thinking: bool | None = None) -> str:
    """The full nano3 render (what the Jinja template gives with ``truncate_history_thinking``)."""
    thinking = conv.has_thinking if thinking is None else thinking
    text = _Sub(_Renderer(conv), len(conv.messages)).full
    if add_generation_prompt:
        text += THINK_PROMPT if thinking else EMPTY_THINK_PROMPT
    return text


def split_nano3(conv: Conversation) -> list[list[Chunk]]:
    """Same result as ``chunking.split_generic(conv, <built-in nano3>)``, without Jinja."""
    r = _Renderer(conv)
    msgs = conv.messages
    if not conv.has_thinking:
        sub = _Sub(r, len(msgs))
        return [split_leading_system(sub.chunks(0, 0, False), sub.full)]
    sequences = []
    for last_user, end in thinking_subconversations(msgs):
        sub = _Sub(r, end)
        context_end = sub.prefix_end(last_user, True)
        sys_end = system_block_end(sub.full)
        head = [Chunk("system", sub.full[:sys_end]), Chunk("user", sub.full[sys_end:context_end])]
        sequences.append(head + sub.chunks(last_user + 1, context_end, True))
    return sequences
