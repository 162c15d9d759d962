"""Watch streams: event order, resumption by resourceVersion, 410, selectors, initial events."""

from __future__ import annotations

import asyncio
import collections
import http.client
import json
import time
import urllib.parse
from typing import Any

import aiohttp

from kubeemu import KubeEmulator
from kubeemu.store import HISTORY

CM = "/api/v1/namespaces/default/configmaps"


def cm(name: str, **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels}}


async def events(kube: KubeEmulator, query: str, count: int, timeout: float = 5) -> list[dict[str, Any]]:
    """Read ``count`` watch events from ``CM?watch=true&{query}`` (in the test's event loop)."""
    collected: list[dict[str, Any]] = []
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{kube.url}{CM}?watch=true&{query}") as response,
    ):
        assert response.status == 200

        async def read() -> None:
            async for line in response.content:
                if line.strip():
                    collected.append(json.loads(line))
                    if len(collected) == count:
                        return

        await asyncio.wait_for(read(), timeout)
    return collected


def summary(items: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["type"], e["object"]["metadata"].get("name", "")) for e in items]


async def test_watch_streams_changes_in_order(kube: KubeEmulator) -> None:
    kube.create(cm("existing"))
    rv = kube.list("configmaps")[0]["metadata"]["resourceVersion"]

    async def mutate() -> None:
        await asyncio.sleep(0.2)
        kube.create(cm("a"))
        kube.patch("configmaps", "a", {"data": {"x": "1"}})
        kube.delete("configmaps", "a")

    task = asyncio.create_task(mutate())
    got = await events(kube, "allowWatchBookmarks=true", 4)
    await task
    assert summary(got) == [("ADDED", "existing"), ("ADDED", "a"), ("MODIFIED", "a"), ("DELETED", "a")]
    versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in got]
    assert versions == sorted(versions) and versions[0] == int(rv)


async def test_watch_resumes_from_resource_version(kube: KubeEmulator) -> None:
    first = kube.create(cm("a"))
    kube.create(cm("b"))
    kube.delete("configmaps", "a")
    got = await events(kube, f"resourceVersion={first['metadata']['resourceVersion']}", 2)
    assert summary(got) == [("ADDED", "b"), ("DELETED", "a")]


async def test_too_old_resource_version_is_410(kube: KubeEmulator) -> None:
    # A short history window for configmaps (the default keeps HISTORY events per resource).
    kube.call(kube.store.history.__setitem__, ("", "configmaps"), collections.deque(maxlen=3))
    for index in range(5):
        kube.create(cm(f"c{index}"))
    assert HISTORY > 3
    got = await events(kube, "resourceVersion=1", 1)
    assert got[0]["type"] == "ERROR" and got[0]["object"]["code"] == 410


async def test_selector_transitions_become_added_and_deleted(kube: KubeEmulator) -> None:
    kube.create(cm("a", tier="web"))

    async def relabel() -> None:
        await asyncio.sleep(0.2)
        kube.patch("configmaps", "a", {"metadata": {"labels": {"tier": "db"}}})
        kube.patch("configmaps", "a", {"metadata": {"labels": {"tier": "web"}}})

    task = asyncio.create_task(relabel())
    got = await events(kube, "labelSelector=tier%3Dweb", 3)
    await task
    assert summary(got) == [("ADDED", "a"), ("DELETED", "a"), ("ADDED", "a")]


async def test_initial_events_end_with_a_bookmark(kube: KubeEmulator) -> None:
    kube.create(cm("a"))
    got = await events(
        kube, "sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan", 2
    )
    assert [e["type"] for e in got] == ["ADDED", "BOOKMARK"]
    assert got[1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


async def test_watch_timeout_ends_the_stream(kube: KubeEmulator) -> None:
    url = f"{kube.url}{CM}?watch=true&timeoutSeconds=1"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        body = await asyncio.wait_for(response.read(), 5)
    assert body.strip() == b""


def test_stopping_the_emulator_ends_open_watch_streams() -> None:
    emulator = KubeEmulator().start()
    url = urllib.parse.urlsplit(emulator.url)
    connection = http.client.HTTPConnection(url.hostname or "", url.port, timeout=10)
    connection.request("GET", f"{CM}?watch=true")
    response = connection.getresponse()
    assert response.status == 200
    started = time.monotonic()
    emulator.stop()
    assert time.monotonic() - started < 5
    assert response.read() == b""  # the stream ended cleanly (the socket did not hang)
    connection.close()
