"""``sftctl report DIR|NAME``: ``report.png`` and ``report.html`` of a run and its data.

What it reads is what the workloads really write:

* the trainer's metrics history (``logging.metricsFile``, JSON lines; ``sftctl run --local`` sets it to
  ``WORKDIR/sftrun/<name>/metrics.jsonl`` when the spec leaves it unset): one line per iteration
  (``iteration``, ``loss`` of that iteration, ``lr``, ``tokens``, ``tokens_per_second``) and
  ``validation_loss`` lines;
* sft-prep's ``metadata.json`` (rows dropped by reason, sequences dropped, truncations, totals,
  packing efficiency) and its Parquet shards (the token count of every packed bin, for the histogram).

``DIR`` is a ``sftctl run --local`` state dir (``WORKDIR/sftrun/NAME`` or ``WORKDIR/sftdataprep/NAME``:
its ``config.yaml`` says where the data and metrics are), an sft-prep output dir, or a dir holding a
``metrics.jsonl``. ``NAME`` is a CR in the cluster: the data comes from its status
(``outputs.metadata`` / ``outputs.data``) and the metrics from ``spec.logging.metricsFile``, read
through the project's storage layer (local paths, ``file://``, ``s3://``) where this machine can reach
them; what it cannot reach is said in the report instead of drawn.
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sft_common import storage

MAX_HISTOGRAM_SHARDS = 16
"""Shards read for the packing histogram (a sample of very large data sets)."""
THROUGHPUT_WINDOW = 20
"""Iterations the throughput curve averages over: a since-start mean hides a slow-down (a straggler
node, a throttled disk) behind the hours before it, and a single iteration is too noisy."""
TRAINING_PANELS = ("Loss", "Learning rate", "Throughput")
DATA_PANELS = ("Packed bin lengths (train)", "Dropped / truncated by reason", "Data counts")


@dataclass
class ReportData:
    title: str
    metrics: list[dict[str, Any]] = field(default_factory=list)
    log_interval: int = 10
    metadata: dict[str, Any] | None = None
    bin_lengths: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def reported_losses(records: Sequence[Mapping[str, Any]], interval: int) -> list[tuple[int, float]]:
    """The trainer's reported loss at each log line: the mean of the per-iteration losses since the
    previous one (``sft_train.engines.hf_engine.window_loss``), rounded to 4 decimals."""
    steps = [(int(r["iteration"]), float(r["loss"])) for r in records if "loss" in r and "iteration" in r]
    out: list[tuple[int, float]] = []
    window: list[float] = []
    last = steps[-1][0] if steps else 0
    for iteration, loss in steps:
        window.append(loss)
        if iteration % interval == 0 or iteration == last:
            out.append((iteration, round(sum(window) / len(window), 4)))
            window = []
    return out


def windowed_throughput(
    records: Sequence[Mapping[str, Any]], window: int = THROUGHPUT_WINDOW
) -> tuple[list[tuple[int, float]], bool]:
    """(iteration, tokens/s over the last ``window`` iterations) per iteration, and whether it is
    windowed: from the per-iteration ``tokens`` and the trainer's ``elapsed_seconds`` (seconds since the
    process started; it restarts at 0 after a resume, and so does the window). Records without
    ``elapsed_seconds`` (another writer) give their own ``tokens_per_second``, a since-start mean."""
    rows = [r for r in records if "iteration" in r and ("tokens_per_second" in r or "elapsed_seconds" in r)]
    if not rows or not all("elapsed_seconds" in r and "tokens" in r for r in rows):
        return [
            (int(r["iteration"]), float(r["tokens_per_second"])) for r in rows if "tokens_per_second" in r
        ], False
    out: list[tuple[int, float]] = []
    segment: list[tuple[float, float]] = []  # (elapsed, tokens) since the process (re)started
    for r in rows:
        elapsed, tokens = float(r["elapsed_seconds"]), float(r["tokens"])
        if segment and elapsed < segment[-1][0]:
            segment = []
        segment.append((elapsed, tokens))
        if len(segment) > window:
            start = segment[-window - 1][0]
            done = sum(t for _, t in segment[-window:])
        else:
            start, done = 0.0, sum(t for _, t in segment)
        span = elapsed - start
        if span > 0:
            out.append((int(r["iteration"]), done / span))
    return out, True


def _read_jsonl(uri: str) -> list[dict[str, Any]]:
    out = []
    for line in storage.read_text(uri).splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


def bin_lengths(data_dir: str, limit: int = MAX_HISTOGRAM_SHARDS) -> list[int]:
    """Tokens in each packed bin of the train split (Parquet ``input_ids`` list lengths)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    files = sorted(storage.glob(storage.join(data_dir, "splits", "train", "*.parquet")))[:limit]
    lengths: list[int] = []
    for uri in files:
        table = pq.read_table(io.BytesIO(storage.read_bytes(uri)), columns=["input_ids"])
        lengths += pc.list_value_length(table.column("input_ids")).to_pylist()
    return lengths


