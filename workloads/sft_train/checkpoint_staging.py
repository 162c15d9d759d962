"""Checkpoints on object stores for the megatron engine: staged on node-local disk around Megatron-Bridge.

Megatron-Bridge reads and writes checkpoints on a file system (local, a shared mount, or msc://); the
samples keep the pretrained checkpoint and the saves in ``s3://``. So, when a location is remote:

* **before training** the pretrained checkpoint (``model.pretrained_checkpoint``) is mirrored into a
  node-local cache, and so is the newest complete checkpoint of ``checkpoint.save`` (or
  ``checkpoint.load``) when the run resumes: only that iteration's directory and the tracker files,
  not every iteration. Downloads are resumable (a file already there with the object's size is kept;
  each file arrives under a temp name and is renamed) and a finished mirror is marked by
  ``.sft-staged.json`` (the listing it mirrors), written last, so a restarted pod reuses it;
* Megatron-Bridge then gets the local paths: it saves into a node-local staging directory;
* **after each save** (Megatron-Bridge's ``on_checkpoint_save`` callback, which fires on every rank
  after the save and its closing barrier) local rank 0 of every node uploads that iteration's files
  from its node, all ranks meet at a barrier, and global rank 0 writes the iteration's complete
  marker (``iter_N/sft-checkpoint.json``, :func:`complete_iterations` lists only iterations with it) and
  then the tracker files (``latest_train_state.pt``, ``latest_checkpointed_iteration.txt``) last.
  Every object PUT is
  atomic, and the remote checkpoint is complete exactly when its tracker names the iteration, which
  happens only after all of the iteration's files are there (the rule
  :func:`sft_train.engines.megatron_plan.complete_checkpoint` reads). A pod killed mid-upload leaves
  the tracker on the previous iteration, so the restarted run resumes from that one; when it saves
  the same iteration again, the remote directory of that iteration is cleared first, so no object of
  the interrupted attempt survives into the new one.

Local paths (a PVC mount, ``file://``) are used as they are: nothing is copied.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sft_common import storage
from sft_train.config import TrainConfig

TRACKER_TXT = "latest_checkpointed_iteration.txt"
TRACKER_STATE = "latest_train_state.pt"
MARKER = ".sft-staged.json"
ITERATION_DIR = re.compile(r"^iter_(\d{7})$")
"""A checkpoint iteration's directory name (:func:`iteration_dir`); group 1 is the iteration."""


def staging_root() -> Path:
    """Node-local space: ``$SFT_SCRATCH/checkpoints`` (or the temp dir)."""
    base = os.environ.get("SFT_SCRATCH") or os.path.join(tempfile.gettempdir(), "sft-train")
    return Path(base) / "checkpoints"


def local_dir(uri: str, kind: str) -> Path:
    """Where ``uri`` is staged on this node (stable across restarts, distinct per URI)."""
    digest = hashlib.sha256(uri.encode()).hexdigest()[:16]
    return staging_root() / kind / f"{storage.name(uri) or 'root'}-{digest}"


def iteration_dir(iteration: int) -> str:
    return f"iter_{iteration:07d}"


def latest_iteration(uri: str) -> int | None:
    """The iteration a checkpoint location's tracker names, or None when it holds no complete one.

    ``latest_checkpointed_iteration.txt`` is read first (it is uploaded last, see :meth:`upload`);
    with only Megatron-Bridge's ``latest_train_state.pt`` (a torch pickle, which Megatron-Bridge writes
    as a byte copy of ``iter_N/train_state.pt``), the iteration is the one whose train state it equals."""
    tracker = storage.join(uri, TRACKER_TXT)
    if storage.exists(tracker):
        text = storage.read_text(tracker).strip()
        if text.isdigit():
            return int(text)
    state = storage.join(uri, TRACKER_STATE)
    if not storage.exists(state):
        return None
    wanted = storage.read_bytes(state)
    found = {
        int(m.group(1)) for rel in storage.list_sizes(uri) if (m := ITERATION_DIR.match(rel.split("/")[0]))
    }
    for iteration in sorted(found, reverse=True):
        candidate = storage.join(uri, iteration_dir(iteration), "train_state.pt")
        if storage.exists(candidate) and storage.read_bytes(candidate) == wanted:
            return iteration
    return None


