"""Shared pieces of the command line: limits, the one-line error, value parsing."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import tomllib
import torch
from rich.console import Console
from rich.markup import escape

from latentkit.cli.tables import (
    MAX_DATA_LIMIT,
    MAX_IWAE_K,
    MAX_ROWS,
    DataConfig,
    EvalConfig,
    field_names,
)
from latentkit.errors import LatentkitError
from latentkit.report import DIAGNOSE_EXAMPLES, EVAL_PAIRS, MAX_METRICS_BYTES
from latentkit.training.config import MAX_SEED

__all__ = [
    "DATA_KEYS",
    "DEFAULT_DATA",
    "DIAGNOSE_EXAMPLES",
    "EVAL_KEYS",
    "EVAL_PAIRS",
    "MAX_CONFIG_BYTES",
    "MAX_DATA_LIMIT",
    "MAX_IWAE_K",
    "MAX_METRICS_BYTES",
    "MAX_ROWS",
    "MAX_SAMPLES",
    "MAX_SEED",
    "CLIError",
    "parse_value",
]


# Kept here for their old import path: the tables' keys, read from their classes.
DATA_KEYS = field_names(DataConfig)
EVAL_KEYS = field_names(EvalConfig)


DEFAULT_DATA = "mnist"


MAX_SAMPLES = 10_000
"""``sample -n``: the most samples in one grid."""


MAX_CONFIG_BYTES = 2**20
"""A ``--config`` TOML file larger than this is refused before it is read."""


class CLIError(LatentkitError):
    """A problem with the command line itself (exit status 2)."""


def _int_type(low: int, high: int, what: str = "an int"):
    """An argparse ``type``: an int in [low, high], else one usage line naming the range."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"{what} must be ≥ {low} and at most {high:,}, got {value:,}"
                if abs(value) < 10**30
                else f"{what} must be ≥ {low} and at most {high:,}, got {text[:40]}…"
            )
        return value

    return parse


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error as one line (the usage itself is one --help away)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {self.prog}: {message} (see `{self.prog} --help`)\n")


def _say_error(err: Console, exc: BaseException) -> None:
    """One line, never wrapped: ``error: MESSAGE`` (a message's own line breaks joined)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = " | ".join(lines) or type(exc).__name__
    # A name the file system gave us may not be UTF-8 (surrogate escapes): show it escaped.
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    err.print(f"[bold red]error:[/] {escape(text)}", highlight=False, soft_wrap=True)


INTERRUPTED = 130
"""The exit status after Ctrl-C (SIGINT): 128 + the signal's number, as a shell reports it."""


def _say_interrupted(argv: Sequence[str] | None) -> int:
    """After Ctrl-C: one line on stderr naming the command, no traceback; returns 130. Every
    file is written whole or not at all (``latentkit.safe_io``, ``plots.save_figure``), so
    the line need not say which were."""
    from latentkit.training import distributed_env

    words = list(sys.argv[1:] if argv is None else argv)
    command = next((w for w in words if not w.startswith("-")), "")
    try:  # under torchrun every rank is interrupted: rank 0 alone says so
        quiet = not distributed_env().is_main
    except LatentkitError:
        quiet = False
    Console(stderr=True, quiet=quiet).print(
        f"interrupted: latentkit {command} stopped (exit status {INTERRUPTED})",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    return INTERRUPTED


def parse_value(text: str) -> Any:
    """A ``--set`` value: TOML if it parses as one value (numbers, booleans, arrays, quoted
    text), else the text itself. Parsed, never evaluated."""
    try:
        doc = tomllib.loads(f"v = {text}")
    except tomllib.TOMLDecodeError:
        return text
    except RecursionError:
        raise CLIError(f"--set value {text[:40]!r}…: nested too deeply") from None
    return doc["v"] if list(doc) == ["v"] else text


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.3g} {unit}"
        n /= 1000
    return f"{n:.3g} TB"


def _check_rows(options: dict[str, Any], batch_size: int | None) -> None:
    """``--num-samples`` × the batch size: the rows of one ELBO batch, bounded (memory)."""
    rows = int(options.get("num_samples", 1)) * int(batch_size or options.get("batch_size", 500))
    if rows > MAX_ROWS:
        raise CLIError(
            f"--num-samples × --batch-size = {rows:,} rows per ELBO batch, more than "
            f"{MAX_ROWS:,}; lower one of them"
        )


def _device(name: str) -> torch.device:
    from latentkit.training import resolve_device

    return resolve_device(name)


def _run_dir_of(path: Path) -> Path:
    """The run folder of a run folder, of its checkpoints/ or best/ (the best on validation)
    folder, or of a checkpoint in one of them: where a command's files about the run go."""
    from latentkit.checkpoint import list_checkpoints

    path = Path(path)
    folder = path if path.is_dir() else path.parent
    if folder.name in ("checkpoints", "best") and list_checkpoints(folder):
        return folder.parent
    return folder


def _to_display(x: torch.Tensor, info: dict[str, Any]) -> torch.Tensor:
    from latentkit.data import to_display

    kind = (info.get("data") or {}).get("kind", "unit")
    x = x.detach().float().cpu()
    if kind == "real":  # standardized data: the scalars are not in the checkpoint; stretch
        return (x - x.min()) / (x.max() - x.min()).clamp_min(1e-12)
    return to_display(x, kind)
