"""The one progress reporter shared by both workloads.

Three sinks, chosen from the environment so workload code never cares where it runs:

* a one-line progress bar when stderr is a TTY (a person at a terminal);
* JSON lines on stderr otherwise (pod logs, CI), at most one every ``interval`` seconds;
* when the operator set ``SFT_OWNER_*`` env vars, a rate-limited merge patch of the owning custom
  resource's ``status.progress`` (only that; the pod's ServiceAccount may patch nothing else).
  Patching runs on a background thread and never fails the workload: a broken API server costs us
  progress updates, not the training run.
"""

from __future__ import annotations

import json
import math
import os
import ssl
import sys
import threading
import time
import urllib.request
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import IO, Any

from pydantic import ConfigDict
from pydantic.alias_generators import to_camel

from sft_common.config import ConfigModel
from sft_common.redact import redact, redact_value

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def utcnow_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: object) -> datetime | None:
    """An RFC 3339 time as Kubernetes and :func:`utcnow_iso` write it (``...Z``, fractions and offsets
    too) as an aware datetime; None when it is not one."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def format_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "--:--"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def human_duration(seconds: float | None) -> str:
    """A duration the way kubectl prints ages (``3m20s``, ``2h5m``, ``3d4h``): the thresholds of
    Kubernetes' ``HumanDuration`` (k8s.io/apimachinery/pkg/util/duration), ~2-3 significant figures.
    Empty when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return ""
    total = max(0, int(seconds))
    if total < 120:
        return f"{total}s"
    minutes, hours, days = total // 60, total // 3600, total // 86400
    if minutes < 10:
        return f"{minutes}m{total % 60}s" if total % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    if days < 365 * 2:
        return f"{days}d"
    if days < 365 * 8:
        return f"{days // 365}y{days % 365}d" if days % 365 else f"{days // 365}y"
    return f"{days // 365}y"


def format_number(value: float) -> str:
    """Human-scale number: 1234567 -> 1.23M."""
    for threshold, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= threshold:
            return f"{value / threshold:.2f}{suffix}"
    if isinstance(value, float) and not value.is_integer():
        # 4 decimals, as the workloads' log lines print a loss (one number reads the same everywhere);
        # small values (a learning rate) in scientific notation, as the log lines print them.
        if abs(value) < 0.01:
            return f"{value:.3e}"
        return f"{value:.4f}" if abs(value) < 100 else f"{value:.1f}"
    return str(int(value))


LEASE_WAIT_KEY = "leaseWait"
"""The key of a worker's progress entry (``status.progress.workers.<i>``) while it waits for another
run's lease on the output (``null`` once it stops waiting)."""


class LeaseWait(ConfigModel):
    """A prep worker waiting for another run's output lease: what it patches under
    :data:`LEASE_WAIT_KEY` and the operator turns into the SFTDataPrep's status message (the holder was
    only in the pod log before). Times are ISO 8601 UTC."""

    model_config = ConfigDict(extra="ignore")  # a newer worker may add keys

    output_dir: str
    run: str
    """The run that holds the lease (its config hash, or run id for a forced run)."""
    holder: str
    """Who renewed it last: ``worker N on HOST pid P``."""
    renewed_at: str
    expires_at: str
    """When it expires unless renewed; the waiting worker takes it over then."""
    since: str
    """When this worker started waiting."""


