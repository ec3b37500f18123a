"""Property checks of the continuous-time model, in the author kit's form (``Check`` over a
``ModelCase``): any ``vdm`` config the plugin's ``test_configs`` draw, its parameters moved
off their initialisation, float64. ``run_check(check, "vdm")`` runs one of them.

* ``vdm-score-matching``: ½ g² ‖s_θ − ∇ log q(z_t | x)‖² = ½ γ' ‖ε − ε̂_θ‖² at every draw
  (λ = g², seed 001 eq. 34) — exact.
* ``vdm-layer-kl``: each discrete layer's KL is ½ expm1(γ_t − γ_s) ‖ε − ε̂_θ‖² (VDM eq. 13),
  the term whose T → ∞ limit is the diffusion term — exact.
* ``vdm-continuous-unbiased``: given ε, the mean of the sampled diffusion term over
  low-discrepancy t equals its integral over [0, 1] (midpoint rule on 20,000 t) — z-test
  over ``REPLICATES`` batches at ``Z_CRITICAL``.
"""

from __future__ import annotations

import math

import torch

from latentkit.testing.checks import (
    REPLICATES,
    Z_CRITICAL,
    Check,
    CheckFailure,
    ModelCase,
    NotApplicable,
    assert_close,
)
from latentkit_vdm.continuous import sample_times

__all__ = ["VDM_CHECKS", "continuous_unbiased", "layer_kl_is_eq13", "score_matching_is_diffusion"]


def _core(case: ModelCase):
    core = getattr(case.model.generative, "core", None)
    if core is None or not hasattr(core, "diffusion_integrand"):
        raise NotApplicable("not a continuous-time diffusion")
    return core


def _given(case: ModelCase, n: int) -> dict:
    """``condition=`` for the core's functions on n rows: the case's bound condition (a
    conditional model's, tiled), nothing for an unconditional one."""
    p = case.model.generative
    return {} if p.condition_spec is None else {"condition": p.condition_for(n)}


def _draws(case: ModelCase, stream: int):
    g = torch.Generator(device=case.x.device).manual_seed(case.seed * 7919 + stream)
    x = case.x
    t = torch.rand(x.shape[0], generator=g, dtype=x.dtype, device=x.device)
    eps = torch.randn(x.shape, generator=g, dtype=x.dtype, device=x.device)
    return x, t, eps


def score_matching_is_diffusion(case: ModelCase) -> None:
    """½ g(t)² ‖s_θ(z_t, t) + ε/β̄_t‖² = ½ γ'(t) ‖ε − ε̂_θ(z_t, t)‖² per draw (λ = g²)."""
    core = _core(case)
    x, t, eps = _draws(case, 1)
    with torch.no_grad():
        dsm = core.score_matching_loss(x, t, eps, **_given(case, x.shape[0]))
        term = core.diffusion_integrand(x, t, eps, **_given(case, x.shape[0]))
    assert_close(dsm, term, "λ = g² score matching vs the diffusion term")


def layer_kl_is_eq13(case: ModelCase) -> None:
    """KL(q(z_s | z_t, x) ‖ p(z_s | z_t)) = ½ expm1(γ_t − γ_s) ‖ε − ε̂_θ(z_t, t)‖² per layer."""
    core = _core(case)
    model = case.model
    T = model.generative.num_timesteps
    x, _, eps = _draws(case, 2)
    with torch.no_grad():
        for l in range(2, T + 2):
            s = torch.tensor((l - 2) / T, dtype=x.dtype, device=x.device)
            t = torch.tensor((l - 1) / T, dtype=x.dtype, device=x.device)
            z = core.q_sample(x, t, eps)
            q = model.posterior.down(l, z, x)
            kl = torch.distributions.kl_divergence(q, model.generative.transition(l, z))
            gs, _ = core.gamma(s)
            gt, _ = core.gamma(t)
            err = (eps - core.eps(z, t, **_given(case, z.shape[0]))).pow(2).flatten(1).sum(-1)
            assert_close(kl, 0.5 * torch.expm1(gt - gs) * err, f"layer {l} KL vs VDM eq. 13")


def continuous_unbiased(case: ModelCase) -> None:
    """E_t[½ γ'(t) ‖ε − ε̂_θ‖²] over low-discrepancy t = ∫_0^1 of it, ε held fixed (z-test)."""
    core = _core(case)
    x, _, eps = _draws(case, 3)
    x, eps = x[:1], eps[:1]
    n, batch = 20_000, 16
    with torch.no_grad():
        grid = (torch.arange(n, dtype=x.dtype, device=x.device) + 0.5) / n
        rep = (n, *([1] * (x.ndim - 1)))
        given = _given(case, n)
        want = core.diffusion_integrand(x.repeat(rep), grid, eps.repeat(rep), **given).mean()
        rep = (batch * REPLICATES, *([1] * (x.ndim - 1)))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(case.seed)
            t = torch.cat(
                [sample_times(batch, "low-discrepancy", like=x) for _ in range(REPLICATES)]
            )
        vals = core.diffusion_integrand(x.repeat(rep), t, eps.repeat(rep), **_given(case, rep[0]))
        means = vals.reshape(REPLICATES, batch).mean(-1)
    se = float(means.std() / math.sqrt(REPLICATES))
    z = float(means.mean() - want) / se if se > 0 else 0.0
    if abs(z) > Z_CRITICAL:
        raise CheckFailure(
            f"mean diffusion term over low-discrepancy t {float(means.mean()):.6g} vs its "
            f"integral {float(want):.6g}: z = {z:.2f} (|z| ≤ {Z_CRITICAL} allowed)"
        )


VDM_CHECKS: tuple[Check, ...] = (
    Check(
        "vdm-score-matching", "λ = g² score matching = diffusion term", score_matching_is_diffusion
    ),
    Check("vdm-layer-kl", "discrete layer KL = VDM eq. 13", layer_kl_is_eq13),
    Check("vdm-continuous-unbiased", "ELBO_∞ estimator unbiased (quadrature)", continuous_unbiased),
)
