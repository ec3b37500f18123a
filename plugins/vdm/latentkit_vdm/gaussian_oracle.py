"""Closed forms for Gaussian data x ~ N(m, diag s²): the optimal ε-network and what it implies.

Every marginal of the forward process is Gaussian, q(z_t) = N(ᾱ_t m, diag v_t) with
v_t = ᾱ_t² s² + β̄_t², and the optimal ε-prediction is linear in z:

    ε̂*(z, t) = E[ε | z_t = z] = β̄_t (z − ᾱ_t m) / v_t,   E‖ε − ε̂*‖² = Σ ᾱ_t² s² / v_t.

With it the probability-flow ODE carries q_1 to q_0 exactly and is affine in z, so it carries
N(0, I) at t = 1 to N(m_0 − k m_1, diag k²) at t = 0, k = √(v_0/v_1) (:func:`ode_gaussian`);
this tends to the data's N(m, diag s²) as SNR(1) → 0 and SNR(0) → ∞.

The continuous bound at the optimal network, averaged over the data, leaves only the ends:

    E_data[−ELBO_∞] = H(p_data) + KL(q(z_1) ‖ N(0, I)) + E_{q(z_0)} KL(q(x | z_0) ‖ p(x | z_0))

(by the I-MMSE relation the diffusion term is I(x; z_0) − I(x; z_1), and E KL(q(z_1|x) ‖ N(0, I))
= I(x; z_1) + KL(q(z_1) ‖ N(0, I)), DESIGN §7 identity 14): :func:`elbo_gap` is the last two.
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import Tensor, nn

from latentkit.diffusion import alpha_bar_sq, beta_bar_sq

__all__ = [
    "OptimalGaussianEps",
    "data_entropy",
    "elbo_gap",
    "eps_error_given_x",
    "marginal_moments",
    "mmse_eps",
    "ode_gaussian",
]


class OptimalGaussianEps(nn.Module):
    """ε̂*(z, t) = β̄_t (z − ᾱ_t m)/(ᾱ_t² s² + β̄_t²) for data N(m, diag s²); ``coefficients``
    makes the model's discrete chain linear-Gaussian (exact oracle)."""

    def __init__(self, log_snr: nn.Module, mean: Tensor, var: Tensor):
        super().__init__()
        self.__dict__["log_snr"] = log_snr  # the model's schedule, referenced, not owned
        self.register_buffer("mean", mean.detach().clone().flatten())
        self.register_buffer("var", var.detach().clone().flatten())

    def coefficients(self, t: Tensor) -> tuple[Tensor, Tensor]:
        g, _ = self.log_snr(t.unsqueeze(-1))
        a2, s2 = alpha_bar_sq(g), beta_bar_sq(g)
        v = a2 * self.var + s2
        return s2.sqrt() / v, -(s2 * a2).sqrt() * self.mean / v

    def forward(self, z: Tensor, t: Tensor) -> Tensor:
        a, b = self.coefficients(t)
        return (a * rearrange(z, "n ... -> n (...)") + b).reshape(z.shape)


def marginal_moments(core, mean: Tensor, var: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    """q(z_t) = N(ᾱ_t m, ᾱ_t² s² + β̄_t²): (mean, variance) per dimension (t a 0-d tensor)."""
    g, _ = core.gamma(t)
    return alpha_bar_sq(g).sqrt() * mean, alpha_bar_sq(g) * var + beta_bar_sq(g)


def ode_gaussian(core, mean: Tensor, var: Tensor) -> tuple[Tensor, Tensor]:
    """The Gaussian N(m_0 − k m_1, k²), k = √(v_0/v_1), that the exact probability-flow ODE
    carries N(0, I) to at t = 0: (mean, variance) per dimension."""
    m0, v0 = marginal_moments(core, mean, var, mean.new_zeros(()))
    m1, v1 = marginal_moments(core, mean, var, mean.new_ones(()))
    k = (v0 / v1).sqrt()
    return m0 - k * m1, k**2


def mmse_eps(core, var: Tensor, t: Tensor) -> Tensor:
    """E_{x, ε}‖ε − ε̂*(z_t, t)‖² = Σ ᾱ_t² s²/(ᾱ_t² s² + β̄_t²); ``t`` any shape, Σ over D."""
    g, _ = core.gamma(t.unsqueeze(-1))
    signal = alpha_bar_sq(g) * var
    return (signal / (signal + beta_bar_sq(g))).sum(-1)


def eps_error_given_x(core, x: Tensor, t: Tensor) -> Tensor:
    """E_ε‖ε − ε̂(ᾱ_t x + β̄_t ε, t)‖² for a network linear in z (ε̂ = a z + b), per example:
    Σ (1 − a β̄_t)² + (a ᾱ_t x + b)². ``x`` ``[n, D]``, ``t`` ``[n]``."""
    a, b = core.linear_coefficients(t)
    g, _ = core.gamma(t.unsqueeze(-1))
    alpha, sigma = alpha_bar_sq(g).sqrt(), beta_bar_sq(g).sqrt()
    return ((1 - a * sigma) ** 2 + (a * alpha * x + b) ** 2).sum(-1)


def elbo_gap(core, mean: Tensor, var: Tensor) -> tuple[Tensor, Tensor]:
    """(KL(q(z_1) ‖ N(0, I)), E_{q(z_0)} KL(q(x | z_0) ‖ p(x | z_0))) for the Gaussian decoder
    p(x | z_0) = N(z_0/ᾱ_0, β̄_0²/ᾱ_0²); each summed over dimensions."""
    m1, v1 = marginal_moments(core, mean, var, mean.new_ones(()))
    prior = 0.5 * (v1 + m1**2 - 1 - torch.log(v1)).sum()
    g0, _ = core.gamma(mean.new_zeros(()))
    a0, s0 = alpha_bar_sq(g0).sqrt(), beta_bar_sq(g0)
    v0 = a0**2 * var + s0
    post_var = var * s0 / v0  # Var[x | z_0]
    dec_var = s0 / a0**2
    k = a0 * var / v0  # E[x | z_0] = m + k (z_0 − ᾱ_0 m)
    mean_gap = (k - 1 / a0) ** 2 * v0  # E_{z_0}(E[x|z_0] − z_0/ᾱ_0)²
    ratio = post_var / dec_var
    decoder = 0.5 * (ratio + mean_gap / dec_var - 1 - torch.log(ratio)).sum()
    return prior, decoder


def data_entropy(var: Tensor) -> Tensor:
    """H(N(m, diag s²)) = ½ Σ log(2πe s²) nats."""
    return 0.5 * torch.log(2 * math.pi * math.e * var).sum()
