"""CRD schema enforcement: validation, pruning, defaults, and the CEL subset."""

from __future__ import annotations

from typing import Any

import pytest

from kubeemu import ApiError, KubeEmulator
from kubeemu.cel import CelEvalError, CelUnsupported, compile_rule

WIDGETS = "/apis/example.com/v1/namespaces/default/widgets"


def widget(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w"},
        "spec": {"size": 1, **spec},
    }


def causes(error: ApiError) -> dict[str, str]:
    return {cause.field: cause.message for cause in error.causes}


def test_defaults_and_pruning(widgets: KubeEmulator) -> None:
    created = widgets.create(widget(unknown="dropped", free={"anything": {"goes": 1}}))
    spec = created["spec"]
    assert "unknown" not in spec
    assert spec["free"] == {"anything": {"goes": 1}}  # x-kubernetes-preserve-unknown-fields
    assert spec["color"] == "red" and spec["suspend"] is False
    assert spec["nested"] == {"level": 3}  # a defaulted object gets its own defaults
    assert "stray" not in widgets.create({**widget(), "metadata": {"name": "v"}, "stray": 1})


@pytest.mark.parametrize(
    ("spec", "field", "fragment"),
    [
        ({"size": 0}, "spec.size", "greater than or equal to 1"),
        ({"size": 11}, "spec.size", "less than or equal to 10"),
        ({"size": "3"}, "spec.size", "must be of type integer"),
        ({"color": "pink"}, "spec.color", 'supported values: "red", "green", "blue"'),
        ({"name": "a"}, "spec.name", "at least 2 chars"),
        ({"name": "abcdefghi"}, "spec.name", "may not be longer than 8"),
        ({"name": "ab1"}, "spec.name", "should match"),
        ({"tags": []}, "spec.tags", "at least 1 items"),
        ({"tags": ["a", "b", "c", "d"]}, "spec.tags", "at most 3 items"),
        ({"labels": {"a": 1}}, "spec.labels.a", "must be of type string"),
        ({"size": None}, "spec.size", "Required value"),  # non-nullable nulls are pruned first
        ({"tags": ["a", None]}, "spec.tags[1]", "must not be null"),
    ],
)
def test_validation_errors_name_the_field(
    widgets: KubeEmulator, spec: dict[str, Any], field: str, fragment: str
) -> None:
    with pytest.raises(ApiError) as caught:
        widgets.create(widget(**spec))
    assert caught.value.code == 422 and caught.value.reason == "Invalid"
    assert fragment in causes(caught.value)[field]


def test_required_and_nullable(widgets: KubeEmulator) -> None:
    body = widget()
    del body["spec"]["size"]
    with pytest.raises(ApiError) as caught:
        widgets.create(body)
    assert causes(caught.value) == {"spec.size": "Required value"}
    assert widgets.create(widget(ratio=None))["spec"]["ratio"] is None  # nullable: kept


def test_invalid_over_http_is_a_status_with_causes(widgets: KubeEmulator, api: Any) -> None:
    status, body = api("POST", WIDGETS, widget(size=0, color="pink"))
    assert (status, body["kind"], body["reason"]) == (422, "Status", "Invalid")
    assert {c["field"] for c in body["details"]["causes"]} == {"spec.size", "spec.color"}
    assert "spec.size" in body["message"] and "spec.color" in body["message"]


def test_status_is_validated_too(widgets: KubeEmulator) -> None:
    widgets.create(widget())
    with pytest.raises(ApiError) as caught:
        widgets.patch_status("widgets", "w", {"phase": "Exploded"})
    assert "status.phase" in causes(caught.value)


def test_transition_rule_makes_a_field_immutable(widgets: KubeEmulator) -> None:
    widgets.create(widget(dataset="s3://a"))
    with pytest.raises(ApiError) as caught:
        widgets.patch("widgets", "w", {"spec": {"dataset": "s3://b"}})
    assert causes(caught.value)["spec.dataset"].endswith("dataset is immutable")
    assert widgets.patch("widgets", "w", {"spec": {"size": 2}})["spec"]["size"] == 2


def test_root_rule_with_has_old_self_guard(widgets: KubeEmulator) -> None:
    widgets.create(widget())
    widgets.patch("widgets", "w", {"spec": {"size": 2}})  # no status yet: the guard lets it pass
    widgets.patch_status("widgets", "w", {"locked": True})
    with pytest.raises(ApiError) as caught:
        widgets.patch("widgets", "w", {"spec": {"size": 3}})
    assert "immutable once status.locked" in caught.value.message
    assert widgets.patch("widgets", "w", {"spec": {"suspend": True}})["spec"]["suspend"] is True


@pytest.mark.parametrize(
    ("rule", "variables", "expected"),
    [
        ("self.a == oldSelf.a", {"self": {"a": [1, {"b": 2}]}, "oldSelf": {"a": [1, {"b": 2}]}}, True),
        ("!has(self.x) || self.x > 2", {"self": {}}, True),
        ("has(self.x) && self.x.startsWith('ab')", {"self": {"x": "abc"}}, True),
        ("self.items.all(i, i.size() <= 2) && size(self.items) == 2", {"self": {"items": ["ab", "c"]}}, True),
        ("self.m.exists(k, k == 'z')", {"self": {"m": {"a": 1}}}, False),
        ("self.n % 2 == 0 ? 'even' : 'odd'", {"self": {"n": 3}}, "odd"),
        ("'b' in self.l && !(1 in [2, 3])", {"self": {"l": ["a", "b"]}}, True),
        ("self.missing == 1 || true", {"self": {}}, True),  # CEL's error-absorbing ||
    ],
)
def test_cel_subset(rule: str, variables: dict[str, Any], expected: Any) -> None:
    assert compile_rule(rule).evaluate(variables) == expected


def test_cel_errors_and_unsupported_rules() -> None:
    with pytest.raises(CelEvalError, match="no such key"):
        compile_rule("self.missing == 1").evaluate({"self": {}})
    with pytest.raises(CelUnsupported):
        compile_rule("self.x.quantity() > 1")
    with pytest.raises(CelUnsupported):
        compile_rule("self.x ==")


def test_unsupported_rules_are_skipped_not_enforced(
    kube: KubeEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "things.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "things", "kind": "Thing"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "x-kubernetes-preserve-unknown-fields": True,
                                    "x-kubernetes-validations": [{"rule": "isQuantity(self.q)"}],
                                }
                            },
                        }
                    },
                }
            ],
        },
    }
    kube.apply(crd)
    thing = {"apiVersion": "example.com/v1", "kind": "Thing", "metadata": {"name": "t"}, "spec": {"q": "x"}}
    assert kube.create(thing)["spec"] == {"q": "x"}
    assert "skipping unsupported CEL rule" in caplog.text
