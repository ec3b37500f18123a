"""The one table of figures (``latentkit.estimates.figure_table``) behind ``evaluate``'s
report and the diagnostics: one row per figure, its value, ± its standard error, its unit.

Mutants these tests kill: the decimals by unit lost (bits/dim shown to 2 places), a
missing figure shown as a number, a standard error shown where it is not finite, text
values formatted as numbers, rows reordered or dropped.
"""

from __future__ import annotations

import math

from rich.console import Console

from latentkit.estimates import Estimate, estimate_cells, figure_table


def _cells(table) -> list[list[str]]:
    """The table's rows as the text of each cell."""
    columns = [[str(c) for c in col._cells] for col in table.columns]
    return [list(row) for row in zip(*columns, strict=True)]


def test_rows_cells_and_decimals_by_unit():
    rows = [
        ("ELBO", Estimate(-85.4567, 0.3456), "nats"),
        ("NLL", Estimate(0.123456, 0.00123), "bits/dim"),
        ("missing", None, "nats"),
        ("one example", Estimate(2.0, math.nan), "nats"),
        ("active units", "3 / 16", ""),
    ]
    table = figure_table("t", rows, places={"bits/dim": 4}, caption="c")
    assert [c.header for c in table.columns] == ["figure", "value", "stderr", "unit"]
    assert _cells(table) == [
        ["ELBO", "-85.46", "± 0.35", "nats"],
        ["NLL", "0.1235", "± 0.0012", "bits/dim"],
        ["missing", "—", "", "nats"],
        ["one example", "2.00", "", "nats"],
        ["active units", "3 / 16", "", ""],
    ]
    assert table.title == "t" and table.caption == "c"
    assert _cells(figure_table("t", rows[:1], places=3)) == [["ELBO", "-85.457", "± 0.346", "nats"]]


def test_a_name_is_text_not_markup():
    """A figure's name is shown as written (``[z|x]`` is no rich markup tag)."""
    out = Console(width=100, record=True)
    out.print(figure_table("t", [("Cov_x E[z|x] > 0.01", "1 / 2", "")]))
    assert "Cov_x E[z|x] > 0.01" in out.export_text()


def test_estimate_cells():
    assert estimate_cells(Estimate(1.0, 0.5)) == ("1.00", "± 0.50")
    assert estimate_cells(Estimate(1.0, math.inf), 1) == ("1.0", "")
    assert estimate_cells(None) == ("—", "")
