"""Property checks that run on any registered latent model, driven by Hypothesis.

A check is a function of one :class:`ModelCase`: a model built from a config its plugin
declares (``ModelSpec.test_configs``) and a seed, its parameters moved off their
initialisation, a data batch it accepts, β ≥ 1 and importance sample counts k ≤ k'. It
raises :class:`CheckFailure` when the property fails, :class:`NotApplicable` when the model
does not admit it (e.g. no exact log p). :func:`run_checks` lets Hypothesis search for a
failing case and shrink it; ``latentkit verify NAME`` and the pytest fixture
``latentkit_check`` are thin layers over it. What each check proves: ``docs/checks.md``.

One module per family: :mod:`.case` (the case and the kit's exceptions), :mod:`.stats`
(exact and sequential statistical comparisons), :mod:`.path` (a latent path walked
independently of the estimators), :mod:`.basic`, :mod:`.orderings`, :mod:`.agreement`,
:mod:`.normalisation` (the checks), :mod:`.runner` (running them, the report).

Numbers: everything runs in float64. Exact checks allow float64 round-off,
``EXACT_RTOL · (1 + |value|)``. Statistical checks compare means over replicates with a
sequential z-test at ``Z_CRITICAL`` = 4.5 standard errors: ``REPLICATES`` = 64 replicates,
then fresh draws at 512 and 4,096 before a failure is declared (:mod:`.stats`). Every
draw comes from the case's seed, so a run — and a false alarm, were one to happen — is
reproducible.
"""

from latentkit.testing.checks.agreement import (
    device_agreement,
    estimator_agreement,
    kl_analytic_vs_monte_carlo,
)
from latentkit.testing.checks.basic import (
    batch_independence,
    finite_values_and_gradients,
    samples,
)
from latentkit.testing.checks.case import (
    CaseError,
    CheckFailure,
    ModelCase,
    NotApplicable,
    build_model,
    model_cases,
)
from latentkit.testing.checks.normalisation import normalised
from latentkit.testing.checks.orderings import (
    beta_ordering,
    exact_log_p_bounds,
    iwae_ordering,
    kl_nonnegative,
)
from latentkit.testing.checks.path import walk
from latentkit.testing.checks.runner import (
    CHECKS,
    SHRINK_SECONDS,
    Check,
    CheckResult,
    check_model,
    format_report,
    run_check,
    run_checks,
)
from latentkit.testing.checks.stats import (
    EXACT_RTOL,
    REPLICATES,
    STAGES,
    Z_CRITICAL,
    assert_close,
    assert_equal_in_expectation,
    assert_in_expectation,
    assert_le_in_expectation,
    enumerable,
    expected_elbo,
    expected_iwae,
)

__all__ = [
    "CHECKS",
    "EXACT_RTOL",
    "REPLICATES",
    "SHRINK_SECONDS",
    "STAGES",
    "Z_CRITICAL",
    "CaseError",
    "Check",
    "CheckFailure",
    "CheckResult",
    "ModelCase",
    "NotApplicable",
    "assert_close",
    "assert_equal_in_expectation",
    "assert_in_expectation",
    "assert_le_in_expectation",
    "batch_independence",
    "beta_ordering",
    "build_model",
    "check_model",
    "device_agreement",
    "enumerable",
    "estimator_agreement",
    "exact_log_p_bounds",
    "expected_elbo",
    "expected_iwae",
    "finite_values_and_gradients",
    "format_report",
    "iwae_ordering",
    "kl_analytic_vs_monte_carlo",
    "kl_nonnegative",
    "model_cases",
    "normalised",
    "run_check",
    "run_checks",
    "samples",
    "walk",
]
