"""The megatron engine: Megatron-Bridge ``finetune()`` on packed Parquet (GPU, inside the trainer image).

Megatron-Bridge (≥0.4) needs Python 3.12 and CUDA, so it is imported here, lazily, and nowhere
else: the package, its tests and ``--dry-run`` work on a CPU machine without it. The config comes
from the recipe function, then our settings (:mod:`sft_train.engines.megatron_plan`), then the user's
``overrides``, applied with Megatron-Bridge's own OmegaConf/Hydra helpers so an unknown key fails
with Megatron-Bridge's message.

Preemption: the container sets ``train.exit_signal_handler``, so on SIGTERM Megatron-Bridge 0.6.2
finishes the step, saves a checkpoint (firing ``on_checkpoint_save``) and leaves ``finetune()``
through ``sys.exit(0)`` (training/train.py, ``checkpoint_and_decide_exit`` and the end of ``train``).
A ``SystemExit(0)`` before ``train_iters`` that ``train.exit_interval`` does not explain is that
exit: it becomes :class:`Preempted` (exit 143), as on the hf engine. Each save gets its ledger record
(:mod:`sft_train.ledger`) in the iteration's directory before it is uploaded, and the run's identity is
checked against the newest checkpoint before anything starts.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sft_common import storage
from sft_common.progress import Progress
from sft_common.result import CheckpointInfo
from sft_train import checkpoint_staging, ledger, prechecks
from sft_train.config import TrainConfig
from sft_train.engines.megatron_plan import (
    MEGATRON_BRIDGE_VERSION,
    RECIPES,
    MegatronPlan,
    build_plan,
    pad_multiple,
    pad_multiple_problem,
    required_pad_multiple,
    resume_location,
)
from sft_train.engines.outcome import Preempted, TrainResult
from sft_train.errors import CheckpointNotFound, InvalidOverride, PadMultipleMismatch, TrainInputError
from sft_train.packed_data import DataInfo

_OURS = ("megatron", "megatron.bridge", "megatron.core")


class MegatronBridgeMissing(RuntimeError):
    reason = "MegatronBridgeMissing"


class MegatronBridgeBroken(RuntimeError):
    """Megatron-Bridge is installed but one of its imports fails (a missing or mismatched dependency)."""

    reason = "MegatronBridgeImportError"


def installed_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("megatron-bridge")
    except metadata.PackageNotFoundError:
        return "none"


def _import(name: str) -> Any:
    """A Megatron-Bridge module; telling "not installed" from "installed but an import inside fails"."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        missing = exc.name if isinstance(exc, ModuleNotFoundError) else None
        if missing in _OURS or (missing == name == "omegaconf"):
            raise MegatronBridgeMissing(
                f"engine megatron needs Megatron-Bridge {MEGATRON_BRIDGE_VERSION} ({name}: {exc}); run it in "
                "the trainer image, or use engine: hf on a machine without it"
            ) from exc
        if missing and missing.startswith("megatron.bridge.") and f"{name}.".startswith(f"{missing}."):
            raise MegatronBridgeBroken(
                f"the installed Megatron-Bridge ({installed_version()}) has no module {missing}; "
                f"this trainer is written for Megatron-Bridge {MEGATRON_BRIDGE_VERSION}"
            ) from exc
        raise MegatronBridgeBroken(
            f"Megatron-Bridge is installed ({installed_version()}) but importing {name} failed: "
            f"{type(exc).__name__}: {exc}; the trainer image needs Megatron-Bridge {MEGATRON_BRIDGE_VERSION} "
            "with its dependencies (transformer_engine, megatron-core) intact"
        ) from exc


def resolve_recipe(target: str) -> Any:
    module_name, _, func_name = target.rpartition(".")
    if not module_name.startswith("megatron."):  # the user's own recipe module
        try:
            importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and f"{module_name}.".startswith(f"{exc.name}."):
                raise TrainInputError(f"model.recipe: no module {exc.name} (importing {target})") from exc
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
    """The packed-Parquet ``GPTSFTDatasetConfig`` of Megatron-Bridge 0.6.2 (offline packing specs).

    Its packed metadata file lies in scratch space: the directory is made here, on every node."""
    packed = dict(spec["packed_sequence_specs"])
    if packed.get("packed_metadata_path"):
        Path(packed["packed_metadata_path"]).parent.mkdir(parents=True, exist_ok=True)
    builders = _import("megatron.bridge.data.builders")
    packing = _import("megatron.bridge.data.packing")
    return builders.GPTSFTDatasetConfig(
        dataset_root=spec["dataset_root"],
        seq_length=spec["seq_length"],
        seed=spec["seed"],
        dataloader_type=spec["dataloader_type"],
        do_validation=spec["do_validation"],
        do_test=spec["do_test"],
        enable_offline_packing=True,
        offline_packing_specs=packing.PackedSequenceSpecs(**packed),
    )


