"""The checked-in CRDs are what the models generate, valid, structural, and their CEL rules work."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from prep_objects import k8s_versions

from kubeemu.cel import compile_rule
from sft_operator import crdgen
from sft_operator.api.dataprep import SFTDataPrepSpec, data_fields
from sft_prep.config import PrepConfig

CRD_DIR = Path(__file__).resolve().parents[2] / "manifests" / "crds"
GENERATED = crdgen.render_all()
#: Value-validation keywords allowed inside anyOf/allOf/oneOf/not of a structural schema.
TYPED_KEYS = {"type", "description", "default", "nullable", "properties", "items", "additionalProperties"}


def crd_docs() -> list[dict[str, Any]]:
    return [doc for text in GENERATED.values() for doc in yaml.safe_load_all(text) if doc]


def dataprep_crd() -> dict[str, Any]:
    return yaml.safe_load(GENERATED["sftdatapreps.sft.dev.yaml"])


def root_schema(crd: dict[str, Any]) -> dict[str, Any]:
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def test_checked_in_crds_match_the_models() -> None:
    for name, text in GENERATED.items():
        path = CRD_DIR / name
        assert path.exists(), f"{path} is missing: run `make crds`"
        assert path.read_text() == text, f"{path} is stale: run `make crds`"
    assert sorted(p.name for p in CRD_DIR.glob("*.yaml")) == sorted(GENERATED)


def test_check_mode_detects_staleness(tmp_path: Path) -> None:
    assert crdgen.main([str(tmp_path), "--check"]) == 1
    assert crdgen.main([str(tmp_path)]) == 0
    assert crdgen.main([str(tmp_path), "--check"]) == 0
    (tmp_path / "sftdatapreps.sft.dev.yaml").write_text("# edited\n")
    assert crdgen.main([str(tmp_path), "--check"]) == 1


@pytest.mark.parametrize("version", k8s_versions())
def test_crds_pass_kubernetes_validate(version: str) -> None:
    for doc in crd_docs():
        kubernetes_validate.validate(doc, version, strict=True)


def walk(node: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    out = [(path, node)]
    for key, child in (node.get("properties") or {}).items():
        out += walk(child, f"{path}.{key}")
    if isinstance(node.get("items"), dict):
        out += walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        out += walk(node["additionalProperties"], f"{path}{{}}")
    return out


def test_schema_is_structural() -> None:
    """The rules of apiextensions' structural schema check, as far as our generator can break them."""
    for doc in crd_docs():
        for path, node in walk(root_schema(doc)):
            assert "$ref" not in node and "$defs" not in node, path
            assert "title" not in node, path
            special = node.get("x-kubernetes-int-or-string") or node.get(
                "x-kubernetes-preserve-unknown-fields"
            )
            assert "type" in node or special, f"{path} has no type"
            if node.get("type") == "object" and "properties" in node:
                assert "additionalProperties" not in node, f"{path}: properties and additionalProperties"
            for keyword in ("anyOf", "allOf", "oneOf", "not"):
                for sub in node.get(keyword) or []:
                    assert not (set(sub) & TYPED_KEYS), f"{path}.{keyword} carries {set(sub) & TYPED_KEYS}"
            for bound in ("exclusiveMinimum", "exclusiveMaximum"):
                assert isinstance(node.get(bound, True), bool), f"{path}: JSON-Schema-2020 numeric {bound}"
            if "default" in node and "enum" in node:
                assert node["default"] in node["enum"], path
            if "default" in node and node.get("type") in ("integer", "number"):
                value = node["default"]
                assert node.get("minimum", value) <= value <= node.get("maximum", value), path


def test_spec_documents_every_field() -> None:
    spec = root_schema(dataprep_crd())["properties"]["spec"]
    props = spec["properties"]
    for name, node in props.items():
        assert node.get("description"), f"spec.{name} has no description (kubectl explain)"
    assert spec["required"] == sorted(spec["required"], key=list(props).index)
    assert set(spec["required"]) == {"tokenizer", "outputDir"}
    assert props["algorithm"]["enum"] == ["best_fit_decreasing", "first_fit_decreasing", "first_fit_shuffle"]
    assert props["packSize"]["default"] == 4096 and props["packSize"]["minimum"] == 16
    assert props["validRatio"]["maximum"] == 1 and props["validRatio"]["exclusiveMaximum"] is True
    assert props["maxDocTokens"]["nullable"] is True
    resources = props["resources"]["properties"]["limits"]["additionalProperties"]
    assert resources == {"x-kubernetes-int-or-string": True}
    assert props["affinity"]["x-kubernetes-preserve-unknown-fields"] is True
    volume = props["volumes"]["items"]
    assert volume["x-kubernetes-preserve-unknown-fields"] is True and volume["required"] == ["name"]
    for field in PrepConfig.model_fields.values():  # every workload field is in the spec, camelCase
        assert field.alias in props


