"""Showing a comparison of runs: each :class:`Row` (a run, its figure and its paired
difference) and the :class:`Comparison` of them as a rich table, Markdown or JSON."""

from __future__ import annotations

import math
from typing import Any

import attrs

from latentkit.compare.runs import Figure, RunRecord, _is_count, _is_number
from latentkit.estimates import Estimate

__all__ = ["Comparison", "Row"]


@attrs.frozen
class Row:
    """One row of a :class:`Comparison`."""

    run: RunRecord
    figure: Figure | None
    difference: Estimate | None
    """Paired mean of (this run's NLL − the reference's) over the shared examples, nats."""
    note: str
    """Why there is no paired difference (or ``reference``)."""
    differs: tuple[str, ...]
    """Protocol fields in which this run differs from the reference (``allow_mixed``)."""
    fld: Estimate | None = None
    """FLD(this run) − FLD(reference) ± √(se₁² + se₂²), where both measured sample quality
    alike (:func:`~latentkit.compare.quality.fld_difference`)."""

    def _bpd(self, e: Estimate | None) -> Estimate | None:
        """An estimate in nats per example as bits/dim (None for continuous data)."""
        if e is None or not self.run.discrete:
            return None
        scale = self.run.data_dims * math.log(2.0)
        return Estimate(e.mean / scale, e.stderr / scale)

    def to_json(self, reference: str) -> dict[str, Any]:
        """Plain JSON values of the row, its difference taken against ``reference``."""
        r = self.run
        return {
            "run": r.name,
            "path": str(r.path),
            "model": r.model,
            "objective": r.objective,
            "figure": None if self.figure is None else self.figure.to_json(),
            "paired_difference": None
            if self.difference is None
            else {
                "reference": reference,
                "nats": self.difference.to_json(),
                "bits_per_dim": _json_or_none(self._bpd(self.difference)),
                "num_examples": int(r.per_example["index"].numel()),
            },
            "paired_note": self.note,
            "other_figures": [f.to_json() for f in r.figures.values() if f is not self.figure],
            "training": r.training,
            "data": r.data,
            "protocol": r.protocol,
            "differs_from_reference": list(self.differs),
            "sample_quality": None if r.sample_quality is None else r.sample_quality.to_json(),
            "fld_difference": _json_or_none(self.fld),
        }


def _json_or_none(e: Estimate | None) -> dict[str, float | None] | None:
    """An estimate's JSON, or None."""
    return None if e is None else e.to_json()


def _fmt(e: Estimate | None, digits: int, *, sign: bool = False) -> str:
    """mean ± s.e. to ``digits`` places (— where there is no finite mean)."""
    if e is None or not math.isfinite(e.mean):
        return "—"
    mean = f"{e.mean:+.{digits}f}" if sign else f"{e.mean:.{digits}f}"
    return mean if not math.isfinite(e.stderr) else f"{mean} ± {e.stderr:.{digits}f}"


def _duration(seconds: Any) -> str:
    """Seconds as text in the unit that reads best."""
    if not _is_number(seconds):
        return "time not recorded"
    if seconds < 1:
        return f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _training_text(t: dict[str, Any]) -> str:
    """Steps, wall time and where a run trained, as one cell."""
    words = [f"{t['steps']} steps", _duration(t["train_seconds"])]
    since = t.get("seconds_since_step")
    if _is_count(since) and since > 0 and _is_number(t["train_seconds"]):
        words[-1] += f" (from step {since})"
    if t.get("device"):
        where = str(t["device"])
        if t.get("device_name"):
            where += f" {t['device_name']}"
        if _is_count(t.get("threads")) and str(t["device"]).startswith("cpu"):
            where += f", {t['threads']} thread" + ("s" if t["threads"] != 1 else "")
        if _is_count(t.get("world_size")) and t["world_size"] > 1:
            where += f", × {t['world_size']} processes"
        words.append(where)
    return ", ".join(words)


_NUMBERS = ("nats", "bits/dim", "FLD ± s.e.")


