"""The hf engine end to end in-process: loss normalisation, checkpoints, resume, export, progress."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from trainfixtures import build_tiny_llama, hf_config, upload_tree

from sft_common.config import validate
from sft_train.config import TrainConfig
from sft_train.engines import hf_checkpoint as ckpt
from sft_train.engines import hf_engine
from sft_train.engines.hf_batch import collate, forward_loss
from sft_train.engines.hf_model import load_base_model
from sft_train.engines.outcome import TrainResult
from sft_train.errors import CheckpointNotFound, PackSizeMismatch
from sft_train.packed_data import PackedSplit, inspect_data, sample_order


def train(config: dict[str, Any]) -> TrainResult:
    cfg = validate(TrainConfig, config)
    return hf_engine.train(cfg, inspect_data(cfg.data.path))


def losses(result: TrainResult) -> list[float]:
    return [loss for _, loss in result.losses]


def test_loss_falls(make_data: Callable[..., Path], tiny_model: Path, tmp_path: Path) -> None:
    result = train(hf_config(make_data(), tiny_model, tmp_path / "ck", **{"train.train_iters": 8}))
    curve = losses(result)
    assert len(curve) == 8 and result.finished
    assert curve[-1] < curve[0] - 0.1
    assert result.checkpoint == str(tmp_path / "ck" / "iter_0000008")
    # the reported loss: the mean over the last logging.log_interval (1 here) iterations, 4 decimals
    assert result.final_loss == round(curve[-1], 4)


def test_reported_loss_is_the_mean_over_the_log_interval(
    make_data: Callable[..., Path], tiny_model: Path, tmp_path: Path
) -> None:
    """Issue 11 point 10: one loss. With log_interval 4 the result's loss is the mean of the last 4
    per-iteration losses, rounded, the number the log line printed; a rerun restores it from the
    checkpoint instead of reporting None."""
    config = hf_config(
        make_data(), tiny_model, tmp_path / "ck", **{"train.train_iters": 8, "logging.log_interval": 4}
    )
    result = train(config)
    curve = losses(result)
    assert result.final_loss == round(sum(curve[4:]) / 4, 4)
    again = train(config)
    assert again.losses == [] and again.start_iteration == 8 and again.final_loss == result.final_loss


@pytest.mark.parametrize("per_token", [True, False])
def test_reported_loss_is_the_global_batch_mean(
    make_data: Callable[..., Path], tiny_model: Path, per_token: bool
) -> None:
    """Iteration 1's loss (initial weights) against a by-hand computation over its global batch."""
    data = make_data()
    config = hf_config(
        data, tiny_model, None, **{"train.train_iters": 1, "loss.calculate_per_token_loss": per_token}
    )
    reported = losses(train(config))[0]
    info = inspect_data(str(data))
    # The label after each eos (id 2 for the tiny model) is untrained, as in Megatron-Bridge 0.6.2.
    split = PackedSplit(info.shards["train"], info.pack_size, eos_id=2)
    model = load_base_model(tiny_model, "m")
    sums, counts = [], []
    with torch.no_grad():
        for row in sample_order(len(split), 7, 0, 4):
            total, count = forward_loss(model, collate(split.subsequences(row)))
            sums.append(float(total))
            counts.append(count)
    per_token_mean = sum(sums) / sum(counts)
    per_row_mean = sum(s / c for s, c in zip(sums, counts, strict=True)) / 4
    assert abs(per_token_mean - per_row_mean) > 1e-4  # the two normalisations are distinguishable here
    assert reported == pytest.approx(per_token_mean if per_token else per_row_mean, abs=1e-5)


def test_validation_loss_over_the_valid_split(make_data: Callable[..., Path], tiny_model: Path) -> None:
    """One step at lr 0 (warm-up) leaves the weights alone, so the validation loss is the base model's."""
    data = make_data(valid=12)
    result = train(hf_config(data, tiny_model, None, **{"train.train_iters": 1}))
    info = inspect_data(str(data))
    split = PackedSplit(info.shards["valid"], info.pack_size, eos_id=2)  # the tiny model's eos
    model = load_base_model(tiny_model, "m")
    with torch.no_grad():
        pairs = [forward_loss(model, collate(split.subsequences(r))) for r in range(len(split))]
    expected = sum(float(s) for s, _ in pairs) / sum(c for _, c in pairs)
    assert result.validation_loss == pytest.approx(expected, abs=1e-5)
    no_valid = train(
        hf_config(data, tiny_model, None, **{"train.train_iters": 1, "data.use_validation": False})
    )
    assert no_valid.validation_loss is None


