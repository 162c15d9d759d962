"""The chart README's values (the table and every ``--set`` in its shell examples) match
``values.schema.json`` and ``values.yaml``, so the documentation cannot drift from the chart.

``--set`` values are typed the way Helm's strvals parser types them (``true``/``false`` → bool,
integers → int, ``{a,b}`` → a list, anything else a string; helm.sh/docs "The Format and Limitations
of --set").
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

CHART = Path(__file__).resolve().parents[2] / "charts" / "sft-operator"
README = CHART / "README.md"
SCHEMA = __import__("json").loads((CHART / "values.schema.json").read_text())
DEFAULTS = yaml.safe_load((CHART / "values.yaml").read_text())
TICKED = re.compile(r"`([^`]*)`")


def table_rows() -> list[tuple[list[str], str]]:
    """(value paths, default cell) of every row of the README's values table."""
    lines = README.read_text().splitlines()
    start = lines.index("| value | default | what it does |") + 2
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        first, default = [cell.strip() for cell in line.strip("|").split("|")][:2]
        rows.append((expand_paths(first), default))
    return rows


def expand_paths(cell: str) -> list[str]:
    """`a.b` / `.c`, `d` → [a.b, a.c, d]: a leading dot is a sibling of the previous path."""
    paths: list[str] = []
    for token in TICKED.findall(cell):
        if token.startswith("."):
            paths.append(paths[-1].rsplit(".", 1)[0] + token)
        else:
            paths.append(token)
    return paths


def schema_node(path: str) -> dict[str, Any]:
    node = SCHEMA
    for part in path.split("."):
        properties = node.get("properties") or {}
        assert part in properties, f"README names {path!r}, but values.schema.json has no {part!r} there"
        node = properties[part]
    return node


def default_of(path: str) -> Any:
    node: Any = DEFAULTS
    for part in path.split("."):
        assert isinstance(node, dict) and part in node, f"README names {path!r}, not in values.yaml"
        node = node[part]
    return node


def test_the_table_has_rows() -> None:
    assert len(table_rows()) >= 10


@pytest.mark.parametrize(("paths", "default"), table_rows(), ids=lambda v: str(v)[:40])
def test_each_table_row_matches_schema_and_defaults(paths: list[str], default: str) -> None:
    assert paths, "a row without a value path"
    for path in paths:
        schema_node(path)
    literals = TICKED.findall(default)
    if len(literals) != len(paths):
        return  # a prose default ("small requests"): the paths are checked, the words are not
    for path, literal in zip(paths, literals, strict=True):
        value = yaml.safe_load(literal) if literal != '""' else ""
        jsonschema.Draft7Validator(schema_node(path)).validate(value)
        assert value == default_of(path), (
            f"README says {path} defaults to {literal}; values.yaml has {default_of(path)!r}"
        )


def strvals(value: str) -> Any:
    if value in ("true", "false"):
        return value == "true"
    if re.fullmatch(r"-?\d+", value):
        return int(value)
    if value.startswith("{") and value.endswith("}"):
        return [strvals(v) for v in value[1:-1].split(",") if v]
    return value


def with_set(values: dict[str, Any], assignment: str) -> dict[str, Any]:
    key, _, raw = assignment.partition("=")
    out = copy.deepcopy(values)
    node = out
    *parents, leaf = key.split(".")
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise jsonschema.ValidationError(f"--set {assignment}: {part} is not an object")
    node[leaf] = strvals(raw)
    return out


def readme_commands() -> list[list[str]]:
    """The ``--set K=V`` of each helm command in the README's code blocks, in order (prose examples
    of mistakes, such as the typo above the table, are not in code blocks)."""
    blocks = re.findall(r"```(?:bash|sh)\n(.*?)```", README.read_text(), re.DOTALL)
    commands = []
    for block in blocks:
        for command in block.replace("\\\n", " ").splitlines():
            sets = [a or b for a, b in re.findall(r"--set\s+(?:'([^']+)'|(\S+))", command)]
            if sets:
                commands.append(sets)
    return commands


def test_readme_shows_set_examples() -> None:
    assert any(s.startswith("workloads.prepImage.") for sets in readme_commands() for s in sets)


@pytest.mark.parametrize("sets", readme_commands(), ids=lambda sets: " ".join(sets)[:60])
def test_every_set_in_the_readme_passes_the_schema(sets: list[str]) -> None:
    values = DEFAULTS
    for assignment in sets:  # one command's --set flags apply together, as helm applies them
        values = with_set(values, assignment)
    jsonschema.Draft7Validator(SCHEMA).validate(values)


@pytest.mark.parametrize(
    "wrong",
    ["workloads.prepImage=registry.example.com/sft-prep:1", "image=x", "logFormat=xml", "imag.tag=x"],
)
def test_the_check_catches_wrong_shapes(wrong: str) -> None:
    """What the README once said (prepImage as a string) fails, so the checks above can fail."""
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(SCHEMA).validate(with_set(DEFAULTS, wrong))
