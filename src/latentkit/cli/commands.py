"""The small commands: ``list``, ``recipes``, ``sample``, ``report``, ``verify``."""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table
from rich.text import Text

from latentkit.checkpoint import (
    atomic_write_bytes,
    memory_bytes,
    resolve_checkpoint,
    writable_path,
)
from latentkit.cli.common import CLIError, _bytes, _check_rows, _device, _run_dir_of, _to_display
from latentkit.cli.data import _load_recorded_data
from latentkit.cli.runconfig import EvalConfig, run_table_options
from latentkit.cli.runfolder import _RunFolder, holding_run_folders_of
from latentkit.composition import evaluation_model
from latentkit.config import config_fields
from latentkit.errors import LatentkitError
from latentkit.registry import (
    get_model_spec,
    model_specs,
    objective_specs,
    plugin_faults,
)
from latentkit.report import write_report
from latentkit.trained import load_trained_model

__all__ = ["cmd_list", "cmd_recipes", "cmd_report", "cmd_sample", "cmd_verify"]


def _spec_table(title: str, columns: Sequence[str], specs: dict[str, Any]) -> Table:
    """One row per registered spec: name, plugin, description, config fields (default)."""
    table = Table(title=title)
    for i, col in enumerate(columns):  # names never cut or folded: they are typed back
        table.add_column(col, no_wrap=i == 0, overflow="fold")
    for name, spec in specs.items():
        fields = ", ".join(f"{f}={d!r}" for f, _, d in config_fields(spec.config_class))
        table.add_row(name, spec.plugin, Text(spec.description), Text(fields))
    return table


def cmd_list(args: argparse.Namespace, out: Console, err: Console) -> int:
    models = ("model", "plugin", "description", "config fields (default)")
    out.print(_spec_table("latentkit models", models, model_specs()))
    title = "training objectives (--objective NAME, --set objective.FIELD=…)"
    out.print(_spec_table(title, ("name", "plugin", "what", "options"), objective_specs()))
    try:
        from latentkit.data import dataset_sources
    except ImportError:
        dataset_sources = None
    if dataset_sources is not None:
        data = Table(title="data sets")
        for col in ("name", "here", "what / why not", "install"):
            data.add_column(col, overflow="fold")
        for s in dataset_sources():
            here = Text("yes") if s.available else Text("no", style="red")
            data.add_row(s.name, here, Text(s.detail), Text(s.install))
        out.print(data)
    faults = plugin_faults()
    if faults:
        ft = Table(title="[bold red]plugin faults", border_style="red")
        for col in ("distribution", "entry point", "problem"):
            ft.add_column(col, overflow="fold")
        for f in faults:
            ft.add_row(Text(f.distribution), Text(f.entry_point), Text(f.problem))
        out.print(ft)
    return 0


def cmd_recipes(args: argparse.Namespace, out: Console, err: Console) -> int:
    from latentkit.recipes import list_recipes, recipe_info

    table = Table(title="recipes (latentkit train --recipe NAME [--set FIELD=VALUE ...])")
    table.add_column("recipe", no_wrap=True)
    for col in ("what", "source", "published NLL", "budget (2 CPU cores)"):
        table.add_column(col, overflow="fold")
    for name in list_recipes():
        info = recipe_info(name)
        published = info.get("published_nll", info.get("published", ""))
        table.add_row(
            name,
            Text(str(info.get("description", ""))),
            Text(str(info.get("source", ""))),
            Text(str(published)),
            Text(str(info.get("budget_cpu", ""))),
        )
    out.print(table)
    return 0


