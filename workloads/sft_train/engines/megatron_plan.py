"""What the megatron engine will ask Megatron-Bridge for, as plain data (no Megatron-Bridge import).

:func:`build_plan` maps our config onto the recipe's ``ConfigContainer`` as Hydra-style
``key=value`` overrides (the same syntax as the recipe's own finetune script), the packed-Parquet
dataset spec, and the torchrun command. ``--dry-run`` prints it; the engine applies it. Keeping it a
pure function means CPU tests pin down exactly what a GPU run receives.

Version: pinned to Megatron-Bridge 0.6.2 (``MEGATRON_BRIDGE_VERSION``; megatron-core 0.19.x), whose
own dataset, builder, collate and config code ``make test-megatron`` runs against this plan
(``tests/megatron/``). Facts of that version the plan relies on:

- recipe functions live in ``megatron.bridge.recipes.nemotronh.h100.<model>`` under their current
  names; ``megatron.bridge.recipes.nemotronh.<model>_sft_config`` are compatibility aliases;
- a LoRA/PEFT object is callable, so ``create_omegaconf_dict_config`` leaves ``peft`` out of the
  override tree and ``peft.dim=…`` overrides are rejected: LoRA settings are set on the recipe's
  PEFT object instead (:attr:`MegatronPlan.peft`);
- the packed collate runs ``loss_mask[tokens == eos_id] = 0`` and, with ``pad_seq_to_mult > 1``,
  ends each sub-sequence's logical length at its last non-eos token (see ``packed_data``);
- the builder creates ``{dataset_root}/packed/…`` unless ``packed_metadata_path`` is given, so the
  plan points that at scratch space and a read-only data volume works;
- the test split is only ever read from ``{dataset_root}/test.jsonl`` (unpacked), so ``do_test``
  stays off and the test shards are not evaluated by Megatron-Bridge.
"""

from __future__ import annotations

import os
import re
import shlex
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sft_common import storage
from sft_train.config import TrainConfig, pad_multiple
from sft_train.packed_data import DataInfo, check_seq_length, pad_multiple_of
from sft_train.parallel import RECIPE_SIZES, Parallelism, run_parallelism

MEGATRON_BRIDGE_VERSION = "0.6.2"
"""The Megatron-Bridge release the trainer image installs and this plan is written and tested against."""
MEGATRON_CORE_VERSION = "0.19.2"
"""The megatron-core release installed with it (the 0.19 line Megatron-Bridge 0.6 was built on)."""


@dataclass(frozen=True)
class Recipe:
    """A named Megatron-Bridge recipe: its current functions and the parallelism they default to."""

    sft: str
    peft: str
    hf_model_id: str
    """The Hugging Face architecture the recipe builds (used for the Hugging Face export)."""
    sft_parallelism: Parallelism
    """The sizes the full-SFT function sets (what an unset ``parallelism`` key keeps)."""
    peft_parallelism: Parallelism
    """The sizes the PEFT function sets."""

    def target(self, peft: bool) -> str:
        return self.peft if peft else self.sft

    def parallelism(self, peft: bool) -> Parallelism:
        return self.peft_parallelism if peft else self.sft_parallelism


_H100 = "megatron.bridge.recipes.nemotronh.h100"
RECIPES: dict[str, Recipe] = {
    # The reference recipe's full SFT and LoRA (TP 1, EP 1), as named in Megatron-Bridge 0.6.2; the
    # sizes are those the functions set (recipes/nemotronh/h100/nemotron_3_super.py: the 16-GPU full
    # SFT is TP 8, PP 1, CP 1, EP 16, ETP 1 with sequence parallelism).
    "nemotron_3_super": Recipe(
        sft=f"{_H100}.nemotron_3_super.nemotron_3_super_sft_16gpu_h100_bf16_config",
        peft=f"{_H100}.nemotron_3_super.nemotron_3_super_peft_1gpu_h100_bf16_config",
        hf_model_id="nvidia/NVIDIA-Nemotron-3-Super-120B-A12B-BF16",
        sft_parallelism=RECIPE_SIZES["nemotron_3_super"][0],
        peft_parallelism=RECIPE_SIZES["nemotron_3_super"][1],
    ),
}
MIXED_PRECISION = {"bf16": "bf16_mixed"}
"""Our precision → the Megatron-Bridge mixed-precision recipe name set on the container."""
TRACKER_FILES = ("latest_train_state.pt", "latest_checkpointed_iteration.txt")
_PLAIN = re.compile(r"^[A-Za-z0-9_./:@+-]+$")


