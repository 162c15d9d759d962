"""The megatron engine: Megatron-Bridge ``finetune()`` on packed Parquet (GPU, inside the trainer image).

Megatron-Bridge (≥0.4) needs Python 3.12 and CUDA, so it is imported here, lazily, and nowhere
else: the package, its tests and ``--dry-run`` work on a CPU machine without it. The config comes
from the recipe function, then our settings (:mod:`sft_train.engines.megatron_plan`), then the user's
``overrides``, applied with Megatron-Bridge's own OmegaConf/Hydra helpers so an unknown key fails
with Megatron-Bridge's message.
"""

from __future__ import annotations

import importlib
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sft_common import storage
from sft_common.progress import Progress
from sft_train.config import TrainConfig
from sft_train.engines.megatron_plan import MegatronPlan, build_plan, resume_location
from sft_train.engines.outcome import TrainResult
from sft_train.errors import CheckpointNotFound, InvalidOverride, TrainInputError
from sft_train.packed_data import DataInfo


class MegatronBridgeMissing(RuntimeError):
    reason = "MegatronBridgeMissing"


def _import(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise MegatronBridgeMissing(
            f"engine megatron needs Megatron-Bridge ({name}: {exc}); run it in the trainer image, "
            "or use engine: hf on a machine without it"
        ) from exc


def resolve_recipe(target: str) -> Any:
    module_name, _, func_name = target.rpartition(".")
    module = _import(module_name)
    func = getattr(module, func_name, None)
    if func is None:
        raise TrainInputError(f"model.recipe: {module_name} has no function {func_name}")
    return func


def localize_data(info: DataInfo) -> DataInfo:
    """Megatron-Bridge reads local (or msc://) paths: copy s3:// splits to node-local disk once per node."""
    if not storage.is_remote(info.root):
        return info
    cache = (
        Path(os.environ.get("SFT_DATA_CACHE", tempfile.gettempdir()))
        / "sft-data"
        / info.root.replace("/", "_")
    )
    done = cache / ".complete"
    if int(os.environ.get("LOCAL_RANK", "0")) == 0 and not done.exists():
        for split in ("train", "valid"):
            if info.shards.get(split):
                storage.download_tree(info.split_dir(split), cache / "splits" / split)
        done.write_text("ok\n")
    while not done.exists():  # the other local ranks wait for local rank 0
        time.sleep(2)
    shards = {s: sorted(str(p) for p in (cache / "splits" / s).glob("*.parquet")) for s in info.shards}
    return DataInfo(root=str(cache), pack_size=info.pack_size, shards=shards, metadata=info.metadata)


def check_base_checkpoint(config: TrainConfig, resume_from: str | None) -> None:
    """Fail early and clearly, before Megatron-Bridge spends minutes setting up, when there are no weights."""
    pretrained = config.model.pretrained_checkpoint
    if pretrained and not storage.exists(pretrained):
        raise CheckpointNotFound(f"model.pretrained_checkpoint {pretrained} does not exist")
    if not pretrained and resume_from is None:
        raise CheckpointNotFound(
            "model.pretrained_checkpoint is not set and checkpoint.save holds no checkpoint to resume from; "
            "point it at a Megatron checkpoint (AutoBridge.import_ckpt converts a Hugging Face one)"
        )
    if config.peft is not None and not pretrained:
        raise CheckpointNotFound(
            "LoRA needs model.pretrained_checkpoint: the adapters sit on the base weights"
        )


def build_dataset_config(spec: dict[str, Any]) -> Any:
    """The packed-Parquet dataset config for the installed Megatron-Bridge version."""
    packed = dict(spec["packed_sequence_specs"])
    common = {
        "dataset_root": spec["dataset_root"],
        "seq_length": spec["seq_length"],
        "dataloader_type": spec["dataloader_type"],
        "do_validation": spec["do_validation"],
        "do_test": spec["do_test"],
    }
    try:  # 0.6+: GPTSFTDatasetConfig with offline packing
        builders = importlib.import_module("megatron.bridge.data.builders")
        packing = importlib.import_module("megatron.bridge.data.packing")
        return builders.GPTSFTDatasetConfig(
            **common,
            enable_offline_packing=True,
            offline_packing_specs=packing.PackedSequenceSpecs(**packed),
        )
    except (ImportError, AttributeError):
        pass
    config_mod = _import("megatron.bridge.training.config")
    packed_mod = _import("megatron.bridge.data.datasets.packed_sequence")
    return config_mod.FinetuningDatasetConfig(
        **common, packed_sequence_specs=packed_mod.PackedSequenceSpecs(**packed)
    )


def build_container(config: TrainConfig, plan: MegatronPlan) -> Any:
    """Recipe → our dataset → our overrides → the user's overrides, with Megatron-Bridge's helpers."""
    omegaconf = _import("omegaconf")
    utils = _import("megatron.bridge.training.utils.omegaconf_utils")
    cfg = resolve_recipe(plan.recipe)(**plan.recipe_kwargs)
    cfg.dataset = build_dataset_config(plan.dataset)
    merged, excluded = utils.create_omegaconf_dict_config(cfg)
    try:
        merged = utils.parse_hydra_overrides(merged, plan.overrides)
    except Exception as exc:  # our keys not in this Megatron-Bridge version: say so, keep its message
        raise InvalidOverride(f"Megatron-Bridge rejected a setting derived from the config: {exc}") from exc
    if plan.user_overrides:
        try:
            merged = utils.parse_hydra_overrides(merged, plan.user_overrides)
        except Exception as exc:
            raise InvalidOverride(
                f"overrides: Megatron-Bridge rejected {plan.user_overrides}: {exc}"
            ) from exc
    utils.apply_overrides(cfg, omegaconf.OmegaConf.to_container(merged, resolve=True), excluded)
    return cfg


def progress_callback(config: TrainConfig, pack_size: int, progress: Progress, last: dict[str, Any]) -> Any:
    """A Megatron-Bridge callback feeding our progress reporter from rank 0 after every step."""
    callbacks = _import("megatron.bridge.training.callbacks")
    torch = _import("torch")
    gbs = config.train.global_batch_size

    class _Progress(callbacks.Callback):  # type: ignore[name-defined]
        def on_train_step_end(self, context: Any) -> None:
            if torch.distributed.is_initialized() and torch.distributed.get_rank() != 0:
                return
            # Megatron-Bridge fires this before it increments train_state.step: +1 is the iteration done.
            step = int(context.state.train_state.step) + 1
            metrics: dict[str, Any] = {
                "tokens": (step - last.setdefault("start", step - 1)) * gbs * pack_size
            }
            loss_dict = context.loss_dict or {}
            loss = loss_dict.get("lm loss")
            if loss is not None:
                metrics["loss"] = float(loss)
                last["loss"] = metrics["loss"]
            if context.optimizer is not None:
                metrics["learning_rate"] = float(context.optimizer.param_groups[0]["lr"])
            last["step"] = step
            progress.update(completed=step, **metrics)

    return _Progress()


def train(config: TrainConfig, info: DataInfo) -> TrainResult:
    if not config.checkpoint.save:
        raise TrainInputError(
            "checkpoint.save is required: it is where checkpoints go and where a restart resumes"
        )
    check_base_checkpoint(config, resume_location(config))
    info = localize_data(info)
    plan = build_plan(config, info)
    cfg = build_container(config, plan)
    finetune = _import("megatron.bridge.training.finetune").finetune
    forward_step = _import("megatron.bridge.training.gpt_step").forward_step
    torch = _import("torch")
    rank = int(os.environ.get("RANK", "0"))
    progress = Progress(
        "train",
        total=config.train.train_iters,
        unit="iterations",
        rates=("tokens",),
        mode=None if rank == 0 else "off",
        owner=rank == 0,
    )
    last: dict[str, Any] = {}
    if rank == 0 and plan.resume_from:
        print(f"resuming from {plan.resume_from}", flush=True)
    finetune(
        config=cfg,
        forward_step_func=forward_step,
        callbacks=[progress_callback(config, info.pack_size, progress, last)],
    )
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    progress.close()
    step = int(last.get("step", 0))
    save = str(cfg.checkpoint.save)
    checkpoint = storage.join(save, f"iter_{step:07d}") if step else save
    hf_export = None
    if config.checkpoint.hf_export:
        if not config.model.hf_model_id:
            print(
                "warning: checkpoint.hf_export needs model.hf_model_id; skipping the export", file=sys.stderr
            )
        else:
            bridge = _import("megatron.bridge").AutoBridge.from_hf_pretrained(config.model.hf_model_id)
            bridge.export_ckpt(megatron_path=checkpoint, hf_path=config.checkpoint.hf_export)
            hf_export = config.checkpoint.hf_export
    finished = step >= config.train.train_iters
    return TrainResult(checkpoint, step, last.get("loss"), [], hf_export, finished)
