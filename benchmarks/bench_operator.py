"""Scale benchmark of the operator (``make bench-operator``; not a test).

500 ``SFTDataPrep``s are created at once against the emulated API server (tests/kubeemu); the operator
runs as its own process (``python -m sft_operator``), exactly as in a cluster but pointed at the
emulator through a kubeconfig. Measured:

* create → Job created: from each CR's creation until its Job is first seen in the API;
* Job complete → CR Succeeded: all Jobs are marked complete by patching their status (the benchmark
  plays the Job controller), then until each CR's ``status.phase`` is first seen as ``Succeeded``;
* the operator process's peak RSS (sampled every 50 ms) and its CPU time.

Reported as p50/p99/max in seconds. The emulator and this driver share one process; the operator has
its own. Nothing here runs pods.

    python benchmarks/bench_operator.py [--count 500] [--concurrency 32] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from kubeemu import KubeEmulator  # noqa: E402

NAMESPACE = "default"


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
        "mean": round(statistics.fmean(ordered), 3),
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


def wait_all(pending: set[str], probe: Any, seen: dict[str, float], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while pending:
        now = time.monotonic()
        for name in probe():
            if name in pending:
                pending.discard(name)
                seen[name] = now
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}: {len(pending)} left, e.g. {sorted(pending)[:3]}")
        time.sleep(0.02)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--timeout", type=float, default=240.0)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)

    with (
        tempfile.TemporaryDirectory() as tmp,
        KubeEmulator(crds=[REPO / "manifests" / "crds"], record_requests=False) as kube,
    ):
        kubeconfig = kube.write_kubeconfig(Path(tmp) / "kubeconfig")
        env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
        env.pop("KUBERNETES_SERVICE_HOST", None)
        cmd = [
            sys.executable, "-m", "sft_operator", "--namespace", NAMESPACE, "--standalone",
            "--liveness", "none", "--readiness", "none", "--metrics", "none",
            "--log-level", "WARNING", "--concurrency", str(args.concurrency),
        ]  # fmt: skip
        log_path = Path(tmp) / "operator.log"
        with log_path.open("w") as log:
            operator = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        sampler = RssSampler(operator.pid)
        sampler.start()
        try:
            cpu_before = psutil.Process(operator.pid).cpu_times()
            time.sleep(2.0)  # let it log in and start its watches
            names = [f"bench-{i:04d}" for i in range(args.count)]
            created: dict[str, float] = {}
            for name in names:
                kube.create(prep(name))
                created[name] = time.monotonic()
            t_created = time.monotonic()

            jobs_seen: dict[str, float] = {}

            def jobs() -> list[str]:
                return [j["metadata"]["name"].removesuffix("-prep") for j in kube.list("Job", NAMESPACE)]

            wait_all(set(names), jobs, jobs_seen, args.timeout, "Jobs")
            t_jobs = time.monotonic()

            completed: dict[str, float] = {}
            for name in names:
                kube.patch_status(
                    "Job",
                    f"{name}-prep",
                    {
                        "succeeded": 2,
                        "completedIndexes": "0-1",
                        "completionTime": "2026-11-25T12:00:00Z",
                        "conditions": [
                            {
                                "type": "SuccessCriteriaMet",
                                "status": "True",
                                "lastTransitionTime": "2026-11-25T12:00:00Z",
                            },
                            {
                                "type": "Complete",
                                "status": "True",
                                "lastTransitionTime": "2026-11-25T12:00:00Z",
                            },
                        ],
                    },
                )
                completed[name] = time.monotonic()
            succeeded: dict[str, float] = {}

            def done() -> list[str]:
                return [
                    o["metadata"]["name"]
                    for o in kube.list("SFTDataPrep", NAMESPACE)
                    if (o.get("status") or {}).get("phase") == "Succeeded"
                ]

            wait_all(set(names), done, succeeded, args.timeout, "CRs Succeeded")
            t_done = time.monotonic()
            time.sleep(1.0)  # let the operator settle (peak RSS after the burst)
            cpu_after = psutil.Process(operator.pid).cpu_times()
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

    results = {
        "count": args.count,
        "concurrency": args.concurrency,
        "create_to_job_s": percentiles([jobs_seen[n] - created[n] for n in names]),
        "job_complete_to_succeeded_s": percentiles([succeeded[n] - completed[n] for n in names]),
        "all_jobs_created_after_s": round(t_jobs - t_created, 2),
        "all_succeeded_after_s": round(t_done - t_jobs, 2),
        "operator_peak_rss_mib": round(sampler.peak / 2**20, 1),
        "operator_cpu_s": round(
            (cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system), 2
        ),
        "jobs_in_cluster": jobs_total,
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
    }
    print(f"sft-operator scale benchmark: {args.count} SFTDataPreps created at once (emulated API server)")
    print(f"  create -> Job created       : {results['create_to_job_s']}")
    print(f"  Job complete -> Succeeded   : {results['job_complete_to_succeeded_s']}")
    print(f"  operator peak RSS           : {results['operator_peak_rss_mib']} MiB")
    print(f"  operator CPU time           : {results['operator_cpu_s']} s")
    print(f"  Jobs in cluster             : {jobs_total} (expected {args.count}: none created twice)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0 if jobs_total == args.count else 1


if __name__ == "__main__":
    raise SystemExit(main())
