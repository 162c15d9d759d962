"""``pad_seq_to_mult``: sequences padded for context parallelism, the way Megatron-Bridge reads them.

Facts from NVIDIA-NeMo/Megatron-Bridge (``data/datasets/packed_sequence.py::tokenize_dataset`` in 0.5.1,
``data/packing/offline.py::tokenize_dataset`` in 0.6.0, ``GPTSFTPackedDataset.collate_fn``): a stored
sub-sequence ``[s, e)`` gives ``e - s - 1`` input tokens (``ids[s:e-1]``) and adds that to
``cu_seqlens``, which THD context parallelism needs divisible by the multiple; sequences are padded
with the tokenizer's eos (``tokenizer.eod``) and loss mask 0, and the collate takes a sub-sequence's
real length to end at its last input token that is not eos.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from prep.pipeline_support import TOKENIZER, read_rows, run_cli, termination, trained_runs, write_config
from sft_common.config import ConfigError
from sft_prep.config import PrepConfig
from sft_prep.loss_mask import roll_within
from sft_prep.packing import pack
from sft_prep.padding import pad_sequences, pad_token_id, padded_lengths
from sft_prep.parquet_shard import materialize
from sft_prep.tokenizer import load_tokenizer

PAD = 7  # a pad id for the array-level tests

sequences = st.lists(
    st.integers(1, 60).flatmap(
        lambda n: st.tuples(
            st.lists(st.integers(100, 50_000), min_size=n, max_size=n),
            st.lists(st.integers(0, 1), min_size=n, max_size=n),
        )
    ),
    min_size=1,
    max_size=12,
)


def _flat(seqs: list[tuple[list[int], list[int]]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ids = np.array([t for s, _ in seqs for t in s], dtype=np.int32)
    mask = np.array([m for _, ms in seqs for m in ms], dtype=np.uint8)
    return ids, mask, np.array([len(s) for s, _ in seqs], dtype=np.int64)


def _labels(ids: np.ndarray, aligned: np.ndarray, lengths: np.ndarray) -> list[list[int]]:
    """The trained labels of each sub-sequence, as the collate takes them (labels ids[s+1:e], mask[s:e-1])."""
    out = []
    ends = np.cumsum(lengths)
    for s, e in zip(ends - lengths, ends, strict=True):
        out.append(ids[s + 1 : e][aligned[s : e - 1] == 1].tolist())
    return out


@settings(max_examples=300, deadline=None)
@given(seqs=sequences, mult=st.integers(1, 16))
def test_padding_keeps_tokens_and_labels_and_makes_inputs_a_multiple(seqs, mult) -> None:  # type: ignore[no-untyped-def]
    ids, mask, lengths = _flat(seqs)
    out_ids, out_mask, out_len = pad_sequences(ids, mask, lengths, mult, PAD)
    assert len(out_ids) == len(out_mask) == int(out_len.sum())
    if mult == 1:
        assert out_ids is ids and out_mask is mask and out_len.tolist() == lengths.tolist()
        return
    assert ((out_len - 1) % mult == 0).all(), "input tokens (stored length - 1) are a multiple"
    assert (out_len - 1 >= lengths).all() and (out_len - 1 - lengths < mult).all(), "smallest such multiple"
    ends = np.cumsum(out_len)
    for (seq_ids, seq_mask), s, e in zip(seqs, ends - out_len, ends, strict=True):
        n = len(seq_ids)
        assert out_ids[s : s + n].tolist() == seq_ids and out_mask[s : s + n].tolist() == seq_mask
        assert (out_ids[s + n : e] == PAD).all() and (out_mask[s + n : e] == 0).all() and e - s > n
        # the collate's real length: the last input token that is not the pad (eos) is the last real one
        inputs = out_ids[s : e - 1]
        assert int(np.nonzero(inputs != PAD)[0][-1]) + 1 == n
    # rolled per sub-sequence, padded sequences train exactly the labels the unpadded ones do
    assert _labels(out_ids, roll_within(out_mask, out_len), out_len) == _labels(
        ids, roll_within(mask, lengths), lengths
    )


@settings(max_examples=100, deadline=None)
@given(seqs=sequences, mult=st.sampled_from([2, 4, 8]))
def test_packed_bins_keep_boundaries_on_padded_lengths(seqs, mult) -> None:  # type: ignore[no-untyped-def]
    ids, mask, lengths = _flat(seqs)
    pack_size = 128
    ids, mask, lengths = pad_sequences(ids, mask, lengths, mult, PAD)
    packed = materialize(ids, mask, lengths, pack(lengths, pack_size, "best_fit_decreasing"))
    for b in range(packed.num_bins):
        row_ids, _, starts = packed.row(b)
        bounds = [*starts.tolist(), len(row_ids)]
        assert len(row_ids) <= pack_size
        assert all((e - s - 1) % mult == 0 for s, e in itertools.pairwise(bounds))


def test_padded_lengths_rule() -> None:
    # ceil(n / m) * m + 1: 0.5.1's rule, always at least one pad after the real tokens
    assert padded_lengths(np.array([1, 3, 4, 5, 8, 9]), 4).tolist() == [5, 5, 5, 9, 9, 13]
    assert padded_lengths(np.array([1, 3, 4]), 1).tolist() == [1, 3, 4]


def test_config_checks_and_the_padded_doc_limit() -> None:
    base = {"datasets": [{"name": "a", "path": "x.jsonl"}], "tokenizer": {"model": "t"}, "output_dir": "o"}
    assert PrepConfig.model_validate(base).pad_seq_to_mult == 1
    cfg = PrepConfig.model_validate({**base, "padSeqToMult": 8})  # the CR's camelCase spelling
    assert cfg.pad_seq_to_mult == 8 and cfg.doc_limit == 4088  # (4096 - 1) // 8 * 8: room for one pad
    assert PrepConfig.model_validate({**base, "pad_seq_to_mult": 8, "max_doc_tokens": 2000}).doc_limit == 2000
    for bad, words in (
        ({"pad_seq_to_mult": 0}, "greater than or equal to 1"),
        ({"pad_seq_to_mult": 6}, "must be a multiple of pad_seq_to_mult (6)"),
        ({"pad_seq_to_mult": 4096}, "and larger"),
        ({"pad_seq_to_mult": 8, "max_doc_tokens": 4096}, "at most 4088"),
    ):
        with pytest.raises(ValidationError, match=words.replace("(", r"\(").replace(")", r"\)")):
            PrepConfig.model_validate({**base, **bad})


def test_pad_token_is_the_eos_and_a_tokenizer_without_one_is_refused(tmp_path: Path) -> None:
    tok = load_tokenizer(str(TOKENIZER))
    assert pad_token_id(tok) == tok.encode_many(["<|im_end|>"])[0][0]
    (tmp_path / "tokenizer.json").write_text((TOKENIZER / "tokenizer.json").read_text())
    config = json.loads((TOKENIZER / "tokenizer_config.json").read_text())
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({**config, "eos_token": None}))
    with pytest.raises(ConfigError, match="names no eos_token"):
        pad_token_id(load_tokenizer(str(tmp_path)))


def _run(tmp_path: Path, name: str, **fields: object) -> tuple[Path, dict]:  # type: ignore[type-arg]
    config = write_config(tmp_path, name=f"{name}.yaml", output_dir=str(tmp_path / name), **fields)
    code, stdout = run_cli("--config", str(config))
    assert code == 0, stdout
    return tmp_path / name, json.loads((tmp_path / name / "metadata.json").read_text())


def _files(out: Path) -> list[Path]:
    return sorted(p for p in (out / "splits").rglob("*.parquet"))


@pytest.mark.parametrize(("pack_size", "mult"), [(1024, 8), (1200, 12)])
def test_padded_run_on_the_bundled_samples(tmp_path: Path, pack_size: int, mult: int) -> None:
    tok = load_tokenizer(str(TOKENIZER))
    eos = tok.encode_many(["<|im_end|>"])[0][0]
    plain_out, plain = _run(tmp_path, "plain", pack_size=pack_size, valid_ratio=0.25)
    out, meta = _run(tmp_path, "padded", pack_size=pack_size, valid_ratio=0.25, pad_seq_to_mult=mult)
    assert meta["pad_seq_to_mult"] == mult and plain["pad_seq_to_mult"] == 1
    assert meta["config_hash"] != plain["config_hash"]
    assert meta["padding"]["token_id"] == eos and plain["padding"] == {
        "token_id": None,
        "tokens": 0,
        "rule": None,
    }
    assert meta["max_doc_tokens"] == (pack_size - 1) // mult * mult

    padded_runs: list[list[int]] = []
    real_lengths: list[int] = []
    pads = 0
    for path in _files(out):
        for row in read_rows(path):
            ids, mask, starts = np.array(row["input_ids"]), np.array(row["loss_mask"]), row["seq_start_id"]
            assert len(ids) <= pack_size
            for s, e in itertools.pairwise([*starts, len(ids)]):
                assert (e - s - 1) % mult == 0, "every sub-sequence's input tokens are a multiple"
                inputs = ids[s : e - 1]
                real = int(np.nonzero(inputs != eos)[0][-1]) + 1  # the collate's logical length
                assert (ids[s + real : e] == eos).all() and (mask[s + real - 1 : e] == 0).all()
                real_lengths.append(real)
                pads += e - s - real
            padded_runs.extend(trained_runs(row))
    assert pads == meta["padding"]["tokens"] > 0
    assert meta["totals"]["tokens"] == plain["totals"]["tokens"] == sum(real_lengths), "pads are not data"
    assert meta["totals"]["trainable_tokens"] == plain["totals"]["trainable_tokens"]
    assert meta["totals"]["sequences"] == plain["totals"]["sequences"]

    # the same labels are trained as without padding, and they decode to the assistant turns
    plain_lengths: list[int] = []
    plain_runs: list[list[int]] = []
    for path in _files(plain_out):
        for row in read_rows(path):
            bounds = [*row["seq_start_id"], len(row["input_ids"])]
            plain_lengths.extend(e - s for s, e in itertools.pairwise(bounds))
            plain_runs.extend(trained_runs(row))
    assert sorted(padded_runs) == sorted(plain_runs)
    assert Counter(real_lengths) == Counter(plain_lengths)
    assert all(tok.decode(run).endswith("<|im_end|>\n") for run in padded_runs)
    assert termination()["status"] == "succeeded" and termination()["padSeqToMult"] == mult


def test_pad_seq_to_mult_1_is_the_unpadded_output(tmp_path: Path) -> None:
    """Setting the default explicitly changes no byte of the data, nor the run's identity."""
    default_out, default = _run(tmp_path, "default", num_shards=3)
    one_out, one = _run(tmp_path, "one", num_shards=3, pad_seq_to_mult=1)
    assert default["config_hash"] == one["config_hash"]
    a, b = _files(default_out), _files(one_out)
    assert [p.relative_to(default_out) for p in a] == [p.relative_to(one_out) for p in b] and a
    assert all(x.read_bytes() == y.read_bytes() for x, y in zip(a, b, strict=True))
    assert all(pq.ParquetFile(x).metadata.num_rows for x in a)
