"""The work queue: triggers coalesce, failures retry with backoff, delayed triggers fire once."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Hashable

import pytest

from sft_operator import workqueue
from sft_operator.workqueue import WorkQueue


async def test_triggers_while_running_collapse_into_one_rerun() -> None:
    runs: list[Hashable] = []
    gate = asyncio.Event()

    async def reconcile(key: Hashable) -> None:
        runs.append(key)
        if len(runs) == 1:
            await gate.wait()

    queue = WorkQueue(reconcile)
    queue.trigger("a")
    await asyncio.sleep(0)
    for _ in range(5):
        queue.trigger("a")  # while the first run is blocked
    gate.set()
    await queue.idle()
    assert runs == ["a", "a"]
    await queue.close()


async def test_keys_run_concurrently_up_to_the_limit() -> None:
    active = 0
    peak = 0

    async def reconcile(key: Hashable) -> None:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.01)
        active -= 1

    queue = WorkQueue(reconcile, concurrency=3)
    for i in range(10):
        queue.trigger(i)
    await queue.idle()
    assert peak == 3
    await queue.close()


async def test_failures_retry_with_exponential_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    # the ±20 % jitter (workqueue.backoff_delay, bounded in test_api_backoff.py) pinned to its middle
    monkeypatch.setattr(workqueue.random, "uniform", lambda low, high: (low + high) / 2)
    times: list[float] = []
    loop = asyncio.get_running_loop()

    async def reconcile(key: Hashable) -> None:
        times.append(loop.time())
        if len(times) < 4:
            raise ConnectionError("apiserver down")

    queue = WorkQueue(reconcile, backoff_base=0.02, backoff_max=0.05)
    queue.trigger("k")
    for _ in range(100):
        await asyncio.sleep(0.01)
        if len(times) >= 4:
            break
    assert len(times) == 4
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps[0] >= 0.015 and gaps[1] >= 0.035 and gaps[2] >= 0.045  # 0.02, 0.04, capped 0.05
    await queue.close()


async def test_requeue_after_and_forget() -> None:
    runs: list[str] = []

    async def reconcile(key: Hashable) -> float | None:
        runs.append(str(key))
        return 0.02 if key == "again" else None

    queue = WorkQueue(reconcile)
    queue.trigger("again")
    queue.trigger("once")
    for _ in range(200):  # a loaded machine delays the loop: wait for the requeue, not a fixed time
        await asyncio.sleep(0.01)
        if runs.count("again") >= 2:
            break
    assert runs.count("once") == 1 and runs.count("again") >= 2
    queue.forget("again")
    seen = runs.count("again")
    await asyncio.sleep(0.06)
    assert runs.count("again") == seen  # its timer was cancelled
    await queue.close()


async def test_closed_queue_ignores_triggers() -> None:
    runs: list[str] = []

    async def reconcile(key: Hashable) -> None:
        runs.append(str(key))

    queue = WorkQueue(reconcile)
    await queue.close()
    queue.trigger("x")
    await asyncio.sleep(0.01)
    assert runs == []


@pytest.mark.parametrize("delay", [0.01, 0.03])
async def test_an_earlier_delayed_trigger_wins(delay: float) -> None:
    runs: list[float] = []
    loop = asyncio.get_running_loop()

    async def reconcile(key: Hashable) -> None:
        runs.append(loop.time())

    queue = WorkQueue(reconcile)
    start = loop.time()
    queue.trigger("k", delay=0.2)
    queue.trigger("k", delay=delay)
    await asyncio.sleep(delay + 0.05)
    assert len(runs) == 1 and runs[0] - start < 0.15
    await queue.close()
