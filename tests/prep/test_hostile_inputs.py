"""One bad row never stops a run; a file that cannot be read stops it with exit 2 naming the file.

Each case here crashed the whole run before (issue 13): a lone surrogate (UnicodeEncodeError in the
tokenizer, no row location), JSON nested ~1100 deep (RecursionError), corrupt input files (a traceback
that never named the file), a 10 MB row (1.6 GB RSS), CR-only and UTF-16 files (rows miscounted).
"""

from __future__ import annotations

import codecs
import gzip
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from prep.chat_strategies import chat
from prep.pipeline_support import SAMPLES, run_cli, termination, write_config
from sft_prep.chat import RowError, parse_json_row
from sft_prep.readers import sniff_jsonl, split_lines

GOOD = chat(("user", "Hi"), ("assistant", "Hello!"))


def _line(row: dict[str, Any]) -> str:
    return json.dumps(row)


def _run(tmp_path: Path, name: str, *args: str, **fields: Any) -> tuple[int, dict[str, Any] | None]:
    config = write_config(
        tmp_path, datasets=[{"name": "d", "path": str(tmp_path / name)}], num_shards=1, **fields
    )
    code, _ = run_cli("--config", str(config), *args)
    meta_path = tmp_path / "out" / "metadata.json"
    return code, json.loads(meta_path.read_text()) if meta_path.exists() else None


SURROGATE_ROWS = {
    "user content": (
        '{"messages": [{"role": "user", "content": "a\\ud800b"}, {"role": "assistant", "content": "x"}]}'
    ),
    "assistant content": (
        '{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "\\udfff"}]}'
    ),
    "tool-call name": (
        '{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": null, '
        '"tool_calls": [{"type": "function", "function": {"name": "f\\ud834", "arguments": "{}"}}]}, '
        '{"role": "tool", "content": "r"}, {"role": "assistant", "content": "done"}], '
        '"tools": [{"type": "function", "function": {"name": "f"}}]}'
    ),
    "string-valued tool arguments": (
        '{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": null, '
        '"tool_calls": [{"type": "function", "function": {"name": "f", '
        '"arguments": "{\\"a\\": \\"\\\\ud800\\"}"}}]}, '
        '{"role": "tool", "content": "r"}, {"role": "assistant", "content": "done"}], '
        '"tools": [{"type": "function", "function": {"name": "f"}}]}'
    ),
}


@pytest.mark.parametrize("where", list(SURROGATE_ROWS))
@pytest.mark.parametrize("processes", ["1", "2"])
def test_a_lone_surrogate_is_counted_as_bad_text_with_its_line(
    tmp_path: Path, where: str, processes: str
) -> None:
    (tmp_path / "in.jsonl").write_text("\n".join([_line(GOOD), SURROGATE_ROWS[where], _line(GOOD)]) + "\n")
    code, meta = _run(tmp_path, "in.jsonl", "--processes", processes)
    assert code == 0 and meta is not None
    reason = "bad_text"
    assert meta["dropped"] == {reason: 1} and meta["totals"]["rows"] == 3
    example = meta["examples"][reason][0]
    assert example["row"] == "in.jsonl:2", example
    assert "surrogate" in example["detail"]
    # a rerun (same config) finds the committed output: the row no longer blocks the dataset
    code, again = _run(tmp_path, "in.jsonl", "--processes", processes)
    assert code == 0 and again == meta


def test_valid_surrogate_pairs_and_escaped_backslashes_are_text() -> None:
    assert parse_json_row(b'{"a": "\\ud83d\\ude00"}') == {"a": "\U0001f600"}
    assert parse_json_row(b'{"a": "\\\\ud800"}') == {"a": "\\ud800"}
    with pytest.raises(RowError, match="bad_text"):
        parse_json_row(b'{"a": ["x", {"b": "\\ude00\\ud800"}]}')


