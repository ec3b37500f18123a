"""A figure measured over examples: its mean and standard error, paired differences of two
models on the same examples, and the one table that shows such figures.

:func:`figure_table` is the table of every command that prints figures (``evaluate``'s
report, the diagnostics): one row per figure, its value, its standard error and its unit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import torch
from rich.table import Table
from rich.text import Text
from torch import Tensor

from latentkit.errors import DeviceError, DTypeError, ShapeError
from latentkit.validation import check_finite_rows

__all__ = ["Estimate", "estimate_cells", "figure_table", "paired_difference"]


@attrs.frozen
class Estimate:
    """A mean over examples and its standard error."""

    mean: float
    stderr: float

    @classmethod
    def of(cls, values: Tensor) -> Estimate:
        v = values.double()
        n = v.numel()
        se = float(v.std(unbiased=True) / math.sqrt(n)) if n > 1 else float("nan")
        return cls(float(v.mean()), se)

    def to_json(self) -> dict[str, float | None]:
        return {"mean": finite_or_none(self.mean), "stderr": finite_or_none(self.stderr)}


def paired_difference(a: Tensor, b: Tensor) -> Estimate:
    """The mean of ``a − b`` over examples and its standard error, for two models' bounds on
    the same examples (``EvalReport.per_example``): the examples' own spread cancels, so a
    difference of a fraction of a nat can be told from noise where two unpaired standard
    errors (each ± 0.5 nats on 2,000 MNIST images) cannot.

    ``a`` and ``b``: real 1-d tensors of one length ≥ 1 on one device, every value finite
    (a ShapeError, DTypeError, DeviceError or NonFiniteError naming the argument otherwise)."""
    if not (isinstance(a, Tensor) and isinstance(b, Tensor)) or a.shape != b.shape or a.ndim != 1:
        raise ShapeError(
            "paired_difference needs two 1-d tensors of one length (the same examples), got "
            f"{getattr(a, 'shape', type(a).__name__)} and {getattr(b, 'shape', type(b).__name__)}"
        )
    if a.numel() == 0:
        raise ShapeError("paired_difference needs at least one example, got two empty tensors")
    for name, v in (("a", a), ("b", b)):
        if v.is_complex() or v.dtype == torch.bool:
            raise DTypeError(f"paired_difference: {name} must be a real tensor, got {v.dtype}")
    if a.device != b.device:
        raise DeviceError(f"paired_difference: a is on {a.device} but b on {b.device}")
    check_finite_rows(a, name="paired_difference: a")
    check_finite_rows(b, name="paired_difference: b")
    return Estimate.of(a.double() - b.double())


def finite_or_none(value: float) -> float | None:
    """``value``, or ``None`` (JSON's null) for NaN and ±inf."""
    return value if math.isfinite(value) else None


def estimate_cells(e: Estimate | None, places: int = 2) -> tuple[str, str]:
    """The value and standard-error cells of a figure: ``("12.34", "± 0.05")``; ``"—"`` for
    a figure not measured, no standard error where it is not finite (one example)."""
    if e is None:
        return "—", ""
    se = "" if not math.isfinite(e.stderr) else f"± {e.stderr:.{places}f}"
    return f"{e.mean:.{places}f}", se


def figure_table(
    title: str,
    rows: Sequence[tuple[str, Estimate | str | None, str]],
    *,
    places: int | Mapping[str, int] = 2,
    caption: Any = None,
) -> Table:
    """A rich table of figures, one row per ``(figure, value, unit)``: an :class:`Estimate`
    as its mean and ± standard error to ``places`` decimals (a mapping: by unit, 2 where
    the unit is not in it), ``None`` as "—", text as it is."""
    table = Table(title=title)
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("stderr", justify="right")
    table.add_column("unit")
    for name, value, unit in rows:
        if isinstance(value, str):
            cells = (value, "")
        else:
            digits = places if isinstance(places, int) else places.get(unit, 2)
            cells = estimate_cells(value, digits)
        table.add_row(Text(name), *cells, unit)
    table.caption = caption
    return table
