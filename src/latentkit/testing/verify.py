"""``latentkit verify NAME``: run the property checks on a registered model and report.

The CLI's ``verify`` subcommand calls :func:`verify_command`; it prints a table (check,
examples tried, result) and, for each failure, Hypothesis's shrunk counterexample.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from latentkit.errors import UnknownModelError
from latentkit.registry import get_model_spec
from latentkit.testing.checks import CHECKS, STAGES, Z_CRITICAL, CheckResult, run_checks
from latentkit.testing.checks.runner import model_checks

__all__ = ["verify_command"]

_STYLE = {"passed": "green", "failed": "bold red", "not applicable": "yellow", "skipped": "dim"}


@contextmanager
def _one_thread() -> Iterator[None]:
    """torch on one intra-op thread for the block."""
    # The checks run thousands of small tensor ops; intra-op threads only add
    # synchronisation there (6x slower measured with 2 threads on a busy 2-core machine).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _result_cell(result: CheckResult) -> Text:
    """A check's result as a styled cell: its status and, dimmed, why or how much."""
    text = Text(result.status.upper() if result.failed else result.status, _STYLE[result.status])
    if result.detail and not result.failed:
        # The reason's first clause; the rest is for the Python API (CheckResult.detail).
        text.append(": " + re.split(r": |; ", result.detail)[0], "dim")
    elif result.not_applicable:
        text.append(f" ({result.not_applicable} not applicable)", "dim")
    if result.drawn > result.examples:
        text.append(f" ({result.drawn} cases drawn for these)", "dim")
    return text


def verify_command(
    name: str, *, device: str = "cpu", max_examples: int = 25, console: Console | None = None
) -> int:
    """Run every check on model ``name``; print the table and any counterexamples.

    Returns the exit code: 0 when no check failed (not applicable and skipped checks do not
    fail), 1 when any check failed, 2 when the model is unknown, ``max_examples`` is not
    ≥ 1 or ``device`` cannot be used.
    """
    console = console or Console()
    problem, spec = _refusal(name, device, max_examples)
    if problem is not None:
        console.print(f"[bold red]error:[/] {problem}")
        return 2
    console.print(
        f"Verifying [bold]{name}[/] ({spec.plugin}) on {device}: up to {max_examples} "
        f"examples per check; statistical checks: z-tests at {Z_CRITICAL} standard errors "
        f"over {STAGES[0]} replicates, redrawn at {' and '.join(map(str, STAGES[1:]))} "
        "before a failure is declared."
    )
    if spec.test_configs is None:
        console.print(
            "[yellow]note:[/] the plugin declares no test_configs; checking the default config only"
        )
    table, add_row = _results_table(name)
    count = len(CHECKS) + len(model_checks(name))
    with _one_thread(), console.status(f"checking {name} ({count} checks)…"):
        results = run_checks(
            name, device=device, max_examples=max_examples, derandomize=True, on_result=add_row
        )
    console.print(table)
    return _print_outcome(console, name, results)


def _refusal(name: str, device: str, max_examples: Any) -> tuple[str | None, Any]:
    """(why the run cannot start, or None; the model's spec): an unknown model, a
    ``max_examples`` that is not an int ≥ 1, a device torch does not know or CUDA absent."""
    try:
        spec = get_model_spec(name)
    except UnknownModelError as exc:
        return str(exc), None
    if isinstance(max_examples, bool) or not isinstance(max_examples, int) or max_examples < 1:
        return f"--max-examples must be an int ≥ 1, got {max_examples!r}", spec
    try:
        torch.device(device)
    except RuntimeError as exc:
        return f"unknown device {device!r}: {exc}", spec
    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        return f"device {device!r}: there is no CUDA device here", spec
    return None, spec


def _results_table(name: str) -> tuple[Table, Callable[[CheckResult], None]]:
    """The results table, and the callback that adds each check's row as it finishes, with
    the time since the previous one."""
    table = Table(title=f"latentkit verify {name}")
    table.add_column("check", no_wrap=True)
    table.add_column("examples tried", justify="right")
    table.add_column("result")
    table.add_column("time", justify="right", style="dim")
    started = time.perf_counter()

    def add_row(result: CheckResult) -> None:
        nonlocal started
        elapsed = time.perf_counter() - started
        started = time.perf_counter()
        table.add_row(
            result.check.key,
            str(result.examples),
            _result_cell(result),
            f"{elapsed:.1f}s",
        )

    return table, add_row


def _print_outcome(console: Console, name: str, results: list[CheckResult]) -> int:
    """Each failure's shrunk counterexample in a panel, then the verdict; the exit code."""
    failures = [r for r in results if r.failed]
    for r in failures:
        body = Text()
        body.append(r.detail + "\n\n", "red")
        body.append(r.counterexample or "(Hypothesis printed no counterexample)")
        console.print(
            Panel(
                body,
                title=f"{r.check.key}: {r.check.title}",
                subtitle="shrunk counterexample",
                border_style="red",
            )
        )
    if failures:
        console.print(f"[bold red]{len(failures)} of {len(results)} checks failed[/] for {name}.")
        return 1
    console.print(f"[green]no check failed[/] for {name}.")
    return 0