@dataclass
class MegatronPlan:
    """Everything the megatron engine passes to Megatron-Bridge."""

    recipe: str
    """Dotted path of the recipe function."""
    recipe_kwargs: dict[str, Any]
    peft: dict[str, Any] | None
    """LoRA settings, set as attributes of the recipe's PEFT object (not overridable in 0.6.2)."""
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
            "peft": self.peft,
            "overrides": self.overrides,
            "user_overrides": self.user_overrides,
            "dataset": self.dataset,
            "resume_from": self.resume_from,
            "torchrun": shlex.join(self.torchrun),
        }


def recipe_target(recipe: str, peft: bool) -> str:
    """A known recipe name → its current Megatron-Bridge function; a dotted path is used as is."""
    if "." in recipe:
        return recipe
    known = RECIPES.get(recipe)
    if known is None:
        from sft_train.errors import TrainInputError

        raise TrainInputError(
            f"model.recipe: unknown recipe {recipe!r}; use one of {', '.join(sorted(RECIPES))} or a dotted "
            "path module.function returning a Megatron-Bridge ConfigContainer"
        )
    return known.target(peft)


def required_pad_multiple(config: TrainConfig) -> int:
    """The per-sub-sequence multiple the parallelism needs (unset sizes: the named recipe's defaults).

    Megatron-Bridge 0.6.2's THD context parallelism splits every sub-sequence into 2·CP chunks, so
    each one's runtime length (stored length − 1) must be a multiple of 2·CP; with sequence
    parallelism (TP > 1) on top, each CP rank's share is split over TP ranks too, so the multiple is
    lcm(2·CP, CP·TP) — the rule Nemotron's recipe uses. Without CP nothing is padded (1).
    """
    par = run_parallelism(config)
    return pad_multiple(par.tp, par.cp, par.sp)


def pad_multiple_problem(required: int, info: DataInfo) -> str | None:
    """Why the data cannot be trained with this parallelism, or None when its padding fits."""
    packed = pad_multiple_of(info.metadata)
    if packed % required == 0:
        return None
    return (
        f"the parallelism needs every packed sub-sequence padded to a multiple of {required} "
        f"(context parallelism: lcm(2*CP, CP*TP with sequence parallelism)), but {info.root} was packed "
        f"with pad_seq_to_mult={packed} (metadata.json); re-run sft-prep with pad_seq_to_mult: {required} "
        "(or a multiple of it), or change the parallelism"
    )


