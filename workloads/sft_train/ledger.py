"""The checkpoint ledger: which run wrote a checkpoint, and the drift guard that reads it.

Every checkpoint directory ``{save}/iter_NNNNNNN/`` gets a :data:`RECORD` file (``sft-checkpoint.json``)
holding the iteration, the time and the run's :func:`identity`: the data fingerprint (sft-prep's
``metadata.json``), the base model, the tokenizer and every training key that changes the math
(batch sizes, seed, parallelism, PEFT, optimizer and learning-rate schedule, sequence length,
precision). ``train.train_iters`` is not part of it: a run may be continued with more iterations.

On the hf engine the record is the checkpoint's *complete marker*: it is written last, inside the
staging directory that is then renamed into place (or uploaded last on S3), so a directory without it
is the leftover of an interrupted save and is never resumed from or listed. On the megatron engine
Megatron-Bridge's own tracker marks completeness; the record is added after each save (a checkpoint
written before this ledger existed, or by a save killed in between, has none: it is resumed with a
warning, unchecked).

Before the first iteration, :func:`resolve` compares the run with the newest checkpoint in
``checkpoint.save`` according to ``checkpoint.resume``: ``auto`` refuses a different identity
(:class:`CheckpointMismatch`, exit 2, one sentence naming each key old → new), ``force`` resumes anyway,
``never`` trains in the sub-location ``{save}/runs/<identity id>`` instead (deterministic, so a
preempted pod of that same run resumes there).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sft_common import storage
from sft_common.progress import Progress, utcnow_iso
from sft_common.result import CheckpointInfo
from sft_train.config import TrainConfig
from sft_train.errors import CheckpointMismatch
from sft_train.packed_data import DataInfo, data_tokenizer

RECORD = storage.COMPLETE
"""The per-checkpoint ledger record; it is also the checkpoint's complete marker (written last), so
the name is :data:`sft_common.storage.COMPLETE`, the one the storage listings look for."""
RUNS_DIR = "runs"
"""Where ``checkpoint.resume: never`` puts a run's checkpoints: ``{save}/runs/<identity id>``."""


def data_fingerprint(info: DataInfo) -> str:
    """sft-prep's ``config_hash`` (what changes the bytes of the packed data), else a digest of the
    whole metadata.json (data written by another tool)."""
    meta = info.metadata or {}
    value = meta.get("config_hash")
    if isinstance(value, str) and value:
        return value
    return hashlib.sha256(json.dumps(meta, sort_keys=True, default=str).encode()).hexdigest()[:16]


def identity(config: TrainConfig, info: DataInfo) -> dict[str, Any]:
    """The run's identity: flat dotted keys (the config's own names) → JSON values."""
    par, opt, sched = config.parallelism, config.optimizer, config.scheduler
    peft = config.peft
    return {
        "engine": config.engine,
        "data.fingerprint": data_fingerprint(info),
        "data.tokenizer": data_tokenizer(info.metadata)[0],
        "model.pretrained_checkpoint": config.model.pretrained_checkpoint,
        "model.recipe": config.model.recipe if config.engine == "megatron" else None,
        "model.seq_length": info.pack_size,
        "train.global_batch_size": config.train.global_batch_size,
        "train.micro_batch_size": config.train.micro_batch_size,
        "train.seed": config.train.seed,
        "parallelism.tensor_parallel_size": par.tensor_parallel_size,
        "parallelism.pipeline_parallel_size": par.pipeline_parallel_size,
        "parallelism.expert_parallel_size": par.expert_parallel_size,
        "parallelism.expert_tensor_parallel_size": par.expert_tensor_parallel_size,
        "parallelism.context_parallel_size": par.context_parallel_size,
        "parallelism.sequence_parallel": par.sequence_parallel,
        "peft": peft.type if peft is not None else None,
        "peft.dim": peft.dim if peft is not None else None,
        "peft.alpha": peft.alpha if peft is not None else None,
        "peft.dropout": peft.dropout if peft is not None else None,
        "peft.target_modules": list(peft.target_modules) if peft is not None else None,
        "optimizer.lr": config.lr,
        "optimizer.min_lr": opt.min_lr,
        "optimizer.adam_beta1": opt.adam_beta1,
        "optimizer.adam_beta2": opt.adam_beta2,
        "optimizer.adam_eps": opt.adam_eps,
        "optimizer.weight_decay": opt.weight_decay,
        "optimizer.clip_grad": opt.clip_grad,
        "scheduler.lr_warmup_iters": sched.lr_warmup_iters,
        "scheduler.lr_decay_style": sched.lr_decay_style,
        # the configured value: unset follows train_iters, which a continued run may grow
        "scheduler.lr_decay_iters": sched.lr_decay_iters,
        "loss.calculate_per_token_loss": config.loss.calculate_per_token_loss,
        "loss.mtp_loss_scaling_factor": config.loss.mtp_loss_scaling_factor,
        "precision": config.precision,
    }


