"""``python -m sft_operator`` / ``sft-operator``: run the operator.

Scope: ``--namespace`` (repeatable; kopf globs like ``team-*`` work) or ``--all-namespaces``.
One active instance: kopf peering (``KopfPeering`` per namespace or ``ClusterKopfPeering`` cluster-wide,
installed with the CRDs); a newer instance gets a higher priority, so during a rolling update the old
pod pauses as soon as the new one is up. ``--standalone`` disables peering (local runs, tests).

Probes and metrics: ``--liveness`` (kopf's ``/healthz``: the event loop runs), ``--readiness``
(``/readyz``: logged in and the API server accepts the credentials) and ``--metrics`` (Prometheus
``/metrics``); see :mod:`sft_operator.probes` and :mod:`sft_operator.metrics`. ``--log-format json``
writes one JSON object per line (kopf's formatter: ``message``, ``severity``, ``timestamp`` and the
object a message is about under ``object``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
from collections.abc import Sequence

import kopf

from sft_operator.handlers import OperatorConfig, build_registry
from sft_operator.probes import parse_endpoint

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="sft-operator", description="Run the sft-operator (kopf).")
    scope = parser.add_mutually_exclusive_group(required=True)
    scope.add_argument(
        "-n",
        "--namespace",
        action="append",
        dest="namespaces",
        metavar="NS",
        help="watch this namespace (repeatable; globs such as 'team-*' allowed)",
    )
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace")
    parser.add_argument(
        "--liveness",
        default="http://0.0.0.0:8080/healthz",
        help="liveness endpoint URL (default %(default)s); 'none' disables it",
    )
    parser.add_argument(
        "--readiness",
        default="http://0.0.0.0:8081/readyz",
        help="readiness endpoint URL (default %(default)s); 'none' disables it",
    )
    parser.add_argument(
        "--metrics",
        default="http://0.0.0.0:9090/metrics",
        help="Prometheus metrics endpoint URL (default %(default)s); 'none' disables it",
    )
    parser.add_argument(
        "--peering", default="sft-operator", help="kopf peering object name (default %(default)s)"
    )
    parser.add_argument(
        "--standalone", action="store_true", help="no peering: assume this is the only instance"
    )
    parser.add_argument(
        "--priority",
        type=int,
        default=None,
        help="peering priority (default: start time, so the newest instance wins)",
    )
    parser.add_argument("--log-level", default="INFO", choices=LEVELS, type=str.upper)
    parser.add_argument(
        "--log-format", default="text", choices=("text", "json"), help="log lines as text or JSON"
    )
    parser.add_argument(
        "--concurrency", type=int, default=32, help="reconciles at once (default %(default)s)"
    )
    parser.add_argument(
        "--log-tail-lines",
        type=int,
        default=20,
        help="log lines of a failed pod copied into status.failure when its termination message has "
        "none (default %(default)s); 0 reads no logs, so the operator needs no pods/log permission",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging(args.log_level, args.log_format)
    for url in (args.readiness, args.metrics):
        if url != "none":
            try:
                parse_endpoint(url)
            except ValueError as exc:
                raise SystemExit(f"sft-operator: {exc}") from None
    config = OperatorConfig(
        concurrency=args.concurrency,
        log_tail_lines=max(0, args.log_tail_lines),
        readiness_endpoint=None if args.readiness == "none" else args.readiness,
        metrics_endpoint=None if args.metrics == "none" else args.metrics,
    )
    registry = build_registry(config)
    priority = args.priority if args.priority is not None else int(time.time()) % (2**31)
    asyncio.run(
        kopf.operator(
            registry=registry,
            clusterwide=bool(args.all_namespaces),
            namespaces=args.namespaces or (),
            liveness_endpoint=None if args.liveness == "none" else args.liveness,
            # kopf treats an explicit peering name as "peering is mandatory", even with standalone
            standalone=args.standalone,
            peering_name=None if args.standalone else args.peering,
            priority=priority,
        )
    )
    return 0


def configure_logging(level_name: str, log_format: str) -> None:
    """Root logging at ``level_name``, as text or as kopf's JSON lines (``--log-format``)."""
    level = getattr(logging, level_name)
    if log_format == "json":
        kopf.configure(log_format=kopf.LogFormat.JSON, log_refkey="object", log_prefix=False)
        logging.getLogger().setLevel(level)
    else:
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kopf").setLevel(max(level, logging.INFO))
    logging.getLogger("aiohttp").setLevel(logging.WARNING)


if __name__ == "__main__":
    raise SystemExit(main())
