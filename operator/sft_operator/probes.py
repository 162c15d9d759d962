"""The operator's own HTTP endpoints: Prometheus ``/metrics`` and the readiness probe ``/readyz``.

Liveness stays kopf's (``--liveness``, ``/healthz``): it answers while the operator's event loop
runs, which is what a restart can fix. Readiness answers 200 only while the operator could do its
work: it has logged in, and the API server answers an authenticated request with those credentials
(``GET /apis/sft.dev/v1alpha1``, allowed to every authenticated user by the default
``system:discovery`` role). Otherwise 503 with a one-line reason: not logged in yet (and the login
handler's last error), the API server unreachable, the credentials rejected (401/403), or a watch
stream blind (it failed and has not listed or watched successfully since, see
:mod:`sft_operator.kube.watching`; the pod turns ready again by itself once it sees). A result is
reused for :data:`CACHE_SECONDS` so a burst of probes costs one API call.

A standby replica paused by kopf peering answers 200 on purpose. Readiness gates a Deployment's
rollout, not traffic (the operator serves none): with ``replicas: 2`` and a standby reported unready,
the Deployment could never count ``replicas - maxUnavailable`` available pods (the chart's
``maxUnavailable: 0``), so every rollout would stall until ``progressDeadlineSeconds`` and ``helm
--wait`` would fail. Ready means "could take over now": logged in, the API server answers, every
watch (the standby watches too: kopf's peering stream) sees. Which replica is active is in the
peering object's status and the replicas' logs ("Pausing operations in favour of ...").

Both are served on the operator's own event loop (aiohttp, started by a kopf startup handler), so
``/metrics`` reads kopf's caches and the work queue without locks. Endpoints are URLs like
``http://0.0.0.0:8081/readyz``; two on the same host and port share one listener.
"""

from __future__ import annotations

import asyncio
import logging
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp.web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from sft_operator.api.meta import GROUP, VERSION
from sft_operator.kube.client import ApiError, KubeClient
from sft_operator.metrics import OperatorMetrics

log = logging.getLogger(__name__)
CACHE_SECONDS = 1.0
PROBE_TIMEOUT = 5.0
READINESS_PATH = f"/apis/{GROUP}/{VERSION}"
Handler = Callable[[aiohttp.web.Request], Awaitable[aiohttp.web.StreamResponse]]


def parse_endpoint(url: str) -> tuple[str, int, str]:
    """(host, port, path) of ``http://HOST:PORT/PATH``; a clear error for anything else."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or not parts.port or not parts.path.startswith("/"):
        raise ValueError(f"endpoint {url!r}: expected http://HOST:PORT/PATH, e.g. http://0.0.0.0:8081/readyz")
    return parts.hostname or "0.0.0.0", parts.port, parts.path


@dataclass
class Readiness:
    """Ready = logged in and the API server accepts those credentials (see the module docstring)."""

    connection: Callable[[], Any]
    """The current ``kopf.ConnectionInfo`` (None before the first successful login)."""
    login_error: Callable[[], str | None]
    """The login handler's last error, if its last attempt failed."""
    watch_problem: Callable[[], str | None] = lambda: None
    """Why a watch stream is blind now (``WatchHealth.problem``), else None."""
    _client: KubeClient | None = None
    _client_for: Any = None
    _checked_at: float = -1e9
    _result: tuple[bool, str] = (False, "not checked yet")
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def check(self) -> tuple[bool, str]:
        async with self._lock:
            if time.monotonic() - self._checked_at >= CACHE_SECONDS:
                self._result = await self._probe()
                self._checked_at = time.monotonic()
            return self._result

    async def _probe(self) -> tuple[bool, str]:
        error = self.login_error()
        info = self.connection()
        if error is not None:
            return False, f"login failed: {error}"
        if info is None:
            return False, "not logged in to the API server yet"
        if self._client is None or self._client_for is not info:
            await self.close()
            self._client = KubeClient.from_connection_info(info, timeout=PROBE_TIMEOUT)
            self._client_for = info
        try:
            await self._client.request("GET", READINESS_PATH)
        except ApiError as exc:
            if exc.status in (401, 403):
                return (
                    False,
                    f"the API server rejected the operator's credentials ({exc.status} {exc.reason})",
                )
            if exc.status == 0:
                return False, f"the API server at {info.server} is unreachable: {exc.message}"
            if exc.not_found:
                return False, f"the API server does not serve {GROUP}/{VERSION}: install the CRDs"
            return False, f"the API server answered {exc.status} {exc.reason}: {exc.message}"
        problem = self.watch_problem()  # the API answers, yet a watch may still fail (or not exist yet)
        if problem is not None:
            return False, problem
        return True, "ok"

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None


@dataclass
class Endpoints:
    """aiohttp listeners for ``/metrics`` and ``/readyz`` (either may be None: not served)."""

    metrics: OperatorMetrics
    readiness: Readiness
    metrics_url: str | None = None
    readiness_url: str | None = None
    _runners: list[aiohttp.web.AppRunner] = field(default_factory=list)

    async def start(self) -> None:
        routes: dict[tuple[str, int], list[tuple[str, Handler]]] = {}
        if self.metrics_url:
            host, port, path = parse_endpoint(self.metrics_url)
            routes.setdefault((host, port), []).append((path, self._metrics))
        if self.readiness_url:
            host, port, path = parse_endpoint(self.readiness_url)
            routes.setdefault((host, port), []).append((path, self._ready))
        for (host, port), handlers in routes.items():
            app = aiohttp.web.Application()
            app.add_routes([aiohttp.web.get(path, handler) for path, handler in handlers])
            runner = aiohttp.web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0, access_log=None)
            await runner.setup()
            await aiohttp.web.TCPSite(runner, host, port).start()
            self._runners.append(runner)
            log.info("serving %s on http://%s:%d", ", ".join(p for p, _ in handlers), host, port)

    async def stop(self) -> None:
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()
        await self.readiness.close()

    async def _metrics(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        body = generate_latest(self.metrics.registry)
        return aiohttp.web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _ready(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        ready, reason = await self.readiness.check()
        return aiohttp.web.Response(status=200 if ready else 503, text=reason + "\n")
