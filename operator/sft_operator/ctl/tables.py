"""``sftctl get``'s tables, printed as kubectl prints them.

The API server converts CRs into a ``meta.k8s.io/v1`` Table (a Name column and the CRD's
``additionalPrinterColumns``, the cells already computed); kubectl prints it with its
HumanReadablePrinter (k8s.io/cli-runtime pkg/printers/tableprinter.go) through a tabwriter of minimum
width 6 and padding 3 (GetNewTabWriter), so this module does the same with the same Table:

* headers upper-cased; priority-0 columns, and with ``-o wide`` the others too;
* ``-A``: a NAMESPACE column first (from each row's object metadata);
* several kinds asked for (``get`` alone, ``get sftdatapreps,sftruns``): one block per kind with its
  own header and widths, names as ``kind.group/name``, blocks separated by an empty line
  (kubectl get's separatorWriter); a kind with no rows prints nothing;
* a null cell prints nothing, a number as Go's ``%v``, a string up to its first line break (then
  ``...``); every column but the last is padded, so a row whose last cell is empty keeps the padding.

Pure: the Tables come from :meth:`sft_operator.ctl.cluster.Cluster.table`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

MIN_WIDTH = 6
PADDING = 3
BREAKS = "\f\n\r"


def go_float(value: float) -> str:
    """Go's ``%v`` of a float64 (strconv 'g' with the shortest digits: exponent form when the
    decimal exponent is below -4 or at least 6), e.g. 1.5, 2, 1.234567e+06, 1e-05."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "0"
    mantissa, _, exp_text = repr(abs(value)).partition("e")
    whole, _, frac = mantissa.partition(".")
    raw = whole + (frac if frac != "0" else "")
    stripped = raw.lstrip("0")
    exponent = (int(exp_text) if exp_text else 0) + len(whole) - 1 - (len(raw) - len(stripped))
    digits = stripped.rstrip("0") or "0"
    sign = "-" if value < 0 else ""
    if exponent < -4 or exponent >= 6:
        mant = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{mant}e{'-' if exponent < 0 else '+'}{abs(exponent):02d}"
    if exponent < 0:
        return f"{sign}0.{'0' * (-exponent - 1)}{digits}"
    if len(digits) <= exponent + 1:
        return f"{sign}{digits}{'0' * (exponent + 1 - len(digits))}"
    return f"{sign}{digits[: exponent + 1]}.{digits[exponent + 1 :]}"


def cell_text(cell: Any) -> str:
    if cell is None:
        return ""
    if isinstance(cell, bool):
        return "true" if cell else "false"
    if isinstance(cell, float):
        return go_float(cell)
    text = str(cell)
    cut = min((i for i in (text.find(c) for c in BREAKS) if i >= 0), default=-1)
    return text if cut < 0 else text[:cut] + "..."


@dataclass
class Block:
    """One kind's rows as kubectl prints them; ``widths`` grow as rows are added (``get -w``: later
    rows align with the first table, as kubectl's tabwriter remembers its widths)."""

    header: list[str]
    widths: list[int] = field(default_factory=list)

    def line(self, cells: Sequence[str]) -> str:
        for i, cell in enumerate(cells[:-1]):
            need = max(MIN_WIDTH, len(cell) + PADDING)
            if i >= len(self.widths):
                self.widths.append(need)
            else:
                self.widths[i] = max(self.widths[i], need)
        return "".join(c.ljust(w) for c, w in zip(cells[:-1], self.widths, strict=False)) + cells[-1]

    def fit(self, rows: Sequence[Sequence[str]]) -> None:
        for cells in (self.header, *rows):
            self.line(cells)


def rows_of(
    table: Mapping[str, Any], *, wide: bool, namespaces: bool, kind: str | None
) -> tuple[list[str], list[tuple[tuple[str, str], list[str]]]]:
    """(header, [((namespace, name), cells)]) of a server Table; ``kind``: prefix names with it."""
    columns = table.get("columnDefinitions") or []
    shown = [i for i, c in enumerate(columns) if wide or not c.get("priority")]
    name_col = next(
        (i for i, c in enumerate(columns) if c.get("format") == "name" and c.get("type") == "string"), None
    )
    header = [str(columns[i].get("name", "")).upper() for i in shown]
    if namespaces:
        header.insert(0, "NAMESPACE")
    rows = []
    for row in table.get("rows") or []:
        meta = (row.get("object") or {}).get("metadata") or {}
        cells = list(row.get("cells") or [])
        if kind and name_col is not None and name_col < len(cells):
            cells[name_col] = f"{kind}/{cells[name_col]}"
        texts = [cell_text(cells[i]) if i < len(cells) else "" for i in shown]
        if namespaces:
            texts.insert(0, str(meta.get("namespace") or ""))
        rows.append(((str(meta.get("namespace") or ""), str(meta.get("name") or "")), texts))
    return header, rows


def render(blocks: Sequence[tuple[list[str], Sequence[Sequence[str]]]]) -> str:
    """kubectl's output for these (header, rows) blocks: empty blocks skipped, one empty line between."""
    out = []
    for header, rows in blocks:
        if not rows:
            continue
        block = Block(header)
        block.fit(rows)
        out.append("\n".join(block.line(r) for r in (header, *rows)))
    return "\n\n".join(out)
