"""The project's generated CRDs install into the emulator and every CEL rule in them is enforced."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from kubeemu import KubeEmulator, load_manifests
from kubeemu.cel import compile_rule
from kubeemu.fixtures import PROJECT_CRDS

pytestmark = pytest.mark.skipif(
    not PROJECT_CRDS.is_dir() or not any(PROJECT_CRDS.glob("*.yaml")),
    reason="manifests/crds has not been generated yet (run `make crds`)",
)


def rules(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for rule in node.get("x-kubernetes-validations") or []:
            yield rule["rule"]
        for value in node.values():
            yield from rules(value)
    elif isinstance(node, list):
        for value in node:
            yield from rules(value)


def test_every_cel_rule_of_our_crds_is_in_the_supported_subset() -> None:
    found = [rule for crd in load_manifests(PROJECT_CRDS) for rule in rules(crd)]
    for rule in found:
        compile_rule(rule)  # raises CelUnsupported for a rule the emulator would skip


def test_project_crds_install_and_are_discoverable(kube: KubeEmulator, api: Any) -> None:
    crds = [doc for doc in load_manifests(PROJECT_CRDS) if doc.get("kind") == "CustomResourceDefinition"]
    kube.apply(crds)
    for crd in crds:
        spec = crd["spec"]
        version = spec["versions"][0]["name"]
        status, body = api("GET", f"/apis/{spec['group']}/{version}")
        assert status == 200
        assert spec["names"]["plural"] in {r["name"] for r in body["resources"]}
