"""``latentkit compare``: finished runs' test figures in one table (``latentkit.compare``)."""

from __future__ import annotations

import argparse
import json

from rich.console import Console

from latentkit.checkpoint import atomic_write_bytes, atomic_write_json, writable_path
from latentkit.cli.runfolder import holding_run_folders_of
from latentkit.compare import compare_runs

__all__ = ["cmd_compare"]


def cmd_compare(args: argparse.Namespace, out: Console, err: Console) -> int:
    markdown = args.markdown
    json_out = None if args.json_out in (None, "-") else args.json_out
    for path in (markdown, json_out):
        if path is not None:
            writable_path(path)  # refused now, before any run is read, if it cannot be
    # An output inside a run folder: held like `train` holds it, never over the run's own
    # files (refused before anything is read or printed).
    with holding_run_folders_of([markdown, json_out]):
        comparison = compare_runs(
            args.runs, reference=args.reference, figure=args.figure, allow_mixed=args.allow_mixed
        )
        warning = comparison.warning()
        if warning:
            err.print(warning, style="bold yellow", markup=False, highlight=False)
        if args.json_out == "-":
            print(json.dumps(comparison.to_json(), indent=2))
        else:
            out.print(comparison.table())
        if markdown is not None:
            written = atomic_write_bytes(markdown, comparison.to_markdown().encode())
            err.print(f"wrote {written}", markup=False)
        if json_out is not None:
            written = atomic_write_json(json_out, comparison.to_json())
            err.print(f"wrote {written}", markup=False)
    return 0