# LoRA with dropout: the resumed run must also draw the same random numbers.
@pytest.mark.parametrize("peft", [None, {"type": "lora", "dim": 4, "alpha": 8, "dropout": 0.1}])
def test_resume_continues_with_identical_losses(
    make_data: Callable[..., Path], tiny_model: Path, tmp_path: Path, peft: dict[str, Any] | None
) -> None:
    data = make_data()
    straight = train(hf_config(data, tiny_model, tmp_path / "a", peft=peft))
    interrupted = hf_config(data, tiny_model, tmp_path / "b", peft=peft, **{"train.exit_interval": 3})
    first = train(interrupted)
    assert not first.finished and first.last_iteration == 3
    assert first.checkpoint == str(tmp_path / "b" / "iter_0000003")
    second = train(interrupted)  # a restarted pod: same config, resumes without being told
    assert second.finished and [i for i, _ in second.losses] == [4, 5, 6]
    assert losses(first) + losses(second) == pytest.approx(losses(straight), abs=1e-6)
    if peft is None:
        assert (tmp_path / "b" / "iter_0000006" / "model" / "config.json").exists()
    else:
        assert (tmp_path / "b" / "iter_0000006" / "adapter" / "adapter_config.json").exists()
        assert not (tmp_path / "b" / "iter_0000006" / "model").exists()


def test_explicit_load_of_a_checkpoint_dir(
    make_data: Callable[..., Path], tiny_model: Path, tmp_path: Path
) -> None:
    data = make_data()
    straight = train(hf_config(data, tiny_model, tmp_path / "a"))
    resumed = train(
        hf_config(
            data, tiny_model, tmp_path / "b", **{"checkpoint.load": str(tmp_path / "a" / "iter_0000003")}
        )
    )
    assert [i for i, _ in resumed.losses] == [4, 5, 6]
    assert losses(resumed) == pytest.approx(losses(straight)[3:], abs=1e-6)


def test_missing_load_location_is_an_error(
    make_data: Callable[..., Path], tiny_model: Path, tmp_path: Path
) -> None:
    config = hf_config(
        make_data(), tiny_model, tmp_path / "s", **{"checkpoint.load": str(tmp_path / "nothing")}
    )
    with pytest.raises(CheckpointNotFound, match=r"checkpoint\.load .*nothing holds no complete checkpoint"):
        train(config)


