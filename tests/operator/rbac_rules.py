"""Check recorded API requests against the RBAC rules in manifests/rbac.yaml (least privilege, tested)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

RBAC = Path(__file__).resolve().parents[2] / "manifests" / "rbac.yaml"
Access = tuple[str, str, str]
"""(verb, apiGroup, resource[/subresource])"""


def cluster_role(name: str) -> list[dict[str, Any]]:
    for doc in yaml.safe_load_all(RBAC.read_text()):
        if doc and doc["kind"] == "ClusterRole" and doc["metadata"]["name"] == name:
            return list(doc["rules"])
    raise KeyError(name)


def access_of(method: str, path: str, query: dict[str, str]) -> Access | None:
    """What RBAC sees in one request; None for discovery (non-resource URLs)."""
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["api"] and len(parts) >= 3:
        group, rest = "", parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 4:
        group, rest = parts[1], parts[3:]
    else:
        return None
    if rest[:1] == ["namespaces"] and len(rest) >= 3:
        rest = rest[2:]
    resource = rest[0]
    named = len(rest) >= 2
    if len(rest) >= 3:
        resource = f"{resource}/{rest[2]}"
    method = method.upper()
    if method == "GET":
        verb = "watch" if query.get("watch") in ("true", "1") else ("get" if named else "list")
    else:
        verb = {"POST": "create", "PATCH": "patch", "PUT": "update", "DELETE": "delete"}[method]
    return verb, group, resource


def allowed(access: Access, rules: Iterable[dict[str, Any]]) -> bool:
    verb, group, resource = access
    return any(
        group in rule["apiGroups"] and resource in rule["resources"] and verb in rule["verbs"]
        for rule in rules
    )


def accesses(requests: Iterable[Any], user_agent: str | None = None) -> set[Access]:
    found: set[Access] = set()
    for request in requests:
        agent = request.headers.get("User-Agent", "")
        if user_agent is not None and user_agent not in agent:
            continue
        method = str(request.method).rsplit(".", 1)[-1]
        access = access_of(method, request.url.path, dict(request.url.query))
        if access is not None:
            found.add(access)
    return found


def assert_least_privilege(
    requests: Iterable[Any], must_use: Iterable[Access], role: str = "sft-operator"
) -> None:
    """Every request was granted by ``role`` in manifests/rbac.yaml, and each access in ``must_use``
    was made (so the rules are exercised, not a wish list)."""
    used = accesses(requests)
    rules = cluster_role(role)
    denied = sorted(a for a in used if not allowed(a, rules))
    assert denied == [], f"requests not granted by manifests/rbac.yaml: {denied}"
    missing = [access for access in must_use if access not in used]
    assert missing == [], f"rules never exercised by this lifecycle: {missing}"
