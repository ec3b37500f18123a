"""Reusable verification: Hypothesis strategies and property checks for any latent model.

For a registered model (yours included)::

    from latentkit.testing import check_model
    check_model("mymodel")              # raises CheckFailure with counterexamples

or in pytest, with latentkit's plugin (loaded automatically)::

    def test_my_model(latentkit_check):
        latentkit_check("mymodel")

``latentkit verify mymodel`` runs the same checks from the command line. Each check and
what it proves: ``docs/checks.md``; the strategies: :mod:`latentkit.testing.strategies`;
the sequential z-test the statistical checks use, for your own properties:
:func:`assert_in_expectation`; deliberately broken models the checks are tested on:
:mod:`latentkit.testing.mutants`.
"""

from latentkit.testing import strategies as strategies
from latentkit.testing.checks import (
    CHECKS,
    REPLICATES,
    STAGES,
    Z_CRITICAL,
    CaseError,
    Check,
    CheckFailure,
    CheckResult,
    ModelCase,
    NotApplicable,
    assert_in_expectation,
    build_model,
    check_model,
    format_report,
    model_cases,
    run_check,
    run_checks,
)

__all__ = [
    "CHECKS",
    "REPLICATES",
    "STAGES",
    "Z_CRITICAL",
    "CaseError",
    "Check",
    "CheckFailure",
    "CheckResult",
    "ModelCase",
    "NotApplicable",
    "assert_in_expectation",
    "build_model",
    "check_model",
    "format_report",
    "model_cases",
    "run_check",
    "run_checks",
    "strategies",
]
