"""Normalisation: every distribution the chains return integrates to 1 and its draws follow
its own ``log_prob`` (DESIGN §7.12).

For a distribution d and any normalised reference density r whose support lies in d's,

    E_{z~d}[ r(z) / d(z) ] = ∫ r = 1.

A ``log_prob`` off by a constant c gives e^{−c}; draws that do not come from the density
that ``log_prob`` describes give ∫ d' r / d ≠ 1. The reference is a Gaussian placed by
independent pilot draws of d, with covariance c²·Σ̂ (c < 1, from the dimension D so that
E_d[(r/d)²] ≤ 2 for a Gaussian d: relative variance ≤ 1) and a second one shifted by half
a standard deviation; for a ``MixtureSameFamily`` the reference is a mixture of such
Gaussians, one per component, so r/d stays bounded across separated modes. Only d's own
draws and its log density there are used (``rsample_and_log_prob`` where defined).
A discrete d with an enumerable support is checked exactly (Σ_z d(z) = 1) and its draw
frequencies against its probabilities; an ``Independent`` over such a base, element by
element. Other supports (an interval, a discretized grid) are not covered.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import (
    Categorical,
    Distribution,
    Independent,
    MixtureSameFamily,
    MultivariateNormal,
    constraints,
)

from latentkit.testing.checks.case import ModelCase, NotApplicable
from latentkit.testing.checks.path import draw_with_log_prob, walk
from latentkit.testing.checks.stats import assert_close, assert_in_expectation

__all__ = ["NORMALISATION_STAGES", "PILOT_DRAWS", "normalised", "reference_shrink"]

PILOT_DRAWS = 1024
"""Independent draws that place the reference density."""
NORMALISATION_STAGES = (1024, 8192, 65536)
"""Draws per example at each stage of the sequential comparison (draws are cheap here: no
network call, the distribution is already built)."""
SHIFT = 0.5
"""The second reference's offset, in standard deviations of d, along one direction."""


def reference_shrink(dim: int) -> float:
    """c such that E_d[(r/d)²] = (1/(c √(2 − c²)))^D = 2 for d = N(μ, Σ), r = N(μ, c² Σ).

    Solved by bisection on (0, 1]; at least 0.5 (D = 1 gives 0.36, kept at 0.5: 1.51).
    """
    target = math.log(2.0) / dim
    lo, hi = 1e-3, 1.0
    for _ in range(60):
        c = (lo + hi) / 2
        if -math.log(c * math.sqrt(2 - c * c)) > target:
            lo = c
        else:
            hi = c
    return max(hi, 0.5)


def _real(d: Distribution) -> bool:
    """Whether the distribution's support is the whole real line, scalar by scalar."""
    try:
        support = d.support
    except NotImplementedError:
        return False
    while isinstance(support, constraints.independent):
        support = support.base_constraint
    return support is constraints.real


def _gaussian_fit(z: Tensor, shrink: float, shift: float) -> MultivariateNormal | None:
    """N(mean + shift·σ̂·u, shrink²·Σ̂) from draws ``[P, *batch, D]``; None if degenerate."""
    mean = z.mean(0)
    centred = z - mean
    cov = torch.einsum("p...i,p...j->...ij", centred, centred) / (z.shape[0] - 1)
    scale_tril, info = torch.linalg.cholesky_ex(cov)
    if bool((info != 0).any()):
        return None
    direction = torch.ones(z.shape[-1], dtype=z.dtype, device=z.device)
    direction[1::2] = -1.0
    direction = direction / math.sqrt(z.shape[-1])
    loc = mean + shift * (scale_tril @ direction.unsqueeze(-1)).squeeze(-1)
    return MultivariateNormal(loc, scale_tril=shrink * scale_tril)


def references(d: Distribution, pilot: Tensor, event_dims: int) -> list[Distribution] | None:
    """The two reference densities over d's flattened event, placed by ``pilot`` draws."""
    dim = math.prod(d.event_shape)
    shrink = reference_shrink(dim)
    refs = []
    for shift in (0.0, SHIFT):
        if isinstance(d, MixtureSameFamily):
            comp = d.component_distribution
            draws = comp.sample((pilot.shape[0],))  # [P, *batch, K, *event]
            fit = _gaussian_fit(draws.flatten(draws.ndim - event_dims), shrink, shift)
            if fit is None:
                return None
            weights = Categorical(logits=d.mixture_distribution.logits)
            refs.append(MixtureSameFamily(weights, fit))
        else:
            fit = _gaussian_fit(pilot.flatten(pilot.ndim - event_dims), shrink, shift)
            if fit is None:
                return None
            refs.append(fit)
    return refs


def _enumerable_base(d: Distribution) -> tuple[Distribution, int]:
    """(the enumerable distribution under any ``Independent`` wrappers, dims reinterpreted)."""
    dims = 0
    while isinstance(d, Independent):
        dims += d.reinterpreted_batch_ndims
        d = d.base_dist
    return d, dims


