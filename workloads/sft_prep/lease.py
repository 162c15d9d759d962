"""An exclusive, expiring lease on an output directory, so two different preps never mix their shards.

``<output_dir>/.sft-prep-lease.json`` names its owner (the run: config hash, and run id for a
``--force`` run), the holder that last renewed it (host, pid, worker) and when it expires. Taking it
is a conditional write (:func:`sft_common.storage.put_if`: ``If-None-Match: *``/``If-Match`` on S3,
``O_EXCL``/``flock`` locally), so of two preps starting together exactly one wins. The workers of one
run share the lease (same owner) and each renews it every ``ttl/3`` seconds; a different run is
refused with a message naming the holder until the lease expires (a crashed run blocks the output for
at most ``ttl``). The worker that commits ``metadata.json`` releases it, as does a single-worker run
that fails, and every worker that gets SIGTERM whatever the worker count (a deleted prep's pods all
get it; the last one to renew must not hold the output for the TTL; a worker of a run that goes on
re-creates the lease at its next renewal).

A lease of another run that is no longer renewed (its run was deleted, its pods killed) is waited
out rather than refused (:meth:`OutputLease.acquire`): the prep waits up to the lease's remaining
time, saying which run holds it (in its log, and through ``on_wait`` in its CR's status), and takes
it when it expires or is released meanwhile (the deleted run's last workers stopping). A lease that
is renewed meanwhile belongs to a live run: refused (exit 1, retryable). The operator never starts a
prep whose output another live CR claims, so in a cluster the waiting case is the replacement of a
deleted prep.

Clock skew between pods shifts expiry by the skew; keep node clocks in sync (NTP), as Kubernetes
itself needs.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sft_common import storage
from sft_common.config import ConfigError
from sft_common.progress import LeaseWait

LEASE_NAME = ".sft-prep-lease.json"
DEFAULT_TTL = 120.0
"""Seconds a lease lives without renewal (``SFT_PREP_LEASE_TTL`` overrides)."""


class OutputInUse(RuntimeError):
    """Another run holds the output directory's lease. Exit 1, not 2: it is a conflict that ends when
    the other run does or its lease expires, so a Job's retries (backoffLimit) may well succeed."""

    reason = "OutputInUse"
    quiet = True
    """Reported in one line, without a traceback (``sft_common.result.run_main``)."""


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def lease_ttl() -> float:
    raw = os.environ.get("SFT_PREP_LEASE_TTL")
    if not raw:
        return DEFAULT_TTL
    try:
        ttl = float(raw)
    except ValueError:
        raise ConfigError(f"SFT_PREP_LEASE_TTL must be a number of seconds, got {raw!r}") from None
    if ttl < 3:
        raise ConfigError(f"SFT_PREP_LEASE_TTL must be at least 3 seconds, got {raw!r}")
    return ttl