def _add_data(data: ReportData, data_dir: str) -> None:
    meta_uri = storage.join(data_dir, "metadata.json")
    try:
        data.metadata = json.loads(storage.read_text(meta_uri))
    except Exception as exc:
        data.notes.append(f"no data statistics: cannot read {meta_uri} ({exc})")
        return
    try:
        data.bin_lengths = bin_lengths(data_dir)
    except Exception as exc:
        data.notes.append(f"no packing histogram: cannot read the train shards of {data_dir} ({exc})")


def _add_metrics(data: ReportData, uri: str | None) -> None:
    if not uri:
        data.notes.append("no training curves: the run has no logging.metricsFile")
        return
    try:
        data.metrics = _read_jsonl(uri)
    except Exception as exc:
        data.notes.append(f"no training curves: cannot read {uri} from here ({exc})")


def from_dir(path: Path) -> ReportData:
    data = ReportData(title=str(path))
    config_path = path / "config.yaml"
    if (path / "status.json").exists() and config_path.exists():
        status = json.loads((path / "status.json").read_text())
        config = yaml.safe_load(config_path.read_text())
        data.title = f"{status.get('kind')}/{status['metadata']['name']} (local run, {path})"
        if status.get("kind") == "SFTRun":
            data.log_interval = int(config.get("logging", {}).get("log_interval") or 10)
            _add_metrics(data, config.get("logging", {}).get("metrics_file"))
            _add_data(data, config["data"]["path"])
        else:
            _add_data(data, config["output_dir"])
        return data
    if (path / "metadata.json").exists():
        _add_data(data, str(path))
    if (path / "metrics.jsonl").exists():
        _add_metrics(data, str(path / "metrics.jsonl"))
    if data.metadata is None and not data.metrics:
        raise FileNotFoundError(
            f"{path} is neither a `sftctl run --local` state dir (status.json + config.yaml), an sft-prep "
            "output dir (metadata.json) nor a dir with a metrics.jsonl"
        )
    return data


def from_cluster(crs: Sequence[Mapping[str, Any]]) -> ReportData:
    names = ", ".join(f"{c.get('kind')}/{c['metadata']['name']}" for c in crs)
    data = ReportData(title=names)
    data_dir = None
    for cr in crs:
        outputs = (cr.get("status") or {}).get("outputs") or {}
        spec = cr.get("spec") or {}
        if cr.get("kind") == "SFTRun":
            logging = spec.get("logging") or {}
            data.log_interval = int(logging.get("logInterval") or 10)
            _add_metrics(data, logging.get("metricsFile"))
            data_dir = data_dir or outputs.get("data") or (spec.get("data") or {}).get("uri")
        else:
            data_dir = outputs.get("outputDir") or data_dir
    if data_dir:
        _add_data(data, data_dir)
    else:
        data.notes.append("no data statistics: no output directory recorded in the status yet")
    return data


# -- drawing --------------------------------------------------------------------------------------
def _series(records: Sequence[Mapping[str, Any]], key: str) -> tuple[list[int], list[float]]:
    rows = [(int(r["iteration"]), float(r[key])) for r in records if key in r and "iteration" in r]
    return [i for i, _ in rows], [v for _, v in rows]


def panels(data: ReportData) -> tuple[str, ...]:
    """The charts the report draws: the training ones only with training metrics, the data ones only
    with sft-prep's metadata (a prep-only report has no empty loss panels); both rows when neither is
    there, each then saying ``no data``."""
    training, prepared = bool(data.metrics), data.metadata is not None
    if training == prepared:
        return (*TRAINING_PANELS, *DATA_PANELS)
    return TRAINING_PANELS if training else DATA_PANELS


def draw_png(data: ReportData) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    titles = panels(data)
    rows = len(titles) // 3
    fig, grid = plt.subplots(rows, 3, figsize=(16, 4.5 * rows), squeeze=False)
    fig.suptitle(f"sftctl report: {data.title}", fontsize=12)
    axes = dict(zip(titles, grid.flat, strict=True))
    if "Loss" in axes:
        _draw_training(data, axes)
    if "Data counts" in axes:
        _draw_data(data, axes)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return buffer.getvalue()


