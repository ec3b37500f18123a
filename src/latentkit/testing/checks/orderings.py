"""Orderings of the bounds: ELBO_β ≤ ELBO, KL ≥ 0, ELBO ≤ IWAE_k ≤ IWAE_k', and against an
exact log p(x): log p ≥ ELBO, IWAE, and the importance-sampling estimate of p(x) is
unbiased (tightness)."""

from __future__ import annotations

import math

import torch

from latentkit.bounds import elbo
from latentkit.errors import NotTractableError
from latentkit.estimators import resolve_estimator
from latentkit.oracles import exact_log_prob, exact_posterior
from latentkit.testing.checks.case import CheckFailure, ModelCase, NotApplicable
from latentkit.testing.checks.path import kl_terms, walk
from latentkit.testing.checks.stats import (
    REPLICATES,
    allowance,
    assert_close,
    assert_in_expectation,
    expected_elbo,
    expected_iwae,
    per_replicate,
    replicated,
    worst,
)

__all__ = [
    "beta_ordering",
    "exact_log_p_applies",
    "exact_log_p_bounds",
    "iwae_ordering",
    "kl_nonnegative",
]


def stage_stream(stream: int, stage: int) -> int:
    """The draw stream of a sequential comparison's stage: fresh draws at every stage."""
    return stream + 64 * stage


@torch.no_grad()
def beta_ordering(case: ModelCase) -> None:
    """ELBO_β ≤ ELBO for β ≥ 1 (DESIGN §7.2).

    Proves: at one seed the draws do not depend on β (every term agrees between β = 1 and
    β); ELBO_β = reconstruction − β · Σ KL exactly; and ELBO_β ≤ ELBO — exactly, per draw,
    when every KL term is in closed form (each is then ≥ 0), otherwise in expectation
    (one-sided paired sequential z-test on ELBO − ELBO_β over replicates).
    """
    model, x, beta = case.model, case.x, case.beta
    with case.draws():
        one = elbo(model, x)
    with case.draws():
        weighted = elbo(model, x, beta=beta)
    for term, value in one.terms.items():
        assert_close(weighted.terms[term], value, f"{term} at β = {beta} vs β = 1, same seed")
    assert_close(
        weighted.total,
        weighted.reconstruction - beta * weighted.kl,
        "ELBO_β vs reconstruction − β · KL",
    )
    estimator = resolve_estimator(model, "auto")
    with case.draws(1):
        kls = walk(model, x).closed_form_kls
    if not estimator.per_sample_exact and kls and all(v is not None for v in kls.values()):
        i = worst(weighted.total - one.total - allowance(one.total, weighted.total))
        if i is not None:
            raise CheckFailure(
                f"ELBO_β > ELBO at β = {beta} for example {i} with closed-form KL terms: "
                f"{weighted.total[i].item()!r} > {one.total[i].item()!r}"
            )
        return

    def draw(r: int, stage: int):
        xr = replicated(x, r)
        with case.draws(stage_stream(2, stage)):
            one = elbo(model, xr).total
        with case.draws(stage_stream(2, stage)):
            weighted = elbo(model, xr, beta=beta).total
        return per_replicate(weighted, r), per_replicate(one, r)

    assert_in_expectation(draw, f"E[ELBO_β] ≤ E[ELBO] at β = {beta}", paired=True)


@torch.no_grad()
def kl_nonnegative(case: ModelCase) -> None:
    """KL terms ≥ 0 (DESIGN §7.10).

    Proves: every KL term torch computes in closed form along a path drawn from q is ≥ 0
    for every example (exact, up to round-off); and the model's ELBO estimator reports KL
    terms that are ≥ 0 in expectation (one-sided sequential z-test over replicates) — each
    term for a top-down estimator, whose terms are KLs of aligned conditionals, and their
    sum for a bottom-up one, whose sum alone is a KL (of q(z|x) from p(z)).
    """
    model, x = case.model, case.x
    with case.draws():
        kls = walk(model, x).closed_form_kls or {}
    for term, kl in kls.items():
        if kl is not None:
            i = worst(-kl - allowance(kl))
            if i is not None:
                raise CheckFailure(
                    f"closed-form KL term {term} is negative for example {i}: {kl[i].item()!r}"
                )
    per_term = resolve_estimator(model, "auto").needs_top_down
    zero = x.new_zeros(x.shape[0])

    def terms(r: int, stage: int) -> dict[str, torch.Tensor]:
        with case.draws(stage_stream(1, stage)):
            result = elbo(model, replicated(x, r))
        if per_term:
            return {f"E[{t}] ≥ 0": per_replicate(v, r) for t, v in kl_terms(result).items()}
        return {"E[Σ KL terms] ≥ 0": per_replicate(result.kl, r)}

    first = terms(REPLICATES, 0)
    for what in first:

        def draw(r: int, stage: int, what=what):
            value = first[what] if stage == 0 else terms(r, stage)[what]
            return zero, value

        assert_in_expectation(draw, what)


