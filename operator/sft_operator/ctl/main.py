"""``sftctl`` / ``kubectl sft``: the command line (see the package docstring for the modules)."""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from sft_operator import backends
from sft_operator.api.meta import API_VERSION, DATAPREP, GROUP, RUN, KindInfo
from sft_operator.ctl import show, tables
from sft_operator.ctl.cluster import KINDS_BY_NAME, Cluster, ClusterError, find, parse_ref
from sft_operator.ctl.local import LocalRunError
from sft_operator.ctl.manifests import Manifest, ManifestError, load

EXIT_FAILED = 1
EXIT_USAGE = 2


class UsageError(RuntimeError):
    """A combination kubectl refuses; said in kubectl's words, exit 1 as kubectl exits."""


def _cluster(args: argparse.Namespace) -> Cluster:
    """The cluster, or with ``--local`` the runs ``sftctl run --local`` wrote to ``--workdir``."""
    if getattr(args, "local", False):
        from sft_operator.ctl.localstore import LocalRuns

        return LocalRuns(Path(args.workdir))
    return Cluster.connect(args.kubeconfig, args.context, args.namespace)


def _load(args: argparse.Namespace, *, validate: bool = True) -> Manifest:
    return load(args.file, validate=validate, recursive=args.recursive)


def _skip_others(manifest: Manifest, verb: str) -> None:
    for doc in manifest.others:
        print(
            f"skipping {doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}: not an sft.dev kind "
            f"({verb} it with kubectl)",
            file=sys.stderr,
        )


def kind_group(info: KindInfo) -> str:
    """``sftrun.sft.dev``: how kubectl names a resource type in its messages and ``-o name``."""
    return f"{info.singular}.{GROUP}"


def name_of(cr: Mapping[str, Any]) -> str:
    """``-o name``: ``sftrun.sft.dev/tiny`` (kubectl's NamePrinter: lower-case kind.group/name)."""
    info = DATAPREP if cr.get("kind") == DATAPREP.kind else RUN
    return f"{kind_group(info)}/{(cr.get('metadata') or {}).get('name')}"


def cmd_apply(args: argparse.Namespace) -> int:
    manifest = _load(args)
    cluster = _cluster(args)
    _skip_others(manifest, "apply")
    applied = []
    for resource in manifest.resources:
        obj, created = cluster.apply(resource.info, resource.body)
        applied.append({**obj, "kind": resource.info.kind})
        if not getattr(args, "output", None):
            print(
                f"{kind_group(resource.info)}/{resource.name} "
                f"{'created' if created else 'configured'} ({cluster.where})"
            )
    if getattr(args, "output", None):
        print_objects(applied, args.output)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    if args.dry_run == "client":
        from sft_operator.ctl import dryrun

        return dryrun.run(_load(args), args)
    if args.output:
        raise ManifestError("-o/--output goes with --dry-run=client (the rendered children)")
    if args.local:
        from sft_operator.ctl.local import LocalSettings, parse_volume_args, run_local

        manifest = _load(args)
        settings = LocalSettings(workdir=Path(args.workdir).resolve(), volumes=parse_volume_args(args.volume))
        return run_local(manifest, settings)
    code = cmd_apply(args)
    if code:
        return code
    manifest = _load(args, validate=False)
    refs = [f"{r.info.singular}/{r.name}" for r in manifest.resources]
    return watch(_cluster(args), refs, args.interval, args.timeout)


KIND_WORDS = KINDS_BY_NAME
"""A kind given where names go (``get sftruns``, ``delete sftdp -l ...``): its names, plural, short names."""

Wanted = list[tuple[KindInfo | None, str | None]]
"""What NAME... ask for, in order: (kind, None) every CR of a kind, (kind, name) one CR, (None, name) a
bare name looked up in both kinds."""


def wanted(names: Sequence[str]) -> Wanted:
    """kubectl's forms: nothing (both kinds), kinds (``sftruns``, ``sftdatapreps,sftruns``), ``TYPE
    NAME...`` and ``TYPE/NAME...``; and sftctl's bare ``NAME`` (either kind)."""
    words = []
    for name in names:
        parts = name.split(",")
        words += parts if len(parts) > 1 and all(p.lower() in KIND_WORDS for p in parts) else [name]
    if not words:
        return [(DATAPREP, None), (RUN, None)]
    kinds = [KIND_WORDS.get(w.lower()) for w in words]
    if all(kinds):
        out: Wanted = []
        for k in kinds:
            if (k, None) not in out:
                out.append((k, None))
        return out
    if kinds[0] is not None and not any(kinds[1:]) and not any("/" in w for w in words[1:]):
        return [(kinds[0], w) for w in words[1:]]  # TYPE NAME...
    return [parse_ref(w) for w in words]


