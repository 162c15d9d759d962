"""An HTTP-aware fault-injecting proxy in front of the emulator, for a real operator process.

Point a kubeconfig at ``proxy.url``; every request is forwarded to the emulator (watch streams
streamed through chunk by chunk) unless a rule matches it. The faults are the ones an API server and
the network in front of it really produce:

* ``fail``: answer with a ``Status`` (e.g. 500, 503, 429 with ``Retry-After``, a ResourceQuota 403)
  without forwarding — what kube-apiserver's handlers write (``metav1.Status``, JSON);
* ``watch_error``: answer a watch with 200 and one ``ERROR`` event carrying a ``Status`` — the form
  kube-apiserver uses for errors inside a watch stream (``k8s.io/apiserver/pkg/endpoints/handlers/
  watch.go``: ``watch.Error`` events, e.g. code 500 "internal error", 410 "too old resource version");
* ``drop_response``: forward the request (the server applies it) and cut the connection before the
  response reaches the client — a load balancer timing out, a network partition;
* ``outage``: every request answered 503 and open watch streams cut, until ``restore``.

Rules match a method, a regex on the path, and whether the request is a watch; each fires ``times``
times (None: until removed). ``log`` records every request (monotonic time, method, path, status).
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import aiohttp
import aiohttp.web

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "host",
    "upgrade",
    "proxy-connection",
    "te",
    "trailer",
}


def status_body(code: int, reason: str, message: str, **details: Any) -> dict[str, Any]:
    """A metav1.Status as kube-apiserver writes it."""
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        body["details"] = details
    return body


@dataclass
class Rule:
    kind: str
    method: str | None
    path: re.Pattern[str]
    watch: bool | None
    times: int | None
    status: int = 500
    body: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    hits: list[float] = field(default_factory=list)

    def matches(self, method: str, path: str, watch: bool) -> bool:
        if self.times is not None and len(self.hits) >= self.times:
            return False
        if self.method is not None and self.method != method:
            return False
        if self.watch is not None and self.watch != watch:
            return False
        return self.path.search(path) is not None


class FaultProxy:
    def __init__(self, target: str) -> None:
        self.target = target.rstrip("/")
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.rules: list[Rule] = []
        self.log: list[tuple[float, str, str, int]] = []
        self.outage_status: int | None = None
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-proxy", daemon=True)
        self._runner: aiohttp.web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._streams: set[asyncio.Transport] = set()

    # ------------------------------------------------------------------ rules
    def fail(
        self,
        method: str | None,
        path: str,
        status: int,
        message: str = "injected by the fault proxy",
        *,
        reason: str = "InternalError",
        headers: dict[str, str] | None = None,
        times: int | None = None,
        watch: bool | None = False,
    ) -> Rule:
        return self._add(
            Rule(
                "fail",
                method,
                re.compile(path),
                watch,
                times,
                status,
                status_body(status, reason, message),
                dict(headers or {}),
            )
        )

    def watch_error(self, path: str, code: int = 500, times: int | None = 1) -> Rule:
        body = status_body(code, "InternalError", f"injected watch error {code}")
        return self._add(Rule("watch_error", "GET", re.compile(path), True, times, 200, body))

    def drop_response(self, method: str, path: str, times: int | None = 1) -> Rule:
        return self._add(Rule("drop", method, re.compile(path), False, times))

    def remove(self, rule: Rule) -> None:
        with self._lock:
            if rule in self.rules:
                self.rules.remove(rule)

    def outage(self, status: int = 503) -> None:
        """Answer everything with ``status`` and cut the open watch streams."""
        self.outage_status = status
        self.cut_streams()

    def restore(self) -> None:
        self.outage_status = None

    def cut_streams(self) -> None:
        """Cut every open (watch) connection: clients reconnect and meet the current rules."""

        def cut() -> None:
            for transport in list(self._streams):
                transport.abort()
            self._streams.clear()

        self._loop.call_soon_threadsafe(cut)

    def requests(self, method: str, path: str) -> list[tuple[float, int]]:
        """(time, status) of the logged requests with ``method`` whose path matches ``path``."""
        pattern = re.compile(path)
        with self._lock:
            return [(t, s) for t, m, p, s in self.log if m == method and pattern.search(p)]

    def _add(self, rule: Rule) -> Rule:
        with self._lock:
            self.rules.append(rule)
        return rule

    def _match(self, method: str, path: str, watch: bool) -> Rule | None:
        with self._lock:
            for rule in self.rules:
                if rule.matches(method, path, watch):
                    rule.hits.append(time.monotonic())
                    return rule
        return None

    def _record(self, method: str, path: str, status: int) -> None:
        with self._lock:
            self.log.append((time.monotonic(), method, path, status))

    # ------------------------------------------------------------------ server
    def __enter__(self) -> Self:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _start(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None), auto_decompress=False
        )
        app = aiohttp.web.Application(client_max_size=64 * 1024**2)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = aiohttp.web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await aiohttp.web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def _stop(self) -> None:
        for transport in list(self._streams):
            transport.abort()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()
        current = asyncio.current_task()
        pending = [t for t in asyncio.all_tasks() if t is not current]
        for task in pending:  # streams still open (watches): end them with the loop
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def _handle(self, request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        method, path = request.method, request.path
        watch = request.query.get("watch") in ("true", "1")
        data = await request.read()
        if self.outage_status is not None:
            self._record(method, path, self.outage_status)
            body = status_body(self.outage_status, "ServiceUnavailable", "injected outage")
            return aiohttp.web.json_response(body, status=self.outage_status)
        rule = self._match(method, path, watch)
        if rule is not None and rule.kind == "fail":
            self._record(method, path, rule.status)
            return aiohttp.web.json_response(rule.body, status=rule.status, headers=rule.headers)
        if rule is not None and rule.kind == "watch_error":
            self._record(method, path, 200)
            resp = aiohttp.web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
            await resp.prepare(request)
            await resp.write(json.dumps({"type": "ERROR", "object": rule.body}).encode() + b"\n")
            await resp.write_eof()
            return resp
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        transport = request.transport
        async with self._session.request(
            method, self.target + request.path_qs, headers=headers, data=data or None, allow_redirects=False
        ) as upstream:
            self._record(method, path, upstream.status)
            if rule is not None and rule.kind == "drop":
                await upstream.read()  # the server has applied the request; the client never hears
                if transport is not None:
                    transport.abort()
                return aiohttp.web.Response(status=502)
            out = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP}
            resp = aiohttp.web.StreamResponse(status=upstream.status, headers=out)
            await resp.prepare(request)
            if watch and transport is not None:
                self._streams.add(transport)
            try:
                async for chunk in upstream.content.iter_any():
                    await resp.write(chunk)
                await resp.write_eof()
            except (ConnectionError, aiohttp.ClientError, RuntimeError):
                pass
            finally:
                if transport is not None:
                    self._streams.discard(transport)
            return resp
