"""Row validation: what is accepted and normalized, and the stable reason for everything else."""

from __future__ import annotations

from typing import Any

import pytest

from prep.chat_strategies import chat
from sft_prep.chat import REASONS, RowError, ToolCall, parse_conversation, parse_json_row


def test_normalizes_openai_row() -> None:
    row = {
        "messages": [
            {"role": "system", "content": "s"},
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
            {
                "role": "assistant",
                "content": None,
                "reasoning_content": "think",
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}},
                    {"name": "g", "arguments": {"y": [2]}},
                    {"function": {"name": "h"}},
                ],
            },
            {"role": "tool", "content": "r", "tool_call_id": "c1", "name": "f"},
            {"role": "assistant", "content": "done"},
        ],
        "tools": '[{"type": "function", "function": {"name": "f"}}]',
    }
    conv = parse_conversation(row)
    assert [m.role for m in conv.messages] == ["system", "user", "assistant", "tool", "assistant"]
    assert conv.messages[1].content == "ab"
    assert conv.messages[2].content == ""
    assert conv.messages[2].tool_calls == (
        ToolCall("f", {"x": 1}),
        ToolCall("g", {"y": [2]}),
        ToolCall("h", {}),
    )
    assert conv.messages[3].tool_call_id == "c1" and conv.messages[3].name == "f"
    assert conv.tools == ({"type": "function", "function": {"name": "f"}},)
    assert conv.has_thinking
    d = conv.template_messages()[2]
    assert d["tool_calls"][0] == {"type": "function", "function": {"name": "f", "arguments": {"x": 1}}}
    assert "reasoning_content" not in conv.template_messages()[4]


def test_custom_fields() -> None:
    conv = parse_conversation(
        {
            "conv": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
            "fns": [{"name": "f"}],
        },
        messages_field="conv",
        tools_field="fns",
    )
    assert len(conv.messages) == 2 and conv.tools == ({"name": "f"},)


def test_thinking_follows_upstream_non_empty_rule() -> None:
    blank = {
        "messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "a", "reasoning_content": " "},
        ]
    }
    empty = {
        "messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "a", "reasoning_content": ""},
        ]
    }
    assert parse_conversation(blank).has_thinking
    assert not parse_conversation(empty).has_thinking


BAD: list[tuple[str, Any]] = [
    ("bad_row_type", ["not", "a", "dict"]),
    ("missing_messages", {"conversation": []}),
    ("missing_messages", {"messages": None}),
    ("bad_messages_type", {"messages": "hi"}),
    ("empty_conversation", {"messages": []}),
    ("bad_message_type", {"messages": ["hi"]}),
    ("missing_role", {"messages": [{"content": "hi"}]}),
    ("unknown_role", chat(("developer", "x"), ("assistant", "y"))),
    ("bad_content_type", chat(("user", 3), ("assistant", "y"))),
    ("bad_content_type", chat(("user", None), ("assistant", "y"))),
    ("bad_content_type", chat(("user", "x"), ("assistant", {"text": "y"}))),
    ("bad_content_type", chat(("user", [{"type": "text"}]), ("assistant", "y"))),
    (
        "non_text_content",
        chat(("user", [{"type": "image_url", "image_url": {"url": "u"}}]), ("assistant", "y")),
    ),
    (
        "bad_reasoning_type",
        {
            "messages": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": "a", "reasoning_content": ["r"]},
            ]
        },
    ),
    (
        "bad_tool_calls",
        {
            "messages": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": "a", "tool_calls": {"name": "f"}},
            ]
        },
    ),
    (
        "bad_tool_calls",
        {
            "messages": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": "a", "tool_calls": [{"function": {}}]},
            ]
        },
    ),
    (
        "bad_tool_arguments",
        {
            "messages": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "{oops"}}]},
            ]
        },
    ),
    (
        "bad_tool_arguments",
        {
            "messages": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "[1]"}}]},
            ]
        },
    ),
    ("bad_tools", chat(("user", "q"), ("assistant", "a"), tools={"name": "f"})),
    ("bad_tools", chat(("user", "q"), ("assistant", "a"), tools=[{"description": "no name"}])),
    ("bad_tools", chat(("user", "q"), ("assistant", "a"), tools="[not json")),
    ("no_assistant_turn", chat(("system", "s"), ("user", "q"))),
    (
        "tool_call_text_without_tools_header",
        chat(("user", "q"), ("assistant", "<tool_call>\nf\n</tool_call>")),
    ),
]


@pytest.mark.parametrize(("reason", "row"), BAD)
def test_malformed_rows_have_stable_reasons(reason: str, row: Any) -> None:
    with pytest.raises(RowError) as info:
        parse_conversation(row)
    assert info.value.reason == reason
    assert reason in REASONS and len(info.value.detail) <= 200


def test_tool_call_text_with_tools_header_is_kept() -> None:
    row = chat(("system", "# Tools\n..."), ("user", "q"), ("assistant", "<tool_call>\nf\n</tool_call>"))
    assert parse_conversation(row).messages[2].content.startswith("<tool_call>")


def test_parse_json_row() -> None:
    assert parse_json_row('{"messages": []}') == {"messages": []}
    with pytest.raises(RowError) as info:
        parse_json_row('{"messages": [')
    assert info.value.reason == "bad_json" and "line 1" in info.value.detail
    with pytest.raises(RowError, match="bad_json"):
        parse_json_row("[1, 2]")
    with pytest.raises(RowError, match="bad_json"):
        parse_json_row(b"\xff\xfe")


def test_details_are_capped() -> None:
    with pytest.raises(RowError) as info:
        parse_conversation(chat(("x" * 1000, "y"), ("assistant", "z")))
    assert len(info.value.detail) <= 200
    with pytest.raises(ValueError, match="unknown RowError reason"):
        RowError("made_up", "x")


def test_row_errors_pickle() -> None:
    import pickle

    err = pickle.loads(pickle.dumps(RowError("bad_json", "Expecting value at line 1 column 2")))
    assert (err.reason, err.detail) == ("bad_json", "Expecting value at line 1 column 2")
