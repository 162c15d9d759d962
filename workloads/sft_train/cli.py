"""``sft-train --config FILE.yaml [--dry-run] [dotted.key=value ...]`` (also ``python -m sft_train``).

Same config loader and override syntax as ``sft-prep``. Under torchrun every rank runs this; only
global rank 0 prints the summary and writes the termination message.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
from collections.abc import Callable, Sequence
from typing import Any

import yaml

from sft_common import storage
from sft_common.config import ConfigError, load_config
from sft_common.lifetime import die_with_parent
from sft_common.result import EXIT_PREEMPTED, Reason, report_failure, report_success, run_main
from sft_train.config import TrainConfig
from sft_train.engines.outcome import Preempted
from sft_train.errors import DataError, TrainInputError
from sft_train.packed_data import SPLITS, DataInfo, check_seq_length, inspect_data
from sft_train.parallel import Parallelism


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


NOT_READ = "a dry run reads no remote storage, so it needs no credentials or network"
ASSUMED_PACK_SIZE = 4096
"""The pack size a dry run without data assumes (sft-prep's default ``pack_size``)."""


def data_for_plan(config: TrainConfig) -> tuple[DataInfo, list[str]]:
    """The data as a dry run sees it: inspected when it is there, else a stand-in and the warnings
    that say what is missing (a plan can be previewed before sft-prep has run, or on another machine)."""
    try:
        if storage.is_remote(config.data.path):
            raise DataError(f"data.path {config.data.path} is not checked: {NOT_READ}")
        return inspect_data(config.data.path), []
    except (DataError, storage.StorageError) as exc:
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


def offline_resume(
    lookup: Callable[[TrainConfig], str | None], warnings: list[str], read_local: bool = True
) -> Callable[[TrainConfig], str | None]:
    """``lookup`` (where a run would resume) as a dry run does it: remote checkpoint locations (and,
    with ``read_local`` False, any) are not read; a fresh start is shown, and said in ``warnings``."""

    def find(config: TrainConfig) -> str | None:
        places = [p for p in (config.checkpoint.load, config.checkpoint.save) if p]
        unread = [p for p in places if storage.is_remote(p) or not read_local]
        if unread:
            warnings.append(
                f"checkpoint: {', '.join(unread)} not checked for a checkpoint to resume from ({NOT_READ}); "
                "the plan shows a fresh start"
            )
            return None
        return lookup(config)

    return find


def command_block(argv: Sequence[str]) -> str:
    """A command to paste into a shell: shell-quoted, everything up to ``--config FILE`` on the first
    line, then one override per ``\\``-continued line, so no wrapping splits it and every override
    stays an argument (a YAML-folded line made the overrides a separate shell command, issue 21)."""
    quoted = [shlex.quote(a) for a in argv]
    head = argv.index("--config") + 2 if "--config" in argv else len(argv)
    lines = [" ".join(quoted[:head]), *quoted[head:]]
    return " \\\n    ".join(lines)


class _Block(str):
    """A string YAML prints as a literal block (``|``), kept byte for byte."""


class _ReportDumper(yaml.SafeDumper):
    pass


_ReportDumper.add_representer(
    _Block, lambda dumper, value: dumper.represent_scalar("tag:yaml.org,2002:str", str(value), style="|")
)


def dump_report(report: dict[str, Any]) -> str:
    """The dry-run YAML: no line folding, and the torchrun command as a copy-safe literal block."""
    report = dict(report)
    if isinstance(report.get("torchrun"), list):
        report["torchrun"] = _Block(command_block(report["torchrun"]))
    return yaml.dump(report, Dumper=_ReportDumper, sort_keys=False, width=float("inf"), allow_unicode=True)


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


def megatron_world(config: TrainConfig, args: argparse.Namespace) -> tuple[int, int, Parallelism]:
    """(GPUs per node, nodes, parallelism) of the printed torchrun, checked against the parallelism the
    run gets (the config's sizes, else the recipe's): a plan that Megatron would refuse at start-up is a
    config error here. Without ``--nnodes``, the fewest nodes that hold the parallelism."""
    from sft_train.parallel import min_nodes, run_parallelism, world_problem

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
    return nproc, nnodes, par


def dry_run_report(
    config: TrainConfig,
    info: DataInfo,
    args: argparse.Namespace,
    warnings: Sequence[str] = (),
    *,
    read_local: bool = True,
) -> dict[str, Any]:
    """Everything a run would do, as one YAML-able mapping (no Megatron-Bridge, no torch); it reads no
    remote storage (``read_local`` False: no storage at all). ``torchrun`` is the argv."""
    from sft_train.engines.hf_checkpoint import resolve_resume
    from sft_train.engines.megatron_plan import build_plan, resume_location, torchrun_command

    more: list[str] = []

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
        nproc, nnodes, par = megatron_world(config, args)
        report["parallelism"] = {
            **par.as_config(),
            "gpus": nproc * nnodes,
            "data_parallel_size": nproc * nnodes // (par.tp * par.pp * par.cp),
        }
        plan = build_plan(
            config,
            info,
            args.config,
            nproc,
            nnodes,
            args.overrides,
            find_resume=offline_resume(resume_location, more, read_local),
        )
        report["megatron_bridge"] = plan.as_dict()
        report["megatron_bridge"].pop("torchrun")
        report["torchrun"] = list(plan.torchrun)
    else:
        cmd = torchrun_command(args.config, args.nproc_per_node or 1, args.nnodes or 1, args.overrides)
        hf_resume = offline_resume(
            lambda c: resolve_resume(c.checkpoint.load, c.checkpoint.save), more, read_local
        )
        report["hf"] = {"resume_from": hf_resume(config)}
        report["torchrun"] = cmd
    if more:
        report["warnings"] = [*report.get("warnings", []), *more]
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
            report = dry_run_report(config, info, args, warnings)
            for warning in report.get("warnings", []):
                print(f"warning: {warning}", file=sys.stderr)
            sys.stdout.write(dump_report(report))
            return 0
        result = _train(config, inspect_data(config.data.path))
    except TrainInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        report_failure(exc.reason, str(exc))
        return 2
    except Preempted as exc:
        if int(os.environ.get("RANK", "0")) == 0:
            print(str(exc), file=sys.stderr)
            report_failure(Reason.PREEMPTED, str(exc), iteration=exc.iteration, checkpoints=exc.info)
        return EXIT_PREEMPTED
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


def local_write_root(config: TrainConfig) -> str:
    """Where training writes to this node's disk: ``checkpoint.save`` when it is local, else the scratch
    a remote save is written through (the megatron engine's staging, the hf engine's temp dir)."""
    save = config.checkpoint.save
    if save and not storage.is_remote(save):
        return save
    if config.engine == "megatron":
        from sft_train.checkpoint_staging import staging_root

        return str(staging_root())
    return tempfile.gettempdir()


def _train(config: TrainConfig, info: DataInfo) -> Any:
    # A full disk anywhere in training (a checkpoint save, mostly) is NoSpace naming the path, exit 1,
    # not torch's "[enforce fail at inline_container.cc] unexpected pos" with a traceback.
    with storage.space_guard(local_write_root(config)):
        if config.engine == "hf":
            from sft_train.engines import hf_engine

            return hf_engine.train(config, info)
        from sft_train.engines import megatron_engine

        return megatron_engine.train(config, info)


def die_with_torchrun() -> None:
    """A rank torchrun started (torch elastic sets ``TORCHELASTIC_RUN_ID`` and starts each worker in a
    session of its own) dies with torchrun: a SIGKILLed torchrun would otherwise leave its ranks waiting
    in a collective for peers that are gone."""
    if "TORCHELASTIC_RUN_ID" in os.environ:
        die_with_parent(os.getppid())


def main(argv: Sequence[str] | None = None) -> int:
    die_with_torchrun()
    return run_main(_main, argv)
