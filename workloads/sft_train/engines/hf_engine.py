"""The hf engine: a transformers causal LM (+ PEFT LoRA) trained on sft-prep's packed Parquet.

Meant for CPUs and single GPUs (tests, demos, small models); it runs under ``torchrun`` with DDP
(gloo on CPU, nccl on GPU). Its numerics follow the megatron engine:

* one packed row per micro-batch, split into sub-sequences as Megatron-Bridge collates it
  (:func:`sft_train.packed_data.split_row`), with no attention across sub-sequences, and the same
  trained labels: the label after each eos token is untrained, as in Megatron-Bridge 0.6.2;
* the loss is the mean over every trained token of the global batch — all micro-batches of all
  ranks — not a mean of per-rank means, so a run on N processes follows the same loss curve as one
  process with the same global batch;
* AdamW with Megatron's warm-up + cosine schedule and its no-decay rule for biases/norms.

Resume state: model (or adapter) weights and optimizer state are saved; the schedule, the data
position and the random streams are pure functions of (seed, iteration, rank), so the iteration
count restores them exactly. Each checkpoint carries the run's identity (:mod:`sft_train.ledger`),
checked against the run before anything is loaded.

Preemption: SIGTERM (the kubelet's, or torchrun's forward of it) only sets a flag; every rank
finishes its step, the ranks agree through an all-reduce of the flag after each step (one rank
signalled is enough), a checkpoint of that iteration is saved, and :class:`Preempted` ends the run
(exit 143, a ``Preempted`` termination message naming the checkpoint).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist

from sft_common import storage
from sft_common.config import to_yaml
from sft_common.cpus import threads_per_process, usable_cpus
from sft_common.progress import Progress
from sft_train import ledger, prechecks
from sft_train.config import TrainConfig
from sft_train.engines import hf_checkpoint as ckpt
from sft_train.engines.hf_batch import Batcher, forward_loss
from sft_train.engines.hf_model import (
    apply_lora,
    attention_implementation,
    eos_token_id,
    load_adapter,
    load_base_model,
    localize_checkpoint,
    param_groups,
)
from sft_train.engines.outcome import Preempted, TrainResult
from sft_train.engines.schedule import learning_rate
from sft_train.errors import CheckpointNotFound, TrainInputError
from sft_train.packed_data import DataInfo, PackedSplit, check_seq_length, sample_order

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import PreTrainedModel

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "chat_template.jinja",
)


@dataclass
class DistContext:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    owns_group: bool = False

    @property
    def active(self) -> bool:
        return self.world > 1

    def all_sum(self, *values: float) -> list[float]:
        if not self.active:
            return list(values)
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def any(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on any rank (a collective: all ranks call it)."""
        if not self.active:
            return flag
        (total,) = self.all_sum(1.0 if flag else 0.0)
        return total > 0


class StopFlag:
    """Set by SIGTERM; read between steps (a signal handler must not save or talk to other ranks)."""

    def __init__(self) -> None:
        self.received = False

    def __call__(self, signum: int, frame: object) -> None:
        if not self.received:
            message = "SIGTERM: finishing this step, then saving a checkpoint and exiting"
            print(message, file=sys.stderr, flush=True)
        self.received = True


@contextlib.contextmanager
def on_sigterm(flag: StopFlag) -> Iterator[StopFlag]:
    """Route SIGTERM to ``flag`` while training (main thread only; elsewhere nothing changes)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous = signal.signal(signal.SIGTERM, flag)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def distributed() -> Iterator[DistContext]:
    """torchrun's env → a process group (gloo on CPU, nccl on GPU); a plain process gets world 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{local_rank}") if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    ctx = DistContext(rank=rank, world=world, local_rank=local_rank, device=device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
        ctx.owns_group = True
    try:
        yield ctx
    finally:
        if ctx.owns_group:
            dist.destroy_process_group()


