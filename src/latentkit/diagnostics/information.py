"""The estimators of the information measures: per-draw values and the mixture q(z).

* :class:`InformationDraws` — the per-draw values of one latent whose means are I_q(x; z),
  KL(q(z) ‖ p(z)) and E_x KL(q(z|x) ‖ p(z)).
* :func:`aggregate_log_prob` — log q(z) of a latent whose q(z | x) is one distribution.
* :class:`_Chain` — the posterior chain walked in one direction: its draws, its factors and
  log q(z_1..z_L) of all layers jointly, the mixture taken through every factor.
* :func:`gaussian_diffusion_information` — I(x_0; x_t) in closed form for Gaussian data.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import attrs
import torch
from einops import rearrange, repeat
from torch import Tensor
from torch.distributions import Distribution

from latentkit.chains import LatentModel
from latentkit.errors import InputError, ShapeError
from latentkit.validation import check_positive_int

__all__ = ["InformationDraws", "aggregate_log_prob", "gaussian_diffusion_information"]


@attrs.frozen(eq=False)
class InformationDraws:
    """Per-draw values of one latent (a layer, or all layers jointly), each ``[N, M]``:
    example i, draw m of z ~ q(z | x_i).

    ``log_prior`` is ``None`` where p(z) is not tractable (a layer below the top).
    """

    log_q_conditional: Tensor
    """log q(z | x_i)."""
    log_q_aggregate: Tensor
    """log q(z) = logsumexp_n log q(z | x_n) − log N."""
    log_prior: Tensor | None
    """log p(z)."""

    def mutual_information(self) -> Tensor:
        """log q(z|x_i) − log q(z): averages to I_q(x; z); each value ≤ log N."""
        return self.log_q_conditional - self.log_q_aggregate

    def aggregate_kl(self) -> Tensor | None:
        """log q(z) − log p(z): averages to KL(q(z) ‖ p(z))."""
        return None if self.log_prior is None else self.log_q_aggregate - self.log_prior

    def expected_kl(self) -> Tensor | None:
        """log q(z|x_i) − log p(z): averages to E_x KL(q(z|x) ‖ p(z))."""
        return None if self.log_prior is None else self.log_q_conditional - self.log_prior


def aggregate_log_prob(
    posterior: Callable[[Tensor], Distribution],
    z: Tensor,
    data: Tensor,
    *,
    pairs_per_call: int = 1 << 16,
) -> Tensor:
    """log q(z) = logsumexp_n log q(z | x_n) − log N for each row of ``z``, ``[m]``.

    ``posterior(x)`` returns q(z | x) with ``batch_shape [len(x)]``; its ``log_prob`` must
    broadcast ``[m, 1, *event]`` against it (every torch distribution does). The sum over
    the N examples runs in chunks, each q(z | x_n) built once and evaluated at every row of
    ``z``, at most ``pairs_per_call`` (row, example) pairs at a time, with a running
    logsumexp: memory O(pairs_per_call · event + N · parameters), never N × m.
    """
    if not callable(posterior):
        raise InputError(
            f"aggregate_log_prob: posterior must be callable x -> q(z | x), got "
            f"{type(posterior).__name__}"
        )
    for name, value in (("z", z), ("data", data)):
        if not isinstance(value, Tensor) or value.ndim < 1 or value.shape[0] < 1:
            raise InputError(
                f"aggregate_log_prob: {name} must be a tensor [rows, ...] with at least one "
                f"row, got {getattr(value, 'shape', type(value).__name__)}"
            )
    check_positive_int(pairs_per_call, "pairs_per_call")
    n, m = data.shape[0], z.shape[0]
    rows = min(m, max(1, math.isqrt(pairs_per_call)))
    chunk = max(1, pairs_per_call // rows)
    factors = [posterior(xs) for xs in data.split(chunk)]
    out = []
    for zs in z.split(rows):
        zs = zs.unsqueeze(1)  # [rows, 1, *event] against batch [chunk]
        total = torch.stack([torch.logsumexp(f.log_prob(zs), dim=1) for f in factors])
        out.append(torch.logsumexp(total, dim=0))
    return torch.cat(out) - math.log(n)


def _sample(d: Distribution) -> Tensor:
    """A draw from ``d`` (under no_grad: no reparameterization needed)."""
    return d.sample()  # under no_grad: no reparameterization needed


class _Chain:
    """The posterior chain walked in one direction: draws, factors, and the joint density.

    Top-down: z_L ~ q(z_L | x), z_{l-1} ~ q(z_{l-1} | z_l, x); bottom-up: z_1 ~ q(z_1 | x),
    z_l ~ q(z_l | z_{l-1}, x). ``factors[l-1]`` is the factor z_l was drawn from and
    ``priors[l-1]`` its p-factor (p(z_l | z_{l+1}), the prior for z_L), paired as the ELBO
    engine pairs them (``latentkit.estimators``).
    """

    def __init__(self, model: LatentModel):
        self.model, self.L = model, model.num_layers
        self.top_down = model.posterior.top_down

    def factors(self, zs: Sequence[Tensor], x: Tensor) -> list[Distribution]:
        """q's factor of each latent at the draws ``zs`` (z_1..z_L, batch as ``x``)."""
        q, L = self.model.posterior, self.L
        h = q.encode(x)
        if self.top_down:
            return [q.down(l + 1, zs[l], h) for l in range(1, L)] + [q.top(h)]
        return [q.first(h)] + [q.up(l, zs[l - 2], h) for l in range(2, L + 1)]

    def draw(self, x: Tensor) -> tuple[list[Tensor], list[Distribution]]:
        """One draw of z_1..z_L ~ q(· | x) and the factor each came from."""
        q, L = self.model.posterior, self.L
        h = q.encode(x)
        zs: list[Tensor | None] = [None] * L
        fs: list[Distribution | None] = [None] * L
        order = range(L, 0, -1) if self.top_down else range(1, L + 1)
        for l in order:
            if self.top_down:
                f = q.top(h) if l == L else q.down(l + 1, zs[l], h)
            else:
                f = q.first(h) if l == 1 else q.up(l, zs[l - 2], h)
            fs[l - 1], zs[l - 1] = f, _sample(f)
        return zs, fs

    def priors(self, zs: Sequence[Tensor]) -> list[Distribution]:
        """p's factor of each latent at the draws ``zs``: p(z_l | z_{l+1}), the prior for z_L."""
        p, L = self.model.generative, self.L
        return [p.transition(l + 1, zs[l]) for l in range(1, L)] + [p.prior(zs[0].shape[0])]

    def log_prob(self, zs: Sequence[Tensor], x: Tensor) -> Tensor:
        """log q(z_1..z_L | x), ``[n]`` (rows of ``zs`` paired with rows of ``x``)."""
        return sum(f.log_prob(z) for f, z in zip(self.factors(zs, x), zs))

    def marginal_layer(self) -> int:
        """The layer whose factor is its marginal q(z_l | x): L top-down, 1 bottom-up."""
        return self.L if self.top_down else 1

    def aggregate_log_prob(
        self, zs: Sequence[Tensor], data: Tensor, pairs_per_call: int, to: Tensor
    ) -> Tensor:
        """log q(z_1..z_L) = logsumexp_n log q(z_1..z_L | x_n) − log N, ``[m]``: each draw
        paired with every example through the chain's factors, chunked."""
        m, n = zs[0].shape[0], data.shape[0]
        rows = min(m, max(1, math.isqrt(pairs_per_call)))
        chunk = max(1, pairs_per_call // rows)
        out = []
        for start in range(0, m, rows):
            block = [z[start : start + rows] for z in zs]
            r = block[0].shape[0]
            running = None
            for xs in data.split(chunk):
                xs = xs.to(to)
                c = xs.shape[0]
                pairs = [repeat(z, "r ... -> (r c) ...", c=c) for z in block]
                lp = self.log_prob(pairs, repeat(xs, "c ... -> (r c) ...", r=r))
                s = torch.logsumexp(rearrange(lp, "(r c) -> r c", c=c), dim=1)
                running = s if running is None else torch.logaddexp(running, s)
            out.append(running)
        return torch.cat(out) - math.log(n)


def gaussian_diffusion_information(cov: Tensor, alpha_bar: Tensor, beta_bar: Tensor) -> Tensor:
    """I(x_0; x_t) for Gaussian data x_0 ~ N(μ, Σ) and x_t = ᾱ_t x_0 + β̄_t ε, ``[len(t)]``:

        I = ½ log det(I + (ᾱ_t² / β̄_t²) Σ) = ½ Σ_k log(1 + ᾱ_t² λ_k / β̄_t²),

    λ_k the eigenvalues of Σ (h(x_t) − h(x_t | x_0) for a Gaussian channel; seed 001 eq. 25
    for q(x_t | x_0)). Decreasing in t: ᾱ_t falls and β̄_t rises. μ does not enter.
    """
    if not (isinstance(cov, Tensor) and cov.ndim == 2 and cov.shape[0] == cov.shape[1]):
        raise ShapeError(
            f"gaussian_diffusion_information: cov must be a square matrix [D, D], got "
            f"{getattr(cov, 'shape', type(cov).__name__)}"
        )
    if not all(isinstance(a, Tensor) and a.ndim == 1 for a in (alpha_bar, beta_bar)) or (
        alpha_bar.shape != beta_bar.shape
    ):
        raise ShapeError(
            "gaussian_diffusion_information: alpha_bar and beta_bar must be tensors [T] of one "
            f"shape, got {getattr(alpha_bar, 'shape', alpha_bar)!r} and "
            f"{getattr(beta_bar, 'shape', beta_bar)!r}"
        )
    lam = torch.linalg.eigvalsh(cov).clamp(min=0)
    snr = (alpha_bar / beta_bar) ** 2
    return 0.5 * torch.log1p(snr[:, None] * lam[None, :]).sum(-1)
