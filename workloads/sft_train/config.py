"""The trainer config: the reference recipe's key names, and the workload part of ``SFTRun``.

Imports only pydantic: the operator imports this model to build its CRD, so nothing heavy
(torch, transformers, pyarrow, Megatron-Bridge) may be imported here.

Defaults are the Nemotron 3 Super stage-1 SFT recipe's: AdamW (β 0.9/0.95), cosine decay with 50
warm-up iterations, weight decay 0.1, bf16, per-token loss, MTP loss scaling 0.3, learning rate
5e-6 for full SFT and 1e-4 for LoRA (dim 32, alpha 32, dropout 0).
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from sft_common.config import ConfigModel

Engine = Literal["megatron", "hf"]
ResumeMode = Literal["auto", "never", "force"]
DecayStyle = Literal["cosine", "linear", "constant"]
Precision = Literal["bf16", "fp32"]

FULL_SFT_LR = 5e-6
LORA_LR = 1e-4
DEFAULT_LORA_TARGETS = ("linear_qkv", "linear_proj", "linear_fc1", "linear_fc2", "in_proj", "out_proj")


def pad_multiple(tp: int, cp: int, sequence_parallel: bool) -> int:
    """The multiple every packed sub-sequence's runtime length must have for this parallelism
    (Megatron-Bridge 0.6.2): 1 without context parallelism; else 2·CP, and lcm(2·CP, CP·TP) with
    sequence parallelism and TP > 1 (Nemotron's rule). The one rule: the trainer refuses data padded
    otherwise (``megatron_plan.required_pad_multiple``) and the operator checks it before a run starts.

    >>> pad_multiple(8, 1, True), pad_multiple(1, 2, False), pad_multiple(4, 2, True)
    (1, 4, 8)
    """
    if cp <= 1:
        return 1
    multiple = 2 * cp
    if sequence_parallel and tp > 1:
        multiple = math.lcm(multiple, cp * tp)
    return multiple


class DataSpec(ConfigModel):
    """Where the packed Parquet from ``sft-prep`` lives."""

    path: str = Field(min_length=1)
    """The sft-prep output dir (local path, PVC mount, file:// or s3://) holding splits/ and
    metadata.json."""
    use_validation: bool = True
    """Evaluate on splits/valid when it holds shards."""
    allow_full_loss_mask: bool = False
    """Train on data whose loss mask trains (nearly) every token, prompts included (e.g. plain text
    made into one-turn chats). Off: such data is refused before training, as it is the sign of a chat
    template that marks every token as the assistant's."""


class ModelSpec(ConfigModel):
    """The model to fine-tune."""

    pretrained_checkpoint: str | None = None
    """Base weights: a Megatron checkpoint dir (engine megatron) or a Hugging Face checkpoint dir (engine hf);
    local path or s3:// URI. Required unless checkpoint.load points at a checkpoint of this run."""
    recipe: str = "nemotron_3_super"
    """Megatron-Bridge recipe: a known name (nemotron_3_super: Megatron-Bridge 0.6.2's
    recipes.nemotronh.h100 nemotron_3_super_sft_16gpu_h100_bf16_config for full SFT and
    nemotron_3_super_peft_1gpu_h100_bf16_config for LoRA) or a dotted path module.function returning a
    ConfigContainer."""
    seq_length: int | None = Field(default=None, ge=16)
    """Training sequence length; defaults to the data's pack size and must equal it when given."""
    hf_model_id: str | None = None
    """Hugging Face id or path of the base architecture, used for the Hugging Face export (engine
    megatron); default: the named recipe's."""


class LoraSpec(ConfigModel):
    """LoRA adapters (Megatron-Bridge PEFT on engine megatron, Hugging Face PEFT on engine hf)."""

    type: Literal["lora"] = "lora"
    """The PEFT scheme; only 'lora' is supported."""
    dim: int = Field(default=32, ge=1)
    """LoRA rank."""
    alpha: int = Field(default=32, ge=1)
    """LoRA scaling numerator (scale = alpha / dim)."""
    dropout: float = Field(default=0.0, ge=0, lt=1)
    """Dropout on the LoRA input."""
    target_modules: list[str] = Field(default_factory=lambda: list(DEFAULT_LORA_TARGETS), min_length=1)
    """Megatron module names to adapt; engine hf maps them to the Hugging Face names (q/k/v_proj, …)."""


class TrainSpec(ConfigModel):
    """Iterations and batch sizes."""

    train_iters: int = Field(default=1700, ge=1)
    """Optimizer steps to run."""
    global_batch_size: int = Field(default=4, ge=1)
    """Packed rows per optimizer step, over all data-parallel ranks and gradient-accumulation steps."""
    micro_batch_size: Literal[1] = 1
    """Packed rows per forward pass; offline packed SFT requires 1."""
    exit_interval: int | None = Field(default=None, ge=1)
    """Stop (after saving a checkpoint) once the iteration is a multiple of this; a rerun resumes."""
    seed: int = 1234
    """Seed for weight init of adapters, data order and dropout."""


class OptimizerSpec(ConfigModel):
    """AdamW hyperparameters."""

    lr: float | None = Field(default=None, gt=0)
    """Peak learning rate; default 5e-6 for full SFT, 1e-4 with LoRA."""
    min_lr: float = Field(default=0.0, ge=0)
    """Learning rate at the end of the decay."""
    adam_beta1: float = Field(default=0.9, ge=0, lt=1)
    """AdamW β1."""
    adam_beta2: float = Field(default=0.95, ge=0, lt=1)
    """AdamW β2."""
    adam_eps: float = Field(default=1e-8, gt=0)
    """AdamW ε."""
    weight_decay: float = Field(default=0.1, ge=0)
    """Decoupled weight decay."""
    clip_grad: float = Field(default=1.0, ge=0)
    """Clip the global gradient norm to this (0 disables)."""


class SchedulerSpec(ConfigModel):
    """Learning-rate schedule: linear warm-up, then decay."""

    lr_warmup_iters: int = Field(default=50, ge=0)
    """Warm-up iterations (linear from 0 to the peak)."""
    lr_decay_style: DecayStyle = "cosine"
    """Decay after warm-up."""
    lr_decay_iters: int | None = Field(default=None, ge=1)
    """Iteration at which the decay reaches min_lr; default train_iters."""


class LossSpec(ConfigModel):
    """How token losses become the training loss."""

    calculate_per_token_loss: bool = True
    """Mean over every trained token of the global batch (true) or mean of per-row means (false)."""
    mtp_loss_scaling_factor: float = Field(default=0.3, ge=0)
    """Weight of the multi-token-prediction loss (engine megatron, models with MTP layers)."""


class ParallelismSpec(ConfigModel):
    """Model parallelism (engine megatron); unset keeps the recipe's value. Data parallelism is
    what the GPUs leave."""

    tensor_parallel_size: int | None = Field(default=None, ge=1)
    """TP: tensor model parallel size."""
    pipeline_parallel_size: int | None = Field(default=None, ge=1)
    """PP: pipeline model parallel size."""
    expert_parallel_size: int | None = Field(default=None, ge=1)
    """EP: expert model parallel size."""
    expert_tensor_parallel_size: int | None = Field(default=None, ge=1)
    """ETP: expert tensor parallel size."""
    context_parallel_size: int | None = Field(default=None, ge=1)
    """CP: context parallel size."""
    sequence_parallel: bool | None = None
    """SP: sequence parallelism (needs TP > 1)."""


class CheckpointSpec(ConfigModel):
    """Where checkpoints go and where a run resumes from."""

    save: str | None = None
    """Checkpoint location (local path, PVC mount or s3://); a restarted run resumes from the newest
    complete checkpoint here without being told."""
    save_interval: int | None = Field(default=200, ge=1)
    """Save every this many iterations (and always at the end)."""
    load: str | None = None
    """Resume from this checkpoint location instead of save; it must hold a complete checkpoint."""
    resume: ResumeMode = "auto"
    """What to do with the newest checkpoint in save: auto resumes it only when it was written by this
    run (same data, model, tokenizer, batch sizes, parallelism, PEFT, optimizer, schedule, sequence
    length; train_iters may grow) and otherwise refuses to start (CheckpointMismatch); never trains
    fresh in the sub-location save/runs/<identity id>; force resumes it anyway."""
    hf_export: str | None = None
    """Where to also write the final model in Hugging Face format; default {save}/hf."""
    hf_export_enabled: bool | None = None
    """Write that export; default on for engine megatron (the recipe's convert_to_hf.enabled), and on
    engine hf only when hf_export is set."""


class LoggingSpec(ConfigModel):
    """Logging; the W&B key comes from the WANDB_API_KEY env var only, never from this config."""

    log_interval: int = Field(default=10, ge=1)
    """Log loss and learning rate every this many iterations."""
    wandb_project: str | None = None
    """W&B project; W&B logging is off when unset."""
    wandb_entity: str | None = None
    """W&B entity (team or user)."""
    wandb_exp_name: str | None = None
    """W&B run name; default <recipe>-sft or <recipe>-lora."""
    metrics_file: str | None = None
    """Append one JSON line per iteration (iteration, loss, lr, tokens) to this local file (rank 0)."""


class TrainConfig(ConfigModel):
    """Packed Parquet from sft-prep → supervised fine-tuning (Megatron-Bridge, or Hugging Face on CPU)."""

    engine: Engine = "megatron"
    """'megatron' (Megatron-Bridge finetune() on GPUs, in the trainer image) or 'hf' (transformers, CPU or
    one GPU)."""
    data: DataSpec
    """The packed training data."""
    model: ModelSpec = Field(default_factory=ModelSpec)
    """The base model."""
    peft: LoraSpec | None = None
    """null for full SFT, or LoRA settings ('lora' alone: the recipe's LoRA settings). The learning
    rate follows the mode unless optimizer.lr is set."""
    train: TrainSpec = Field(default_factory=TrainSpec)
    """Iterations and batch sizes."""
    optimizer: OptimizerSpec = Field(default_factory=OptimizerSpec)
    """AdamW hyperparameters."""
    scheduler: SchedulerSpec = Field(default_factory=SchedulerSpec)
    """Learning-rate schedule."""
    loss: LossSpec = Field(default_factory=LossSpec)
    """Loss normalisation."""
    precision: Precision = "bf16"
    """bf16 mixed precision (the recipe) or fp32 (engine hf only)."""
    parallelism: ParallelismSpec = Field(default_factory=ParallelismSpec)
    """Model parallelism (engine megatron)."""
    checkpoint: CheckpointSpec = Field(default_factory=CheckpointSpec)
    """Checkpoint save/resume."""
    logging: LoggingSpec = Field(default_factory=LoggingSpec)
    """Logging and W&B."""
    overrides: list[str] = Field(default_factory=list)
    """Megatron-Bridge 'key=value' overrides, applied last and passed through untouched (engine megatron)."""

    @field_validator("peft", mode="before")
    @classmethod
    def _peft_shorthand(cls, value: Any) -> Any:
        """``peft: lora`` (``peft=lora`` on the command line) means LoRA with the recipe's settings;
        ``peft: none``/``null`` means full SFT."""
        if isinstance(value, str):
            scheme = value.strip().lower()
            if scheme in ("", "none", "null", "full"):
                return None
            if scheme == "lora":
                return {"type": "lora"}
            raise ValueError(f"{value!r} is not a PEFT scheme; use 'lora' (or null for full SFT)")
        return value

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        for text in self.overrides:
            if "=" not in text.lstrip("+~") and not text.startswith("~"):
                raise ValueError(f"overrides: {text!r} is not of the form key=value")
        if self.engine == "megatron" and self.precision != "bf16":
            raise ValueError("precision: engine megatron trains in the recipe's bf16; fp32 is for engine hf")
        if self.engine == "hf" and self.overrides:
            raise ValueError("overrides are Megatron-Bridge keys and apply to engine megatron only")
        return self

    @property
    def lr(self) -> float:
        """The peak learning rate, with the recipe's default for full SFT or LoRA."""
        if self.optimizer.lr is not None:
            return self.optimizer.lr
        return LORA_LR if self.peft is not None else FULL_SFT_LR

    @property
    def hf_export_location(self) -> str | None:
        """Where the Hugging Face export goes, or None when there is none."""
        ck = self.checkpoint
        enabled = ck.hf_export_enabled
        if enabled is None:
            enabled = self.engine == "megatron" or ck.hf_export is not None
        if not enabled:
            return None
        if ck.hf_export:
            return ck.hf_export
        if not ck.save:
            return None
        from sft_common import storage

        return storage.join(ck.save, "hf")

    @property
    def decay_iters(self) -> int:
        return self.scheduler.lr_decay_iters or self.train.train_iters
