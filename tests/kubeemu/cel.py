"""A small, safe evaluator for the CEL subset used in CRD ``x-kubernetes-validations`` rules.

Why not full CEL: there is no CEL implementation in the venv, and the rules our CRDs use are simple
(immutability and transition rules). Rules outside this subset raise :class:`CelUnsupported` at
parse time; the schema validator logs and skips them (they are listed in the package docstring).

Supported:
- literals: ints, doubles, single/double-quoted strings, ``true``/``false``/``null``, lists ``[..]``,
  maps ``{k: v}``;
- variables ``self`` and ``oldSelf``; field access ``a.b``; indexing ``a[k]``;
- operators ``! - * / % + - < <= > >= == != in && || ?:`` with CEL's error-absorbing ``&&``/``||``
  (``false && error`` is ``false``, in either order);
- macros ``has(a.b)``, ``x.all(v, p)``, ``x.exists(v, p)``, ``x.exists_one(v, p)``, ``x.map(v, e)``,
  ``x.filter(v, p)`` over lists (elements) and maps (keys);
- functions ``size(x)``/``x.size()``, ``int()``, ``uint()``, ``double()``, ``string()``, ``bool()``,
  ``x.startsWith()``, ``x.endsWith()``, ``x.contains()``, ``x.matches()`` (Python ``re.search``),
  ``x.lowerAscii()``, ``x.upperAscii()``, ``type()`` is not supported.
Equality is deep (lists and maps compare by value), as in CEL. Accessing a missing field is an
evaluation error ("no such key"), as in Kubernetes; guard it with ``has()``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


class CelUnsupported(Exception):
    """The rule uses syntax or functions outside the supported subset."""


class CelEvalError(Exception):
    """Runtime error while evaluating a rule (e.g. "no such key")."""


_TOKEN_RE = re.compile(
    r"""\s*(?:
    (?P<number>\d+\.\d+(?:[eE][+-]?\d+)?|\d+[uU]?)|
    (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')|
    (?P<ident>[A-Za-z_][A-Za-z0-9_]*)|
    (?P<op>&&|\|\||==|!=|<=|>=|[-+*/%!<>?:.,()\[\]{}])
    )""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class _Tok:
    kind: str
    value: str


def _tokenize(source: str) -> list[_Tok]:
    tokens: list[_Tok] = []
    position = 0
    source = source.rstrip()
    while position < len(source):
        match = _TOKEN_RE.match(source, position)
        if not match or match.end() == position:
            raise CelUnsupported(f"cannot tokenize at {source[position:]!r}")
        position = match.end()
        kind = match.lastgroup
        assert kind is not None
        tokens.append(_Tok(kind, match.group(kind)))
    tokens.append(_Tok("eof", ""))
    return tokens


# AST nodes are tuples: (node_type, ...). Kept as plain tuples: they are tiny and immutable.
Node = tuple[Any, ...]

_BINARY_PRECEDENCE = {
    "||": 1,
    "&&": 2,
    "==": 3,
    "!=": 3,
    "<": 3,
    "<=": 3,
    ">": 3,
    ">=": 3,
    "in": 3,
    "+": 4,
    "-": 4,
    "*": 5,
    "/": 5,
    "%": 5,
}
_MACROS = {"all", "exists", "exists_one", "map", "filter"}


class _Parser:
    def __init__(self, source: str) -> None:
        self.tokens = _tokenize(source)
        self.position = 0

    def peek(self) -> _Tok:
        return self.tokens[self.position]

    def take(self) -> _Tok:
        token = self.tokens[self.position]
        self.position += 1
        return token

    def expect(self, value: str) -> None:
        token = self.take()
        if token.value != value:
            raise CelUnsupported(f"expected {value!r}, got {token.value!r}")

    def parse(self) -> Node:
        node = self.ternary()
        if self.peek().kind != "eof":
            raise CelUnsupported(f"unexpected {self.peek().value!r}")
        return node

    def ternary(self) -> Node:
        condition = self.binary(1)
        if self.peek().value == "?":
            self.take()
            then = self.ternary()
            self.expect(":")
            otherwise = self.ternary()
            return ("cond", condition, then, otherwise)
        return condition

    def binary(self, min_precedence: int) -> Node:
        left = self.unary()
        while True:
            token = self.peek()
            operator = token.value if token.kind in ("op", "ident") else ""
            precedence = _BINARY_PRECEDENCE.get(operator)
            if precedence is None or precedence < min_precedence:
                return left
            self.take()
            right = self.binary(precedence + 1)
            left = ("bin", operator, left, right)

    def unary(self) -> Node:
        token = self.peek()
        if token.value == "!":
            self.take()
            return ("not", self.unary())
        if token.value == "-":
            self.take()
            return ("neg", self.unary())
        return self.postfix(self.primary())

    def postfix(self, node: Node) -> Node:
        while True:
            token = self.peek()
            if token.value == ".":
                self.take()
                name = self.take()
                if name.kind != "ident":
                    raise CelUnsupported(f"expected a field name after '.', got {name.value!r}")
                if self.peek().value == "(":
                    self.take()
                    if name.value in _MACROS:
                        variable = self.take()
                        if variable.kind != "ident":
                            raise CelUnsupported("macro needs a variable name")
                        self.expect(",")
                        body = self.ternary()
                        self.expect(")")
                        node = ("macro", name.value, node, variable.value, body)
                    else:
                        node = ("call", name.value, node, self.arguments())
                else:
                    node = ("field", node, name.value)
            elif token.value == "[":
                self.take()
                index = self.ternary()
                self.expect("]")
                node = ("index", node, index)
            else:
                return node

    def arguments(self) -> list[Node]:
        arguments: list[Node] = []
        if self.peek().value == ")":
            self.take()
            return arguments
        while True:
            arguments.append(self.ternary())
            token = self.take()
            if token.value == ")":
                return arguments
            if token.value != ",":
                raise CelUnsupported(f"expected ',' or ')', got {token.value!r}")

    def primary(self) -> Node:
        token = self.take()
        if token.kind == "number":
            text = token.value.rstrip("uU")
            return ("lit", float(text) if "." in text or "e" in text.lower() else int(text))
        if token.kind == "string":
            return ("lit", bytes(token.value[1:-1], "utf-8").decode("unicode_escape"))
        if token.kind == "ident":
            if token.value in ("true", "false"):
                return ("lit", token.value == "true")
            if token.value == "null":
                return ("lit", None)
            if self.peek().value == "(":
                self.take()
                if token.value == "has":
                    argument = self.ternary()
                    self.expect(")")
                    if argument[0] != "field":
                        raise CelUnsupported("has() needs a field selection like has(self.x)")
                    return ("has", argument[1], argument[2])
                return ("call", token.value, None, self.arguments())
            return ("var", token.value)
        if token.value == "(":
            node = self.ternary()
            self.expect(")")
            return node
        if token.value == "[":
            items: list[Node] = []
            while self.peek().value != "]":
                items.append(self.ternary())
                if self.peek().value == ",":
                    self.take()
            self.take()
            return ("list", items)
        if token.value == "{":
            entries: list[tuple[Node, Node]] = []
            while self.peek().value != "}":
                key = self.ternary()
                self.expect(":")
                entries.append((key, self.ternary()))
                if self.peek().value == ",":
                    self.take()
            self.take()
            return ("map", entries)
        raise CelUnsupported(f"unexpected token {token.value!r}")


def _size(value: Any) -> int:
    if isinstance(value, str | list | dict | bytes):
        return len(value)
    raise CelEvalError(f"size() of unsupported type {type(value).__name__}")


_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "size": _size,
    "int": lambda value: int(value),
    "uint": lambda value: int(value),
    "double": lambda value: float(value),
    "string": lambda value: ("true" if value else "false") if isinstance(value, bool) else str(value),
    "bool": lambda value: value if isinstance(value, bool) else value == "true",
}
_METHODS: dict[str, Callable[..., Any]] = {
    "size": _size,
    "startsWith": lambda target, prefix: target.startswith(prefix),
    "endsWith": lambda target, suffix: target.endswith(suffix),
    "contains": lambda target, part: part in target,
    "matches": lambda target, pattern: re.search(pattern, target) is not None,
    "lowerAscii": lambda target: target.lower(),
    "upperAscii": lambda target: target.upper(),
}


