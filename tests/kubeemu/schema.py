"""Structural-schema handling for CRD objects: pruning, defaulting, OpenAPI validation and CEL rules.

The apiserver order is followed: unknown fields are pruned, nulls of non-nullable fields dropped,
defaults applied, then the object is validated against the schema and its
``x-kubernetes-validations`` rules (transition rules see ``oldSelf`` on updates only).

Validation problems are returned as :class:`~kubeemu.errors.Cause` lists with Kubernetes-style
field paths (``spec.parallelism``) and messages, so tests can assert on what a user would see.

Not emulated: ``format`` checks other than ``int-or-string`` handling, ``x-kubernetes-list-type``
uniqueness, ``x-kubernetes-list-map-keys`` correlation (transition rules under list items are not
evaluated), CEL cost limits, ``messageExpression`` (the static ``message`` is used),
``optionalOldSelf``.
"""

from __future__ import annotations

import copy
import logging
import re
from typing import Any

from .cel import CelEvalError, CelUnsupported, Program, compile_rule
from .errors import Cause

log = logging.getLogger(__name__)

_MISSING = object()
_ROOT_KEEP = ("apiVersion", "kind", "metadata")
_compiled: dict[str, Program | None] = {}


def _program(rule: str) -> Program | None:
    """Compile once per rule text; unsupported rules are logged once and skipped."""
    if rule not in _compiled:
        try:
            _compiled[rule] = compile_rule(rule)
        except CelUnsupported as error:
            log.warning("kubeemu: skipping unsupported CEL rule %r: %s", rule, error)
            _compiled[rule] = None
    return _compiled[rule]


def _preserves_unknown(schema: dict[str, Any]) -> bool:
    return bool(schema.get("x-kubernetes-preserve-unknown-fields")) or bool(
        schema.get("x-kubernetes-embedded-resource") and schema.get("x-kubernetes-preserve-unknown-fields")
    )


def prune(value: Any, schema: dict[str, Any], root: bool = False) -> Any:
    """Drop fields the schema does not declare (unless it preserves unknown fields)."""
    if isinstance(value, dict):
        properties: dict[str, Any] = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        result: dict[str, Any] = {}
        for key, item in value.items():
            if root and key in _ROOT_KEEP:
                result[key] = item
            elif key in properties:
                result[key] = prune(item, properties[key])
            elif isinstance(additional, dict):
                result[key] = prune(item, additional)
            elif (
                additional is True
                or _preserves_unknown(schema)
                or (schema.get("x-kubernetes-embedded-resource") and key in _ROOT_KEEP)
            ):
                result[key] = item
        return result
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [prune(item, schema["items"]) for item in value]
    return value


def apply_defaults(value: Any, schema: dict[str, Any]) -> Any:
    """Fill in ``default`` values of absent properties, recursively; drop non-nullable nulls."""
    if isinstance(value, dict):
        properties: dict[str, Any] = schema.get("properties") or {}
        result = dict(value)
        for key, sub_schema in properties.items():
            if key in result and result[key] is None and not sub_schema.get("nullable"):
                del result[key]
            if key not in result and "default" in sub_schema:
                result[key] = copy.deepcopy(sub_schema["default"])
            if key in result:
                result[key] = apply_defaults(result[key], sub_schema)
        additional = schema.get("additionalProperties")
        if isinstance(additional, dict):
            for key in list(result):
                if key not in properties:
                    result[key] = apply_defaults(result[key], additional)
        return result
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [apply_defaults(item, schema["items"]) for item in value]
    return value


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _type_ok(value: Any, expected: str) -> bool:
    actual = _type_name(value)
    if expected == "number":
        return actual in ("integer", "number")
    if expected == "integer" and isinstance(value, float) and value.is_integer():
        return True
    return actual == expected


