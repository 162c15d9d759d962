"""The published Kubeflow Trainer API models (PyPI ``kubeflow-trainer-api``, generated from Trainer's
OpenAPI; they include the JobSet v1alpha2 and core/v1 types Trainer embeds) as the source of the
TrainJob and JobSet field names.

Manifests are built with the models' constructors for the Trainer/JobSet parts and checked
losslessly: these generated models silently drop keys they do not know, so a rendered child that
does not survive ``from_dict(...).to_dict()`` unchanged would lose a user's setting. That is
refused instead (:func:`checked`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubeflow_trainer_api import models as m

from sft_operator.errors import InvalidSpec

__all__ = ["checked", "m", "quantities_as_strings"]


def quantities_as_strings(resources: Mapping[str, Any]) -> dict[str, Any]:
    """requests/limits with every quantity a string (the models turn a bare 8 into 8.0)."""
    return {k: {r: str(q) for r, q in (v or {}).items()} for k, v in resources.items()}


def checked(model: Any, manifest: Mapping[str, Any], what: str) -> dict[str, Any]:
    """``manifest`` validated by the published ``model``; InvalidSpec when a key would be lost."""
    try:
        out = model.from_dict(dict(manifest)).to_dict()
    except ValueError as exc:
        raise InvalidSpec(
            f"the rendered {what} does not fit its API type: {exc}", reason="InvalidChild"
        ) from None
    lost = _lost(manifest, out, "")
    if lost:
        raise InvalidSpec(
            f"the {what} API has no field {lost} (would be dropped); remove it from the spec",
            reason="InvalidChild",
        )
    return out


def _lost(given: Any, kept: Any, path: str) -> str | None:
    if isinstance(given, Mapping):
        if not isinstance(kept, Mapping):
            return path or "."
        for key, value in given.items():
            if value is None:
                continue
            if key not in kept:
                return f"{path}.{key}".lstrip(".")
            found = _lost(value, kept[key], f"{path}.{key}")
            if found:
                return found
    elif isinstance(given, list) and isinstance(kept, list):
        for i, (a, b) in enumerate(zip(given, kept, strict=False)):
            found = _lost(a, b, f"{path}[{i}]")
            if found:
                return found
    return None
