"""Run one Pod's containers as local subprocesses, the way a kubelet would run them in containers.

What a pod sees, emulated locally:

- ``command``/``args`` with Kubernetes ``$(VAR)`` expansion (``$$(VAR)`` escapes), the executable
  optionally substituted through ``executables`` (e.g. ``sft-prep`` -> the venv's script, or
  ``torchrun`` -> ``[python, -m, torch.distributed.run]``); a bare name found next to the current
  Python interpreter (the venv's ``bin``) is used from there;
- env: ``value``, ``valueFrom`` (fieldRef, secretKeyRef, configMapKeyRef, resourceFieldRef) and
  ``envFrom`` (secretRef, configMapRef, with ``prefix``) resolved against the emulator; a missing
  non-optional Secret/ConfigMap keeps the container waiting with ``CreateContainerConfigError``
  (retried), as a kubelet does;
- volumes: ``configMap``/``secret`` materialized into a per-pod directory, ``emptyDir`` as a
  directory, ``persistentVolumeClaim`` as ``<pvc_root>/<claimName>``, ``hostPath`` as-is; each
  ``volumeMount.mountPath`` (and every ``path_map`` prefix) is rewritten to the local directory in
  command, args, env values, ``workingDir`` and in the text of materialized ConfigMap files;
- the termination message: ``SFT_TERMINATION_LOG`` and the container's ``terminationMessagePath``
  point at a per-container file; with ``FallbackToLogsOnError`` a failed container without a
  message gets the last 80 log lines (at most 2048 bytes), as the kubelet does;
- stdout and stderr go to one per-container log file (served by ``pods/NAME/log``);
- the container's processes (:class:`LocalProcess`): a container runtime puts every process a
  container starts into the container's cgroup and PID namespace, whatever session or process group
  it makes for itself (torch elastic starts each rank with ``start_new_session=True``). So a freeze
  or a kill of the container (a crashed node, an OOM group kill, ``SIGSTOP`` for a rank stuck in a
  collective) reaches every one of them, and when the container's main process exits the kernel
  SIGKILLs the rest of its PID namespace. Here each process started for a container carries the
  environment variable :data:`CONTAINER_MARKER` (inherited by every descendant, like cgroup
  membership), and :meth:`LocalProcess.processes` finds them through ``/proc``. The stop signal of a
  graceful termination (SIGTERM) goes to the main process's process group only, as the kubelet's
  StopContainer sends it to the container's PID 1; what is left after the grace period is SIGKILLed.

Not emulated: images (the local venv runs everything), resource limits, probes, sidecar restart
semantics, users and security contexts. Networking: everything is on 127.0.0.1; pod DNS names under
a headless Service and JobSet rendezvous ports are mapped as :mod:`kubeemu.localnet` says.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ApiError
from .localnet import LocalNetwork
from .store import Json, Store

_VAR_RE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")
TERMINATION_MESSAGE_LIMIT = 4096
CONTAINER_MARKER = "KUBEEMU_CONTAINER"
"""Env variable naming the container a process belongs to (this emulator's stand-in for its cgroup)."""
FALLBACK_LINES = 80
FALLBACK_BYTES = 2048


class ConfigError(Exception):
    """The pod references a Secret/ConfigMap/key that does not exist (CreateContainerConfigError)."""


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion: unknown references stay verbatim, ``$$`` is a literal ``$``."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env[name] if name in env else match.group(0)

    return _VAR_RE.sub(replace, text)


def rewrite_paths(text: str, mapping: Mapping[str, str]) -> str:
    """Replace container path prefixes by local ones, longest first, only at path boundaries.

    One pass over the text: a local directory may itself lie under a mounted container path (e.g.
    pod dirs under the host's /tmp while the pod mounts an emptyDir at /tmp), and a second pass would
    rewrite the already-rewritten path again.
    """
    if not mapping:
        return text
    prefixes = sorted(mapping, key=len, reverse=True)
    locals_by_prefix = {prefix.rstrip("/"): mapping[prefix] for prefix in prefixes}
    alternation = "|".join(re.escape(prefix.rstrip("/")) for prefix in prefixes)
    pattern = re.compile(r"(?<![\w./-])(" + alternation + r")(?=/|$|[\s\"',;:=)\]}])")
    return pattern.sub(lambda match: str(locals_by_prefix[match.group(1)]), text)


@dataclass
class ContainerResult:
    exit_code: int
    message: str
    started_at: str
    finished_at: str
    reason: str = ""

    def __post_init__(self) -> None:
        self.reason = self.reason or ("Completed" if self.exit_code == 0 else "Error")


@dataclass
class RunnerConfig:
    """How pods are mapped onto this machine (shared by all pods of one runner)."""

    work_dir: Path
    executables: dict[str, str | list[str]] = field(default_factory=dict)
    path_map: dict[str, str | Path] = field(default_factory=dict)
    pvc_root: Path | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    images: dict[str, list[str]] = field(default_factory=dict)
    inherit_env: bool = True
    kill_grace: float = 3.0
    #: Pod DNS names -> 127.0.0.1 and per-JobSet rendezvous ports (:mod:`kubeemu.localnet`).
    network: LocalNetwork | None = None


def _decode_secret(secret: Json) -> dict[str, str]:
    data = {
        key: base64.b64decode(value).decode("utf-8", "replace")
        for key, value in (secret.get("data") or {}).items()
    }
    data.update(secret.get("stringData") or {})
    return data


class PodExecution:
    """The local materialization and execution of one pod."""

    def __init__(self, store: Store, pod: Json, config: RunnerConfig, api_url: str) -> None:
        self.store = store
        self.pod = pod
        self.config = config
        self.api_url = api_url
        meta = pod["metadata"]
        self.namespace: str = meta["namespace"]
        self.name: str = meta["name"]
        self.uid: str = meta["uid"]
        self.dir = config.work_dir / self.namespace / f"{self.name}-{self.uid[:8]}"
        self.processes: dict[str, LocalProcess] = {}
        self.killed = False
        self.restart_counts: dict[str, int] = {}

    # ---------------------------------------------------------------- lookups

    def _get(self, plural: str, name: str) -> Json | None:
        try:
            return self.store.get(self.store.resolve("", "v1", plural), self.namespace, name)
        except ApiError as error:
            if error.code == 404:
                return None
            raise

    def _source_data(self, kind: str, name: str, optional: bool) -> dict[str, str] | None:
        obj = self._get("secrets" if kind == "secret" else "configmaps", name)
        if obj is None:
            if optional:
                return None
            raise ConfigError(f'{kind} "{name}" not found')
        if kind == "secret":
            return _decode_secret(obj)
        return dict(obj.get("data") or {})

    def _field_ref(self, path: str) -> str:
        meta = self.pod["metadata"]
        match = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
        if match:
            return str((meta.get(match.group(1)) or {}).get(match.group(2), ""))
        values = {
            "metadata.name": self.name,
            "metadata.namespace": self.namespace,
            "metadata.uid": self.uid,
            "spec.nodeName": "kubeemu-node",
            "spec.serviceAccountName": (self.pod.get("spec") or {}).get("serviceAccountName", "default"),
            "status.podIP": "127.0.0.1",
            "status.hostIP": "127.0.0.1",
        }
        if path not in values:
            raise ConfigError(f"unsupported fieldRef {path!r}")
        return values[path]

    # ---------------------------------------------------------------- materialization

    def plan_volumes(self) -> dict[str, Path]:
        """Local directory of each volume (nothing is written yet)."""
        paths: dict[str, Path] = {}
        for volume in (self.pod.get("spec") or {}).get("volumes") or []:
            name = volume["name"]
            if "persistentVolumeClaim" in volume:
                root = self.config.pvc_root or (self.config.work_dir / "pvcs")
                paths[name] = Path(root) / volume["persistentVolumeClaim"]["claimName"]
            elif "hostPath" in volume:
                paths[name] = Path(volume["hostPath"]["path"])
            else:
                paths[name] = self.dir / "volumes" / name
        return paths

    def pod_mapping(self, volumes: Mapping[str, Path]) -> dict[str, str]:
        """Container path -> local path for ``path_map`` and the mounts of every container."""
        spec = self.pod.get("spec") or {}
        mapping = {prefix: str(local) for prefix, local in self.config.path_map.items()}
        for container in (spec.get("initContainers") or []) + (spec.get("containers") or []):
            mapping.update(self.mount_mapping(container, volumes))
        return mapping

    def materialize(self, volumes: Mapping[str, Path], mapping: Mapping[str, str]) -> None:
        """Write ConfigMap/Secret volume files (ConfigMap text gets its paths rewritten)."""
        for volume in (self.pod.get("spec") or {}).get("volumes") or []:
            local = volumes[volume["name"]]
            if "hostPath" not in volume:
                local.mkdir(parents=True, exist_ok=True)
            kind = "configMap" if "configMap" in volume else "secret" if "secret" in volume else None
            if kind is None:
                continue
            source = volume[kind]
            ref = source.get("name") or source.get("secretName")
            optional = source.get("optional", False)
            data = self._source_data("secret" if kind == "secret" else "configmap", ref, optional)
            items = source.get("items") or [{"key": key, "path": key} for key in (data or {})]
            for item in items:
                if data is None or item["key"] not in data:
                    if optional:
                        continue
                    raise ConfigError(f'couldn\'t find key {item["key"]} in {kind} "{ref}"')
                target = local / item["path"]
                target.parent.mkdir(parents=True, exist_ok=True)
                content = data[item["key"]]
                target.write_text(rewrite_paths(content, mapping) if kind == "configMap" else content)

    def mount_mapping(self, container: Json, volumes: Mapping[str, Path]) -> dict[str, str]:
        mapping = {prefix: str(local) for prefix, local in self.config.path_map.items()}
        for mount in container.get("volumeMounts") or []:
            local = volumes.get(mount["name"])
            if local is None:
                raise ConfigError(f'volume "{mount["name"]}" not found for mount {mount["mountPath"]}')
            if mount.get("subPath"):
                local = local / mount["subPath"]
            mapping[mount["mountPath"]] = str(local)
        return mapping

    def container_env(self, container: Json, mapping: Mapping[str, str]) -> dict[str, str]:
        env: dict[str, str] = {}
        for source in container.get("envFrom") or []:
            prefix = source.get("prefix", "")
            for kind in ("secretRef", "configMapRef"):
                if kind in source:
                    ref = source[kind]
                    data = self._source_data(
                        "secret" if kind == "secretRef" else "configmap",
                        ref["name"],
                        ref.get("optional", False),
                    )
                    env.update({prefix + key: value for key, value in (data or {}).items()})
        for var in container.get("env") or []:
            name = var["name"]
            if "valueFrom" in var:
                source = var["valueFrom"]
                if "fieldRef" in source:
                    env[name] = self._field_ref(source["fieldRef"]["fieldPath"])
                elif "secretKeyRef" in source or "configMapKeyRef" in source:
                    kind = "secretKeyRef" if "secretKeyRef" in source else "configMapKeyRef"
                    ref = source[kind]
                    data = self._source_data(
                        "secret" if kind == "secretKeyRef" else "configmap",
                        ref["name"],
                        ref.get("optional", False),
                    )
                    if data is None:
                        continue
                    if ref["key"] not in data:
                        if ref.get("optional"):
                            continue
                        raise ConfigError(f'couldn\'t find key {ref["key"]} in {kind[:-6]} "{ref["name"]}"')
                    env[name] = data[ref["key"]]
                elif "resourceFieldRef" in source:
                    resource = source["resourceFieldRef"]["resource"]
                    section, _, key = resource.partition(".")
                    value = ((container.get("resources") or {}).get(section) or {}).get(key, "0")
                    env[name] = str(value)
            else:
                env[name] = rewrite_paths(expand(str(var.get("value", "")), env), mapping)
        if self.config.network is not None:
            env = self.config.network.localize_env(self.pod, env)
        return env

    def argv(self, container: Json, env: Mapping[str, str], mapping: Mapping[str, str]) -> list[str]:
        command = list(container.get("command") or [])
        args = list(container.get("args") or [])
        if not command:
            entrypoint = self.config.images.get(container.get("image", ""))
            if entrypoint is None:
                raise ConfigError(
                    f"container {container['name']!r} has no command and image {container.get('image')!r} "
                    "has no entrypoint in the runner's `images` mapping"
                )
            command = list(entrypoint)
        argv = [rewrite_paths(expand(part, env), mapping) for part in command + args]
        if self.config.network is not None:
            argv = self.config.network.resolve_all(argv, self.namespace)
        executable = argv[0]
        substitute = self.config.executables.get(
            executable, self.config.executables.get(Path(executable).name)
        )
        if substitute is not None:
            prefix = [substitute] if isinstance(substitute, str) else list(substitute)
            return [*prefix, *argv[1:]]
        if "/" not in executable:
            candidate = Path(sys.executable).parent / executable
            if candidate.exists():
                return [str(candidate), *argv[1:]]
        return argv

    # ---------------------------------------------------------------- execution

    async def run_container(
        self, container: Json, volumes: Mapping[str, Path], on_start: Any
    ) -> ContainerResult:
        from .store import now_iso

        name = container["name"]
        cdir = self.dir / "containers" / name
        cdir.mkdir(parents=True, exist_ok=True)
        termination = cdir / "termination-log"
        termination.unlink(missing_ok=True)
        log_path = cdir / "log"
        mapping = self.mount_mapping(container, volumes)
        mapping[container.get("terminationMessagePath") or "/dev/termination-log"] = str(termination)
        env_spec = self.container_env(container, mapping)
        argv = self.argv(container, env_spec, mapping)

        env: dict[str, str] = (
            dict(os.environ) if self.config.inherit_env else {"PATH": os.environ.get("PATH", "")}
        )
        for variable in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"):
            env.pop(variable, None)
        hostname = (self.pod.get("spec") or {}).get("hostname") or self.name
        env.update({"HOSTNAME": hostname, "SFT_TERMINATION_LOG": str(termination)})
        env.update(self.config.extra_env)
        env.update(env_spec)
        if env.get("SFT_OWNER_NAME") and not env_spec.get("SFT_OWNER_API"):
            env["SFT_OWNER_API"] = self.api_url  # a pod would reach the API; here it is the emulator
        if env_spec.get("SFT_TERMINATION_LOG"):
            env["SFT_TERMINATION_LOG"] = str(termination)
        workdir = container.get("workingDir")
        cwd = rewrite_paths(workdir, mapping) if workdir else str(cdir)
        Path(cwd).mkdir(parents=True, exist_ok=True)

        started_at = now_iso()
        with open(log_path, "ab") as log_file:
            log_file.write(f"# kubeemu: {shlex.join(argv)}\n".encode())
            log_file.flush()
            self.restart_counts[name] = self.restart_counts.get(name, -1) + 1
            env[CONTAINER_MARKER] = f"{self.uid}/{name}/{self.restart_counts[name]}"
            try:
                process = LocalProcess.start(argv, env, cwd, log_file)
            except OSError as error:  # what a container runtime reports as StartError (exit 128)
                message = f"failed to start container {name!r}: {shlex.join(argv)}: {error}"
                log_file.write(f"{message}\n".encode())
                return ContainerResult(128, message, started_at, now_iso(), "StartError")
        self.processes[name] = process
        on_start(name, started_at)
        exit_code = await process.wait()
        finished_at = now_iso()
        message = (
            termination.read_text(errors="replace")[:TERMINATION_MESSAGE_LIMIT]
            if termination.exists()
            else ""
        )
        if (
            not message
            and exit_code != 0
            and container.get("terminationMessagePolicy") == "FallbackToLogsOnError"
        ):
            message = self.log_tail(name, FALLBACK_LINES)[-FALLBACK_BYTES:]
        return ContainerResult(exit_code, message, started_at, finished_at)

    def log_text(self, container: str | None) -> str:
        names = [c["name"] for c in (self.pod.get("spec") or {}).get("containers") or []]
        name = container or (names[0] if names else "")
        path = self.dir / "containers" / name / "log"
        if not path.exists():
            return ""
        lines = path.read_text(errors="replace").splitlines(keepends=True)
        return "".join(line for line in lines if not line.startswith("# kubeemu: "))

    def log_tail(self, container: str, lines: int) -> str:
        return "".join(self.log_text(container).splitlines(keepends=True)[-lines:])

    async def kill(self) -> None:
        """SIGTERM the process groups, SIGKILL after the grace period."""
        self.killed = True
        await asyncio.gather(
            *(process.kill(self.config.kill_grace) for process in list(self.processes.values()))
        )


class LocalProcess:
    """A container's main process, and the processes it starts (its "cgroup", see the module docstring).

    Its exit is awaited by a dedicated thread, not by asyncio's child watcher. Why: the emulator's loop
    runs in a non-main thread next to pytest-asyncio's loops, and asyncio's process-global child
    watchers are a known source of lost exit notifications there; a blocking ``wait()`` per child in
    its own thread has no shared state.
    """

    def __init__(self, popen: subprocess.Popen[bytes], loop: asyncio.AbstractEventLoop, marker: str) -> None:
        self.popen = popen
        self.marker = f"{CONTAINER_MARKER}={marker}".encode()
        self.exited: asyncio.Future[int] = loop.create_future()
        threading.Thread(
            target=self._reap, args=(loop,), name=f"kubeemu-pid-{popen.pid}", daemon=True
        ).start()

    @classmethod
    def start(cls, argv: list[str], env: dict[str, str], cwd: str, log_file: Any) -> LocalProcess:
        popen = subprocess.Popen(
            argv, env=env, cwd=cwd, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
        return cls(popen, asyncio.get_running_loop(), env.get(CONTAINER_MARKER, str(popen.pid)))

    def _reap(self, loop: asyncio.AbstractEventLoop) -> None:
        code = self.popen.wait()
        if code < 0:  # killed by a signal: a container runtime reports 128 + the signal number
            code = 128 - code
        # The container's PID 1 is gone: the kernel SIGKILLs the rest of its PID namespace.
        self.signal_all(signal.SIGKILL)
        with contextlib.suppress(RuntimeError):  # the loop is already closed: nobody is waiting
            loop.call_soon_threadsafe(lambda: self.exited.done() or self.exited.set_result(code))

    @property
    def pid(self) -> int:
        return self.popen.pid

    async def wait(self) -> int:
        return await asyncio.shield(self.exited)

    def processes(self) -> set[int]:
        """The pids of the container's live processes: those whose environment carries its marker
        (``/proc/PID/environ``; a zombie's reads empty), plus the main process while it runs."""
        found = {self.popen.pid} if self.popen.poll() is None else set()
        with contextlib.suppress(OSError):
            for entry in os.scandir("/proc"):
                if not entry.name.isdigit():
                    continue
                try:
                    with open(f"/proc/{entry.name}/environ", "rb") as environ:
                        if self.marker in environ.read().split(b"\0"):
                            found.add(int(entry.name))
                except OSError:  # gone meanwhile, or not ours
                    continue
        return found

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the main process's group: the stop signal of a graceful termination, which
        the kubelet sends to the container's PID 1 (whose launcher forwards it as it sees fit)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)

    def signal_all(self, sig: int) -> None:
        """Send ``sig`` to every process of the container, as a cgroup-wide kill or freeze does.

        Repeated until no new process turns up: one that forked while the list was read is found on
        the next round (a stopped or killed process forks no more)."""
        done: set[int] = set()
        for _ in range(10):
            pids = self.processes() - done
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)
            done |= pids

    async def kill(self, grace: float) -> None:
        """A graceful termination: the stop signal, then after ``grace`` SIGKILL for every process of
        the container (the runtime's StopContainer with a timeout)."""
        if self.exited.done():
            return
        self.signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(self.exited), grace)
        except TimeoutError:
            self.signal_all(signal.SIGKILL)
            await asyncio.wait_for(asyncio.shield(self.exited), 10)
