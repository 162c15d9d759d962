"""generation, status-subresource isolation, finalizers and garbage collection."""

from __future__ import annotations

from typing import Any

import pytest

from kubeemu import ApiError, KubeEmulator

WIDGETS = "/apis/example.com/v1/namespaces/default/widgets"


def widget(name: str = "w", size: int = 1, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": name},
        "spec": {"size": size, **spec},
    }


def cm(name: str, owners: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}}
    if owners:
        body["metadata"]["ownerReferences"] = [
            {
                "apiVersion": o["apiVersion"],
                "kind": o["kind"],
                "name": o["metadata"]["name"],
                "uid": o["metadata"]["uid"],
            }
            for o in owners
        ]
    return body


def test_generation_tracks_spec_only(widgets: KubeEmulator) -> None:
    created = widgets.create(widget())
    assert created["metadata"]["generation"] == 1
    assert (
        widgets.get("widgets", "w")["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    )
    labelled = widgets.patch("widgets", "w", {"metadata": {"labels": {"a": "b"}}})
    assert labelled["metadata"]["generation"] == 1
    with_status = widgets.patch_status("widgets", "w", {"phase": "Running"})
    assert with_status["metadata"]["generation"] == 1
    resized = widgets.patch("widgets", "w", {"spec": {"size": 2}})
    assert resized["metadata"]["generation"] == 2


def test_status_subresource_isolation(widgets: KubeEmulator, api: Any) -> None:
    widgets.create(widget())
    # A main-resource patch cannot change status...
    status, body = api(
        "PATCH",
        f"{WIDGETS}/w",
        {"spec": {"size": 3}, "status": {"phase": "Done"}},
        "application/merge-patch+json",
    )
    assert status == 200 and body["spec"]["size"] == 3 and "status" not in body
    # ...and a /status patch cannot change anything but status.
    status, body = api(
        "PATCH",
        f"{WIDGETS}/w/status",
        {"spec": {"size": 9}, "status": {"phase": "Done"}},
        "application/merge-patch+json",
    )
    assert status == 200 and body["spec"]["size"] == 3 and body["status"]["phase"] == "Done"
    # A PUT of the whole object keeps the stored status.
    current = widgets.get("widgets", "w")
    replaced = widgets.replace({**current, "status": {"phase": "Pending"}, "spec": {"size": 4}})
    assert replaced["status"]["phase"] == "Done" and replaced["spec"]["size"] == 4


def test_status_on_create_is_dropped_with_status_subresource(widgets: KubeEmulator) -> None:
    created = widgets.create({**widget(), "status": {"phase": "Done"}})
    assert "status" not in created


def test_finalizers_delay_deletion(kube: KubeEmulator) -> None:
    body = cm("held")
    body["metadata"]["finalizers"] = ["example.com/hold"]
    kube.create(body)
    marked = kube.delete("configmaps", "held")
    assert marked["metadata"]["deletionTimestamp"]
    assert kube.get("configmaps", "held")["metadata"]["deletionTimestamp"]
    with pytest.raises(ApiError) as caught:  # no new finalizers while being deleted
        kube.patch("configmaps", "held", {"metadata": {"finalizers": ["example.com/hold", "other/x"]}})
    assert caught.value.code == 422
    kube.patch("configmaps", "held", {"metadata": {"finalizers": None}})
    assert kube.get_or_none("configmaps", "held") is None


def test_background_cascade_deletes_dependents(kube: KubeEmulator) -> None:
    owner = kube.create(cm("owner"))
    other = kube.create(cm("other"))
    kube.create(cm("child", [owner]))
    kube.create(cm("shared", [owner, other]))
    grandchild_owner = kube.get("configmaps", "child")
    kube.create(cm("grandchild", [grandchild_owner]))
    kube.delete("configmaps", "owner")
    names = {o["metadata"]["name"] for o in kube.list("configmaps", "default")}
    assert names == {"other", "shared"}  # child and grandchild collected; shared still has an owner
    assert [r["name"] for r in kube.get("configmaps", "shared")["metadata"]["ownerReferences"]] == ["other"]


def test_a_dependent_created_after_its_owner_is_gone_is_collected(kube: KubeEmulator) -> None:
    """A controller that races its owner's deletion can still create a child; GC removes it."""
    owner = kube.create(cm("owner"))
    kube.delete("configmaps", "owner")
    created = kube.create(cm("late-child", [owner]))
    assert created["metadata"]["name"] == "late-child"  # the create itself succeeds
    assert {o["metadata"]["name"] for o in kube.list("configmaps", "default")} == set()
    alive = kube.create(cm("alive"))
    kube.create(cm("child-of-both", [owner, alive]))  # one owner still exists: kept
    assert kube.get("configmaps", "child-of-both")["metadata"]["name"] == "child-of-both"


def test_orphan_keeps_dependents_and_jobs_orphan_by_default(kube: KubeEmulator) -> None:
    owner = kube.create(cm("owner"))
    kube.create(cm("child", [owner]))
    kube.delete("configmaps", "owner", propagation="Orphan")
    assert "ownerReferences" not in kube.get("configmaps", "child")["metadata"]

    job = kube.create(
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "j"},
            "spec": {
                "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "x"}]}}
            },
        }
    )
    kube.create(cm("job-child", [job]))
    kube.delete("jobs", "j")  # batch/v1 Jobs default to orphaning, like a real apiserver
    assert kube.get_or_none("configmaps", "job-child") is not None


def test_foreground_deletion_waits_for_dependents(kube: KubeEmulator) -> None:
    owner = kube.create(cm("owner"))
    child = cm("child", [owner])
    child["metadata"]["finalizers"] = ["example.com/hold"]
    kube.create(child)
    marked = kube.delete("configmaps", "owner", propagation="Foreground")
    assert "foregroundDeletion" in marked["metadata"]["finalizers"]
    assert kube.get("configmaps", "owner")["metadata"]["deletionTimestamp"]
    kube.patch("configmaps", "child", {"metadata": {"finalizers": None}})
    assert kube.get_or_none("configmaps", "child") is None
    assert kube.get_or_none("configmaps", "owner") is None