def mirror(uri: str, dest: Path, only: Callable[[str], bool] = lambda rel: True) -> Path:
    """Make ``dest`` hold the files below ``uri`` (those ``only`` keeps); resumable, marked when done."""
    listing = {rel: size for rel, size in storage.list_sizes(uri).items() if only(rel)}
    if not listing:
        raise storage.StorageError(f"{uri}: no checkpoint files below this location")
    marker = dest / MARKER
    if marker.is_file() and json.loads(marker.read_text()) == {"source": uri, "files": listing}:
        return dest
    for rel, size in listing.items():
        target = dest / rel
        if target.is_file() and target.stat().st_size == size:
            continue  # finished by an earlier, interrupted attempt (files arrive whole, by rename)
        storage.download_file(storage.join(uri, rel), target)
    marker.write_text(json.dumps({"source": uri, "files": listing}, sort_keys=True))
    return dest


def mirror_iteration(uri: str, dest: Path, iteration: int | None) -> Path:
    """Make ``dest`` hold one iteration of a checkpoint location (its directory and the trackers) and
    nothing else: files of other iterations and stale trackers of an earlier attempt on this node are
    removed first (the remote tracker is the truth), so Megatron-Bridge resumes from what is uploaded."""
    keep = f"{iteration_dir(iteration)}/" if iteration is not None else None
    if dest.is_dir():
        for path in sorted(dest.rglob("*"), reverse=True):
            rel = path.relative_to(dest).as_posix()
            if path.is_file() and not (keep and rel.startswith(keep)):
                path.unlink()
            elif path.is_dir() and not any(path.iterdir()):
                path.rmdir()
    dest.mkdir(parents=True, exist_ok=True)
    if keep is None:
        return dest
    mirror(uri, dest, lambda rel: rel.startswith(keep))
    # The trackers are written here from the iteration chosen, not downloaded: a pod killed between
    # the two tracker uploads must not leave one naming an iteration that was not staged.
    state = dest / keep / "train_state.pt"
    if state.is_file():
        shutil.copyfile(state, dest / TRACKER_STATE)
    (dest / TRACKER_TXT).write_text(str(iteration))
    return dest


def complete_iterations(uri: str) -> list[int]:
    """The iterations of a remote checkpoint location whose upload finished: their directory holds the
    complete marker (written after every node's files), or the tracker names them (uploads made before
    the marker existed). A directory a cut upload left is not listed."""
    found = {
        int(m.group(1))
        for d in storage.complete_dirs(uri, "iter_*")
        if (m := ITERATION_DIR.match(storage.name(d)))
    }
    latest = latest_iteration(uri)
    if latest is not None:
        found.add(latest)
    return sorted(found)


def on_local_rank_zero(work: Callable[[], Path], done: Path, poll_s: float = 2.0) -> Path:
    """Do ``work`` on local rank 0 of this node; the other local ranks wait for its ``done`` file.

    (Megatron-Bridge touches the files only after the process group is up, which needs every rank,
    local rank 0 included, so the wait is for clarity of the log rather than for correctness.)"""
    if int(os.environ.get("LOCAL_RANK", "0")) == 0:
        return work()
    while not done.is_file():
        time.sleep(poll_s)
    return done.parent


