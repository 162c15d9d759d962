"""``watch`` / ``describe``: what a person wants to see of a CR, from its object alone (``get`` prints
kubectl's tables instead: :mod:`sft_operator.ctl.tables`).

Pure functions of the CR objects (cluster or local status JSON look the same), so the local runner
prints exactly the rows ``sftctl watch`` prints for the cluster.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sft_common.progress import format_number, parse_time

TERMINAL = ("Succeeded", "Failed")
COLUMNS = ("NAME", "PHASE", "PROGRESS", "LOSS", "TOKENS/S", "ETA", "MESSAGE")
MESSAGE_WIDTH = 70


def human_duration(seconds: float | None) -> str:
    """``45s``, ``12m``, ``3h05m``, ``2d4h``: an ETA a person reads at a glance."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "-"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s" if minutes < 10 else f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours}h"


def kind_of(cr: Mapping[str, Any]) -> str:
    return str(cr.get("kind") or "?")


def ref(cr: Mapping[str, Any]) -> str:
    return f"{kind_of(cr)}/{(cr.get('metadata') or {}).get('name')}"


def progress_of(cr: Mapping[str, Any]) -> dict[str, Any]:
    """Progress, loss, tokens/s and ETA of either kind, in one shape."""
    status = cr.get("status") or {}
    progress = status.get("progress") or {}
    phase = status.get("phase")
    if kind_of(cr) == "SFTRun":
        done, total = progress.get("completed"), progress.get("total")
        iterations = progress.get("iterations")
        text = iterations or (f"{int(done)}/{int(total)}" if done is not None and total else "-")
        if progress.get("percent") is not None and phase not in TERMINAL:
            text += f" ({progress['percent']:g}%)"
        loss = progress.get("loss")
        if loss is None:
            loss = (status.get("outputs") or {}).get("finalLoss")
        eta = progress.get("etaSeconds") if phase == "Running" else None
        rate = progress.get("tokensPerSecond") if phase == "Running" else None
        return {"progress": text, "loss": loss, "rate": rate, "eta": eta}
    shards = progress.get("shards")
    text = f"{shards} shards" if shards else "-"
    if progress.get("percentText") and phase not in TERMINAL:
        text += f" ({progress['percentText']})"
    workers = progress.get("workers") or {}
    etas = [e for e in (w.get("etaSeconds") for w in workers.values() if isinstance(w, Mapping)) if e]
    eta = max(etas) if etas and phase == "Running" else None
    rate = progress.get("tokensPerSecond") if phase == "Running" else None
    return {"progress": text, "loss": None, "rate": rate, "eta": eta}


def row(cr: Mapping[str, Any]) -> tuple[str, ...]:
    """The columns of :data:`COLUMNS` (the message cut at :data:`MESSAGE_WIDTH`)."""
    status = cr.get("status") or {}
    facts = progress_of(cr)
    loss = f"{facts['loss']:.4f}" if isinstance(facts["loss"], int | float) else "-"
    rate = format_number(round(float(facts["rate"]))) if facts["rate"] else "-"
    message = str(status.get("message") or "")
    if len(message) > MESSAGE_WIDTH:
        message = message[: MESSAGE_WIDTH - 3] + "..."
    return (
        ref(cr),
        str(status.get("phase") or "-"),
        facts["progress"],
        loss,
        rate,
        human_duration(facts["eta"]),
        message,
    )


def table(crs: Sequence[Mapping[str, Any]], *, namespaces: bool = False) -> str:
    """``namespaces``: a NAMESPACE column first (``watch -A``)."""
    columns: tuple[str, ...] = COLUMNS
    rows = [row(cr) for cr in crs]
    if namespaces:
        columns = ("NAMESPACE", *columns)
        rows = [
            (str((cr.get("metadata") or {}).get("namespace") or "-"), *r)
            for cr, r in zip(crs, rows, strict=True)
        ]
    every = [columns, *rows]
    widths = [max(len(r[i]) for r in every) for i in range(len(columns))]
    return "\n".join("   ".join(cell.ljust(widths[i]) for i, cell in enumerate(r)).rstrip() for r in every)


def all_terminal(crs: Sequence[Mapping[str, Any]]) -> bool:
    return bool(crs) and all((cr.get("status") or {}).get("phase") in TERMINAL for cr in crs)


