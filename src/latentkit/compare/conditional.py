"""A conditional run's figures as ``compare`` shows them: its ELBO and IWAE bound
−log p(x | c) given the test labels, not −log p(x); the report's marginal NLL
−log Σ_c p(c) p(x | c) (``report.json``'s ``conditional`` block) is the figure comparable
with an unconditional run's, and the one ``best`` picks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from latentkit.estimates import Estimate

__all__ = ["GIVEN", "MARGINAL", "conditional_figures"]

MARGINAL = "marginal"
"""The key of a conditional run's marginal NLL figure."""

BOUNDS = ("elbo", "iwae")
"""The figures of the evaluation proper, computed given the test labels."""

GIVEN = "≥ −log p(x | c) in expectation (given the test labels)"
"""What a conditional run's ELBO and IWAE bound."""


def conditional_figures(
    report: dict[str, Any], out: dict[str, Any], figure: Callable[..., Any]
) -> dict[str, Any]:
    """``out`` (the run's figures by key) with a conditional run's ``elbo``/``iwae`` labelled
    as bounds given c and its marginal NLL added first; ``out`` as it was for a report with
    no ``conditional`` block. ``figure(key, label, bounds, nll, count)`` makes a Figure."""
    block = report.get("conditional")
    if not isinstance(block, dict) or not _number(block.get("marginal_nll")):
        return out
    given = {
        k: attrs.evolve(f, label=f"{f.label} given c", bounds=GIVEN) if k in BOUNDS else f
        for k, f in out.items()
    }
    se = block.get("marginal_nll_stderr")
    nll = Estimate(float(block["marginal_nll"]), float(se) if _number(se) else float("nan"))
    k = block.get("iwae_k")
    label = f"−log Σ_c p(c) p(x|c) (IWAE_k={k} per class)"
    bound = "≥ −log p(x) in expectation"
    marginal = figure(MARGINAL, label, bound, nll, block.get("examples"))
    return {MARGINAL: marginal, **given}


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