def _check_discrete(name: str, d: Distribution, case: ModelCase, stream: int) -> None:
    """Σ over the support of a discrete factor's probabilities is 1, and its draws follow them."""
    base, dims = _enumerable_base(d)
    support = base.enumerate_support(expand=True)  # [K, *batch, *base event]
    log_probs = base.log_prob(support)
    total = torch.logsumexp(log_probs, 0)
    assert_close(total, torch.zeros_like(total), f"{name}: log Σ_z d(z)")
    probs = log_probs.exp().reshape(-1)  # [K · entries]
    base_event = len(base.event_shape)

    def draw(r: int, stage: int):
        with case.draws(stream + 64 * stage):
            z = base.sample((r,))  # [r, *batch, *base event]
        hits = z.unsqueeze(1) == support.unsqueeze(0)  # [r, K, *batch, *base event]
        if base_event:
            hits = hits.flatten(-base_event).all(-1)
        return hits.to(probs.dtype).reshape(r, -1), probs

    assert_in_expectation(
        draw,
        f"{name}: draw frequency",
        relation="=",
        names=("frequency", "probability"),
        sd=(probs * (1 - probs)).sqrt(),
    )
    if dims:
        with case.draws(stream + 1):
            z = d.sample()
        summed = base.log_prob(z).flatten(-dims).sum(-1)
        assert_close(d.log_prob(z), summed, f"{name}: log_prob vs Σ of its elements'")


def _check_continuous(name: str, d: Distribution, case: ModelCase, stream: int) -> bool:
    """The importance identity E_d[r/d] = 1 for the two references; False if none fits."""
    event_dims = len(d.event_shape)
    with case.draws(stream):
        pilot, _ = draw_with_log_prob(d, (PILOT_DRAWS,))
    refs = references(d, pilot.detach(), event_dims)
    if refs is None:
        return False

    def draw(r: int, stage: int):
        with case.draws(stream + 1 + 64 * stage):
            z, log_d = draw_with_log_prob(d, (r,))
        flat = z.detach().flatten(z.ndim - event_dims) if event_dims else z.detach()[..., None]
        ratios = torch.cat([(ref.log_prob(flat) - log_d.detach()).exp() for ref in refs], -1)
        return ratios.reshape(r, -1), ratios.new_ones(ratios[0].numel())

    assert_in_expectation(
        draw,
        f"{name}: E_d[r/d] = ∫ r (r a normalised reference; entries are examples × 2 references)",
        relation="=",
        names=("E_d[r/d]", "1"),
        stages=NORMALISATION_STAGES,
    )
    return True


MARGINAL_LAYERS = 8
"""At most this many layers' marginals q(z_l | x) of a layer-batched chain are checked."""


def _marginals(case: ModelCase) -> dict[str, Distribution]:
    """q(z_l | x) of a layer-batched posterior chain at up to ``MARGINAL_LAYERS`` layers
    spread over 1..L, one layer for the whole batch."""
    q, L, x = case.model.posterior, case.model.num_layers, case.x
    if not q.layer_batched:
        return {}
    count = min(L, MARGINAL_LAYERS)
    layers = sorted({round(1 + i * (L - 1) / max(count - 1, 1)) for i in range(count)})
    h = q.encode(x)
    return {
        f"log q(z_{l}|x) (marginal)": q.marginal(
            torch.full((x.shape[0],), l, dtype=torch.long, device=x.device), h
        )
        for l in layers
    }


@torch.no_grad()
def normalised(case: ModelCase) -> None:
    """Every distribution of both chains is normalised; its draws follow its log_prob
    (DESIGN §7.12).

    Proves: along a latent path from q, for each factor d — q's factors (and a
    layer-batched chain's marginals q(z_l|x)), the prior p(z_L), each transition
    p(z_{l−1}|z_l) and the likelihood p(x|z_1) — with real support:
    E_{z~d}[r(z)/d(z)] = 1 for two normalised Gaussian references r placed by independent
    pilot draws, lighter-tailed than a Gaussian d (r/d bounded, relative variance ≤ 1);
    two-sided sequential z-test over 1,024 (then 8,192, 65,536) draws. With a discrete,
    enumerable support: Σ_z d(z) = 1 exactly and each outcome's draw frequency equals its
    probability (binomial z-test). Catches a log density off by a constant or by a
    function of x (the ELBO and IWAE both shift, so no ordering sees it), a missing
    normaliser (a mixture's log K), draws from another distribution than log_prob's.
    Not applicable when no factor has a supported kind (real or enumerable).
    """
    with case.draws():
        path = walk(case.model, case.x)
    factors = dict(path.distributions)
    factors.update(_marginals(case))
    uncovered = []
    for j, (name, d) in enumerate(factors.items()):
        factor = name.removeprefix("log ")
        stream = 1000 + 8 * j
        if _enumerable_base(d)[0].has_enumerate_support:
            _check_discrete(factor, d, case, stream)
        elif not (_real(d) and _check_continuous(factor, d, case, stream)):
            uncovered.append(factor)
    if len(uncovered) == len(factors):
        raise NotApplicable("no factor has a real or enumerable support: " + ", ".join(uncovered))
