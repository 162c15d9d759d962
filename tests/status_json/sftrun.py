"""``sft_operator.status.sftrun`` with JSON statuses (see the package docstring)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sft_operator.api.sftrun import SFTRunStatus
from sft_operator.status import sftrun as _status
from sft_operator.status.patch import to_json

DataState = _status.DataState
resolve_data = _status.resolve_data


def derive(*args: Any, **kwargs: Any) -> dict[str, Any]:
    return to_json(_status.derive(*args, **kwargs))


def status_patch(cr: Mapping[str, Any], new_status: Mapping[str, Any]) -> dict[str, Any]:
    return _status.status_patch(cr, SFTRunStatus.model_validate(new_status))