def _check_names(node: Node) -> None:
    """Reject unknown functions at parse time, so unsupported rules are skipped, not failed."""
    kind = node[0]
    if kind == "call":
        name, target, arguments = node[1], node[2], node[3]
        if target is None and name not in _FUNCTIONS:
            raise CelUnsupported(f"function {name}() is not supported")
        if target is not None:
            if name not in _METHODS:
                raise CelUnsupported(f"method .{name}() is not supported")
            _check_names(target)
        for argument in arguments:
            _check_names(argument)
        return
    for part in node[1:]:
        if isinstance(part, tuple):
            _check_names(part)
        elif isinstance(part, list):
            for item in part:
                if isinstance(item, tuple) and item and isinstance(item[0], tuple):
                    for sub in item:
                        _check_names(sub)
                elif isinstance(item, tuple):
                    _check_names(item)


@dataclass(frozen=True)
class Program:
    """A parsed rule; :meth:`evaluate` returns its value for the given variables."""

    source: str
    ast: Node

    @property
    def uses_old_self(self) -> bool:
        return re.search(r"\boldSelf\b", self.source) is not None

    def evaluate(self, variables: Mapping[str, Any]) -> Any:
        return _evaluate(self.ast, dict(variables))


def compile_rule(source: str) -> Program:
    """Parse a rule; raises :class:`CelUnsupported` for anything outside the subset."""
    ast = _Parser(source).parse()
    _check_names(ast)
    return Program(source, ast)


