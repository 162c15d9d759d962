"""Which SFTDataPrep already claims an output directory (pure).

Two preps writing one ``outputDir`` would mix two configs in one dataset. sft-prep takes an exclusive
lease on its output at run time (``sft_prep.lease``); the operator refuses earlier, before it
creates anything: a prep whose ``outputDir`` another SFTDataPrep of the namespace already started on
(it has a Job, ``status.jobRef``) stays ``Stalled`` (``OutputInUse``) while that one exists. The
earlier CR keeps the output (it may be finished: its data is what SFTRuns read), so the message
says to delete it or choose another ``outputDir``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def _output(cr: Mapping[str, Any]) -> str | None:
    value = (cr.get("spec") or {}).get("outputDir")
    return str(value).rstrip("/") or None if value else None


def output_claimed_by(cr: Mapping[str, Any], others: Iterable[Mapping[str, Any]]) -> str | None:
    """The name of another live SFTDataPrep of ``cr``'s namespace that started on the same
    ``outputDir`` (the earliest created), or None.

    >>> mine = {"metadata": {"name": "b", "namespace": "ml", "uid": "2"}, "spec": {"outputDir": "s3://x/out/"}}
    >>> first = {"metadata": {"name": "a", "namespace": "ml", "uid": "1"}, "spec": {"outputDir": "s3://x/out"},
    ...          "status": {"jobRef": {"name": "a-prep"}}}
    >>> output_claimed_by(mine, [first, mine])
    'a'
    >>> output_claimed_by(mine, [{**first, "status": {}}]) is None  # not started: no claim yet
    True
    """
    meta = cr.get("metadata") or {}
    output = _output(cr)
    if output is None:
        return None
    claims = []
    for other in others:
        o_meta = other.get("metadata") or {}
        if (
            o_meta.get("uid") == meta.get("uid")
            or o_meta.get("namespace") != meta.get("namespace")
            or o_meta.get("deletionTimestamp")
            or not (other.get("status") or {}).get("jobRef")
            or _output(other) != output
        ):
            continue
        claims.append((str(o_meta.get("creationTimestamp") or ""), str(o_meta.get("name"))))
    return min(claims)[1] if claims else None
