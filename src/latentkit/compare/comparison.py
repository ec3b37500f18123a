"""The comparison of runs (:func:`compare_runs`): one protocol checked, each run paired with
the reference on the examples both scored, the rows best first (shown by
:class:`~latentkit.compare.table.Comparison`)."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs
import torch

from latentkit.compare.quality import QUALITY_FIGURES, fld_difference, quality_differences
from latentkit.compare.runs import (
    PROTOCOL_FIELDS,
    Figure,
    ProtocolMismatchError,
    RunRecord,
    load_run,
)
from latentkit.compare.table import Comparison, Row
from latentkit.errors import ConfigError
from latentkit.estimates import paired_difference

__all__ = ["compare_runs"]


def _differences(runs: Sequence[RunRecord]) -> dict[str, dict[str, str]]:
    """Each protocol field on which the runs disagree, with every run's value; else, where
    the runs recorded digests of the examples scored and these differ, the examples."""
    out: dict[str, dict[str, str]] = {}
    for field in PROTOCOL_FIELDS:
        values = {r.name: r.protocol[field] for r in runs}
        if len(set(values.values())) > 1:
            out[field] = values
    digests = {r.name: r.examples_sha256 for r in runs if r.examples_sha256}
    if len(set(digests.values())) > 1 and not out:  # alone: nothing above explains it
        out["test examples"] = {k: f"sha256 {v[:12]}" for k, v in digests.items()}
    return out


def _same_examples(a: RunRecord, b: RunRecord) -> bool:
    """Whether two runs scored the same examples (their digests, else their protocols)."""
    if a.examples_sha256 and b.examples_sha256:
        return a.examples_sha256 == b.examples_sha256
    return all(a.protocol[f] == b.protocol[f] for f in PROTOCOL_FIELDS)


def _pair(run: RunRecord, ref: RunRecord, fig: Figure | None, ref_fig: Figure | None):
    """(paired difference of NLLs, run − reference, or None; why not)."""
    if run is ref:
        return None, "reference"
    if fig is None or ref_fig is None:
        return None, "no figure to pair"
    for r, f in ((run, fig), (ref, ref_fig)):
        if not r.per_example:
            return None, f"{r.name}: {r.per_example_note}"
        if f.key not in r.per_example:
            return None, f"{r.name}: no per-example values of {f.label}"
    if not _same_examples(run, ref):
        return None, "other test examples than the reference's"
    a, b = run.per_example, ref.per_example
    if not torch.equal(a["index"], b["index"]):
        return None, "other example indices than the reference's"
    return paired_difference(-a[fig.key], -b[ref_fig.key]), ""


def _unique_names(paths: Sequence[Path]) -> list[str]:
    """Each run's folder name; where two share one, the path as given."""
    names = [p.name or str(p) for p in paths]
    return [str(p) if names.count(n) > 1 else n for p, n in zip(paths, names)]


def compare_runs(
    paths: Iterable[str | os.PathLike],
    *,
    reference: str | os.PathLike | None = None,
    figure: str = "best",
    allow_mixed: bool = False,
) -> Comparison:
    """Compare finished run folders' test figures (module docstring).

    Args:
        paths: run folders, each with ``report.json`` (``latentkit report RUN``).
        reference: the run every paired difference is taken against (its folder name or
            path); default the first.
        figure: the figure compared: ``best`` (−IWAE_k where a run computed it, else −ELBO),
            ``elbo``, ``iwae``, or a figure a model adds (``continuous``, ``ode``, ...);
            ``fld``: the runs sorted by their sample quality's FLD (lowest first; runs
            without it last), the ``best`` bound beside it.
        allow_mixed: compare runs of different protocols anyway, each row naming what
            differs; otherwise they are refused with :class:`ProtocolMismatchError`.

    Raises:
        RunFolderError: a folder that is missing, no run, unfinished or not reported.
        ConfigError: no runs, the same run twice, or a reference not among them.
        ProtocolMismatchError: runs of different protocols, or sorted by a sample-quality
            figure measured differently (:data:`~latentkit.compare.quality.QUALITY_FIELDS`),
            without ``allow_mixed``.
    """
    given = _check_request(paths, figure)
    runs = [attrs.evolve(load_run(p), name=name) for p, name in zip(given, _unique_names(given))]
    ref = runs[0] if reference is None else _find(runs, reference)
    differences = _differences(runs)
    if differences and not allow_mixed:
        _refuse_mixed(differences)
    quality = quality_differences(runs)
    sort = figure if figure in QUALITY_FIGURES else "nll"
    if sort != "nll":
        figure = "best"
        _check_sortable(runs, sort, quality, allow_mixed)
    rows = _rows(runs, ref, figure, sort)
    return Comparison(
        rows=rows,
        reference=ref.name,
        figure=figure,
        differences=differences,
        sort=sort,
        quality_differences=quality,
    )


