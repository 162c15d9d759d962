"""Scale benchmark of the operator (``make bench-operator``; not a test): what one CR costs it.

``--count`` ``SFTDataPrep``s (500) are created at once against the emulated API server
(tests/kubeemu); the operator runs as its own process (``python -m sft_operator``), exactly as in a
cluster but pointed at the emulator through a kubeconfig. The benchmark then plays the Job
controller: once every Job exists it marks them all complete, and waits until every CR is
``Succeeded``. Measured, per run:

* operator CPU-s (user + system of its process, from after its start-up until the last CR is
  Succeeded and it has settled), also as ms per CR; its peak RSS (sampled every 50 ms);
* reconciles per CR (the operator's own ``sft_operator_reconciles_total``, scraped from its
  ``/metrics``) and API writes per CR (POST/PUT/PATCH/DELETE the emulator served; the benchmark's
  own writes bypass HTTP and are not counted), with the writes broken down by resource;
* create → Job (from each CR's ADDED to its Job's ADDED in the API server) and Job complete → CR
  Succeeded, p50/p99/max in seconds;
* the CPU the emulator's thread used beside the operator, and the benchmark driver's own.

The driver never polls: a listener inside the emulator timestamps the events as the API server
commits them, so the harness costs (almost) nothing and the figures are the operator's.

Before/after in one invocation: ``--baseline REF`` (default: the commit before issue 23's operator
work) runs the operator of that git commit (``git archive`` of ``operator/`` and ``workloads/`` on
``PYTHONPATH``, same interpreter and packages) interleaved with the working tree's, ``--repeats``
times each, and prints medians and the ratios after/before. CPU-s are the figure to trust on a
loaded machine; wall-clock latencies move with the load (printed at start and end).

    python benchmarks/bench_operator.py [--count 500] [--repeats 3] [--baseline REF|none] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from kubeemu import KubeEmulator  # noqa: E402
from kubeemu.store import Event  # noqa: E402

NAMESPACE = "default"
BASELINE_REF = "d9425b8"
"""The commit the issue-23 operator work started from (its figures are the "before")."""
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
TARGETS = {
    "operator_cpu_ms_per_cr": 5.0,
    "reconciles_per_cr": 2.0,
    "writes_per_cr": 7.0,
    "create_to_job_p99_s": 2.0,
}
"""Issue 23's targets (each: at most this)."""


def prep(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "sft.dev/v1alpha1",
        "kind": "SFTDataPrep",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "image": "ghcr.io/sft-operator/sft-prep:bench",
            "datasets": [{"name": "chats", "path": f"s3://bench/{name}/chats.jsonl"}],
            "tokenizer": {"model": "s3://bench/tokenizer"},
            "outputDir": f"s3://bench/{name}/out",
            "numShards": 4,
            "parallelism": 2,
        },
    }


JOB_COMPLETE = {
    "succeeded": 2,
    "completedIndexes": "0-1",
    "completionTime": "2026-11-25T12:00:00Z",
    "conditions": [
        {"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": "2026-11-25T12:00:00Z"},
        {"type": "Complete", "status": "True", "lastTransitionTime": "2026-11-25T12:00:00Z"},
    ],
}


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {"n": 0}

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]

    return {
        "n": len(ordered),
        "p50": round(pick(0.50), 3),
        "p99": round(pick(0.99), 3),
        "max": round(ordered[-1], 3),
    }