@torch.no_grad()
def iwae_ordering(case: ModelCase) -> None:
    """ELBO ≤ IWAE_k ≤ IWAE_k' for k ≤ k' in expectation (DESIGN §7.3).

    Proves: the mean of the model's ELBO estimate does not exceed that of IWAE_k, nor IWAE_k
    that of IWAE_k' (independent replicates, one-sided sequential z-test). Catches
    importance weights that are not p(x, z)/q(z|x) in a way the ELBO does not share (a
    proposal whose draws are not those of the density the ELBO uses). It cannot see a
    log density that is off by a constant everywhere: both bounds shift alike
    (``normalised`` and ``exact-log-p`` catch that).
    """
    model, x = case.model, case.x

    def bound_and_low(r: int, stage: int):
        s = 16 * stage
        return (
            expected_elbo(model, x, case, 1 + s, r),
            expected_iwae(model, x, case.k, case, 2 + s, r),
        )

    def low_and_high(r: int, stage: int):
        s = 16 * stage
        return (
            expected_iwae(model, x, case.k, case, 2 + s, r),
            expected_iwae(model, x, case.k_max, case, 3 + s, r),
        )

    assert_in_expectation(bound_and_low, f"E[ELBO] ≤ E[IWAE_{case.k}]")
    assert_in_expectation(low_and_high, f"E[IWAE_{case.k}] ≤ E[IWAE_{case.k_max}]")


def exact_log_p_applies(case: ModelCase) -> str | None:
    """None when the exact log p(x) is tractable for the case's model, else the reason."""
    try:
        exact_log_prob(case.model, case.x)
    except NotTractableError as exc:
        return str(exc)
    return None


@torch.no_grad()
def exact_log_p_bounds(case: ModelCase) -> None:
    """log p(x) ≥ ELBO and ≥ IWAE_k', and IWAE tends to log p, where log p is exact
    (DESIGN §7.1, §7.3).

    Proves: against the exact log p(x) (``latentkit.exact_log_prob``: the model's
    ``log_marginal`` or the linear-Gaussian oracle), the mean ELBO and the mean IWAE_k' do
    not exceed it (one-sided sequential z-test; when q is the exact posterior both equal
    log p and the round-off allowance alone applies). Tightness, for a linear-Gaussian
    chain with the exact posterior q* at hand: the importance-sampling estimate of p(x)
    with the defensive proposal m = ½ q + ½ q* is unbiased, E_m[p(x, z)/m(z|x)] = p(x)
    (two-sided sequential z-test; each weight over p(x) lies in [0, 2], so the z-test's
    normal approximation holds). That is the limit IWAE_k → log p as k → ∞ with q's
    density in the proposal; it fails when a density of p(z), p(z_{l−1}|z_l) or p(x|z) is
    off by a constant in either direction, which no ordering sees, and when q's is, where
    q and q* overlap (``normalised`` tests q on its own). Where q's factors hand out
    their density with their draws (``rsample_and_log_prob``), q is not evaluated at q*'s
    draws and m = q* (then only p's densities are tested). Not applicable when exact log p
    is intractable.
    """
    model, x = case.model, case.x
    reason = exact_log_p_applies(case)
    if reason is not None:
        raise NotApplicable(reason)
    log_p = exact_log_prob(model, x)
    if not bool(torch.isfinite(log_p).all()):
        raise CheckFailure(f"exact log p(x) is not finite: {log_p.tolist()}")

    def elbo_vs_log_p(r: int, stage: int):
        return expected_elbo(model, x, case, 1 + 16 * stage, r), log_p

    def iwae_vs_log_p(r: int, stage: int):
        return expected_iwae(model, x, case.k_max, case, 2 + 16 * stage, r), log_p

    assert_in_expectation(elbo_vs_log_p, "E[ELBO] ≤ log p(x)")
    assert_in_expectation(iwae_vs_log_p, f"E[IWAE_{case.k_max}] ≤ log p(x)")
    if model.generative.linear_gaussian() is not None:
        _assert_importance_sampling_unbiased(case, log_p)


def _assert_importance_sampling_unbiased(case: ModelCase, log_p: torch.Tensor) -> None:
    """E_m[p(x, z)/m(z|x)] = p(x) for the defensive proposal m = ½ q + ½ q* (q* the exact
    posterior of a linear-Gaussian chain; m = q* where q gives its density only at its own
    draws), by a two-sided sequential z-test (:func:`exact_log_p_bounds`)."""
    model, x = case.model, case.x
    exact = model.with_posterior(exact_posterior(model))

    def weights(r: int, stage: int):
        xr, log_pr = replicated(x, r), log_p.repeat(r)
        with case.draws(3 + 16 * stage):
            star = walk(exact, xr)
            own = walk(model, xr)
        if own.own_density_only:  # q's density only at its own draws: m = q*
            w = (star.log_joint() - log_pr - star.log_q()).exp()
        else:  # one draw from each half of m, stratified: E[½ (w(z*) + w(z_q))] = 1
            at_star = walk(model, xr, star.latents).log_q()
            at_own = walk(exact, xr, own.latents).log_q()
            log_m_star = torch.logaddexp(star.log_q(), at_star) - math.log(2)
            log_m_own = torch.logaddexp(own.log_q(), at_own) - math.log(2)
            w = 0.5 * (
                (star.log_joint() - log_pr - log_m_star).exp()
                + (own.log_joint() - log_pr - log_m_own).exp()
            )
        return per_replicate(w, r), torch.ones_like(log_p)

    assert_in_expectation(
        weights,
        "E_m[p(x, z)/m(z|x)]/p(x) = 1 (m = ½ q + ½ exact posterior)",
        relation="=",
        names=("estimate", "1"),
    )