def identity_id(ident: dict[str, Any]) -> str:
    """A short stable digest of an identity (the ``never`` sub-location's name)."""
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _show(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, list):
        return "[" + ",".join(str(v) for v in value) + "]"
    return str(value)


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``key old → new`` for each key whose value differs (a key only one side knows counts as unset)."""
    keys = list(new) + [k for k in old if k not in new]
    return [f"{k} {_show(old.get(k))} → {_show(new.get(k))}" for k in keys if old.get(k) != new.get(k)]


def record(iteration: int, ident: dict[str, Any]) -> dict[str, Any]:
    """The ledger record of a checkpoint at ``iteration`` (written when the checkpoint is complete)."""
    return {
        "iteration": iteration,
        "time": utcnow_iso(),
        "identity": ident,
        "identityId": identity_id(ident),
    }


def read_record(checkpoint_uri: str) -> dict[str, Any] | None:
    """The ledger record of a checkpoint directory, or None (none written, or unreadable)."""
    return storage.read_json_object(storage.join(checkpoint_uri, RECORD))


def checkpoint_info(
    uri: str | None, iteration: int | None, resumed_from: int | None, rec: dict[str, Any] | None = None
) -> CheckpointInfo:
    """What ``status.progress.checkpoint`` and the result's ``checkpoints`` say about a checkpoint; its
    time from ``rec``, the record the caller just wrote, else read from the checkpoint."""
    if rec is None and uri and iteration:
        rec = read_record(uri)
    return CheckpointInfo(
        latest_iteration=iteration or None,
        uri=uri if iteration else None,
        time=str(rec["time"]) if rec and rec.get("time") else None,
        resumed_from=resumed_from or None,
    )


def with_save(config: TrainConfig, save: str | None) -> TrainConfig:
    """``config`` saving to ``save``; the Hugging Face export stays where the user's config puts it."""
    export = config.hf_export_location
    checkpoint = config.checkpoint.model_copy(
        update={"save": save, "hf_export": export, "hf_export_enabled": export is not None}
    )
    return config.model_copy(update={"checkpoint": checkpoint})


def report_checkpoint(progress: Progress, info: CheckpointInfo) -> None:
    """``status.progress.checkpoint`` on each save, sent now (not at the next rate-limited patch)."""
    progress.update(checkpoint=info.model_dump(mode="json", by_alias=True, exclude_none=True))
    if progress.owner is not None:
        progress.owner.submit(progress.snapshot(), force=True)


Newest = Callable[[str], "tuple[str, int] | None"]
"""``newest(save)``: (URI, iteration) of the newest complete checkpoint under a save location (each
engine knows its own layout), or None."""


@dataclass(frozen=True)
class Resolution:
    """Where this run saves and what it resumes, after the drift guard."""

    save: str | None
    """checkpoint.save, or the ``never`` sub-location."""
    identity: dict[str, Any]
    note: str | None = None
    """A line for the log (a forced resume, the sub-location ``never`` chose)."""
    newest: tuple[str, int] | None = None
    """(URI, iteration) of the newest complete checkpoint in :attr:`save`, the one to resume (None: a
    fresh start, or an explicit ``checkpoint.load`` names what to start from)."""


def resolve(config: TrainConfig, info: DataInfo, newest: Newest) -> Resolution:
    """Apply ``checkpoint.resume``; the location is listed once, here (:attr:`Resolution.newest`).

    An explicit ``checkpoint.load`` names the checkpoint to start from on purpose (another run's, to
    continue it on new data); the guard covers the implicit resume from ``checkpoint.save``."""
    ident = identity(config, info)
    save = config.checkpoint.save
    if not save:
        return Resolution(None, ident)
    mode = config.checkpoint.resume
    if mode == "never":
        sub = storage.join(save, RUNS_DIR, identity_id(ident))
        note = f"checkpoint.resume never: this run's checkpoints go to {sub} (a new sub-location)"
        return Resolution(sub, ident, note, None if config.checkpoint.load else newest(sub))
    if config.checkpoint.load:
        return Resolution(save, ident)
    found = newest(save)
    if found is None:
        return Resolution(save, ident)
    uri, iteration = found
    rec = read_record(uri)
    if rec is None or not isinstance(rec.get("identity"), dict) or not rec["identity"]:
        return Resolution(
            save,
            ident,
            f"warning: checkpoint {uri} has no {RECORD} (written before the ledger); resuming it unchecked",
            found,
        )
    diffs = differences(rec["identity"], ident)
    if not diffs:
        return Resolution(save, ident, None, found)
    said = "; ".join(diffs)
    if mode == "force":
        return Resolution(
            save, ident, f"warning: checkpoint.resume force: resuming {uri} of another run ({said})", found
        )
    raise CheckpointMismatch(
        f"checkpoint.save {save} holds iteration {iteration} of another run ({said}); use a new "
        "checkpoint.save, set checkpoint.resume: never to train fresh in a sub-location, or "
        "checkpoint.resume: force to resume it anyway"
    )
