"""Which CR already claims the location another CR of its kind would write to (pure).

Two writers on one location lose data: two SFTDataPreps on one ``outputDir`` mix two configs in one
dataset; two SFTRuns on one ``checkpoint.save`` resume from, or overwrite, each other's checkpoints
(a second run with the same ``trainIters`` would load the first one's final checkpoint and "succeed"
without training). sft-prep also takes an exclusive lease on its output at run time
(``sft_prep.lease``); the operator refuses earlier, before it creates anything.

The rule, for CRs of one kind in one namespace writing to the same location: a CR is held back
(``Stalled``, ``OutputInUse``) while another live one (not being deleted) has **started** (it has a
child: ``status.jobRef``) or was **created earlier** (``creationTimestamp``, then name). "Earlier"
makes two CRs created together deterministic: only the first goes ahead, whatever order the
reconciles run in; "started" keeps a later CR that already runs from being overtaken. A finished CR
keeps its claim: its location is its result (data that SFTRuns read, the checkpoint its status
names), so the message says to delete it, or write somewhere else.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sft_operator.api.meta import DATAPREP, RUN

CLAIMED_FIELD: dict[str, tuple[str, ...]] = {
    DATAPREP.kind: ("outputDir",),
    RUN.kind: ("checkpoint", "save"),
}
"""Per kind, the spec field naming the location a CR writes to."""


def claimed_location(kind: str, cr: Mapping[str, Any]) -> str | None:
    """The location a ``kind`` CR writes to, normalised (``file://`` and trailing slashes dropped).

    >>> claimed_location("SFTRun", {"spec": {"checkpoint": {"save": "file:///ckpt/run/"}}})
    '/ckpt/run'
    """
    value = _raw_location(kind, cr)
    if not value:
        return None
    location = value.removeprefix("file://").rstrip("/")
    return location or None


def _raw_location(kind: str, cr: Mapping[str, Any]) -> str | None:
    value: Any = cr.get("spec") or {}
    for key in CLAIMED_FIELD[kind]:
        value = value.get(key) if isinstance(value, Mapping) else None
    return str(value) if value else None


def _order(cr: Mapping[str, Any]) -> tuple[str, str]:
    meta = cr.get("metadata") or {}
    return str(meta.get("creationTimestamp") or ""), str(meta.get("name") or "")


def claimed_by(kind: str, cr: Mapping[str, Any], others: Iterable[Mapping[str, Any]]) -> str | None:
    """The name of the CR among ``others`` (CRs of ``kind``) that holds the location of ``cr`` (see the
    module docstring; the earliest created of them), or None.

    >>> def prep(name, created, started=False, out="s3://x/out"):
    ...     return {"spec": {"outputDir": out},
    ...             "metadata": {"name": name, "namespace": "ml", "uid": name, "creationTimestamp": created},
    ...             "status": {"jobRef": {"name": name}} if started else {}}
    >>> a, b = prep("a", "2026-12-01T10:00:00Z"), prep("b", "2026-12-01T10:00:01Z", out="s3://x/out/")
    >>> claimed_by("SFTDataPrep", b, [a, b]), claimed_by("SFTDataPrep", a, [a, b])  # the earlier goes first
    ('a', None)
    >>> claimed_by("SFTDataPrep", a, [a, {**b, "status": {"jobRef": {"name": "b"}}}])  # unless the later runs
    'b'
    """
    meta = cr.get("metadata") or {}
    location = claimed_location(kind, cr)
    if location is None:
        return None
    mine = _order(cr)
    holders = []
    for other in others:
        raw = _raw_location(kind, other)
        if raw is None or location not in raw:  # (a location is part of its raw value: a cheap test
            continue  # first, as every CR of the namespace is looked at)
        o_meta = other.get("metadata") or {}
        if (
            o_meta.get("uid") == meta.get("uid")
            or o_meta.get("namespace") != meta.get("namespace")
            or o_meta.get("deletionTimestamp")
            or claimed_location(kind, other) != location
        ):
            continue
        if (other.get("status") or {}).get("jobRef") or _order(other) < mine:
            holders.append(_order(other))
    return min(holders)[1] if holders else None


def claim_message(kind: str, cr: Mapping[str, Any], holder: str) -> str:
    """What a held-back CR's status says: whose location it is, why that matters, and what to do."""
    value = claimed_location(kind, cr)
    if kind == RUN.kind:
        return (
            f"spec.checkpoint.save {value} is where SFTRun {holder} of this namespace saves its "
            f"checkpoints: a second run there would resume from, or overwrite, that run's checkpoints; "
            f"choose another checkpoint.save (to continue from {holder}'s model, set checkpoint.load to "
            f"{value} and a new checkpoint.save), or delete SFTRun {holder} first"
        )
    return (
        f"spec.outputDir {value} is already the output of SFTDataPrep {holder} in this namespace: two "
        f"preps writing one output would mix their data; choose another outputDir, or delete "
        f"SFTDataPrep {holder} first"
    )
