"""``sft_operator.status.dataprep`` with JSON statuses (see the package docstring)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sft_operator.api.dataprep import SFTDataPrepStatus
from sft_operator.status import dataprep as _status
from sft_operator.status.patch import to_json


def derive(*args: Any, **kwargs: Any) -> dict[str, Any]:
    return to_json(_status.derive(*args, **kwargs))


def status_patch(cr: Mapping[str, Any], new_status: Mapping[str, Any]) -> dict[str, Any]:
    return _status.status_patch(cr, SFTDataPrepStatus.model_validate(new_status))