def _truthy(value: Any) -> bool:
    if not isinstance(value, bool):
        raise CelEvalError(f"expected a bool, got {type(value).__name__}")
    return value


def _evaluate(node: Node, env: dict[str, Any]) -> Any:
    kind = node[0]
    if kind == "lit":
        return node[1]
    if kind == "var":
        if node[1] not in env:
            raise CelEvalError(f"undeclared reference to {node[1]!r}")
        return env[node[1]]
    if kind == "field":
        target = _evaluate(node[1], env)
        if not isinstance(target, dict):
            raise CelEvalError(f"cannot select field {node[2]!r} from {type(target).__name__}")
        if node[2] not in target:
            raise CelEvalError(f"no such key: {node[2]}")
        return target[node[2]]
    if kind == "has":
        target = _evaluate(node[1], env)
        return isinstance(target, dict) and node[2] in target
    if kind == "index":
        target = _evaluate(node[1], env)
        index = _evaluate(node[2], env)
        try:
            return target[index]
        except (KeyError, IndexError, TypeError) as error:
            raise CelEvalError(f"no such key: {index!r}") from error
    if kind == "not":
        return not _truthy(_evaluate(node[1], env))
    if kind == "neg":
        return -_evaluate(node[1], env)
    if kind == "cond":
        return _evaluate(node[2] if _truthy(_evaluate(node[1], env)) else node[3], env)
    if kind == "list":
        return [_evaluate(item, env) for item in node[1]]
    if kind == "map":
        return {_evaluate(key, env): _evaluate(value, env) for key, value in node[1]}
    if kind == "bin":
        return _binary(node[1], node[2], node[3], env)
    if kind == "call":
        name, target, arguments = node[1], node[2], node[3]
        values = [_evaluate(argument, env) for argument in arguments]
        try:
            if target is None:
                return _FUNCTIONS[name](*values)
            return _METHODS[name](_evaluate(target, env), *values)
        except (TypeError, ValueError, AttributeError, re.error) as error:
            raise CelEvalError(f"{name}(): {error}") from error
    if kind == "macro":
        return _macro(node[1], _evaluate(node[2], env), node[3], node[4], env)
    raise CelEvalError(f"unknown node {kind}")  # pragma: no cover - the parser makes no others


def _binary(operator: str, left_node: Node, right_node: Node, env: dict[str, Any]) -> Any:
    if operator in ("&&", "||"):
        decisive = operator == "||"  # the value that decides the result on its own
        try:
            left = _truthy(_evaluate(left_node, env))
        except CelEvalError:
            right = _truthy(_evaluate(right_node, env))
            if right is decisive:
                return decisive
            raise
        if left is decisive:
            return decisive
        return _truthy(_evaluate(right_node, env))
    left = _evaluate(left_node, env)
    right = _evaluate(right_node, env)
    try:
        if operator == "==":
            return _equal(left, right)
        if operator == "!=":
            return not _equal(left, right)
        if operator == "in":
            return left in right
        if operator == "+":
            return left + right
        if operator == "-":
            return left - right
        if operator == "*":
            return left * right
        if operator == "/":
            return left // right if isinstance(left, int) and isinstance(right, int) else left / right
        if operator == "%":
            return left % right
        comparisons: dict[str, Callable[[Any, Any], bool]] = {
            "<": lambda a, b: a < b,
            "<=": lambda a, b: a <= b,
            ">": lambda a, b: a > b,
            ">=": lambda a, b: a >= b,
        }
        return comparisons[operator](left, right)
    except (TypeError, ZeroDivisionError) as error:
        raise CelEvalError(f"{operator}: {error}") from error


def _equal(left: Any, right: Any) -> bool:
    if isinstance(left, bool) != isinstance(right, bool):
        return False
    return bool(left == right)


def _macro(name: str, target: Any, variable: str, body: Node, env: dict[str, Any]) -> Any:
    if isinstance(target, dict):
        items = list(target.keys())
    elif isinstance(target, list):
        items = target
    else:
        raise CelEvalError(f"{name}() over unsupported type {type(target).__name__}")

    def run(item: Any) -> Any:
        return _evaluate(body, {**env, variable: item})

    if name == "all":
        return all(_truthy(run(item)) for item in items)
    if name == "exists":
        return any(_truthy(run(item)) for item in items)
    if name == "exists_one":
        return sum(1 for item in items if _truthy(run(item))) == 1
    if name == "map":
        return [run(item) for item in items]
    return [item for item in items if _truthy(run(item))]
