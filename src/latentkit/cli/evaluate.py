"""``latentkit evaluate``: ELBO, its terms, IWAE NLL and bits/dim of a checkpoint."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import attrs
from rich.console import Console

from latentkit.checkpoint import (
    atomic_write_bytes,
    atomic_write_json,
    latest_checkpoint,
    writable_path,
)
from latentkit.cli.common import _check_rows, _device
from latentkit.cli.data import _load_recorded_data
from latentkit.cli.runconfig import EvalConfig, table_flags
from latentkit.cli.runfolder import holding_run_folders_of
from latentkit.diagnostics import diagnostics_table
from latentkit.report import (
    _diagnose,
    _run_evaluation,
    likelihood_figures,
    likelihood_figures_table,
    per_example_bytes,
    print_ode_warnings,
)
from latentkit.trained import load_trained_model

__all__ = ["cmd_evaluate"]


def cmd_evaluate(args: argparse.Namespace, out: Console, err: Console) -> int:
    json_out = None if args.json_out in (None, "-") else args.json_out
    if args.per_example is not None and args.per_example.is_dir():
        args.per_example = args.per_example / "per_example.safetensors"
    # --json inside a run folder: held like `train` and `report` hold it, for the whole
    # command, so the file never lands in a folder another process writes or replaces.
    with holding_run_folders_of([json_out, args.per_example]):
        return _evaluate(args, out, err)


def _evaluate(args: argparse.Namespace, out: Console, err: Console) -> int:
    options, data_flags = table_flags(args, "evaluate"), table_flags(args, "data")
    _check_rows(options, None)
    source = _source(Path(args.run), err)
    model, info = load_trained_model(source, device=_device(args.device))
    ds = _load_recorded_data(info, data_flags)
    for path in (None if args.json_out == "-" else args.json_out, args.per_example):
        if path is not None:
            writable_path(path)  # refused now, before the evaluation, if it cannot be
    data = ds.test if args.split == "test" else ds.train
    found = _measure(model, data, options, discrete=ds.kind in ("binary", "symmetric8"), err=err)
    payload = {
        "model": info.get("model"),
        "step": info.get("step"),
        "data": ds.name,
        "variant": ds.variant,
        "split": args.split,
        **found.report.to_json(),
        "diagnostics": None if found.diag is None else found.diag.to_json(),
        "likelihood_figures": found.figures,
    }
    if args.json_out == "-":
        print(json.dumps(payload, indent=2))
        # stdout is the JSON; a person reads stderr
        print_ode_warnings(err, found.report, found.figures)
    else:
        _show(found, f"{info.get('model')} at step {info.get('step')}", ds.name, args.split, out)
        if args.json_out:
            written = atomic_write_json(args.json_out, payload)  # through a link, to its target
            err.print(f"wrote {written}", markup=False)
    if args.per_example is not None:
        report_bytes = per_example_bytes(found.report, data, source=source)
        atomic_write_bytes(args.per_example, report_bytes)
        err.print(f"wrote {args.per_example}", markup=False)
    return 0


def _source(run: Path, err: Console) -> Path:
    """The checkpoint evaluated: a run folder's best on validation where it kept one."""
    if run.is_dir() and latest_checkpoint(run / "best") is not None:
        err.print(f"evaluating the best checkpoint on validation: {run / 'best'}", markup=False)
        return run / "best"  # the checkpoint the validation split chose
    return run


@attrs.frozen
class _Found:
    """What ``evaluate`` measured: the report, the diagnostics and the model's own figures."""

    report: Any
    diag: Any
    figures: dict[str, Any] | None


def _measure(
    model: Any, data: Any, options: dict[str, Any], *, discrete: bool, err: Console
) -> _Found:
    seed = options.get("seed", EvalConfig().seed)
    report = _run_evaluation(model, data, options=options, seed=seed, err=err, discrete=discrete)
    diag = _diagnose(model, data, options, seed=seed, err=err)
    figures = likelihood_figures(model, data, options, discrete=discrete, seed=seed)
    return _Found(report, diag, figures)


def _show(found: _Found, what: str, data_name: str, split: str, out: Console) -> None:
    """The tables of a person reading the terminal."""
    from latentkit.evaluation import report_table

    out.print(report_table(found.report, title=f"{what}, {data_name} {split}"))
    if found.diag is not None:
        out.print(diagnostics_table(found.diag, title=f"diagnostics ({data_name} {split})"))
    if found.figures is not None:
        out.print(likelihood_figures_table(found.figures, title="the model's likelihood figures"))
    print_ode_warnings(out, found.report, found.figures)
