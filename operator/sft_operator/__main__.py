"""``python -m sft_operator`` / ``sft-operator``: run the operator.

Scope: ``--namespace`` (repeatable; kopf globs like ``team-*`` work) or ``--all-namespaces``.
One active instance: kopf peering (``KopfPeering`` per namespace or ``ClusterKopfPeering`` cluster-wide,
installed with the CRDs); a newer instance gets a higher priority, so during a rolling update the old
pod pauses as soon as the new one is up. ``--standalone`` disables peering (local runs, tests).

The default priority is unique per instance (:func:`default_priority`: start time in microseconds and
a hash of the pod name), because kopf pauses *every* instance when two share the highest priority, and
two replicas of one Deployment start within the same second. Why peering and not a Lease: kopf's
newest-wins peering hands a rollout over at once (the new pod works as soon as it is up, the old one
pauses on the next peering event), and a standby is ready (see :mod:`sft_operator.probes`), so
``maxSurge: 1, maxUnavailable: 0`` rolls 1 or 2 replicas without waiting for a lease to expire; the
moment both run is harmless because every reconcile is idempotent (deterministic child and Event names,
409 = already there). A replica killed without a goodbye is taken over once its keep-alive expires
(``--peering-lifetime``, default 15 s).

API faults never end the process: kopf's requests are retried forever with jittered backoff and a
watch stream that fails (an ``ERROR`` event, an outage) starts over (:mod:`sft_operator.kube.watching`).

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
import os
import socket
import time
import zlib
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
        help="peering priority (default: start time in µs and a hash of the pod name, so the newest "
        "instance wins and no two share one)",
    )
    parser.add_argument(
        "--peering-lifetime",
        type=int,
        default=15,
        help="seconds a replica's peering keep-alive lasts: a standby takes over this long after the "
        "active replica died without a goodbye (default %(default)s)",
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
        peering_lifetime=max(5, args.peering_lifetime),
    )
    registry = build_registry(config)
    priority = args.priority if args.priority is not None else default_priority()
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


def default_priority(now_ns: int | None = None, pod: str | None = None) -> int:
    """Start time in microseconds ×1000 plus a hash of the pod name (mod 1000): newer instances win,
    and two started in the same microsecond still differ unless their names collide mod 1000
    (~1.8e18, inside the int64 Kubernetes stores)."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    pod = pod or os.environ.get("POD_NAME") or socket.gethostname()
    return (now_ns // 1000) * 1000 + zlib.crc32(f"{pod}/{os.getpid()}".encode()) % 1000


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
