"""The registry of checks: each generic property check by key (:data:`CHECKS`), a model's
own checks (``ModelSpec.checks``) checked beside them, and the selection of checks to run."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import attrs
import torch

from latentkit.arguments import describe_value
from latentkit.errors import ConfigError, InputError
from latentkit.registry import get_model_spec
from latentkit.testing.checks import agreement, basic, contract, normalisation, orderings
from latentkit.testing.checks.case import ModelCase

__all__ = ["CHECKS", "Check", "model_checks"]


def _field(name: str, value: object, kind: type | None = None) -> None:
    """A non-empty str (``kind`` str) or a callable (``kind`` None), else an InputError."""
    ok = isinstance(value, str) and bool(value) if kind is str else callable(value)
    if not ok:
        want = "a non-empty str" if kind is str else "a callable"
        raise InputError(f"Check: {name} must be {want}, got {describe_value(value)}")


@attrs.frozen
class Check:
    """A named property check. ``skip_reason()`` is None when it can run on this machine.

    ``applies(case)``, when given, is None for a case the check applies to and the reason
    otherwise; :func:`run_check` then asks Hypothesis for cases it applies to (rejecting
    the others) so that a check that covers a fraction of a plugin's configs still runs
    on its full number of examples, and reports how many cases it drew for them.

    ``key``, ``title``: non-empty str; ``run``, ``skip_reason``, ``applies``: callables (an
    InputError naming the field otherwise).
    """

    key: str = attrs.field(validator=lambda i, a, v: _field(a.name, v, str))
    title: str = attrs.field(validator=lambda i, a, v: _field(a.name, v, str))
    run: Callable[[ModelCase], None] = attrs.field(validator=lambda i, a, v: _field(a.name, v))
    skip_reason: Callable[[], str | None] = attrs.field(
        default=lambda: None, validator=lambda i, a, v: _field(a.name, v)
    )
    applies: Callable[[ModelCase], str | None] | None = attrs.field(
        default=None, validator=lambda i, a, v: v is None or _field(a.name, v)
    )

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
    Check("contract", "each chain method keeps the contract", contract.chain_contract),
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
    """The generic checks and ``own``, or those keyed in ``checks`` in that order (an unknown
    key, or ``checks`` not an iterable of str: a ConfigError listing the known keys)."""
    every = [*CHECKS, *own]
    if checks is None:
        return every
    by_key = {c.key: c for c in every}
    if isinstance(checks, str) or not isinstance(checks, Iterable):
        raise ConfigError(
            f"checks must be a list of check keys, got {describe_value(checks)}; "
            f"known checks: {list(by_key)}"
        )
    checks = list(checks)
    unknown = sorted(map(repr, (c for c in checks if not isinstance(c, str) or c not in by_key)))
    if unknown:
        raise ConfigError(f"unknown check(s) [{', '.join(unknown)}]; known checks: {list(by_key)}")
    return [by_key[k] for k in checks]