def _seed_everything(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class HFTrainer:
    """One training run of the hf engine on one rank."""

    def __init__(
        self,
        config: TrainConfig,
        info: DataInfo,
        ctx: DistContext,
        scratch: Path,
        stop: StopFlag | None = None,
    ) -> None:
        self.info = info
        self.ctx = ctx
        self.scratch = scratch
        self.is_main = ctx.rank == 0
        self.stop = stop or StopFlag()
        # The drift guard, before anything is loaded: a checkpoint of another run is refused here.
        self.resolution = ledger.resolve(config, info, ckpt.newest_checkpoint)
        if self.resolution.save != config.checkpoint.save:
            config = ledger.with_save(config, self.resolution.save)
        self.config = config
        if self.is_main:
            if self.resolution.note:
                print(self.resolution.note, file=sys.stderr, flush=True)
            removed = ckpt.clean_leftovers(config.checkpoint.save)
            if removed:
                print(f"removed leftovers of interrupted saves: {', '.join(removed)}", file=sys.stderr)
        check_seq_length(info.pack_size, config.model.seq_length)
        gbs = config.train.global_batch_size
        if gbs % ctx.world:
            raise TrainInputError(
                f"train.global_batch_size {gbs} must be a multiple of the number of processes ({ctx.world})"
            )
        self.base_dir: Path | None = None
        self.resume_dir: Path | None = None
        newest = self.resolution.newest  # checkpoint.save listed once, by the drift guard
        self.resume_uri = (
            ckpt.resolve_resume(config.checkpoint.load, None)
            if config.checkpoint.load
            else newest and newest[0]
        )
        prechecks.run(config, info, prechecks.hf_model(config, self.resume_uri))  # before any weights
        self.reported_loss: float | None = None
        """The training loss as reported everywhere (log line, progress/status, result): see
        :func:`window_loss`; restored from the checkpoint, so a rerun of a finished run reports it."""
        self.model, self.optimizer, self.start_iteration = self._build()
        model_dir = self.base_dir or (self.resume_dir / "model" if self.resume_dir else None)
        self.eos_id = eos_token_id(model_dir, self._unwrapped)
        self.train_split = PackedSplit(info.shards["train"], info.pack_size, self.eos_id)
        self.pad_id = int(getattr(self._unwrapped.config, "pad_token_id", None) or 0)
        self.saved_record: dict[str, Any] | None = None
        """The ledger record of the checkpoint rank 0 saved last (its time, without reading it back)."""
        self.batcher = Batcher.for_model(self._unwrapped, self.pad_id)

    # -- construction -------------------------------------------------------------------------
    @property
    def _unwrapped(self) -> PreTrainedModel | PeftModel:
        """The Hugging Face model inside the DDP wrapper (a PeftModel with LoRA)."""
        from peft import PeftModel
        from transformers import PreTrainedModel

        model = self.model
        inner = model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model
        if not isinstance(inner, PreTrainedModel | PeftModel):
            raise TypeError(f"expected a Hugging Face model, got {type(inner).__name__}")
        return inner

    def _build(self) -> tuple[torch.nn.Module, torch.optim.Optimizer, int]:
        cfg = self.config
        _seed_everything(cfg.train.seed)
        resume_dir = (
            localize_checkpoint(self.resume_uri, "checkpoint", self.scratch) if self.resume_uri else None
        )
        self.resume_dir = resume_dir
        pretrained = cfg.model.pretrained_checkpoint
        if cfg.peft is not None or resume_dir is None:
            if not pretrained:
                raise CheckpointNotFound(
                    "model.pretrained_checkpoint is not set and there is no checkpoint to resume from; "
                    "point it at a Hugging Face checkpoint dir"
                )
            self.base_dir = localize_checkpoint(pretrained, "model.pretrained_checkpoint", self.scratch)
        attention = attention_implementation(self.ctx.device.type, cfg.precision)
        if resume_dir is not None and cfg.peft is None:
            model = load_base_model(resume_dir / "model", "checkpoint", attention)
        else:
            assert self.base_dir is not None
            model = load_base_model(self.base_dir, "model.pretrained_checkpoint", attention)
            if cfg.peft is not None:
                model = (
                    load_adapter(model, resume_dir / "adapter")
                    if resume_dir is not None
                    else apply_lora(model, cfg.peft)
                )
        model.to(self.ctx.device)
        model.train()
        optimizer = torch.optim.AdamW(
            param_groups(model, cfg.optimizer.weight_decay),
            lr=cfg.lr,
            betas=(cfg.optimizer.adam_beta1, cfg.optimizer.adam_beta2),
            eps=cfg.optimizer.adam_eps,
        )
        start = 0
        if resume_dir is not None:
            state = torch.load(resume_dir / ckpt.STATE_FILE, map_location=self.ctx.device, weights_only=False)
            optimizer.load_state_dict(state["optimizer"])
            start = int(state["iteration"])
            self.reported_loss = state.get("loss")
        if self.ctx.active:
            model = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[self.ctx.device.index] if self.ctx.device.type == "cuda" else None
            )
        return model, optimizer, start

    # -- one iteration --------------------------------------------------------------------------
    def _rows_for(self, iteration: int) -> list[int]:
        """This rank's rows of the global batch of ``iteration``: every world-th, starting at rank."""
        gbs = self.config.train.global_batch_size
        rows = sample_order(len(self.train_split), self.config.train.seed, iteration * gbs, gbs)
        return rows[self.ctx.rank :: self.ctx.world]

    def step(self, iteration: int) -> tuple[float, float, int]:
        """Train one global batch; return (loss, lr, tokens processed by all ranks)."""
        cfg = self.config
        # Random streams are a function of (seed, iteration, rank): exact on resume, distinct per rank.
        torch.manual_seed(cfg.train.seed * 1_000_003 + iteration * 1009 + self.ctx.rank)
        lr = learning_rate(
            iteration,
            cfg.lr,
            cfg.optimizer.min_lr,
            cfg.scheduler.lr_warmup_iters,
            cfg.decay_iters,
            cfg.scheduler.lr_decay_style,
        )
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        batches = [self.batcher.build(self.train_split.subsequences(i)) for i in self._rows_for(iteration)]
        local_trained = sum(b.num_trained for b in batches)
        local_tokens = sum(b.num_tokens for b in batches)
        global_trained, global_tokens = self.ctx.all_sum(local_trained, local_tokens)
        gbs = cfg.train.global_batch_size
        autocast = torch.autocast(self.ctx.device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16")
        reported = 0.0
        # One forward and backward per pass (a row in buckets is several), gradients accumulated
        # locally and all-reduced by DDP on this rank's last pass only: ranks whose rows split into
        # different numbers of passes still meet in exactly one all-reduce per step.
        passes = [(part, batch.num_trained) for batch in batches for part in batch.parts]
        ddp = isinstance(self.model, torch.nn.parallel.DistributedDataParallel)
        for j, (part, row_trained) in enumerate(passes):
            sync = j == len(passes) - 1 or not self.ctx.active
            no_sync = self.model.no_sync() if ddp and not sync else contextlib.nullcontext()  # type: ignore[operator]
            with no_sync:
                with autocast:
                    loss_sum, _ = forward_loss(self.model, part.to(self.ctx.device))
                if cfg.loss.calculate_per_token_loss:
                    # d(sum over the global batch / global token count); DDP averages over ranks, so × world.
                    loss = loss_sum / max(global_trained, 1.0) * self.ctx.world
                else:  # each row's mean over its own trained tokens, summed over the passes of the row
                    loss = loss_sum / max(row_trained, 1) / gbs * self.ctx.world
                loss.backward()
            reported += float(loss.detach()) / self.ctx.world
        if cfg.optimizer.clip_grad > 0:
            torch.nn.utils.clip_grad_norm_(
                [p for p in self.model.parameters() if p.requires_grad], cfg.optimizer.clip_grad
            )
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        (total,) = self.ctx.all_sum(reported)
        return total, lr, int(global_tokens)

    # -- checkpoints ----------------------------------------------------------------------------
    def _write_checkpoint(self, iteration: int, directory: Path) -> None:
        model = self._unwrapped
        if self.config.peft is not None:
            model.save_pretrained(str(directory / "adapter"))
        else:
            model.save_pretrained(str(directory / "model"))
            self._copy_tokenizer(directory / "model")
        state = {
            "iteration": iteration,
            "consumed_samples": iteration * self.config.train.global_batch_size,
            "optimizer": self.optimizer.state_dict(),
            "world_size": self.ctx.world,
            "loss": self.reported_loss,
        }
        torch.save(state, directory / ckpt.STATE_FILE)
        (directory / "config.yaml").write_text(to_yaml(self.config))

    def _copy_tokenizer(self, target: Path) -> None:
        """Keep the tokenizer next to the weights, so a checkpoint or export loads on its own."""
        source = self.base_dir or (self.resume_dir / "model" if self.resume_dir else None)
        if source is None:
            return
        for name in TOKENIZER_FILES:
            if (source / name).exists():
                shutil.copyfile(source / name, target / name)

    def save(self, iteration: int) -> str | None:
        save = self.config.checkpoint.save
        uri = None
        if save and self.is_main:
            self.saved_record = ledger.record(iteration, self.resolution.identity)
            uri = ckpt.save_checkpoint(
                save, iteration, lambda d: self._write_checkpoint(iteration, d), self.saved_record
            )
        self.ctx.barrier()
        return uri or (storage.join(save, ckpt.iteration_name(iteration)) if save else None)

    def evaluate(self) -> float | None:
        """Per-token mean loss over the whole validation split (rows spread over the ranks)."""
        shards = self.info.shards.get("valid") or []
        if not self.config.data.use_validation or not shards:
            return None
        split = PackedSplit(shards, self.info.pack_size, self.eos_id)
        total, count = 0.0, 0
        self.model.eval()
        autocast = torch.autocast(
            self.ctx.device.type, dtype=torch.bfloat16, enabled=self.config.precision == "bf16"
        )
        with torch.no_grad(), autocast:
            for row in range(self.ctx.rank, len(split), self.ctx.world):
                loss_sum, trained = forward_loss(
                    self._unwrapped, self.batcher.build(split.subsequences(row)).to(self.ctx.device)
                )
                total += float(loss_sum)
                count += trained
        self.model.train()
        loss_total, tokens = self.ctx.all_sum(total, count)
        return loss_total / tokens if tokens else None

    def export_hf(self, uri: str) -> str:
        """The final model in Hugging Face format (LoRA merged into the weights)."""
        model = self._unwrapped
        if self.config.peft is not None:
            model = merge_lora(model)
        with tempfile.TemporaryDirectory(prefix="sft-hf-export-", dir=self.scratch) as tmp:
            out = Path(tmp) / "model"
            model.save_pretrained(str(out))
            self._copy_tokenizer(out)
            publish_dir(out, uri)
        return uri

    # -- the loop -------------------------------------------------------------------------------
    def run(self) -> TrainResult:
        cfg = self.config
        total = cfg.train.train_iters
        progress = Progress(
            "train",
            total=total,
            unit="iterations",
            rates=("tokens",),
            mode=None if self.is_main else "off",
            owner=self.is_main,
            initial=self.start_iteration,
        )
        progress.update()
        if cfg.logging.metrics_file and self.is_main:
            trim_metrics(cfg.logging.metrics_file, self.start_iteration)
        metrics = open(cfg.logging.metrics_file, "a") if cfg.logging.metrics_file and self.is_main else None  # noqa: SIM115
        wandb_run = _wandb_start(cfg) if self.is_main else None
        if self.is_main and self.start_iteration:
            print(f"resuming from {self.resume_uri} at iteration {self.start_iteration}", flush=True)
        losses: list[tuple[int, float]] = []
        window: list[float] = []
        last_ckpt = self.resume_uri
        saved_at = self.start_iteration
        info = ledger.checkpoint_info(last_ckpt, self.start_iteration, self.start_iteration)
        tokens = 0
        iteration = self.start_iteration
        finished = iteration >= total
        start_time = time.monotonic()
        try:
            while iteration < total:
                loss, lr, step_tokens = self.step(iteration)
                iteration += 1
                tokens += step_tokens
                losses.append((iteration, loss))
                window.append(loss)
                logged = iteration % cfg.logging.log_interval == 0 or iteration == total
                if logged:
                    self.reported_loss = window_loss(window)
                    window.clear()
                if self.is_main:
                    elapsed = time.monotonic() - start_time
                    rate = tokens / max(elapsed, 1e-9)
                    # progress (bar, JSON lines, CR status) carries the reported loss only: one number
                    reported = {"loss": self.reported_loss} if self.reported_loss is not None else {}
                    progress.update(completed=iteration, learning_rate=lr, tokens=tokens, **reported)
                    record = {
                        "iteration": iteration,
                        "loss": loss,
                        "lr": lr,
                        "tokens": step_tokens,
                        "tokens_per_second": round(rate, 1),
                        "elapsed_seconds": round(elapsed, 3),
                    }
                    if metrics:
                        metrics.write(json.dumps(record) + "\n")
                        metrics.flush()
                    if wandb_run is not None:
                        wandb_run.log({"loss": loss, "learning_rate": lr}, step=iteration)
                    if logged:
                        # Like Megatron's log line: the mean loss since the previous line.
                        print(
                            f"iteration {iteration:>6}/{total} | loss {self.reported_loss:.4f} | "
                            f"lr {lr:.3e} | tokens/s {rate:.0f}",
                            flush=True,
                        )
                interval = cfg.checkpoint.save_interval
                exiting = bool(cfg.train.exit_interval and iteration % cfg.train.exit_interval == 0)
                preempted = self.ctx.any(self.stop.received)
                if iteration == total or exiting or preempted or (interval and iteration % interval == 0):
                    last_ckpt = self.save(iteration)
                    saved_at = iteration
                    if last_ckpt and self.is_main:
                        info = ledger.checkpoint_info(
                            last_ckpt, iteration, self.start_iteration, self.saved_record
                        )
                        ledger.report_checkpoint(progress, info)
                if preempted:
                    if self.is_main:
                        print(f"preempted: checkpoint of iteration {saved_at} saved; exiting", flush=True)
                    progress.close()
                    raise Preempted(iteration, last_ckpt if cfg.checkpoint.save else None, info)
                if exiting and iteration < total:
                    if self.is_main:
                        print(
                            f"stopping at iteration {iteration} (train.exit_interval); rerun to resume",
                            flush=True,
                        )
                    break
            finished = iteration >= total
            valid_loss = self.evaluate() if losses else None
            if valid_loss is not None and self.is_main:
                print(f"validation loss {valid_loss:.4f} (iteration {iteration})", flush=True)
                if metrics:
                    metrics.write(json.dumps({"iteration": iteration, "validation_loss": valid_loss}) + "\n")
            hf_export = None
            if finished and cfg.hf_export_location:
                if self.is_main:
                    hf_export = self.export_hf(cfg.hf_export_location)
                self.ctx.barrier()
        finally:
            if metrics:
                metrics.close()
            if wandb_run is not None:
                wandb_run.finish()
        final = self.reported_loss
        progress.close(loss=final) if final is not None else progress.close()
        return TrainResult(
            last_ckpt, iteration, final, losses, hf_export, finished, valid_loss, self.start_iteration, info
        )


def trim_metrics(path: str, iteration: int) -> None:
    """Drop the records after ``iteration`` from a metrics file before this process appends to it:
    a resumed run logs the iterations after its checkpoint again, and each must appear once."""
    file = Path(path)
    if not file.is_file():
        return
    kept = []
    for line in file.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line cut by a kill
        if isinstance(record, dict) and int(record.get("iteration", 0)) <= iteration:
            kept.append(line)
    tmp = file.with_name(f".{file.name}.tmp-{os.getpid()}")
    tmp.write_text("".join(line + "\n" for line in kept))
    os.replace(tmp, file)


LOSS_DIGITS = 4
"""Decimals of the reported loss: more is noise at the batch sizes a loss is averaged over."""


def window_loss(window: list[float]) -> float:
    """The reported training loss: the mean of the per-iteration losses (each the per-token mean over
    its global batch) since the previous log line, i.e. over the last ``logging.log_interval``
    iterations, as Megatron logs it; rounded to :data:`LOSS_DIGITS` decimals."""
    return round(sum(window) / len(window), LOSS_DIGITS)


def merge_lora(model: PreTrainedModel | PeftModel) -> PreTrainedModel:
    """The base model with the LoRA weights merged in (what ``PeftModel.merge_and_unload`` forwards to
    its tuner)."""
    from peft import PeftModel
    from peft.tuners.tuners_utils import BaseTuner
    from transformers import PreTrainedModel

    if isinstance(model, PreTrainedModel):
        return model
    tuner = model.base_model if isinstance(model, PeftModel) else None
    if not isinstance(tuner, BaseTuner):
        raise TypeError(f"expected a LoRA PeftModel, got {type(model).__name__}")
    merged = tuner.merge_and_unload()
    if not isinstance(merged, PreTrainedModel):
        raise TypeError(f"merging LoRA gave a {type(merged).__name__}, not a Hugging Face model")
    return merged


def publish_dir(local: Path, uri: str) -> None:
    """Place a finished local directory at ``uri`` (rename locally, upload file by file on S3)."""
    if storage.is_remote(uri):
        for path in sorted(local.rglob("*")):
            if path.is_file():
                storage.upload_file(path, storage.join(uri, str(path.relative_to(local))))
        return
    dest = Path(uri.removeprefix("file://"))
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    shutil.copytree(local, staging, dirs_exist_ok=True)
    storage.respect_umask(staging)  # mkdtemp and safetensors make it private; readers need access
    if dest.exists():
        shutil.rmtree(dest)
    os.replace(staging, dest)


def _wandb_start(cfg: TrainConfig) -> Any:
    """A W&B run when a project is configured (the key comes from WANDB_API_KEY), else None."""
    if not cfg.logging.wandb_project:
        return None
    try:
        import wandb
    except ImportError:
        print(
            "warning: logging.wandb_project is set but wandb is not installed; W&B logging is off",
            file=sys.stderr,
        )
        return None
    return wandb.init(
        project=cfg.logging.wandb_project,
        entity=cfg.logging.wandb_entity,
        name=cfg.logging.wandb_exp_name,
        config=cfg.model_dump(mode="json"),
    )


def set_threads() -> None:
    """torch's compute threads from the pod's CPU quota (cgroup), shared by the local processes: torch
    would start one per core of the node whatever the quota, and a throttled thread pool ran an
    iteration in 1.5 s on 2 threads against 0.7 s on 1 (issue 23). OMP_NUM_THREADS, when set, wins."""
    threads = threads_per_process()
    if threads is not None:
        torch.set_num_threads(threads)
    if int(os.environ.get("RANK", "0")) == 0:
        why = "OMP_NUM_THREADS" if threads is None else f"{usable_cpus()} usable CPUs"
        print(f"torch threads: {torch.get_num_threads()} per process ({why})", flush=True)


def train(config: TrainConfig, info: DataInfo) -> TrainResult:
    """Run the hf engine in this process (one rank of a torchrun job, or alone)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # our Progress is the one progress display
    set_threads()
    with (
        on_sigterm(StopFlag()) as stop,
        distributed() as ctx,
        tempfile.TemporaryDirectory(prefix="sft-train-") as scratch,
    ):
        trainer = HFTrainer(config, info, ctx, Path(scratch), stop)
        return trainer.run()
