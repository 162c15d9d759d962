"""Kubernetes-shaped API errors.

Every failure the emulator reports is an :class:`ApiError` rendered as a ``v1 Status`` body with the
same ``reason``/``code`` pairs a real kube-apiserver uses, because clients (kopf, the workloads'
status patcher, the operator's own code) branch on exactly those: kopf maps 404/409/422 to its
``APINotFoundError``/``APIConflictError``/``APIUnprocessableEntityError`` and the operator treats a
409 on create as "already there".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Cause:
    """One field-level problem in a 422 Invalid response (``details.causes[]``)."""

    field: str
    message: str
    reason: str = "FieldValueInvalid"

    def to_dict(self) -> dict[str, str]:
        return {"reason": self.reason, "message": f"{self.field}: {self.message}", "field": self.field}


@dataclass
class ApiError(Exception):
    """An error with a Kubernetes ``Status`` body; raised by the store, rendered by the server."""

    code: int
    reason: str
    message: str
    kind: str | None = None
    name: str | None = None
    group: str | None = None
    causes: list[Cause] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.code} {self.reason}: {self.message}"

    def status(self) -> dict[str, Any]:
        details: dict[str, Any] = {}
        if self.name is not None:
            details["name"] = self.name
        if self.group is not None:
            details["group"] = self.group
        if self.kind is not None:
            details["kind"] = self.kind
        if self.causes:
            details["causes"] = [cause.to_dict() for cause in self.causes]
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if details:
            body["details"] = details
        return body


def not_found(plural: str, name: str, group: str = "") -> ApiError:
    what = f"{plural}.{group}" if group else plural
    return ApiError(404, "NotFound", f'{what} "{name}" not found', kind=plural, name=name, group=group)


def already_exists(plural: str, name: str, group: str = "") -> ApiError:
    what = f"{plural}.{group}" if group else plural
    return ApiError(
        409, "AlreadyExists", f'{what} "{name}" already exists', kind=plural, name=name, group=group
    )


def conflict(plural: str, name: str, group: str = "", why: str = "") -> ApiError:
    what = f"{plural}.{group}" if group else plural
    why = why or "the object has been modified; please apply your changes to the latest version and try again"
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {what} "{name}": {why}',
        kind=plural,
        name=name,
        group=group,
    )


def invalid(kind: str, name: str, causes: list[Cause], group: str = "") -> ApiError:
    """422 Invalid: the message lists every cause, as the real apiserver does."""
    listed = "; ".join(f"{cause.field}: {cause.message}" for cause in causes) or "invalid object"
    what = f"{kind}.{group}" if group else kind
    return ApiError(
        422,
        "Invalid",
        f'{what} "{name}" is invalid: {listed}',
        kind=kind,
        name=name,
        group=group,
        causes=causes,
    )


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def method_not_allowed(message: str) -> ApiError:
    return ApiError(405, "MethodNotAllowed", message)


def unsupported_media_type(message: str) -> ApiError:
    return ApiError(415, "UnsupportedMediaType", message)


def gone(message: str) -> ApiError:
    return ApiError(410, "Expired", message)