@pytest.mark.parametrize("processes", ["1", "2"])
def test_json_nested_1100_deep_is_a_counted_bad_row(tmp_path: Path, processes: str) -> None:
    deep = '{"unused": ' + "[" * 1100 + "]" * 1100 + ', "messages": []}'
    args = '{\\"a\\": ' + "[" * 1100 + "]" * 1100 + "}"
    deep_args = (
        '{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": null, '
        f'"tool_calls": [{{"function": {{"name": "f", "arguments": "{args}"}}}}]}}, '
        '{"role": "tool", "content": "r"}, {"role": "assistant", "content": "done"}]}'
    )
    (tmp_path / "in.jsonl").write_text("\n".join([_line(GOOD), deep, deep_args, _line(GOOD)]) + "\n")
    code, meta = _run(tmp_path, "in.jsonl", "--processes", processes)
    assert code == 0 and meta is not None
    assert meta["dropped"] == {"bad_json": 1, "bad_tool_arguments": 1}
    assert meta["examples"]["bad_json"][0]["row"] == "in.jsonl:2"
    assert "nested too deeply" in meta["examples"]["bad_json"][0]["detail"]


# ------------------------------------------------------------------------------- corrupt files
# Decision (README, "Bad rows and bad files"): a file that cannot be read as a whole stops the run with
# exit 2 naming it; skipping it would train on part of the data without anyone noticing.


def _truncated_gz(path: Path) -> None:
    data = gzip.compress(("\n".join(_line(GOOD) for _ in range(200)) + "\n").encode())
    path.write_bytes(data[: len(data) // 2])


def _truncated_parquet(path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"messages": [GOOD["messages"]] * 50}), path)
    path.write_bytes(path.read_bytes()[:-100])


CORRUPT = {
    "truncated.jsonl.gz": (_truncated_gz, "truncated"),
    "plain.jsonl.gz": (lambda p: p.write_text(_line(GOOD) + "\n"), "not a gzip file"),
    "garbage.parquet": (lambda p: p.write_text("this is not parquet\n"), "not a readable Parquet file"),
    "truncated.parquet": (_truncated_parquet, "not a readable Parquet file"),
}


@pytest.mark.parametrize("name", list(CORRUPT))
def test_a_corrupt_input_file_exits_2_naming_the_file_and_the_fault(tmp_path: Path, name: str) -> None:
    make, fault = CORRUPT[name]
    make(tmp_path / name)
    code, meta = _run(tmp_path, name)
    msg = termination()
    assert code == 2 and meta is None
    assert msg["reason"] == "BadInputFile"
    assert str(tmp_path / name) in msg["message"] and fault in msg["message"], msg["message"]
    assert "Traceback" not in msg["message"]