def cmd_sample(args: argparse.Namespace, out: Console, err: Console) -> int:
    model, info = load_trained_model(args.run, device=_device(args.device))
    target = args.out or _run_dir_of(args.run) / "samples.png"
    if target.is_dir():  # a folder: the grid goes inside it
        target = target / "samples.png"
    target = writable_path(target)
    if target.suffix.lower() != ".png":  # matplotlib would pick (or append) another format
        raise CLIError(f"--out {args.out}: the grid is a PNG; name a .png file (or a folder)")
    tensors = None
    if args.tensors:
        tensors = args.tensors / "samples.safetensors" if args.tensors.is_dir() else args.tensors
        tensors = writable_path(tensors)
    per_sample = 8 * max(1, math.prod(model.data_shape)) * 4  # x, its mean and work space
    if args.num * per_sample > memory_bytes() // 4:
        raise CLIError(
            f"--num {args.num:,}: the samples need about {_bytes(args.num * per_sample)}, more "
            f"than a quarter of this machine's memory ({_bytes(memory_bytes())})"
        )
    # The grid goes into the run folder by default: held like `train` holds it.
    with holding_run_folders_of([target, tensors]):
        return _sample(args, out, model, info, target, tensors)


def _sample(
    args: argparse.Namespace,
    out: Console,
    model: Any,
    info: dict[str, Any],
    target: Path,
    tensors: Path | None,
) -> int:
    from latentkit.plots import sample_grid
    from latentkit.sampling import sample

    torch.manual_seed(args.seed)
    condition, num, ncols, what = _sampled_conditions(args, model)
    x = sample(
        model, num, likelihood_mean=not args.draw, condition=condition, guidance=args.guidance
    )
    display = _to_display(x, info)
    path = sample_grid(
        display,
        target,
        title=f"{info.get('model')}: {num} samples{what} at step {info.get('step')}",
        ncols=ncols,
    )
    out.print(f"wrote {path}", markup=False)
    if tensors is not None:
        from safetensors.torch import save as save_safetensors

        atomic_write_bytes(tensors, save_safetensors({"samples": x.cpu().contiguous()}))
        out.print(f"wrote {tensors}", markup=False)
    return 0


def _sampled_conditions(args: argparse.Namespace, model: Any) -> tuple[Any, int, Any, str]:
    """``sample``'s conditions, count, grid width and title words: ``--condition C`` for
    one class; none for a class-conditional model: ``--num`` spread over a row per class."""
    from latentkit.sampling import class_grid

    guided = "" if args.guidance is None else f", guidance {args.guidance:g}"
    if args.condition is not None:
        return args.condition, args.num, None, f" of class {args.condition}{guided}"
    spec = model.condition_spec
    if spec is None or not spec.is_class:
        return None, args.num, None, guided
    k = int(spec.num_classes)
    grid = class_grid(model, max(1, args.num // k))
    return grid, grid.shape[0], grid.shape[0] // k, f" (a row per class){guided}"


def cmd_report(args: argparse.Namespace, out: Console, err: Console) -> int:
    options = run_table_options(
        args, "evaluate", Path(args.run), lambda line: err.print(line, markup=False)
    )
    _check_rows(options, None)
    model, info = load_trained_model(args.run, device=_device(args.device))
    model = evaluation_model(model, say=lambda line: err.print(line, markup=False))
    ds = _load_recorded_data(info, {})
    run_dir = _run_dir_of(args.run)
    # The report's files go into the run folder: held like `train` holds it, so a report
    # never interleaves with a training process writing the same folder.
    with _RunFolder(run_dir, writer=True, err=err):
        write_report(
            run_dir,
            out=out,
            err=err,
            options=options,
            dataset=ds,
            model=model,
            info=info,
            seed=options.get("seed", EvalConfig().seed),
            checkpoint=resolve_checkpoint(args.run),
        )
    return 0


def cmd_verify(args: argparse.Namespace, out: Console, err: Console) -> int:
    # Checked here, so a refusal is one line on stderr like every other command's.
    try:
        get_model_spec(args.name)
    except LatentkitError as exc:
        raise CLIError(str(exc)) from None
    _device(args.device)
    try:
        from latentkit.testing.verify import verify_command
    except ImportError as exc:
        raise CLIError(
            f"`latentkit verify` is not available in this installation ({exc}); "
            "the property checks can be run with pytest meanwhile"
        ) from None
    return int(
        verify_command(args.name, device=args.device, max_examples=args.max_examples, console=out)
    )
