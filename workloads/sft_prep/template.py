"""Chat templates: the built-in ``nano3`` format, the tokenizer's own, or a ``.jinja`` file.

Rendering follows what Hugging Face ``apply_chat_template`` does (sandboxed Jinja with
``trim_blocks``/``lstrip_blocks``, ``loopcontrols``, a ``tojson`` that keeps non-ASCII,
``raise_exception`` and ``strftime_now``), so a template written for transformers renders the same
text here without importing transformers. Like the reference pipeline, every call passes the
thinking switch both as ``enable_thinking`` and inside ``chat_template_kwargs``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from importlib import resources
from typing import Any

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

from sft_common import storage
from sft_common.config import ConfigError

BUILTIN = "nano3"
TOKENIZER = "tokenizer"


class TemplateError(ValueError):
    """A template that cannot be loaded or compiled (a config problem, not a row problem)."""


def _tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: Any = None,
    sort_keys: bool = False,
) -> str:
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


def _raise_exception(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


class _GenerationTag(jinja2.ext.Extension):
    """Accept ``{% generation %}…{% endgeneration %}`` (HF's assistant-mask marker) and render its body.

    Our masks come from incremental rendering, so the marker itself carries no meaning here; we only
    need templates that use it to compile."""

    tags = {"generation"}  # noqa: RUF012 (jinja2.ext.Extension declares tags as a plain set attribute)

    def parse(self, parser: jinja2.parser.Parser) -> jinja2.nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.Scope(body, lineno=lineno)


@lru_cache(maxsize=1)
def _environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols, _GenerationTag]
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env


@lru_cache(maxsize=1)
def builtin_nano3_text() -> str:
    return resources.files("sft_prep").joinpath("templates/nano3.jinja").read_text(encoding="utf-8")


@lru_cache(maxsize=16)
def _compile(text: str) -> jinja2.Template:
    """Compiling takes ~20 ms; templates are few and reused, so compile each text once."""
    return _environment().from_string(text)


@dataclass(frozen=True)
class ChatTemplate:
    """A compiled chat template. ``name`` is what metadata records (``nano3``, ``tokenizer``, or the path)."""

    name: str
    text: str
    _compiled: jinja2.Template = field(repr=False, compare=False)

    @classmethod
    def from_text(cls, name: str, text: str) -> ChatTemplate:
        try:
            compiled = _compile(text)
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(
                f"chat template {name!r} does not compile: line {exc.lineno}: {exc.message}"
            ) from exc
        return cls(name, text, compiled)

    @property
    def is_builtin_nano3(self) -> bool:
        """True when the text is exactly the built-in nano3 template, so the native fast path applies."""
        return self.text == builtin_nano3_text()

    def render(
        self,
        messages: Sequence[dict[str, Any]],
        tools: Sequence[dict[str, Any]] | None = None,
        *,
        add_generation_prompt: bool = False,
        enable_thinking: bool = True,
    ) -> str:
        """Render like ``tokenizer.apply_chat_template(..., tokenize=False)``; Jinja errors propagate."""
        return self._compiled.render(
            messages=list(messages),
            tools=list(tools) if tools else None,
            add_generation_prompt=add_generation_prompt,
            enable_thinking=enable_thinking,
            chat_template_kwargs={"enable_thinking": enable_thinking},
            bos_token="",
            eos_token="",
        )


def load_template(source: str, tokenizer_template: str | None = None) -> ChatTemplate:
    """Resolve the ``chat_template`` config value.

    ``nano3`` → the bundled template; ``tokenizer`` → ``tokenizer_template`` (the tokenizer's own
    ``chat_template``; an error when it has none); anything else → a path or URI (local, ``file://``,
    ``s3://``) of a ``.jinja`` file read through :mod:`sft_common.storage`.
    """
    if source == BUILTIN:
        return ChatTemplate.from_text(BUILTIN, builtin_nano3_text())
    if source == TOKENIZER:
        if not tokenizer_template:
            raise ConfigError(
                "chat_template: 'tokenizer' was chosen but the tokenizer has no chat_template "
                "(neither in tokenizer_config.json nor chat_template.jinja); use 'nano3' or a .jinja path"
            )
        return ChatTemplate.from_text(TOKENIZER, tokenizer_template)
    try:
        text = storage.read_text(source)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"chat_template: cannot read {source!r} ({exc}); valid values are 'nano3', 'tokenizer', "
            "or a path/URI of a .jinja file"
        ) from exc
    try:
        return ChatTemplate.from_text(source, text)
    except TemplateError as exc:
        raise ConfigError(f"chat_template: {exc}") from exc
