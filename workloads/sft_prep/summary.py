"""The human-readable end-of-run table, and the camelCase result the operator copies into status."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sft_common.progress import format_number
from sft_common.result import PrepResult, PrepTotals


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    for row in rows:
        out.append(
            "  ".join(
                str(c).rjust(w) if i else str(c).ljust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    return out


def render_summary(meta: Mapping[str, Any]) -> str:
    """A few tables a person reads at the end of a run: totals, per dataset, per split, drops."""
    t = meta["totals"]
    lines = [
        f"sft-prep summary (run {meta['run_id']}, pack_size {meta['pack_size']}, {meta['algorithm']})",
        "",
    ]
    cols = [
        "rows",
        "dropped",
        "sequences",
        "truncated",
        "tokens",
        "trainable",
        "bins",
        "efficiency",
        "seq/bin",
    ]

    def row(name: str, e: Mapping[str, Any]) -> list[str]:
        return [
            name,
            format_number(e["rows"]),
            format_number(e["rows_dropped"]),
            format_number(e["sequences"]),
            format_number(e["sequences_truncated"]),
            format_number(e["tokens"]),
            format_number(e["trainable_tokens"]),
            format_number(e["bins"]),
            _pct(e.get("packing_efficiency")),
            "-" if e.get("packing_factor") is None else f"{e['packing_factor']:.2f}",
        ]

    body = [row(f"dataset {n}", e) for n, e in meta["datasets"].items()]
    body += [row(f"split {n}", e) for n, e in meta["splits"].items() if e["shards"]]
    body.append(
        row(
            "TOTAL",
            {**t, "packing_efficiency": meta["packing_efficiency"], "packing_factor": meta["packing_factor"]},
        )
    )
    lines += _table(["", *cols], body)
    lines.append("")
    files = ", ".join(f"{k} {v['files']}" for k, v in meta["splits"].items())
    lines.append(
        f"bins {t['bins']} vs lower bound ceil(tokens/pack_size) = {meta['lower_bound_bins']}; "
        f"shards {meta['num_shards']} ({files} files)"
    )
    if meta["dropped"]:
        lines.append("dropped rows by reason:")
        for reason, n in sorted(meta["dropped"].items(), key=lambda kv: -kv[1]):
            example = (meta.get("examples", {}).get(reason) or [{}])[0]
            hint = (
                f"  e.g. {example.get('dataset')} {example.get('row')}: {example.get('detail')}"
                if example
                else ""
            )
            lines.append(f"  {reason:<36} {n:>10}{hint}")
    if any(meta["truncated"].values()):
        lines.append("truncated: " + ", ".join(f"{k} {v}" for k, v in meta["truncated"].items()))
    for warning in meta.get("warnings") or []:
        lines.append(f"WARNING: {warning}")
    encoding = meta.get("encoding") or {}
    if encoding.get("strategy"):
        by_way = ", ".join(f"{k} {format_number(v)}" for k, v in (encoding.get("sequences") or {}).items())
        reused = encoding.get("reused") or {}
        lines.append(
            f"encoding: {encoding['strategy']} ({encoding.get('why')}); sequences {by_way or 'none'}; "
            f"reused instead of encoded again: {format_number(reused.get('tokens', 0))} tokens "
            f"in {format_number(reused.get('sequences', 0))} sequences"
        )
    return "\n".join(lines)


def result_payload(
    *,
    output_dir: str,
    blend: str | None,
    metadata_uri: str | None,
    meta: Mapping[str, Any] | None,
    pack_size: int,
    pad_seq_to_mult: int,
    shards_done: int,
    shards_total: int,
    worker: int,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The prep success contract (:class:`sft_common.result.PrepResult`) as its camelCase JSON."""
    result = PrepResult(
        output_dir=output_dir,
        blend=blend,
        metadata=metadata_uri,
        pack_size=pack_size,
        pad_seq_to_mult=pad_seq_to_mult,
        shards_done=shards_done,
        shards_total=shards_total,
        worker=worker,
        **dict(extra or {}),
    )
    if meta is not None:
        result.totals = PrepTotals.model_validate(meta["totals"])
        result.packing_efficiency = meta["packing_efficiency"]
    return result.payload()