class OwnerStatusPatcher:
    """Merge-patches ``status.progress`` of the owning CR from a background thread, rate-limited."""

    def __init__(
        self,
        url: str,
        token_file: str | None,
        ca_file: str | None,
        path: tuple[str, ...] = ("progress",),
        interval: float = 10.0,
        insecure: bool = False,
    ) -> None:
        self.url = url
        self.token_file = token_file
        self.path = path
        self.interval = interval
        self._context: ssl.SSLContext | None = None
        if url.startswith("https://"):
            self._context = ssl.create_default_context(cafile=ca_file if ca_file else None)
            if insecure:
                self._context.check_hostname = False
                self._context.verify_mode = ssl.CERT_NONE
        self._pending: dict[str, Any] | None = None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = False
        self._last_sent = 0.0
        self.errors = 0
        self.sent = 0
        self._thread = threading.Thread(target=self._run, name="sft-status-patcher", daemon=True)
        self._thread.start()

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, subkey: str | None = None
    ) -> OwnerStatusPatcher | None:
        """Build from ``SFT_OWNER_*`` variables the operator sets on its pods; None when unset."""
        env = os.environ if env is None else env
        name = env.get("SFT_OWNER_NAME")
        plural = env.get("SFT_OWNER_PLURAL")
        namespace = env.get("SFT_OWNER_NAMESPACE")
        if not (name and plural and namespace):
            return None
        group = env.get("SFT_OWNER_GROUP", "sft.dev")
        version = env.get("SFT_OWNER_VERSION", "v1alpha1")
        api = env.get("SFT_OWNER_API") or _in_cluster_api(env)
        url = f"{api.rstrip('/')}/apis/{group}/{version}/namespaces/{namespace}/{plural}/{name}/status"
        token_file = env.get("SFT_OWNER_TOKEN_FILE", f"{SA_DIR}/token")
        ca_file = env.get("SFT_OWNER_CA_FILE", f"{SA_DIR}/ca.crt")
        path: tuple[str, ...] = ("progress",) if subkey is None else ("progress", "workers", subkey)
        return cls(
            url,
            token_file if os.path.exists(token_file) else None,
            ca_file if os.path.exists(ca_file) else None,
            path=path,
            interval=float(env.get("SFT_PROGRESS_INTERVAL", "10")),
            insecure=env.get("SFT_OWNER_INSECURE", "") in ("1", "true"),
        )

    def submit(self, progress: Mapping[str, Any], force: bool = False) -> None:
        with self._lock:
            self._pending = dict(progress)
        if force or time.monotonic() - self._last_sent >= self.interval:
            self._wake.set()

    def close(self, timeout: float = 5.0) -> None:
        """Send what is pending and stop the thread."""
        self._stop = True
        self._wake.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            self._wake.wait(self.interval)
            self._wake.clear()
            with self._lock:
                payload, self._pending = self._pending, None
            if payload is not None:
                self._send(payload)
            if self._stop:
                # close() may have submitted the final state after we took the pending one above.
                with self._lock:
                    payload, self._pending = self._pending, None
                if payload is not None:
                    self._send(payload)
                return

    def _send(self, progress: dict[str, Any]) -> None:
        body: dict[str, Any] = redact_value(progress)
        for key in reversed(self.path):
            body = {key: body}
        data = json.dumps({"status": body}).encode()
        request = urllib.request.Request(self.url, data=data, method="PATCH")
        request.add_header("Content-Type", "application/merge-patch+json")
        if self.token_file:
            try:
                with open(self.token_file) as fh:  # re-read: projected tokens rotate
                    request.add_header("Authorization", f"Bearer {fh.read().strip()}")
            except OSError:
                pass
        self._last_sent = time.monotonic()
        try:
            with urllib.request.urlopen(request, timeout=10, context=self._context) as resp:
                resp.read()
            self.sent += 1
        except Exception as exc:  # never fatal: see module docstring
            self.errors += 1
            if self.errors in (1, 10, 100):
                print(
                    f"warning: could not patch owner status ({self.errors}x): {redact(str(exc))}",
                    file=sys.stderr,
                )


def _in_cluster_api(env: Mapping[str, str]) -> str:
    host = env.get("KUBERNETES_SERVICE_HOST")
    port = env.get("KUBERNETES_SERVICE_PORT", "443")
    if host:
        if ":" in host:
            host = f"[{host}]"
        return f"https://{host}:{port}"
    return "https://kubernetes.default.svc"