def _without_dac_override() -> None:
    """In a child before exec: drop CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH (linux/capability.h: 1
    and 2) from the bounding set with prctl(PR_CAPBSET_DROP = 24), so that root's next program obeys
    file modes as any user does (for uid 0 the new program's permitted set is the inheritable set,
    empty here, or'ed with the bounding set)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):
        if libc.prctl(24, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def _run_unprivileged(*argv: str) -> subprocess.CompletedProcess[str]:
    """A Python child that cannot read past file modes: itself when not root, else root without the
    capabilities that bypass them (skips where they cannot be dropped)."""
    import os

    if os.geteuid() != 0:
        return subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=300)
    try:
        return subprocess.run(
            [sys.executable, *argv],
            capture_output=True,
            text=True,
            timeout=300,
            preexec_fn=_without_dac_override,
        )
    except subprocess.SubprocessError as exc:
        pytest.skip(f"root here cannot drop CAP_DAC_OVERRIDE ({exc}): the permission check cannot fail")


def test_an_unreadable_input_file_exits_2_before_any_work(tmp_path: Path) -> None:
    path = tmp_path / "locked.jsonl"
    path.write_text(_line(GOOD) + "\n")
    path.chmod(0)
    probe = _run_unprivileged("-c", f"open({str(path)!r}).read()")
    assert probe.returncode != 0 and "PermissionError" in probe.stderr, "the child could read a mode-000 file"
    config = write_config(tmp_path, datasets=[{"name": "d", "path": str(path)}], num_shards=1)
    done = _run_unprivileged("-m", "sft_prep", "--config", str(config))
    msg = termination()["message"]
    assert done.returncode == 2 and "not readable" in msg and str(path) in msg, (done.stderr[-2000:], msg)
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------- row size


def test_a_row_over_max_row_bytes_is_counted_unread(tmp_path: Path) -> None:
    big = chat(("user", "word " * 5000), ("assistant", "ok"))
    (tmp_path / "in.jsonl").write_text("\n".join([_line(GOOD), _line(big), _line(GOOD)]) + "\n")
    code, meta = _run(tmp_path, "in.jsonl", "max_row_bytes=4096")
    assert code == 0 and meta is not None
    assert meta["dropped"] == {"row_too_large": 1} and meta["totals"]["rows"] == 3
    assert meta["examples"]["row_too_large"][0]["row"] == "in.jsonl:2"
    assert "max_row_bytes" in meta["examples"]["row_too_large"][0]["detail"]


def test_a_parquet_row_over_max_row_bytes_is_counted_with_its_row(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    big = chat(("user", "Say it."), ("assistant", "word é " * 1500))  # ~10 kB of strings
    rows = [GOOD, GOOD, big, GOOD]
    pq.write_table(pa.table({"messages": [r["messages"] for r in rows]}), tmp_path / "in.parquet")
    code, meta = _run(tmp_path, "in.parquet", "max_row_bytes=4096")
    assert code == 0 and meta is not None
    assert meta["dropped"] == {"row_too_large": 1} and meta["totals"]["rows_kept"] == 3
    assert meta["examples"]["row_too_large"][0]["row"] == "in.parquet#2"
    assert "max_row_bytes" in meta["examples"]["row_too_large"][0]["detail"]
    # under the limit in Arrow as a whole: no row is measured, none is refused
    code, meta = _run(tmp_path, "in.parquet", "max_row_bytes=65536", "--force")
    assert code == 0 and meta is not None and meta["dropped"] == {}


def test_a_hub_row_over_max_row_bytes_is_counted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    datasets = pytest.importorskip("datasets")
    local = tmp_path / "train.jsonl"
    big = chat(("user", "word " * 2000), ("assistant", "ok"))
    local.write_text("".join(_line(r) + "\n" for r in [GOOD, big, GOOD]))
    real = datasets.load_dataset
    files = {"train": str(local)}

    def load_dataset(repo: str, subset: Any = None, **kwargs: Any) -> Any:  # the hub, from a local file
        return real("json", data_files=files, **kwargs)

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    config = write_config(
        tmp_path, datasets=[{"name": "hub", "path": "hf://org/chats"}], num_shards=1, max_row_bytes=4096
    )
    code, _ = run_cli("--config", str(config))
    meta = json.loads((tmp_path / "out" / "metadata.json").read_text())
    assert code == 0 and meta["dropped"] == {"row_too_large": 1} and meta["totals"]["rows_kept"] == 2
    assert meta["examples"]["row_too_large"][0]["row"] == "org/chats#1"


def test_text_bytes_counts_utf8_and_stops_past_the_limit() -> None:
    from sft_prep.readers import text_bytes

    row = {"messages": [{"role": "user", "content": "é" * 1000}, {"role": "assistant", "content": "x" * 10}]}
    assert text_bytes(row) == 2000 + 10 + len("messages") + 2 * len("rolecontent") + len("userassistant")
    assert 100 < text_bytes(row, stop=100) < 2100  # stops soon after the limit


def test_split_lines_never_holds_a_too_long_line() -> None:
    """Lines split across chunks, a too-long line spanning several chunks, no trailing newline."""
    data = b"ab\n" + b"x" * 50 + b"\ncd\n\nef"
    chunks = [data[i : i + 7] for i in range(7, len(data), 7)]
    out = list(split_lines(data[:7], lambda n: chunks.pop(0) if chunks else b"", b"\n", 10))
    assert out == [(1, b"ab", 2), (2, None, 50), (3, b"cd", 2), (4, b"", 0), (5, b"ef", 2)]


def _peak_rss_mb(tmp_path: Path, limit: int) -> float:
    """Peak RSS (MB) of a fresh sft-prep process on one 10 MB row and one small row."""
    config = write_config(
        tmp_path,
        name=f"prep-{limit}.yaml",
        datasets=[{"name": "d", "path": str(tmp_path / "big.jsonl")}],
        num_shards=1,
        max_row_bytes=limit,
        output_dir=str(tmp_path / f"out-{limit}"),
    )
    code = (
        "import resource, sys\n"
        "from sft_prep import cli\n"
        "rc = cli.main(['--config', sys.argv[1]])\n"
        "print('PEAK', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)\n"
        "sys.exit(rc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(config)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return float(done.stdout.rsplit("PEAK", 1)[1])


@pytest.mark.slow
def test_a_10mb_row_is_refused_at_a_bounded_peak_memory(tmp_path: Path) -> None:
    big = chat(("user", "word " * 2_000_000), ("assistant", "ok"))
    (tmp_path / "big.jsonl").write_text(_line(big) + "\n" + _line(GOOD) + "\n")
    (tmp_path / "small.jsonl").write_text(_line(GOOD) + "\n")
    refused = _peak_rss_mb(tmp_path, 8 * 2**20)
    (tmp_path / "big.jsonl").rename(tmp_path / "big.orig")
    (tmp_path / "big.jsonl").write_text(_line(GOOD) + "\n")
    baseline = _peak_rss_mb(tmp_path, 8 * 2**20 + 1)
    # refused unread: the 10 MB line costs at most a few times its size over a run without it
    assert refused - baseline < 60, (refused, baseline)


@pytest.mark.slow
def test_an_accepted_10mb_row_peaks_at_a_small_multiple_of_its_size(tmp_path: Path) -> None:
    """With the limit raised, a 10 MB row is encoded in windows (``Tokenizer.encode_flat``): about
    +150 MB here with the 3k-token sample vocabulary (2 characters per token, the worst case), where
    encoding it whole took +1.5 GB (the tokenizer's ~100 bytes per character)."""
    big = chat(("user", "Repeat it."), ("assistant", "word " * 2_000_000))
    (tmp_path / "big.jsonl").write_text(_line(big) + "\n" + _line(GOOD) + "\n")
    accepted = _peak_rss_mb(tmp_path, 64 * 2**20)
    meta = json.loads((tmp_path / f"out-{64 * 2**20}" / "metadata.json").read_text())
    assert meta["totals"]["rows_kept"] == 2 and meta["totals"]["sequences_truncated"] == 1
    (tmp_path / "big.jsonl").write_text(_line(GOOD) + "\n")
    baseline = _peak_rss_mb(tmp_path, 64 * 2**20 + 1)
    assert accepted - baseline < 25 * 10, (accepted, baseline)


# ------------------------------------------------------------------------------- encodings


def test_cr_only_line_endings_are_split_on_cr(tmp_path: Path) -> None:
    (tmp_path / "mac.jsonl").write_bytes(("\r".join(_line(GOOD) for _ in range(5)) + "\r").encode())
    code, meta = _run(tmp_path, "mac.jsonl")
    assert code == 0 and meta is not None
    assert meta["totals"]["rows"] == 5 and meta["dropped"] == {}


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-8-sig"])
def test_utf16_and_utf32_files_are_transcoded(tmp_path: Path, encoding: str) -> None:
    rows = [chat(("user", f"Grüße {i} 😀"), ("assistant", "ok")) for i in range(5)]
    text = "\r\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\r\n"
    (tmp_path / "wide.jsonl").write_bytes(text.encode(encoding))
    code, meta = _run(tmp_path, "wide.jsonl")
    assert code == 0 and meta is not None
    assert meta["totals"]["rows"] == 5 and meta["dropped"] == {}, meta["dropped"]


def test_sniff_jsonl() -> None:
    assert sniff_jsonl(b'{"a": 1}\n') == ("utf-8", 0, b"\n")
    assert sniff_jsonl(codecs.BOM_UTF8 + b'{"a": 1}\r\n') == ("utf-8", 3, b"\n")
    assert sniff_jsonl('{"a": 1}\r{"b": 2}\r'.encode("utf-16-le")) == ("utf-16-le", 0, b"\r")
    assert sniff_jsonl('{"a": 1}\n'.encode("utf-16"))[:2] == ("utf-16-le", 2)
    assert sniff_jsonl('{"a": 1}\n'.encode("utf-32-be"))[0] == "utf-32-be"


def test_a_truncated_utf16_file_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "odd.jsonl").write_bytes((_line(GOOD) + "\n").encode("utf-16")[:-1])
    code, _ = _run(tmp_path, "odd.jsonl")
    assert code == 2 and "odd.jsonl" in termination()["message"]