def _draw_training(data: ReportData, axes: Mapping[str, Any]) -> None:
    loss_ax, lr_ax, rate_ax = (axes[t] for t in TRAINING_PANELS)
    steps, losses = _series(data.metrics, "loss")
    if steps:
        loss_ax.plot(steps, losses, color="#9bbbd9", linewidth=1, label="train loss (per iteration)")
        reported = reported_losses(data.metrics, data.log_interval)
        loss_ax.plot(
            [i for i, _ in reported],
            [v for _, v in reported],
            color="#1f5fa8",
            marker="o",
            markersize=3,
            label=f"train loss (mean over {data.log_interval} iterations, as reported)",
        )
        vsteps, vloss = _series(data.metrics, "validation_loss")
        if vsteps:
            loss_ax.plot(vsteps, vloss, "s", color="#d9534f", markersize=7, label="validation loss")
        loss_ax.legend(fontsize=8)
    _frame(loss_ax, "Loss", "iteration", "loss (per token)", bool(steps))
    lsteps, lrs = _series(data.metrics, "lr")
    if lsteps:
        lr_ax.plot(lsteps, lrs, color="#5cb85c")
        lr_ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    _frame(lr_ax, "Learning rate", "iteration", "lr", bool(lsteps))
    rates, windowed = windowed_throughput(data.metrics)
    if rates:
        rate_ax.plot([i for i, _ in rates], [v for _, v in rates], color="#f0ad4e")
    unit = f"tokens/s (last {THROUGHPUT_WINDOW} iterations)" if windowed else "tokens/s (since start)"
    _frame(rate_ax, "Throughput", "iteration", unit, bool(rates))


def _draw_data(data: ReportData, axes: Mapping[str, Any]) -> None:
    hist_ax, reason_ax, totals_ax = (axes[t] for t in DATA_PANELS)
    meta = data.metadata or {}
    if data.bin_lengths:
        pack = int(meta.get("pack_size") or max(data.bin_lengths))
        hist_ax.hist(data.bin_lengths, bins=min(40, max(5, len(set(data.bin_lengths)))), color="#6f42c1")
        hist_ax.axvline(pack, color="black", linestyle="--", linewidth=1, label=f"pack size {pack}")
        eff = meta.get("packing_efficiency")
        hist_ax.legend(fontsize=8, title=f"efficiency {eff:.1%}" if isinstance(eff, float) else None)
    _frame(hist_ax, DATA_PANELS[0], "tokens in bin", "bins", bool(data.bin_lengths))
    reasons = counts_by_reason(meta)
    if reasons:
        labels = list(reasons)
        reason_ax.barh(labels, [reasons[k] for k in labels], color="#d9534f")
        reason_ax.invert_yaxis()
        reason_ax.tick_params(axis="y", labelsize=8)
    _frame(reason_ax, DATA_PANELS[1], "count", "", bool(reasons))
    totals = meta.get("totals") or {}
    if totals:
        keys = [k for k in ("rows", "rows_kept", "sequences", "bins") if k in totals]
        totals_ax.bar(keys, [totals[k] for k in keys], color="#1f5fa8")
        for i, k in enumerate(keys):
            totals_ax.annotate(str(totals[k]), (i, totals[k]), ha="center", va="bottom", fontsize=8)
    _frame(totals_ax, DATA_PANELS[2], "", "count", bool(totals))


def _frame(ax: Any, title: str, xlabel: str, ylabel: str, has_data: bool) -> None:
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylabel(ylabel, fontsize=9)
    ax.grid(alpha=0.3)
    if not has_data:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="grey")


def counts_by_reason(meta: Mapping[str, Any]) -> dict[str, int]:
    """``rows: <reason>``, ``sequences: <reason>``, ``truncated`` and template-dropped fields."""
    out: dict[str, int] = {}
    for reason, n in (meta.get("dropped") or {}).items():
        out[f"rows: {reason}"] = int(n)
    for reason, n in (meta.get("dropped_sequences") or {}).items():
        out[f"sequences: {reason}"] = int(n)
    truncated = (meta.get("truncated") or {}).get("sequences")
    if truncated:
        out["sequences: truncated"] = int(truncated)
    for name, n in (meta.get("template_dropped_fields") or {}).items():
        if n:
            out[f"messages: template dropped {name}"] = int(n)
    return out


