"""The registry of checks: each generic property check by key (:data:`CHECKS`), a model's
own checks (``ModelSpec.checks``) checked beside them, and the selection of checks to run."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import attrs
import torch

from latentkit.registry import get_model_spec
from latentkit.testing.checks import agreement, basic, normalisation, orderings
from latentkit.testing.checks.case import ModelCase

__all__ = ["CHECKS", "Check", "model_checks"]


@attrs.frozen
class Check:
    """A named property check. ``skip_reason()`` is None when it can run on this machine.

    ``applies(case)``, when given, is None for a case the check applies to and the reason
    otherwise; :func:`run_check` then asks Hypothesis for cases it applies to (rejecting
    the others) so that a check that covers a fraction of a plugin's configs still runs
    on its full number of examples, and reports how many cases it drew for them.
    """

    key: str
    title: str
    run: Callable[[ModelCase], None]
    skip_reason: Callable[[], str | None] = lambda: None
    applies: Callable[[ModelCase], str | None] | None = None

    @property
    def proves(self) -> str:
        """The check's docstring: what it proves."""
        return " ".join((self.run.__doc__ or "").split())


def _no_cuda() -> str | None:
    """Why the CUDA check cannot run here, or None."""
    return None if torch.cuda.is_available() else "no CUDA device on this machine"


CHECKS: tuple[Check, ...] = (
    Check("samples", "builds and samples", basic.samples),
    Check("finite", "finite values and gradients", basic.finite_values_and_gradients),
    Check("beta-ordering", "ELBO_β ≤ ELBO (β ≥ 1)", orderings.beta_ordering),
    Check("kl-nonnegative", "KL terms ≥ 0", orderings.kl_nonnegative),
    Check("iwae-ordering", "ELBO ≤ IWAE_k ≤ IWAE_k'", orderings.iwae_ordering),
    Check("batch-independence", "batch independence", basic.batch_independence),
    Check(
        "normalised",
        "densities normalised, draws follow them",
        normalisation.normalised,
    ),
    Check(
        "exact-log-p",
        "log p ≥ ELBO, IWAE; IWAE → log p (exact oracle)",
        orderings.exact_log_p_bounds,
        applies=orderings.exact_log_p_applies,
    ),
    Check(
        "kl-analytic-vs-mc", "analytic KL = Monte Carlo KL", agreement.kl_analytic_vs_monte_carlo
    ),
    Check("estimator-agreement", "top-down = bottom-up ELBO", agreement.estimator_agreement),
    Check("device-agreement", "CPU/CUDA agreement", agreement.device_agreement, _no_cuda),
)


def model_checks(name: str) -> list[Check]:
    """The model's own checks (``ModelSpec.checks``), checked: ``Check`` objects whose keys
    differ from the generic checks' and from each other."""
    declared = get_model_spec(name).checks
    if declared is None:
        return []
    own = list(declared())
    keys = [c.key for c in CHECKS]
    for c in own:
        if not isinstance(c, Check):
            raise TypeError(f"model {name!r}: its checks must be latentkit.testing.Check: {c!r}")
        if c.key in keys:
            raise ValueError(f"model {name!r}: its check key {c.key!r} is taken")
        keys.append(c.key)
    return own


def _select(checks: Iterable[str] | None, own: Sequence[Check] = ()) -> list[Check]:
    """The generic checks and ``own``, or those keyed in ``checks`` in that order."""
    every = [*CHECKS, *own]
    if checks is None:
        return every
    by_key = {c.key: c for c in every}
    unknown = sorted(set(checks) - set(by_key))
    if unknown:
        raise ValueError(f"unknown check(s) {unknown}; known checks: {list(by_key)}")
    return [by_key[k] for k in checks]
