"""Noise schedules of the continuous-time model: γ(t) = −log SNR(t), t ∈ [0, 1], and γ'(t).

Each schedule is an ``nn.Module`` whose ``forward(t)`` returns ``(γ(t), γ'(t))`` elementwise,
increasing from γ(0) = γ_min (almost no noise) to γ(1) = γ_max (almost pure noise). The
signal and noise scales follow from γ alone (``latentkit.diffusion``): ᾱ_t² = sigmoid(−γ_t),
β̄_t² = sigmoid(γ_t). Notation and the conversion to VDM's α_t, σ_t: ``docs/continuous.md``.

* ``linear``: γ(t) = γ_min + (γ_max − γ_min) t (VDM's fixed schedule).
* ``cosine``: improved DDPM's cosine ᾱ, as a log-SNR pinned to the same ends
  (:func:`latentkit.diffusion.cosine_log_snr`).
* ``learned``: VDM's monotone network (Kingma et al. 2021, appendix H.1),
  γ̃(t) = l₁(t) + l₃(φ(l₂(l₁(t)))) with positive weights, rescaled so that
  γ(t) = γ_min + (γ_max − γ_min)(γ̃(t) − γ̃(0))/(γ̃(1) − γ̃(0)); γ_min and γ_max are
  learned (γ_max − γ_min > 0 through a softplus).
  γ'(t) is carried forward through the layers exactly (no finite differences).
  Written γ(t) = γ_min + span · h(t; η) with h the normalised profile (h(0) = 0, h(1) = 1,
  h' > 0): the ends (γ_min, span) and the interior η = (w1, b1, w2, b2, w3) enter apart, so
  a trainer can give them different gradients (``ContinuousDiffusion.diffusion_integrand``'s
  ``schedule_gradient="variance"``, VDM §5).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import latentkit as lk
from latentkit.arguments import check_choice, check_count
from latentkit.diffusion import cosine_log_snr
from latentkit_vdm.arguments import check_gamma_ends

__all__ = ["CosineLogSNR", "LearnedLogSNR", "LinearLogSNR", "make_log_snr"]


class LinearLogSNR(nn.Module):
    """γ(t) = γ_min + (γ_max − γ_min) t, γ'(t) = γ_max − γ_min."""

    def __init__(self, gamma_min: float, gamma_max: float):
        super().__init__()
        self.gamma_min, self.gamma_max = check_gamma_ends(gamma_min, gamma_max, "LinearLogSNR")

    def forward(self, t: Tensor) -> tuple[Tensor, Tensor]:
        span = self.gamma_max - self.gamma_min
        return self.gamma_min + span * t, torch.full_like(t, span)


class CosineLogSNR(nn.Module):
    """The cosine schedule's γ(t) = 2 log tan φ(t), φ linear in t between the pinned ends."""

    def __init__(self, gamma_min: float, gamma_max: float):
        super().__init__()
        self.gamma_min, self.gamma_max = check_gamma_ends(gamma_min, gamma_max, "CosineLogSNR")

    def forward(self, t: Tensor) -> tuple[Tensor, Tensor]:
        return cosine_log_snr(t, self.gamma_min, self.gamma_max)


class LearnedLogSNR(nn.Module):
    """VDM's monotone γ network; starts as (almost) the linear schedule between the given ends.

    γ(t) = γ_min + span · h(t), span = softplus(raw_span) > 0, and the profile
    h(t) = (γ̃(t) − γ̃(0))/(γ̃(1) − γ̃(0)) of the monotone network γ̃ (:meth:`profile`).
    """

    ENDS = ("gamma_min", "raw_span")
    """The parameters of the ends γ(0) = γ_min and γ(1) = γ_min + span."""
    INTERIOR = ("w1", "b1", "w2", "b2", "w3")
    """The parameters of the profile h: the schedule's shape between its ends."""

    def __init__(self, gamma_min: float, gamma_max: float, hidden: int = 64):
        gamma_min, gamma_max = check_gamma_ends(gamma_min, gamma_max, "LearnedLogSNR")
        check_count(hidden, "LearnedLogSNR: hidden", error=lk.ConfigError)
        super().__init__()
        self.gamma_min = nn.Parameter(torch.tensor(float(gamma_min)))
        # γ_max − γ_min = softplus(raw span) > 0: the schedule stays increasing while it learns.
        span = torch.tensor(float(gamma_max) - float(gamma_min))
        self.raw_span = nn.Parameter(span + torch.log(-torch.expm1(-span)))
        # Raw weights; softplus keeps them positive, which makes γ̃ increasing in t.
        self.w1 = nn.Parameter(torch.tensor(1.0))
        self.b1 = nn.Parameter(torch.tensor(0.0))
        self.w2 = nn.Parameter(torch.randn(hidden) * 0.1)
        self.b2 = nn.Parameter(torch.zeros(hidden))
        self.w3 = nn.Parameter(torch.randn(hidden) * 0.1 - 3.0)

    def _tilde(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """γ̃(t) and dγ̃/dt, forward-mode through the three monotone layers."""
        w1, w2, w3 = F.softplus(self.w1), F.softplus(self.w2), F.softplus(self.w3)
        h1 = w1 * t + self.b1
        h2 = h1.unsqueeze(-1) * w2 + self.b2
        s = torch.sigmoid(h2)
        ds = s * (1 - s) * w2 * w1
        h3 = (s * w3).sum(-1) / w3.numel()
        dh3 = (ds * w3).sum(-1) / w3.numel()
        return h1 + h3, w1 + dh3

    def span(self) -> Tensor:
        """γ_max − γ_min = softplus(raw_span), 0-d."""
        return F.softplus(self.raw_span)

    def profile(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """h(t) = (γ̃(t) − γ̃(0))/(γ̃(1) − γ̃(0)) and h'(t), elementwise: a function of the
        interior parameters alone, increasing from h(0) = 0 to h(1) = 1."""
        g, dg = self._tilde(t)
        ends, _ = self._tilde(torch.stack([t.new_zeros(()), t.new_ones(())]))
        width = ends[1] - ends[0]
        return (g - ends[0]) / width, dg / width

    def from_profile(self, h: Tensor, dh: Tensor) -> tuple[Tensor, Tensor]:
        """γ = γ_min + span · h and γ' = span · h'."""
        span = self.span()
        return self.gamma_min + span * h, span * dh

    def forward(self, t: Tensor) -> tuple[Tensor, Tensor]:
        return self.from_profile(*self.profile(t))


def make_log_snr(kind: str, gamma_min: float, gamma_max: float) -> nn.Module:
    """The schedule module named ``kind`` (``linear``, ``cosine`` or ``learned``)."""
    kinds = {"linear": LinearLogSNR, "cosine": CosineLogSNR, "learned": LearnedLogSNR}
    check_choice(kind, "make_log_snr: kind", kinds, error=lk.ConfigError)
    return kinds[kind](gamma_min, gamma_max)
