"""Names of the API and its kinds, in one place (cross-team contract: ``sft.dev/v1alpha1``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

GROUP = "sft.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
MANAGED_BY = "sft-operator"


@dataclass(frozen=True)
class KindInfo:
    """What the CRD generator, renderers and handlers need to know about one kind."""

    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    component: str
    """``app.kubernetes.io/component`` of its children (e.g. ``data-prep``)."""
    label_key: str
    """``sft.dev/<x>`` label on children naming the owning CR (e.g. ``sft.dev/dataprep``)."""
    printer_columns: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    categories: tuple[str, ...] = ("sft",)

    @property
    def api_version(self) -> str:
        return API_VERSION

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"


DATAPREP = KindInfo(
    kind="SFTDataPrep",
    plural="sftdatapreps",
    singular="sftdataprep",
    short_names=("sftdp", "dataprep"),
    component="data-prep",
    label_key=f"{GROUP}/dataprep",
    printer_columns=(
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {
            "name": "Shards",
            "type": "string",
            "jsonPath": ".status.progress.shards",
            "description": "Shards done / total",
        },
        {
            "name": "Progress",
            "type": "string",
            "jsonPath": ".status.progress.percentText",
            "description": "Share of shards done",
        },
        {
            "name": "Tokens",
            "type": "integer",
            "jsonPath": ".status.progress.tokens",
            "description": "Tokens written so far (the final total once Succeeded)",
        },
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        {
            "name": "Reason",
            "type": "string",
            "jsonPath": '.status.conditions[?(@.type=="Ready")].reason',
            "priority": 1,
        },
    ),
)

RUN = KindInfo(
    kind="SFTRun",
    plural="sftruns",
    singular="sftrun",
    short_names=("sftr",),
    component="training",
    label_key=f"{GROUP}/run",
    printer_columns=(
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {
            "name": "Iteration",
            "type": "string",
            "jsonPath": ".status.progress.iterations",
            "description": "Iterations done / total",
        },
        {
            "name": "Loss",
            "type": "number",
            "jsonPath": ".status.progress.loss",
            "description": "Latest training loss",
        },
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        {
            "name": "ETA",
            "type": "integer",
            "jsonPath": ".status.progress.etaSeconds",
            "description": "Estimated seconds to the end",
            "priority": 1,
        },
        {
            "name": "Reason",
            "type": "string",
            "jsonPath": '.status.conditions[?(@.type=="Ready")].reason',
            "priority": 1,
        },
    ),
)
