"""Preemption (a real SIGTERM to a real ``sft-train``, directly and under ``sft-torchrun``/torchrun),
the checkpoint ledger's drift guard, ``checkpoint.resume`` modes, growing ``train_iters``, complete
markers and leftovers of interrupted saves."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from trainfixtures import hf_config, write_config, write_prep_output

from sft_common.config import validate
from sft_train import cli, ledger
from sft_train.config import TrainConfig
from sft_train.engines import hf_checkpoint as ckpt
from sft_train.engines import hf_engine
from sft_train.packed_data import inspect_data

ITERS = 40
"""Long enough that a SIGTERM sent after iteration 5 lands before the end, with no save in between
(save_interval is larger): the checkpoint the signal makes is the only one."""


def _env(tmp_path: Path, name: str) -> dict[str, str]:
    return {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "SFT_PROGRESS": "off",
        "SFT_TERMINATION_LOG": str(tmp_path / f"{name}.termination-log"),
    }


def _iterations(metrics: Path) -> list[int]:
    if not metrics.exists():
        return []
    records = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    return [r["iteration"] for r in records if "loss" in r]


def _losses(metrics: Path) -> list[float]:
    records = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    return [r["loss"] for r in records if "loss" in r]


def _sigterm_after(
    argv: list[str], env: dict[str, str], metrics: Path, after: int
) -> subprocess.CompletedProcess[str]:
    """Start ``argv``, send SIGTERM (to that process only, as the kubelet signals a container's PID 1)
    once ``metrics`` shows iteration ``after``, and wait for it."""
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            done = _iterations(metrics)
            if done and done[-1] >= after:
                proc.send_signal(signal.SIGTERM)
                break
            time.sleep(0.01)
        out, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def _preempt_and_resume(
    tmp_path: Path, config: dict[str, Any], launcher: list[str]
) -> tuple[subprocess.CompletedProcess[str], subprocess.CompletedProcess[str], int]:
    metrics = tmp_path / "metrics.jsonl"
    path = write_config(tmp_path / "run.yaml", config)
    argv = [*launcher, "--config", str(path), f"logging.metrics_file={metrics}"]
    first = _sigterm_after(argv, _env(tmp_path, "first"), metrics, after=5)
    assert first.returncode == 143, first.stdout[-2000:] + first.stderr[-3000:]
    message = json.loads((tmp_path / "first.termination-log").read_text())
    saved = message["iteration"]
    assert 5 <= saved < ITERS
    assert message["reason"] == "Preempted" and message["status"] == "failed"
    save = Path(config["checkpoint"]["save"])
    assert message["checkpoints"] == {
        "latestIteration": saved,
        "uri": str(save / ckpt.iteration_name(saved)),
        "time": ledger.read_record(str(save / ckpt.iteration_name(saved)))["time"],  # type: ignore[index]
        "resumedFrom": None,  # this process started fresh
    }
    # the checkpoint of the step in flight: nothing lost beyond it, and it is complete
    assert ckpt.newest_checkpoint(str(save)) == (str(save / ckpt.iteration_name(saved)), saved)
    assert _iterations(metrics) == list(range(1, saved + 1))
    second = subprocess.run(argv, env=_env(tmp_path, "second"), capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-3000:]
    assert f"at iteration {saved}" in second.stdout
    assert _iterations(metrics) == list(range(1, ITERS + 1))  # each iteration logged once
    result = json.loads((tmp_path / "second.termination-log").read_text())
    assert result["checkpoints"]["latestIteration"] == ITERS
    assert result["checkpoints"]["resumedFrom"] == saved
    return first, second, saved


def _config(data: Path, model: Path, save: Path, **extra: Any) -> dict[str, Any]:
    return hf_config(
        data,
        model,
        save,
        **{"train.train_iters": ITERS, "checkpoint.save_interval": 1000, "logging.log_interval": 5, **extra},
    )


def test_sigterm_between_saves_saves_that_step_exits_143_and_resumes_exactly(
    make_data: Callable[..., Path], tiny_model: Path, tmp_path: Path
) -> None:
    data = make_data()
    config = _config(data, tiny_model, tmp_path / "ck")
    _preempt_and_resume(tmp_path, config, [sys.executable, "-m", "sft_train"])
    # exactness: the preempted + resumed curve is the uninterrupted one (weights, optimizer state and
    # the random streams are restored from the iteration count, all in fp32 on the same CPU)
    straight = hf_engine.train(
        validate(TrainConfig, _config(data, tiny_model, tmp_path / "straight")), inspect_data(str(data))
    )
    assert _losses(tmp_path / "metrics.jsonl") == pytest.approx(
        [loss for _, loss in straight.losses], abs=1e-6
    )


@pytest.mark.slow
def test_sigterm_to_sft_torchrun_reaches_both_ranks_and_exits_143(
    make_data: Callable[..., Path], tiny_model: Path, tmp_path: Path
) -> None:
    """The pod's command as the operator renders it (``sft-torchrun … --no-python sft-train``), with
    SIGTERM sent to the launcher only: torchrun alone would exit 1 (its SignalException)."""
    config = _config(make_data(), tiny_model, tmp_path / "ck", peft={"dim": 4, "alpha": 8})
    launcher = [sys.executable, "-m", "sft_train.launch", "--standalone", "--nproc-per-node=2"]
    launcher += ["--max-restarts=0", "-m", "sft_train"]
    first, _, saved = _preempt_and_resume(tmp_path, config, launcher)
    assert "sft-torchrun: SIGTERM forwarded to torchrun" in first.stderr
    # only rank 0 reports; both ranks agreed on the iteration (one checkpoint, the adapter complete)
    assert first.stderr.count('"reason": "Preempted"') == 1
    assert (tmp_path / "ck" / ckpt.iteration_name(saved) / "adapter" / "adapter_model.safetensors").exists()


def test_sft_torchrun_keeps_torchruns_exit_code_when_not_signalled(tmp_path: Path) -> None:
    script = tmp_path / "fail.py"
    script.write_text("import sys; sys.exit(3)\n")
    argv = [sys.executable, "-m", "sft_train.launch", "--standalone", "--nproc-per-node=1", str(script)]
    done = subprocess.run(argv, env=_env(tmp_path, "x"), capture_output=True, text=True, timeout=120)
    assert done.returncode == 1  # torchrun's ChildFailedError, unchanged: a real failure stays one
    ok = tmp_path / "ok.py"
    ok.write_text("pass\n")
    argv[-1] = str(ok)
    assert subprocess.run(argv, env=_env(tmp_path, "y"), capture_output=True, timeout=120).returncode == 0


# -- the drift guard ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> dict[str, Any]:
    """A full-SFT run of 2 iterations with one checkpoint, for the guard to compare others with."""
    import numpy as np
    from trainfixtures import pack, random_conversation

    root = tmp_path_factory.mktemp("guard")
    rng = np.random.default_rng(0)
    rows = pack([random_conversation(rng) for _ in range(30)])
    data = write_prep_output(root / "data", rows)
    meta = {"version": 1, "pack_size": 64, "config_hash": "aaaa", "tokenizer": {"model": "tok-a"}}
    (data / "metadata.json").write_text(json.dumps(meta))
    config = hf_config(
        data, tiny_model, root / "ck", **{"train.train_iters": 2, "checkpoint.save_interval": 2}
    )
    result = hf_engine.train(validate(TrainConfig, config), inspect_data(str(data)))
    assert result.last_iteration == 2
    return config


def _rerun(config: dict[str, Any], tmp_path: Path, *overrides: str) -> tuple[int, dict[str, Any], str]:
    path = write_config(tmp_path / "rerun.yaml", config)
    os.environ["SFT_TERMINATION_LOG"] = str(tmp_path / "termination-log")
    code = cli.main(["--config", str(path), *overrides])
    message = json.loads((tmp_path / "termination-log").read_text())
    return code, message, message.get("message", "")


def _other_data(tmp_path: Path, config: dict[str, Any], **meta: Any) -> str:
    """A copy of the run's data whose metadata.json differs in ``meta``."""
    import shutil

    src = Path(config["data"]["path"])
    dest = tmp_path / "data2"
    shutil.copytree(src, dest)
    old = json.loads((src / "metadata.json").read_text())
    (dest / "metadata.json").write_text(json.dumps({**old, **meta}))
    return str(dest)


GUARDED = [
    ("model.pretrained_checkpoint", "/elsewhere/model", "model.pretrained_checkpoint"),
    ("train.global_batch_size", "2", "train.global_batch_size 4 → 2"),
    ("train.seed", "8", "train.seed 7 → 8"),
    ("optimizer.lr", "0.02", "optimizer.lr 0.01 → 0.02"),
    ("optimizer.min_lr", "0.001", "optimizer.min_lr 0.0 → 0.001"),
    ("optimizer.weight_decay", "0.0", "optimizer.weight_decay 0.1 → 0.0"),
    ("optimizer.clip_grad", "0.5", "optimizer.clip_grad 1.0 → 0.5"),
    ("optimizer.adam_beta2", "0.999", "optimizer.adam_beta2 0.95 → 0.999"),
    ("scheduler.lr_warmup_iters", "2", "scheduler.lr_warmup_iters 1 → 2"),
    ("scheduler.lr_decay_style", "linear", "scheduler.lr_decay_style cosine → linear"),
    ("scheduler.lr_decay_iters", "10", "scheduler.lr_decay_iters unset → 10"),
    ("peft", "lora", "peft unset → lora"),  # a LoRA run on a full run's location
    ("precision", "bf16", "precision fp32 → bf16"),
    ("loss.calculate_per_token_loss", "false", "loss.calculate_per_token_loss True → False"),
    ("parallelism.tensor_parallel_size", "2", "parallelism.tensor_parallel_size unset → 2"),
    ("parallelism.context_parallel_size", "2", "parallelism.context_parallel_size unset → 2"),
]


@pytest.mark.parametrize(("key", "value", "said"), GUARDED, ids=[g[0] for g in GUARDED])
def test_a_run_with_another_identity_refuses_the_checkpoint(
    finished_run: dict[str, Any], tmp_path: Path, key: str, value: str, said: str
) -> None:
    before = sorted(p.name for p in Path(finished_run["checkpoint"]["save"]).iterdir())
    code, message, text = _rerun(finished_run, tmp_path, f"{key}={value}")
    assert code == 2 and message["reason"] == "CheckpointMismatch"
    assert said in text and "iteration 2 of another run" in text
    assert "checkpoint.resume: never" in text and "\n" not in text  # one sentence, with the ways out
    assert sorted(p.name for p in Path(finished_run["checkpoint"]["save"]).iterdir()) == before


@pytest.mark.parametrize(
    ("meta", "said"),
    [
        ({"config_hash": "bbbb"}, "data.fingerprint aaaa → bbbb"),
        ({"tokenizer": {"model": "tok-b"}}, "data.tokenizer tok-a → tok-b"),
    ],
    ids=["data", "tokenizer"],
)
def test_other_data_or_tokenizer_refuses_the_checkpoint(
    finished_run: dict[str, Any], tmp_path: Path, meta: dict[str, Any], said: str
) -> None:
    code, message, text = _rerun(
        finished_run, tmp_path, f"data.path={_other_data(tmp_path, finished_run, **meta)}"
    )
    assert code == 2 and message["reason"] == "CheckpointMismatch" and said in text


def test_another_pack_size_names_the_sequence_length(finished_run: dict[str, Any], tmp_path: Path) -> None:
    import numpy as np
    from trainfixtures import pack, random_conversation

    rows = pack([random_conversation(np.random.default_rng(1)) for _ in range(30)], pack_size=48)
    data = write_prep_output(tmp_path / "d48", rows, pack_size=48)
    code, _, text = _rerun(finished_run, tmp_path, f"data.path={data}")
    assert code == 2 and "model.seq_length 64 → 48" in text


def test_each_identity_key_is_guarded() -> None:
    """Every identity key but the data's (tested above) has a parametrized case here."""
    covered = {g[0].split("=")[0] for g in GUARDED} | {
        "data.fingerprint",
        "data.tokenizer",
        "model.seq_length",
    }
    config = validate(TrainConfig, {"data": {"path": "/d"}})
    from sft_train.packed_data import DataInfo

    keys = set(ledger.identity(config, DataInfo("/d", 64, {})))
    unguarded_here = {k for k in keys if k not in covered and not k.startswith(("peft.", "parallelism."))}
    # the rest vary with a key above (peft.*), are engine-fixed on hf (engine, model.recipe,
    # train.micro_batch_size: always 1) or are the same kind of key as a covered one
    assert unguarded_here <= {
        "engine",
        "model.recipe",
        "train.micro_batch_size",
        "optimizer.adam_beta1",
        "optimizer.adam_eps",
        "loss.mtp_loss_scaling_factor",
    }


def test_ledger_differences_name_old_and_new() -> None:
    assert ledger.differences({"a": 1, "b": None}, {"a": 2, "b": None, "c": [1, 2]}) == [
        "a 1 → 2",
        "c unset → [1,2]",
    ]


# -- resume modes and continuing a run ----------------------------------------------------------


def test_resume_force_resumes_another_runs_checkpoint(finished_run: dict[str, Any], tmp_path: Path) -> None:
    config = json.loads(json.dumps(finished_run))
    config["checkpoint"]["save"] = str(tmp_path / "ck")
    import shutil

    shutil.copytree(finished_run["checkpoint"]["save"], tmp_path / "ck")
    config["train"]["train_iters"] = 3
    code, message, _ = _rerun(config, tmp_path, "optimizer.lr=0.02", "checkpoint.resume=force")
    assert code == 0 and message["lastIteration"] == 3 and message["checkpoints"]["resumedFrom"] == 2


def test_resume_never_trains_fresh_in_a_sub_location(
    finished_run: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, message, _ = _rerun(finished_run, tmp_path, "optimizer.lr=0.02", "checkpoint.resume=never")
    assert code == 0
    save = finished_run["checkpoint"]["save"]
    checkpoint = message["checkpoint"]
    assert checkpoint.startswith(f"{save}/runs/") and checkpoint.endswith("/iter_0000002")
    assert message["checkpoints"].get("resumedFrom") is None  # fresh
    assert f"this run's checkpoints go to {Path(checkpoint).parent}" in capsys.readouterr().err
    # a restart of that same run (a preempted pod) resumes in its sub-location, not from scratch
    code, again, _ = _rerun(
        finished_run, tmp_path, "optimizer.lr=0.02", "checkpoint.resume=never", "train.train_iters=3"
    )
    assert (
        code == 0
        and again["checkpoint"].endswith("/iter_0000003")
        and again["checkpoints"]["resumedFrom"] == 2
    )


def test_train_iters_may_grow_and_a_finished_run_with_another_lr_is_refused(
    make_data: Callable[..., Path], tiny_model: Path, tmp_path: Path
) -> None:
    metrics = tmp_path / "m.jsonl"
    config = hf_config(make_data(), tiny_model, tmp_path / "ck", **{"train.train_iters": 3})
    config["logging"]["metrics_file"] = str(metrics)
    assert _rerun(config, tmp_path)[0] == 0
    code, message, _ = _rerun(config, tmp_path, "train.train_iters=5")  # continue the run
    assert code == 0 and message["lastIteration"] == 5 and message["checkpoints"]["resumedFrom"] == 3
    assert _iterations(metrics) == [1, 2, 3, 4, 5]
    code, message, text = _rerun(config, tmp_path, "train.train_iters=5", "optimizer.lr=0.001")
    assert code == 2 and message["reason"] == "CheckpointMismatch" and "optimizer.lr 0.01 → 0.001" in text


# -- complete markers and leftovers of interrupted saves -----------------------------------------


def test_only_checkpoints_with_their_record_are_complete(tmp_path: Path) -> None:
    def write(directory: Path) -> None:
        (directory / ckpt.STATE_FILE).write_text("ok")

    ckpt.save_checkpoint(str(tmp_path), 3, write, ledger.record(3, {"engine": "hf"}))
    assert ledger.read_record(str(tmp_path / "iter_0000003"))["identity"] == {"engine": "hf"}  # type: ignore[index]
    (tmp_path / ".iter_0000006.tmp-abc").mkdir()  # a save killed while writing
    (tmp_path / ".iter_0000006.tmp-abc" / ckpt.STATE_FILE).write_text("half")
    (tmp_path / "iter_0000009").mkdir()  # a directory that never got its record
    (tmp_path / "iter_0000009" / ckpt.STATE_FILE).write_text("ok")
    assert ckpt.complete_checkpoints(str(tmp_path)) == [(3, str(tmp_path / "iter_0000003"))]
    assert ckpt.newest_checkpoint(str(tmp_path)) == (str(tmp_path / "iter_0000003"), 3)
    assert ckpt.clean_leftovers(str(tmp_path)) == [".iter_0000006.tmp-abc", "iter_0000009"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["iter_0000003", "latest"]


def test_a_checkpoint_from_before_the_ledger_is_resumed_unchecked(tmp_path: Path) -> None:
    (tmp_path / "iter_0000004").mkdir()
    (tmp_path / "iter_0000004" / ckpt.STATE_FILE).write_text("ok")
    (tmp_path / "latest").write_text("iter_0000004\n")
    assert ckpt.newest_checkpoint(str(tmp_path)) == (str(tmp_path / "iter_0000004"), 4)
    assert ckpt.clean_leftovers(str(tmp_path)) == []
    config = validate(
        TrainConfig, {"engine": "hf", "data": {"path": "/d"}, "checkpoint": {"save": str(tmp_path)}}
    )
    from sft_train.packed_data import DataInfo

    res = ledger.resolve(config, DataInfo("/d", 64, {}), ckpt.newest_checkpoint)
    assert res.save == str(tmp_path) and res.note and "resuming it unchecked" in res.note


def test_a_partial_upload_is_not_a_checkpoint_and_is_cleared_on_the_next_save(s3: str) -> None:
    from sft_common import storage

    save = storage.join(s3, "ck")
    ckpt.save_checkpoint(save, 2, lambda d: (d / ckpt.STATE_FILE).write_text("ok"))
    storage.write_text(storage.join(save, "iter_0000004", ckpt.STATE_FILE), "half")  # upload cut mid-way
    storage.write_text(storage.join(save, "iter_0000004", "stale.bin"), "x")
    assert ckpt.newest_checkpoint(save) == (storage.join(save, "iter_0000002"), 2)
    ckpt.save_checkpoint(save, 4, lambda d: (d / ckpt.STATE_FILE).write_text("ok"))
    assert ckpt.newest_checkpoint(save) == (storage.join(save, "iter_0000004"), 4)
    assert not storage.exists(storage.join(save, "iter_0000004", "stale.bin"))


def test_trim_metrics_keeps_records_up_to_the_resumed_iteration(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    lines = [{"iteration": i, "loss": 1.0} for i in (1, 2, 3)] + [{"iteration": 2, "validation_loss": 1.0}]
    path.write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"iteration": 4, "lo')  # cut by a kill
    hf_engine.trim_metrics(str(path), 2)
    kept = [json.loads(line) for line in path.read_text().splitlines()]
    assert kept == [lines[0], lines[1], lines[3]]


# -- the megatron engine's side (stand-ins for finetune() as Megatron-Bridge 0.6.2 behaves) --------


def _megatron_run(
    tmp_path: Path,
    make_data: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
    stop_at: int | None,
    lr: float = 1e-4,
    **train: Any,
) -> Any:
    """megatron_engine.train with a finetune() stand-in that trains ``train_iters`` steps, saves every
    2 and, when ``stop_at`` is set, does what 0.6.2's training/train.py does after a SIGTERM with
    exit_signal_handler: saves at that step (firing on_checkpoint_save) and calls sys.exit(0)."""
    import types

    import torch

    from sft_train.engines import megatron_engine

    class Callback:
        def on_checkpoint_save(self, context: Any) -> None:
            pass

        def on_train_step_end(self, context: Any) -> None:
            pass

    def build_container(config: TrainConfig, plan: Any) -> Any:
        values = dict(o.split("=", 1) for o in plan.overrides)
        assert values["train.exit_signal_handler"] == "true"
        model = types.SimpleNamespace(tensor_model_parallel_size=1, context_parallel_size=1)
        return types.SimpleNamespace(
            model=model, checkpoint=types.SimpleNamespace(save=values["checkpoint.save"])
        )

    def save(local: Path, step: int, callbacks: list[Any], ctx: Any) -> None:
        (local / f"iter_{step:07d}").mkdir(parents=True, exist_ok=True)
        (local / f"iter_{step:07d}" / "train_state.pt").write_text(str(step))
        (local / "latest_checkpointed_iteration.txt").write_text(str(step))
        ctx.state.train_state.step = step
        for cb in callbacks:
            cb.on_checkpoint_save(ctx)

    def finetune(config: Any, forward_step_func: Any, callbacks: list[Any]) -> None:
        local = Path(config.checkpoint.save)
        total = train.get("train_iters", 6)
        for step in range(total):
            ctx = types.SimpleNamespace(
                state=types.SimpleNamespace(train_state=types.SimpleNamespace(step=step)),
                loss_dict={},
                optimizer=None,
            )
            for cb in callbacks:
                cb.on_train_step_end(ctx)
            if stop_at is not None and step + 1 == stop_at:
                save(local, step + 1, callbacks, ctx)
                sys.exit(0)  # checkpoint_and_decide_exit → True → train() ends with sys.exit(exit_code=0)
            if (step + 1) % 2 == 0:
                save(local, step + 1, callbacks, ctx)

    fake = {
        "megatron.bridge.training.finetune": types.SimpleNamespace(finetune=finetune),
        "megatron.bridge.training.gpt_step": types.SimpleNamespace(forward_step=object()),
        "megatron.bridge.training.callbacks": types.SimpleNamespace(Callback=Callback),
        "torch": torch,
    }
    monkeypatch.setattr(megatron_engine, "_import", fake.__getitem__)
    monkeypatch.setattr(megatron_engine, "build_container", build_container)
    base = tmp_path / "base"
    base.mkdir(exist_ok=True)
    cfg = validate(
        TrainConfig,
        {
            "data": {"path": str(make_data())},
            "model": {"pretrained_checkpoint": str(base)},
            "train": {"train_iters": 6, **train},
            "optimizer": {"lr": lr},
            "checkpoint": {"save": str(tmp_path / "ck"), "save_interval": 2, "hf_export_enabled": False},
        },
    )
    return megatron_engine.train(cfg, inspect_data(cfg.data.path))


def test_megatron_exit_after_a_signal_is_preempted_with_the_ledger(
    tmp_path: Path, make_data: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from sft_train.engines.outcome import Preempted

    with pytest.raises(Preempted) as info:
        _megatron_run(tmp_path, make_data, monkeypatch, stop_at=3)
    assert info.value.iteration == 3 and info.value.checkpoint == str(tmp_path / "ck" / "iter_0000003")
    assert info.value.info is not None and info.value.info.latest_iteration == 3
    record = ledger.read_record(str(tmp_path / "ck" / "iter_0000003"))
    assert record is not None and record["identity"]["engine"] == "megatron"
    # a finished run, and a rerun with another lr: the guard reads the megatron checkpoint's record
    result = _megatron_run(tmp_path, make_data, monkeypatch, stop_at=None)
    assert result.finished and result.checkpoints.latest_iteration == 6
    with pytest.raises(ledger.CheckpointMismatch, match=r"optimizer\.lr 0\.0001 → 0\.001"):
        _megatron_run(tmp_path, make_data, monkeypatch, stop_at=None, lr=1e-3)


def test_megatron_exit_interval_is_a_stop_not_a_preemption(
    tmp_path: Path, make_data: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    result = _megatron_run(tmp_path, make_data, monkeypatch, stop_at=4, exit_interval=4)
    assert not result.finished and result.last_iteration == 4


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in state


def _kill_and_expect_gone(tmp_path: Path, launcher: list[str], preamble: str, gone: str) -> None:
    """Start ``launcher`` (torchrun's arguments follow) on a worker script that runs ``preamble``, then
    records its parent's pid and its own and sleeps; SIGKILL the launcher and expect the ``gone``
    process ("parent": what the worker's parent was, "worker": the worker) to die within 10 s."""
    script = tmp_path / "worker.py"
    pids = tmp_path / "pids"
    record = f"open({str(pids)!r}, 'w').write(f'{{os.getppid()}} {{os.getpid()}}')"
    script.write_text(f"import os, time\n{preamble}{record}\ntime.sleep(120)\n")
    argv = [*launcher, "--standalone", "--nproc-per-node=1", str(script)]
    proc = subprocess.Popen(
        argv, env=_env(tmp_path, "k"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    worker = 0
    try:
        deadline = time.monotonic() + 60
        while not (pids.exists() and pids.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)
        parent, worker = map(int, pids.read_text().split())
        watched = parent if gone == "parent" else worker
        assert _alive(watched) and (gone == "parent" or parent == proc.pid)
        proc.kill()
        proc.wait(10)
        deadline = time.monotonic() + 10
        while _alive(watched) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(watched)
    finally:
        if proc.poll() is None:
            proc.kill()
        if worker and _alive(worker):
            os.kill(worker, signal.SIGKILL)  # torchrun's worker: its own session, as in torchrun itself


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc (Linux) to watch torchrun's pid")
def test_a_sigkilled_torchrun_takes_its_sft_train_ranks_with_it(tmp_path: Path) -> None:
    """torch elastic starts each worker in a session of its own (``start_new_session=True`` in
    torch/distributed/elastic/multiprocessing/subprocess_handler/subprocess_handler.py), so a SIGKILLed
    torchrun left its sft-train ranks running, waiting in a collective (seen as orphans of killed test
    pods). sft-train's entry point ties a rank to torchrun (PR_SET_PDEATHSIG)."""
    torchrun = [sys.executable, "-m", "torch.distributed.run"]
    preamble = "from sft_train.cli import die_with_torchrun\ndie_with_torchrun()\n"
    _kill_and_expect_gone(tmp_path, torchrun, preamble, gone="worker")


def test_a_sigkilled_launcher_takes_torchrun_with_it(tmp_path: Path) -> None:
    """The kubelet's SIGKILL at the end of the grace period (and the emulator's node kill) reach the
    launcher's process group only; torchrun, in its own session, dies with it (PR_SET_PDEATHSIG)."""
    _kill_and_expect_gone(tmp_path, [sys.executable, "-m", "sft_train.launch"], "", gone="parent")
