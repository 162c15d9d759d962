"""The thin REST client against the emulated apiserver: credentials from a kubeconfig (as kopf parses
them), error mapping, create-or-adopt, pod logs and Events."""

from __future__ import annotations

from pathlib import Path

import kopf
import pytest

from kubeemu import KubeEmulator
from sft_operator.errors import InvalidSpec
from sft_operator.kube.children import ensure_child, stale_reason
from sft_operator.kube.client import CONFIGMAPS, EVENTS, JOBS, ApiError, KubeClient, Resource
from sft_operator.kube.events import event_body, record_event


def cm(name: str, owner_uid: str | None = None, **data: str) -> dict:
    meta: dict = {"name": name, "namespace": "default", "annotations": {"sft.dev/spec-hash": "h1"}}
    if owner_uid:
        meta["ownerReferences"] = [
            {"apiVersion": "v1", "kind": "X", "name": "o", "uid": owner_uid, "controller": True}
        ]
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}


def test_resource_paths() -> None:
    assert JOBS.path("ns", "j") == "/apis/batch/v1/namespaces/ns/jobs/j"
    assert Resource("", "v1", "pods").path("ns", "p", "log") == "/api/v1/namespaces/ns/pods/p/log"
    crds = Resource("apiextensions.k8s.io", "v1", "customresourcedefinitions", namespaced=False)
    assert crds.path("ignored", "x") == "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/x"
    assert JOBS.api_version == "batch/v1" and CONFIGMAPS.api_version == "v1"


async def test_verbs_and_error_mapping(
    kube: KubeEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(kube.write_kubeconfig(tmp_path / "kubeconfig")))
    info = kopf.login_with_kubeconfig(settings=kopf.OperatorSettings())
    client = KubeClient.from_connection_info(info)
    try:
        created = await client.create(CONFIGMAPS, "default", cm("a", x="1"))
        assert created["metadata"]["uid"]
        with pytest.raises(ApiError) as info_:
            await client.create(CONFIGMAPS, "default", cm("a"))
        assert info_.value.conflict and not info_.value.transient
        with pytest.raises(ApiError) as info_:
            await client.get(CONFIGMAPS, "default", "missing")
        assert info_.value.not_found
        with pytest.raises(ApiError) as info_:
            await client.create(
                CONFIGMAPS,
                "default",
                {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "Bad_Name"}},
            )
        assert info_.value.invalid and "Bad_Name" in info_.value.message
        patched = await client.patch(CONFIGMAPS, "default", "a", {"data": {"x": "2"}})
        assert patched["data"] == {"x": "2"}
        assert [c["metadata"]["name"] for c in await client.list(CONFIGMAPS, "default")] == ["a"]
        await client.delete(CONFIGMAPS, "default", "a")
        assert kube.get_or_none("ConfigMap", "a") is None
    finally:
        await client.close()


async def test_unreachable_server_is_transient() -> None:
    client = KubeClient("http://127.0.0.1:9", timeout=2)
    try:
        with pytest.raises(ApiError) as info:
            await client.get(CONFIGMAPS, "default", "x")
        assert info.value.status == 0 and info.value.transient
    finally:
        await client.close()


async def test_ensure_child_creates_adopts_and_refuses_foreign(
    kube: KubeEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(kube.write_kubeconfig(tmp_path / "kubeconfig")))
    client = KubeClient.from_connection_info(kopf.login_with_kubeconfig(settings=kopf.OperatorSettings()))
    # Owners that exist: a child whose owners are all gone would be garbage-collected at once.
    uid_1, uid_2 = (kube.create(cm(f"owner-{n}"))["metadata"]["uid"] for n in (1, 2))
    try:
        first = await ensure_child(client, CONFIGMAPS, cm("mine", uid_1), uid_1, "X o")
        again = await ensure_child(client, CONFIGMAPS, cm("mine", uid_1), uid_1, "X o")
        assert first.created and not again.created
        assert again.obj["metadata"]["uid"] == first.obj["metadata"]["uid"]
        kube.create(cm("theirs", uid_2))
        with pytest.raises(InvalidSpec) as info:
            await ensure_child(client, CONFIGMAPS, cm("theirs", uid_1), uid_1, "X o")
        assert info.value.reason == "ChildConflict" and "not controlled by X o" in info.value.message
        with pytest.raises(InvalidSpec) as info:
            await ensure_child(client, CONFIGMAPS, cm("Bad_Name", uid_1), uid_1, "X o")
        assert info.value.reason == "ChildRejected"
        assert stale_reason(first.obj, "h1", "X o") is None
        stale = stale_reason(first.obj, "h2", "X o")
        assert stale is not None and stale.reason == "SpecChangedAfterStart"
    finally:
        await client.close()


async def test_events_are_recorded_once(
    kube: KubeEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(kube.write_kubeconfig(tmp_path / "kubeconfig")))
    client = KubeClient.from_connection_info(kopf.login_with_kubeconfig(settings=kopf.OperatorSettings()))
    owner = {
        "apiVersion": "sft.dev/v1alpha1",
        "kind": "SFTDataPrep",
        "metadata": {"name": "d", "namespace": "default", "uid": "u1"},
    }
    try:
        await record_event(client, owner, "Normal", "Running", "2 workers running", "2026-11-25T10:00:00Z")
        await record_event(
            client, owner, "Normal", "Running", "2 workers running", "2026-11-25T10:00:00Z"
        )  # 409: ignored
        (event,) = kube.events("default", "d")
        assert event["reason"] == "Running" and event["involvedObject"]["uid"] == "u1"
        assert event["source"]["component"] == "sft-operator"
    finally:
        await client.close()
    body = event_body(owner, "Warning", "Failed", "x" * 5000, "2026-11-25T10:00:00Z")
    assert len(body["message"]) == 1024 and EVENTS.plural == "events"
