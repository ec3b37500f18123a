"""EM for the mixture: the alternating optimization of seed 001 ("EM Algorithm").

E-step: fix p, set q(z|x) = p(z|x) (the responsibilities r_nk); the ELBO then equals
log p(x) exactly. M-step: fix q, maximize E_q[log p(x, z)] over (π, μ, σ) in closed form:

    N_k = Σ_n r_nk,   π_k = N_k / N,   μ_k = Σ_n r_nk x_n / N_k,
    σ_k² = max(Σ_n r_nk (x_n − μ_k)² / N_k, min_scale²)

Each iteration cannot lower Σ_n log p(x_n): log p(θ') ≥ ELBO(r, θ') ≥ ELBO(r, θ) = log p(θ).
The variance floor keeps this true (it is the maximizer over the allowed set).
"""

from __future__ import annotations

import torch
from einops import einsum
from torch import Tensor

import latentkit as lk
from latentkit.arguments import check_count, check_model
from latentkit.validation import check_data
from latentkit_gmm.model import GMMGenerative

__all__ = ["em_step", "fit_em"]


def _check(model: lk.LatentModel, x: Tensor, where: str) -> None:
    """A ``gmm`` model and a batch of it (``[N, D]``, its dtype and device, finite)."""
    check_model(model, where)
    if not isinstance(model.generative, GMMGenerative):
        raise lk.InputError(
            f"{where}: model must be a gmm model, got {type(model.generative).__name__} "
            "as its generative chain"
        )
    check_data(model, x, name=f"{where}: x")


def em_step(model: lk.LatentModel, x: Tensor) -> Tensor:
    """One EM iteration on ``x`` ``[N, D]``, in place; returns log p(x) ``[N]`` before it."""
    _check(model, x, "em_step")
    return _em_step(model, x)


@torch.no_grad()
def _em_step(model: lk.LatentModel, x: Tensor) -> Tensor:
    p = model.generative
    table = p.log_joint_table(x)
    log_px = torch.logsumexp(table, dim=-1)
    r = (table - log_px[:, None]).exp()  # E-step
    n_k = r.sum(0).clamp_min(torch.finfo(x.dtype).tiny)  # an empty component keeps π_k > 0
    means = einsum(r, x, "n k, n d -> k d") / n_k[:, None]
    var = einsum(r, (x[:, None, :] - means) ** 2, "n k, n k d -> k d") / n_k[:, None]
    p.logits.copy_(n_k.log() - n_k.sum().log())
    p.means.copy_(means)
    p.log_scales.copy_(0.5 * var.clamp_min(p.min_scale**2).log())
    return log_px


def fit_em(model: lk.LatentModel, x: Tensor, steps: int = 50) -> list[float]:
    """``steps`` EM iterations; returns Σ_n log p(x_n) before each (non-decreasing)."""
    _check(model, x, "fit_em")
    check_count(steps, "fit_em: steps")
    return [float(_em_step(model, x).sum()) for _ in range(steps)]
