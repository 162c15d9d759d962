"""One config loader for both workloads: a YAML file, then dotted ``key=value`` overrides.

Config models derive from :class:`ConfigModel`, which forbids unknown keys and accepts both the
reference recipe's snake_case names (config files, CLI overrides) and camelCase (the CR spec), so
the same model is the workload's config and the workload part of the custom resource.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel


class _Loader(yaml.SafeLoader):
    """YAML 1.1 loader that also reads 1e-4 (YAML 1.2 style) as a float, as people write learning rates."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)


class ConfigError(ValueError):
    """A user-fixable problem with a config: the message says which key and what to do."""


class ConfigModel(BaseModel):
    """Base for every config section: strict about unknown keys, snake_case or camelCase keys."""

    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=False,
        use_attribute_docstrings=True,
    )


M = TypeVar("M", bound=BaseModel)


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``a.b.0.c=value``; the value is read as a YAML scalar so 1e-4, true, null and [a, b] work."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"override {text!r} is not of the form dotted.key=value")
    try:
        value = load_yaml(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Return a copy of ``data`` with each override applied; list items are addressed by index."""
    result: dict[str, Any] = _deepcopy(data)
    for text in overrides:
        path, value = parse_override(text)
        node: Any = result
        for i, part in enumerate(path[:-1]):
            node = _step(node, part, path[: i + 1], create=[] if path[i + 1].isdigit() else {})
        last = path[-1]
        if isinstance(node, list):
            index = _index(node, last, path, allow_append=True)
            if index == len(node):
                node.append(value)
            else:
                node[index] = value
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise ConfigError(f"override {text!r}: {'.'.join(path[:-1])} is a value, not a section")
    return result


def _deepcopy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _deepcopy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deepcopy(v) for v in value]
    return value


def _index(node: list[Any], part: str, path: list[str], allow_append: bool = False) -> int:
    try:
        index = int(part)
    except ValueError:
        raise ConfigError(f"{'.'.join(path)}: '{part}' must be a list index (0..{len(node) - 1})") from None
    limit = len(node) + (1 if allow_append else 0)
    if not 0 <= index < limit:
        raise ConfigError(f"{'.'.join(path)}: index {index} is out of range (list has {len(node)} items)")
    return index


def _step(node: Any, part: str, path: list[str], create: dict[str, Any] | list[Any]) -> Any:
    """Descend one level, creating ``create`` (an empty dict or list) where nothing is yet."""
    if isinstance(node, list):
        index = _index(node, part, path, allow_append=True)
        if index == len(node):
            node.append(create)
        return node[index]
    if isinstance(node, dict):
        if node.get(part) is None:
            node[part] = create
        child = node[part]
        if not isinstance(child, dict | list):
            raise ConfigError(f"{'.'.join(path)} is a value, not a section; cannot set keys below it")
        return child
    raise ConfigError(f"{'.'.join(path)} is a value, not a section")


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping from a local path or any URI the storage layer knows."""
    from sft_common import storage

    uri = str(path)
    if not storage.exists(uri):
        raise ConfigError(f"config file {uri} does not exist")
    try:
        data = load_yaml(storage.read_text(uri))
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {uri} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {uri} must hold a mapping of keys, not {type(data).__name__}")
    return data


def load_config(
    model: type[M],
    path: str | Path | None = None,
    overrides: Sequence[str] = (),
    base: Mapping[str, Any] | None = None,
) -> M:
    """Build ``model`` from ``base``, then the YAML file, then overrides (later wins)."""
    data: dict[str, Any] = _deepcopy(dict(base or {}))
    if path is not None:
        data = _merge(data, read_yaml(path))
    data = apply_overrides(data, overrides)
    return validate(model, data)


def _merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = _deepcopy(value)
    return out


def validate(model: type[M], data: Mapping[str, Any]) -> M:
    """Validate, turning pydantic's errors into one message that names each key and the fix."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe_errors(model, exc)) from None


def describe_errors(model: type[BaseModel], exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        key = ".".join(loc) or "(top level)"
        if err["type"] == "extra_forbidden":
            choices = _valid_keys(model, loc[:-1])
            hint = difflib.get_close_matches(loc[-1], choices, n=1)
            msg = f"unknown key '{key}'"
            if hint:
                msg += f" (did you mean '{'.'.join([*loc[:-1], hint[0]])}'?)"
            if choices:
                msg += f"; valid keys here: {', '.join(sorted(choices))}"
        else:
            msg = f"{key}: {err['msg']}"
            if "input" in err and err["type"] not in ("missing",):
                msg += f" (got {_short(err['input'])})"
        lines.append(msg)
    noun = "problem" if len(lines) == 1 else "problems"
    return f"invalid config ({len(lines)} {noun}):\n  - " + "\n  - ".join(lines)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _valid_keys(model: type[BaseModel], loc: list[str]) -> list[str]:
    """The field names valid at ``loc`` (walking nested models, lists and optionals)."""
    current: Any = model
    for part in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = _field(current, part)
            if field is None:
                return []
            current = field.annotation
        elif part.isdigit() or typing.get_origin(current) in (list, tuple, dict):
            args = typing.get_args(current)
            current = args[-1] if args else Any
        else:
            return []
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _field(model: type[BaseModel], name: str) -> Any:
    for field_name, field in model.model_fields.items():
        if name in (field_name, field.alias):
            return field
    return None


def _unwrap(tp: Any) -> Any:
    """Strip Optional/Annotated/Union-with-None and pick the model member of a union, if any."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(tp) if a is not type(None)]
        models = [a for a in members if isinstance(a, type) and issubclass(a, BaseModel)]
        if models:
            return models[0]
        if len(members) == 1:
            return _unwrap(members[0])
    return tp


def to_yaml(model: BaseModel) -> str:
    """Serialise a config (snake_case keys, defaults included) for ConfigMaps and receipts."""
    return dump_yaml(model.model_dump(mode="json", by_alias=False))


_CDumper: type[yaml.SafeDumper] | None = getattr(yaml, "CSafeDumper", None)
_SIMPLE_KEY = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def dump_yaml(data: Any) -> str:
    """``yaml.safe_dump(data, sort_keys=False)``, by libyaml when that gives the very same text.

    The operator renders a ConfigMap per CR; PyYAML's pure-Python emitter was a quarter of its CPU,
    libyaml's ~5x faster. The two emitters differ only in how they fold double-quoted scalars and
    when they write a mapping key in the explicit ``? key`` form; with keys that are short names
    and strings of one line of printable ASCII neither happens (tests/common/test_config_yaml.py),
    so such data (every rendered config but one with, e.g., a multi-line chat template) goes to
    libyaml and everything else to PyYAML: the text never depends on which one is installed.
    """
    dumper = _CDumper if _CDumper is not None and _libyaml_safe(data) else yaml.SafeDumper
    return yaml.dump(data, Dumper=dumper, sort_keys=False)


def _libyaml_safe(value: Any) -> bool:
    """Whether libyaml emits ``value`` exactly as PyYAML does (see :func:`dump_yaml`)."""
    if isinstance(value, str):
        return value.isascii() and value.isprintable()
    if isinstance(value, dict):
        return all(
            isinstance(key, str) and _SIMPLE_KEY.fullmatch(key) and _libyaml_safe(item)
            for key, item in value.items()
        )
    if isinstance(value, list):
        return all(_libyaml_safe(item) for item in value)
    return value is None or isinstance(value, bool | int | float)
