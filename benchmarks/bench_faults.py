"""Fault benchmark (``make bench-faults``; not a test): what kills, bad rows and bad CRs do, in one run.

Six sections, each printed as figures from this run (loopback only, bounded in time):

1. **sft-prep kills.** A clean run of the bundled sample chats gives the reference output. Then the
   prep is SIGKILLed at N random moments of its life, and at file events (the k-th path to appear
   under its output directory: shard temp files, shards, receipts, the commit files), and rerun to
   completion each time. A trial is *identical* when every Parquet shard is byte-identical to the
   reference and ``metadata.json``/``blend.json`` match it (output paths and the commit time aside).
2. **Operator kills.** The operator runs as its own process (``python -m sft_operator``, as in a
   cluster) against the emulated API server (tests/kubeemu); the driver plays the Job controller /
   training-operator with the operator tests' helpers. For each kind (SFTDataPrep, SFTRun) the
   operator is SIGKILLed at each point of a CR's life (just created, ConfigMap posted, child posted,
   first status written, child running, child finished, Succeeded recorded) and at N random moments,
   then restarted. Counted: CRs with *duplicate children* (more than one Job/PyTorchJob or ConfigMap
   owned by the CR) and CRs whose final status is *wrong* (not Succeeded, stale observedGeneration,
   Ready not True, or jobRef not naming the one child).
3. **Malformed rows.** One dataset file per kind of bad row (``sft_prep.chat.REASONS`` plus hostile
   rows: a lone surrogate, JSON nested 1100 deep, a 2 MB row), each mixing bad rows into good ones.
   Per kind: bad rows counted as dropped / bad rows, good rows kept / good rows (or the crash).
4. **Invalid CRs.** Specs a user can get wrong, applied to the emulator with the real operator
   running in-process (``run_operator`` of tests/inprocess_operator.py). Each must be rejected by the API
   (schema/CEL) or reach ``Stalled=True``; crashes are tracebacks in the operator's output.
5. **API faults.** The operator process behind an HTTP fault proxy (watch ERROR events, 500s, 429 +
   Retry-After, dropped responses, a 5 s outage): faults injected, children duplicated, status or
   Events lost, operator exits (see :func:`bench_api_faults`).
6. **Preemption.** ``sft-train`` (engine hf, a tiny random Llama, fp32, one CPU process) trains
   ``PREEMPT_ITERS`` iterations saving every ``PREEMPT_SAVE_INTERVAL``; it is SIGTERMed at N random
   iterations between saves and rerun to completion each time. Per trial: the exit code (143), the
   *iterations lost beyond the save in flight* (iterations computed before the exit minus the
   iteration the preemption checkpoint holds; must be 0, where the periodic saves alone would lose
   the iterations since the last multiple of the interval), iterations logged twice in metrics.jsonl,
   and *resume exactness*: the largest difference of the per-iteration losses and of the final
   weights between the preempted + resumed run and an uninterrupted one. Tolerance 0: weights and
   optimizer state are saved in fp32 and the data order and random streams are functions of the
   iteration, so on the same CPU and thread count the two runs do the same arithmetic.

    python benchmarks/bench_faults.py [--prep-random 6] [--prep-events 8] [--operator-random 2]
                                      [--preempt-trials 3] [--seed 13] [--json out.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests"), str(REPO / "tests" / "operator")]

import yaml  # noqa: E402

import sft_prep  # noqa: E402
from kubeemu import ApiError, KubeEmulator  # noqa: E402
from sft_prep.chat import REASONS  # noqa: E402

SAMPLES = Path(sft_prep.__file__).parent / "samples"
NAMESPACE = "default"
PREP_ENV = {**os.environ, "SFT_PROGRESS": "off", "SFT_TERMINATION_LOG": os.devnull}


# ------------------------------------------------------------------------------------------ helpers


def prep_config(tmp: Path, name: str, output: Path, datasets: list[dict[str, Any]] | None = None) -> Path:
    datasets = datasets or [{"name": "chats", "path": str(SAMPLES / "chats.jsonl")}]
    data = {
        "datasets": datasets,
        "tokenizer": {"model": str(SAMPLES / "tokenizer")},
        "pack_size": 1024,
        "num_shards": max(6, len(datasets)),  # every shard holds rows of one dataset
        "output_dir": str(output),
    }
    path = tmp / name
    path.write_text(yaml.safe_dump(data))
    return path


def prep_cmd(config: Path) -> list[str]:
    return [sys.executable, "-m", "sft_prep", "--config", str(config)]


def output_digest(out: Path) -> dict[str, str]:
    """What must not differ after a resume: shard bytes, and the commit files with paths normalised."""
    digest: dict[str, str] = {}
    for path in sorted(out.rglob("*.parquet")):
        digest[path.relative_to(out).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    for name in ("metadata.json", "blend.json"):
        path = out / name
        if not path.exists():
            digest[name] = "missing"
            continue
        data = json.loads(path.read_text().replace(str(out), "<out>"))
        if isinstance(data, dict):
            data.pop("completed_at", None)
            data.pop("config", None)  # holds output_dir verbatim; config_hash covers the rest
        digest[name] = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
    return digest


def paths_under(root: Path) -> set[str]:
    found: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        for name in [*dirnames, *filenames]:
            found.add(os.path.normpath(os.path.join(rel, name)))
    return found


def watch_paths(proc: subprocess.Popen[bytes], root: Path, stop_at: int | None) -> list[str]:
    """New paths under ``root`` in the order they appear (polled every ms); with ``stop_at``, SIGKILL
    the process as soon as the ``stop_at``-th new path is seen."""
    seen: set[str] = set()
    order: list[str] = []
    while proc.poll() is None:
        if root.exists():
            for path in sorted(paths_under(root) - seen):
                seen.add(path)
                order.append(path)
                if stop_at is not None and len(order) >= stop_at:
                    proc.send_signal(signal.SIGKILL)
                    proc.wait()
                    return order
        time.sleep(0.001)
    return order


# ------------------------------------------------------------------------------- 1. sft-prep kills


def bench_prep_kills(tmp: Path, rng: random.Random, n_random: int, n_events: int) -> dict[str, Any]:
    reference_out = tmp / "reference"
    config = prep_config(tmp, "reference.yaml", reference_out)
    started = time.monotonic()
    with (tmp / "reference.log").open("wb") as log:
        proc = subprocess.Popen(prep_cmd(config), env=PREP_ENV, stdout=subprocess.DEVNULL, stderr=log)
        events = watch_paths(proc, reference_out, None)
    duration = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"the reference sft-prep run failed: {(tmp / 'reference.log').read_text()[-2000:]}")
    reference = output_digest(reference_out)

    def trial(index: int, kill: Callable[[subprocess.Popen[bytes], Path], None]) -> dict[str, Any]:
        out = tmp / f"kill-{index:03d}"
        cfg = prep_config(tmp, f"kill-{index:03d}.yaml", out)
        first = subprocess.Popen(
            prep_cmd(cfg), env=PREP_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        kill(first, out)
        first.wait()
        killed = first.returncode == -signal.SIGKILL
        rerun = subprocess.run(prep_cmd(cfg), env=PREP_ENV, capture_output=True, text=True, timeout=600)
        identical = rerun.returncode == 0 and output_digest(out) == reference
        return {
            "killed": killed,
            "rerun_exit": rerun.returncode,
            "identical": identical,
            "error": "" if rerun.returncode == 0 else rerun.stderr.strip().splitlines()[-1:],
        }

    random_trials = []
    for i in range(n_random):
        delay = rng.uniform(0.0, duration)

        def at_time(proc: subprocess.Popen[bytes], _out: Path, delay: float = delay) -> None:
            try:
                proc.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)

        random_trials.append({"at_s": round(delay, 2), **trial(i, at_time)})

    picks = sorted(
        set(round(k) for k in (1 + j * (len(events) - 1) / max(1, n_events - 1) for j in range(n_events)))
    )
    event_trials = []
    for j, k in enumerate(picks):

        def at_event(proc: subprocess.Popen[bytes], out: Path, k: int = k) -> None:
            watch_paths(proc, out, k)

        event_trials.append({"event": k, "path": events[k - 1], **trial(100 + j, at_event)})
    return {
        "reference_s": round(duration, 2),
        "file_events": len(events),
        "random": random_trials,
        "by_file_event": event_trials,
    }


# ------------------------------------------------------------------------------ 2. operator kills


class OperatorProcess:
    """``python -m sft_operator`` against the emulator, restartable; SIGKILL is the only way it stops."""

    def __init__(self, kube: KubeEmulator, tmp: Path) -> None:
        self.kube = kube
        kubeconfig = kube.write_kubeconfig(tmp / "kubeconfig")
        self.env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
        self.env.pop("KUBERNETES_SERVICE_HOST", None)
        self.env["SFT_DEFAULT_TRAINER_IMAGE"] = "ghcr.io/sft-operator/sft-trainer:bench"
        self.log = (tmp / "operator.log").open("ab")
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    def start(self) -> None:
        mark = len(list(self.kube.requests))
        cmd = [
            sys.executable, "-m", "sft_operator", "--namespace", NAMESPACE, "--standalone",
            "--liveness", "none", "--log-level", "WARNING",
        ]  # fmt: skip
        self.proc = subprocess.Popen(cmd, env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # ready once it watches both kinds
            watched = {
                r.url.path.rsplit("/", 1)[-1]
                for r in list(self.kube.requests)[mark:]
                if dict(r.url.query).get("watch") in ("true", "1")
            }
            if {"sftdatapreps", "sftruns"} <= watched:
                return
            time.sleep(0.02)
        raise SystemExit("the operator did not start watching within 60 s")

    def kill_and_restart(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.restarts += 1
        self.start()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self.log.close()


def _requests_since(kube: KubeEmulator, mark: int) -> list[Any]:
    return list(kube.requests)[mark:]


def wait_request(kube: KubeEmulator, mark: int, method: str, path_end: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for r in _requests_since(kube, mark):
            if str(r.method).upper().endswith(method) and r.url.path.endswith(path_end):
                return
        time.sleep(0.002)
    raise TimeoutError(f"no {method} …{path_end} within {timeout} s")


def wait_phase(kube: KubeEmulator, kind: str, name: str, phase: str, timeout: float = 20) -> None:
    kube.wait_for(lambda: (kube.get(kind, name).get("status") or {}).get("phase") == phase, timeout)


def owned(kube: KubeEmulator, kind: str, uid: str) -> list[dict[str, Any]]:
    return [
        o
        for o in kube.list(kind, NAMESPACE)
        if any(ref.get("uid") == uid for ref in o["metadata"].get("ownerReferences") or [])
    ]


class Lifecycle:
    """One CR driven through its life by the driver (the Job controller / training-operator parts),
    with named points at which a callback (the kill) runs."""

    POINTS = (
        "created",
        "configmap-posted",
        "child-posted",
        "status-written",
        "child-running",
        "child-finished",
        "succeeded",
    )

    def __init__(self, kube: KubeEmulator, kind: str, name: str) -> None:
        self.kube, self.kind, self.name = kube, kind, name
        self.child_kind = "Job" if kind == "SFTDataPrep" else "PyTorchJob"
        self.child_name = f"{name}-prep" if kind == "SFTDataPrep" else f"{name}-train"
        self.save = f"s3://bucket/ckpt/{name}"

    def run(self, at: Callable[[str], None]) -> None:
        from test_sftrun_operator import finish_prep, master_pod, prep, ptj_conditions, run

        kube = self.kube
        mark = len(list(kube.requests))
        if self.kind == "SFTDataPrep":
            body = prep(self.name)
            body["spec"]["outputDir"] = f"s3://bucket/{self.name}"  # one output per prep (OutputInUse)
            kube.create(body)
        else:
            kube.create(
                run(
                    self.name,
                    data={"uri": "s3://bucket/prep", "packSize": 1024},
                    checkpoint={"save": self.save},  # one checkpoint.save per run (OutputInUse)
                )
            )
        at("created")
        wait_request(kube, mark, "POST", "/configmaps")
        at("configmap-posted")
        wait_request(kube, mark, "POST", "/jobs" if self.kind == "SFTDataPrep" else "/pytorchjobs")
        at("child-posted")
        wait_request(kube, mark, "PATCH", f"/{self.name}/status")
        at("status-written")
        child = kube.wait_for_object(self.child_kind, self.child_name, timeout=15)
        if self.kind == "SFTDataPrep":
            kube.patch_status("Job", self.child_name, {"active": 1, "startTime": "2026-11-25T10:00:00Z"})
            at("child-running")
            finish_prep(kube, ok=True, name=self.name)
        else:
            kube.patch_status(
                "PyTorchJob", self.child_name, {"conditions": ptj_conditions("Created", "Running")}
            )
            at("child-running")
            result = {
                "status": "succeeded",
                "checkpoint": self.save,
                "lastIteration": 50,
                "finalLoss": 1.1,
            }
            master_pod(
                kube,
                child,
                "Succeeded",
                {"exitCode": 0, "reason": "Completed", "message": json.dumps(result)},
            )
            kube.patch_status(
                "PyTorchJob",
                self.child_name,
                {
                    "completionTime": "2026-11-25T10:30:00Z",
                    "conditions": ptj_conditions("Created", "Succeeded"),
                },
            )
        at("child-finished")
        wait_phase(kube, self.kind, self.name, "Succeeded")
        at("succeeded")

    def verdict(self) -> dict[str, Any]:
        kube = self.kube
        time.sleep(0.5)  # anything still in flight lands now
        cr = kube.get(self.kind, self.name)
        uid = cr["metadata"]["uid"]
        children = owned(kube, self.child_kind, uid)
        config_maps = owned(kube, "ConfigMap", uid)
        st = cr.get("status") or {}
        ready = next((c for c in st.get("conditions") or [] if c["type"] == "Ready"), {})
        problems = []
        if st.get("phase") != "Succeeded":
            problems.append(f"phase {st.get('phase')}")
        if st.get("observedGeneration") != cr["metadata"].get("generation"):
            problems.append("stale observedGeneration")
        if ready.get("status") != "True":
            problems.append("Ready not True")
        if len(children) == 1 and (st.get("jobRef") or {}).get("uid") != children[0]["metadata"]["uid"]:
            problems.append("jobRef does not name the child")
        return {
            "duplicate_children": len(children) > 1 or len(config_maps) > 1,
            "children": len(children),
            "config_maps": len(config_maps),
            "wrong_status": bool(problems),
            "problems": problems,
        }


def bench_operator_kills(tmp: Path, rng: random.Random, n_random: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with KubeEmulator(crds=[REPO / "manifests" / "crds"]) as kube:
        kube.install_pytorchjob_crd()
        operator = OperatorProcess(kube, tmp)
        operator.start()
        try:
            counter = 0
            for kind in ("SFTDataPrep", "SFTRun"):
                trials = []
                for point in Lifecycle.POINTS:
                    counter += 1
                    life = Lifecycle(kube, kind, f"k{counter:03d}")

                    def at(now: str, point: str = point) -> None:
                        if now == point:
                            operator.kill_and_restart()

                    try:
                        life.run(at)
                        trials.append({"point": point, **life.verdict()})
                    except (TimeoutError, AssertionError) as exc:
                        trials.append(
                            {
                                "point": point,
                                "duplicate_children": False,
                                "wrong_status": True,
                                "problems": [f"stuck: {exc}"],
                            }
                        )
                for _ in range(n_random):
                    counter += 1
                    life = Lifecycle(kube, kind, f"k{counter:03d}")
                    delay = rng.uniform(0.0, 2.0)
                    failure: list[str] = []

                    def drive(life: Lifecycle = life, failure: list[str] = failure) -> None:
                        try:
                            life.run(lambda _now: None)
                        except Exception as exc:  # reported below as a wrong status
                            failure.append(f"stuck: {exc}")

                    driver = threading.Thread(target=drive)
                    driver.start()
                    time.sleep(delay)
                    operator.kill_and_restart()
                    driver.join(120)
                    verdict = life.verdict()
                    if failure:
                        verdict["wrong_status"] = True
                        verdict["problems"] = [*verdict["problems"], *failure]
                    trials.append({"point": f"random {delay:.2f}s", **verdict})
                results[kind] = trials
        finally:
            operator.stop()
    return results


# ---------------------------------------------------------------------------- 3. malformed rows


def good_row(i: int) -> dict[str, Any]:
    return {
        "messages": [
            {"role": "user", "content": f"What is {i} plus {i}?"},
            {"role": "assistant", "content": f"{i} plus {i} is {2 * i}."},
        ]
    }


def _nested(depth: int) -> str:
    return '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}], ' + (
        '"meta": ' + "[" * depth + "]" * depth + "}"
    )


BAD_ROWS: dict[str, Callable[[int], str]] = {
    "bad_json": lambda i: '{"messages": [{"role": "user", "content": "cut off',
    "bad_row_type": lambda i: json.dumps([good_row(i)]),
    "missing_messages": lambda i: json.dumps({"conversation": good_row(i)["messages"]}),
    "bad_messages_type": lambda i: json.dumps({"messages": "hello"}),
    "empty_conversation": lambda i: json.dumps({"messages": []}),
    "bad_message_type": lambda i: json.dumps({"messages": ["hello", {"role": "assistant", "content": "x"}]}),
    "missing_role": lambda i: json.dumps(
        {"messages": [{"content": "x"}, {"role": "assistant", "content": "y"}]}
    ),
    "unknown_role": lambda i: json.dumps(
        {"messages": [{"role": "narrator", "content": "x"}, {"role": "assistant", "content": "y"}]}
    ),
    "bad_content_type": lambda i: json.dumps(
        {"messages": [{"role": "user", "content": {"text": 1}}, {"role": "assistant", "content": "y"}]}
    ),
    "non_text_content": lambda i: json.dumps(
        {
            "messages": [
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]},
                {"role": "assistant", "content": "y"},
            ]
        }
    ),
    "bad_reasoning_type": lambda i: json.dumps(
        {
            "messages": [
                {"role": "user", "content": "x"},
                {"role": "assistant", "content": "y", "reasoning_content": 5},
            ]
        }
    ),
    "bad_tool_calls": lambda i: json.dumps(
        {
            "messages": [
                {"role": "user", "content": "x"},
                {"role": "assistant", "content": "", "tool_calls": "call it"},
            ]
        }
    ),
    "bad_tool_arguments": lambda i: json.dumps(
        {
            "messages": [
                {"role": "user", "content": "x"},
                {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": "{not json"}}],
                },
            ]
        }
    ),
    "bad_tools": lambda i: json.dumps({"tools": "all of them", **good_row(i)}),
    "no_assistant_turn": lambda i: json.dumps({"messages": [{"role": "user", "content": "anyone?"}]}),
    # hostile rows (issue 13): each must be counted, never stop the run
    "lone_surrogate": lambda i: (
        '{"messages": [{"role": "user", "content": "\\ud800"}, {"role": "assistant", "content": "ok"}]}'
    ),
    "surrogate_tool_name": lambda i: (
        '{"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "", "tool_calls": '
        '[{"type": "function", "function": {"name": "f\\udfff", "arguments": "{}"}}]}]}'
    ),
    "deep_nesting": lambda i: _nested(1100),
    "huge_row": lambda i: json.dumps(
        {"messages": [{"role": "user", "content": "x" * 2_000_000}, {"role": "assistant", "content": "y"}]}
    ),
}
HOSTILE = ("lone_surrogate", "surrogate_tool_name", "deep_nesting", "huge_row")
BAD_PER_KIND, GOOD_PER_KIND = 3, 12


def _dataset(tmp: Path, kind: str, offset: int) -> dict[str, Any]:
    lines = []
    for i in range(GOOD_PER_KIND):
        lines.append(json.dumps(good_row(offset + i)))
        if i % 4 == 1 and len(lines) < GOOD_PER_KIND + BAD_PER_KIND:
            lines.append(BAD_ROWS[kind](offset + i))
    path = tmp / "rows" / f"{kind}.jsonl"
    path.parent.mkdir(exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return {"name": kind.replace("_", "-"), "path": str(path)}


def _prep_rows(tmp: Path, kinds: list[str], tag: str) -> tuple[int, dict[str, Any], str]:
    datasets = [_dataset(tmp, kind, 1000 * n) for n, kind in enumerate(kinds)]
    out = tmp / f"rows-out-{tag}"
    cfg = prep_config(tmp, f"rows-{tag}.yaml", out, datasets)
    proc = subprocess.run(prep_cmd(cfg), env=PREP_ENV, capture_output=True, text=True, timeout=600)
    metadata = json.loads((out / "metadata.json").read_text()) if proc.returncode == 0 else {}
    last = (proc.stderr.strip().splitlines() or [""])[-1]
    return proc.returncode, metadata, last


def bench_malformed_rows(tmp: Path) -> dict[str, Any]:
    results: dict[str, Any] = {}
    ordinary = [k for k in BAD_ROWS if k not in HOSTILE]
    missing = sorted(set(REASONS) - set(BAD_ROWS))
    groups = [(ordinary, "ordinary")] + [([k], k) for k in HOSTILE]
    for kinds, tag in groups:
        code, metadata, last = _prep_rows(tmp, kinds, tag)
        for kind in kinds:
            if code != 0:
                results[kind] = {
                    "counted": 0,
                    "bad": BAD_PER_KIND,
                    "kept": 0,
                    "good": GOOD_PER_KIND,
                    "crash": f"exit {code}: {last[:160]}",
                }
                continue
            stats = metadata["datasets"][kind.replace("_", "-")]
            results[kind] = {
                "counted": stats["rows_dropped"],
                "bad": BAD_PER_KIND,
                "kept": stats["rows_kept"],
                "good": GOOD_PER_KIND,
                "crash": "",
            }
    return {"kinds": results, "reasons_without_a_row_here": missing}


# ------------------------------------------------------------------------------- 4. invalid CRs


def claim_holders() -> list[dict[str, Any]]:
    """A valid SFTDataPrep and SFTRun, started before the invalid CRs: they hold their outputDir and
    checkpoint.save whatever the creation timestamps say (:mod:`sft_operator.claims`)."""
    from test_operator_dataprep import prep
    from test_sftrun_operator import run

    return [
        prep("holder", outputDir="s3://bucket/claimed-prep"),
        run(
            "holder",
            data={"uri": "s3://bucket/prep", "packSize": 1024},
            checkpoint={"save": "s3://bucket/claimed-ckpt"},
        ),
    ]


def _own_location(spec: dict[str, Any], n: int) -> dict[str, Any]:
    """``spec`` with ``-NNN`` appended to its outputDir or checkpoint.save, where it has one."""
    if spec.get("outputDir"):
        spec = {**spec, "outputDir": f"{spec['outputDir']}-{n:03d}"}
    if isinstance(spec.get("checkpoint"), dict) and spec["checkpoint"].get("save"):
        spec = {**spec, "checkpoint": {**spec["checkpoint"], "save": f"{spec['checkpoint']['save']}-{n:03d}"}}
    return spec


def invalid_crs() -> list[tuple[str, dict[str, Any]]]:
    from test_operator_dataprep import prep
    from test_sftrun_operator import run

    def p(**spec: Any) -> dict[str, Any]:
        return prep("x", **spec)["spec"]

    def r(**spec: Any) -> dict[str, Any]:
        return run("x", **{"data": {"uri": "s3://bucket/prep", "packSize": 1024}, **spec})["spec"]

    base_p, base_r = p(), r()
    without = lambda spec, key: {k: v for k, v in spec.items() if k != key}  # noqa: E731
    cases: list[tuple[str, str, dict[str, Any]]] = [
        ("SFTDataPrep", "no datasets", without(base_p, "datasets")),
        ("SFTDataPrep", "empty datasets", p(datasets=[])),
        ("SFTDataPrep", "dataset without path", p(datasets=[{"name": "a"}])),
        (
            "SFTDataPrep",
            "duplicate dataset names",
            p(datasets=[{"name": "a", "path": "s3://b/1"}, {"name": "a", "path": "s3://b/2"}]),
        ),
        ("SFTDataPrep", "negative weight", p(datasets=[{"name": "a", "path": "s3://b/1", "weight": -1}])),
        ("SFTDataPrep", "no tokenizer", without(base_p, "tokenizer")),
        ("SFTDataPrep", "no outputDir", without(base_p, "outputDir")),
        ("SFTDataPrep", "relative outputDir", p(outputDir="out/prep")),
        ("SFTDataPrep", "ftp outputDir", p(outputDir="ftp://host/out")),
        ("SFTDataPrep", "local outputDir, no volume", p(outputDir="/data/out")),
        ("SFTDataPrep", "numShards 0", p(numShards=0)),
        ("SFTDataPrep", "numShards a string", p(numShards="four")),
        ("SFTDataPrep", "parallelism 0", p(parallelism=0)),
        ("SFTDataPrep", "packSize -1", p(packSize=-1)),
        ("SFTDataPrep", "packSize 1e12", p(packSize=10**12)),
        ("SFTDataPrep", "packSize 8", p(packSize=8)),
        ("SFTDataPrep", "validRatio 2", p(validRatio=2.0)),
        ("SFTDataPrep", "literal HF_TOKEN", p(env=[{"name": "HF_TOKEN", "value": "not-a-real-token"}])),
        (
            "SFTDataPrep",
            "value and valueFrom",
            p(env=[{"name": "A", "value": "1", "valueFrom": {"fieldRef": {"fieldPath": "x"}}}]),
        ),
        ("SFTDataPrep", "SFT_OWNER_ env", p(env=[{"name": "SFT_OWNER_NAME", "value": "other"}])),
        ("SFTDataPrep", "reserved volume name", p(volumes=[{"name": "sft-config", "emptyDir": {}}])),
        ("SFTDataPrep", "mount of a missing volume", p(volumeMounts=[{"name": "nope", "mountPath": "/x"}])),
        (
            "SFTDataPrep",
            "mount over /etc/sft",
            p(volumes=[{"name": "v", "emptyDir": {}}], volumeMounts=[{"name": "v", "mountPath": "/etc/sft"}]),
        ),
        (
            "SFTDataPrep",
            "hostPath /",
            p(
                volumes=[{"name": "root", "hostPath": {"path": "/"}}],
                volumeMounts=[{"name": "root", "mountPath": "/host"}],
            ),
        ),
        ("SFTDataPrep", "foreign ServiceAccount", p(serviceAccountName="cluster-admin")),
        ("SFTDataPrep", "resources not quantities", p(resources={"limits": {"memory": "lots"}})),
        ("SFTDataPrep", "toleration operator Maybe", p(tolerations=[{"key": "a", "operator": "Maybe"}])),
        ("SFTDataPrep", "image empty", p(image="")),
        ("SFTDataPrep", "pull policy Sometimes", p(imagePullPolicy="Sometimes")),
        ("SFTDataPrep", "backoffLimit 1000", p(backoffLimit=1000)),
        ("SFTDataPrep", "queueName with capitals", p(queueName="Team_A")),
        ("SFTDataPrep", "suspend 'yes'", p(suspend="yes")),
        ("SFTRun", "no data", without(base_r, "data")),
        ("SFTRun", "data uri and dataPrepRef", r(data={"uri": "s3://b/p", "dataPrepRef": {"name": "p"}})),
        ("SFTRun", "no model", without(base_r, "model")),
        ("SFTRun", "no checkpoint.save", r(checkpoint={})),
        ("SFTRun", "trainIters 0", r(train={"trainIters": 0})),
        ("SFTRun", "engine tensorflow", r(engine="tensorflow")),
        ("SFTRun", "megatron without GPUs", r(engine="megatron", precision="bf16")),
        ("SFTRun", "nodes 0", r(nodes=0)),
        (
            "SFTRun",
            "tensor parallel 3 of 8 GPUs",
            r(
                engine="megatron",
                precision="bf16",
                gpusPerNode=8,
                nodes=1,
                parallelism={"tensorParallelSize": 3},
            ),
        ),
        ("SFTRun", "relative checkpoint", r(checkpoint={"save": "ckpt"})),
        ("SFTRun", "hostPath volume", r(volumes=[{"name": "h", "hostPath": {"path": "/var"}}])),
        ("SFTRun", "foreign ServiceAccount", r(serviceAccountName="default")),
        ("SFTRun", "literal WANDB_API_KEY", r(env=[{"name": "WANDB_API_KEY", "value": "not-a-real-key"}])),
    ]
    # Each its own output: a shared one would hold later CRs back as OutputInUse before their fault.
    cases = [(kind, label, _own_location(spec, n)) for n, (kind, label, spec) in enumerate(cases)]
    # valid specs whose only fault is their location: the one a started claim holder writes to
    cases += [(h["kind"], "output claimed by a started CR", h["spec"]) for h in claim_holders()]
    return [
        (
            f"{kind}: {label}",
            {
                "apiVersion": "sft.dev/v1alpha1",
                "kind": kind,
                "metadata": {"name": f"bad-{n:03d}", "namespace": NAMESPACE},
                "spec": spec,
            },
        )
        for n, (kind, label, spec) in enumerate(cases)
    ]


def bench_invalid_crs(tmp: Path) -> dict[str, Any]:
    from inprocess_operator import TEST_IMAGE, run_operator
    from sft_operator.render.pods import WorkloadDefaults

    verdicts: dict[str, str] = {}
    with KubeEmulator(crds=[REPO / "manifests" / "crds"]) as kube:
        kube.install_pytorchjob_crd()
        os.environ["KUBECONFIG"] = str(kube.write_kubeconfig(tmp / "kubeconfig-invalid"))
        os.environ.pop("KUBERNETES_SERVICE_HOST", None)
        # no shared ServiceAccount: each CR gets its own from the operator (the chart's default)
        defaults = WorkloadDefaults(prep_image=TEST_IMAGE, trainer_image=TEST_IMAGE)
        with run_operator(NAMESPACE, defaults=defaults, timeout=120) as runner:
            for holder in claim_holders():
                kube.create(holder)
                kind, name = holder["kind"], holder["metadata"]["name"]
                kube.wait_for(
                    lambda kind=kind, name=name: (kube.get(kind, name).get("status") or {}).get("jobRef"),
                    30,
                    message=f"{kind} {name} started",
                )
            accepted = []
            for label, body in invalid_crs():
                try:
                    kube.create(body)
                    accepted.append((label, body))
                except ApiError as exc:
                    verdicts[label] = f"rejected ({exc.code})"
            deadline = time.monotonic() + 30
            pending = dict(accepted)
            while pending and time.monotonic() < deadline:
                for label, body in list(pending.items()):
                    st = kube.get(body["kind"], body["metadata"]["name"]).get("status") or {}
                    stalled = next((c for c in st.get("conditions") or [] if c["type"] == "Stalled"), {})
                    if stalled.get("status") == "True":
                        verdicts[label] = f"Stalled ({stalled.get('reason')})"
                        del pending[label]
                time.sleep(0.1)
            for label, body in pending.items():
                st = kube.get(body["kind"], body["metadata"]["name"]).get("status") or {}
                verdicts[label] = f"ACCEPTED: phase {st.get('phase')}"
        output = runner.output
    crashes = output.count("Traceback (most recent call last)")
    return {
        "verdicts": verdicts,
        "crashes": crashes,
        "operator_exception": repr(runner.exception) if runner.exception else "",
    }


# ------------------------------------------------------------------------------------------- main


# ------------------------------------------------------------------------------- 5. API faults


def bench_api_faults(tmp: Path, n_crs: int = 4) -> dict[str, Any]:
    """A real ``python -m sft_operator`` behind ``tests/operator/fault_proxy.FaultProxy``: watch ERROR
    events, 500s, 429 with Retry-After, dropped responses (request applied, answer lost) and a 5 s
    outage of 503s while ``n_crs`` SFTDataPreps are created and their Jobs start. Counted: faults
    injected, CRs with duplicated children, CRs whose status or Events miss a transition (or repeat
    an Event), operator exits, and how long its watches were blind."""
    import contextlib

    from fault_proxy import FaultProxy
    from test_api_faults import get, metric, operator_through, wait_ready
    from test_operator_dataprep import make_pod, prep

    started = time.monotonic()
    with (
        KubeEmulator(crds=[REPO / "manifests" / "crds"]) as kube,
        FaultProxy(kube.url) as proxy,
        operator_through(kube, proxy.url, tmp) as op,
    ):
        wait_ready(kube, op)
        rules = [
            proxy.watch_error(r"/sftdatapreps$", code=500, times=2),
            proxy.fail("POST", r"/configmaps$", 500, times=2),
            proxy.fail(
                "POST", r"/jobs$", 429, reason="TooManyRequests", headers={"Retry-After": "1"}, times=1
            ),
            proxy.drop_response("POST", r"/jobs$", times=2),
            proxy.drop_response("PATCH", r"/status$", times=2),
            proxy.fail("POST", r"/events$", 500, times=2),
            proxy.fail("PATCH", r"/status$", 503, reason="ServiceUnavailable", times=2),
        ]
        proxy.cut_streams()
        names = [f"api{i}" for i in range(n_crs)]
        for i, name in enumerate(names):
            kube.create(prep(name, outputDir=f"s3://bucket/api{i}"))
            if i == n_crs // 2:  # an outage in the middle
                proxy.outage(503)
                time.sleep(5)
                outage_requests = sum(1 for _t, _m, _p, s in proxy.log if s == 503)
                proxy.restore()
        for name in names:
            job = kube.wait_for_object("Job", f"{name}-prep", timeout=60)
            kube.patch_status(
                "Job", job["metadata"]["name"], {"active": 2, "startTime": "2026-11-25T10:00:00Z"}
            )
            make_pod(kube, job, 0, "Running")

        def settled() -> bool:
            return all(
                (kube.get("SFTDataPrep", n).get("status") or {}).get("phase") == "Running" for n in names
            )

        with contextlib.suppress(AssertionError):  # counted below as status lost
            kube.wait_for(settled, 60, message="every prep Running")
        time.sleep(1.0)
        verdicts = {}
        for name in names:
            cr = kube.get("SFTDataPrep", name)
            uid, st = cr["metadata"]["uid"], cr.get("status") or {}
            jobs = owned(kube, "Job", uid)
            cms = owned(kube, "ConfigMap", uid)
            reasons = [e["reason"] for e in kube.events(NAMESPACE, name)]
            verdicts[name] = {
                "duplicate_children": len(jobs) > 1 or len(cms) > 1,
                "status_lost": not (
                    st.get("phase") == "Running"
                    and (st.get("jobRef") or {}).get("name") == f"{name}-prep"
                    and st.get("observedGeneration") == cr["metadata"].get("generation")
                ),
                "events_lost": not {"JobCreated", "Pending", "Running"} <= set(reasons),
                "events_repeated": len(reasons) != len(set(reasons)),
            }
        blind = metric(op.metrics, "sft_operator_watch_blind_seconds_total")
        ready = get(op.ready)[0] == 200
        exits = 0 if op.alive() else 1
    faults = sum(len(r.hits) for r in rules) + outage_requests
    return {
        "faults_injected": faults,
        "by_rule": {f"{r.kind} {r.method} {r.path.pattern}": len(r.hits) for r in rules},
        "outage_requests": outage_requests,
        "crs": verdicts,
        "watch_blind_seconds": round(blind, 1),
        "ready_at_end": ready,
        "operator_exits": exits,
        "seconds": round(time.monotonic() - started, 1),
    }


def report_api_faults(r: dict[str, Any]) -> bool:
    crs = r["crs"].values()
    dup = sum(v["duplicate_children"] for v in crs)
    lost = sum(v["status_lost"] for v in crs)
    ev_lost = sum(v["events_lost"] for v in crs)
    ev_rep = sum(v["events_repeated"] for v in crs)
    print(
        f"\n5. API faults through a proxy ({len(r['crs'])} SFTDataPreps, {r['seconds']} s): "
        f"faults injected {r['faults_injected']} (outage 503s {r['outage_requests']}), "
        f"children duplicated {dup}, status lost {lost}, events lost {ev_lost} / repeated {ev_rep}, "
        f"operator exits {r['operator_exits']}, watches blind {r['watch_blind_seconds']} s, "
        f"ready at the end {r['ready_at_end']}"
    )
    for name, v in r["crs"].items():
        if any(v.values()):
            print(f"     {name}: {v}")
    return dup == lost == ev_lost == ev_rep == r["operator_exits"] == 0 and r["ready_at_end"]


# --------------------------------------------------------------------------------------- preemption

PREEMPT_ITERS = 16
PREEMPT_SAVE_INTERVAL = 5


def _metrics(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if "loss" in record:
            out.append(record)
    return out


def _train_run(config: Path, metrics: Path, stop_after: int | None, env: dict[str, str]) -> tuple[int, float]:
    """``sft-train`` as a process; SIGTERM it once ``metrics`` shows iteration ``stop_after``."""
    argv = [sys.executable, "-m", "sft_train", "--config", str(config), f"logging.metrics_file={metrics}"]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    signalled_at = 0.0
    deadline = time.monotonic() + 300
    while stop_after is not None and proc.poll() is None and time.monotonic() < deadline:
        done = _metrics(metrics)
        if done and done[-1]["iteration"] >= stop_after:
            proc.send_signal(signal.SIGTERM)
            signalled_at = time.monotonic()
            break
        time.sleep(0.005)
    code = proc.wait(timeout=300)
    return code, (time.monotonic() - signalled_at) if signalled_at else 0.0


def _weights(checkpoint: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(checkpoint / "model" / "model.safetensors"))


def bench_preemption(tmp: Path, rng: random.Random, n_trials: int) -> dict[str, Any]:
    sys.path.insert(0, str(REPO / "tests" / "train"))
    import numpy as np
    from trainfixtures import build_tiny_llama, hf_config, pack, random_conversation, write_prep_output

    root = tmp / "preempt"
    gen = np.random.default_rng(0)
    data = write_prep_output(root / "data", pack([random_conversation(gen) for _ in range(40)]))
    model = build_tiny_llama(root / "model")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SFT_PROGRESS": "off", "SFT_TERMINATION_LOG": ""}

    def config(name: str) -> Path:
        cfg = hf_config(data, model, root / name / "ck")
        cfg["train"]["train_iters"] = PREEMPT_ITERS
        cfg["checkpoint"]["save_interval"] = PREEMPT_SAVE_INTERVAL
        path = root / name / "run.yaml"
        path.parent.mkdir(parents=True)
        path.write_text(yaml.safe_dump(cfg))
        return path

    t0 = time.monotonic()
    ref_metrics = root / "reference.jsonl"
    ref_code, _ = _train_run(config("reference"), ref_metrics, None, env)
    reference_s = round(time.monotonic() - t0, 1)
    ref_losses = [r["loss"] for r in _metrics(ref_metrics)]
    ref_weights = _weights(root / "reference" / "ck" / f"iter_{PREEMPT_ITERS:07d}")
    between = [i for i in range(2, PREEMPT_ITERS - 1) if i % PREEMPT_SAVE_INTERVAL]
    trials = []
    for n, at in enumerate(sorted(rng.sample(between, min(n_trials, len(between))))):
        name = f"trial{n}"
        metrics = root / f"{name}.jsonl"
        term = root / f"{name}.termination-log"
        code, exit_s = _train_run(config(name), metrics, at, {**env, "SFT_TERMINATION_LOG": str(term)})
        message = json.loads(term.read_text()) if term.exists() else {}
        saved = message.get("iteration")
        computed = max((r["iteration"] for r in _metrics(metrics)), default=0)
        resumed_code, _ = _train_run(root / name / "run.yaml", metrics, None, env)
        records = _metrics(metrics)
        iterations = [r["iteration"] for r in records]
        losses = [r["loss"] for r in records]
        loss_diff = (
            max(abs(a - b) for a, b in zip(losses, ref_losses, strict=True))
            if len(losses) == len(ref_losses)
            else float("inf")
        )
        weights = _weights(root / name / "ck" / f"iter_{PREEMPT_ITERS:07d}")
        weight_diff = max(float((weights[k] - ref_weights[k]).abs().max()) for k in ref_weights)
        trials.append(
            {
                "signalled_after": at,
                "exit_code": code,
                "reason": message.get("reason"),
                "saved_iteration": saved,
                "lost_beyond_save": computed - saved if saved is not None else computed,
                "lost_without_handler": computed
                - (computed // PREEMPT_SAVE_INTERVAL) * PREEMPT_SAVE_INTERVAL,
                "exit_seconds": round(exit_s, 2),
                "resume_exit_code": resumed_code,
                "logged_twice": len(iterations) - len(set(iterations)),
                "all_logged": sorted(set(iterations)) == list(range(1, PREEMPT_ITERS + 1)),
                "max_loss_diff": loss_diff,
                "max_weight_diff": weight_diff,
            }
        )
    return {"reference_s": reference_s, "reference_exit": ref_code, "trials": trials}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prep-random", type=int, default=6, help="sft-prep kills at random moments")
    parser.add_argument("--prep-events", type=int, default=8, help="sft-prep kills at file events")
    parser.add_argument(
        "--operator-random", type=int, default=2, help="operator kills at random moments, per kind"
    )
    parser.add_argument(
        "--preempt-trials", type=int, default=3, help="sft-train SIGTERMs at random iterations"
    )
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--json", type=Path, default=None, help="also write every trial here")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    started = time.monotonic()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        timings = {}
        for name, run_section in (
            ("prep_kills", lambda: bench_prep_kills(tmp, rng, args.prep_random, args.prep_events)),
            ("operator_kills", lambda: bench_operator_kills(tmp, rng, args.operator_random)),
            ("malformed_rows", lambda: bench_malformed_rows(tmp)),
            ("invalid_crs", lambda: bench_invalid_crs(tmp)),
            ("api_faults", lambda: bench_api_faults(tmp)),
            ("preemption", lambda: bench_preemption(tmp, rng, args.preempt_trials)),
        ):
            t0 = time.monotonic()
            results[name] = run_section()
            timings[name] = round(time.monotonic() - t0, 1)
    results["seconds"] = {**timings, "total": round(time.monotonic() - started, 1)}
    ok = report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
    return 0 if ok else 1


def report(results: dict[str, Any]) -> bool:
    prep = results["prep_kills"]
    print(f"sft-operator fault benchmark (seed-fixed, loopback only; {results['seconds']['total']} s)")
    reference = f"reference run {prep['reference_s']} s, {prep['file_events']} file events"
    print(f"\n1. sft-prep SIGKILL + rerun ({reference})")
    ok = True
    for label, trials in (("random moments", prep["random"]), ("file events", prep["by_file_event"])):
        identical = sum(t["identical"] for t in trials)
        killed = sum(t["killed"] for t in trials)
        ok &= identical == len(trials)
        print(f"   {label:<16} identical {identical}/{len(trials)} (killed before the end: {killed})")
        for t in trials:
            if not t["identical"]:
                print(f"     NOT identical: {t}")
    print("\n2. operator SIGKILL + restart at points of each CR's life")
    for kind, trials in results["operator_kills"].items():
        dup = sum(t["duplicate_children"] for t in trials)
        wrong = sum(t["wrong_status"] for t in trials)
        ok &= dup == 0 and wrong == 0
        points = ", ".join(t["point"] for t in trials)
        print(
            f"   {kind:<12} {len(trials)} kills: duplicate children {dup}, wrong status {wrong}  ({points})"
        )
        for t in trials:
            if t["duplicate_children"] or t["wrong_status"]:
                print(f"     at {t['point']}: {t}")
    rows = results["malformed_rows"]["kinds"]
    print(f"\n3. malformed rows ({BAD_PER_KIND} bad among {GOOD_PER_KIND} good rows per kind)")
    print(f"   {'kind':<22} {'counted':>9} {'good kept':>10}  crash")
    for kind, r in rows.items():
        ok &= not r["crash"] and r["counted"] == r["bad"] and r["kept"] == r["good"]
        print(f"   {kind:<22} {r['counted']:>5}/{r['bad']:<3} {r['kept']:>6}/{r['good']:<3}  {r['crash']}")
    counted = sum(r["counted"] for r in rows.values())
    kept = sum(r["kept"] for r in rows.values())
    crashed = [k for k, r in rows.items() if r["crash"]]
    total_bad, total_good = BAD_PER_KIND * len(rows), GOOD_PER_KIND * len(rows)
    print(
        f"   total: counted {counted}/{total_bad}, good kept {kept}/{total_good}, "
        f"kinds that crashed the run: {len(crashed)} {crashed or ''}"
    )
    inv = results["invalid_crs"]
    verdicts = inv["verdicts"]
    handled = sum(v.startswith(("rejected", "Stalled")) for v in verdicts.values())
    rejected = sum(v.startswith("rejected") for v in verdicts.values())
    ok &= handled == len(verdicts) and inv["crashes"] == 0 and not inv["operator_exception"]
    exception = f" ({inv['operator_exception']})" if inv["operator_exception"] else ""
    print(
        f"\n4. invalid CRs: rejected or Stalled {handled}/{len(verdicts)} (rejected by the API {rejected}, "
        f"Stalled {handled - rejected}), operator crashes {inv['crashes']}{exception}"
    )
    for label, verdict in verdicts.items():
        marker = "   " if verdict.startswith(("rejected", "Stalled")) else " !!"
        print(f"  {marker} {label:<52} {verdict}")
    ok &= report_api_faults(results["api_faults"])
    ok &= report_preemption(results["preemption"])
    print(f"\nseconds per section: {results['seconds']}")
    return ok


def report_preemption(pre: dict[str, Any]) -> bool:
    trials = pre["trials"]
    print(
        f"\n6. sft-train SIGTERM + rerun (engine hf, {PREEMPT_ITERS} iterations, saves every "
        f"{PREEMPT_SAVE_INTERVAL}; uninterrupted reference {pre['reference_s']} s)"
    )
    ok = pre["reference_exit"] == 0
    for t in trials:
        good = (
            t["exit_code"] == 143
            and t["reason"] == "Preempted"
            and t["lost_beyond_save"] == 0
            and t["resume_exit_code"] == 0
            and t["logged_twice"] == 0
            and t["all_logged"]
            and t["max_loss_diff"] == 0
            and t["max_weight_diff"] == 0
        )
        ok &= good
        print(
            f"   {'ok' if good else '!!'} SIGTERM after iteration {t['signalled_after']:>2}: "
            f"exit {t['exit_code']} "
            f"{t['reason']} saved {t['saved_iteration']} in {t['exit_seconds']} s, lost beyond the save "
            f"{t['lost_beyond_save']} (periodic saves alone: {t['lost_without_handler']}), logged twice "
            f"{t['logged_twice']}, max |loss diff| {t['max_loss_diff']:.1e}, max |weight diff| "
            f"{t['max_weight_diff']:.1e}"
        )
    lost = sum(t["lost_beyond_save"] for t in trials)
    print(f"   iterations lost beyond the save in flight: {lost} over {len(trials)} preemptions (must be 0)")
    return ok


if __name__ == "__main__":
    raise SystemExit(main())