def test_missing_pretrained_checkpoint(make_data: Callable[..., Path], tmp_path: Path) -> None:
    with pytest.raises(CheckpointNotFound, match=r"model\.pretrained_checkpoint .*absent does not exist"):
        train(hf_config(make_data(), tmp_path / "absent", tmp_path / "s"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointNotFound, match=r"not a Hugging Face checkpoint \(no config\.json\)"):
        train(hf_config(make_data(name="p2"), tmp_path / "empty", tmp_path / "s"))


def test_pack_size_longer_than_the_model_context(make_data: Callable[..., Path], tmp_path: Path) -> None:
    short = build_tiny_llama(tmp_path / "short", max_positions=32)
    with pytest.raises(PackSizeMismatch, match=r"at most 32 positions .* bins of 64 tokens"):
        train(hf_config(make_data(), short, None))


def test_model_seq_length_must_match_pack_size(make_data: Callable[..., Path], tiny_model: Path) -> None:
    with pytest.raises(PackSizeMismatch, match=r"model\.seq_length is 128"):
        train(hf_config(make_data(), tiny_model, None, **{"model.seq_length": 128}))


def test_hf_export_of_a_lora_run_is_a_merged_model(
    make_data: Callable[..., Path], tiny_model: Path, tmp_path: Path
) -> None:
    from transformers import AutoModelForCausalLM

    config = hf_config(
        make_data(),
        tiny_model,
        tmp_path / "ck",
        peft={"dim": 4, "alpha": 8, "target_modules": ["linear_qkv", "linear_fc2"]},
        **{"checkpoint.hf_export": str(tmp_path / "export"), "optimizer.lr": 5e-2},
    )
    result = train(config)
    assert result.hf_export == str(tmp_path / "export")
    exported = AutoModelForCausalLM.from_pretrained(str(tmp_path / "export"))
    base = AutoModelForCausalLM.from_pretrained(str(tiny_model))
    state, base_state = exported.state_dict(), base.state_dict()
    assert not any("lora" in key for key in state)
    changed = {k for k in state if not torch.equal(state[k], base_state[k])}
    assert changed and all(
        k.endswith(("q_proj.weight", "k_proj.weight", "v_proj.weight", "down_proj.weight")) for k in changed
    )


def test_a_failed_save_leaves_the_previous_checkpoint_in_charge(tmp_path: Path) -> None:
    def good(directory: Path) -> None:
        (directory / ckpt.STATE_FILE).write_text("ok")

    def broken(directory: Path) -> None:
        (directory / ckpt.STATE_FILE).write_text("half")
        raise OSError("disk full")

    assert ckpt.save_checkpoint(str(tmp_path), 3, good) == str(tmp_path / "iter_0000003")
    with pytest.raises(OSError, match="disk full"):
        ckpt.save_checkpoint(str(tmp_path), 6, broken)
    assert ckpt.latest_checkpoint(str(tmp_path)) == str(tmp_path / "iter_0000003")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["iter_0000003", "latest"]


def test_a_checkpoint_without_the_marker_is_ignored(tmp_path: Path) -> None:
    ckpt.save_checkpoint(str(tmp_path), 3, lambda d: (d / ckpt.STATE_FILE).write_text("ok"))
    (tmp_path / "iter_0000009").mkdir()  # renamed but the marker never updated (crash)
    (tmp_path / "iter_0000009" / ckpt.STATE_FILE).write_text("ok")
    assert ckpt.latest_checkpoint(str(tmp_path)) == str(tmp_path / "iter_0000003")
    assert ckpt.resolve_resume(None, str(tmp_path)) == str(tmp_path / "iter_0000003")
    assert ckpt.latest_checkpoint(str(tmp_path / "empty")) is None


def test_progress_json_lines(
    make_data: Callable[..., Path],
    tiny_model: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("SFT_PROGRESS", "json")
    monkeypatch.setenv("SFT_PROGRESS_LOG_INTERVAL", "0")
    train(hf_config(make_data(), tiny_model, None, **{"train.train_iters": 3}))
    records = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    done = [r for r in records if r["event"] == "progress_done"][-1]
    assert done["completed"] == done["total"] == 3
    assert {"loss", "learningRate", "tokens", "tokensPerSecond", "etaSeconds"} <= set(done)
    assert [r["completed"] for r in records if r["event"] == "progress"][-3:] == [1, 2, 3]


class _Recorder(BaseHTTPRequestHandler):
    patches: ClassVar[list[dict[str, Any]]] = []

    def do_PATCH(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).patches.append({"path": self.path, "body": json.loads(body)})
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def api_server() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    patches: list[dict[str, Any]] = []
    handler = type("Recorder", (_Recorder,), {"patches": patches})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", patches
    server.shutdown()


def test_rank_zero_patches_the_owner_status(
    make_data: Callable[..., Path],
    tiny_model: Path,
    monkeypatch: pytest.MonkeyPatch,
    api_server: tuple[str, list[dict[str, Any]]],
) -> None:
    url, patches = api_server
    for key, value in {
        "SFT_OWNER_API": url,
        "SFT_OWNER_NAMESPACE": "ns",
        "SFT_OWNER_NAME": "run1",
        "SFT_OWNER_PLURAL": "sftruns",
        "SFT_PROGRESS_INTERVAL": "0.05",
    }.items():
        monkeypatch.setenv(key, value)
    train(hf_config(make_data(), tiny_model, None, **{"train.train_iters": 3}))
    assert patches, "no status patch reached the API server"
    assert {p["path"] for p in patches} == {"/apis/sft.dev/v1alpha1/namespaces/ns/sftruns/run1/status"}
    final = patches[-1]["body"]["status"]["progress"]
    assert final["completed"] == 3 and final["total"] == 3
    assert {"loss", "learningRate", "tokensPerSecond"} <= set(final)


def test_everything_on_s3(make_data: Callable[..., Path], tiny_model: Path, tmp_path: Path, s3: str) -> None:
    """Data, base model, checkpoints and export on an object store; a restart resumes from S3."""
    from sft_common import storage

    data, model = upload_tree(make_data(), f"{s3}/prep"), upload_tree(tiny_model, f"{s3}/base")
    local = train(hf_config(make_data(name="p2"), tiny_model, tmp_path / "local"))
    config = hf_config(
        data, model, f"{s3}/ckpt", **{"train.exit_interval": 3, "checkpoint.hf_export": f"{s3}/hf"}
    )
    first, second = train(config), train(config)
    assert (first.last_iteration, second.last_iteration) == (3, 6)
    assert losses(first) + losses(second) == pytest.approx(losses(local), abs=1e-6)
    assert storage.read_text(f"{s3}/ckpt/latest").strip() == "iter_0000006"
    assert storage.exists(f"{s3}/ckpt/iter_0000003/trainer_state.pt")
    assert storage.exists(f"{s3}/hf/config.json") and second.hf_export == f"{s3}/hf"


def test_bf16_mixed_precision_trains(make_data: Callable[..., Path], tiny_model: Path) -> None:
    """The recipe's bf16 (autocast over float32 master weights) gives losses close to fp32."""
    data = make_data()
    bf16 = losses(train(hf_config(data, tiny_model, None, precision="bf16", **{"train.train_iters": 4})))
    fp32 = losses(train(hf_config(data, tiny_model, None, **{"train.train_iters": 4})))
    assert bf16 != fp32
    assert bf16 == pytest.approx(fp32, abs=0.05)
