"""Checkpoints of the hf engine: ``{save}/iter_NNNNNNN/`` with its ledger record, plus a ``latest`` pointer.

A checkpoint is complete only once its ledger record (:data:`sft_train.ledger.RECORD`) is in it,
and the record is written last: locally the checkpoint is written to a hidden temp directory
(``.iter_NNNNNNN.tmp-*``), the record added, and the directory renamed into place; on S3 the files
are uploaded first (after clearing what an interrupted upload of the same iteration left) and the
record last. Then ``latest`` is replaced atomically (a pointer for people and older readers). A crash
at any point leaves the previous complete checkpoint in charge; a restarted pod resumes from it
without being told. Leftovers of interrupted saves (temp directories, ``iter_*`` without a record)
are never resumed from and :func:`clean_leftovers` removes the local ones. A checkpoint written
before the ledger existed (no record) counts as complete when ``latest`` names it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sft_common import storage
from sft_train import checkpoint_staging
from sft_train.ledger import RECORD, record

MARKER = "latest"
STATE_FILE = "trainer_state.pt"


iteration_name = checkpoint_staging.iteration_dir
_ITER = checkpoint_staging.ITERATION_DIR


def _legacy_latest(save: str) -> tuple[str, int] | None:
    """The checkpoint ``latest`` names when it has the trainer state (a pre-ledger checkpoint)."""
    marker = storage.join(save, MARKER)
    if not storage.exists(marker):
        return None
    name = storage.read_text(marker).strip()
    match = _ITER.match(name)
    uri = storage.join(save, name)
    if not match or not storage.exists(storage.join(uri, STATE_FILE)):
        return None
    return uri, int(match.group(1))


def complete_checkpoints(save: str | None) -> list[tuple[int, str]]:
    """(iteration, URI) of every complete checkpoint under ``save``, oldest first."""
    if not save:
        return []
    found: dict[int, str] = {}
    for uri in storage.complete_dirs(save, "iter_*"):
        match = _ITER.match(storage.name(uri))
        if match:
            found[int(match.group(1))] = uri
    legacy = _legacy_latest(save)
    if legacy is not None:
        found.setdefault(legacy[1], legacy[0])
    return sorted(found.items())


def newest_checkpoint(save: str | None) -> tuple[str, int] | None:
    """(URI, iteration) of the newest complete checkpoint under ``save``, or None."""
    done = complete_checkpoints(save)
    return (done[-1][1], done[-1][0]) if done else None


def latest_checkpoint(save: str | None) -> str | None:
    """URI of the newest complete checkpoint under ``save``, or None."""
    found = newest_checkpoint(save)
    return found[0] if found else None


def clean_leftovers(save: str | None) -> list[str]:
    """Remove what interrupted local saves left under ``save`` (temp dirs, ``iter_*`` without a record
    that ``latest`` does not name); returns their names. Object stores: nothing is listed from such a
    prefix, and the next save of that iteration clears it (see :func:`save_checkpoint`)."""
    if not save or storage.is_remote(save):
        return []
    root = Path(save.removeprefix("file://"))
    if not root.is_dir():
        return []
    legacy = _legacy_latest(save)
    keep = storage.name(legacy[0]) if legacy else None
    removed = []
    for path in sorted(root.iterdir()):
        leftover = path.name.startswith(".iter_") and ".tmp-" in path.name
        if _ITER.match(path.name) and path.name != keep and not (path / RECORD).is_file():
            leftover = True
        if leftover and path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path.name)
    return removed


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


def save_checkpoint(
    save: str, iteration: int, write: Callable[[Path], None], ledger: dict[str, Any] | None = None
) -> str:
    """Write a checkpoint with ``write(dir)``, its ledger record (``ledger``, default one without an
    identity) last, and publish it atomically; return its URI."""
    name = iteration_name(iteration)
    final_uri = storage.join(save, name)
    text = json.dumps(ledger if ledger is not None else record(iteration, {}), sort_keys=True)
    if storage.is_remote(save):
        storage.delete_tree(final_uri)  # what an interrupted upload of this iteration left
        with tempfile.TemporaryDirectory(prefix="sft-ckpt-") as tmp:
            write(Path(tmp))
            storage.publish_tree(Path(tmp), final_uri, text.encode())  # the record last: complete
    else:
        root = Path(save.removeprefix("file://"))
        root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=root))
        try:
            write(staging)
            (staging / RECORD).write_text(text)
            storage.respect_umask(staging)  # mkdtemp and safetensors make it private; readers need access
            final = root / name
            if final.exists():  # left by a run that crashed between rename and marker
                shutil.rmtree(final)
            os.replace(staging, final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    storage.write_text(storage.join(save, MARKER), name + "\n")
    return final_uri