class RssSampler(threading.Thread):
    def __init__(self, pid: int, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.interval = interval
        self.peak = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.peak = max(self.peak, self.process.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(self.interval)


class Timeline:
    """Timestamps of the API server's events, taken on the emulator's loop as it commits them."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.created: dict[str, float] = {}
        self.jobs: dict[str, float] = {}
        self.completed: dict[str, float] = {}
        self.succeeded: dict[str, float] = {}
        self.all_jobs = threading.Event()
        self.all_succeeded = threading.Event()

    def __call__(self, event: Event) -> None:
        kind, obj = event.resource.kind, event.obj
        name = obj["metadata"]["name"]
        now = time.monotonic()
        if kind == "SFTDataPrep":
            if event.type == "ADDED":
                self.created.setdefault(name, now)
            elif (obj.get("status") or {}).get("phase") == "Succeeded" and name not in self.succeeded:
                self.succeeded[name] = now
                if len(self.succeeded) == self.count:
                    self.all_succeeded.set()
        elif kind == "Job":
            owner = name.removesuffix("-prep")
            if event.type == "ADDED" and owner not in self.jobs:
                self.jobs[owner] = now
                if len(self.jobs) == self.count:
                    self.all_jobs.set()
            elif (obj.get("status") or {}).get("completionTime"):
                self.completed.setdefault(owner, now)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scrape_reconciles(url: str) -> float:
    """Sum of ``sft_operator_reconciles_total`` over kinds and results."""
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("sft_operator_reconciles_total{")
    )


def thread_cpu(native_id: int | None) -> float:
    """CPU-s of one thread of this process (the emulator's)."""
    for thread in psutil.Process().threads():
        if thread.id == native_id:
            return float(thread.user_time + thread.system_time)
    return 0.0


def process_cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


@contextlib.contextmanager
def baseline_tree(ref: str) -> Iterator[Path]:
    """``operator/`` and ``workloads/`` of git commit ``ref``, extracted into a temporary folder."""
    with tempfile.TemporaryDirectory(prefix="bench-operator-base-") as tmp:
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", "--format=tar", ref, "operator", "workloads"],
            check=True,
            capture_output=True,
        ).stdout
        with tarfile.open(fileobj=__import__("io").BytesIO(archive)) as tar:
            tar.extractall(tmp, filter="data")
        yield Path(tmp)


def run_once(
    count: int, concurrency: int, timeout: float, code: Path | None, profile: Path | None = None
) -> dict[str, Any]:
    """One benchmark run against a fresh emulator; ``code``: a baseline tree (None: this checkout);
    ``profile``: write the operator's cProfile stats there (it stops gracefully on SIGTERM)."""
    timeline = Timeline(count)
    with (
        tempfile.TemporaryDirectory() as tmp,
        KubeEmulator(crds=[REPO / "manifests" / "crds"], record_requests=False) as kube,
    ):
        kube.call(kube.store.listeners.append, timeline)
        kubeconfig = kube.write_kubeconfig(Path(tmp) / "kubeconfig")
        env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
        env.pop("KUBERNETES_SERVICE_HOST", None)
        if code is not None:
            env["PYTHONPATH"] = os.pathsep.join([str(code / "operator"), str(code / "workloads")])
        metrics_url = f"http://127.0.0.1:{free_port()}/metrics"
        cmd = [
            sys.executable, *(["-m", "cProfile", "-o", str(profile)] if profile else []),
            "-m", "sft_operator", "--namespace", NAMESPACE, "--standalone",
            "--liveness", "none", "--readiness", "none", "--metrics", metrics_url,
            "--log-level", "WARNING", "--concurrency", str(concurrency),
        ]  # fmt: skip
        log_path = Path(tmp) / "operator.log"
        with log_path.open("w") as log:
            operator = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        sampler = RssSampler(operator.pid)
        sampler.start()
        emulator_thread = kube._thread.native_id if kube._thread is not None else None
        try:
            proc = psutil.Process(operator.pid)
            deadline = time.monotonic() + 60
            while True:  # started: logged in, watching, serving /metrics
                try:
                    reconciles_before = scrape_reconciles(metrics_url)
                    break
                except OSError:
                    if time.monotonic() > deadline or operator.poll() is not None:
                        raise SystemExit("the operator did not start") from None
                    time.sleep(0.2)
            time.sleep(1.0)  # let it finish its initial lists
            calls_before = kube.call(Counter, kube.server.calls)
            cpu_before, emu_before = process_cpu(proc), thread_cpu(emulator_thread)
            driver_before = time.thread_time()
            for i in range(count):
                kube.create(prep(f"bench-{i:04d}"))
            if not timeline.all_jobs.wait(timeout):
                raise SystemExit(f"timed out waiting for Jobs: {len(timeline.jobs)}/{count}")
            for i in range(count):
                kube.patch_status("Job", f"bench-{i:04d}-prep", JOB_COMPLETE)
            if not timeline.all_succeeded.wait(timeout):
                raise SystemExit(f"timed out waiting for Succeeded: {len(timeline.succeeded)}/{count}")
            time.sleep(1.0)  # let the operator settle (the reconciles its last writes trigger)
            cpu_after, emu_after = process_cpu(proc), thread_cpu(emulator_thread)
            driver_after = time.thread_time()
            reconciles = scrape_reconciles(metrics_url) - reconciles_before
            calls = kube.call(Counter, kube.server.calls) - calls_before
        except SystemExit:
            print(log_path.read_text()[-4000:], file=sys.stderr)
            raise
        finally:
            sampler.stop.set()
            operator.terminate()
            try:
                operator.wait(15)
            except subprocess.TimeoutExpired:
                operator.kill()
        jobs_total = len(kube.list("Job", NAMESPACE))

    names = sorted(timeline.created)
    writes = {
        f"{m} {p}{'/' + s if s else ''}": n for (m, p, s), n in sorted(calls.items()) if m in WRITE_METHODS
    }
    reads = sum(n for (m, _, _), n in calls.items() if m == "GET")
    cpu = cpu_after - cpu_before
    return {
        "operator_cpu_s": round(cpu, 2),
        "operator_cpu_ms_per_cr": round(1000 * cpu / count, 2),
        "reconciles_per_cr": round(reconciles / count, 2),
        "writes_per_cr": round(sum(writes.values()) / count, 2),
        "writes_per_cr_by_resource": {k: round(v / count, 2) for k, v in writes.items()},
        "reads_per_cr": round(reads / count, 2),
        "create_to_job_s": percentiles([timeline.jobs[n] - timeline.created[n] for n in names]),
        "job_complete_to_succeeded_s": percentiles(
            [timeline.succeeded[n] - timeline.completed[n] for n in names if n in timeline.completed]
        ),
        "operator_peak_rss_mib": round(sampler.peak / 2**20, 1),
        "emulator_cpu_s": round(emu_after - emu_before, 2),
        "driver_cpu_s": round(driver_after - driver_before, 2),
        "jobs": jobs_total,
    }


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over repeats of the scalar figures (and of the percentiles)."""

    def med(values: list[float]) -> float:
        return round(statistics.median(values), 3)

    out: dict[str, Any] = {}
    for key, value in runs[0].items():
        if isinstance(value, int | float):
            out[key] = med([r[key] for r in runs])
        elif key in ("create_to_job_s", "job_complete_to_succeeded_s"):
            out[key] = {q: med([r[key].get(q, 0.0) for r in runs]) for q in ("p50", "p99", "max")}
        else:
            out[key] = value
    out["create_to_job_p99_s"] = out["create_to_job_s"]["p99"]
    return out


ROWS = (
    ("operator CPU ms per CR", "operator_cpu_ms_per_cr"),
    ("operator CPU-s", "operator_cpu_s"),
    ("reconciles per CR", "reconciles_per_cr"),
    ("API writes per CR", "writes_per_cr"),
    ("API reads per CR", "reads_per_cr"),
    ("create -> Job p99 s", "create_to_job_p99_s"),
    ("operator peak RSS MiB", "operator_peak_rss_mib"),
    ("emulator CPU-s (beside)", "emulator_cpu_s"),
    ("driver CPU-s", "driver_cpu_s"),
)


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg()) + f" ({os.cpu_count()} cpus)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each variant, interleaved")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument(
        "--baseline",
        default=BASELINE_REF,
        help="git commit whose operator is the 'before' (default %(default)s); 'none': this checkout only",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--profile", type=Path, default=None, help="one run of this checkout under cProfile")
    args = parser.parse_args(argv)
    if args.profile:
        print(json.dumps(run_once(args.count, args.concurrency, args.timeout, None, args.profile), indent=2))
        return 0

    print(f"sft-operator benchmark: {args.count} SFTDataPreps created at once (emulated API server)")
    print(f"  at start: {load()}")
    runs: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
    with contextlib.ExitStack() as stack:
        base = None if args.baseline == "none" else stack.enter_context(baseline_tree(args.baseline))
        variants: list[tuple[str, Path | None]] = [("after", None)]
        if base is not None:
            variants.insert(0, ("before", base))
        for repeat in range(args.repeats):
            order = variants if repeat % 2 == 0 else variants[::-1]
            for label, code in order:
                result = run_once(args.count, args.concurrency, args.timeout, code)
                runs[label].append(result)
                print(
                    f"  run {repeat + 1} {label:6s}: {result['operator_cpu_ms_per_cr']} ms/CR, "
                    f"{result['reconciles_per_cr']} reconciles/CR, {result['writes_per_cr']} writes/CR, "
                    f"create->Job p99 {result['create_to_job_s']['p99']} s, "
                    f"emulator {result['emulator_cpu_s']} CPU-s",
                    flush=True,
                )
    after = summary(runs["after"])
    before = summary(runs["before"]) if runs["before"] else None
    print(f"  at end: {load()}")
    print(f"medians of {args.repeats} run(s) each" + (f"; before = {args.baseline}" if before else ""))
    header = f"  {'':26s}" + (f"{'before':>10s}" if before else "") + f"{'after':>10s}"
    print(header + ("   ratio" if before else "") + "   target")
    for label, key in ROWS:
        line = f"  {label:26s}"
        if before:
            line += f"{before[key]:>10}"
        line += f"{after[key]:>10}"
        if before:
            line += f"  {after[key] / before[key]:5.2f}x" if before[key] else "       -"
        if key in TARGETS:
            line += f"   <= {TARGETS[key]:g} {'met' if after[key] <= TARGETS[key] else 'NOT met'}"
        print(line)
    print(f"  writes per CR (after)     : {after['writes_per_cr_by_resource']}")
    if before:
        print(f"  writes per CR (before)    : {before['writes_per_cr_by_resource']}")
    print(f"  Job complete -> Succeeded : after {after['job_complete_to_succeeded_s']}")
    ok = all(r["jobs"] == args.count for rs in runs.values() for r in rs)
    print(f"  Jobs per run: {[r['jobs'] for r in runs['after']]} (expected {args.count}: none created twice)")
    if args.json:
        args.json.write_text(json.dumps({"before": runs["before"], "after": runs["after"]}, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
