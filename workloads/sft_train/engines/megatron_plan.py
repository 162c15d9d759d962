"""What the megatron engine will ask Megatron-Bridge for, as plain data (no Megatron-Bridge import).

:func:`build_plan` maps our config onto the recipe's ``ConfigContainer`` as Hydra-style
``key=value`` overrides (the same syntax as the recipe's own finetune script), the packed-Parquet
dataset spec, and the torchrun command. ``--dry-run`` prints it; the engine applies it. Keeping it a
pure function means CPU tests pin down exactly what a GPU run receives.

Versions: written against Megatron-Bridge 0.4/0.5 (``FinetuningDatasetConfig`` with
``packed_sequence_specs``; the NeMo 26.02 container the reference recipe uses); the engine also
maps the dataset onto 0.6's ``GPTSFTDatasetConfig`` (``offline_packing_specs``).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sft_common import storage
from sft_train.config import TrainConfig
from sft_train.packed_data import DataInfo, check_seq_length

RECIPE_PACKAGE = "megatron.bridge.recipes.nemotronh"
TRACKER_FILES = ("latest_train_state.pt", "latest_checkpointed_iteration.txt")
_PLAIN = re.compile(r"^[A-Za-z0-9_./:@+-]+$")


@dataclass
class MegatronPlan:
    """Everything the megatron engine passes to Megatron-Bridge."""

    recipe: str
    """Dotted path of the recipe function."""
    recipe_kwargs: dict[str, Any]
    overrides: list[str]
    """Ours, applied first."""
    user_overrides: list[str]
    """config.overrides, applied last, untouched."""
    dataset: dict[str, Any]
    resume_from: str | None
    torchrun: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "recipe": self.recipe,
            "recipe_kwargs": self.recipe_kwargs,
            "overrides": self.overrides,
            "user_overrides": self.user_overrides,
            "dataset": self.dataset,
            "resume_from": self.resume_from,
            "torchrun": shlex.join(self.torchrun),
        }


def recipe_target(recipe: str, peft: bool) -> str:
    """``nemotron_3_super`` → its ``_sft_config``/``_peft_config`` function; a dotted path is used as is."""
    if "." in recipe:
        return recipe
    return f"{RECIPE_PACKAGE}.{recipe}.{recipe}_{'peft' if peft else 'sft'}_config"


def format_value(value: Any) -> str:
    """A Hydra override value: true/false/null, numbers, [lists], strings quoted when needed."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    text = str(value)
    if _PLAIN.match(text) and text.lower() not in ("true", "false", "null", "none"):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def complete_checkpoint(save: str | None) -> bool:
    """Megatron-Bridge marks a finished save with a tracker file, written after the checkpoint itself."""
    if not save:
        return False
    return any(storage.exists(storage.join(save, name)) for name in TRACKER_FILES)


def resume_location(config: TrainConfig) -> str | None:
    """Explicit checkpoint.load (must hold a checkpoint), else the save dir when it holds a complete one."""
    from sft_train.errors import CheckpointNotFound

    load = config.checkpoint.load
    if load:
        if not complete_checkpoint(load) and not storage.exists(storage.join(load, "run_config.yaml")):
            raise CheckpointNotFound(
                f"checkpoint.load {load} holds no complete Megatron-Bridge checkpoint "
                f"(none of {', '.join(TRACKER_FILES)}); unset it to start from model.pretrained_checkpoint"
            )
        return load
    save = config.checkpoint.save
    return save if complete_checkpoint(save) else None