def apply_peft(cfg: Any, settings: dict[str, Any] | None) -> None:
    """LoRA settings onto the recipe's PEFT object (Megatron-Bridge keeps it out of the override tree)."""
    if settings is None:
        return
    peft = getattr(cfg, "peft", None)
    if peft is None:
        raise TrainInputError("peft: the recipe built no PEFT object; use a recipe function with LoRA")
    fields = getattr(peft, "__dataclass_fields__", {})
    for key, value in settings.items():
        if key not in fields:
            raise InvalidOverride(
                f"peft.{key}: {type(peft).__name__} of this Megatron-Bridge has no field {key!r}"
            )
        setattr(peft, key, value)


def check_parallelism_padding(cfg: Any, info: DataInfo) -> None:
    """The data's padding against the parallelism the container really has (after every override)."""
    model = cfg.model
    need = pad_multiple(
        int(getattr(model, "tensor_model_parallel_size", 1) or 1),
        int(getattr(model, "context_parallel_size", 1) or 1),
        bool(getattr(model, "sequence_parallel", False)),
    )
    problem = pad_multiple_problem(need, info)
    if problem:
        raise PadMultipleMismatch(f"data.path: {problem}")


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
    apply_peft(cfg, plan.peft)
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


def finished_step(step: int, config: TrainConfig) -> bool:
    return step >= config.train.train_iters


def newest_checkpoint(save: str) -> tuple[str, int] | None:
    """(URI, iteration) of the newest complete Megatron-Bridge checkpoint under ``save`` (its tracker)."""
    iteration = checkpoint_staging.latest_iteration(save)
    if not iteration:
        return None
    return storage.join(save, checkpoint_staging.iteration_dir(iteration)), iteration


def ledger_callbacks(
    base: type,
    local_save: str,
    final_uri: Any,
    ident: dict[str, Any],
    progress: Progress,
    last: dict[str, Any],
) -> tuple[Any, Any]:
    """Two Megatron-Bridge callbacks around the upload of a save (``on_checkpoint_save`` fires on every
    rank after the save): the first writes the ledger record into the local iteration directory
    (rank 0, before the upload takes it along), the second reports the complete checkpoint."""

    def rank() -> int:
        return int(os.environ.get("RANK", "0"))

    class _Record(base):
        def on_checkpoint_save(self, context: Any) -> None:
            iteration = int(context.state.train_state.step)
            last["saved"] = iteration
            if rank() != 0:
                return
            directory = Path(local_save) / checkpoint_staging.iteration_dir(iteration)
            if directory.is_dir():
                last["record"] = rec = ledger.record(iteration, ident)
                storage.write_text(str(directory / ledger.RECORD), json.dumps(rec, sort_keys=True))

    class _Report(base):
        def on_checkpoint_save(self, context: Any) -> None:
            iteration = int(context.state.train_state.step)
            rec = last.get("record")  # rank 0 wrote it for this save: no read of the uploaded copy
            rec = rec if rec is not None and rec.get("iteration") == iteration else None
            info = ledger.checkpoint_info(final_uri(iteration), iteration, last.get("resumed_from"), rec)
            last["info"] = info
            if rank() == 0:
                ledger.report_checkpoint(progress, info)

    return _Record(), _Report()


def stopped_by_signal(exc: SystemExit, step: int, config: TrainConfig) -> bool:
    """Megatron-Bridge's ``sys.exit(0)`` before the last iteration, not at a ``train.exit_interval``
    multiple: the exit after a signal's checkpoint (any other exit code is a failure, re-raised)."""
    if exc.code not in (0, None) or finished_step(step, config):
        return False
    interval = config.train.exit_interval
    return not (interval and step and step % interval == 0)


