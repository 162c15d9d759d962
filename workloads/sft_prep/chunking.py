"""Split a rendered conversation back into role-labelled chunks (the loss-mask source).

The reference algorithm (NVIDIA-NeMo/Nemotron ``data_prep/core/chat_template.py``), which this
module reproduces:

* Render the whole conversation once (``full``). Then render each prefix ``messages[:i+1]``; chunk
  ``i`` is ``full[previous_end:len(prefix)]``. A prefix that is not literally a prefix of ``full`` is a
  per-row ``RowError('template_mismatch', 'Template mismatch at message i')``.
* A prefix that ends on a user/tool message followed by an assistant turn is rendered *with* the
  generation prompt, so ``<|im_start|>assistant\\n<think>\\n`` lands in the non-assistant chunk (mask
  0). In thinking mode, when that assistant turn's reasoning renders empty, the prefix is rendered
  without the prompt and ``<|im_start|>assistant\\n<think></think>`` is appended instead (upstream's
  "empty reasoning" hack — the prompt would otherwise say ``<think>\\n``).
* Runs of consecutive tool messages form one chunk (they share one user block).
* A conversation with any non-empty ``reasoning_content`` ("thinking") becomes one sequence per user
  turn: sub-conversation ``k`` is ``messages[:next_user]`` (everything for the last user turn); its
  context up to and including user turn ``k`` (+ generation prompt) is one untrained chunk, rendered
  as the template renders history when that turn is the last (older reasoning stripped), then the
  turns after it are chunked as above. A user turn followed directly by another user turn yields no
  sub-sequence. Thinking mode also selects the ``<think>\\n`` generation prompt; otherwise one
  sequence with the ``<think></think>`` prompt.

Deliberate deviations from upstream; neither changes the token ids of a row upstream handles correctly:

1. The system block is always its own untrained chunk. Upstream splits it off only when the first
   chunk is a user chunk, so a conversation opening with an assistant message trained on the system
   header.
2. The context prefix of a per-user-turn sub-sequence is checked against the full render too, and gets
   the generation prompt only when an assistant turn follows (upstream checks neither there, which
   shifts chunk boundaries silently on malformed rows instead of reporting a mismatch).

:func:`split_generic` runs this with any :class:`~sft_prep.template.ChatTemplate` (O(turns²) Jinja
renders). :mod:`sft_prep.nano3_fast` produces identical chunks for the built-in nano3 template
without Jinja and without re-rendering prefixes; ``tests/prep/test_fast_path.py`` checks the equality
on random conversations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import jinja2

from sft_prep.chat import Conversation, Message, RowError
from sft_prep.template import ChatTemplate

IM_END = "<|im_end|>\n"
EMPTY_THINK_PROMPT = "<|im_start|>assistant\n<think></think>"


@dataclass(slots=True)  # not frozen: a frozen init costs 4x, and these are made per chunk
class Chunk:
    """A slice of the rendered text; ``trainable`` iff it is an assistant turn (with its end token)."""

    role: str
    text: str

    @property
    def trainable(self) -> bool:
        return self.role == "assistant"


def reasoning_renders_empty(message: Message) -> bool:
    """Whether nano3 renders this turn's reasoning as an empty ``<think></think>``."""
    return not (message.reasoning_content and message.reasoning_content.strip())


def thinking_subconversations(messages: Sequence[Message]) -> list[tuple[int, int]]:
    """``(last_user_index, end)`` of each per-user-turn sub-conversation ``messages[:end]``."""
    users = [i for i, m in enumerate(messages) if m.role == "user"]
    out = []
    for k, u in enumerate(users):
        end = users[k + 1] if k + 1 < len(users) else len(messages)
        if u == end - 1:  # the user turn is last: nothing to train on (consecutive user turns)
            continue
        out.append((u, end))
    return out


def system_block_end(full: str) -> int:
    """End of the leading system block (first ``<|im_end|>\\n``), 0 when the render has none."""
    pos = full.find(IM_END)
    return pos + len(IM_END) if pos >= 0 and full.startswith("<|im_start|>system") else 0