class Progress:
    """Progress of one task: ``completed`` of ``total`` units plus free-form numeric metrics.

    ``rates`` names cumulative metrics (e.g. ``tokens``) whose per-second rate is reported as
    ``<name>_per_second``. Metric names are snake_case here and camelCase in the CR status.
    """

    def __init__(
        self,
        task: str,
        total: float | None = None,
        unit: str = "items",
        *,
        rates: tuple[str, ...] = (),
        mode: str | None = None,
        stream: IO[str] | None = None,
        interval: float | None = None,
        owner: OwnerStatusPatcher | bool | None = True,
        owner_key: str | None = None,
        initial: float = 0,
    ) -> None:
        self.task = task
        self.total = total
        self.unit = unit
        self.rates = rates
        self.stream = stream if stream is not None else sys.stderr
        if mode is None:
            mode = os.environ.get("SFT_PROGRESS", "")
        if mode not in ("bar", "json", "off"):
            mode = "bar" if _isatty(self.stream) else "json"
        self.mode = mode
        default_interval = 0.2 if mode == "bar" else float(os.environ.get("SFT_PROGRESS_LOG_INTERVAL", "5"))
        self.interval = default_interval if interval is None else interval
        if owner is True:
            owner = OwnerStatusPatcher.from_env(subkey=owner_key)
        self.owner: OwnerStatusPatcher | None = owner or None
        self.initial = initial
        """Units already done before this process started (a resumed run): counted as completed,
        but not in the rate, or the ETA would credit this process with earlier work."""
        self.completed: float = initial
        self.metrics: dict[str, Any] = {}
        self.start = time.monotonic()
        self._last_emit = -math.inf
        self._bar_width = 0
        self._closed = False

    # -- public API -------------------------------------------------------------------------
    def update(self, completed: float | None = None, *, advance: float = 0, **metrics: Any) -> None:
        if completed is not None:
            self.completed = completed
        self.completed += advance
        self.metrics.update(metrics)
        now = time.monotonic()
        if now - self._last_emit >= self.interval:
            self._emit(now)
        if self.owner is not None:
            self.owner.submit(self.snapshot())

    def set_total(self, total: float | None) -> None:
        self.total = total

    def close(self, **metrics: Any) -> None:
        """Emit the final state (always) and flush the owner patch."""
        if self._closed:
            return
        self._closed = True
        self.metrics.update(metrics)
        self._emit(time.monotonic(), final=True)
        if self.owner is not None:
            self.owner.submit(self.snapshot(), force=True)
            self.owner.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- derived values ---------------------------------------------------------------------
    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def rate(self, value: float) -> float:
        elapsed = self.elapsed
        return value / elapsed if elapsed > 0 else 0.0

    def eta(self) -> float | None:
        done_here = self.completed - self.initial
        if not self.total or done_here <= 0:
            return None
        remaining = max(self.total - self.completed, 0)
        return remaining * self.elapsed / done_here

    def snapshot(self) -> dict[str, Any]:
        """The state as a CR status fragment (camelCase keys)."""
        snap: dict[str, Any] = {"task": self.task, "unit": self.unit, "completed": _num(self.completed)}
        if self.total:
            snap["total"] = _num(self.total)
            snap["percent"] = round(100.0 * self.completed / self.total, 1)
        eta = self.eta()
        if eta is not None:
            snap["etaSeconds"] = int(eta)
        for key, value in self.metrics.items():
            snap[to_camel(key)] = _num(value)
        for key in self.rates:
            if key in self.metrics:
                snap[to_camel(f"{key}_per_second")] = round(self.rate(float(self.metrics[key])), 1)
        snap["updatedAt"] = utcnow_iso()
        return snap

    # -- sinks ------------------------------------------------------------------------------
    def _emit(self, now: float, final: bool = False) -> None:
        self._last_emit = now
        if self.mode == "off":
            return
        if self.mode == "json":
            record = {"event": "progress" if not final else "progress_done", **self.snapshot()}
            record["elapsedSeconds"] = round(self.elapsed, 1)
            self.stream.write(json.dumps(record) + "\n")
            self.stream.flush()
            return
        line = self._bar_line()
        pad = max(self._bar_width - len(line), 0)
        self._bar_width = len(line)
        self.stream.write("\r" + line + " " * pad + ("\n" if final else ""))
        self.stream.flush()

    def _bar_line(self) -> str:
        parts = [self.task]
        if self.total:
            frac = min(self.completed / self.total, 1.0)
            filled = int(frac * 24)
            parts.append(f"[{'#' * filled}{'.' * (24 - filled)}] {frac * 100:5.1f}%")
            parts.append(f"{format_number(self.completed)}/{format_number(self.total)} {self.unit}")
        else:
            parts.append(f"{format_number(self.completed)} {self.unit}")
        for key in self.rates:
            if key in self.metrics:
                parts.append(f"{format_number(self.rate(float(self.metrics[key])))} {key}/s")
        for key, value in self.metrics.items():
            if key in self.rates or not isinstance(value, int | float):
                continue
            parts.append(f"{key} {format_number(value)}")
        parts.append(f"{format_duration(self.elapsed)}<{format_duration(self.eta())}")
        return " | ".join(parts)


def _num(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, float):
        return float(f"{value:.6g}")
    return value


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