def scratch_dir() -> str:
    """Node-local space for what Megatron-Bridge writes next to the data (``SFT_SCRATCH`` or the temp dir)."""
    return os.environ.get("SFT_SCRATCH") or os.path.join(tempfile.gettempdir(), "sft-train")


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
    # SIGTERM (a preemption): Megatron-Bridge finishes the step, saves a checkpoint and exits (0.6.2
    # training/train.py checkpoint_and_decide_exit → sys.exit(0)); megatron_engine reports it as Preempted.
    items.append(("train.exit_signal_handler", True))
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
    items.append(("mixed_precision", MIXED_PRECISION[config.precision]))
    ck = config.checkpoint
    if config.model.pretrained_checkpoint:
        items.append(("checkpoint.pretrained_checkpoint", config.model.pretrained_checkpoint))
    # Starting from base weights: load weights only and start at iteration 0 (the recipe's
    # checkpoint.finetune); resuming this run's own checkpoint keeps its iteration and optimizer.
    items.append(("checkpoint.finetune", resume is None and bool(config.model.pretrained_checkpoint)))
    if ck.save:
        items.append(("checkpoint.save", ck.save))
    if ck.save_interval:
        items.append(("checkpoint.save_interval", ck.save_interval))
    items.append(("checkpoint.load", resume))
    log = config.logging
    items.append(("logger.log_interval", log.log_interval))
    if log.wandb_project:
        items.append(("logger.wandb_project", log.wandb_project))
        if log.wandb_entity:
            items.append(("logger.wandb_entity", log.wandb_entity))
        items.append(("logger.wandb_exp_name", wandb_exp_name(config)))
    return [f"{key}={format_value(value)}" for key, value in items]


def wandb_exp_name(config: TrainConfig) -> str:
    """The W&B run name: logging.wandb_exp_name, else ``<recipe>-sft`` / ``<recipe>-lora`` (the
    reference names its stage-1 run ``super3-sft``); Megatron-Bridge needs one whenever W&B is on."""
    if config.logging.wandb_exp_name:
        return config.logging.wandb_exp_name
    name = config.model.recipe.rpartition(".")[2]
    return f"{name}-{'lora' if config.peft is not None else 'sft'}"


def peft_settings(config: TrainConfig) -> dict[str, Any] | None:
    """LoRA settings as attributes of Megatron-Bridge's ``LoRA`` dataclass."""
    if config.peft is None:
        return None
    return {
        "dim": config.peft.dim,
        "alpha": config.peft.alpha,
        "dropout": config.peft.dropout,
        "target_modules": list(config.peft.target_modules),
    }


def dataset_spec(config: TrainConfig, info: DataInfo, scratch: str | None = None) -> dict[str, Any]:
    """The packed-Parquet dataset: splits/train, and splits/valid for validation when it has shards.

    ``pad_seq_to_mult`` is the multiple the data was padded with (Megatron-Bridge needs it to tell
    padding from tokens), ``packed_metadata_path`` lies in scratch space so nothing is written under
    the (possibly read-only) data dir, and the test split stays off: Megatron-Bridge would read it
    from ``{dataset_root}/test.jsonl``, not from our packed shards.
    """
    has_valid = config.data.use_validation and bool(info.shards.get("valid"))
    metadata_path = os.path.join(scratch or scratch_dir(), f"{info.pack_size}_metadata.jsonl")
    return {
        "dataset_root": info.root,
        "seq_length": info.pack_size,
        "seed": config.train.seed,
        "packed_sequence_specs": {
            "packed_sequence_size": info.pack_size,
            "packed_train_data_path": info.split_dir("train"),
            "packed_val_data_path": info.split_dir("valid") if has_valid else None,
            "packed_metadata_path": metadata_path,
            "pad_seq_to_mult": pad_multiple_of(info.metadata),
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
    find_resume: Callable[[TrainConfig], str | None] = resume_location,
) -> MegatronPlan:
    """``find_resume``: a dry run passes one that reads no remote storage (sft_train.cli)."""
    pack_size = check_seq_length(info.pack_size, config.model.seq_length)
    resume = find_resume(config)
    kwargs: dict[str, Any] = (
        {"peft_scheme": "lora"} if config.peft is not None and "." not in config.model.recipe else {}
    )
    return MegatronPlan(
        recipe=recipe_target(config.model.recipe, config.peft is not None),
        recipe_kwargs=kwargs,
        peft=peft_settings(config),
        overrides=mb_overrides(config, pack_size, resume),
        user_overrides=list(config.overrides),
        dataset=dataset_spec(config, info),
        resume_from=resume,
        torchrun=torchrun_command(config_path, nproc_per_node, nnodes, cli_overrides),
    )
