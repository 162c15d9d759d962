"""The test oracle for chunking: a whole conversation rendered in one piece (what the chunks of a
conversation must concatenate to)."""

from __future__ import annotations

from sft_prep.chat import Conversation
from sft_prep.template import ChatTemplate


def render_full(conv: Conversation, template: ChatTemplate) -> str:
    """The whole conversation as the template renders it (thinking mode as the chunker uses it)."""
    return template.render(conv.template_messages(), conv.template_tools(), enable_thinking=conv.has_thinking)
