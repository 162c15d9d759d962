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
        """``sft.dev/v1alpha1``: one version for every kind."""
        return API_VERSION

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"


def column(
    name: str, type_: str, json_path: str, description: str | None = None, priority: int | None = None
) -> dict[str, Any]:
    """One ``additionalPrinterColumns`` entry (priority 1: shown only by ``kubectl get -o wide``)."""
    out: dict[str, Any] = {"name": name, "type": type_, "jsonPath": json_path}
    if description is not None:
        out["description"] = description
    if priority is not None:
        out["priority"] = priority
    return out


PHASE_COLUMN = column("Phase", "string", ".status.phase")
AGE_COLUMN = column("Age", "date", ".metadata.creationTimestamp")
MESSAGE_COLUMN = column("Message", "string", ".status.message", "One-line summary of the current state")
REASON_COLUMN = column("Reason", "string", '.status.conditions[?(@.type=="Ready")].reason', priority=1)
# A printer column shows one status field, so the operator writes the human strings (tokensText,
# etaText; sft_operator.status.common.progress_text) next to the numbers.
TOKENS_COLUMN = column(
    "Tokens", "string", ".status.progress.tokensText", "Tokens so far, with a unit (e.g. 1.18G)"
)
ETA_COLUMN = column(
    "ETA", "string", ".status.progress.etaText", "Estimated time left while Running (e.g. 2h5m)"
)

DATAPREP = KindInfo(
    kind="SFTDataPrep",
    plural="sftdatapreps",
    singular="sftdataprep",
    short_names=("sftdp", "dataprep"),
    component="data-prep",
    label_key=f"{GROUP}/dataprep",
    printer_columns=(
        PHASE_COLUMN,
        column("Shards", "string", ".status.progress.shards", "Shards done / total"),
        column("Progress", "string", ".status.progress.percentText", "Share of shards done"),
        TOKENS_COLUMN,
        ETA_COLUMN,
        AGE_COLUMN,
        MESSAGE_COLUMN,
        REASON_COLUMN,
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
        PHASE_COLUMN,
        column("Iteration", "string", ".status.progress.iterations", "Iterations done / total"),
        column("Loss", "number", ".status.progress.loss", "Latest training loss"),
        TOKENS_COLUMN,
        ETA_COLUMN,
        AGE_COLUMN,
        MESSAGE_COLUMN,
        REASON_COLUMN,
    ),
)