def train(config: TrainConfig, info: DataInfo) -> TrainResult:
    if not config.checkpoint.save:
        raise TrainInputError(
            "checkpoint.save is required: it is where checkpoints go and where a restart resumes"
        )
    resolution = ledger.resolve(config, info, newest_checkpoint)  # the drift guard, before anything
    rank = int(os.environ.get("RANK", "0"))
    if resolution.note and rank == 0:
        print(resolution.note, file=sys.stderr, flush=True)
    if resolution.save != config.checkpoint.save:
        config = ledger.with_save(config, resolution.save)
    resumed = resolution.newest  # checkpoint.save listed once, by the drift guard
    check_base_checkpoint(config, resume_location(config))
    problem = pad_multiple_problem(required_pad_multiple(config), info)
    if problem:
        raise PadMultipleMismatch(f"data.path: {problem}")
    hf_target = config.hf_export_location  # the user's location (remote or not), before staging
    staged = checkpoint_staging.stage(config)  # s3:// checkpoints → node-local paths, saves uploaded
    config = staged.config
    info = localize_data(info)
    plan = build_plan(config, info)
    cfg = build_container(config, plan)
    if installed_version() != MEGATRON_BRIDGE_VERSION and int(os.environ.get("RANK", "0")) == 0:
        print(
            f"warning: Megatron-Bridge {installed_version()} is installed; this trainer is written and "
            f"tested for {MEGATRON_BRIDGE_VERSION} (trained labels, padding and override keys can differ)",
            file=sys.stderr,
        )
    check_parallelism_padding(cfg, info)
    prechecks.run(config, info, prechecks.megatron_model(config, cfg, plan.resume_from))
    finetune = _import("megatron.bridge.training.finetune").finetune
    forward_step = _import("megatron.bridge.training.gpt_step").forward_step
    torch = _import("torch")
    start = resumed[1] if resumed else 0
    progress = Progress(
        "train",
        total=config.train.train_iters,
        unit="iterations",
        rates=("tokens",),
        mode=None if rank == 0 else "off",
        owner=rank == 0,
        initial=start,
    )
    last: dict[str, Any] = {"resumed_from": start or None}
    if rank == 0 and plan.resume_from:
        print(f"resuming from {plan.resume_from}", flush=True)
    base = _import("megatron.bridge.training.callbacks").Callback
    record, report = ledger_callbacks(
        base, str(cfg.checkpoint.save), staged.checkpoint_uri, resolution.identity, progress, last
    )
    stop: SystemExit | None = None
    try:
        finetune(
            config=cfg,
            forward_step_func=forward_step,
            callbacks=[
                progress_callback(config, info.pack_size, progress, last),
                record,
                staged.callback(base, _barrier(torch)),
                report,
            ],
        )
    except SystemExit as exc:  # Megatron-Bridge leaves train() with sys.exit after a signal or exit_interval
        stop = exc
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    progress.close()
    step = int(last.get("saved") or last.get("step") or start)
    saved: CheckpointInfo | None = last.get("info")
    if stop is not None and stopped_by_signal(stop, step, config):
        raise Preempted(step, staged.checkpoint_uri(step), saved)
    if stop is not None and stop.code not in (0, None):
        raise stop
    save = str(cfg.checkpoint.save)
    checkpoint = storage.join(save, f"iter_{step:07d}") if step else save  # local for the export
    hf_export = None
    target = hf_target
    known = RECIPES.get(config.model.recipe)
    hf_model_id = config.model.hf_model_id or (known.hf_model_id if known else None)
    if target and finished_step(step, config) and rank == 0:
        if not hf_model_id:
            print(
                "warning: the Hugging Face export needs model.hf_model_id for this recipe; skipping it "
                "(set checkpoint.hf_export: false to silence this)",
                file=sys.stderr,
            )
        else:
            bridge = _import("megatron.bridge").AutoBridge.from_hf_pretrained(hf_model_id)
            if storage.is_remote(target):
                local = checkpoint_staging.local_dir(target, "hf-export")
                bridge.export_ckpt(megatron_path=checkpoint, hf_path=str(local))
                storage.upload_tree(local, target)
            else:
                bridge.export_ckpt(megatron_path=checkpoint, hf_path=target)
            hf_export = target
    finished = finished_step(step, config)
    return TrainResult(
        staged.checkpoint_uri(step), step, last.get("loss"), [], hf_export, finished, None, start, saved
    )


def _barrier(torch: Any) -> Any:
    def barrier() -> None:
        if torch.distributed.is_initialized():
            torch.distributed.barrier()

    return barrier
