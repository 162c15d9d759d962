"""Shared fixtures for the data-prep tests: the bundled sample tokenizer and chats, tiny conversations.

Generic on purpose — both the text-semantics tests and the pipeline tests use them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from prep.chat_strategies import chat
from s3server import S3Server
from sft_prep.chat import RowError, parse_json_row
from sft_prep.template import ChatTemplate, load_template
from sft_prep.tokenizer import Tokenizer, load_tokenizer

SAMPLES = Path(__file__).resolve().parents[2] / "workloads" / "sft_prep" / "samples"


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    """workloads/sft_prep/samples (chats.jsonl, tokenizer/)."""
    return SAMPLES


@pytest.fixture(scope="session")
def sample_tokenizer_dir() -> Path:
    return SAMPLES / "tokenizer"


@pytest.fixture(scope="session")
def sample_tokenizer() -> Tokenizer:
    """The small byte-level BPE (3k vocab) with the chat control tokens."""
    return load_tokenizer(str(SAMPLES / "tokenizer"))


@pytest.fixture(scope="session")
def nano3() -> ChatTemplate:
    return load_template("nano3")


@pytest.fixture(scope="session")
def sample_rows() -> list[tuple[str, int, dict[str, Any] | RowError]]:
    """(dataset, line index, row or RowError) for every line of the bundled chats.jsonl."""
    rows: list[tuple[str, int, dict[str, Any] | RowError]] = []
    for i, line in enumerate((SAMPLES / "chats.jsonl").read_text(encoding="utf-8").splitlines()):
        try:
            rows.append(("samples", i, parse_json_row(line)))
        except RowError as err:
            rows.append(("samples", i, err))
    return rows


@pytest.fixture
def tiny_rows() -> dict[str, dict[str, Any]]:
    """Small named conversations covering each shape the pipeline must handle."""
    weather = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
    return {
        "single": chat(("user", "Hi"), ("assistant", "Hello!")),
        "system": chat(("system", "Be brief."), ("user", "Hi"), ("assistant", "Hello!")),
        "multi": chat(("user", "a"), ("assistant", "b"), ("user", "c"), ("assistant", "d")),
        "reasoning": {
            "messages": [
                {"role": "user", "content": "2+2?"},
                {"role": "assistant", "content": "4", "reasoning_content": "Add them."},
                {"role": "user", "content": "3+3?"},
                {"role": "assistant", "content": "6", "reasoning_content": "Add again."},
            ]
        },
        "tools": {
            "messages": [
                {"role": "user", "content": "Weather in Paris?"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                        }
                    ],
                },
                {"role": "tool", "content": "sunny"},
                {"role": "assistant", "content": "Sunny."},
            ],
            "tools": [weather],
        },
        "no_assistant": chat(("user", "anyone?")),
        "unknown_role": chat(("narrator", "once"), ("assistant", "upon")),
    }


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> Any:
    """The shared local S3 (``s3_server``) with bucket ``data``; yields a boto3 client for it."""
    import boto3

    s3_server.create_bucket("data")
    return boto3.client("s3", endpoint_url=s3_server.endpoint)


@pytest.fixture(scope="session")
def qwen_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Tokenizer:
    """The real 151k Qwen BPE (built once per test process, ~2 s)."""
    from sft_prep.qwen_vocab import save_qwen_tokenizer

    return load_tokenizer(str(save_qwen_tokenizer(tmp_path_factory.mktemp("qwen"))))


@pytest.fixture(scope="session")
def tokenizer(request: pytest.FixtureRequest, sample_tokenizer: Tokenizer) -> Tokenizer:
    """Parametrized indirectly with "sample" or "qwen"."""
    return sample_tokenizer if request.param == "sample" else request.getfixturevalue("qwen_tokenizer")
