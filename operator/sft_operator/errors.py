"""The two kinds of failure the operator distinguishes.

* :class:`InvalidSpec` — the user must change the spec; the resource goes ``Stalled`` with the message
  and the operator waits for a new generation (no retries, no crash loop).
* Everything else raised by the API client is retried with backoff (see ``kube.client.ApiError``).
"""

from __future__ import annotations

from pydantic import BaseModel, ValidationError

from sft_common.config import describe_errors


class InvalidSpec(Exception):
    """A user-fixable problem with a custom resource's spec; ``reason`` is CamelCase."""

    def __init__(self, message: str, reason: str = "InvalidSpec") -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def invalid_spec_from(model: type[BaseModel], exc: ValidationError) -> InvalidSpec:
    """Turn pydantic's errors into one message naming each spec key (camelCase) and the fix."""
    text = describe_errors(model, exc).replace("invalid config", "invalid spec", 1)
    return InvalidSpec(text)
