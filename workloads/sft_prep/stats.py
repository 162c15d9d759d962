"""Counts that travel from a shard to its receipt and from all receipts to ``metadata.json``.

Row-level numbers (rows, drops by reason with examples, sequences, truncation) are the text stage's
:class:`sft_prep.process.Counts`; the packing stage adds bins and the label count after the mask roll.
Everything is additive, so a dataset's, a split's or the run's numbers are sums over shard receipts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sft_prep.process import Counts as RowCounts


@dataclass
class ShardCounts:
    rows: RowCounts = field(default_factory=RowCounts)
    bins: int = 0
    label_tokens: int = 0
    """Tokens trained as labels: the sum of the rolled loss mask (what the loss really sees)."""
    pad_tokens: int = 0
    """Pad tokens added for ``pad_seq_to_mult`` (not in ``rows.tokens``, which counts real tokens)."""

    def merge(self, other: ShardCounts) -> None:
        self.rows.merge(other.rows)
        self.bins += other.bins
        self.label_tokens += other.label_tokens
        self.pad_tokens += other.pad_tokens

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.rows.to_dict(),
            "bins": self.bins,
            "label_tokens": self.label_tokens,
            "pad_tokens": self.pad_tokens,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ShardCounts:
        return cls(
            RowCounts.from_dict(data),
            int(data.get("bins", 0)),
            int(data.get("label_tokens", 0)),
            int(data.get("pad_tokens", 0)),
        )

    @classmethod
    def total(cls, parts: Iterable[ShardCounts]) -> ShardCounts:
        out = cls()
        for part in parts:
            out.merge(part)
        return out

    def summary(self, pack_size: int) -> dict[str, Any]:
        """The headline numbers (metadata totals, per dataset, per split)."""
        r = self.rows
        return {
            "rows": r.rows,
            "rows_kept": r.rows_kept,
            "rows_dropped": sum(r.dropped.values()),
            "sequences": r.sequences,
            "sequences_truncated": r.truncated,
            "tokens": r.tokens,
            "trainable_tokens": self.label_tokens,
            "bins": self.bins,
            "packing_efficiency": packing_efficiency(r.tokens, self.bins, pack_size),
            "packing_factor": packing_factor(r.sequences, self.bins),
        }


def packing_efficiency(tokens: int, bins: int, pack_size: int) -> float | None:
    """tokens / (bins * pack_size): the share of the trained context that is real data."""
    return round(tokens / (bins * pack_size), 6) if bins else None


def packing_factor(sequences: int, bins: int) -> float | None:
    """Sequences per packed row."""
    return round(sequences / bins, 4) if bins else None