def _show(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if not isinstance(value, dict | list) else _type_name(value)


class Validator:
    """Validates one object (and its previous version, for transition rules) against a schema."""

    def __init__(self) -> None:
        self.causes: list[Cause] = []

    def add(self, path: str, message: str, reason: str = "FieldValueInvalid") -> None:
        self.causes.append(Cause(path or "<root>", message, reason))

    def validate(self, value: Any, schema: dict[str, Any], path: str, old: Any = _MISSING) -> None:
        if value is None:
            if not schema.get("nullable"):
                self.add(path, 'Invalid value: "null": field must not be null', "FieldValueTypeInvalid")
            return
        if schema.get("x-kubernetes-int-or-string"):
            if not isinstance(value, int | str) or isinstance(value, bool):
                self.add(path, f"Invalid value: {_show(value)}: must be an integer or a string")
                return
        elif "type" in schema and not _type_ok(value, schema["type"]):
            self.add(
                path,
                f'Invalid value: "{_type_name(value)}": {path} in body must be of type {schema["type"]}: '
                f'"{_type_name(value)}"',
                "FieldValueTypeInvalid",
            )
            return
        self._scalar_checks(value, schema, path)
        if isinstance(value, dict):
            self._object_checks(value, schema, path, old)
        elif isinstance(value, list):
            self._array_checks(value, schema, path)
        for keyword in ("allOf", "anyOf", "oneOf"):
            if keyword in schema:
                self._combinator(keyword, value, schema[keyword], path)
        if "not" in schema:
            probe = Validator()
            probe.validate(value, schema["not"], path)
            if not probe.causes:
                self.add(path, f"Invalid value: {_show(value)}: must not validate the schema (not)")
        self._cel(value, schema, path, old)

    def _scalar_checks(self, value: Any, schema: dict[str, Any], path: str) -> None:
        if "enum" in schema and value not in schema["enum"]:
            allowed = ", ".join(_show(item) for item in schema["enum"])
            self.add(
                path,
                f"Unsupported value: {_show(value)}: supported values: {allowed}",
                "FieldValueNotSupported",
            )
        if isinstance(value, int | float) and not isinstance(value, bool):
            minimum, maximum = schema.get("minimum"), schema.get("maximum")
            if minimum is not None:
                if schema.get("exclusiveMinimum") and value <= minimum:
                    self.add(path, f"Invalid value: {value}: {path} in body should be greater than {minimum}")
                elif value < minimum:
                    self.add(
                        path,
                        f"Invalid value: {value}: {path} in body should be greater than or equal to "
                        f"{minimum}",
                    )
            if maximum is not None:
                if schema.get("exclusiveMaximum") and value >= maximum:
                    self.add(path, f"Invalid value: {value}: {path} in body should be less than {maximum}")
                elif value > maximum:
                    self.add(
                        path,
                        f"Invalid value: {value}: {path} in body should be less than or equal to {maximum}",
                    )
            multiple = schema.get("multipleOf")
            if multiple and value % multiple:
                self.add(path, f"Invalid value: {value}: {path} in body should be a multiple of {multiple}")
        if isinstance(value, str):
            if "minLength" in schema and len(value) < schema["minLength"]:
                self.add(
                    path,
                    f"Invalid value: {_show(value)}: {path} in body should be at least "
                    f"{schema['minLength']} chars long",
                )
            if "maxLength" in schema and len(value) > schema["maxLength"]:
                self.add(
                    path,
                    f"Too long: may not be longer than {schema['maxLength']}",
                    "FieldValueTooLong",
                )
            if "pattern" in schema and re.search(schema["pattern"], value) is None:
                self.add(
                    path, f"Invalid value: {_show(value)}: {path} in body should match '{schema['pattern']}'"
                )

    def _object_checks(self, value: dict[str, Any], schema: dict[str, Any], path: str, old: Any) -> None:
        for key in schema.get("required") or []:
            if key not in value:
                self.add(_join(path, key), "Required value", "FieldValueRequired")
        if "minProperties" in schema and len(value) < schema["minProperties"]:
            self.add(
                path,
                f"Invalid value: {len(value)}: {path} in body should have at least "
                f"{schema['minProperties']} properties",
            )
        if "maxProperties" in schema and len(value) > schema["maxProperties"]:
            self.add(
                path,
                f"Too many: {len(value)}: must have at most {schema['maxProperties']} items",
                "FieldValueTooMany",
            )
        properties: dict[str, Any] = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        old_map = old if isinstance(old, dict) else {}
        for key, item in value.items():
            if key in properties:
                sub_schema = properties[key]
            elif isinstance(additional, dict):
                sub_schema = additional
            elif additional is False and not properties:
                self.add(
                    _join(path, key),
                    "Forbidden: additional properties are not allowed",
                    "FieldValueForbidden",
                )
                continue
            else:
                continue
            if path == "" and key == "metadata":
                continue  # object metadata is validated by the store, not by the CRD schema
            self.validate(item, sub_schema, _join(path, key), old_map.get(key, _MISSING))

    def _array_checks(self, value: list[Any], schema: dict[str, Any], path: str) -> None:
        if "minItems" in schema and len(value) < schema["minItems"]:
            self.add(
                path,
                f"Invalid value: {len(value)}: {path} in body should have at least "
                f"{schema['minItems']} items",
            )
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            self.add(
                path,
                f"Too many: {len(value)}: must have at most {schema['maxItems']} items",
                "FieldValueTooMany",
            )
        if schema.get("uniqueItems"):
            seen: list[Any] = []
            for item in value:
                if item in seen:
                    self.add(path, f"Duplicate value: {_show(item)}", "FieldValueDuplicate")
                seen.append(item)
        items = schema.get("items")
        if isinstance(items, dict):
            for index, item in enumerate(value):
                # List items are not correlated with the old list: no transition rules below here.
                self.validate(item, items, f"{path}[{index}]")

    def _combinator(self, keyword: str, value: Any, schemas: list[dict[str, Any]], path: str) -> None:
        results = []
        for sub_schema in schemas:
            probe = Validator()
            probe.validate(value, sub_schema, path)
            results.append(probe.causes)
        passing = sum(1 for causes in results if not causes)
        if keyword == "allOf":
            for causes in results:
                self.causes.extend(causes)
        elif keyword == "anyOf" and passing == 0:
            self.add(path, "Invalid value: must validate at least one schema (anyOf)")
        elif keyword == "oneOf" and passing != 1:
            self.add(path, "Invalid value: must validate one and only one schema (oneOf)")

    def _cel(self, value: Any, schema: dict[str, Any], path: str, old: Any) -> None:
        for rule in schema.get("x-kubernetes-validations") or []:
            program = _program(rule.get("rule", ""))
            if program is None:
                continue
            variables: dict[str, Any] = {"self": value}
            if program.uses_old_self:
                if old is _MISSING or old is None:
                    continue  # transition rules run on updates that have an old value only
                variables["oldSelf"] = old
            where = _join(path, rule["fieldPath"].lstrip(".")) if rule.get("fieldPath") else path
            try:
                ok = program.evaluate(variables)
            except CelEvalError as error:
                self.add(
                    where, f"Invalid value: {_show(value)}: rule {rule['rule']!r} evaluation error: {error}"
                )
                continue
            if ok is not True:
                message = rule.get("message") or f"failed rule: {rule['rule']}"
                self.add(
                    where,
                    f"Invalid value: {_show(value)}: {message}",
                    rule.get("reason", "FieldValueInvalid"),
                )


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def admit(
    obj: dict[str, Any], schema: dict[str, Any], old: dict[str, Any] | None
) -> tuple[dict[str, Any], list[Cause]]:
    """Prune, default and validate ``obj``; returns the admitted object and any causes."""
    pruned = prune(obj, schema, root=True)
    defaulted = apply_defaults(pruned, schema)
    validator = Validator()
    validator.validate(defaulted, schema, "", old if old is not None else _MISSING)
    return defaulted, validator.causes
