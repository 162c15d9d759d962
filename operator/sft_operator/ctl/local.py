"""``sftctl run -f FILE --local``: the very same YAML on this machine, without a cluster.

For each ``SFTDataPrep`` (first) and ``SFTRun`` of the file, in file order:

1. the spec is validated by the operator's model and turned into the workload config exactly as the
   operator puts it into the ConfigMap (``SFTDataPrepSpec.prep_config()``, ``SFTRunSpec.train_config()``);
2. paths inside the pods are mapped onto this machine: a PersistentVolumeClaim to
   ``--volume CLAIM=DIR`` (default ``WORKDIR/volumes/CLAIM``), a hostPath to itself, an emptyDir to a
   scratch dir, and the images' own files (``/opt/sft/lib/python3.11/site-packages/...``, e.g. the
   bundled sample chats and tokenizer) to this Python's installed packages;
3. the workload CLI runs as the pod would run it (``sft-prep --worker-index I --num-workers N`` for each
   of the ``parallelism`` workers, concurrently, like the Indexed Job; ``sft-train`` for the run);
4. the phases are derived by the operator's own status code (``status.dataprep.derive``,
   ``status.sftrun.derive``) through :mod:`sft_operator.ctl.processes`, which observes the processes
   as a backend observes its child and applies the operator's patch: from the processes' exits, their
   JSON progress lines (what they would patch into the CR) and their termination messages; printed as
   ``sftctl get`` prints them and written as the CR object, status included, to
   ``WORKDIR/<kind>/<name>/status.json``.

What differs from a cluster, each said on the console when it applies: engine ``megatron`` runs only
where CUDA and Megatron-Bridge are present, otherwise the run trains with engine ``hf`` (its
Megatron-only settings are dropped); one training process (``nodes`` × ``gpusPerNode`` are not
reproduced); Secrets (``envFrom``, ``valueFrom``) are not read (the local environment is used, as it
is); pods are not retried (``backoffLimit``); no status is patched anywhere but the local file.

Ctrl-C (SIGINT) or SIGTERM of ``sftctl`` stops the processes as the kubelet stops a deleted pod:
SIGTERM to each process group (the workloads save and exit 143), SIGKILL after the grace period; the
status then derived from their exits is what the operator writes for a child whose pods were killed
(Failed, exit 143), never a Running left behind. The processes run in process groups of their own,
so a terminal's Ctrl-C reaches ``sftctl`` alone and this one path stops them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import FrameType
from typing import IO, Any

from sft_common.config import to_yaml
from sft_common.progress import utcnow_iso
from sft_operator.api.dataprep import SFTDataPrepSpec
from sft_operator.api.meta import DATAPREP, RUN
from sft_operator.api.podspec import PodFields
from sft_operator.api.sftrun import SFTRunSpec
from sft_operator.ctl import processes, show
from sft_operator.ctl.localstore import NAMESPACE, PROCESSES_FILE, STATUS_FILE
from sft_operator.ctl.manifests import Manifest, ManifestError, Resource
from sft_operator.ctl.processes import LocalProcesses, ProcessState
from sft_operator.render import dataprep as render_dataprep
from sft_operator.render import meta
from sft_operator.status import sftrun as status_sftrun

IMAGE_SITE_PACKAGES = "/opt/sft/lib/python3.11/site-packages"
"""Where the images install the project (images/*/Dockerfile: a virtualenv at /opt/sft)."""
PRINT_INTERVAL = 5.0
"""Seconds between progress lines (a phase change prints at once)."""
DEFAULT_GRACE_SECONDS = 30
"""A pod's terminationGracePeriodSeconds when the spec sets none (core/v1 default)."""


class LocalRunError(RuntimeError):
    """Something of the spec that cannot be reproduced on this machine; the message says what to pass."""


def local_site_packages() -> Path:
    """Where this Python has the workloads (the counterpart of the images' site-packages)."""
    import sft_prep

    return Path(sft_prep.__file__).resolve().parents[1]


@dataclass
class PathMap:
    """Container path prefixes → local directories, longest prefix first."""

    prefixes: dict[str, Path] = field(default_factory=dict)

    def add(self, container: str, local: Path) -> None:
        self.prefixes[container.rstrip("/") or "/"] = local

    def local(self, path: str) -> str:
        scheme = "file://" if path.startswith("file://") else ""
        bare = path.removeprefix("file://")
        for prefix in sorted(self.prefixes, key=len, reverse=True):
            if bare == prefix or bare.startswith(prefix + "/"):
                return scheme + str(self.prefixes[prefix]) + bare[len(prefix) :]
        return path

    def rewrite(self, value: Any) -> Any:
        """Every absolute path string in a config structure, mapped."""
        if isinstance(value, str) and (value.startswith("/") or value.startswith("file:///")):
            return self.local(value)
        if isinstance(value, Mapping):
            return {k: self.rewrite(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.rewrite(v) for v in value]
        return value


@dataclass
class LocalSettings:
    workdir: Path
    volumes: dict[str, Path] = field(default_factory=dict)
    """``--volume KEY=DIR``: KEY is a PersistentVolumeClaim's claimName or a volume's name."""
    echo: Callable[[str], None] = print
    verbose: bool = False


def parse_volume_args(values: list[str]) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for value in values:
        key, sep, path = value.partition("=")
        if not sep or not key or not path:
            raise ManifestError(f"--volume {value!r}: expected CLAIM=DIR (or VOLUME=DIR)")
        out[key] = Path(path).expanduser().resolve()
    return out


def path_map(spec: PodFields, resource: Resource, settings: LocalSettings) -> PathMap:
    mapping = PathMap()
    mapping.add(IMAGE_SITE_PACKAGES, local_site_packages())
    volumes = {v.name: v for v in spec.volumes}
    for mount in spec.volume_mounts:
        volume = volumes.get(mount.name)
        if volume is None:
            raise LocalRunError(f"{resource.ref}: volumeMount {mount.name} names no volume in spec.volumes")
        extra = volume.model_extra or {}
        claim = (extra.get("persistentVolumeClaim") or {}).get("claimName")
        if claim and claim in settings.volumes:
            root = settings.volumes[claim]
        elif volume.name in settings.volumes:
            root = settings.volumes[volume.name]
        elif claim:
            root = settings.workdir / "volumes" / claim
        elif "hostPath" in extra:
            root = Path(extra["hostPath"]["path"])
        elif "emptyDir" in extra:
            root = state_dir(settings, resource) / f"emptydir-{volume.name}"
        else:
            source = next(iter(extra), "unknown source")
            raise LocalRunError(
                f"{resource.ref}: volume {volume.name} ({source}) cannot be provided locally; "
                f"pass --volume {volume.name}=DIR"
            )
        if mount.sub_path:
            root = root / mount.sub_path
        root.mkdir(parents=True, exist_ok=True)
        mapping.add(mount.mount_path, root)
    return mapping


def state_dir(settings: LocalSettings, resource: Resource) -> Path:
    return settings.workdir / resource.info.singular / resource.name


def local_object(resource: Resource) -> dict[str, Any]:
    """The CR as the API server would hold it right after creation (a fresh uid per local run)."""
    body = json.loads(json.dumps(resource.body))
    meta = body.setdefault("metadata", {})
    meta.setdefault("namespace", NAMESPACE)
    meta["uid"] = str(uuid.uuid4())
    meta["generation"] = 1
    meta["creationTimestamp"] = utcnow_iso()
    body["status"] = {}
    return body


def _write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(value, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def _user_env(spec: PodFields, resource: Resource, echo: Callable[[str], None]) -> dict[str, str]:
    env: dict[str, str] = {}
    skipped = [e.name for e in spec.env if e.value is None]
    for var in spec.env:
        if var.value is not None:
            env[var.name] = var.value
    if skipped or spec.env_from:
        echo(
            f"  note: {resource.ref}: Secrets/ConfigMaps are not read locally "
            f"({', '.join(skipped) or 'envFrom'}); this shell's environment is used as it is"
        )
    return env


class Worker:
    """One local 'pod': a workload process, its log file, progress lines and termination message."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        folder: Path,
        index: int,
        grace_seconds: int = DEFAULT_GRACE_SECONDS,
    ) -> None:
        self.name = name
        self.grace_seconds = grace_seconds
        self.finished_at: str | None = None
        self.index = index
        self.log_path = folder / f"{name}.log"
        self.termination = folder / f"{name}.termination-log"
        self.termination.unlink(missing_ok=True)
        self.progress: dict[str, Any] | None = None
        self.stdout_lines: list[str] = []
        self._log: IO[str] = open(self.log_path, "w")  # noqa: SIM115 (closed in wait)
        self.proc = subprocess.Popen(
            argv,
            env={
                "SFT_PROGRESS_LOG_INTERVAL": "1",  # what a worker would patch into status, each second
                **env,
                "SFT_TERMINATION_LOG": str(self.termination),
                "SFT_PROGRESS": "json",
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
            process_group=0,  # its own group: a terminal's Ctrl-C reaches sftctl, which stops it (stop)
        )
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, True), daemon=True),
            threading.Thread(target=self._pump, args=(self.proc.stderr, False), daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        self.on_stdout: Callable[[str], None] | None = None

    def _pump(self, stream: IO[str], is_stdout: bool) -> None:
        for line in stream:
            with self._lock:
                self._log.write(line)
                self._log.flush()
            text = line.rstrip("\n")
            if text.startswith("{"):
                try:
                    record = json.loads(text)
                except ValueError:
                    record = None
                if isinstance(record, dict) and str(record.get("event", "")).startswith("progress"):
                    record.pop("event", None)
                    record.pop("elapsedSeconds", None)
                    self.progress = record
                    continue
                if isinstance(record, dict) and record.get("event") == "result":
                    continue
            if is_stdout:
                self.stdout_lines.append(text)
                if self.on_stdout is not None:
                    self.on_stdout(text)

    def poll(self) -> int | None:
        """The exit code as a container runtime reports it (128 + N for death by signal N)."""
        code = self.proc.poll()
        if code is not None and self.finished_at is None:
            self.finished_at = utcnow_iso()
        return 128 - code if code is not None and code < 0 else code

    def state(self) -> ProcessState:
        """What a kubelet would report of this process's container (and its latest progress line)."""
        code = self.poll()
        message = self.termination.read_text() if self.termination.exists() else None
        if message is None and code not in (None, 0):
            message = "\n".join(self.log_path.read_text().splitlines()[-20:])  # FallbackToLogsOnError
        return ProcessState(
            name=self.name,
            index=self.index,
            exit_code=code,
            termination_message=message,
            finished_at=self.finished_at if code is not None else None,
            progress=self.progress,
        )

    def finish(self) -> int:
        self.proc.wait()
        for thread in self._threads:
            thread.join(10)
        if not self._log.closed:
            self._log.close()
        code = self.poll()
        assert code is not None
        return code

    def terminate(self) -> None:
        """SIGTERM to the process group, as the kubelet signals a deleted pod's containers."""
        if self.proc.poll() is None:
            with suppress(ProcessLookupError):  # exited meanwhile
                os.killpg(self.proc.pid, signal.SIGTERM)

    def stop(self) -> None:
        """Wait for the process the grace period after :meth:`terminate`, then SIGKILL its group."""
        self.terminate()
        try:
            self.proc.wait(self.grace_seconds)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):  # exited meanwhile
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def stop_all(workers: list[Worker]) -> None:
    """Stop every worker (SIGTERM to all first, so their grace periods run together)."""
    for w in workers:
        w.terminate()
    for w in workers:
        w.stop()


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM of sftctl, raised once the processes are stopped and the status says so."""


class StopRequest:
    """Ctrl-C or SIGTERM of sftctl, noted by the signal handler and acted on by the polling loops.

    The handler only notes the signal: an exception raised from it lands wherever the main thread
    happens to be, e.g. inside ``subprocess.Popen.poll`` between taking and releasing its wait lock,
    and the ``wait()`` that stops the processes then blocks forever."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signal = "SIGINT"

    def handle(self, signum: int, frame: FrameType | None) -> None:
        self.signal = signal.Signals(signum).name
        self.event.set()

    def wait(self, seconds: float) -> bool:
        """Sleep ``seconds`` or until a stop is requested; True when one is."""
        return self.event.wait(seconds)

    def raise_if_requested(self) -> None:
        if self.event.is_set():
            raise Interrupted(self.signal)


class Reporter:
    """Prints a CR's row whenever its phase, message or progress changes (at most every 2 s)."""

    def __init__(self, echo: Callable[[str], None]) -> None:
        self.echo = echo
        self.last: tuple[str, ...] | None = None
        self.last_time = 0.0

    def show(self, cr: Mapping[str, Any], force: bool = False) -> None:
        current = show.row(cr)
        if current == self.last:
            return
        phase_changed = self.last is None or current[1] != self.last[1]
        if not (force or phase_changed) and time.monotonic() - self.last_time < PRINT_INTERVAL:
            return
        self.last, self.last_time = current, time.monotonic()
        name, phase, progress, loss, rate, eta, _ = current
        message = str((cr.get("status") or {}).get("message") or "")  # in full, unlike the table
        parts = [f"{name}: {phase}", progress if progress != "-" else ""]
        if loss != "-":
            parts.append(f"loss {loss}")
        if rate != "-":
            parts.append(f"{rate} tokens/s")
        if eta != "-":
            parts.append(f"ETA {eta}")
        parts.append(f"- {message}" if message else "")
        self.echo("  ".join(p for p in parts if p))


class LocalRunner:
    def __init__(self, settings: LocalSettings) -> None:
        self.settings = settings
        self.echo = settings.echo
        self.preps: dict[str, dict[str, Any]] = {}
        self.stop = StopRequest()

    # -- the file ---------------------------------------------------------------------------------
    def run(self, manifest: Manifest) -> int:
        for doc in manifest.others:
            what = f"{doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}"
            self.echo(f"skipping {what}: not needed locally (volumes are local directories, see --volume)")
        ordered = [*manifest.of_kind(DATAPREP), *manifest.of_kind(RUN)]
        unknown = [f"{r.where} ({r.ref}): {', '.join(r.pruned())}" for r in ordered if r.pruned()]
        if unknown:
            raise ManifestError(
                f"the schema has no field {'; '.join(unknown)}: a cluster would drop it and run with the "
                "default, so it is not run here either; fix the name (the API spells fields in camelCase)"
            )
        failed = False
        for resource in ordered:
            cr = self.run_dataprep(resource) if resource.info is DATAPREP else self.run_sftrun(resource)
            failed |= (cr.get("status") or {}).get("phase") != "Succeeded"
        return 1 if failed else 0

    def _save(self, resource: Resource, cr: Mapping[str, Any], seen: LocalProcesses | None = None) -> Path:
        """The CR with its status, and its processes as last seen (what ``sftctl describe/logs
        --local`` read, :mod:`sft_operator.ctl.localstore`)."""
        folder = state_dir(self.settings, resource)
        if seen is not None:
            _write_json(folder / PROCESSES_FILE, seen.to_json())
        path = folder / STATUS_FILE
        _write_json(path, cr)
        return path

    # -- SFTDataPrep -------------------------------------------------------------------------------
    def run_dataprep(self, resource: Resource) -> dict[str, Any]:
        spec = resource.spec()
        assert isinstance(spec, SFTDataPrepSpec)
        cr = local_object(resource)
        folder = state_dir(self.settings, resource)
        folder.mkdir(parents=True, exist_ok=True)
        reporter = Reporter(self.echo)
        self.echo(f"\n=== {resource.ref} ({resource.where})")
        mapping = path_map(spec, resource, self.settings)
        config = mapping.rewrite(spec.prep_config().model_dump(mode="json"))
        config_path = folder / "config.yaml"
        config_path.write_text(to_yaml(type(spec.prep_config()).model_validate(config)))
        name = render_dataprep.job_name(resource.name)
        group = partial(LocalProcesses, name, str(uuid.uuid4()), utcnow_iso())
        self._derive_prep(cr, group(), reporter, resource)
        env = {
            **os.environ,
            **_user_env(spec, resource, self.echo),
            render_dataprep.RUN_ID_ENV: cr["metadata"]["uid"],
        }
        self.echo(f"  config {config_path} (output {config['output_dir']}); {spec.parallelism} worker(s)")
        workers = [
            Worker(
                f"{name}-{i}",
                [
                    sys.executable,
                    "-m",
                    "sft_prep",
                    "--config",
                    str(config_path),
                    "--worker-index",
                    str(i),
                    "--num-workers",
                    str(spec.parallelism),
                ],
                env,
                folder,
                i,
            )
            for i in range(spec.parallelism)
        ]
        while True:
            self._derive_prep(cr, group(tuple(w.state() for w in workers)), reporter, resource)
            if all(w.poll() is not None for w in workers) or self.stop.wait(0.2):
                break
        if self.stop.event.is_set():
            self.echo(f"  interrupted: stopping {resource.ref}'s processes (SIGTERM)")
            stop_all(workers)
        for w in workers:
            w.finish()
        # once more now that every worker has exited and its last progress lines are read
        self._derive_prep(cr, group(tuple(w.state() for w in workers)), reporter, resource, True)
        self._finish(resource, cr, workers)
        self.stop.raise_if_requested()
        self.preps[resource.name] = cr
        return cr

    def _derive_prep(
        self,
        cr: dict[str, Any],
        seen: LocalProcesses,
        reporter: Reporter,
        resource: Resource,
        force: bool = False,
    ) -> None:
        cr["status"] = processes.prep_status(cr, seen, now=utcnow_iso())
        self._save(resource, cr, seen)
        reporter.show(cr, force)

    # -- SFTRun ------------------------------------------------------------------------------------
    def run_sftrun(self, resource: Resource) -> dict[str, Any]:
        spec = resource.spec()
        assert isinstance(spec, SFTRunSpec)
        cr = local_object(resource)
        folder = state_dir(self.settings, resource)
        folder.mkdir(parents=True, exist_ok=True)
        reporter = Reporter(self.echo)
        self.echo(f"\n=== {resource.ref} ({resource.where})")
        mapping = path_map(spec, resource, self.settings)
        data = status_sftrun.resolve_data(cr, self._prep_for(spec, cr))
        if data.uri and spec.data.uri:
            data = status_sftrun.DataState(**{**data.__dict__, "uri": mapping.local(data.uri)})
        if not data.ready:
            if not data.failed:  # nothing would ever make it ready in this local run
                data = status_sftrun.DataState(
                    ready=False,
                    failed=True,
                    reason=data.reason,
                    message=f"{data.message}; add the SFTDataPrep to the file (or run it locally first)",
                    prep_ref=data.prep_ref,
                )
            cr["status"] = processes.run_status(cr, None, now=utcnow_iso(), data=data)
            self._save(resource, cr)
            reporter.show(cr, True)
            self._finish(resource, cr, [])
            return cr
        assert data.uri is not None
        train = spec.train_config(data.uri, data.pack_size)
        dumped = mapping.rewrite(train.model_dump(mode="json"))
        dumped["data"]["path"] = data.uri
        if not dumped["logging"].get("metrics_file"):
            dumped["logging"]["metrics_file"] = str(folder / "metrics.jsonl")
        dumped = self._engine_here(resource, spec, dumped)
        config = type(train).model_validate(dumped)
        check_base_model(resource, spec, config.model.pretrained_checkpoint, data.pack_size)
        config_path = folder / "config.yaml"
        config_path.write_text(to_yaml(config))
        name = meta.child_name(resource.name, "train")
        group = partial(LocalProcesses, name, str(uuid.uuid4()), utcnow_iso())
        cr["status"] = processes.run_status(cr, group(), now=utcnow_iso(), data=data)
        self._save(resource, cr)
        reporter.show(cr, True)
        self.echo(
            f"  config {config_path}; checkpoints {config.checkpoint.save}; "
            f"metrics {config.logging.metrics_file}"
        )
        env = {**os.environ, **_user_env(spec, resource, self.echo)}
        worker = Worker(
            f"{name}-0",
            [sys.executable, "-m", "sft_train", "--config", str(config_path)],
            env,
            folder,
            0,
            spec.grace_seconds(),
        )
        worker.on_stdout = lambda line: self.echo(f"  | {line}")
        while True:
            self._derive_run(cr, group((worker.state(),)), reporter, resource)
            if worker.poll() is not None or self.stop.wait(0.2):
                break
        if self.stop.event.is_set():
            self.echo(f"  interrupted: stopping {resource.ref}'s processes (SIGTERM)")
            stop_all([worker])
        worker.finish()
        self._derive_run(cr, group((worker.state(),)), reporter, resource, True)
        self._finish(resource, cr, [worker])
        self.stop.raise_if_requested()
        return cr

    def _derive_run(
        self,
        cr: dict[str, Any],
        seen: LocalProcesses,
        reporter: Reporter,
        resource: Resource,
        force: bool = False,
    ) -> None:
        cr["status"] = processes.run_status(cr, seen, now=utcnow_iso())
        self._save(resource, cr, seen)
        reporter.show(cr, force)

    def _prep_for(self, spec: SFTRunSpec, cr: Mapping[str, Any]) -> dict[str, Any] | None:
        ref = spec.data.data_prep_ref
        if ref is None:
            return None
        if ref.name in self.preps:
            return self.preps[ref.name]
        saved = self.settings.workdir / DATAPREP.singular / ref.name / STATUS_FILE
        if saved.exists():
            self.echo(f"  data: SFTDataPrep/{ref.name} from an earlier local run ({saved})")
            return json.loads(saved.read_text())
        return None

    def _engine_here(self, resource: Resource, spec: SFTRunSpec, config: dict[str, Any]) -> dict[str, Any]:
        """The spec's engine where it can run here, the hf engine otherwise (said so)."""
        if spec.engine == "megatron":
            why = megatron_unavailable()
            if why:
                self.echo(
                    f"  note: {resource.ref} asks for engine megatron, which cannot run here ({why}); "
                    "training with engine hf instead (Megatron-only settings, e.g. parallelism and "
                    "overrides, do not apply)"
                )
                config = {**config, "engine": "hf", "overrides": []}
        processes = spec.nodes * max(spec.gpus(), 1)
        if processes > 1:
            self.echo(
                f"  note: {resource.ref} asks for {spec.nodes} node(s) x {spec.gpus()} GPU(s); "
                "running one training process here"
            )
        return config

    def _finish(self, resource: Resource, cr: Mapping[str, Any], workers: list[Worker]) -> None:
        status = cr.get("status") or {}
        path = state_dir(self.settings, resource) / STATUS_FILE
        if status.get("phase") == "Succeeded":
            outputs = status.get("outputs") or {}
            for key, value in outputs.items():
                if not isinstance(value, dict):
                    self.echo(f"  {key}: {value}")
        else:
            failure = status.get("failure") or {}
            self.echo(f"  failed: {failure.get('message') or status.get('message')}")
            for w in workers:
                if w.poll() not in (None, 0):
                    tail = w.log_path.read_text().splitlines()[-15:]
                    self.echo(f"  last lines of {w.log_path}:")
                    for line in tail:
                        self.echo(f"    {line}")
        self.echo(f"  status: {path}")


def check_base_model(resource: Resource, spec: SFTRunSpec, local: str | None, pack_size: int | None) -> None:
    """A base model on a local path must be there before the trainer starts: say how to make one."""
    if not local or ("://" in local and not local.startswith("file://")):
        return
    path = Path(local.removeprefix("file://"))
    if not path.is_absolute() or path.exists():
        return
    pack = f" --pack-size {pack_size}" if pack_size and pack_size > DEMO_MODEL_POSITIONS else ""
    how = (
        f"`sftctl init-demo-model {path.parent}{pack}` writes the demo's tiny random base model there"
        if path.name == "base-model"
        else f"`sftctl init-demo-model DIR{pack}` writes a tiny random base model to DIR/base-model"
    )
    raise LocalRunError(
        f"{resource.ref}: model.pretrainedCheckpoint {spec.model.pretrained_checkpoint} is {path} here, "
        f"which does not exist; {how}, or point it at a Hugging Face checkpoint (--volume maps a claim)"
    )


DEMO_MODEL_POSITIONS = 1024
"""``sftctl init-demo-model``'s default context (the demo sample packs into 1024-token bins)."""


def megatron_unavailable() -> str | None:
    """Why engine megatron cannot run on this machine, or None when it can."""
    try:
        import torch

        if not torch.cuda.is_available():
            return "no CUDA GPU"
    except ImportError:
        return "torch is not installed"
    import importlib.util

    try:
        found = importlib.util.find_spec("megatron.bridge") is not None
    except ImportError:
        found = False
    if not found:
        return "Megatron-Bridge is not installed"
    return None


def run_local(manifest: Manifest, settings: LocalSettings) -> int:
    """Run the file here; Ctrl-C or SIGTERM of sftctl stops the processes, writes the status and
    then raises :class:`Interrupted` (a KeyboardInterrupt: exit 130)."""
    runner = LocalRunner(settings)
    if threading.current_thread() is not threading.main_thread():  # no signal handlers there
        return runner.run(manifest)
    previous = {sig: signal.signal(sig, runner.stop.handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return runner.run(manifest)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
