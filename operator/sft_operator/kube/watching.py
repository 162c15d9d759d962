"""Keep kopf's watch streams alive through API faults, and know how long the operator was blind.

What ends a kopf 1.x operator (read in ``kopf/_cogs/clients``), and what this module does about it:

* ``api.request`` retries unreachable servers, 5xx, 403 and 429 (obeying ``Retry-After``) along
  ``settings.networking.error_backoffs`` (default 1, 1, 2, 3, 5, 8, 13, 21 s: ~55 s), then raises
  (``APIServerError``...). Raised from a watch stream or a peering keep-alive, that error fails a root
  task and the whole operator exits. :class:`ApiBackoffs` is an endless schedule instead (exponential,
  capped at :data:`BACKOFF_MAX`, ±20 % jitter): an outage of minutes is waited out, never fatal.
* ``watching.continuous_watch`` restarts the stream on an ``ERROR`` event with code 410 (Gone: the
  resource version expired; it lists again), but raises ``WatchingError`` on any other ``ERROR`` event
  (e.g. 500), which is fatal. :func:`install` wraps it: such an error (or any API error that still
  escapes) is logged, waited out with the same backoff, and the stream starts over with a fresh list,
  as client-go's reflector does.
* ``peering.touch``/``peering.clean`` (keep-alives in the peering object) raise into the peering
  tasks; wrapped to log and carry on (the next keep-alive comes within the peering lifetime).

:class:`WatchHealth` follows every watch stream: it is *blind* from the first failed request of the
stream (list or watch) until a request of that stream succeeds again. ``/readyz`` answers 503 while a
stream is blind (:mod:`sft_operator.probes`), and the recovery is logged and counted with how long it
lasted (``sft_operator_watch_blind_seconds_total``, :mod:`sft_operator.metrics`).

These are wrappers of kopf internals (pinned: ``kopf>=1.45,<2`` in pyproject); the tests in
``tests/operator/test_api_faults.py`` drive them through a real operator process and fail loudly if a
kopf upgrade moves them.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from sft_operator.workqueue import backoff_delay

log = logging.getLogger(__name__)

BACKOFF_BASE = 1.0
BACKOFF_MAX = 30.0
"""Longest wait between two tries of a failed kopf request or watch stream (seconds)."""

_STREAM: contextvars.ContextVar[str | None] = contextvars.ContextVar("sft_watch_stream", default=None)
"""The watch stream whose request runs now (set only while kopf's stream generator runs)."""


class BlindObserver(Protocol):
    """Told when a watch stream fails and when it sees again (``sft_operator.metrics``)."""

    def watch_failed(self, stream: str) -> None: ...

    def watch_recovered(self, stream: str, seconds: float) -> None: ...


def backoff_delays(base: float = BACKOFF_BASE, cap: float = BACKOFF_MAX) -> Iterator[float]:
    """base, 2·base, 4·base... capped at ``cap``, each ±20 % (jitter), forever."""
    failures = 0
    while True:
        failures += 1
        yield backoff_delay(failures, base, cap)


@dataclass
class WatchHealth:
    """Which watch streams are blind, since when, and why (see the module docstring)."""

    observer: BlindObserver | None = None
    on_recovered: Callable[[], None] | None = None
    """Called when a blind stream sees again (the work queue then retries its backed-off CRs)."""
    clock: Callable[[], float] = time.monotonic
    expect: tuple[str, ...] = ()
    """Streams (substrings of their names, e.g. a plural) that must have listed once before the
    operator is ready: at start the watches do not exist yet, so nothing is blind but nothing is seen."""
    _seen: set[str] = field(default_factory=set)
    _blind: dict[str, tuple[float, str]] = field(default_factory=dict)
    _failures: dict[str, int] = field(default_factory=dict)

    def failed(self, stream: str, error: str) -> None:
        self._failures[stream] = self._failures.get(stream, 0) + 1
        if self.observer is not None:
            self.observer.watch_failed(stream)
        if stream not in self._blind:
            log.warning("lost the watch of %s: %s; retrying with backoff", stream, error)
            self._blind[stream] = (self.clock(), error)
        else:
            self._blind[stream] = (self._blind[stream][0], error)

    def succeeded(self, stream: str) -> None:
        self._seen.add(stream)
        self._failures.pop(stream, None)
        since = self._blind.pop(stream, None)
        if since is None:
            return
        seconds = self.clock() - since[0]
        log.warning("watching %s again after %.1fs blind (last error: %s)", stream, seconds, since[1])
        if self.observer is not None:
            self.observer.watch_recovered(stream, seconds)
        if self.on_recovered is not None:
            self.on_recovered()

    def forget(self, stream: str) -> None:
        self._blind.pop(stream, None)
        self._failures.pop(stream, None)

    def next_delay(self, stream: str) -> float:
        """The backoff before the stream's next try after ``failures`` consecutive failures."""
        return backoff_delay(self._failures.get(stream, 1), BACKOFF_BASE, BACKOFF_MAX)

    def blind(self) -> list[tuple[str, float, str]]:
        """(stream, seconds blind, last error) of every blind stream, longest first."""
        now = self.clock()
        return sorted(((s, now - t, e) for s, (t, e) in self._blind.items()), key=lambda b: -b[1])

    def problem(self) -> str | None:
        """One line for ``/readyz`` while a stream is blind, else None."""
        blind = self.blind()
        unseen = [e for e in self.expect if not any(e in seen for seen in self._seen)]
        if not blind and unseen:
            return f"not watching {', '.join(unseen)} yet (the first list has not succeeded)"
        if not blind:
            return None
        stream, seconds, error = blind[0]
        more = f" (and {len(blind) - 1} more)" if len(blind) > 1 else ""
        return f"not watching {stream}{more} for {seconds:.0f}s: {error}"


@dataclass
class ApiBackoffs:
    """``settings.networking.error_backoffs``: an endless jittered schedule (never escalate), which
    also marks the running watch stream blind at each failed try. Iterated afresh by every request."""

    health: WatchHealth
    base: float = BACKOFF_BASE
    cap: float = BACKOFF_MAX

    def __iter__(self) -> Iterator[float]:
        stream = _STREAM.get()
        for tries, delay in enumerate(backoff_delays(self.base, self.cap)):
            # kopf (_cogs/clients/api.py ``request``) draws delay n before try n: the first draw comes
            # before any try, so only a later draw means a try failed (else every reconnect of a watch,
            # every ``timeoutSeconds``, would read as a lost watch)
            if tries and stream is not None:
                self.health.failed(stream, "API request failed, retrying (see kopf's log line)")
            yield delay


def _health_of(settings: Any) -> WatchHealth | None:
    backoffs = getattr(getattr(settings, "networking", None), "error_backoffs", None)
    return backoffs.health if isinstance(backoffs, ApiBackoffs) else None


def stream_name(resource: Any, namespace: str | None) -> str:
    return f"{resource} in {namespace!r}" if namespace is not None else f"{resource} cluster-wide"


_installed = False


def install() -> None:
    """Wrap kopf's stream, request and peering functions (once per process; operators whose settings
    carry no :class:`ApiBackoffs` pass through unchanged)."""
    global _installed
    if _installed:
        return
    from kopf._cogs.clients import api, watching
    from kopf._core.engines import peering

    original_watch = watching.continuous_watch
    original_request = api.request

    async def continuous_watch(**kwargs: Any) -> AsyncIterator[Any]:
        settings = kwargs["settings"]
        health = _health_of(settings)
        if health is None:
            async for item in original_watch(**kwargs):
                yield item
            return
        stream = stream_name(kwargs["resource"], kwargs["namespace"])
        events: Any = original_watch(**kwargs)
        try:
            while True:
                token = _STREAM.set(stream)
                try:
                    item = await events.__anext__()
                except StopAsyncIteration:
                    return
                finally:
                    _STREAM.reset(token)
                yield item
        except (asyncio.CancelledError, GeneratorExit):
            health.forget(stream)  # the watcher stops (CRD gone, operator ending): nothing to see
            raise
        except Exception as exc:  # WatchingError (an ERROR event), or an API error that escaped
            health.failed(stream, f"{type(exc).__name__}: {exc}")
            delay = health.next_delay(stream)
            log.info("watch of %s failed; listing it again in %.1fs", stream, delay)
            pause = kwargs.get("operator_pause_waiter")
            if isinstance(pause, asyncio.Future):
                await asyncio.wait([pause], timeout=delay)
            else:
                await asyncio.sleep(delay)
            # returning makes kopf's infinite_watch start over: list, then watch
        finally:
            await events.aclose()

    @functools.wraps(original_request)
    async def request(*args: Any, **kwargs: Any) -> Any:
        response = await original_request(*args, **kwargs)
        stream = _STREAM.get()
        if stream is not None:
            health = _health_of(kwargs.get("settings"))
            if health is not None:
                health.succeeded(stream)
        return response

    def tolerant(func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            if _health_of(kwargs.get("settings")) is None:
                return await func(*args, **kwargs)
            try:
                return await func(*args, **kwargs)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("peering %s failed (retried with the next keep-alive): %s", func.__name__, exc)
                return None

        return wrapper

    watching.continuous_watch = continuous_watch
    api.request = request
    peering.touch = tolerant(peering.touch)
    peering.clean = tolerant(peering.clean)
    _installed = True
