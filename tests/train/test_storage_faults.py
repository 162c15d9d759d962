"""Storage faults as a cluster makes them, named right: a full disk during a checkpoint save (a real,
small tmpfs) and an S3 endpoint that stops answering in the middle of an upload (moto's server behind a
TCP proxy that really cuts the connections and refuses new ones)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from trainfixtures import hf_config, pack, random_conversation, write_config, write_prep_output

from s3server import S3Server
from sft_common import storage
from sft_train import checkpoint_staging as staging
from sft_train.cli import main
from sft_train.engines import hf_checkpoint
from tcp_proxy import TcpProxy


def termination() -> dict[str, Any]:
    return json.loads(Path(os.environ["SFT_TERMINATION_LOG"]).read_text())


def _data(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    return write_prep_output(tmp_path / "prep", pack([random_conversation(rng) for _ in range(40)]))


# --------------------------------------------------------------------------- a full disk


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Any]:
    """``mount(size)`` → a fresh tmpfs of ``size`` bytes (root may mount one; skipped where it cannot)."""
    mounts: list[Path] = []

    def mount(size: int) -> Path:
        point = tmp_path / f"tmpfs{len(mounts)}"
        point.mkdir()
        command = ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN): {done.stderr.strip()}")
        mounts.append(point)
        return point

    yield mount
    for point in mounts:
        subprocess.run(["umount", "-l", str(point)], check=False)


@pytest.mark.parametrize(
    ("size", "fails_in"),
    [
        (48 * 1024, "the weights (safetensors)"),
        # the weights (~90 KB) fit, the optimizer state (~190 KB) does not: torch.save's stream writer
        # fails with "[enforce fail at inline_container.cc:…] . unexpected pos …" (before the fix, the
        # run's last word, with a traceback and reason RuntimeError)
        (160 * 1024, "the optimizer state (torch.save)"),
    ],
)
def test_a_full_disk_during_a_checkpoint_save_is_no_space_naming_the_path(
    tmp_path: Path,
    tiny_model: Path,
    small_tmpfs: Any,
    capsys: pytest.CaptureFixture[str],
    size: int,
    fails_in: str,
) -> None:
    volume = small_tmpfs(size)
    save = volume / "ck"
    config = hf_config(_data(tmp_path), tiny_model, save, **{"train.train_iters": 2})
    code = main(["--config", str(write_config(tmp_path / "run.yaml", config)), "checkpoint.save_interval=2"])
    err = capsys.readouterr().err
    assert code == 1, f"{fails_in}: {err}"  # retryable: the run resumes once there is room
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and f"no space left writing {volume}" in lines[0], err
    assert "free of" in lines[0] and "free space on that volume" in lines[0]
    message = termination()
    assert message["reason"] == "NoSpace" and message["path"].startswith(str(volume))
    # nothing half-written is left as a checkpoint
    assert hf_checkpoint.latest_checkpoint(str(save)) is None
    assert not list(save.glob("iter_*")) and not (save / hf_checkpoint.MARKER).exists()


def test_storage_writes_on_a_full_disk_raise_no_space(small_tmpfs: Any) -> None:
    volume = small_tmpfs(16 * 1024)
    target = volume / "metadata.json"
    with pytest.raises(storage.NoSpace) as info:
        storage.write_bytes(str(target), b"x" * 64 * 1024)
    assert info.value.path == str(target) and info.value.reason == "NoSpace"
    assert not target.exists() and not list(volume.iterdir()), "the temp file is removed"


# --------------------------------------------------------------------------- an S3 endpoint lost


@pytest.fixture
def proxied_s3(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[TcpProxy]:
    """The suite's moto server reached through a proxy; boto gives up after 3 attempts (its standard
    retry mode, with backoff) so a lost endpoint is reported in seconds."""
    host, _, port = s3_server.endpoint.removeprefix("http://").partition(":")
    with TcpProxy(host, int(port)) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "3")
        storage.reset_clients()
        storage._s3_client().create_bucket(Bucket="bkt")
        yield proxy
        storage.reset_clients()


def test_first_contact_with_a_dead_endpoint_stays_a_config_error(
    s3_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    with TcpProxy("127.0.0.1", 9) as proxy:
        proxy.down()  # nothing listens: the endpoint never answered this process
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
        storage.reset_clients()
        with pytest.raises(storage.StorageAccessError, match="cannot reach the S3 endpoint"):
            storage.exists("s3://bkt/anything")


def test_an_endpoint_lost_after_it_answered_is_storage_unavailable(proxied_s3: TcpProxy) -> None:
    storage.write_text("s3://bkt/a.txt", "a")
    proxied_s3.down()
    with pytest.raises(storage.StorageUnavailable) as info:
        storage.write_text("s3://bkt/b.txt", "b")
    assert info.value.path == "s3://bkt/b.txt" and "answered earlier but failed now" in str(info.value)
    assert not isinstance(info.value, storage.StorageAccessError)  # never a config error (exit 2)


def test_reads_and_listings_after_the_endpoint_went_away(proxied_s3: TcpProxy) -> None:
    storage.write_text("s3://bkt/p/a.txt", "a")
    proxied_s3.down()
    for call in (
        lambda: storage.read_text("s3://bkt/p/a.txt"),
        lambda: storage.exists("s3://bkt/p/a.txt"),
        lambda: storage.listdir("s3://bkt/p"),
    ):
        with pytest.raises(storage.StorageUnavailable):
            call()


def test_a_connection_cut_once_is_retried(proxied_s3: TcpProxy) -> None:
    """The proxy cuts every open connection in the middle of an upload but keeps listening: boto's
    retry sends the object again and the upload succeeds."""
    body = os.urandom(4 * 2**20)
    proxied_s3.cut_after(len(body) // 2)  # once, mid-body
    storage.write_bytes("s3://bkt/big.bin", body)
    assert proxied_s3.cuts == 1
    assert storage.read_bytes("s3://bkt/big.bin") == body


def test_sft_train_loses_s3_mid_checkpoint_upload(
    tmp_path: Path, tiny_model: Path, proxied_s3: TcpProxy, capsys: pytest.CaptureFixture[str]
) -> None:
    """Checkpoints on S3; the endpoint goes away for good half-way through the upload of the second
    save. Before the fix: InvalidConfig, exit 2, never retried. Now: exit 1 (retryable), reason
    StorageUnavailable, and the half-uploaded iteration is neither the resume point nor listed."""
    save = "s3://bkt/run/ck"
    config = hf_config(_data(tmp_path), tiny_model, save, **{"train.train_iters": 4})
    path = write_config(tmp_path / "run.yaml", config)
    # measure: the bytes one save sends (a first run to iteration 2 on another prefix)
    before = proxied_s3.bytes_up
    assert main(["--config", str(path), "checkpoint.save_interval=2", "train.train_iters=2"]) == 0
    one_save = proxied_s3.bytes_up - before
    capsys.readouterr()
    storage.delete_tree(save)
    # the real run: the first save goes through, the second is cut in its middle, then no endpoint
    proxied_s3.down_after(proxied_s3.bytes_up + one_save + one_save // 2)
    code = main(["--config", str(path), "checkpoint.save_interval=2"])
    err = capsys.readouterr().err
    assert code == 1, err
    assert "Traceback" not in err
    message = termination()
    assert message["reason"] == "StorageUnavailable" and message["path"].startswith(f"{save}/iter_0000004")
    proxied_s3.up()
    assert hf_checkpoint.latest_checkpoint(save) == f"{save}/iter_0000002"
    names = {rel.split("/")[0] for rel in storage.list_sizes(save)}
    assert "iter_0000004" in names, "the cut upload did leave objects (the fault really happened)"
    assert f"{save}/iter_0000004" not in storage.complete_dirs(save, "iter_*")


def test_megatron_staging_upload_cut_is_never_listed(
    tmp_path: Path, proxied_s3: TcpProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node uploads a Megatron-Bridge save of iteration 20 when the endpoint goes away for good: exit 1
    material (StorageUnavailable), iteration 10 stays the newest complete one and the only one listed."""
    from sft_common.config import validate
    from sft_train.config import TrainConfig

    monkeypatch.setenv("SFT_SCRATCH", str(tmp_path / "node"))
    save = "s3://bkt/mb/ck"
    cfg = validate(TrainConfig, {"data": {"path": "/d"}, "checkpoint": {"save": save}})
    staged = staging.stage(cfg)
    assert staged.local_save is not None
    for iteration in (10, 20):
        it = staged.local_save / staging.iteration_dir(iteration)
        it.mkdir(parents=True)
        (it / ".metadata").write_bytes(b"meta")
        for rank in range(4):
            (it / f"__{rank}_0.distcp").write_bytes(os.urandom(512 * 1024))
        (it / "train_state.pt").write_bytes(b"state %d" % iteration)
        (it / storage.COMPLETE).write_text(json.dumps({"iteration": iteration, "identity": {"run": "a"}}))
        (staged.local_save / staging.TRACKER_STATE).write_bytes(b"state %d" % iteration)
        (staged.local_save / staging.TRACKER_TXT).write_text(str(iteration))
        if iteration == 20:
            proxied_s3.down_after(proxied_s3.bytes_up + 3 * 512 * 1024)
            with pytest.raises(storage.StorageUnavailable):
                staged.upload(iteration, rank=0, local_rank=0, barrier=lambda: None)
        else:
            staged.upload(iteration, rank=0, local_rank=0, barrier=lambda: None)
    proxied_s3.up()
    assert len(storage.list_sizes(f"{save}/iter_0000020")) >= 2, "the cut upload left objects"
    assert staging.latest_iteration(save) == 10
    assert staging.complete_iterations(save) == [10]
    assert storage.complete_dirs(save) == [f"{save}/iter_0000010"]
    # the marker is the record the run wrote into the saved directory, uploaded last, not before
    record = json.loads(storage.read_text(f"{save}/iter_0000010/{storage.COMPLETE}"))
    assert record == {"iteration": 10, "identity": {"run": "a"}}
    assert not storage.exists(f"{save}/iter_0000020/{storage.COMPLETE}")
