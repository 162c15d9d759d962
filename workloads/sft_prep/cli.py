"""``sft-prep``: OpenAI chat datasets → packed Parquet splits + blend.json + metadata.json.

    sft-prep --config prep.yaml [--sample N] [--force] [--worker-index I --num-workers N] [key=value ...]

Overrides use dotted keys (``tokenizer.model=/tok``, ``datasets.0.path=s3://b/x.jsonl``). Every config
problem (unknown key, wrong type, missing file) exits with status 2 and a message naming the key,
before any shard is written; a success writes the JSON result to stdout and the termination log.
"""

from __future__ import annotations

import argparse
import signal
import threading
from collections.abc import Sequence

from sft_common.config import ConfigError, load_config
from sft_common.result import PrepResult, report_success, run_main
from sft_prep.config import PrepConfig


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sft-prep",
        description="Render OpenAI-format chats with a chat template, tokenize with a loss mask, pack into "
        "bins and write Megatron-Bridge packed Parquet splits.",
        epilog="Example: sft-prep --config prep.yaml pack_size=8192 tokenizer.model=/tok --sample 1000",
    )
    parser.add_argument("--config", required=True, help="YAML config file (local path, file:// or s3://)")
    parser.add_argument(
        "--sample", type=int, metavar="N", help="read at most N rows per dataset (sets sample=N)"
    )
    parser.add_argument("--force", action="store_true", help="redo every shard: a new run (sets force=true)")
    parser.add_argument(
        "--worker-index", type=int, default=0, metavar="I", help="this worker's index (0-based)"
    )
    parser.add_argument("--num-workers", type=int, default=1, metavar="N", help="workers sharing the shards")
    parser.add_argument(
        "--processes",
        type=int,
        default=0,
        metavar="P",
        help="processes that parse/render/tokenize (default 0: 1 for small inputs, else the CPUs, max 8)",
    )
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="dotted config overrides")
    return parser


def parse(argv: Sequence[str]) -> tuple[PrepConfig, int, int, int]:
    """Arguments → validated config; raises ConfigError (exit 2) for anything the user must fix."""
    parser = build_parser()
    try:
        args = parser.parse_intermixed_args(list(argv))
    except SystemExit as exc:  # argparse already printed usage; keep its exit status for --help
        if exc.code == 0:
            raise
        raise ConfigError("invalid command line (see usage above)") from None
    overrides = list(args.overrides)
    if args.sample is not None:
        overrides.append(f"sample={args.sample}")
    if args.force:
        overrides.append("force=true")
    if args.num_workers < 1:
        raise ConfigError(f"--num-workers must be ≥ 1 (got {args.num_workers})")
    if not 0 <= args.worker_index < args.num_workers:
        raise ConfigError(f"--worker-index must be in 0..{args.num_workers - 1} (got {args.worker_index})")
    if args.processes < 0:
        raise ConfigError(f"--processes must be ≥ 0 (got {args.processes}; 0 = automatic)")
    cfg = load_config(PrepConfig, args.config, overrides)
    return cfg, args.worker_index, args.num_workers, args.processes


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM (pod deletion, eviction) as an interrupt: cleanup runs (a single worker frees the
    output's lease at once) before the grace period ends in SIGKILL."""
    raise KeyboardInterrupt(f"signal {signum}")


def _main(argv: Sequence[str]) -> int:
    from sft_prep.pipeline import run

    cfg, worker_index, num_workers, processes = parse(argv)
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if main_thread else None
    try:
        report_success(PrepResult.model_validate(run(cfg, worker_index, num_workers, processes=processes)))
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(_main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
