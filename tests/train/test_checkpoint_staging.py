"""s3:// checkpoints for the megatron engine, staged on node-local disk, against the suite's local S3 (moto).

The checkpoint layout is Megatron-Bridge's (NVIDIA-NeMo/Megatron-Bridge 0.6,
``training/utils/checkpoint_utils.py`` and ``training/checkpointing.py``): ``{save}/iter_{N:07d}/``
per saved iteration (rank 0 writes ``train_state.pt`` and ``run_config.yaml`` there, every rank its
``__{rank}_0.distcp`` shard); after the save's barrier rank 0 writes ``{save}/latest_train_state.pt``
(a byte copy of ``iter_N/train_state.pt``) and ``{save}/latest_checkpointed_iteration.txt`` (``str(N)``);
the ``on_checkpoint_save`` callback fires on every rank after the closing barrier. The "Megatron
saves" below write exactly those files.
"""

from __future__ import annotations

import threading
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sft_common import storage
from sft_common.config import validate
from sft_train import checkpoint_staging as staging
from sft_train.config import TrainConfig
from sft_train.engines.megatron_plan import complete_checkpoint, resume_location


def config(**checkpoint: Any) -> TrainConfig:
    pretrained = checkpoint.pop("pretrained", None)
    return validate(
        TrainConfig,
        {"data": {"path": "/d"}, "model": {"pretrained_checkpoint": pretrained}, "checkpoint": checkpoint},
    )


def megatron_save(save: Path, iteration: int, ranks: range, rank0: bool = True) -> None:
    """What Megatron-Bridge writes into a (node-local) save dir for the given ranks."""
    it = save / staging.iteration_dir(iteration)
    it.mkdir(parents=True, exist_ok=True)
    for rank in ranks:
        (it / f"__{rank}_0.distcp").write_bytes(f"shard {rank} of {iteration}".encode() * 100)
    if rank0:
        (it / ".metadata").write_bytes(b"meta %d" % iteration)
        (it / "train_state.pt").write_bytes(b"state %d" % iteration)
        (save / staging.TRACKER_STATE).write_bytes(b"state %d" % iteration)
        (save / staging.TRACKER_TXT).write_text(str(iteration))


def upload_as_one_node(staged: staging.StagedCheckpoints, iteration: int) -> None:
    staged.upload(iteration, rank=0, local_rank=0, barrier=lambda: None)


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SFT_SCRATCH", str(tmp_path / "node-a"))
    return tmp_path / "node-a"