def test_names_status_subresource_and_printer_columns() -> None:
    crd = dataprep_crd()
    assert crd["metadata"]["name"] == "sftdatapreps.sft.dev"
    names = crd["spec"]["names"]
    assert (
        names["kind"] == "SFTDataPrep"
        and names["plural"] == "sftdatapreps"
        and "sftdp" in names["shortNames"]
    )
    version = crd["spec"]["versions"][0]
    assert version["name"] == "v1alpha1" and version["subresources"] == {"status": {}}
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert set(columns) >= {"Phase", "Shards", "Progress", "Tokens", "Age"}
    status = root_schema(crd)["properties"]["status"]
    for name, json_path in columns.items():
        if json_path.startswith(".status."):
            node = status
            for part in json_path.removeprefix(".status.").split("[")[0].split("."):
                assert part in node.get("properties", {}), f"printer column {name}: {json_path} not in status"
                node = node["properties"][part]
    conditions = status["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map" and conditions["x-kubernetes-list-map-keys"] == [
        "type"
    ]
    workers = status["properties"]["progress"]["properties"]["workers"]
    assert workers["additionalProperties"]["x-kubernetes-preserve-unknown-fields"] is True


def test_every_string_and_list_in_spec_is_bounded_for_cel_cost() -> None:
    spec = root_schema(dataprep_crd())["properties"]["spec"]
    for path, node in walk(spec):
        if node.get("type") == "string" and "enum" not in node:
            assert "maxLength" in node, path
        if node.get("type") == "array":
            assert "maxItems" in node, path


# ---------------------------------------------------------------------------- CEL immutability rule
def immutability_rule() -> Any:
    (rule,) = [r for r in root_schema(dataprep_crd())["x-kubernetes-validations"] if "jobRef" in r["rule"]]
    return compile_rule(rule["rule"])


def obj(status: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    base = {
        "image": "img:1",
        "tokenizer": {"model": "/tok"},
        "outputDir": "s3://b/o",
        "numShards": 8,
        "suspend": False,
    }
    base.update(spec)
    out: dict[str, Any] = {
        "apiVersion": "sft.dev/v1alpha1",
        "kind": "SFTDataPrep",
        "metadata": {"name": "x"},
        "spec": base,
    }
    if status is not None:
        out["status"] = status
    return out


STARTED = {"jobRef": {"apiVersion": "batch/v1", "kind": "Job", "name": "x-prep"}, "phase": "Running"}


def test_rule_covers_exactly_the_data_defining_fields() -> None:
    assert set(data_fields()) == {f.alias for f in PrepConfig.model_fields.values()} | {
        "image",
        "parallelism",
    }
    rule = immutability_rule().source
    for field in data_fields():
        assert f"self.spec.{field} ==" in rule
    for mutable in ("suspend", "resources", "nodeSelector", "tolerations", "queueName", "env"):
        assert f"self.spec.{mutable}" not in rule
    assert set(data_fields()) <= set(
        SFTDataPrepSpec.model_fields[n].alias for n in SFTDataPrepSpec.model_fields
    )


@pytest.mark.parametrize(
    ("change", "allowed_before", "allowed_after"),
    [
        ({"packSize": 2048}, True, False),
        ({"outputDir": "s3://b/other"}, True, False),
        ({"maxDocTokens": 100}, True, False),  # absent → present
        ({"image": "img:2"}, True, False),
        ({"parallelism": 2}, True, False),
        ({"suspend": True}, True, True),
        ({"resources": {"limits": {"memory": "1Gi"}}}, True, True),
        ({"queueName": "q"}, True, True),
    ],
)
def test_rule_allows_changes_only_before_the_job_exists(
    change: dict[str, Any], allowed_before: bool, allowed_after: bool
) -> None:
    program = immutability_rule()
    for status, allowed in (
        (None, allowed_before),
        ({"phase": "Pending"}, allowed_before),
        (STARTED, allowed_after),
    ):
        old = obj(status)
        new = copy.deepcopy(old)
        new["spec"].update(change)
        assert program.evaluate({"self": new, "oldSelf": old}) is allowed, (change, status)


def test_env_credential_rule() -> None:
    env_schema = root_schema(dataprep_crd())["properties"]["spec"]["properties"]["env"]["items"]
    rules = [compile_rule(r["rule"]) for r in env_schema["x-kubernetes-validations"]]
    ok = [
        {"name": "AWS_ENDPOINT_URL", "value": "http://minio:9000"},
        {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
    ]
    bad = [
        {"name": "HF_TOKEN", "value": "x"},
        {"name": "aws_secret_access_key", "value": "x"},
        {"name": "WANDB_API_KEY", "value": "x"},
    ]
    for item in ok:
        assert all(r.evaluate({"self": item}) for r in rules), item
    for item in bad:
        assert not all(r.evaluate({"self": item}) for r in rules), item


@pytest.mark.parametrize("filename", ["sftdatapreps.sft.dev.yaml", "sftruns.sft.dev.yaml"])
def test_printer_columns_show_human_strings_the_status_holds(filename: str) -> None:
    """Tokens and ETA come from the operator's text fields (a column shows one field as is), and the
    message is a default column; every column's field exists in the status schema."""
    crd = yaml.safe_load(GENERATED[filename])
    version = crd["spec"]["versions"][0]
    columns = {c["name"]: c for c in version["additionalPrinterColumns"]}
    assert columns["Tokens"]["jsonPath"] == ".status.progress.tokensText"
    assert columns["ETA"]["jsonPath"] == ".status.progress.etaText"
    assert columns["Message"]["jsonPath"] == ".status.message"
    for name in ("Tokens", "ETA", "Message"):
        assert columns[name]["type"] == "string" and "priority" not in columns[name]  # shown by default
    progress = root_schema(crd)["properties"]["status"]["properties"]["progress"]["properties"]
    assert progress["tokensText"]["type"] == "string" and progress["etaText"]["type"] == "string"
    assert list(columns)[-1] == "Reason" and columns["Reason"]["priority"] == 1  # -o wide only
