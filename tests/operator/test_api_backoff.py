"""The pieces of riding out API faults, in isolation: Retry-After parsing and its cap, the work
queue obeying it and restarting backoffs on recovery, kopf's endless retry schedule, and the unique
default peering priorities (the end-to-end proofs are in test_api_faults.py)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Hashable
from datetime import UTC, datetime
from email.utils import format_datetime

from sft_operator.__main__ import default_priority
from sft_operator.kube.client import RETRY_AFTER_MAX, ApiError, retry_after_seconds
from sft_operator.kube.watching import BACKOFF_MAX, ApiBackoffs, WatchHealth
from sft_operator.workqueue import WorkQueue


def test_retry_after_forms_and_cap() -> None:
    assert retry_after_seconds("10") == 10.0
    assert retry_after_seconds(" 2.5 ") == 2.5
    assert retry_after_seconds("-3") == 0.0
    assert retry_after_seconds("86400") == RETRY_AFTER_MAX
    now = 1_800_000_000.0
    date = format_datetime(datetime.fromtimestamp(now + 30, UTC), usegmt=True)  # RFC 9110 HTTP-date
    assert retry_after_seconds(date, now=now) == 30.0
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None


def test_refusals_and_transient_errors() -> None:
    quota = ApiError(403, "Forbidden", 'jobs.batch "x" is forbidden: exceeded quota: q, requested: ...')
    assert quota.refused and quota.quota_exceeded and not quota.transient
    for status in (0, 429, 500, 503):
        assert ApiError(status, "", "").transient and not ApiError(status, "", "").refused
    for status in (401, 404, 409):
        assert not ApiError(status, "", "").refused
    assert ApiError(422, "Invalid", "").refused


async def test_retry_after_delays_the_retry_and_the_events_meanwhile() -> None:
    loop = asyncio.get_running_loop()
    times: list[float] = []

    async def reconcile(key: Hashable) -> None:
        times.append(loop.time())
        if len(times) == 1:
            raise ApiError(429, "TooManyRequests", "slow down", retry_after=0.6)

    queue = WorkQueue(reconcile, backoff_base=0.01)
    queue.trigger("a")
    await asyncio.sleep(0.1)
    queue.trigger("a")  # a watch event during the Retry-After window waits for it too
    await asyncio.sleep(1.0)
    await queue.idle()
    assert len(times) == 2 and times[1] - times[0] >= 0.58


async def test_recovery_restarts_the_backoff_once() -> None:
    loop = asyncio.get_running_loop()
    failing = True
    times: list[float] = []

    async def reconcile(key: Hashable) -> None:
        times.append(loop.time())
        if failing:
            raise ApiError(503, "ServiceUnavailable", "down")

    queue = WorkQueue(reconcile, backoff_base=0.05, backoff_max=60)
    queue.trigger("a")
    await asyncio.sleep(0.01)
    for _ in range(8):  # a burst: each event-triggered run fails and grows the backoff
        queue._states["a"].timer.cancel()  # type: ignore[union-attr]
        queue._states["a"].timer = None
        queue.trigger("a")
        await asyncio.sleep(0.01)
    assert queue._states["a"].failures >= 8  # next try ~6 s away
    failing = False
    healed = loop.time()
    queue.recovered()  # the API server answers again
    await asyncio.sleep(0.2)
    await queue.idle()
    assert times[-1] - healed < 0.2 and "a" not in queue._states


def test_kopf_retries_forever_with_capped_jittered_backoff() -> None:
    delays = list(itertools.islice(iter(ApiBackoffs(WatchHealth())), 200))
    assert len(delays) == 200  # endless: kopf never escalates an outage into a fatal error
    assert delays[0] <= 1.2 and max(delays) <= BACKOFF_MAX * 1.2 and min(delays[10:]) >= BACKOFF_MAX * 0.8
    assert len(set(delays)) > 100  # jittered


def test_a_watch_request_that_succeeds_first_time_is_not_a_lost_watch() -> None:
    """kopf's ``request`` (kopf/_cogs/clients/api.py) iterates ``enumerate(chain(error_backoffs, ...))``
    and so draws the first delay before its first try: that draw is no failure. Marking it one made
    every watch reconnect (each ``timeoutSeconds``) log a lost watch and flap /readyz."""
    from sft_operator.kube import watching

    health = WatchHealth()
    token = watching._STREAM.set("jobs in 'default'")
    try:
        delays = iter(ApiBackoffs(health))
        next(delays)  # drawn before the first try, which succeeds
        assert health.problem() is None and not health.blind()
        next(delays)  # drawn after the first try failed
        assert [b[0] for b in health.blind()] == ["jobs in 'default'"]
    finally:
        watching._STREAM.reset(token)


def test_watch_health_reports_blind_streams() -> None:
    now = [100.0]
    seen: list[tuple[str, float]] = []

    class Observer:
        def watch_failed(self, stream: str) -> None:
            pass

        def watch_recovered(self, stream: str, seconds: float) -> None:
            seen.append((stream, seconds))

    health = WatchHealth(observer=Observer(), clock=lambda: now[0])
    health.failed("jobs in 'default'", "500 InternalError")
    now[0] += 12
    assert health.problem() == "not watching jobs in 'default' for 12s: 500 InternalError"
    health.succeeded("jobs in 'default'")
    assert health.problem() is None and seen == [("jobs in 'default'", 12.0)]


def test_default_priorities_differ_for_replicas_started_together() -> None:
    t = 1_800_000_000_123_456_789
    a, b = default_priority(t, "sft-operator-7d9f-abcde"), default_priority(t, "sft-operator-7d9f-fghij")
    assert a != b and a < 2**63
    assert default_priority(t + 1_000, "x") > default_priority(t, "y")  # newer (by a µs) wins
