"""Build the bundled sample chats and the small sample tokenizer, deterministically.

    .venv/bin/python workloads/sft_prep/samples/build_samples.py [--check]

Writes ``chats.jsonl`` (real chit-chat from the MIT-licensed ``chitchat-dataset`` package, plus
generated conversations that exercise system prompts, reasoning, tools and a few malformed rows) and
``tokenizer/`` (a byte-level BPE trained on that text, with the Nemotron/Qwen chat control tokens).
``--check`` rebuilds into a temporary directory and fails if the committed files differ.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import random
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SEED = 20251125
CHITCHAT_CONVERSATIONS = 330
VOCAB_SIZE = 3000

#: Control tokens. Like the Qwen-family tokenizers Nemotron's is built on, the turn markers are
#: special tokens and the think/tool tags are added (atomic) but non-special tokens, so decoding
#: with skip_special_tokens keeps reasoning and tool markup.
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
ADDED = ["<think>", "</think>", "<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>"]
#: The Qwen2/Qwen3 pre-tokenizer split pattern.
SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

SYSTEM_PROMPTS = [
    "You are a friendly conversation partner.",
    "You are a helpful assistant. Keep answers short.",
    "",
]

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name, e.g. Paris"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
    },
}
CALC_TOOL = {
    "type": "function",
    "function": {
        "name": "calculate",
        "description": "Evaluate an arithmetic expression.",
        "parameters": {
            "type": "object",
            "properties": {"expression": {"type": "string", "description": "For example 2 * (3 + 4)"}},
            "required": ["expression"],
        },
    },
}
CITIES = ["Paris", "Lima", "Osaka", "Nairobi", "Oslo", "Quito", "Hanoi", "Perth"]
SKIES = ["sunny", "cloudy", "light rain", "windy", "snow"]


def chitchat_rows(rng: random.Random) -> list[dict[str, Any]]:
    """Alternating user/assistant turns from the Chit Chat Challenge dataset (BYU PCC lab, MIT)."""
    import chitchat_dataset

    data = chitchat_dataset.Dataset()
    rows = []
    for key in sorted(data):
        turns = [
            " ".join(u["text"].strip() for u in turn if u["text"].strip()) for turn in data[key]["messages"]
        ]
        turns = [t for t in turns if t][: rng.randint(2, 8)]
        if len(turns) < 2 or sum(len(t) for t in turns) > 1500:
            continue
        messages = [
            {"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(turns)
        ]
        if messages[-1]["role"] == "user":
            messages.pop()
        system = rng.choice([*SYSTEM_PROMPTS, None, None])
        if system is not None:
            messages.insert(0, {"role": "system", "content": system})
        rows.append({"messages": messages, "source": f"chitchat:{key}"})
        if len(rows) == CHITCHAT_CONVERSATIONS:
            break
    return rows


def reasoning_rows(rng: random.Random, n: int) -> list[dict[str, Any]]:
    rows = []
    for i in range(n):
        messages: list[dict[str, Any]] = []
        if i % 3 == 0:
            messages.append({"role": "system", "content": "Think step by step before answering."})
        for _ in range(rng.randint(1, 3)):
            a, b = rng.randint(2, 99), rng.randint(2, 99)
            op = rng.choice(["+", "*", "-"])
            value = {"+": a + b, "*": a * b, "-": a - b}[op]
            messages.append({"role": "user", "content": f"What is {a} {op} {b}?"})
            reasoning = f"The user wants {a} {op} {b}. Computing it gives {value}."
            if rng.random() < 0.2:
                reasoning = rng.choice(["", "  \n"])  # blank reasoning renders as <think></think>
            messages.append(
                {"role": "assistant", "content": f"{a} {op} {b} = {value}.", "reasoning_content": reasoning}
            )
        rows.append({"messages": messages, "source": "generated:reasoning"})
    return rows


def tool_rows(rng: random.Random, n: int) -> list[dict[str, Any]]:
    rows = []
    for i in range(n):
        city = rng.choice(CITIES)
        sky = rng.choice(SKIES)
        temp = rng.randint(-5, 35)
        think = i % 2 == 0
        call: dict[str, Any] = {
            "id": f"call_{i}",
            "type": "function",
            "function": {"name": "get_weather", "arguments": json.dumps({"city": city})},
        }
        messages: list[dict[str, Any]] = [
            {"role": "user", "content": f"What's the weather in {city}?"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {
                "role": "tool",
                "tool_call_id": f"call_{i}",
                "content": json.dumps({"sky": sky, "celsius": temp}),
            },
            {"role": "assistant", "content": f"It is {sky} in {city}, {temp} °C."},
        ]
        if think:
            messages[1]["reasoning_content"] = f"I should look up the weather in {city}."
            messages[3]["reasoning_content"] = "The tool answered; summarise it."
        if i % 3 == 0:  # parallel calls answered by consecutive tool messages (one shared user block)
            other = rng.choice(CITIES)
            messages.extend(
                [
                    {
                        "role": "user",
                        "content": f"Compare {city} with {other}, and what is {temp} * 9 / 5 + 32?",
                    },
                    {
                        "role": "assistant",
                        "content": "Let me check both.",
                        "tool_calls": [
                            {
                                "type": "function",
                                "function": {"name": "get_weather", "arguments": {"city": other}},
                            },
                            {
                                "type": "function",
                                "function": {
                                    "name": "calculate",
                                    "arguments": {"expression": f"{temp} * 9 / 5 + 32"},
                                },
                            },
                        ],
                    },
                    {"role": "tool", "content": json.dumps({"sky": rng.choice(SKIES), "celsius": temp + 3})},
                    {"role": "tool", "content": str(temp * 9 / 5 + 32)},
                    {
                        "role": "assistant",
                        "content": [
                            {"type": "text", "text": f"{other} is a bit warmer. "},
                            {"type": "text", "text": f"{temp} °C is {temp * 9 / 5 + 32} °F."},
                        ],
                    },
                ]
            )
        row: dict[str, Any] = {
            "messages": messages,
            "tools": [WEATHER_TOOL, CALC_TOOL],
            "source": "generated:tools",
        }
        if i % 4 == 1:
            row["messages"].insert(0, {"role": "system", "content": "You are a weather bot."})
        rows.append(row)
    return rows


MALFORMED_LINES = [
    '{"messages": [{"role": "user", "content": "truncated line',
    json.dumps(
        {
            "messages": [
                {"role": "narrator", "content": "Once upon a time"},
                {"role": "assistant", "content": "Go on."},
            ],
            "source": "malformed:unknown_role",
        }
    ),
    json.dumps(
        {
            "messages": [
                {"role": "user", "content": {"text": "hi"}},
                {"role": "assistant", "content": "Hello!"},
            ],
            "source": "malformed:content_type",
        }
    ),
    json.dumps(
        {"messages": [{"role": "user", "content": "Anyone there?"}], "source": "malformed:no_assistant"}
    ),
    json.dumps({"messages": [], "source": "malformed:empty"}),
    json.dumps({"conversation": [{"role": "user", "content": "hi"}], "source": "malformed:missing_messages"}),
]


def build_chats(path: Path) -> list[str]:
    rng = random.Random(SEED)
    rows = chitchat_rows(rng) + reasoning_rows(rng, 70) + tool_rows(rng, 60)
    rng.shuffle(rows)
    lines = [json.dumps(r, ensure_ascii=False) for r in rows]
    for k, bad in enumerate(MALFORMED_LINES):
        lines.insert(37 * (k + 1), bad)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return lines


def training_texts(lines: list[str]) -> list[str]:
    texts = []
    for line in lines:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        for m in row.get("messages", []):
            for key in ("content", "reasoning_content"):
                if isinstance(m.get(key), str):
                    texts.append(m[key])
        texts.append(json.dumps(row.get("tools", [])))
    return texts


def build_tokenizer(lines: list[str], out: Path) -> None:
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        trainers,
    )

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(training_texts(lines), trainer=trainer)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in ADDED])
    out.mkdir(parents=True, exist_ok=True)
    tok.save(str(out / "tokenizer.json"))
    template = (HERE.parent / "templates" / "nano3.jinja").read_text(encoding="utf-8")
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "unk_token": None,
        "model_max_length": 4096,
        "clean_up_tokenization_spaces": False,
        "chat_template": template,
    }
    (out / "tokenizer_config.json").write_text(
        json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )


def build(dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    lines = build_chats(dest / "chats.jsonl")
    build_tokenizer(lines, dest / "tokenizer")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="verify the committed files are up to date")
    args = parser.parse_args(argv)
    if not args.check:
        build(HERE)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        build(Path(tmp))
        stale = [
            n
            for n in ("chats.jsonl", "tokenizer/tokenizer.json", "tokenizer/tokenizer_config.json")
            if not filecmp.cmp(Path(tmp) / n, HERE / n, shallow=False)
        ]
    if stale:
        print(f"out of date: {', '.join(stale)}; rerun build_samples.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
