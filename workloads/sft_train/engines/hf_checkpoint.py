"""Checkpoints of the hf engine: ``{save}/iter_NNNNNNN/`` plus a ``latest`` marker.

A checkpoint is complete only once the marker names it. Locally it is written to a hidden temp
directory and renamed into place, then the marker is replaced atomically; on S3 the files are
uploaded first and the marker written last. A crash at any point leaves the previous marker, and so
the previous complete checkpoint, in charge; a restarted pod resumes from it without being told.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from sft_common import storage

MARKER = "latest"
STATE_FILE = "trainer_state.pt"


def iteration_name(iteration: int) -> str:
    return f"iter_{iteration:07d}"


def latest_checkpoint(save: str | None) -> str | None:
    """URI of the newest complete checkpoint under ``save``, or None."""
    if not save:
        return None
    marker = storage.join(save, MARKER)
    if not storage.exists(marker):
        return None
    name = storage.read_text(marker).strip()
    uri = storage.join(save, name)
    if not name.startswith("iter_") or not storage.exists(storage.join(uri, STATE_FILE)):
        return None
    return uri


def resolve_resume(load: str | None, save: str | None) -> str | None:
    """Where to resume: an explicit ``load`` (a checkpoint dir or a save location), else ``save``'s newest."""
    from sft_train.errors import CheckpointNotFound

    if load:
        if storage.exists(storage.join(load, STATE_FILE)):
            return load
        found = latest_checkpoint(load)
        if found is None:
            raise CheckpointNotFound(
                f"checkpoint.load {load} holds no complete checkpoint (no '{MARKER}' marker naming an iter_* "
                f"dir with {STATE_FILE}); unset it to start from model.pretrained_checkpoint"
            )
        return found
    return latest_checkpoint(save)


def save_checkpoint(save: str, iteration: int, write: Callable[[Path], None]) -> str:
    """Write a checkpoint with ``write(dir)`` and publish it atomically; return its URI."""
    name = iteration_name(iteration)
    final_uri = storage.join(save, name)
    if storage.is_remote(save):
        with tempfile.TemporaryDirectory(prefix="sft-ckpt-") as tmp:
            write(Path(tmp))
            for path in sorted(Path(tmp).rglob("*")):
                if path.is_file():
                    storage.upload_file(path, storage.join(final_uri, str(path.relative_to(tmp))))
    else:
        root = Path(save.removeprefix("file://"))
        root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=root))
        try:
            write(staging)
            storage.respect_umask(staging)  # mkdtemp and safetensors make it private; readers need access
            final = root / name
            if final.exists():  # left by a run that crashed between rename and marker
                shutil.rmtree(final)
            os.replace(staging, final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    storage.write_text(storage.join(save, MARKER), name + "\n")
    return final_uri