def kinds_of(items: Wanted) -> list[KindInfo]:
    """The kinds asked for, in order (a bare name asks for both)."""
    out: list[KindInfo] = []
    for info, _ in items:
        for k in [info] if info else [DATAPREP, RUN]:
            if k not in out:
                out.append(k)
    return out


def _selected(
    cluster: Cluster, names: Sequence[str], *, all_namespaces: bool = False, selector: str | None = None
) -> list[dict]:
    """The CRs ``get``/``watch``/``delete`` NAME... select (see :func:`wanted`; ``-A``: in every
    namespace; ``-l``: those matching)."""
    items = wanted(names)
    named = [(info, name) for info, name in items if name is not None]
    if not named:
        return [
            cr
            for info, _ in items
            if info is not None
            for cr in cluster.list(info, all_namespaces=all_namespaces, selector=selector)
        ]
    # kubectl's refusals, word for word and with its exit code 1 (tests/ctl/test_kubectl_shape.py runs
    # kubectl 1.35 for the same commands)
    if all_namespaces:
        raise UsageError("a resource cannot be retrieved by name across all namespaces")
    if selector:
        raise UsageError("name cannot be provided when a selector is specified")
    out: list[dict] = []
    for info, name in named:
        out += find(cluster, f"{info.singular}/{name}" if info else str(name))
    return out


def _tables(
    cluster: Cluster, args: argparse.Namespace, crs: Sequence[Mapping[str, Any]]
) -> list[tuple[KindInfo, dict[str, Any]]]:
    """The server's Table per kind asked for, in order: of every CR of the kind, or of the named ones."""
    items = wanted(args.names)
    out = []
    for info in kinds_of(items):
        if (info, None) in items:
            out.append(
                (info, cluster.table(info, all_namespaces=args.all_namespaces, selector=args.selector))
            )
            continue
        rows: list[Any] = []
        table: dict[str, Any] = {}
        for cr in crs:
            if cr.get("kind") == info.kind:
                table = cluster.table(info, cr["metadata"]["name"])
                rows += table.get("rows") or []
        out.append((info, {**table, "rows": rows}))
    return out


def _blocks(
    tables_: Sequence[tuple[KindInfo, Mapping[str, Any]]], args: argparse.Namespace
) -> list[tuple[KindInfo, list[str], list[tuple[tuple[str, str], list[str]]]]]:
    several = len(tables_) > 1  # kubectl names each row kind.group/name when several kinds are asked for
    out = []
    for info, table in tables_:
        header, rows = tables.rows_of(
            table,
            wide=args.output == "wide",
            namespaces=args.all_namespaces,
            kind=kind_group(info) if several else None,
        )
        out.append((info, header, rows))
    return out


def _no_resources(cluster: Cluster, all_namespaces: bool) -> str:
    """kubectl's words (staging/src/k8s.io/kubectl/pkg/cmd/get/get.go, printIfNotFindResource)."""
    return "No resources found" if all_namespaces else f"No resources found in {cluster.namespace} namespace."


def print_objects(crs: Sequence[Mapping[str, Any]], output: str) -> None:
    """``-o yaml|json|name``. Several objects are one ``kind: List`` (apiVersion v1), as kubectl prints."""
    if output == "name":
        for cr in crs:
            print(name_of(cr))
        return
    body: Any = (
        crs[0]
        if len(crs) == 1
        else {"apiVersion": "v1", "kind": "List", "items": list(crs), "metadata": {"resourceVersion": ""}}
    )
    if output == "json":
        print(json.dumps(body, indent=4, default=str))
    else:
        sys.stdout.write(yaml.safe_dump(body, sort_keys=False, width=float("inf")))