def any_failed(crs: Sequence[Mapping[str, Any]]) -> bool:
    return any((cr.get("status") or {}).get("phase") == "Failed" for cr in crs)


def _age(timestamp: str | None, now: datetime | None = None) -> str:
    if not timestamp:
        return "-"
    then = parse_time(timestamp)
    if then is None:
        return timestamp
    return human_duration(((now or datetime.now(UTC)) - then).total_seconds())


def describe(cr: Mapping[str, Any], children: Sequence[Mapping[str, Any]] = ()) -> str:
    """A ``kubectl describe``-like page: state, conditions, failure, outputs, progress, children."""
    meta = cr.get("metadata") or {}
    status = cr.get("status") or {}
    lines = [
        f"Name:       {meta.get('name')}",
        f"Namespace:  {meta.get('namespace') or '-'}",
        f"Kind:       {kind_of(cr)}",
        f"Created:    {meta.get('creationTimestamp') or '-'} ({_age(meta.get('creationTimestamp'))} ago)",
        f"Phase:      {status.get('phase') or '-'}",
        f"Message:    {status.get('message') or '-'}",
    ]
    if status.get("observedGeneration") is not None and meta.get("generation") is not None:
        stale = status["observedGeneration"] != meta["generation"]
        lines.append(
            f"Generation: {meta['generation']} (status observed {status['observedGeneration']}"
            + (", not yet reconciled)" if stale else ")")
        )
    facts = progress_of(cr)
    lines.append(
        f"Progress:   {facts['progress']}"
        + (f"   loss {facts['loss']:.4f}" if isinstance(facts["loss"], int | float) else "")
        + (f"   {format_number(round(float(facts['rate'])))} tokens/s" if facts["rate"] else "")
        + (f"   ETA {human_duration(facts['eta'])}" if facts["eta"] else "")
    )
    for key in ("startTime", "completionTime"):
        if status.get(key):
            lines.append(f"{key[0].upper() + key[1:]}:{' ' * (11 - len(key))}{status[key]}")
    failure = status.get("failure")
    if failure:
        lines += [
            "",
            "Failure:",
            f"  Reason:    {failure.get('reason')}",
            f"  Message:   {failure.get('message')}",
        ]
        for key, label in (("replica", "Replica"), ("pod", "Pod"), ("exitCode", "Exit code")):
            if failure.get(key) is not None:
                lines.append(f"  {label + ':':<11}{failure[key]}")
        if failure.get("logTail"):
            lines.append("  Last log lines:")
            lines += [f"    {line}" for line in str(failure["logTail"]).splitlines()]
    conditions = status.get("conditions") or []
    if conditions:
        lines += ["", "Conditions:"]
        rows = [("TYPE", "STATUS", "REASON", "SINCE", "MESSAGE")]
        for c in conditions:
            rows.append(
                (
                    str(c.get("type")),
                    str(c.get("status")),
                    str(c.get("reason") or ""),
                    _age(c.get("lastTransitionTime")),
                    str(c.get("message") or ""),
                )
            )
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines += ["  " + "  ".join(r[i].ljust(widths[i]) for i in range(4)) + "  " + r[4] for r in rows]
    outputs = status.get("outputs")
    if outputs:
        lines += ["", "Outputs:"]
        lines += _nested(outputs, "  ")
    refs = [(k, status[k]) for k in ("jobRef", "configMapRef", "dataPrepRef") if status.get(k)]
    if refs or children:
        lines += ["", "Children:"]
        for key, value in refs:
            lines.append(f"  {key}: {value.get('kind')}/{value.get('name')}")
        for child in children:
            cmeta = child.get("metadata") or {}
            phase = (child.get("status") or {}).get("phase") or ""
            lines.append(f"  {child.get('kind')}/{cmeta.get('name')}  {phase}".rstrip())
    return "\n".join(lines)


def _nested(value: Mapping[str, Any], indent: str) -> list[str]:
    out: list[str] = []
    for key, item in value.items():
        if isinstance(item, Mapping):
            out.append(f"{indent}{key}:")
            out += _nested(item, indent + "  ")
        else:
            out.append(f"{indent}{key}: {item}")
    return out
