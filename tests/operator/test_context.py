"""Read-your-writes: a reconcile that runs before the watch delivers our own status patch must not
derive from the stale cache (it would patch and announce the same transition twice)."""

from __future__ import annotations

from sft_operator.context import Context
from sft_operator.kube.client import KubeClient

KEY = ("ns", "SFTDataPrep", "x")


def obj(rv: str, phase: str) -> dict:
    return {"metadata": {"name": "x", "resourceVersion": rv}, "spec": {"a": rv}, "status": {"phase": phase}}


def test_latest_prefers_our_newer_write_until_the_cache_catches_up() -> None:
    ctx = Context(client=KubeClient("http://unused"))
    assert ctx.latest(KEY, obj("5", "Pending")) == obj("5", "Pending")  # nothing written yet
    ctx.remember(KEY, obj("7", "Running"))
    stale = ctx.latest(KEY, obj("6", "Pending"))
    assert stale["status"] == {"phase": "Running"} and stale["spec"] == {"a": "6"}  # cache's spec, our status
    caught_up = ctx.latest(KEY, obj("7", "Running"))
    assert caught_up == obj("7", "Running") and KEY not in ctx.written
    ctx.remember(KEY, obj("8", "Running"))
    newer = ctx.latest(KEY, obj("9", "Succeeded"))  # someone wrote after us: the cache is newer
    assert newer["status"] == {"phase": "Succeeded"}


def test_opaque_resource_versions_fall_back_to_the_cache() -> None:
    ctx = Context(client=KubeClient("http://unused"))
    ctx.remember(KEY, obj("b", "Running"))
    assert ctx.latest(KEY, obj("a", "Pending"))["status"] == {"phase": "Pending"}
    ctx.remember(KEY, obj("3", "Running"))
    ctx.forget(KEY)
    assert ctx.latest(KEY, obj("2", "Pending"))["status"] == {"phase": "Pending"}