def render_html(data: ReportData, png: bytes) -> str:
    meta = data.metadata or {}
    esc = html.escape
    reported = reported_losses(data.metrics, data.log_interval)
    vsteps, vloss = _series(data.metrics, "validation_loss")
    summary: list[tuple[str, str]] = []
    if reported:
        summary.append(
            (
                "train loss (reported)",
                f"{reported[0][1]:.4f} → {reported[-1][1]:.4f} "
                f"(iterations {reported[0][0]}–{reported[-1][0]})",
            )
        )
    if vloss:
        summary.append(("validation loss", f"{vloss[-1]:.4f} (iteration {vsteps[-1]})"))
    rates, windowed = windowed_throughput(data.metrics)
    if rates:
        window = f"last {THROUGHPUT_WINDOW} iterations" if windowed else "since start"
        summary.append((f"tokens/s ({window})", f"{rates[-1][1]:,.0f} (iteration {rates[-1][0]})"))
    totals = meta.get("totals") or {}
    for key in ("rows", "rows_kept", "rows_dropped", "sequences", "tokens", "trainable_tokens", "bins"):
        if key in totals:
            summary.append((key.replace("_", " "), f"{totals[key]:,}"))
    if "packing_efficiency" in meta:
        summary.append(
            ("packing efficiency", f"{meta['packing_efficiency']:.2%} (pack size {meta.get('pack_size')})")
        )
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in summary)
    reasons = (
        "".join(
            f"<tr><td>{esc(k)}</td><td class=num>{v:,}</td></tr>" for k, v in counts_by_reason(meta).items()
        )
        or "<tr><td colspan=2>nothing dropped</td></tr>"
    )
    splits = "".join(
        f"<tr><td>{esc(name)}</td><td class=num>{s.get('files', 0)}</td>"
        f"<td class=num>{s.get('sequences', 0):,}</td>"
        f"<td class=num>{s.get('tokens', 0):,}</td><td class=num>{s.get('bins', 0):,}</td></tr>"
        for name, s in (meta.get("splits") or {}).items()
    )
    notes = "".join(f"<li>{esc(n)}</li>" for n in data.notes)
    image = base64.b64encode(png).decode()
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>sftctl report: {esc(data.title)}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 2em auto; max-width: 1500px; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 2em 1em 0; display: inline-table; vertical-align: top; }}
th, td {{ border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; }}
td.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
img {{ max-width: 100%; border: 1px solid #eee; }}
.notes {{ color: #8a6d3b; }}
#image-error {{ display: none; color: #a94442; }}
</style>
</head>
<body>
<h1>sftctl report</h1>
<p>{esc(data.title)}</p>
<table id="summary"><caption>Summary</caption>{rows}</table>
<table id="reasons"><caption>Data counts by reason</caption>
<tr><th>what</th><th>count</th></tr>{reasons}</table>
<table id="splits"><caption>Splits</caption>
<tr><th>split</th><th>files</th><th>sequences</th><th>tokens</th><th>bins</th></tr>{splits}</table>
<ul class="notes">{notes}</ul>
<p id="image-error">The chart image could not be decoded.</p>
<img id="charts" alt="{esc(", ".join(panels(data)))}"
 src="data:image/png;base64,{image}">
<script>
(function () {{
  var img = document.getElementById("charts");
  function done() {{
    var ok = img.complete && img.naturalWidth > 0;
    document.body.setAttribute("data-rendered", ok ? "ok" : "image-error");
    if (!ok) document.getElementById("image-error").style.display = "block";
  }}
  if (img.complete) done();
  else {{ img.addEventListener("load", done); img.addEventListener("error", done); }}
}})();
</script>
</body>
</html>
"""


def write_report(data: ReportData, out_dir: Path) -> tuple[Path, Path]:
    png = draw_png(data)
    out_dir.mkdir(parents=True, exist_ok=True)
    png_path, html_path = out_dir / "report.png", out_dir / "report.html"
    png_path.write_bytes(png)
    html_path.write_text(render_html(data, png))
    return png_path, html_path


def run(args: argparse.Namespace, connect: Callable[[argparse.Namespace], Any]) -> int:
    from sft_operator.ctl.cluster import ClusterError, find

    output = args.output_dir
    if getattr(args, "old_output", None):  # `report --output DIR`, before -o became an output format
        print("warning: report --output is deprecated; use --output-dir", file=sys.stderr)
        output = output or args.old_output
    target = Path(args.target)
    if target.is_dir():
        try:
            data = from_dir(target)
        except FileNotFoundError as exc:
            raise ClusterError(str(exc)) from None
        out_dir = Path(output) if output else target
    else:
        cluster = connect(args)
        data = from_cluster(find(cluster, args.target))
        out_dir = Path(output or ".")
    png, page = write_report(data, out_dir)
    for note in data.notes:
        print(f"note: {note}")
    print(f"wrote {png}\nwrote {page}")
    return 0
