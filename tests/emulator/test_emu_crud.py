"""CRUD semantics over HTTP: what kopf and the operator rely on from the apiserver."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest

from kubeemu import ApiError, KubeEmulator

CM = "/api/v1/namespaces/default/configmaps"


def configmap(name: str, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


def test_namespaces_paths_parse_correctly(api: Any) -> None:
    # kmock 0.8 alone fails on these two paths; the emulator must serve them as the Namespace resource.
    status, body = api("GET", "/api/v1/namespaces")
    assert status == 200
    assert {item["metadata"]["name"] for item in body["items"]} == {"default", "kube-system"}
    status, body = api("GET", "/api/v1/namespaces/default")
    assert (status, body["kind"], body["status"]["phase"]) == (200, "Namespace", "Active")
    status, body = api("POST", "/api/v1/namespaces", {"metadata": {"name": "team-a"}})
    assert status == 201
    assert api("GET", "/api/v1/namespaces/team-a/configmaps")[1]["items"] == []


def test_create_get_list_and_conflicts(api: Any) -> None:
    status, created = api("POST", CM, configmap("a", x="1"))
    assert status == 201
    meta = created["metadata"]
    assert meta["uid"] and meta["creationTimestamp"] and meta["namespace"] == "default"
    assert int(meta["resourceVersion"]) > 0

    status, body = api("POST", CM, configmap("a"))
    assert (status, body["reason"], body["kind"]) == (409, "AlreadyExists", "Status")

    status, body = api("GET", f"{CM}/missing")
    assert (status, body["reason"], body["details"]["name"]) == (404, "NotFound", "missing")

    status, body = api("GET", CM)
    assert body["kind"] == "ConfigMapList" and [i["metadata"]["name"] for i in body["items"]] == ["a"]
    assert int(body["metadata"]["resourceVersion"]) >= int(meta["resourceVersion"])


def test_create_needs_an_existing_namespace_and_a_valid_name(api: Any) -> None:
    status, body = api("POST", "/api/v1/namespaces/nowhere/configmaps", configmap("a"))
    assert (status, body["reason"]) == (404, "NotFound")
    status, body = api("POST", CM, configmap("Not_Valid"))
    assert (status, body["reason"]) == (422, "Invalid")
    assert body["details"]["causes"][0]["field"] == "metadata.name"


def test_label_values_longer_than_63_are_invalid(api: Any) -> None:
    # The usual operator bug: a long generated name copied into a label.
    body = configmap("a")
    body["metadata"]["labels"] = {"app": "x" * 64}
    status, response = api("POST", CM, body)
    assert status == 422
    assert "at most 63 characters" in response["message"]


def test_job_names_become_labels_so_long_names_fail(api: Any) -> None:
    pod_spec: dict[str, Any] = {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "j" * 64},
        "spec": {"template": {"spec": pod_spec}},
    }
    status, body = api("POST", "/apis/batch/v1/namespaces/default/jobs", job)
    assert status == 422
    assert body["details"]["causes"][0]["field"] == "spec.template.metadata.labels"
    job["metadata"]["name"] = "short"
    del pod_spec["restartPolicy"]
    status, body = api("POST", "/apis/batch/v1/namespaces/default/jobs", job)
    assert status == 422  # a Job's pods must not restart "Always" (the Pod default)
    assert body["details"]["causes"][0]["field"] == "spec.template.spec.restartPolicy"
    pod_spec["restartPolicy"] = "Never"
    status, body = api("POST", "/apis/batch/v1/namespaces/default/jobs", job)
    assert status == 201
    labels = body["spec"]["template"]["metadata"]["labels"]
    assert labels["batch.kubernetes.io/job-name"] == "short"
    assert body["spec"]["backoffLimit"] == 6


def test_builtin_kinds_are_checked_against_the_official_schema(api: Any) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "x", "imagePullPolicy": "Always", "comand": ["sh"]}]},
    }
    status, body = api("POST", "/api/v1/namespaces/default/pods", pod)
    assert status == 422
    cause = body["details"]["causes"][0]
    assert cause["field"] == "spec.containers[0]" and "'comand' was unexpected" in cause["message"]


def test_job_template_is_immutable_unless_suspended_and_never_started(kube: KubeEmulator) -> None:
    template = {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "x"}]}}
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"}, "spec": {"template": template}}
    kube.create(job)
    with pytest.raises(ApiError) as caught:
        kube.patch(
            "jobs", "j", {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "y"}]}}}}
        )
    assert {c.field for c in caught.value.causes} == {"spec.template"}
    assert kube.patch("jobs", "j", {"spec": {"suspend": True, "parallelism": 2}})["spec"]["parallelism"] == 2

    job["metadata"]["name"] = "held"
    job["spec"]["suspend"] = True
    kube.create(job)
    patched = kube.patch("jobs", "held", {"spec": {"template": {"metadata": {"labels": {"queue": "a"}}}}})
    assert patched["spec"]["template"]["metadata"]["labels"]["queue"] == "a"


def test_put_requires_current_resource_version(api: Any) -> None:
    _, created = api("POST", CM, configmap("a", x="1"))
    stale = dict(created, data={"x": "2"})
    status, updated = api("PUT", f"{CM}/a", stale)
    assert status == 200 and updated["data"] == {"x": "2"}
    status, body = api("PUT", f"{CM}/a", stale)  # the same resourceVersion again: now stale
    assert (status, body["reason"]) == (409, "Conflict")
    missing_rv = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {}}
    status, body = api("PUT", f"{CM}/a", missing_rv)
    assert status == 422 and "resourceVersion" in body["message"]


def test_patch_with_stale_resource_version_conflicts(api: Any) -> None:
    _, created = api("POST", CM, configmap("a", x="1"))
    rv = created["metadata"]["resourceVersion"]
    patch = {"metadata": {"resourceVersion": rv}, "data": {"x": "2"}}
    assert api("PATCH", f"{CM}/a", patch, "application/merge-patch+json")[0] == 200
    status, body = api("PATCH", f"{CM}/a", patch, "application/merge-patch+json")
    assert (status, body["reason"]) == (409, "Conflict")


def test_patch_types(api: Any) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]},
    }
    assert api("POST", "/api/v1/namespaces/default/pods", pod)[0] == 201
    url = "/api/v1/namespaces/default/pods/p"
    strategic = {"spec": {"containers": [{"name": "b", "image": "z"}]}}
    _, body = api("PATCH", url, strategic, "application/strategic-merge-patch+json")
    assert [(c["name"], c["image"]) for c in body["spec"]["containers"]] == [("a", "x"), ("b", "z")]
    _, body = api("PATCH", url, strategic, "application/merge-patch+json")  # a merge patch replaces lists
    assert [c["name"] for c in body["spec"]["containers"]] == ["b"]

    json_patch = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": body["metadata"]["resourceVersion"]},
        {"op": "add", "path": "/metadata/labels", "value": {"k": "v"}},
    ]
    status, body = api("PATCH", url, json_patch, "application/json-patch+json")
    assert status == 200 and body["metadata"]["labels"] == {"k": "v"}
    # The same "test" again fails: kopf relies on 422 here to detect a lost race.
    status, body = api("PATCH", url, json_patch, "application/json-patch+json")
    assert status == 422
    assert api("PATCH", url, {}, "application/x-unknown")[0] == 415


def test_apply_patch_yaml_and_dry_run(kube: KubeEmulator, api: Any) -> None:
    created = kube.create(configmap("a", x="1"))
    status, body = api("POST", f"{CM}?dryRun=All", configmap("b"))
    assert status == 201 and body["metadata"]["name"] == "b" and kube.get_or_none("configmaps", "b") is None
    raw = "data:\n  y: '2'\n"
    request = urllib.request.Request(f"{kube.url}{CM}/a?fieldManager=test", data=raw.encode(), method="PATCH")
    request.add_header("Content-Type", "application/apply-patch+yaml")
    with urllib.request.urlopen(request, timeout=10) as response:
        applied = json.loads(response.read())
    assert applied["data"] == {"x": "1", "y": "2"}  # approximated as a merge of the applied config
    assert applied["metadata"]["uid"] == created["metadata"]["uid"]


def test_noop_write_keeps_resource_version(kube: KubeEmulator) -> None:
    created = kube.create(configmap("a", x="1"))
    same = kube.patch("configmaps", "a", {"data": {"x": "1"}})
    assert same["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    changed = kube.patch("configmaps", "a", {"data": {"x": "2"}})
    assert int(changed["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])


def test_selectors_filter_lists(kube: KubeEmulator, api: Any) -> None:
    for name, tier in (("a", "web"), ("b", "db"), ("c", "web")):
        body = configmap(name)
        body["metadata"]["labels"] = {"tier": tier}
        kube.create(body)
    _, body = api("GET", f"{CM}?labelSelector=tier%3Dweb")
    assert [i["metadata"]["name"] for i in body["items"]] == ["a", "c"]
    _, body = api("GET", f"{CM}?labelSelector=tier%20notin%20(web)")
    assert [i["metadata"]["name"] for i in body["items"]] == ["b"]
    _, body = api("GET", f"{CM}?fieldSelector=metadata.name%3Dc")
    assert [i["metadata"]["name"] for i in body["items"]] == ["c"]
    assert [o["metadata"]["name"] for o in kube.list("cm", label_selector="tier!=web")] == ["b"]


def test_namespace_deletion_deletes_its_objects(kube: KubeEmulator) -> None:
    kube.create_namespace("gone")
    kube.create(configmap("a"), namespace="gone")
    kube.delete("namespaces", "gone", None)
    kube.wait_for_deletion("namespaces", "gone", None)
    assert kube.list("configmaps", "gone") == []


def test_helpers_raise_api_errors(kube: KubeEmulator) -> None:
    with pytest.raises(ApiError) as caught:
        kube.get("configmaps", "absent")
    assert caught.value.code == 404
    assert kube.get_or_none("configmaps", "absent") is None