class _GenericRenderer:
    """Render prefixes of one conversation with a Jinja template."""

    def __init__(self, template: ChatTemplate, conv: Conversation, thinking: bool) -> None:
        self.template = template
        self.dicts = conv.template_messages()
        self.tools = conv.template_tools()
        self.thinking = thinking

    def render(self, end: int, add_generation_prompt: bool = False) -> str:
        try:
            return self.template.render(
                self.dicts[:end],
                self.tools,
                add_generation_prompt=add_generation_prompt,
                enable_thinking=self.thinking,
            )
        except (jinja2.TemplateError, TypeError, ValueError, KeyError, AttributeError, IndexError) as exc:
            raise RowError("template_error", f"{type(exc).__name__}: {exc}") from None

    def prefix(self, messages: Sequence[Message], i: int) -> str:
        """Render ``messages[:i+1]`` the way the chunker needs it (generation prompt rules)."""
        nxt = messages[i + 1] if i + 1 < len(messages) else None
        next_is_assistant = nxt is not None and nxt.role == "assistant"
        role = messages[i].role
        if (
            self.thinking
            and role != "assistant"
            and nxt is not None
            and next_is_assistant
            and reasoning_renders_empty(nxt)
        ):
            return self.render(i + 1) + EMPTY_THINK_PROMPT
        return self.render(i + 1, add_generation_prompt=role in ("user", "tool") and next_is_assistant)


def mismatch(messages: Sequence[Message], i: int, prompt_only: bool) -> RowError:
    """The error for prefix ``messages[:i+1]`` not being a prefix of the full render.

    ``prompt_only``: the prefix itself matched and only the generation prompt appended for the next
    (assistant) turn did not, so that assistant turn is the one that renders unexpectedly (e.g. think
    tags in the middle of its content); name it, not the user turn before it."""
    if prompt_only and i + 1 < len(messages):
        return RowError(
            "template_mismatch",
            f"Template mismatch at message {i + 1} (assistant): its render does not start with the "
            "generation prompt (think tags inside the content?)",
        )
    return RowError("template_mismatch", f"Template mismatch at message {i} ({messages[i].role})")


def _chunks_from(
    renderer: _GenericRenderer, messages: Sequence[Message], full: str, start: int, previous: int
) -> list[Chunk]:
    out: list[Chunk] = []
    for i in range(start, len(messages)):
        if messages[i].role == "tool" and i + 1 < len(messages) and messages[i + 1].role == "tool":
            continue
        text = renderer.prefix(messages, i)
        if not full.startswith(text):
            raise mismatch(messages, i, full.startswith(renderer.render(i + 1)))
        out.append(Chunk(messages[i].role, full[previous : len(text)]))
        previous = len(text)
    if previous != len(full):
        raise RowError(
            "template_mismatch",
            f"Template mismatch: {len(full) - previous} characters after the last message",
        )
    return out


def split_leading_system(chunks: list[Chunk], full: str) -> list[Chunk]:
    """Deviation 1: the system header is its own untrained chunk whatever the first message is."""
    if not chunks or chunks[0].role == "system":
        return chunks
    end = system_block_end(full)
    if end == 0 or end >= len(chunks[0].text):
        return chunks
    return [Chunk("system", full[:end]), Chunk(chunks[0].role, chunks[0].text[end:]), *chunks[1:]]


def split_generic(conv: Conversation, template: ChatTemplate) -> list[list[Chunk]]:
    """Chunks of every training sequence of ``conv`` (see the module docstring). Raises RowError."""
    messages = conv.messages
    thinking = conv.has_thinking
    renderer = _GenericRenderer(template, conv, thinking)
    if not thinking:
        full = renderer.render(len(messages))
        return [split_leading_system(_chunks_from(renderer, messages, full, 0, 0), full)]
    sequences = []
    for last_user, end in thinking_subconversations(messages):
        sub = messages[:end]
        full = renderer.render(end)
        system_end = system_block_end(full)
        context = renderer.prefix(sub, last_user)
        if not full.startswith(context):
            raise mismatch(sub, last_user, full.startswith(renderer.render(last_user + 1)))
        head = [Chunk("system", full[:system_end]), Chunk("user", full[system_end : len(context)])]
        sequences.append(head + _chunks_from(renderer, sub, full, last_user + 1, len(context)))
    return sequences
