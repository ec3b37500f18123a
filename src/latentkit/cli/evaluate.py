"""``latentkit evaluate``: ELBO, its terms, IWAE NLL and bits/dim of a checkpoint."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rich.console import Console

from latentkit.checkpoint import (
    atomic_write_bytes,
    atomic_write_json,
    latest_checkpoint,
    writable_path,
)
from latentkit.cli.common import _check_rows, _device
from latentkit.cli.data import _load_recorded_data
from latentkit.cli.runconfig import _merge_eval_flags
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
    from latentkit.evaluation import report_table

    source = args.run
    if Path(args.run).is_dir() and latest_checkpoint(Path(args.run) / "best") is not None:
        source = Path(args.run) / "best"  # the checkpoint the validation split chose
        err.print(f"evaluating the best checkpoint on validation: {source}", markup=False)
    model, info = load_trained_model(source, device=_device(args.device))
    ds = _load_recorded_data(
        info, {"name": args.data, "variant": args.variant, "limit": args.limit}
    )
    options: dict[str, Any] = {}
    _merge_eval_flags(options, args)
    _check_rows(options, args.batch_size)
    if args.json_out not in (None, "-"):
        writable_path(args.json_out)  # refused now, before the evaluation, if it cannot be
    if args.per_example is not None:
        writable_path(args.per_example)
    data = ds.test if args.split == "test" else ds.train
    report = _run_evaluation(
        model,
        data,
        options=options,
        seed=args.seed,
        err=err,
        discrete=ds.kind in ("binary", "symmetric8"),
        batch_size=args.batch_size,
    )
    diag = _diagnose(model, data, options, seed=args.seed, err=err)
    discrete = ds.kind in ("binary", "symmetric8")
    figures = likelihood_figures(model, data, options, discrete=discrete, seed=args.seed)
    payload = {
        "model": info.get("model"),
        "step": info.get("step"),
        "data": ds.name,
        "variant": ds.variant,
        "split": args.split,
        **report.to_json(),
        "diagnostics": None if diag is None else diag.to_json(),
        "likelihood_figures": figures,
    }
    if args.json_out == "-":
        print(json.dumps(payload, indent=2))
        print_ode_warnings(err, report, figures)  # stdout is the JSON; a person reads stderr
    else:
        out.print(
            report_table(
                report,
                title=f"{info.get('model')} at step {info.get('step')}, {ds.name} {args.split}",
            )
        )
        if diag is not None:
            out.print(diagnostics_table(diag, title=f"diagnostics ({ds.name} {args.split})"))
        if figures is not None:
            out.print(likelihood_figures_table(figures, title="the model's likelihood figures"))
        print_ode_warnings(out, report, figures)
        if args.json_out:
            written = atomic_write_json(args.json_out, payload)  # through a link, to its target
            err.print(f"wrote {written}", markup=False)
    if args.per_example is not None:
        atomic_write_bytes(args.per_example, per_example_bytes(report, data, source=source))
        err.print(f"wrote {args.per_example}", markup=False)
    return 0