@dataclass
class OutputLease:
    output_dir: str
    owner: str
    """The run: workers with the same owner share the lease."""
    worker: int = 0
    ttl: float = DEFAULT_TTL
    on_wait: Callable[[LeaseWait | None], None] | None = None
    """Told when this worker starts waiting out another run's lease (what holds it) and when it stops
    (None): the prep reports it in its CR's status."""

    def __post_init__(self) -> None:
        self.uri = storage.join(self.output_dir, LEASE_NAME)
        self.holder = f"worker {self.worker} on {_host()} pid {os.getpid()}"
        self._version: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost: str | None = None
        """Set when a renewal found another owner (this run's lease expired and was taken)."""

    # ------------------------------------------------------------------------ record
    def _record(self, now: float) -> bytes:
        record = {
            "owner": self.owner,
            "holder": self.holder,
            "renewed_at": _iso(now),
            "expires_at": now + self.ttl,
            "expires_at_iso": _iso(now + self.ttl),
            "ttl": self.ttl,
            "host": _host(),
            "pid": os.getpid(),
        }
        return (json.dumps(record, indent=2) + "\n").encode()

    def _current(self) -> tuple[dict[str, Any] | None, str | None]:
        """(record, version); a torn local rewrite reads as unparsable: retried, then overwritten."""
        for _ in range(5):
            found = storage.read_versioned(self.uri)
            if found is None:
                return None, None
            data, version = found
            try:
                record = json.loads(data)
                if isinstance(record, dict):
                    return record, version
            except ValueError:
                pass
            time.sleep(0.05)
        return {"owner": None, "expires_at": 0}, version

    # ------------------------------------------------------------------------ take / renew / drop
    def acquire(self) -> None:
        """Take or join the lease; waits out another run's lease that is no longer renewed; raises
        OutputInUse naming the other run when that run renews it."""
        waited = False
        for _ in range(20):
            record, version = self._current()
            now = time.time()
            held = record is not None and record.get("owner") != self.owner
            if held and float(record.get("expires_at") or 0) > now:  # type: ignore[union-attr]
                outcome = None if waited else self._wait_out(record, version)  # type: ignore[arg-type]
                if outcome == "expired":
                    waited = True
                    continue
                if outcome == "released":  # the holder stopped (a deleted run's last worker): take it
                    continue
                raise OutputInUse(
                    f"output_dir {self.output_dir} is in use by another sft-prep run "
                    f"(run {record.get('owner')}, {record.get('holder')}, lease renewed "  # type: ignore[union-attr]
                    f"{record.get('renewed_at')}, expires {record.get('expires_at_iso')}); "  # type: ignore[union-attr]
                    "wait for it to finish, use another output_dir, or delete "
                    f"{self.uri} if that run is gone"
                )
            if storage.put_if(self.uri, self._record(now), version):
                self._version = self._read_version()
                self._start()
                return
        raise OutputInUse(f"output_dir {self.output_dir}: could not take the lease {self.uri} (contended)")

    def _wait_out(self, record: dict[str, Any], version: str | None) -> str:
        """Wait while another run's lease is neither renewed nor released, until it expires. Returns
        ``expired`` (take it now), ``released`` (its holder deleted it, or a worker of this run took it over
        meanwhile: take or join it now), or ``renewed``
        (renewed or taken by another run, or held by a live process on this host: a live run, refused).
        Polls about once a second."""
        expires = float(record.get("expires_at") or 0)
        if record.get("host") == _host() and _pid_alive(record.get("pid")):
            return "renewed"
        print(
            f"sft-prep: output_dir {self.output_dir} is leased by run {record.get('owner')} "
            f"({record.get('holder')}, renewed {record.get('renewed_at')}); waiting until "
            f"{record.get('expires_at_iso')} for it to expire (it is taken over unless renewed)",
            file=sys.stderr,
            flush=True,
        )
        self._tell(
            LeaseWait(
                output_dir=self.output_dir,
                run=str(record.get("owner")),
                holder=str(record.get("holder")),
                renewed_at=str(record.get("renewed_at")),
                expires_at=_iso(expires),
                since=_iso(time.time()),
            )
        )
        try:
            while time.time() < expires:
                time.sleep(min(1.0, max(0.05, expires - time.time())))
                current, current_version = self._current()
                if current is None or current.get("owner") == self.owner:
                    return "released"  # freed, or taken over by another worker of this run: join it
                if current.get("owner") != record.get("owner") or current_version != version:
                    return "renewed"
            return "expired"
        finally:
            self._tell(None)

    def _tell(self, wait: LeaseWait | None) -> None:
        if self.on_wait is not None:
            try:
                self.on_wait(wait)
            except Exception as exc:  # a report must never stop the prep
                print(f"sft-prep: could not report the lease wait: {exc}", file=sys.stderr)

    def _read_version(self) -> str | None:
        found = storage.read_versioned(self.uri)
        return None if found is None else found[1]

    def renew(self) -> bool:
        """Extend the lease; False (and ``lost`` set) when another run owns it now."""
        for _ in range(5):
            if self._version is not None and storage.put_if(
                self.uri, self._record(time.time()), self._version
            ):
                self._version = self._read_version()
                return True
            record, version = self._current()  # another worker of this run renewed it, or it is gone
            if record is not None and record.get("owner") not in (self.owner, None):
                self.lost = f"{record.get('owner')} ({record.get('holder')})"
                return False
            self._version = version
            if record is None and storage.put_if(self.uri, self._record(time.time()), None):
                self._version = self._read_version()
                return True
        return True  # contended by this run's own workers only: one of them renewed it

    def _start(self) -> None:
        if self._thread is not None:
            return

        def loop() -> None:
            while not self._stop.wait(self.ttl / 3):
                try:
                    if not self.renew():
                        print(
                            f"sft-prep: lost the lease on {self.output_dir} to {self.lost}", file=sys.stderr
                        )
                        return
                except Exception as exc:  # keep trying: a blip must not end the run
                    print(f"sft-prep: could not renew the lease {self.uri}: {exc}", file=sys.stderr)

        self._thread = threading.Thread(target=loop, name="sft-prep-lease", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop renewing (the lease then expires unless another worker of the run renews it)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def release(self) -> None:
        """Stop renewing and delete the lease if this run still owns it."""
        self.stop()
        record, _ = self._current()
        if record is not None and record.get("owner") == self.owner:
            storage.delete(self.uri)

    def check(self) -> None:
        if self.lost:
            raise OutputInUse(
                f"output_dir {self.output_dir}: this run's lease expired and {self.lost} took it; "
                "not committing over another run"
            )


def _host() -> str:
    """This pod's hostname: ``$HOSTNAME``, which the container runtime sets to the pod's hostname (the
    same as ``gethostname()`` inside a pod; the emulator's pod runner runs pods as processes of one
    machine and sets it per pod), else the machine's."""
    return os.environ.get("HOSTNAME") or socket.gethostname()


def _pid_alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def prepare_output_dir(output_dir: str) -> None:
    """Create a local output_dir (its parent must exist: a missing parent is usually a volume that is
    not mounted, and writing to the container's own disk would lose the data) and check that it is a
    writable directory; raises ConfigError with the path and the fix. S3 is checked by the lease write."""
    if storage.is_remote(output_dir):
        return
    path = storage._local(output_dir).absolute()
    if path.exists() and not path.is_dir():
        raise ConfigError(f"output_dir {output_dir} is a file; give a directory (created if missing)")
    for ancestor in path.parents:
        if ancestor.exists():
            if not ancestor.is_dir():
                raise ConfigError(
                    f"output_dir {output_dir} is below {ancestor}, which is a file; give a directory path"
                )
            break
    if not path.parent.exists():
        raise ConfigError(
            f"output_dir {output_dir}: its parent {path.parent} does not exist; is the volume mounted? "
            "create the parent first (only output_dir itself is created)"
        )
    try:
        path.mkdir(exist_ok=True)
        probe = path / f".sft-prep-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(
            f"output_dir {output_dir} is not writable by uid {os.getuid()} ({exc.strerror or exc}); "
            "mount it read-write, set the pod's fsGroup, or choose another path"
        ) from None
