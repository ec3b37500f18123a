"""The plots a report writes beside ``report.json`` (:func:`latentkit.report.write_report`):
samples, training curves, each layer's term of the bound, and the diagnostics, with the
readers of the run's ``metrics.jsonl`` that the curves are drawn from."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from latentkit.checkpoint import read_regular_file, writable_path
from latentkit.diagnostics import diagnostics_plot, training_diagnostics_plot

__all__ = [
    "MAX_METRICS_BYTES",
    "diagnostic_records",
    "diagnostics_plots",
    "metric_records",
    "model_plots",
]

MAX_METRICS_BYTES = 2**28
"""A ``metrics.jsonl`` larger than this is not plotted."""


def _is_int(value: Any) -> bool:
    """An int that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def model_plots(
    run_dir: Path, model: Any, dataset: Any, report: Any, *, name: str, step: Any, seed: int
) -> dict[str, str]:
    """samples.png (drawn from ``seed``), curves.png (when the run has a ``metrics.jsonl``)
    and layer_kl.png: the paths written, by name."""
    from latentkit.plots import layer_kl_plot, sample_grid, training_curves
    from latentkit.sampling import class_grid, sample

    files: dict[str, str] = {}
    classes = class_grid(model, 8)  # a conditional model: one row of 8 per class
    n = 64 if classes is None else classes.shape[0]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        x = sample(model, n, likelihood_mean=True, condition=classes)
    rows = "" if classes is None else ", a row per class"
    files["samples"] = str(
        sample_grid(
            dataset.to_display(x.cpu()),
            writable_path(run_dir / "samples.png"),
            title=f"{name}: samples (mean of p(x|z₁){rows}) at step {step}",
            ncols=None if classes is None else 8,
        )
    )
    metrics = run_dir / "metrics.jsonl"
    if metrics.exists():
        records = metric_records(metrics)
        files["curves"] = str(
            training_curves(
                records, writable_path(run_dir / "curves.png"), title=f"{name} on {dataset.name}"
            )
        )
    files["layer_kl"] = str(
        layer_kl_plot(
            report.layer_kl,
            report.prior_matching.mean,
            writable_path(run_dir / "layer_kl.png"),
            reconstruction=report.reconstruction.mean,
            title=f"{name}: each layer's term of −ELBO on {dataset.name} test "
            f"({report.num_examples} example{'' if report.num_examples == 1 else 's'})",
        )
    )
    return files


def diagnostics_plots(run_dir: Path, diag: Any, *, name: str, data_name: str) -> dict[str, str]:
    """diagnostics.png (when ``diag`` is not None) and diagnostics_training.png (when the
    run's ``metrics.jsonl`` has diagnostics lines): the paths written, by name."""
    files: dict[str, str] = {}
    if diag is not None:
        files["diagnostics"] = str(
            diagnostics_plot(
                diag,
                writable_path(run_dir / "diagnostics.png"),
                title=f"{name}: per-dimension KL and activity on {data_name} test",
            )
        )
    metrics = run_dir / "metrics.jsonl"
    if metrics.exists():
        over_training = training_diagnostics_plot(
            diagnostic_records(metrics),
            writable_path(run_dir / "diagnostics_training.png"),
            title=f"{name}: information in the latents over training",
        )
        if over_training is not None:
            files["diagnostics_training"] = str(over_training)
    return files


_METRIC_NUMBERS = ("elbo", "reconstruction", "prior_matching", "kl", "loss")


def _json_objects(path: Path) -> Iterator[dict[str, Any]]:
    """The JSON objects of ``metrics.jsonl``, a line each; a line that is not one (cut short
    by a crash, edited, not JSON) is skipped."""
    raw = read_regular_file(path, limit=MAX_METRICS_BYTES, what="metrics")
    for line in raw.decode("utf-8", "replace").splitlines():
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if isinstance(record, dict):
            yield record


def diagnostic_records(path: Path) -> list[dict[str, Any]]:
    """The ``diagnostics`` lines of ``metrics.jsonl`` (written with train.diagnose_examples),
    read as :func:`metric_records` reads the others: anything malformed is skipped."""
    return [
        record
        for record in _json_objects(path)
        if record.get("split") == "diagnostics" and _is_int(record.get("step"))
    ]


def metric_records(path: Path) -> list[dict[str, Any]]:
    """The plottable records of ``metrics.jsonl``: objects with an int ``step``, a known
    split and real numbers (or null) for the bound's terms; any other line — cut short by a
    crash, edited, not JSON — is skipped (counted on nothing: the curves are a picture)."""
    records = []
    for record in _json_objects(path):
        if not _is_int(record.get("step")):
            continue
        if record.get("split") not in ("train", "test", "validation"):
            continue
        values = [record.get(k) for k in _METRIC_NUMBERS]
        if not all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))
                   for v in values):  # fmt: skip
            continue
        if record.get("elbo") is not None and not all(
            record.get(k) is not None for k in ("reconstruction", "kl")
        ):
            continue
        records.append(record)
    return records