def put_tree(uri: str, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        storage.write_bytes(storage.join(uri, rel), data)


def test_local_locations_are_used_as_they_are(tmp_path: Path, scratch: Path) -> None:
    cfg = config(pretrained=str(tmp_path / "base"), save=str(tmp_path / "ck"))
    staged = staging.stage(cfg)
    assert staged.config == cfg and staged.remote_save is None and not staged.staged
    assert staged.checkpoint_uri(5) == f"{tmp_path}/ck/iter_0000005"


def test_pretrained_checkpoint_is_mirrored_once_and_resumes_an_interrupted_download(
    s3: str, scratch: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = f"{s3}/models/base"
    files = {f"iter_0000000/__{r}_0.distcp": bytes([r]) * (1000 + r) for r in range(6)}
    files["iter_0000000/.metadata"] = b"m"
    files[staging.TRACKER_TXT] = b"0"
    put_tree(base, files)
    real = storage.download_file
    calls: list[str] = []
    failed: list[str] = []

    def flaky(uri: str, dest: Path) -> None:
        calls.append(uri)
        if len(calls) == 4 and not failed:
            failed.append(uri)
            raise storage.StorageError(f"{uri}: connection reset")
        real(uri, dest)

    monkeypatch.setattr(storage, "download_file", flaky)
    with pytest.raises(storage.StorageError, match="connection reset"):
        staging.stage(config(pretrained=base, save=f"{s3}/ck"))
    local = staging.local_dir(base, "pretrained")
    assert not (local / staging.MARKER).exists() and not list(local.rglob("*.part"))
    calls.clear()
    staged = staging.stage(config(pretrained=base, save=f"{s3}/ck"))
    assert len(calls) == len(files) - 3, "the three files finished before the failure are kept"
    assert staged.config.model.pretrained_checkpoint == str(local)
    assert {
        p.relative_to(local).as_posix(): p.read_bytes()
        for p in local.rglob("*")
        if p.is_file() and p.name != staging.MARKER
    } == files
    calls.clear()
    staging.stage(config(pretrained=base, save=f"{s3}/ck"))
    assert calls == [], "a finished mirror is reused"
    put_tree(base, {"iter_0000000/__0_0.distcp": b"new weights"})  # the source changed: mirrored again
    staging.stage(config(pretrained=base, save=f"{s3}/ck"))
    assert calls == [f"{base}/iter_0000000/__0_0.distcp"]
    assert (local / "iter_0000000/__0_0.distcp").read_bytes() == b"new weights"


def test_saves_are_uploaded_and_a_fresh_node_resumes_from_them(
    s3: str, tmp_path: Path, scratch: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    save = f"{s3}/runs/a/checkpoints"
    staged = staging.stage(config(save=save))
    assert staged.remote_save == save and staged.local_save is not None
    assert staged.config.checkpoint.save == str(staged.local_save)
    assert resume_location(staged.config) is None and not complete_checkpoint(save)
    for iteration in (10, 20):
        megatron_save(staged.local_save, iteration, range(2))
        upload_as_one_node(staged, iteration)
    assert complete_checkpoint(save) and staging.latest_iteration(save) == 20
    assert staged.checkpoint_uri(20) == f"{save}/iter_0000020"
    assert sorted(storage.list_sizes(f"{save}/iter_0000020")) == [
        ".metadata",
        "__0_0.distcp",
        "__1_0.distcp",
        "train_state.pt",
    ]
    assert not (staged.local_save / "iter_0000010").exists(), "uploaded older iterations leave the node"
    # the original config resumes from the remote save; a new pod on another node stages it first
    assert resume_location(config(save=save)) == save
    monkeypatch.setenv("SFT_SCRATCH", str(tmp_path / "node-b"))
    again = staging.stage(config(save=save))
    assert again.local_save is not None and str(tmp_path / "node-b") in str(again.local_save)
    assert resume_location(again.config) == str(again.local_save)
    assert (again.local_save / staging.TRACKER_TXT).read_text() == "20"
    assert (again.local_save / staging.TRACKER_STATE).read_bytes() == b"state 20"
    assert sorted(p.name for p in again.local_save.iterdir() if p.is_dir()) == ["iter_0000020"]


def test_an_interrupted_upload_leaves_the_previous_checkpoint_and_is_redone_whole(
    s3: str, tmp_path: Path, scratch: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    save = f"{s3}/runs/b"
    staged = staging.stage(config(save=save))
    assert staged.local_save is not None
    megatron_save(staged.local_save, 10, range(2))
    upload_as_one_node(staged, 10)
    megatron_save(staged.local_save, 20, range(4))
    real = storage.upload_file
    sent: list[str] = []

    def dies_after_two(path: Path, uri: str) -> None:
        if len(sent) == 2:
            raise storage.StorageError(f"{uri}: pod killed")
        sent.append(uri)
        real(path, uri)

    monkeypatch.setattr(storage, "upload_file", dies_after_two)
    with pytest.raises(storage.StorageError, match="pod killed"):
        upload_as_one_node(staged, 20)
    monkeypatch.setattr(storage, "upload_file", real)
    assert staging.latest_iteration(save) == 10 and len(storage.list_sizes(f"{save}/iter_0000020")) == 2
    # the restarted run (a fresh node) resumes from 10, and saves 20 again with other shards
    monkeypatch.setenv("SFT_SCRATCH", str(tmp_path / "node-c"))
    restarted = staging.stage(config(save=save))
    assert restarted.local_save is not None and resume_location(restarted.config) == str(restarted.local_save)
    assert (restarted.local_save / staging.TRACKER_TXT).read_text() == "10"
    megatron_save(restarted.local_save, 20, range(1))
    upload_as_one_node(restarted, 20)
    assert staging.latest_iteration(save) == 20
    assert sorted(storage.list_sizes(f"{save}/iter_0000020")) == [
        ".metadata",
        "__0_0.distcp",
        "train_state.pt",
    ]


def test_nodes_upload_their_own_shards_and_the_tracker_goes_last(
    s3: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two nodes (ranks 0-1 and 2-3), each with its own node-local save dir, meet at real barriers."""
    save = f"{s3}/runs/c"
    monkeypatch.setenv("SFT_SCRATCH", str(tmp_path / "n0"))
    node0 = staging.stage(config(save=save))
    node1 = staging.StagedCheckpoints(node0.config, save, tmp_path / "n1" / "save")
    assert node0.local_save is not None and node1.local_save is not None
    megatron_save(node0.local_save, 30, range(0, 2), rank0=True)
    megatron_save(node1.local_save, 30, range(2, 4), rank0=False)
    real = storage.upload_file
    seen_at_tracker: list[list[str]] = []

    def watch(path: Path, uri: str) -> None:
        if uri.endswith(staging.TRACKER_TXT):
            seen_at_tracker.append(sorted(storage.list_sizes(f"{save}/iter_0000030")))
        real(path, uri)

    monkeypatch.setattr(storage, "upload_file", watch)
    barrier = threading.Barrier(2, timeout=60)
    errors: list[BaseException] = []

    def run(staged: staging.StagedCheckpoints, rank: int) -> None:
        try:
            staged.upload(30, rank=rank, local_rank=0, barrier=barrier.wait)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(node0, 0)), threading.Thread(target=run, args=(node1, 2))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    assert seen_at_tracker == [[".metadata", *(f"__{r}_0.distcp" for r in range(4)), "train_state.pt"]]
    assert staging.latest_iteration(save) == 30


def test_explicit_remote_load_stages_only_its_newest_iteration(s3: str, scratch: Path) -> None:
    old = f"{s3}/runs/old"
    put_tree(
        old,
        {
            "iter_0000005/train_state.pt": b"state 5",
            "iter_0000005/__0_0.distcp": b"x" * 10,
            "iter_0000009/train_state.pt": b"state 9",
            "iter_0000009/__0_0.distcp": b"y" * 10,
            "iter_0000012/train_state.pt": b"state 12",  # an upload in flight: no tracker names it
            staging.TRACKER_STATE: b"state 9",  # Megatron-Bridge's tracker only (no .txt)
        },
    )
    assert staging.latest_iteration(old) == 9
    staged = staging.stage(config(load=old, save=f"{s3}/runs/new"))
    local = Path(str(staged.config.checkpoint.load))
    assert sorted(p.name for p in local.iterdir() if p.is_dir()) == ["iter_0000009"]
    assert resume_location(staged.config) == str(local)
    assert staged.local_save is not None and not any(staged.local_save.iterdir())


def test_the_megatron_engine_trains_on_staged_paths_and_reports_the_remote_checkpoint(
    s3: str, scratch: Path, make_data: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine's wiring, with stand-ins for finetune() and its callback events (no Megatron-Bridge)."""
    import torch

    from sft_train.engines import megatron_engine
    from sft_train.packed_data import inspect_data

    base, save = f"{s3}/models/base", f"{s3}/runs/engine"
    put_tree(base, {"iter_0000000/__0_0.distcp": b"w" * 64, staging.TRACKER_TXT: b"0"})
    seen: dict[str, Any] = {}

    class Callback:  # Megatron-Bridge's base class: no-op event methods
        def on_checkpoint_save(self, context: Any) -> None:
            pass

        def on_train_step_end(self, context: Any) -> None:
            pass

    def build_container(config: TrainConfig, plan: Any) -> Any:
        seen["overrides"] = plan.overrides
        values = dict(o.split("=", 1) for o in plan.overrides)
        model = types.SimpleNamespace(tensor_model_parallel_size=1, context_parallel_size=1)
        return types.SimpleNamespace(
            model=model, checkpoint=types.SimpleNamespace(save=values["checkpoint.save"])
        )

    def finetune(config: Any, forward_step_func: Any, callbacks: list[Any]) -> None:
        local = Path(config.checkpoint.save)
        for step in range(4):
            ctx = types.SimpleNamespace(
                state=types.SimpleNamespace(train_state=types.SimpleNamespace(step=step)),
                loss_dict={},
                optimizer=None,
            )
            for cb in callbacks:
                cb.on_train_step_end(ctx)
            if (step + 1) % 2 == 0:  # save_interval 2: Megatron-Bridge saves, then fires the event
                megatron_save(local, step + 1, range(1))
                ctx.state.train_state.step = step + 1
                for cb in callbacks:
                    cb.on_checkpoint_save(ctx)

    fake = {
        "megatron.bridge.training.finetune": types.SimpleNamespace(finetune=finetune),
        "megatron.bridge.training.gpt_step": types.SimpleNamespace(forward_step=object()),
        "megatron.bridge.training.callbacks": types.SimpleNamespace(Callback=Callback),
        "torch": torch,
    }
    monkeypatch.setattr(megatron_engine, "_import", fake.__getitem__)
    monkeypatch.setattr(megatron_engine, "build_container", build_container)
    cfg = validate(
        TrainConfig,
        {
            "data": {"path": str(make_data())},
            "model": {"pretrained_checkpoint": base},
            "train": {"train_iters": 4},
            "checkpoint": {"save": save, "save_interval": 2, "hf_export_enabled": False},
        },
    )
    result = megatron_engine.train(cfg, inspect_data(cfg.data.path))
    overrides = seen["overrides"]
    assert not any("s3://" in o for o in overrides if o.startswith("checkpoint.")), overrides
    assert f"checkpoint.pretrained_checkpoint={staging.local_dir(base, 'pretrained')}" in overrides
    assert result.checkpoint == f"{save}/iter_0000004" and result.last_iteration == 4
    assert staging.latest_iteration(save) == 4 and complete_checkpoint(save)
    assert sorted(storage.list_sizes(save)) == [
        "iter_0000002/.metadata",
        "iter_0000002/__0_0.distcp",
        "iter_0000002/sft-checkpoint.json",  # the ledger record (sft_train.ledger), uploaded with it
        "iter_0000002/train_state.pt",
        "iter_0000004/.metadata",
        "iter_0000004/__0_0.distcp",
        "iter_0000004/sft-checkpoint.json",
        "iter_0000004/train_state.pt",
        staging.TRACKER_TXT,
        staging.TRACKER_STATE,
    ]