def cmd_get(args: argparse.Namespace) -> int:
    """kubectl get's output: the server's Table of each kind asked for (the CRDs' printer columns),
    one block per kind (:mod:`sft_operator.ctl.tables`), or the objects (``-o yaml|json|name``)."""
    cluster = _cluster(args)
    crs = _selected(cluster, args.names, all_namespaces=args.all_namespaces, selector=args.selector)
    if args.watch:
        return get_watch(cluster, args, crs)
    if args.output in ("yaml", "json", "name"):
        print_objects(crs, args.output)
        return 0
    blocks = _blocks(_tables(cluster, args, crs), args)
    if not any(rows for _, _, rows in blocks):
        print(_no_resources(cluster, args.all_namespaces), file=sys.stderr)
        return 0
    print(tables.render([(header, [cells for _, cells in rows]) for _, header, rows in blocks]))
    return 0


def get_watch(cluster: Cluster, args: argparse.Namespace, first: list[dict]) -> int:
    """``get -w``: the tables once, then one row per change, aligned with the first table, as ``kubectl
    get -w`` prints; it never ends by itself (Ctrl-C, or ``--request-timeout``), unlike ``watch``, which
    ends when all is finished."""
    if args.output in ("yaml", "json", "name"):
        raise ManifestError("get -w prints the table (-o wide too); use `get -o yaml` without -w")
    deadline = None if args.request_timeout is None else time.monotonic() + args.request_timeout
    crs = first
    shown: dict[str, tables.Block] = {}
    seen: dict[tuple[str, str, str], list[str]] = {}
    first_round = True
    while True:
        printed = []
        for info, header, rows in _blocks(_tables(cluster, args, crs), args):
            changed = [cells for key, cells in rows if seen.get((info.kind, *key)) != cells]
            seen.update({(info.kind, *key): cells for key, cells in rows})
            if not changed:
                continue
            block = shown.get(info.kind)
            lines = []
            if block is None:
                block = shown[info.kind] = tables.Block(header)
                block.fit(changed)
                lines.append(block.line(header))
            lines += [block.line(cells) for cells in changed]
            printed.append("\n".join(lines))
        if printed:
            print("\n".join(printed), flush=True)
        elif first_round:
            print(_no_resources(cluster, args.all_namespaces), file=sys.stderr, flush=True)
        first_round = False
        if deadline is not None and time.monotonic() >= deadline:
            return 0
        time.sleep(args.interval)
        crs = _selected(cluster, args.names, all_namespaces=args.all_namespaces, selector=args.selector)


def cmd_delete(args: argparse.Namespace) -> int:
    """``delete NAME...`` / ``delete -f FILE...`` / ``delete sftruns -l SEL``; kubectl's messages and
    exit code (1 when something named is not there, unless ``--ignore-not-found``)."""
    cluster = _cluster(args)
    if args.file and args.names:
        raise ManifestError("give either -f FILE or names, not both (as kubectl delete)")
    targets: list[tuple[KindInfo, str, str | None]] = []
    if args.file:
        manifest = _load(args, validate=False)
        _skip_others(manifest, "delete")
        targets = [
            (r.info, r.name, (r.body.get("metadata") or {}).get("namespace") or None)
            for r in manifest.resources
        ]
    else:
        if not args.names and not (args.selector or args.all):
            raise ManifestError(
                "name what to delete: NAME, KIND/NAME, -f FILE, or a kind with -l SELECTOR or --all"
            )
        if (
            args.names
            and all(name is None for _, name in wanted(args.names))  # kinds only (sftruns,sftdatapreps)
            and not (args.selector or args.all)
        ):
            raise UsageError("resource(s) were provided, but no name was specified")
        typed = [parse_ref(n) for n in args.names if "/" in n]
        if typed and len(typed) == len(args.names):  # KIND/NAME: deleted as named, like kubectl
            targets = [(info, name, None) for info, name in typed if info is not None]
        else:  # bare names (looked up in both kinds) or kinds with -l/--all
            for cr in _selected(cluster, args.names, selector=args.selector):
                info = DATAPREP if cr["kind"] == DATAPREP.kind else RUN
                targets.append((info, cr["metadata"]["name"], cr["metadata"].get("namespace")))
    missing = False
    if not targets:
        print("No resources found")  # kubectl delete prints it on stdout
    for info, name, namespace in targets:
        if cluster.delete(info, name, namespace):
            # kubectl 1.35's words (the binary tests/ctl/test_kubectl_shape.py compares with)
            print(f'{kind_group(info)} "{name}" deleted from {namespace or cluster.namespace} namespace')
        elif not args.ignore_not_found:
            missing = True
            print(f'Error from server (NotFound): {info.plural}.{GROUP} "{name}" not found', file=sys.stderr)
    return EXIT_FAILED if missing else 0


