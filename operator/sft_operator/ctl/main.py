"""``sftctl`` / ``kubectl sft``: the command line (see the package docstring for the modules)."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from sft_operator.api.meta import DATAPREP, RUN
from sft_operator.ctl import show
from sft_operator.ctl.cluster import Cluster, ClusterError, find, parse_ref
from sft_operator.ctl.local import LocalRunError
from sft_operator.ctl.manifests import ManifestError, load

EXIT_FAILED = 1
EXIT_USAGE = 2


def _cluster(args: argparse.Namespace) -> Cluster:
    return Cluster.connect(args.kubeconfig, args.context, args.namespace)


def cmd_apply(args: argparse.Namespace) -> int:
    manifest = load(args.file)
    cluster = _cluster(args)
    for doc in manifest.others:
        print(
            f"skipping {doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}: not an sft.dev kind "
            "(apply it with kubectl)",
            file=sys.stderr,
        )
    for resource in manifest.resources:
        _, created = cluster.apply(resource.info, resource.body)
        print(
            f"{resource.info.singular}.{resource.info.api_version.split('/')[0]}/{resource.name} "
            f"{'created' if created else 'configured'} ({cluster.where})"
        )
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    if args.local:
        from sft_operator.ctl.local import LocalSettings, parse_volume_args, run_local

        manifest = load(args.file)
        settings = LocalSettings(workdir=Path(args.workdir).resolve(), volumes=parse_volume_args(args.volume))
        return run_local(manifest, settings)
    code = cmd_apply(args)
    if code:
        return code
    manifest = load(args.file, validate=False)
    refs = [f"{r.info.singular}/{r.name}" for r in manifest.resources]
    return watch(_cluster(args), refs, args.interval, args.timeout)


def _selected(cluster: Cluster, names: Sequence[str]) -> list[dict]:
    if not names:
        return [*cluster.list(DATAPREP), *cluster.list(RUN)]
    out: list[dict] = []
    for name in names:
        info, _bare = parse_ref(name)
        if info is None and name.lower() in ("sftdatapreps", "sftdataprep", "sftruns", "sftrun"):
            out += cluster.list(DATAPREP if "dataprep" in name.lower() else RUN)
            continue
        out += find(cluster, name)
    return out


def cmd_get(args: argparse.Namespace) -> int:
    cluster = _cluster(args)
    crs = _selected(cluster, args.names)
    if not crs:
        print(f"no SFTDataPreps or SFTRuns ({cluster.where})", file=sys.stderr)
        return 0
    print(show.table(crs))
    return 0


def watch(cluster: Cluster, names: Sequence[str], interval: float, timeout: float | None) -> int:
    """Redraw the table as it changes; end when everything shown is Succeeded or Failed."""
    deadline = None if timeout is None else time.monotonic() + timeout
    tty = sys.stdout.isatty()
    last = None
    while True:
        crs = _selected(cluster, names)
        text = show.table(crs) if crs else f"no SFTDataPreps or SFTRuns yet ({cluster.where})"
        if text != last:
            if tty and last is not None:
                sys.stdout.write(f"\x1b[{last.count(chr(10)) + 1}F\x1b[J")
            elif last is not None:
                print()
            print(text, flush=True)
            last = text
        if show.all_terminal(crs):
            return EXIT_FAILED if show.any_failed(crs) else 0
        if deadline is not None and time.monotonic() > deadline:
            print(f"timed out after {timeout:g}s, still running", file=sys.stderr)
            return EXIT_FAILED
        time.sleep(interval)


def cmd_watch(args: argparse.Namespace) -> int:
    return watch(_cluster(args), args.names, args.interval, args.timeout)


def cmd_describe(args: argparse.Namespace) -> int:
    cluster = _cluster(args)
    pages = []
    for cr in find(cluster, args.name):
        info = DATAPREP if cr["kind"] == DATAPREP.kind else RUN
        pods = cluster.pods_of(info, cr["metadata"]["name"])
        pages.append(show.describe(cr, [{**p, "kind": "Pod"} for p in pods]))
    print("\n\n".join(pages))
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    from sft_operator.ctl import logs

    return logs.run(_cluster(args), args.name, args.node, args.worker, args.follow, args.tail)


def cmd_preview(args: argparse.Namespace) -> int:
    from sft_operator.ctl import preview

    return preview.run(args, _cluster)


def cmd_report(args: argparse.Namespace) -> int:
    from sft_operator.ctl import report

    return report.run(args, _cluster)


def build_parser(prog: str = "sftctl") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Submit, follow, inspect and report SFTDataPrep and SFTRun resources "
        "(or run the same YAML locally with `run --local`).",
    )
    cluster = argparse.ArgumentParser(add_help=False)
    cluster.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
    cluster.add_argument("--context", help="kubeconfig context (default: the current one)")
    cluster.add_argument("-n", "--namespace", help="namespace (default: the context's, else default)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("apply", parents=[cluster], help="create or update the SFT resources of a file")
    p.add_argument(
        "-f", "--file", required=True, help="YAML with SFTDataPrep and/or SFTRun documents (- = stdin)"
    )
    p.set_defaults(func=cmd_apply)

    p = sub.add_parser(
        "run", parents=[cluster], help="apply a file and watch it to the end, or run it here with --local"
    )
    p.add_argument("-f", "--file", required=True, help="YAML with SFTDataPrep and/or SFTRun documents")
    p.add_argument("--local", action="store_true", help="run on this machine, without a cluster")
    p.add_argument(
        "--workdir", default="sft-local", help="--local: status, logs and default volumes (./sft-local)"
    )
    p.add_argument(
        "--volume",
        action="append",
        default=[],
        metavar="CLAIM=DIR",
        help="--local: the directory standing in for a PersistentVolumeClaim (or a volume by name); "
        "default WORKDIR/volumes/CLAIM",
    )
    p.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes")
    p.add_argument("--timeout", type=float, default=None, help="give up watching after this many seconds")
    p.set_defaults(func=cmd_run)

    for name, func, text in (
        ("get", cmd_get, "a table: phase, progress, loss, tokens/s, ETA, message"),
        ("watch", cmd_watch, "the same table, live, until everything shown has finished"),
    ):
        p = sub.add_parser(name, parents=[cluster], help=text)
        p.add_argument("names", nargs="*", metavar="NAME", help="NAME or KIND/NAME (default: all)")
        if name == "watch":
            p.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes")
            p.add_argument("--timeout", type=float, default=None, help="stop after this many seconds")
        p.set_defaults(func=func)

    p = sub.add_parser("describe", parents=[cluster], help="conditions, failure, outputs and children")
    p.add_argument("name", metavar="NAME", help="NAME or KIND/NAME")
    p.set_defaults(func=cmd_describe)

    p = sub.add_parser("logs", parents=[cluster], help="the log of a CR's pod, without knowing pod names")
    p.add_argument("name", metavar="NAME", help="NAME or KIND/NAME")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--node", type=int, help="SFTRun: node rank (0 = Master, i = Worker i-1)")
    which.add_argument("--worker", type=int, help="SFTDataPrep: worker (Job completion index)")
    p.add_argument("-f", "--follow", action="store_true", help="stream the log")
    p.add_argument("--tail", type=int, default=None, help="only the last N lines")
    p.set_defaults(func=cmd_logs)

    p = sub.add_parser("preview", parents=[cluster], help="decode packed bins, trained tokens marked")
    p.add_argument("target", metavar="DIR|NAME", help="an sft-prep output dir, or an SFTDataPrep's name")
    p.add_argument("--bin", type=int, default=0, help="which packed bin (row) to show (default 0)")
    p.add_argument(
        "--split", default="train", choices=("train", "valid", "test"), help="split (default train)"
    )
    p.add_argument("--shard", type=int, default=0, help="which shard file of the split (default 0)")
    p.add_argument("--tokenizer", help="tokenizer dir/URI (default: the one recorded in metadata.json)")
    p.add_argument(
        "--color", choices=("auto", "always", "never"), default="auto", help="colour (default auto)"
    )
    p.set_defaults(func=cmd_preview)

    p = sub.add_parser("report", parents=[cluster], help="PNG + HTML: curves, packing histogram, data counts")
    p.add_argument(
        "target", metavar="DIR|NAME", help="a local run's dir (sftctl run --local), an output dir, or a name"
    )
    p.add_argument(
        "-o", "--output", default=None, help="where report.png and report.html go (default: DIR or ./)"
    )
    p.set_defaults(func=cmd_report)
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "sftctl") -> int:
    args = build_parser(prog).parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ManifestError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except LocalRunError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ClusterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


def kubectl_plugin() -> int:
    """``kubectl sft ...`` (kubectl finds ``kubectl-sft`` on PATH)."""
    return main(prog="kubectl sft")


if __name__ == "__main__":
    raise SystemExit(main())