@attrs.frozen
class Comparison:
    """The rows of :func:`compare_runs`, best figure first, and how to show them."""

    rows: list[Row]
    reference: str
    figure: str
    differences: dict[str, dict[str, str]]
    """Protocol fields on which the runs differ (empty unless ``allow_mixed``)."""
    sort: str = "nll"
    """What orders the rows: ``nll`` (the figure) or ``fld`` (the sample quality's)."""
    quality_differences: dict[str, dict[str, str]] = attrs.field(factory=dict)
    """Sample-quality protocol fields on which the runs that measured it differ."""

    @property
    def mixed(self) -> bool:
        """Whether the runs differ in protocol (compared with ``allow_mixed``)."""
        return bool(self.differences)

    def _cells(self) -> list[tuple[str, list[str]]]:
        """(header, one cell per row) of every column."""
        rows = self.rows
        cols = [
            ("run", [r.run.name for r in rows]),
            ("model", [r.run.model for r in rows]),
            ("objective", [r.run.objective for r in rows]),
            ("bound", [r.figure.label if r.figure else f"no {self.figure}" for r in rows]),
            ("bounds", [r.figure.bounds if r.figure else "" for r in rows]),
            ("nats", [_fmt(r.figure.nll if r.figure else None, 2) for r in rows]),
            ("bits/dim", [_fmt(r.figure.bits_per_dim if r.figure else None, 4) for r in rows]),
            (
                f"Δ vs {self.reference} (nats, paired)",
                [
                    _fmt(r.difference, 3, sign=True)
                    if r.difference is not None
                    else (r.note if r.note == "reference" else f"— ({r.note})")
                    for r in rows
                ],
            ),
            ("test examples", [str(r.figure.num_examples) if r.figure else "" for r in rows]),
            ("training", [_training_text(r.run.training) for r in rows]),
            (
                "data",
                [
                    " ".join(str(r.run.data.get(k)) for k in ("name", "variant", "split"))
                    for r in rows
                ],
            ),
            (
                "other figures",
                [
                    "; ".join(
                        f"{f.label} {_fmt(f.nll, 2)}"
                        for f in r.run.figures.values()
                        if f is not r.figure
                    )
                    for r in rows
                ],
            ),
        ]
        if self.mixed:
            cols.append(("differs from reference", [", ".join(r.differs) or "" for r in rows]))
        if any(r.run.sample_quality is not None for r in rows):
            cols += _quality_cells(rows, self.reference)
        return cols

    @property
    def best(self) -> Row | None:
        """The row of the lowest figure (the tightest bound; with ``sort`` ``fld``, the
        lowest FLD, which compare_runs makes sure some run has)."""
        return self.rows[0] if self.rows and self.rows[0].figure is not None else None

    @property
    def _bold(self) -> str:
        """The column whose best value is shown in bold."""
        return "FLD ± s.e." if self.sort == "fld" else "nats"

    def warning(self) -> str | None:
        """One line naming what differs between the runs, when they were compared anyway
        (the data protocol, or how their sample quality was measured)."""
        words = []
        if self.mixed:
            words.append(
                f"the runs differ in {', '.join(self.differences)}; their figures do not "
                "measure the same thing"
            )
        if self.quality_differences:
            words.append(
                "their sample quality was measured with different "
                f"{', '.join(self.quality_differences)}; those FLDs do not compare"
            )
        return "warning: " + "; ".join(words) if words else None

    def table(self, title: str | None = None) -> Any:
        """A rich table of the rows, the best figure in bold: the Markdown's columns, with the
        model and its objective in one cell, the bound and what it bounds in another, and the
        data and the test examples in the title where every row shares them."""
        from rich.table import Table
        from rich.text import Text

        cells = dict(self._cells())
        cells["model"] = [f"{m}\n{o}" for m, o in zip(cells["model"], cells.pop("objective"))]
        cells["bound"] = [f"{b}\n{w}".strip() for b, w in zip(cells["bound"], cells.pop("bounds"))]
        shared = []
        for name in ("data", "test examples", "FLD floor / ceiling"):
            if name in cells and len(set(cells[name])) == 1:
                value = cells.pop(name)[0]
                many = f"{value} examples" if value != "1" else "1 example (no standard errors)"
                words = {"test examples": many, "data": value}
                shared.append(words.get(name, f"{name} {value}"))
        words = f"test figures, the {self.figure} bound in nats per example" + (
            ", sorted by the samples' FLD" if self.sort == "fld" else ""
        )
        table = Table(title=title or ", ".join([words, *shared]))
        for header in cells:  # numbers are never broken across lines
            table.add_column(header, overflow="fold", no_wrap=header in _NUMBERS)
        for i, row in enumerate(self.rows):
            bold = "bold" if row is self.best else ""
            styles = [bold if header == self._bold else "" for header in cells]
            table.add_row(*(Text(v[i], style=st) for v, st in zip(cells.values(), styles)))
        return table

    def to_markdown(self) -> str:
        """The rows as a Markdown table, the best figure in bold, and a note on the pairing."""
        cells = self._cells()

        def esc(text: str) -> str:
            return text.replace("|", "\\|").replace("\n", " ")

        lines = [
            "| " + " | ".join(esc(h) for h, _ in cells) + " |",
            "|" + "|".join("---" for _ in cells) + "|",
        ]
        for i, row in enumerate(self.rows):
            values = [esc(c[i]) for _, c in cells]
            if row is self.best:
                at = [h for h, _ in cells].index(self._bold)
                values[at] = f"**{values[at]}**"
            lines.append("| " + " | ".join(values) + " |")
        notes = [
            "",
            f"Figures in nats per example (± the standard error over examples); Δ is the mean "
            f"over shared test examples of (run − {self.reference}), ± its paired standard "
            "error.",
        ]
        if any(r.run.sample_quality is not None for r in self.rows):
            notes.append(_QUALITY_NOTE)
        if self.warning():
            notes.append(f"**{self.warning()}**")
        return "\n".join(lines + notes) + "\n"

    def to_json(self) -> dict[str, Any]:
        """Plain JSON values: the rows, best first, with every figure and the protocol."""
        return {
            "figure": self.figure,
            "reference": self.reference,
            "best": None if self.best is None else self.best.run.name,
            "units": "nats per example (bits_per_dim: bits per data dimension)",
            "protocol_differences": self.differences,
            "sorted_by": self.sort,
            "sample_quality_differences": self.quality_differences,
            "rows": [r.to_json(self.reference) for r in self.rows],
        }


