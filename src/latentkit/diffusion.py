"""Variance-preserving diffusion: the schedule mathematics shared by discrete and continuous time.

Notation (``docs/ddpm.md``, ``docs/continuous.md``): the forward marginal is

    q(z_t | x) = N(ᾱ_t x, β̄_t² I),   ᾱ_t² + β̄_t² = 1,

indexed by a step t = 0..T (the ``ddpm`` plugin) or a time t ∈ [0, 1] (the ``vdm`` plugin).
VDM (Kingma et al. 2021) writes α_t, σ_t for our ᾱ_t, β̄_t and parameterizes the schedule by

    γ_t = −log SNR_t = log(β̄_t² / ᾱ_t²),   so ᾱ_t² = sigmoid(−γ_t),  β̄_t² = sigmoid(γ_t).

Between two times s < t the forward chain has one step q(z_t | z_s) = N(α_{t|s} z_s, β_{t|s}² I)
with α_{t|s} = ᾱ_t/ᾱ_s and β_{t|s}² = β̄_t² (−expm1(γ_s − γ_t)) (seed 001, eq. 25 read
backwards); the DDPM's per-step α_t, β_t are these at s = t − 1. Every function here works
elementwise on tensors and keeps the dtype it is given.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "MAX_STEP_BETA_SQ",
    "MAX_TIMESTEPS",
    "alpha_bar_sq",
    "beta_bar_sq",
    "cosine_alpha_bar",
    "cosine_log_snr",
    "gamma_from_alpha_bar",
    "step_beta_from_alpha_bar",
    "step_variance_fraction",
]

MAX_STEP_BETA_SQ = 0.999

MAX_TIMESTEPS = 1_000_000
"""The most timesteps a discrete diffusion's ``num_timesteps`` may ask for: its schedule
tables hold T + 1 float64 rows each and a full-T bound makes T network calls per example,
so a T beyond this is a typo, refused at validation rather than met by the allocator."""
"""Cap on one step's β_t² (the DDPM paper's β_t), as improved DDPM: keeps α_t > 0."""


def alpha_bar_sq(gamma: Tensor) -> Tensor:
    """ᾱ_t² = sigmoid(−γ_t): the signal variance at log-SNR −γ_t."""
    return torch.sigmoid(-gamma)


def beta_bar_sq(gamma: Tensor) -> Tensor:
    """β̄_t² = sigmoid(γ_t) = 1 − ᾱ_t²: the noise variance at log-SNR −γ_t."""
    return torch.sigmoid(gamma)


def gamma_from_alpha_bar(alpha_bar: Tensor) -> Tensor:
    """γ = log β̄² − log ᾱ² = log(1 − ᾱ²) − 2 log ᾱ; +inf where ᾱ = 0, −inf where ᾱ = 1."""
    return torch.log1p(-(alpha_bar**2)) - 2 * torch.log(alpha_bar)


def step_variance_fraction(gamma_s: Tensor, gamma_t: Tensor) -> Tensor:
    """β_{t|s}² / β̄_t² = 1 − SNR_t/SNR_s = −expm1(γ_s − γ_t), for s < t (γ_s < γ_t).

    Also β̃² / β̄_s², the variance of q(z_s | z_t, x) over β̄_s² (Bayes' rule on the step).
    Written with expm1 so that nearby times (large T) keep full precision.
    """
    return -torch.expm1(gamma_s - gamma_t)


def cosine_alpha_bar(u: Tensor, offset: float = 0.008) -> Tensor:
    """Improved DDPM's cosine schedule (Nichol & Dhariwal 2021, eq. 17) in our ᾱ, at u = t/T:
    ᾱ(u) = cos((u + s)/(1 + s) · π/2) / cos(s/(1 + s) · π/2), so ᾱ(0) = 1."""
    u = torch.as_tensor(u)
    angle = (u + offset) / (1 + offset) * math.pi / 2
    return torch.cos(angle) / math.cos(offset / (1 + offset) * math.pi / 2)


def cosine_log_snr(u: Tensor, gamma_min: float, gamma_max: float) -> tuple[Tensor, Tensor]:
    """The cosine schedule as γ(u), u ∈ [0, 1], pinned to γ(0) = γ_min and γ(1) = γ_max, and γ'(u).

    With ᾱ = cos φ the log-SNR is log cot² φ, so γ = 2 log tan φ; φ runs linearly from
    φ_min = atan(exp(γ_min/2)) to φ_max = atan(exp(γ_max/2)), and γ'(u) = 4 (φ_max − φ_min) /
    sin 2φ (Kingma & Gao 2023's "cosine" log-SNR, interpolated between the two ends).
    """
    phi_min = math.atan(math.exp(gamma_min / 2))
    phi_max = math.atan(math.exp(gamma_max / 2))
    phi = phi_min + u * (phi_max - phi_min)
    return 2 * torch.log(torch.tan(phi)), 4 * (phi_max - phi_min) / torch.sin(2 * phi)


def step_beta_from_alpha_bar(alpha_bar: Tensor, cap: float = MAX_STEP_BETA_SQ) -> Tensor:
    """Per-step β_t, t = 1..T, from ᾱ_0..ᾱ_T (``[T+1]``): β_t² = 1 − (ᾱ_t/ᾱ_{t−1})², capped at
    ``cap`` (improved DDPM), i.e. the DDPM paper's β_t = 1 − ᾱ_t/ᾱ_{t−1} in its notation."""
    beta_sq = 1.0 - (alpha_bar[1:] / alpha_bar[:-1]) ** 2
    return beta_sq.clamp(min=0.0, max=cap).sqrt()
