"""The shard plan and the readers: every input row in exactly one shard, deterministic splits."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sft_common.config import ConfigError
from sft_prep.chat import RowError
from sft_prep.config import DatasetSpec
from sft_prep.readers import ReadMeter, SourceFile, iter_rows, resolve_files
from sft_prep.sharding import assign_files, assign_splits, plan_shards, shards_per_dataset, split_sizes


def _write_jsonl(path: Path, first: int, count: int) -> None:
    path.write_text("".join(json.dumps({"messages": [], "i": first + k}) + "\n" for k in range(count)))


def _ids(shard_sources, spec: DatasetSpec) -> list[int]:  # type: ignore[no-untyped-def]
    out = []
    for source in shard_sources:
        rows = iter_rows(
            source.files, spec, modulus=source.modulus, remainder=source.remainder, limit=source.limit
        )
        out.extend(r.row["i"] for r in rows)
    return out


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 30), min_size=1, max_size=7),
    num_shards=st.integers(1, 9),
    sample=st.one_of(st.none(), st.integers(1, 60)),
)
def test_every_row_lands_in_exactly_one_shard(
    tmp_path_factory: pytest.TempPathFactory, sizes: list[int], num_shards: int, sample: int | None
) -> None:
    root = tmp_path_factory.mktemp("rows")
    first = 0
    for n, count in enumerate(sizes):
        _write_jsonl(root / f"f{n}.jsonl", first, count)
        first += count
    spec = DatasetSpec(name="d", path=str(root / "*.jsonl"))
    files = resolve_files(spec, "datasets[0]")
    per_shard = [_ids(sources, spec) for sources in assign_files(files, num_shards, sample)]
    assert len(per_shard) == num_shards
    everything = sorted(i for ids in per_shard for i in ids)
    expected = list(range(first)) if sample is None else list(range(min(sample, first)))
    assert everything == expected


def test_whole_files_are_balanced_by_size() -> None:
    files = [SourceFile(f"f{i}", size) for i, size in enumerate([100, 90, 50, 40, 10, 10])]
    loads = []
    for (source,) in assign_files(files, 3, None):
        assert source.modulus == 1
        loads.append(sum(dict((f.uri, f.size) for f in files)[u] for u in source.files))
    assert sorted(loads) == [100, 100, 100]


def test_fewer_files_than_shards_split_rows_in_proportion_to_size() -> None:
    files = [SourceFile("big", 300), SourceFile("small", 100)]
    plan = [src for (src,) in assign_files(files, 4, None)]
    assert [(s.files, s.modulus, s.remainder) for s in plan] == [
        (("big",), 3, 0),
        (("big",), 3, 1),
        (("big",), 3, 2),
        (("small",), 1, 0),
    ]


@pytest.mark.parametrize(
    ("total", "valid", "test", "expected"),
    [
        (1, 0.5, 0.3, (0, 0)),
        (2, 0.5, 0.3, (0, 0)),
        (3, 0.01, 0.01, (1, 1)),
        (100, 0.05, 0.02, (5, 2)),
        (10, 0.0, 0.0, (0, 0)),
        (4, 0.6, 0.3, (2, 1)),
    ],
)
def test_split_sizes_take_whole_shards_and_leave_train_at_least_one(
    total: int, valid: float, test: float, expected: tuple[int, int]
) -> None:
    got = split_sizes(total, valid, test)
    assert got == expected and total - sum(got) >= 1


def test_split_assignment_is_a_seeded_deterministic_function() -> None:
    a = assign_splits(50, 0.1, 0.1, seed=3)
    assert a == assign_splits(50, 0.1, 0.1, seed=3)
    assert a != assign_splits(50, 0.1, 0.1, seed=4)
    assert a.count("valid") == 5 and a.count("test") == 5


def test_shard_indices_are_global_and_paths_follow_the_split(tmp_path: Path) -> None:
    specs = [
        (DatasetSpec(name="a", path="x", weight=2), [SourceFile("x", 20)]),
        (DatasetSpec(name="b", path="y"), [SourceFile("y", 10)]),
    ]
    shards = plan_shards(specs, 6, 0.2, 0.2, 42, None)
    assert [s.index for s in shards] == list(range(6))
    assert [s.dataset for s in shards] == ["a"] * 4 + ["b"] * 2 and shards[0].weight == 2
    assert [s.split for s in shards].count("valid") == 1 and [s.split for s in shards].count("test") == 1
    for s in shards:
        assert s.rel_path == f"splits/{s.split}/shard_{s.index:06d}.parquet"
        assert s.rel_prefix + ".parquet" == s.rel_path


def test_readers_handle_gzip_blank_lines_and_bad_json(tmp_path: Path) -> None:
    body = b'{"messages": [], "i": 0}\n\n{not json\n   \n{"messages": [], "i": 1}\n[1, 2]\n'
    with gzip.open(tmp_path / "a.jsonl.gz", "wb") as fh:
        fh.write(body)
    spec = DatasetSpec(name="d", path=str(tmp_path / "a.jsonl.gz"))
    files = resolve_files(spec, "datasets[0]")
    meter = ReadMeter(files[0].size)
    rows = list(iter_rows(tuple(f.uri for f in files), spec, meter=meter))
    assert [r.location for r in rows] == ["a.jsonl.gz:1", "a.jsonl.gz:3", "a.jsonl.gz:5", "a.jsonl.gz:6"]
    assert isinstance(rows[1].row, RowError) and rows[1].row.reason == "bad_json"
    assert isinstance(rows[3].row, RowError) and rows[3].row.reason == "bad_json"
    assert rows[2].row["i"] == 1
    assert meter.fraction == 1.0


def test_resolve_files_errors_name_the_dataset(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ConfigError, match=r"datasets\[2\]\.path: no JSONL or Parquet files"):
        resolve_files(DatasetSpec(name="d", path=str(tmp_path)), "datasets[2]")
    with pytest.raises(ConfigError, match="unsupported input file type"):
        resolve_files(DatasetSpec(name="d", path=str(tmp_path / "notes.txt")), "datasets[0]")
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_files(DatasetSpec(name="d", path=str(tmp_path / "gone.jsonl")), "datasets[0]")
    (tmp_path / "sub").mkdir()
    _write_jsonl(tmp_path / "sub" / "b.jsonl", 0, 2)
    _write_jsonl(tmp_path / "a.jsonl", 0, 1)
    found = resolve_files(DatasetSpec(name="d", path=str(tmp_path)), "datasets[0]")
    assert [Path(f.uri).name for f in found] == ["a.jsonl", "b.jsonl"] and all(f.size > 0 for f in found)


def test_parquet_without_the_messages_column_is_a_config_error(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": ["a"]}), tmp_path / "x.parquet")
    spec = DatasetSpec(name="d", path=str(tmp_path / "x.parquet"))
    with pytest.raises(ConfigError, match=r"no column 'messages'.*columns are: text"):
        list(iter_rows((str(tmp_path / "x.parquet"),), spec))


def test_num_shards_is_split_over_datasets_by_size() -> None:
    assert shards_per_dataset([300, 100], 4) == [3, 1]
    assert shards_per_dataset([1, 10_000], 3) == [1, 2], "every dataset gets at least one shard"
    assert shards_per_dataset([0, 100, 300], 6) == [2, 1, 3], "a hub dataset (size 0) counts as the mean"
    assert shards_per_dataset([5, 100_000], 4, equal=True) == [2, 2]
    with pytest.raises(ConfigError, match=r"num_shards \(2\) must be at least the number of datasets \(3\)"):
        shards_per_dataset([1, 2, 3], 2)


def test_process_count_follows_input_size_cpu_quota_and_override(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sft_prep import engine

    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("250000 100000\n")
    assert engine.usable_cpus(str(cpu_max)) == min(3, engine.usable_cpus(str(tmp_path / "absent")))
    cpu_max.write_text("max 100000\n")
    assert engine.usable_cpus(str(cpu_max)) == engine.usable_cpus(str(tmp_path / "absent"))
    monkeypatch.delenv("SFT_PREP_PROCESSES", raising=False)
    assert engine.default_processes(1 << 20) == 1, "small inputs stay in one process"
    assert engine.default_processes(1 << 30) in range(1, 9)
    assert engine.default_processes(1 << 30, cpus=16) == 8
    assert engine.default_processes(1 << 30, cpus=4) == 4
    assert engine.default_processes(1 << 30, cpus=2) == 1, "2 CPUs: one threaded process is faster"
    monkeypatch.setenv("SFT_PREP_PROCESSES", "3")
    assert engine.default_processes(1 << 20) == 3
    monkeypatch.setenv("SFT_PREP_PROCESSES", "many")
    with pytest.raises(ConfigError, match="SFT_PREP_PROCESSES"):
        engine.default_processes(1)
