"""The backend registry is the one place that knows the backends (issue 20 point 1): each module of
``sft_operator.backends`` with a ``BACKEND`` is found without a list, everything made from the
backends (the CRD's spec.backend enum, the operator's RBAC, the chart's values schema and notes, the
missing-CRD message) comes from the registry, and no code outside ``backends/`` spells a backend's
API group or kind."""

from __future__ import annotations

import ast
import importlib
import json
import pkgutil
from pathlib import Path

import yaml

from sft_operator import backends, crdgen, rbacgen
from sft_operator.backends.base import Backend

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "operator" / "sft_operator"
CHART = REPO / "charts" / "sft-operator"
HELPERS = {"base", "models"}
"""Modules of the package that are no backend."""


def test_every_backend_module_is_registered_in_preference_order() -> None:
    modules = [m.name for m in pkgutil.iter_modules(backends.__path__) if m.name not in HELPERS]
    assert modules, "no backend module found"
    for name in modules:
        backend = importlib.import_module(f"sft_operator.backends.{name}").BACKEND
        assert isinstance(backend, Backend) and backends.REGISTRY[backend.name] is backend
    assert len(backends.REGISTRY) == len(modules)
    assert [b.preference for b in backends.PREFERENCE] == sorted(b.preference for b in backends.PREFERENCE)
    assert (backends.AUTO, *(b.name for b in backends.PREFERENCE)) == backends.NAMES


def test_the_crd_enum_and_description_come_from_the_registry() -> None:
    crd = yaml.safe_load(crdgen.render_all()["sftruns.sft.dev.yaml"])
    prop = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"][
        "backend"
    ]
    assert prop["enum"] == list(backends.NAMES)
    assert all(f"({b.name})" in " ".join(prop["description"].split()) for b in backends.PREFERENCE)


def test_rbac_is_generated_from_the_registry_and_up_to_date() -> None:
    assert (REPO / "manifests" / "rbac.yaml").read_text() == rbacgen.render(), "run `make crds`"
    role = next(d for d in yaml.safe_load_all(rbacgen.render()) if d and d["kind"] == "ClusterRole")
    for backend in backends.PREFERENCE:
        for rule in backend.child_rules():
            for resource in rule.resources:
                assert any(
                    rule.group in r["apiGroups"]
                    and resource in r["resources"]
                    and set(rule.verbs) <= set(r["verbs"])
                    for r in role["rules"]
                ), (backend.name, rule)


def test_the_chart_lists_the_registry() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["properties"]["sftRun"]["properties"]["backend"]["enum"] == list(backends.NAMES)
    listed = yaml.safe_load((CHART / "files" / "backends.yaml").read_text())["backends"]
    assert [row["name"] for row in listed] == [b.name for b in backends.PREFERENCE]


def test_the_missing_crd_message_says_what_to_install() -> None:
    for backend in backends.PREFERENCE:
        if backend.crd:
            reason, message = backends.missing_message(backend)
            assert reason == backends.CRD_MISSING
            assert backend.crd in message and backend.install in message and "auto" in message


def _code_strings(path: Path) -> list[str]:
    """The string constants of a module that are no docstring."""
    tree = ast.parse(path.read_text())
    # docstrings (module, class, function, attribute): string constants that stand as a statement
    docstrings = {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
    }
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]


def test_no_code_outside_backends_names_a_backends_group_or_kind() -> None:
    """A new backend must not need edits elsewhere: nothing outside backends/ spells the API group or
    kind of a backend with a CRD, or imports a backend module (the registry hands them out)."""
    spelled = {b.resource.group for b in backends.PREFERENCE if b.crd} | {
        b.kind for b in backends.PREFERENCE if b.crd
    }
    modules = {
        f"sft_operator.backends.{b}" for b in (m.name for m in pkgutil.iter_modules(backends.__path__))
    }
    modules -= {f"sft_operator.backends.{h}" for h in HELPERS}
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel.startswith("backends/"):
            continue
        found += [(rel, s) for s in _code_strings(path) for word in spelled if word in s]
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = {f"{node.module}.{a.name}" for a in node.names} | {node.module}
                found += [(rel, n) for n in names & modules]
    assert not found, found
