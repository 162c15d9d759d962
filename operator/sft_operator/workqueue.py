"""A coalescing per-key work queue: the operator's reconcile loop, level-triggered.

kopf delivers events per object; our reconcile of one CR depends on three kinds of objects (the CR,
its Job, the Job's pods). Every event only *triggers* the owner's key here; one worker per key runs
the reconcile, and triggers that arrive while it runs collapse into one more run. Exceptions are
retried with exponential backoff (transient API errors); user errors never raise (they become
``Stalled``), so nothing crash-loops.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field

from sft_operator.metrics import QueueStats

log = logging.getLogger(__name__)

Reconcile = Callable[[Hashable], Awaitable[float | None]]
"""Returns seconds until the key should be looked at again, or None."""


@dataclass
class _KeyState:
    running: bool = False
    dirty: bool = False
    failures: int = 0
    timer: asyncio.TimerHandle | None = None
    timer_at: float = 0.0


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
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    state.failures += 1
                    self._retries += 1
                    requeue = min(self.backoff_base * 2 ** (state.failures - 1), self.backoff_max)
                    log.warning(
                        "reconcile %s failed (attempt %d), retrying in %.1fs: %s",
                        key,
                        state.failures,
                        requeue,
                        exc,
                    )
                if requeue is not None and not state.dirty:
                    state.running = False
                    self.trigger(key, delay=requeue)
                    return
                if not state.dirty:
                    return
        finally:
            state.running = False
            if state.timer is None and not state.dirty and state.failures == 0:
                self._states.pop(key, None)

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