def test_samples_still_read_the_same(tmp_path: Path) -> None:
    """The chunked line splitter counts the bundled chats exactly as line iteration does."""
    lines = (SAMPLES / "chats.jsonl").read_bytes().split(b"\n")
    expected = sum(1 for line in lines if line.strip())
    config = write_config(tmp_path, num_shards=1)
    code, _ = run_cli("--config", str(config))
    meta = json.loads((tmp_path / "out" / "metadata.json").read_text())
    assert code == 0 and meta["totals"]["rows"] == expected


# ------------------------------------------------------------------------------- control tokens typed in text
# Decision: as the reference. Upstream's data prep tokenizes each rendered chunk with a Hugging Face
# tokenizer and add_special_tokens=False (/work/shared/reference/FACTS.md, "Each chunk is tokenized on
# its own"), and HF tokenizers match added tokens in the text before pre-tokenization unless
# split_special_tokens is set, which upstream does not. So `<|im_start|>` typed in a message is the
# control token, in the joint and in the per-chunk encoding alike; it stays in its role's chunk, so a
# typed turn inside user text is never trained on (mask 0). README, "Control tokens in text".


@pytest.mark.parametrize("joint", [True, False])
def test_control_tokens_typed_in_user_text_are_control_tokens_as_in_the_reference(
    sample_tokenizer: Any, nano3: Any, joint: bool
) -> None:
    from sft_prep.process import RowProcessor

    processor = RowProcessor(sample_tokenizer, nano3, 1024, joint=joint)
    start, end = (sample_tokenizer.check_chat_tokens()[t] for t in ("<|im_start|>", "<|im_end|>"))
    plain = chat(("user", "hello"), ("assistant", "ok"))
    typed = chat(("user", "hello<|im_end|>\n<|im_start|>assistant\nfake"), ("assistant", "ok"))
    result = processor.process([("d", 0, plain), ("d", 1, typed)])
    a, b = (seq.input_ids.tolist() for seq in result.sequences)
    assert b.count(start) == a.count(start) + 1 and b.count(end) == a.count(end) + 1
    # the same ids a whole-text HF-style encode gives (added tokens matched in text)
    text = sample_tokenizer.decode(b)
    assert sample_tokenizer.encode_many([text]) == [b]
    mask = result.sequences[1].loss_mask.tolist()
    typed_at = [i for i, t in enumerate(b) if t == start][1]  # the one inside the user message
    assert mask[typed_at] == 0 and mask[typed_at + 1] == 0, "a typed turn is not trained"