_QUALITY_NOTE = (
    "Sample quality (docs/quality.md): the FLD of the run's samples against the test images "
    "(± its bootstrap s.e.), k-NN precision and recall, the classifier score; the floor "
    "(training images as samples) and ceiling (independent pixels) beside it; ΔFLD ± "
    "√(se₁² + se₂²) against the reference where both measured it alike."
)


def _quality_cells(rows: list[Row], reference: str) -> list[tuple[str, list[str]]]:
    """The sample-quality columns: FLD ± s.e., its difference from the reference's,
    precision and recall, the classifier score, and the floor and ceiling of the FLD."""

    def cell(row: Row, text: Any) -> str:
        return "—" if row.run.sample_quality is None else text(row.run.sample_quality)

    def share(value: float | None, digits: int) -> str:
        return "—" if value is None else f"{value:.{digits}f}"

    def delta(row: Row) -> str:
        if row.run.name == reference:
            return "reference" if row.run.sample_quality is not None else "—"
        if row.fld is None:
            return "—" if row.run.sample_quality is None else "— (measured otherwise)"
        return _fmt(row.fld, 1, sign=True)

    return [
        ("FLD ± s.e.", [cell(r, lambda q: _fmt(q.fld, 1)) for r in rows]),
        (f"ΔFLD vs {reference}", [delta(r) for r in rows]),
        (
            "precision / recall",
            [cell(r, lambda q: f"{share(q.precision, 3)} / {share(q.recall, 3)}") for r in rows],
        ),
        ("classifier score", [cell(r, lambda q: share(q.score, 2)) for r in rows]),
        (
            "FLD floor / ceiling",
            [cell(r, lambda q: f"{share(q.floor, 1)} / {share(q.ceiling, 1)}") for r in rows],
        ),
    ]
