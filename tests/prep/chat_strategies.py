"""Hypothesis strategies for random OpenAI chat rows that stress the nano3 format's edge cases.

Texts are drawn from a small alphabet rich in the characters the template treats specially
(whitespace that ``trim`` removes, think tags, tool tags), so quirks show up in a few hundred examples.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

_PIECES = [
    "hi",
    "Hello there",
    " ",
    "\n",
    "\t",
    "\n\n",
    "<think>",
    "</think>",
    "x",
    "ü",
    "42",
    '{"a": 1}',
    "<tool_call>",
    "# Tools",
    "<|im_end|>\n",
    "a b",
    "é",
]


def chat(*turns: tuple[str, str], **extra: Any) -> dict[str, Any]:
    """A row from (role, content) pairs: ``chat(("user", "hi"), ("assistant", "hello"))``."""
    return {"messages": [{"role": r, "content": c} for r, c in turns], **extra}


text = st.lists(st.sampled_from(_PIECES), max_size=6).map("".join)
plain_text = st.lists(st.sampled_from(["hi", " ", "\n", "x y", "ok", "ü"]), max_size=4).map("".join)

json_value = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.sampled_from([1.5, 0.0]) | plain_text,
    lambda inner: (
        st.lists(inner, max_size=2) | st.dictionaries(st.sampled_from(["k", "v"]), inner, max_size=2)
    ),
    max_leaves=4,
)

tool_call = st.builds(
    lambda name, args, as_str: {
        "type": "function",
        "function": {"name": name, "arguments": __import__("json").dumps(args) if as_str else args},
    },
    st.sampled_from(["get_weather", "search", "f"]),
    st.dictionaries(st.sampled_from(["city", "q", "n", "opts"]), json_value, max_size=3),
    st.booleans(),
)

param_spec = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["string", "integer", ["string", "null"]]),
        "description": plain_text,
        "enum": st.lists(plain_text, max_size=2),
        "default": json_value,
        "items": st.just({"type": "string"}),
    },
)

tool_def = st.builds(
    lambda name, desc, props, required, wrap, extra: (
        {
            "type": "function",
            "function": {
                "name": name,
                **desc,
                "parameters": {"type": "object", "properties": props, **required, **extra},
            },
        }
        if wrap
        else {"name": name, **desc, "parameters": {"type": "object", "properties": props, **required}}
    ),
    st.sampled_from(["get_weather", "search"]),
    st.fixed_dictionaries({}, optional={"description": plain_text}),
    st.dictionaries(st.sampled_from(["city", "q", "n"]), param_spec, max_size=3),
    st.fixed_dictionaries({}, optional={"required": st.lists(st.sampled_from(["city", "q"]), max_size=2)}),
    st.booleans(),
    st.fixed_dictionaries({}, optional={"additionalProperties": st.booleans()}),
)


@st.composite
def message(draw: st.DrawFn, reasoning: bool) -> dict[str, Any]:
    role = draw(st.sampled_from(["user", "user", "assistant", "assistant", "tool", "system"]))
    if role == "assistant":
        msg: dict[str, Any] = {"role": role, "content": draw(st.none() | text)}
        if reasoning:
            r = draw(st.none() | st.sampled_from(["", " ", "\n", "Let me think.", " step\n", "a</think>b"]))
            if r is not None:
                msg["reasoning_content"] = r
        if draw(st.integers(0, 3)) == 0:
            msg["tool_calls"] = draw(st.lists(tool_call, min_size=1, max_size=2))
        return msg
    if role == "tool":
        return {"role": role, "content": draw(text), "tool_call_id": "call_1"}
    return {"role": role, "content": draw(text)}


@st.composite
def chat_rows(draw: st.DrawFn) -> dict[str, Any]:
    """A row with at least one assistant turn (parse_conversation may still reject <tool_call> text)."""
    reasoning = draw(st.booleans())
    msgs = draw(st.lists(message(reasoning), min_size=1, max_size=7))
    if draw(st.booleans()):
        msgs.insert(0, {"role": "system", "content": draw(text)})
    if not any(m["role"] == "assistant" for m in msgs):
        msgs.append({"role": "assistant", "content": draw(text)})
    row: dict[str, Any] = {"messages": msgs}
    if draw(st.integers(0, 2)) == 0:
        row["tools"] = draw(st.lists(tool_def, min_size=1, max_size=2))
    return row


@st.composite
def realistic_rows(draw: st.DrawFn) -> dict[str, Any]:
    """Well-formed alternating conversations (every assistant turn follows a user or tool turn)."""
    reasoning = draw(st.booleans())
    msgs: list[dict[str, Any]] = []
    if draw(st.booleans()):
        msgs.append({"role": "system", "content": draw(plain_text)})
    for _ in range(draw(st.integers(1, 4))):
        msgs.append({"role": "user", "content": draw(plain_text)})
        if draw(st.booleans()):
            msgs.append(
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": draw(st.lists(tool_call, min_size=1, max_size=2)),
                }
            )
            for _ in range(draw(st.integers(1, 2))):
                msgs.append({"role": "tool", "content": draw(plain_text)})
        ans: dict[str, Any] = {"role": "assistant", "content": draw(plain_text)}
        if reasoning and draw(st.booleans()):
            ans["reasoning_content"] = draw(plain_text)
        msgs.append(ans)
    return {"messages": msgs}
