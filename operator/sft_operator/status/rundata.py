"""Where an ``SFTRun``'s ``spec.data`` stands: resolved from the SFTDataPrep (or the URI), still
coming, or never coming; and whether the resolved data suits the run's parallelism.

Pure: the reconcile passes the referenced SFTDataPrep from the watch cache (None: not found).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sft_operator.api.sftrun import SFTRunSpec
from sft_operator.status.common import state_reason
from sft_operator.status.conditions import get_condition, is_true


@dataclass(frozen=True)
class DataState:
    """Where ``spec.data`` stands: resolved (ready), still coming (waiting) or never coming (failed)."""

    ready: bool
    reason: str
    """CamelCase: DataReady, WaitingForDataPrep, DataPrepNotFound, DataPrepFailed, ..."""
    message: str
    failed: bool = False
    uri: str | None = None
    pack_size: int | None = None
    pad_seq_to_mult: int | None = None
    """The SFTDataPrep's padSeqToMult (None: unknown, e.g. data.uri)."""
    prep_ref: Mapping[str, Any] | None = field(default=None)
    """A ChildRef-shaped reference to the SFTDataPrep the data comes from."""


def resolve_data(cr: Mapping[str, Any], prep: Mapping[str, Any] | None) -> DataState:
    """Where ``spec.data`` stands, from the referenced SFTDataPrep (None: not found) or the URI."""
    data = (cr.get("spec") or {}).get("data") or {}
    if data.get("uri"):
        return DataState(
            ready=True,
            reason="DataUri",
            message=f"training data {data['uri']}",
            uri=data["uri"],
            pack_size=data.get("packSize"),
        )
    name = ((data.get("dataPrepRef") or {}).get("name")) or "?"
    namespace = (cr.get("metadata") or {}).get("namespace")
    if prep is None:
        return DataState(
            ready=False,
            reason="DataPrepNotFound",
            message=f"waiting for SFTDataPrep {name}: it does not exist in namespace {namespace} (yet)",
        )
    ref = {"apiVersion": prep.get("apiVersion"), "kind": prep.get("kind") or "SFTDataPrep", "name": name}
    if (prep.get("metadata") or {}).get("uid"):
        ref["uid"] = prep["metadata"]["uid"]
    st = prep.get("status") or {}
    phase = st.get("phase")
    outputs = st.get("outputs") or {}
    if phase == "Failed":
        failure = st.get("failure") or {}
        why = failure.get("message") or st.get("message") or "no reason recorded"
        return DataState(
            ready=False,
            failed=True,
            reason="DataPrepFailed",
            message=f"SFTDataPrep {name} failed ({failure.get('reason') or state_reason(st)}): {why}",
            prep_ref=ref,
        )
    if phase == "Succeeded":
        if is_true(st, "DataReady") and outputs.get("outputDir"):
            return DataState(
                ready=True,
                reason="DataReady",
                message=f"SFTDataPrep {name} is ready: {outputs['outputDir']} (pack size "
                f"{outputs.get('packSize')})",
                uri=outputs["outputDir"],
                pack_size=outputs.get("packSize"),
                pad_seq_to_mult=outputs.get("padSeqToMult"),
                prep_ref=ref,
            )
        cond = get_condition(st, "DataReady") or {}
        return DataState(
            ready=False,
            failed=True,
            reason="DataPrepIncomplete",
            message=f"SFTDataPrep {name} succeeded but its data is not usable: "
            f"{cond.get('message') or 'status.outputs has no outputDir'}",
            prep_ref=ref,
        )
    detail = f": {st['message']}" if st.get("message") else ""
    return DataState(
        ready=False,
        reason="WaitingForDataPrep",
        message=f"waiting for SFTDataPrep {name} (phase {phase or 'unknown'}){detail}",
        prep_ref=ref,
    )


def padding_problem(spec: SFTRunSpec, data: DataState) -> str | None:
    """Why the packed data cannot feed this run's parallelism, or None. Megatron-Bridge needs every
    packed sequence padded to a multiple of 2 × CP (CP > 1) and of TP (sequence parallel, TP > 1);
    sft-prep pads to its padSeqToMult. Unknown (data.uri) is not checked."""
    need = spec.seq_multiple()
    if need == 1 or data.prep_ref is None:
        return None
    have = data.pad_seq_to_mult or 1
    if have % need == 0:
        return None
    name = (data.prep_ref or {}).get("name")
    par = spec.parallelism
    return (
        f"SFTDataPrep {name} padded sequences to a multiple of {have} (padSeqToMult), but this run's "
        f"parallelism (tensor {par.tensor_parallel_size or 1}, context {par.context_parallel_size or 1}, "
        f"sequenceParallel {bool(par.sequence_parallel)}) needs a multiple of {need}: set padSeqToMult to "
        f"{need} (or a multiple) in SFTDataPrep {name} and prepare the data again, or change the parallelism"
    )
