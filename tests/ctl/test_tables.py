"""kubectl's cell formatting (sft_operator.ctl.tables), where one case is not already compared with the
real kubectl in test_kubectl_shape.py: Go's ``%v`` of a float64 (strconv.FormatFloat 'g', -1: exponent
form when the decimal exponent is < -4 or >= 6) and the cut at a line break (tableprinter.go)."""

from __future__ import annotations

import pytest

from sft_operator.ctl.tables import Block, cell_text, go_float


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (2.0, "2"),
        (1.5, "1.5"),
        (-0.25, "-0.25"),
        (0.0001, "0.0001"),
        (0.00001, "1e-05"),
        (123456.7, "123456.7"),
        (100000.0, "100000"),
        (1e6, "1e+06"),
        (1234567.0, "1.234567e+06"),
        (2.5e-7, "2.5e-07"),
        (1e21, "1e+21"),
        (0.0, "0"),
    ],
)
def test_numbers_print_as_go_prints_them(value: float, text: str) -> None:
    assert go_float(value) == text


def test_cells_and_padding() -> None:
    assert cell_text(None) == "" and cell_text(True) == "true" and cell_text(3) == "3"
    assert cell_text("one\ntwo") == "one..." and cell_text("a\rb") == "a..."
    block = Block(["NAME", "X", "MESSAGE"])
    block.fit([["a", "", ""]])
    # minimum width 6, padding 3, the last column never padded (but the one before an empty one is)
    assert block.line(["a", "", ""]) == "a      " + " " * 6
    assert block.line(["NAME", "X", "MESSAGE"]) == "NAME   X     MESSAGE"
