"""``latentkit evaluate``: ELBO, its terms, IWAE NLL and bits/dim of a checkpoint."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import attrs
from rich.console import Console

from latentkit.checkpoint import (
    atomic_write_bytes,
    atomic_write_json,
    latest_checkpoint,
    read_regular_file,
    resolve_checkpoint,
    writable_path,
)
from latentkit.cli.common import CLIError, _check_rows, _device, _run_dir_of
from latentkit.cli.data import _load_recorded_data
from latentkit.cli.runconfig import EvalConfig, run_table_options, table_flags
from latentkit.cli.runfolder import holding_run_folders_of
from latentkit.compare.runs import MAX_REPORT_BYTES, REPORT_FILE
from latentkit.composition import evaluation_model
from latentkit.conditional_report import conditional_block, conditional_table
from latentkit.diagnostics import diagnostics_table
from latentkit.quality.pipeline import (
    check_sample_quality,
    sample_quality_block,
    sample_quality_table,
)
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
    if args.per_example is not None and str(args.per_example) == "-":
        raise CLIError("--per-example writes a .safetensors file: give a path ('-' is --json's)")
    if args.per_example is not None and args.per_example.is_dir():
        args.per_example = args.per_example / "per_example.safetensors"
    both = (json_out, args.per_example)
    if None not in both and os.path.realpath(both[0]) == os.path.realpath(both[1]):
        raise CLIError(f"--json and --per-example both name {json_out}: give each its own file")
    # --json inside a run folder: held like `train` and `report` hold it, for the whole
    # command, so the file never lands in a folder another process writes or replaces.
    # --sample-quality's figures go into the run's report.json: its folder held too.
    asked = run_table_options(args, "evaluate", Path(args.run)).get("sample_quality")
    quality_into = _report_of(Path(args.run)) if asked else None
    with holding_run_folders_of([json_out, args.per_example], report=quality_into):
        return _evaluate(args, out, err)


def _evaluate(args: argparse.Namespace, out: Console, err: Console) -> int:
    say = lambda line: err.print(line, markup=False, highlight=False)  # noqa: E731
    options = run_table_options(args, "evaluate", Path(args.run), say)
    data_flags = table_flags(args, "data")
    _check_rows(options, None)
    source = _source(Path(args.run), err)
    model, info = load_trained_model(source, device=_device(args.device))
    model = evaluation_model(model, say=lambda line: err.print(line, markup=False))
    ds = _load_recorded_data(info, data_flags)
    check_sample_quality(ds, options)  # refused now, before the evaluation and the sampling
    for path in (None if args.json_out == "-" else args.json_out, args.per_example):
        if path is not None:
            writable_path(path)  # refused now, before the evaluation, if it cannot be
    data = ds.test if args.split == "test" else ds.train
    found = _measure(model, data, ds, options, err=err)
    quality = found.quality
    payload = {
        "model": info.get("model"),
        "step": info.get("step"),
        "data": ds.name,
        "variant": ds.variant,
        "split": args.split,
        **found.report.to_json(),
        "diagnostics": None if found.diag is None else found.diag.to_json(),
        "likelihood_figures": found.figures,
        "sample_quality": quality,
        "conditional": found.conditional,
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
    if quality is not None:
        _into_report(quality, Path(args.run), source, info, data_flags, err)
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
    quality: dict[str, Any] | None = None
    conditional: dict[str, Any] | None = None


def _measure(model: Any, data: Any, ds: Any, options: dict[str, Any], *, err: Console) -> _Found:
    """The evaluation, the diagnostics and the model's own figures on ``data`` (a split of
    ``ds``), and the sample quality against ``ds``'s test split when asked for."""
    seed = options.get("seed", EvalConfig().seed)
    discrete = ds.kind in ("binary", "symmetric8")
    labels = None
    if model.condition_spec is not None:  # the split's labels: bounds on log p(x | c)
        labels = ds.test_labels if data is ds.test else ds.train_labels
    report = _run_evaluation(
        model, data, options=options, seed=seed, err=err, discrete=discrete, labels=labels
    )
    diag = _diagnose(model, data, options, seed=seed, err=err, labels=labels)
    figures = likelihood_figures(model, data, options, discrete=discrete, seed=seed, labels=labels)
    quality = sample_quality_block(model, ds, options, seed=seed, err=err)
    conditional = conditional_block(model, data, labels, options, seed=seed)
    return _Found(report, diag, figures, quality, conditional)


def _show(found: _Found, what: str, data_name: str, split: str, out: Console) -> None:
    """The tables of a person reading the terminal."""
    from latentkit.evaluation import report_table

    given = " given the labels" if found.conditional is not None else ""
    out.print(report_table(found.report, title=f"{what}, {data_name} {split}{given}"))
    if found.conditional is not None:
        out.print(conditional_table(found.conditional))
    if found.diag is not None:
        out.print(diagnostics_table(found.diag, title=f"diagnostics ({data_name} {split})"))
    if found.figures is not None:
        out.print(likelihood_figures_table(found.figures, title="the model's likelihood figures"))
    print_ode_warnings(out, found.report, found.figures)
    if found.quality is not None:
        out.print(sample_quality_table(found.quality, title=f"sample quality ({data_name} test)"))


def _report_of(run: Path) -> Path:
    """The report.json of the run ``run`` is (a run folder, or a checkpoint in it)."""
    return _run_dir_of(run) / REPORT_FILE


def _into_report(
    quality: dict[str, Any],
    run: Path,
    source: Path,
    info: dict[str, Any],
    data_flags: dict[str, Any],
    err: Console,
) -> None:
    """The sample-quality block written into the run's report.json (as ``sample_quality``,
    with the checkpoint it scored) where that report is of the checkpoint evaluated, on the
    run's own data; otherwise a line says why it is not."""
    path = _report_of(run)
    evaluated = resolve_checkpoint(source)
    why = None
    if data_flags:
        why = f"the data was chosen by {', '.join('--' + k for k in sorted(data_flags))}"
    elif not path.is_file():
        why = f"there is no {path} (`latentkit report RUN --sample-quality N` writes one)"
    if why is None:
        try:
            report = json.loads(read_regular_file(path, limit=MAX_REPORT_BYTES, what="report"))
        except (OSError, ValueError, RecursionError) as exc:
            report, why = None, f"{path} cannot be read ({exc})"
        of = report.get("checkpoint") if isinstance(report, dict) else None
        if why is None and (not isinstance(of, str) or not _same_checkpoint(Path(of), evaluated)):
            why = (
                f"it is the report of {of}, not of {evaluated} (evaluate {of} itself, or "
                "`latentkit report RUN --sample-quality N`)"
            )
    if why is not None:
        err.print(
            f"sample quality not written into report.json: {why}", markup=False, soft_wrap=True
        )
        return
    report["sample_quality"] = {**quality, "checkpoint": str(evaluated), "step": info.get("step")}
    written = atomic_write_json(path, report)
    err.print(f"wrote the sample quality into {written}", markup=False, soft_wrap=True)


def _same_checkpoint(a: Path, b: Path) -> bool:
    """Whether two checkpoints are one: the same file, or weights files of the same bytes
    (a copy)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    digests = []
    for c in (a, b):
        weights = c.with_suffix(".safetensors")
        if not weights.is_file():
            return False
        with open(weights, "rb") as f:
            digests.append(hashlib.file_digest(f, "sha256").hexdigest())
    return digests[0] == digests[1]
