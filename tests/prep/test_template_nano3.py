"""Golden tests of the nano3 format: expected strings written by hand from the format description.

Each case runs through both renderers — the Jinja template and the native fast path — so a quirk
that one of them loses fails here, not silently in the token stream.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from prep.chat_strategies import chat
from sft_common.config import ConfigError
from sft_prep import nano3_fast
from sft_prep.chat import parse_conversation
from sft_prep.template import ChatTemplate, TemplateError, builtin_nano3_text, load_template

SYS_EMPTY = "<|im_start|>system\n<|im_end|>\n"
TOOLS_FOOTER = (
    "\n\nIf you choose to call a function ONLY reply in the following format with NO suffix:\n\n"
    "<tool_call>\n<function=example_function_name>\n<parameter=example_parameter_1>\nvalue_1\n"
    "</parameter>\n<parameter=example_parameter_2>\nThis is the value for the second parameter\n"
    "that can span\nmultiple lines\n</parameter>\n</function>\n</tool_call>\n\n<IMPORTANT>\nReminder:\n"
    "- Function calls MUST follow the specified format: an inner <function=...></function> block must "
    "be nested within <tool_call></tool_call> XML tags\n- Required parameters MUST be specified\n"
    "- You may provide optional reasoning for your function call in natural language BEFORE the "
    "function call, but NOT after\n- If there is no function call available, answer the question like "
    "normal with your current knowledge and do not tell the user about function calls\n</IMPORTANT>"
)

Render = Callable[..., str]


def _jinja(row: dict[str, Any], gen: bool = False, thinking: bool | None = None) -> str:
    conv = parse_conversation(row)
    think = conv.has_thinking if thinking is None else thinking
    return load_template("nano3").render(
        conv.template_messages(), conv.template_tools(), add_generation_prompt=gen, enable_thinking=think
    )


def _native(row: dict[str, Any], gen: bool = False, thinking: bool | None = None) -> str:
    return nano3_fast.render(parse_conversation(row), add_generation_prompt=gen, thinking=thinking)


@pytest.fixture(params=[_jinja, _native], ids=["jinja", "native"])
def render(request: pytest.FixtureRequest) -> Render:
    return request.param


def test_system_block_is_emitted_even_without_system_message(render: Render) -> None:
    out = render(chat(("user", "Hi"), ("assistant", "Hello!")))
    assert out == (
        "<|im_start|>system\n<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\n<think></think>Hello!<|im_end|>\n"
    )


def test_system_message_and_user_content_verbatim(render: Render) -> None:
    out = render(chat(("system", " Be brief. "), ("user", "  spaced  \n"), ("assistant", "ok")))
    assert out == (
        "<|im_start|>system\n Be brief. <|im_end|>\n<|im_start|>user\n  spaced  \n<|im_end|>\n"
        "<|im_start|>assistant\n<think></think>ok<|im_end|>\n"
    )


def test_assistant_content_is_trimmed_but_not_after_the_think_tag(render: Render) -> None:
    # "<think></think>" is glued on before trimming, so only trailing whitespace goes.
    out = render(chat(("user", "Hi"), ("assistant", "  Hello!  \n")))
    assert out.endswith("<|im_start|>assistant\n<think></think>  Hello!<|im_end|>\n")


def test_reasoning_block_with_newlines(render: Render) -> None:
    row = {
        "messages": [
            {"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": "4\n", "reasoning_content": "Add."},
        ]
    }
    assert render(row) == (
        SYS_EMPTY + "<|im_start|>user\n2+2?<|im_end|>\n"
        "<|im_start|>assistant\n<think>\nAdd.\n</think>\n4<|im_end|>\n"
    )


@pytest.mark.parametrize("blank", ["", "   ", "\n\t"])
def test_blank_reasoning_renders_as_empty_think(render: Render, blank: str) -> None:
    row = {
        "messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "a", "reasoning_content": blank},
        ]
    }
    assert render(row).endswith("<|im_start|>assistant\n<think></think>a<|im_end|>\n")


def test_reasoning_stripped_before_last_user_turn(render: Render) -> None:
    row = {
        "messages": [
            {"role": "user", "content": "u1"},
            {"role": "assistant", "content": "a1", "reasoning_content": "r1"},
            {"role": "user", "content": "u2"},
            {"role": "assistant", "content": "a2", "reasoning_content": "r2"},
        ]
    }
    # The historic turn keeps "<think></think>" and the text after "</think>" — including the newline
    # that followed it, because the trim happens after the tag is re-attached.
    assert render(row) == (
        SYS_EMPTY + "<|im_start|>user\nu1<|im_end|>\n"
        "<|im_start|>assistant\n<think></think>\na1<|im_end|>\n"
        "<|im_start|>user\nu2<|im_end|>\n"
        "<|im_start|>assistant\n<think>\nr2\n</think>\na2<|im_end|>\n"
    )


def test_tools_section_inside_system_block(render: Render) -> None:
    tool = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": " Weather now. ",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "description": "City"},
                    "unit": {"type": "string", "enum": ["c", "f"], "default": "c"},
                },
                "required": ["city"],
            },
        },
    }
    row = chat(("system", "Be brief."), ("user", "Hi"), ("assistant", "Hey"), tools=[tool])
    expected_system = (
        "<|im_start|>system\nBe brief.\n\n# Tools\n\nYou have access to the following functions:\n\n<tools>"
        "\n<function>\n<name>get_weather</name>\n<description>Weather now.</description>\n<parameters>"
        "\n<parameter>\n<name>city</name>\n<type>string</type>\n<description>City</description>\n</parameter>"
        '\n<parameter>\n<name>unit</name>\n<type>string</type>\n<enum>["c", "f"]</enum>\n<default>c</default>'
        "\n</parameter>"
        '\n<required>["city"]</required>\n</parameters>\n</function>\n</tools>'
        + TOOLS_FOOTER
        + "<|im_end|>\n"
    )
    assert render(row).startswith(expected_system + "<|im_start|>user\nHi<|im_end|>\n")


def test_tools_section_without_system_message_has_no_blank_line(render: Render) -> None:
    tool = {"name": "ping", "parameters": {"type": "object", "properties": {}}}
    out = render(chat(("user", "Hi"), ("assistant", "Hey"), tools=[tool]))
    assert out.startswith(
        "<|im_start|>system\n# Tools\n\nYou have access to the following functions:\n\n<tools>"
        "\n<function>\n<name>ping</name>\n<parameters>\n</parameters>\n</function>\n</tools>"
    )


def test_tool_calls_and_shared_tool_response_block(render: Render) -> None:
    row = {
        "messages": [
            {"role": "user", "content": "Weather?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    },
                    {
                        "type": "function",
                        "function": {
                            "name": "stats",
                            "arguments": {"days": 3, "opts": {"a": [1]}, "ok": True},
                        },
                    },
                ],
            },
            {"role": "tool", "content": "sunny"},
            {"role": "tool", "content": "warm"},
            {"role": "assistant", "content": " Sunny and warm. "},
        ]
    }
    assert render(row) == (
        SYS_EMPTY + "<|im_start|>user\nWeather?<|im_end|>\n"
        "<|im_start|>assistant\n<think></think>\n"
        "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n</function>\n</tool_call>\n"
        "<tool_call>\n<function=stats>\n<parameter=days>\n3\n</parameter>\n"
        '<parameter=opts>\n{"a": [1]}\n</parameter>\n<parameter=ok>\nTrue\n</parameter>\n'
        "</function>\n</tool_call>\n<|im_end|>\n"
        "<|im_start|>user\n<tool_response>\nsunny\n</tool_response>\n"
        "<tool_response>\nwarm\n</tool_response>\n<|im_end|>\n"
        "<|im_start|>assistant\n<think></think> Sunny and warm.<|im_end|>\n"
    )


def test_historic_tool_call_turn_keeps_trimmed_text_after_think(render: Render) -> None:
    row = {
        "messages": [
            {"role": "user", "content": "u1"},
            {
                "role": "assistant",
                "content": "\nChecking.",
                "reasoning_content": "plan",
                "tool_calls": [{"function": {"name": "f", "arguments": {}}}],
            },
            {"role": "tool", "content": "r"},
            {"role": "assistant", "content": "done"},
            {"role": "user", "content": "u2"},
            {"role": "assistant", "content": "bye"},
        ]
    }
    out = render(row)
    assert (
        "<|im_start|>assistant\n<think></think>Checking.\n<tool_call>\n<function=f>\n</function>\n</tool_call>\n<|im_end|>\n"
        in out
    )
    assert "<|im_start|>assistant\n<think></think>done<|im_end|>\n" in out


def test_generation_prompts(render: Render) -> None:
    row = chat(("user", "Hi"), ("assistant", "Hey"), ("user", "More"))
    assert render(row, gen=True, thinking=True).endswith(
        "<|im_start|>user\nMore<|im_end|>\n<|im_start|>assistant\n<think>\n"
    )
    assert render(row, gen=True, thinking=False).endswith(
        "<|im_start|>user\nMore<|im_end|>\n<|im_start|>assistant\n<think></think>"
    )


def test_mid_conversation_system_message_is_inline(render: Render) -> None:
    out = render(chat(("user", "a"), ("system", "note"), ("assistant", "b")))
    assert out == (
        SYS_EMPTY + "<|im_start|>user\na<|im_end|>\n<|im_start|>system\nnote<|im_end|>\n"
        "<|im_start|>assistant\n<think></think>b<|im_end|>\n"
    )


def test_text_parts_are_joined(render: Render) -> None:
    row = {
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
            {"role": "assistant", "content": "c"},
        ]
    }
    assert "<|im_start|>user\nab<|im_end|>\n" in render(row)


# --------------------------------------------------------------------------- loading templates


def test_tokenizer_template_source(sample_tokenizer) -> None:  # type: ignore[no-untyped-def]
    tpl = load_template("tokenizer", sample_tokenizer.chat_template)
    assert tpl.name == "tokenizer" and tpl.is_builtin_nano3


def test_tokenizer_source_without_template_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="no chat_template"):
        load_template("tokenizer", None)


def test_file_template(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "t.jinja"
    path.write_text("{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}", encoding="utf-8")
    tpl = load_template(str(path))
    assert not tpl.is_builtin_nano3
    assert tpl.render([{"role": "user", "content": "x"}]) == "[user]x"
    assert load_template(f"file://{path}").render([{"role": "a", "content": "b"}]) == "[a]b"


def test_missing_template_file_names_the_choices(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="'nano3', 'tokenizer'"):
        load_template(str(tmp_path / "nope.jinja"))


def test_template_syntax_error_is_a_config_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "bad.jinja"
    path.write_text("{% for m in messages %}", encoding="utf-8")
    with pytest.raises(ConfigError, match="does not compile"):
        load_template(str(path))
    with pytest.raises(TemplateError):
        ChatTemplate.from_text("x", "{{")


def test_hf_helpers_available_in_templates() -> None:
    tpl = ChatTemplate.from_text(
        "x", "{{ messages | tojson }}{% if false %}{{ raise_exception('no') }}{% endif %}"
    )
    assert tpl.render([{"role": "user", "content": "é"}]) == '[{"role": "user", "content": "é"}]'
    boom = ChatTemplate.from_text("x", "{{ raise_exception('bad row') }}")
    with pytest.raises(Exception, match="bad row"):
        boom.render([])
    assert "{%- if add_generation_prompt" in builtin_nano3_text()
