"""``sft-train --config FILE.yaml [--dry-run] [dotted.key=value ...]`` (also ``python -m sft_train``).

Same config loader and override syntax as ``sft-prep``. Under torchrun every rank runs this; only
global rank 0 prints the summary and writes the termination message.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

import yaml

from sft_common.config import ConfigError, load_config
from sft_common.result import report_failure, report_success, run_main
from sft_train.config import TrainConfig
from sft_train.errors import DataError, TrainInputError
from sft_train.packed_data import SPLITS, DataInfo, check_seq_length, inspect_data


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="sft-train",
        description="Supervised fine-tuning on sft-prep's packed Parquet "
        "(Megatron-Bridge, or transformers on CPU).",
    )
    parser.add_argument("--config", required=True, help="YAML config file (local path or URI)")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the resolved config, the Megatron-Bridge overrides and the torchrun command; "
        "train nothing (missing or unreadable data is a warning, not an error)",
    )
    parser.add_argument(
        "--nproc-per-node",
        type=int,
        default=None,
        help="GPUs per node (for the printed command; default 8 for engine megatron, 1 for hf)",
    )
    parser.add_argument(
        "--nnodes",
        type=int,
        default=None,
        help="nodes (for the printed command; default: the fewest that hold the parallelism, 1 for hf)",
    )
    parser.add_argument(
        "overrides", nargs="*", metavar="key=value", help="config overrides, e.g. train.train_iters=10"
    )
    try:
        return parser.parse_intermixed_args(list(argv))
    except SystemExit as exc:  # argparse printed the usage; keep --help's exit 0, report the rest
        if exc.code == 0:
            raise
        raise ConfigError("invalid command line (see usage above)") from None


ASSUMED_PACK_SIZE = 4096
"""The pack size a dry run without data assumes (sft-prep's default ``pack_size``)."""


def data_for_plan(config: TrainConfig) -> tuple[DataInfo, list[str]]:
    """The data as a dry run sees it: inspected when it is there, else a stand-in and the warnings
    that say what is missing (a plan can be previewed before sft-prep has run, or on another machine)."""
    try:
        return inspect_data(config.data.path), []
    except DataError as exc:
        warnings = [f"data: {exc}"]
        seq = config.model.seq_length
        if seq is None:
            warnings.append(
                f"data: the pack size is unknown without metadata.json; the plan assumes {ASSUMED_PACK_SIZE} "
                "(sft-prep's default pack_size); set model.seq_length to preview another"
            )
        warnings.append(
            "data: validation shards, and the pad multiple the data was packed with, are unknown; "
            "the plan shows no validation and pad_seq_to_mult 1"
        )
        root = config.data.path.rstrip("/") or config.data.path
        info = DataInfo(root=root, pack_size=seq or ASSUMED_PACK_SIZE, shards={s: [] for s in SPLITS})
        return info, warnings


def config_warnings(config: TrainConfig) -> list[str]:
    """Settings that are valid but almost certainly not meant (printed before a run or a dry run)."""
    out = []
    warmup, iters = config.scheduler.lr_warmup_iters, config.train.train_iters
    if warmup >= iters:
        # Megatron's warm-up: the step of iteration i (0-based) uses lr × i / warmup (engines/schedule.py)
        peak = config.lr * (iters - 1) / warmup
        out.append(
            f"scheduler.lr_warmup_iters {warmup} is not below train.train_iters {iters}: the learning rate "
            f"never reaches optimizer.lr {config.lr:g} (it peaks at {peak:.3g} on the last iteration); "
            f"set scheduler.lr_warmup_iters below {iters} (e.g. {max(iters // 10, 0)})"
        )
    return out


def megatron_world(config: TrainConfig, args: argparse.Namespace) -> tuple[int, int]:
    """(GPUs per node, nodes) of the printed torchrun, checked against the parallelism the run gets
    (the config's sizes, else the recipe's): a plan that Megatron would refuse at start-up is a config
    error here. Without ``--nnodes``, the fewest nodes that hold the parallelism."""
    from sft_train.engines.megatron_plan import run_parallelism
    from sft_train.parallel import min_nodes, world_problem

    par = run_parallelism(config)
    nproc = args.nproc_per_node or 8
    nnodes = args.nnodes or min_nodes(par, nproc)
    problem = world_problem(
        par,
        nnodes,
        nproc,
        config.train.global_batch_size,
        config.train.micro_batch_size,
        where="--nnodes × --nproc-per-node",
    )
    if problem:
        raise TrainInputError(problem)
    return nproc, nnodes


def dry_run_report(
    config: TrainConfig, info: DataInfo, args: argparse.Namespace, warnings: Sequence[str] = ()
) -> dict[str, Any]:
    """Everything a run would do, as one YAML-able mapping (no Megatron-Bridge, no torch)."""
    from sft_train.engines.hf_checkpoint import resolve_resume
    from sft_train.engines.megatron_plan import build_plan, torchrun_command

    seq = check_seq_length(info.pack_size, config.model.seq_length)
    report: dict[str, Any] = {
        "config": config.model_dump(mode="json"),
        "data": {
            "path": info.root,
            "found": bool(info.shards.get("train")),
            "pack_size": seq,
            "shards": {split: len(files) for split, files in info.shards.items()},
        },
    }
    if warnings:
        report["warnings"] = list(warnings)
    if config.engine == "megatron":
        from sft_train.engines.megatron_plan import run_parallelism

        nproc, nnodes = megatron_world(config, args)
        par = run_parallelism(config)
        report["parallelism"] = {
            **par.as_config(),
            "gpus": nproc * nnodes,
            "data_parallel_size": nproc * nnodes // (par.tp * par.pp * par.cp),
        }
        plan = build_plan(config, info, args.config, nproc, nnodes, args.overrides)
        report["megatron_bridge"] = plan.as_dict()
        report["torchrun"] = report["megatron_bridge"].pop("torchrun")
    else:
        cmd = torchrun_command(args.config, args.nproc_per_node or 1, args.nnodes or 1, args.overrides)
        report["hf"] = {"resume_from": resolve_resume(config.checkpoint.load, config.checkpoint.save)}
        report["torchrun"] = " ".join(cmd)
    return report


def _main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    try:
        config = load_config(TrainConfig, args.config, args.overrides)
        if int(os.environ.get("RANK", "0")) == 0:
            for warning in config_warnings(config):
                print(f"warning: {warning}", file=sys.stderr)
        if args.dry_run:
            info, warnings = data_for_plan(config)
            for warning in warnings:
                print(f"warning: {warning}", file=sys.stderr)
            sys.stdout.write(yaml.safe_dump(dry_run_report(config, info, args, warnings), sort_keys=False))
            return 0
        result = _train(config, inspect_data(config.data.path))
    except TrainInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        report_failure(exc.reason, str(exc))
        return 2
    if int(os.environ.get("RANK", "0")) == 0:
        done = "finished" if result.finished else "stopped early (train.exit_interval)"
        if result.start_iteration is not None and result.start_iteration >= result.last_iteration:
            done = "already finished (nothing left to train)"
        loss = "n/a" if result.final_loss is None else f"{result.final_loss:.4f}"
        print(
            f"training {done}: iteration {result.last_iteration}, final loss {loss} "
            f"(mean over the last logging.log_interval iterations)"
        )
        print(f"checkpoint: {result.checkpoint}")
        if result.hf_export:
            print(f"hugging face export: {result.hf_export}")
        report_success(result.summary())
    return 0


def _train(config: TrainConfig, info: DataInfo) -> Any:
    if config.engine == "hf":
        from sft_train.engines import hf_engine

        return hf_engine.train(config, info)
    from sft_train.engines import megatron_engine

    return megatron_engine.train(config, info)


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(_main, argv)