def mb_overrides(config: TrainConfig, pack_size: int, resume: str | None) -> list[str]:
    """Our config as Megatron-Bridge overrides, in a fixed order (tests pin it)."""
    par = config.parallelism
    items: list[tuple[str, Any]] = [
        ("model.seq_length", pack_size),
        ("model.calculate_per_token_loss", config.loss.calculate_per_token_loss),
        ("model.mtp_loss_scaling_factor", config.loss.mtp_loss_scaling_factor),
    ]
    for key, value in (
        ("model.tensor_model_parallel_size", par.tensor_parallel_size),
        ("model.pipeline_model_parallel_size", par.pipeline_parallel_size),
        ("model.expert_model_parallel_size", par.expert_parallel_size),
        ("model.expert_tensor_parallel_size", par.expert_tensor_parallel_size),
        ("model.context_parallel_size", par.context_parallel_size),
        ("model.sequence_parallel", par.sequence_parallel),
    ):
        if value is not None:
            items.append((key, value))
    items += [
        ("train.train_iters", config.train.train_iters),
        ("train.global_batch_size", config.train.global_batch_size),
        ("train.micro_batch_size", config.train.micro_batch_size),
    ]
    if config.train.exit_interval:
        items.append(("train.exit_interval", config.train.exit_interval))
    opt = config.optimizer
    items += [
        ("optimizer.lr", config.lr),
        ("optimizer.min_lr", opt.min_lr),
        ("optimizer.adam_beta1", opt.adam_beta1),
        ("optimizer.adam_beta2", opt.adam_beta2),
        ("optimizer.adam_eps", opt.adam_eps),
        ("optimizer.weight_decay", opt.weight_decay),
        ("optimizer.clip_grad", opt.clip_grad),
        ("scheduler.lr_warmup_iters", config.scheduler.lr_warmup_iters),
        ("scheduler.lr_decay_style", config.scheduler.lr_decay_style),
        ("scheduler.lr_decay_iters", config.decay_iters),
        ("scheduler.start_weight_decay", opt.weight_decay),
        ("scheduler.end_weight_decay", opt.weight_decay),
        ("rng.seed", config.train.seed),
    ]
    ck = config.checkpoint
    if config.model.pretrained_checkpoint:
        items.append(("checkpoint.pretrained_checkpoint", config.model.pretrained_checkpoint))
    if ck.save:
        items.append(("checkpoint.save", ck.save))
    if ck.save_interval:
        items.append(("checkpoint.save_interval", ck.save_interval))
    items.append(("checkpoint.load", resume))
    log = config.logging
    items.append(("logger.log_interval", log.log_interval))
    for key, text in (
        ("logger.wandb_project", log.wandb_project),
        ("logger.wandb_entity", log.wandb_entity),
        ("logger.wandb_exp_name", log.wandb_exp_name),
    ):
        if text:
            items.append((key, text))
    if config.peft is not None:
        items += [
            ("peft.dim", config.peft.dim),
            ("peft.alpha", config.peft.alpha),
            ("peft.dropout", config.peft.dropout),
            ("peft.target_modules", list(config.peft.target_modules)),
        ]
    return [f"{key}={format_value(value)}" for key, value in items]


def dataset_spec(config: TrainConfig, info: DataInfo) -> dict[str, Any]:
    """The packed-Parquet dataset: splits/train, and splits/valid for validation when it has shards."""
    cp = config.parallelism.context_parallel_size or 1
    has_valid = config.data.use_validation and bool(info.shards.get("valid"))
    return {
        "dataset_root": info.root,
        "seq_length": info.pack_size,
        "packed_sequence_specs": {
            "packed_sequence_size": info.pack_size,
            "packed_train_data_path": info.split_dir("train"),
            "packed_val_data_path": info.split_dir("valid") if has_valid else None,
            # THD/context parallel needs every sub-sequence divisible by 2*CP.
            "pad_seq_to_mult": cp * 2 if cp > 1 else 1,
        },
        "dataloader_type": "batch",
        "do_validation": has_valid,
        "do_test": False,
    }


def torchrun_command(
    config_path: str, nproc_per_node: int, nnodes: int, extra: Sequence[str] = ()
) -> list[str]:
    """How every node starts the trainer.

    In a Kubeflow PyTorchJob torchrun takes the node rank and master address from the PET_* env vars
    the training operator sets, so the command is the same on every node.
    """
    cmd = ["torchrun", f"--nnodes={nnodes}", f"--nproc-per-node={nproc_per_node}"]
    return [*cmd, "-m", "sft_train", "--config", config_path, *extra]


def build_plan(
    config: TrainConfig,
    info: DataInfo,
    config_path: str = "/etc/sft/config.yaml",
    nproc_per_node: int = 8,
    nnodes: int = 1,
    cli_overrides: Sequence[str] = (),
) -> MegatronPlan:
    pack_size = check_seq_length(info.pack_size, config.model.seq_length)
    resume = resume_location(config)
    kwargs: dict[str, Any] = (
        {"peft_scheme": "lora"} if config.peft is not None and "." not in config.model.recipe else {}
    )
    return MegatronPlan(
        recipe=recipe_target(config.model.recipe, config.peft is not None),
        recipe_kwargs=kwargs,
        overrides=mb_overrides(config, pack_size, resume),
        user_overrides=list(config.overrides),
        dataset=dataset_spec(config, info),
        resume_from=resume,
        torchrun=torchrun_command(config_path, nproc_per_node, nnodes, cli_overrides),
    )