def _check_sortable(
    runs: Sequence[RunRecord], sort: str, quality: dict[str, dict[str, str]], allow_mixed: bool
) -> None:
    """Runs sorted by a sample-quality figure: a ConfigError when none has it, and a
    :class:`ProtocolMismatchError` when they measured it differently (without
    ``allow_mixed``)."""
    if all(r.sample_quality is None for r in runs):
        raise ConfigError(
            f"figure: no run reports sample quality ({sort}); `latentkit evaluate RUN "
            "--sample-quality N` (or `latentkit report RUN --sample-quality N`) measures it"
        )
    if quality and not allow_mixed:
        _refuse_mixed(quality, what="sample quality measured with different")


def _check_request(paths: Iterable[str | os.PathLike], figure: Any) -> list[Path]:
    """The run folders as paths; a ConfigError for none, the same run twice, or a figure
    that is not a name."""
    given = [Path(p) for p in paths]
    if not given:
        raise ConfigError("compare: no run folders given")
    real = [os.path.realpath(p) for p in given]
    twice = sorted({str(p) for p, r in zip(given, real) if real.count(r) > 1})
    if twice:
        raise ConfigError(f"compare: the same run given twice: {', '.join(twice)}")
    if not isinstance(figure, str) or not figure:
        raise ConfigError(f"figure: a figure name (best, elbo, iwae, ...), got {figure!r}")
    return given


def _refuse_mixed(differences: dict[str, dict[str, str]], what: str = "differ in") -> None:
    """Raise :class:`ProtocolMismatchError` naming every field in which the runs differ."""
    words = "; ".join(
        f"{field} — {', '.join(f'{run}: {v}' for run, v in values.items())}"
        for field, values in differences.items()
    )
    raise ProtocolMismatchError(
        f"the runs {what} {words}; compare runs of one protocol, or pass --allow-mixed",
        differences,
    )


def _rows(runs: Sequence[RunRecord], ref: RunRecord, figure: str, sort: str) -> list[Row]:
    """A row per run, each paired with the reference, lowest figure first (``sort``:
    ``nll``, the likelihood figure; ``fld``, the sample quality's); a ConfigError when no
    run reports ``figure``."""
    ref_fig = ref.figure(figure)
    rows = []
    for run in runs:
        fig = run.figure(figure)
        difference, note = _pair(run, ref, fig, ref_fig)
        differs = tuple(f for f in PROTOCOL_FIELDS if run.protocol[f] != ref.protocol[f])
        if run is not ref and not differs and not _same_examples(run, ref):
            differs = ("test examples",)
        fld = fld_difference(run.sample_quality, ref.sample_quality) if run is not ref else None
        rows.append(Row(run, fig, difference, note, differs, fld))
    if all(r.figure is None for r in rows):
        known = sorted({k for r in runs for k in r.figures})
        raise ConfigError(f"figure: no run reports {figure!r}; the runs report {known}")
    if sort == "fld":
        rows.sort(key=lambda r: _fld_key(r.run))
    else:
        rows.sort(key=lambda r: math.inf if r.figure is None else r.figure.nll.mean)
    return rows


def _fld_key(run: RunRecord) -> float:
    """A run's FLD, or infinity without one (listed last)."""
    return math.inf if run.sample_quality is None else run.sample_quality.fld.mean


def _find(runs: Sequence[RunRecord], reference: str | os.PathLike) -> RunRecord:
    """The run ``reference`` names (its folder name or path), or a ConfigError."""
    text = str(reference)
    real = os.path.realpath(reference)
    for r in runs:
        if text == r.name or real == os.path.realpath(r.path):
            return r
    raise ConfigError(
        f"--reference {text}: not among the runs compared ({', '.join(r.name for r in runs)})"
    )
