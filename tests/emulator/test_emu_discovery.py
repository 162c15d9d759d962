"""Discovery follows CRDs at runtime; kmock's DSL still works on top of the emulation."""

from __future__ import annotations

from typing import Any

import kmock

from kubeemu import KubeEmulator
from kubeemu.resources import kopf_peering_crds, pytorchjob_crd


def test_builtin_discovery(api: Any) -> None:
    _, core = api("GET", "/api/v1")
    names = {r["name"]: r for r in core["resources"]}
    assert names["pods"]["namespaced"] and "pods/log" in names and "pods/status" in names
    assert not names["namespaces"]["namespaced"]
    _, groups = api("GET", "/apis")
    assert {"batch", "apiextensions.k8s.io", "events.k8s.io"} <= {g["name"] for g in groups["groups"]}
    assert api("GET", "/version")[1]["major"] == "1"


def test_crd_install_and_removal_change_discovery(kube: KubeEmulator, api: Any) -> None:
    assert api("GET", "/apis/kubeflow.org/v1")[0] == 404
    assert api("GET", "/apis/kubeflow.org/v1/namespaces/default/pytorchjobs")[0] == 404
    kube.apply(pytorchjob_crd())
    _, group = api("GET", "/apis/kubeflow.org")
    assert group["preferredVersion"]["version"] == "v1"
    _, versions = api("GET", "/apis/kubeflow.org/v1")
    assert {r["name"] for r in versions["resources"]} == {"pytorchjobs", "pytorchjobs/status"}
    crd = kube.get("customresourcedefinitions", "pytorchjobs.kubeflow.org", None)
    assert {c["type"] for c in crd["status"]["conditions"]} == {"Established", "NamesAccepted"}

    job = {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": {"name": "t"}, "spec": {}}
    assert api("POST", "/apis/kubeflow.org/v1/namespaces/default/pytorchjobs", job)[0] == 201
    kube.uninstall_crd("pytorchjobs.kubeflow.org")
    assert api("GET", "/apis/kubeflow.org/v1")[0] == 404
    kube.apply(pytorchjob_crd())
    assert api("GET", "/apis/kubeflow.org/v1/namespaces/default/pytorchjobs")[1]["items"] == []


def test_kopf_peering_crds(kube: KubeEmulator, api: Any) -> None:
    kube.apply(kopf_peering_crds())
    _, kopf_group = api("GET", "/apis/kopf.dev/v1")
    assert {r["name"] for r in kopf_group["resources"]} == {"clusterkopfpeerings", "kopfpeerings"}


def test_kmock_reactions_override_the_emulation(kube: KubeEmulator, api: Any) -> None:
    kube.requests["post", kmock.resource("", "v1", "configmaps")][:1] << 503
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}}
    assert api("POST", "/api/v1/namespaces/default/configmaps", body)[0] == 503
    assert api("POST", "/api/v1/namespaces/default/configmaps", body)[0] == 201  # one-shot fault only
    posts = [r for r in kube.requests if r.method == "POST"]
    assert len(posts) == 2 and posts[1].resource.plural == "configmaps"