def watch(
    cluster: Cluster,
    names: Sequence[str],
    interval: float,
    timeout: float | None,
    *,
    all_namespaces: bool = False,
    selector: str | None = None,
) -> int:
    """Redraw the table as it changes; end when everything shown is Succeeded or Failed."""
    deadline = None if timeout is None else time.monotonic() + timeout
    tty = sys.stdout.isatty()
    last = None
    while True:
        crs = _selected(cluster, names, all_namespaces=all_namespaces, selector=selector)
        text = (
            show.table(crs, namespaces=all_namespaces)
            if crs
            else f"no SFTDataPreps or SFTRuns yet ({cluster.where})"
        )
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
    return watch(
        _cluster(args),
        args.names,
        args.interval,
        args.timeout,
        all_namespaces=args.all_namespaces,
        selector=args.selector,
    )


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


def duration(text: str) -> float:
    """kubectl's duration flags: ``30``, ``30s``, ``5m``, ``1h`` (seconds when bare)."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)?", text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration (e.g. 30s, 5m, 1h)")
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[match.group(2)]
    return float(match.group(1)) * scale


def _files(p: argparse.ArgumentParser, *, required: bool) -> None:
    """``-f`` as kubectl has it: repeatable; a file, a directory (its .json/.yaml/.yml files) or ``-``."""
    p.add_argument(
        "-f",
        "--filename",
        "--file",
        dest="file",
        action="append",
        required=required,
        default=[],
        metavar="FILE",
        help="a YAML/JSON file, a directory of them, or - for stdin; repeat for several",
    )
    p.add_argument(
        "-R", "--recursive", action="store_true", help="-f DIR: also the files of its subdirectories"
    )


def _selection(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-A", "--all-namespaces", action="store_true", help="every namespace (a NAMESPACE column is added)"
    )
    p.add_argument("-l", "--selector", help="label selector, e.g. team=nlp,stage!=test (as kubectl's -l)")


def build_parser(prog: str = "sftctl") -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The parser, and each command's subparser (a bad flag is reported with that command's usage)."""
    from sft_operator import __version__

    parser = argparse.ArgumentParser(
        prog=prog,
        description="Submit, follow, inspect and report SFTDataPrep and SFTRun resources "
        "(or run the same YAML locally with `run --local`).",
    )
    parser.add_argument("--version", action="version", version=f"{prog} {__version__} ({API_VERSION})")
    cluster = argparse.ArgumentParser(add_help=False)
    cluster.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
    cluster.add_argument("--context", help="kubeconfig context (default: the current one)")
    cluster.add_argument("-n", "--namespace", help="namespace (default: the context's, else default)")
    local = argparse.ArgumentParser(add_help=False)
    local.add_argument(
        "--local", action="store_true", help="read the runs `sftctl run --local` wrote (see --workdir)"
    )
    local.add_argument("--workdir", default="sft-local", help="--local: the run's work dir (./sft-local)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands: dict[str, argparse.ArgumentParser] = {}

    def command(
        name: str, func: Callable[[argparse.Namespace], int], text: str, *, reads: bool = False
    ) -> argparse.ArgumentParser:
        """``reads``: the command reads CRs, so it also reads local runs (``--local``)."""
        p = sub.add_parser(
            name, parents=[cluster, local] if reads else [cluster], help=text, description=text
        )
        p.set_defaults(func=func)
        commands[name] = p
        return p

    p = command("apply", cmd_apply, "create or update the SFT resources of files (server-side apply)")
    _files(p, required=True)
    p.add_argument(
        "-o",
        "--output",
        choices=("yaml", "json", "name"),
        help="print the applied objects (as kubectl apply -o)",
    )

    p = command(
        "run", cmd_run, "apply files and watch them to the end; --local: run them here; --dry-run: render"
    )
    _files(p, required=True)
    p.add_argument("--local", action="store_true", help="run on this machine, without a cluster")
    p.add_argument(
        "--dry-run",
        nargs="?",
        const="client",
        default="none",
        choices=("none", "client"),
        help="client: render each CR's children (ConfigMap, Job, the SFTRun backend's child) and the "
        "trainer plan here, without a cluster, credentials or network (as kubectl's --dry-run=client)",
    )
    p.add_argument(
        "-o",
        "--output",
        choices=("yaml", "json", "name"),
        help="--dry-run: print the rendered children as yaml, json (a List) or kind.group/name",
    )
    p.add_argument(
        "--backend",
        choices=tuple(backends.REGISTRY),
        help="--dry-run: the backend to render an SFTRun with spec.backend auto for (default: the "
        "operator's first choice whose CRD would be served that can run the spec)",
    )
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

    p = command(
        "get",
        cmd_get,
        "kubectl get's tables (one per kind, the CRDs' printer columns) or -o yaml|json|name|wide",
        reads=True,
    )
    p.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help="NAME, KIND/NAME, KIND NAME..., or kinds (sftruns, sftdatapreps,sftruns); default both kinds",
    )
    p.add_argument(
        "-o", "--output", choices=("yaml", "json", "wide", "name"), help="output format (default: the table)"
    )
    _selection(p)
    p.add_argument(
        "-w", "--watch", action="store_true", help="after the table, print a row whenever one changes"
    )
    p.add_argument("--interval", type=float, default=2.0, help="-w: seconds between polls")
    p.add_argument(
        "--request-timeout", type=duration, default=None, help="-w: stop after this long (e.g. 30s, 5m)"
    )

    p = command(
        "watch", cmd_watch, "the table, redrawn live, until everything shown has finished", reads=True
    )
    p.add_argument("names", nargs="*", metavar="NAME", help="NAME or KIND/NAME (default: all)")
    _selection(p)
    p.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes")
    p.add_argument("--timeout", type=float, default=None, help="stop after this many seconds")

    p = command("delete", cmd_delete, "delete SFT resources by name, by file (-f) or by selector")
    p.add_argument("names", nargs="*", metavar="NAME", help="NAME, KIND/NAME, or a kind with -l/--all")
    _files(p, required=False)
    p.add_argument("-l", "--selector", help="label selector (with a kind, or alone for both kinds)")
    p.add_argument("--all", action="store_true", help="every CR of the named kind(s) in the namespace")
    p.add_argument("--ignore-not-found", action="store_true", help="a missing CR is not an error")

    p = command("describe", cmd_describe, "conditions, failure, outputs and children", reads=True)
    p.add_argument("name", metavar="NAME", help="NAME or KIND/NAME")

    p = command("logs", cmd_logs, "the log of a CR's pod, without knowing pod names", reads=True)
    p.add_argument("name", metavar="NAME", help="NAME or KIND/NAME")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--node", type=int, help="SFTRun: node rank (0 = Master, i = Worker i-1)")
    which.add_argument("--worker", type=int, help="SFTDataPrep: worker (Job completion index)")
    p.add_argument("-f", "--follow", action="store_true", help="stream the log")
    p.add_argument("--tail", type=int, default=None, help="only the last N lines")

    p = command("preview", cmd_preview, "decode packed bins, trained tokens marked")
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

    p = command("report", cmd_report, "PNG + HTML: curves, packing histogram, data counts")
    p.add_argument(
        "target", metavar="DIR|NAME", help="a local run's dir (sftctl run --local), an output dir, or a name"
    )
    p.add_argument(
        "--output-dir", default=None, help="where report.png and report.html go (default: DIR or ./)"
    )
    p.add_argument("--output", dest="old_output", default=None, help=argparse.SUPPRESS)  # before issue 21

    p = command(
        "init-demo-model",
        cmd_init_demo_model,
        "write the tiny random base model the demo pipeline (manifests/samples/pipeline-local.yaml) trains",
    )
    p.add_argument("dir", metavar="DIR", help="the claim's directory (the model goes to DIR/base-model)")
    p.add_argument(
        "--pack-size", type=int, default=1024, help="the longest sequence it must take (default 1024)"
    )
    return parser, commands


def cmd_init_demo_model(args: argparse.Namespace) -> int:
    from sft_train.demo import build_base_model

    print(f"saved {build_base_model(Path(args.dir), args.pack_size)}")
    return 0


def main(argv: Sequence[str] | None = None, prog: str = "sftctl") -> int:
    parser, commands = build_parser(prog)
    args, extra = parser.parse_known_args(argv)
    if extra:  # argparse would blame the top-level parser; the command's own usage is the useful one
        commands[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return int(args.func(args) or 0)
    except ManifestError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except LocalRunError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (ClusterError, UsageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


def kubectl_plugin() -> int:
    """``kubectl sft ...`` (kubectl finds ``kubectl-sft`` on PATH)."""
    return main(prog="kubectl sft")


if __name__ == "__main__":
    raise SystemExit(main())
