"""A coalescing per-key work queue: the operator's reconcile loop, level-triggered.

kopf delivers events per object; our reconcile of one CR depends on three kinds of objects (the CR,
its Job, the Job's pods). Every event only *triggers* the owner's key here; one worker per key runs
the reconcile, and triggers that arrive while it runs collapse into one more run. Exceptions are
retried with exponential backoff and jitter (transient API errors), never sooner than the API
server's ``Retry-After``; user errors never raise (they become ``Stalled``), so nothing crash-loops.

The backoff measures how long a CR's reconciles have been failing, not how many events arrived
meanwhile: :meth:`WorkQueue.recovered` (called once the API server answers again) retries every
backed-off key at once and starts its backoff over, so a burst of failures during an outage does
not leave a CR's status a minute behind a healthy API server.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field

from sft_operator.metrics import QueueStats

log = logging.getLogger(__name__)

Reconcile = Callable[[Hashable], Awaitable[float | None]]
"""Returns seconds until the key should be looked at again, or None."""


def backoff_delay(failures: int, base: float, cap: float) -> float:
    """Seconds before retry number ``failures`` (1 for the first): exponential from ``base``, capped at
    ``cap``, with ±20 % jitter so what failed together (an outage) does not retry in lockstep. The one
    backoff of the operator: the work queue's per-CR retries and kopf's requests and watch streams
    (:mod:`sft_operator.kube.watching`)."""
    return min(base * 2 ** min(max(failures, 1) - 1, 30), cap) * random.uniform(0.8, 1.2)


@dataclass
class _KeyState:
    running: bool = False
    dirty: bool = False
    failures: int = 0
    timer: asyncio.TimerHandle | None = None
    timer_at: float = 0.0
    not_before: float = 0.0
    """Loop time before which the key must not run: the API server's ``Retry-After`` (events that
    arrive meanwhile wait for it too)."""
    reset: bool = False
    """:meth:`WorkQueue.recovered` restarted this key's backoff since its last success (once only, so
    an error of this one CR, e.g. a webhook's 500, never hot-loops on other CRs' successes)."""


@dataclass
class WorkQueue:
    reconcile: Reconcile
    concurrency: int = 32
    backoff_base: float = 0.5
    backoff_max: float = 60.0
    _states: dict[Hashable, _KeyState] = field(default_factory=dict)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _semaphore: asyncio.Semaphore | None = None
    _closed: bool = False
    _waiting: int = 0
    """Runs waiting for a concurrency slot."""
    _adds: int = 0
    _retries: int = 0

    def trigger(self, key: Hashable, delay: float = 0.0) -> None:
        """Reconcile ``key`` now (or after ``delay`` s); cheap and safe to call from any handler."""
        if self._closed:
            return
        state = self._states.setdefault(key, _KeyState())
        loop = asyncio.get_running_loop()
        if delay > 0:
            due = loop.time() + delay
            if state.timer is not None and state.timer_at <= due:
                return
            if state.timer is not None:
                state.timer.cancel()
            state.timer = loop.call_later(delay, self._fire, key)
            state.timer_at = due
            return
        if state.not_before - loop.time() > 0.01:
            self.trigger(key, delay=state.not_before - loop.time())
            return
        if state.running:
            state.dirty = True
            return
        state.running = True
        self._adds += 1
        task = loop.create_task(self._run(key, state), name=f"reconcile {key}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _fire(self, key: Hashable) -> None:
        state = self._states.get(key)
        if state is not None:
            state.timer = None
        self.trigger(key)

    async def _run(self, key: Hashable, state: _KeyState) -> None:
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self.concurrency)
        try:
            while True:
                state.dirty = False
                requeue: float | None = None
                failed = False
                try:
                    self._waiting += 1
                    try:
                        await self._semaphore.acquire()
                    finally:
                        self._waiting -= 1
                    try:
                        requeue = await self.reconcile(key)
                    finally:
                        self._semaphore.release()
                    state.failures = 0
                    state.reset = False
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    failed = True
                    state.failures += 1
                    self._retries += 1
                    requeue = self.backoff(state.failures)
                    retry_after = getattr(exc, "retry_after", None)  # kube.client.ApiError
                    if isinstance(retry_after, int | float) and retry_after > requeue:
                        requeue = float(retry_after)
                        state.not_before = asyncio.get_running_loop().time() + requeue
                    log.warning(
                        "reconcile %s failed (attempt %d), retrying in %.1fs: %s",
                        key,
                        state.failures,
                        requeue,
                        exc,
                    )
                if requeue is not None and (failed or not state.dirty):
                    # after a failure, events that came meanwhile wait for the backoff too (else a
                    # stream of events would retry at once, ignoring Retry-After)
                    state.dirty = False
                    state.running = False
                    self.trigger(key, delay=requeue)
                    return
                if not state.dirty:
                    return
        finally:
            state.running = False
            if state.timer is None and not state.dirty and state.failures == 0:
                self._states.pop(key, None)

    def backoff(self, failures: int) -> float:
        """Seconds before retry number ``failures`` (:func:`backoff_delay`)."""
        return backoff_delay(failures, self.backoff_base, self.backoff_max)

    def recovered(self) -> None:
        """The API server answers again: retry every key waiting on an error backoff now (spread over
        ``backoff_base`` seconds) and start their backoff over."""
        if self._closed:
            return
        for key, state in list(self._states.items()):
            if state.failures and state.timer is not None and not state.running and not state.reset:
                state.failures, state.reset = 0, True
                state.timer.cancel()
                state.timer = None
                self.trigger(key, delay=random.uniform(0, self.backoff_base))

    def stats(self) -> QueueStats:
        """Depth (due, not started), in flight, timers pending, and the adds/retries counters."""
        running = sum(1 for state in self._states.values() if state.running)
        dirty = sum(1 for state in self._states.values() if state.dirty)
        return QueueStats(
            depth=self._waiting + dirty,
            in_flight=running - self._waiting,
            scheduled=sum(1 for state in self._states.values() if state.timer is not None),
            adds=self._adds,
            retries=self._retries,
        )

    def forget(self, key: Hashable) -> None:
        """Drop timers of a deleted object."""
        state = self._states.pop(key, None)
        if state is not None and state.timer is not None:
            state.timer.cancel()

    async def close(self) -> None:
        self._closed = True
        for state in self._states.values():
            if state.timer is not None:
                state.timer.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def idle(self) -> None:
        """Wait until no reconcile is running (tests and benchmarks)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