@dataclass
class StagedCheckpoints:
    """The config Megatron-Bridge gets (local paths) and how its saves reach the remote location."""

    config: TrainConfig
    remote_save: str | None = None
    """checkpoint.save as the user gave it, when it is remote (saves are uploaded there)."""
    local_save: Path | None = None
    """The node-local directory Megatron-Bridge saves into instead."""
    staged: dict[str, str] = field(default_factory=dict)
    """Remote URI → the local path it was staged at (for the log)."""

    def checkpoint_uri(self, iteration: int) -> str:
        """Where a saved iteration finally lives (the remote location when saves are uploaded)."""
        base = self.remote_save or str(self.config.checkpoint.save)
        return storage.join(base, iteration_dir(iteration)) if iteration else base

    def upload(self, iteration: int, rank: int, local_rank: int, barrier: Callable[[], None]) -> None:
        """After Megatron-Bridge saved ``iteration`` (every rank calls this, in step)."""
        if self.remote_save is None or self.local_save is None:
            return
        remote_iter = storage.join(self.remote_save, iteration_dir(iteration))
        already = latest_iteration(self.remote_save) == iteration
        if rank == 0 and not already:
            storage.delete_tree(remote_iter)  # leftovers of an interrupted upload of this iteration
        barrier()
        if local_rank == 0 and not already:
            storage.upload_tree(self.local_save / iteration_dir(iteration), remote_iter)
        barrier()
        if local_rank == 0:  # uploaded: older iterations need no node-local disk any more
            for old in self.local_save.glob("iter_*"):
                if old.name != iteration_dir(iteration) and old.is_dir():
                    shutil.rmtree(old, ignore_errors=True)
        if rank == 0 and not already:
            # every node's files are there (the barrier above): the iteration's complete marker (its
            # ledger record when the run wrote one into the saved directory), then the trackers
            marker = self.local_save / iteration_dir(iteration) / storage.COMPLETE
            body = marker.read_bytes() if marker.is_file() else json.dumps({"iteration": iteration}).encode()
            storage.write_bytes(storage.join(remote_iter, storage.COMPLETE), body)
            for tracker in (TRACKER_STATE, TRACKER_TXT):  # the text tracker, read first, goes last
                path = self.local_save / tracker
                if path.is_file():
                    storage.upload_file(path, storage.join(self.remote_save, tracker))
        barrier()

    def callback(self, base: type, barrier: Callable[[], None]) -> Any:
        """A Megatron-Bridge ``Callback`` (``base``) that uploads after every save."""
        staged = self

        class _Upload(base):
            def on_checkpoint_save(self, context: Any) -> None:
                iteration = int(context.state.train_state.step)
                staged.upload(
                    iteration,
                    int(os.environ.get("RANK", "0")),
                    int(os.environ.get("LOCAL_RANK", "0")),
                    barrier,
                )

        return _Upload()


def stage(config: TrainConfig) -> StagedCheckpoints:
    """Stage every remote checkpoint location of ``config``; returns the config with local paths."""
    dumped = config.model_dump()
    ck, out = config.checkpoint, StagedCheckpoints(config)
    pretrained = config.model.pretrained_checkpoint
    if pretrained and storage.is_remote(pretrained):
        dest = local_dir(pretrained, "pretrained")
        on_local_rank_zero(lambda: mirror(pretrained, dest), dest / MARKER)
        dumped["model"]["pretrained_checkpoint"] = str(dest)
        out.staged[pretrained] = str(dest)
    if ck.load and storage.is_remote(ck.load):
        load = ck.load  # a str here, also inside the lambda
        iteration = latest_iteration(load)
        if iteration is not None:  # else megatron_plan.resume_location reports it on the remote URI
            dest = local_dir(load, "load")
            on_local_rank_zero(lambda: mirror_iteration(load, dest, iteration), dest / MARKER)
            dumped["checkpoint"]["load"] = str(dest)
            out.staged[ck.load] = str(dest)
    if ck.save and storage.is_remote(ck.save):
        save = ck.save  # a str here, also inside the lambda
        dest = local_dir(save, "save")
        # resume from the newest complete remote save (unless checkpoint.load names another)
        iteration = latest_iteration(save) if not ck.load else None
        if iteration is not None:
            on_local_rank_zero(lambda: mirror_iteration(save, dest, iteration), dest / MARKER)
            out.staged[ck.save] = str(dest)
        elif int(os.environ.get("LOCAL_RANK", "0")) == 0:
            mirror_iteration(save, dest, None)  # nothing to resume: an empty staging directory
        dest.mkdir(parents=True, exist_ok=True)
        dumped["checkpoint"]["save"] = str(dest)
        out.remote_save, out.local_save = save, dest
    out.config = TrainConfig.model_validate(dumped)
    return out
