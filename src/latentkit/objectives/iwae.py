"""The ``iwae`` objective: −IWAE_k with the standard, STL or DReG gradient, and the per-path
log-weights it needs (q re-evaluated with stopped parameters for STL and DReG)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import attrs
import torch
from einops import rearrange, repeat
from torch import Tensor, nn

from latentkit.chains import LatentModel
from latentkit.config import int_at_least as _int_at_least
from latentkit.config import one_of as _one_of
from latentkit.errors import EstimatorError
from latentkit.estimators import (
    monte_carlo_estimator,
)
from latentkit.objectives.base import Objective


@attrs.frozen(kw_only=True)
class IWAEConfig:
    """Options of the ``iwae`` objective.

    Attributes:
        k: importance samples per example (k = 1 is a one-sample ELBO).
        gradient: ``standard`` (the reparameterized gradient of IWAE_k), ``stl`` (sticking
            the landing: q's score term dropped; unbiased for q only at k = 1) or ``dreg``
            (doubly reparameterized: unbiased for every k, lower variance for q as k grows).
            ``stl`` and ``dreg`` need a reparameterizable q.
    """

    k: int = attrs.field(default=5, validator=_int_at_least(1))
    gradient: str = attrs.field(default="standard", validator=_one_of("standard", "stl", "dreg"))


class _ScaleGrad(torch.autograd.Function):
    """Identity forward; backward multiplies each row's gradient by a weight that is set
    after the forward pass (``holder[0]``, ``[rows]``): DReG's w̃ is known only once log w is."""

    @staticmethod
    def forward(ctx: Any, z: Tensor, holder: list) -> Tensor:
        ctx.holder = holder
        return z.view_as(z)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        w = ctx.holder[0]
        return grad * w.reshape(-1, *([1] * (grad.ndim - 1))).to(grad.dtype), None


class _Scoped(nn.Module):
    """Calls ``fn(q, *args)`` so that ``torch.func.functional_call`` can run it with q's
    parameters swapped for detached copies (φ stopped, the latents' paths kept). The model's
    ``shared`` modules are registered here too: q may use them through ``SharedModule``."""

    def __init__(self, q: nn.Module, shared: nn.Module):
        super().__init__()
        self.q = q
        self.shared = shared

    def forward(self, fn: Callable[..., Tensor], *args: Any) -> Tensor:
        return fn(self.q, *args)


def _log_q(q: Any, x: Tensor, zs: list[Tensor]) -> Tensor:
    """log q(z_1..z_L | x) at given latents, by the chain's own factorization."""
    h = q.encode(x)
    L = len(zs)
    if q.bottom_up:
        out = q.first(h).log_prob(zs[0])
        for l in range(2, L + 1):
            out = out + q.up(l, zs[l - 2], h).log_prob(zs[l - 1])
        return out
    out = q.top(h).log_prob(zs[-1])
    for l in range(L, 1, -1):
        out = out + q.down(l, zs[l - 1], h).log_prob(zs[l - 2])
    return out


def _rsample(d: Any) -> Tensor:
    if not d.has_rsample:
        raise EstimatorError(
            f"the 'stl' and 'dreg' gradients need a reparameterizable q; {type(d).__name__} "
            "has no rsample() (use gradient='standard')"
        )
    return d.rsample()


def _draw_latents(model: LatentModel, x: Tensor) -> list[Tensor]:
    """z_1..z_L ~ q(· | x), reparameterized, by the chain's factorization (bottom-up first,
    as :func:`latentkit.iwae` draws them)."""
    q, L = model.posterior, model.num_layers
    h = q.encode(x)
    if q.bottom_up:
        zs = [_rsample(q.first(h))]
        for l in range(2, L + 1):
            zs.append(_rsample(q.up(l, zs[-1], h)))
        return zs
    zs = [_rsample(q.top(h))]
    for l in range(L, 1, -1):
        zs.insert(0, _rsample(q.down(l, zs[0], h)))
    return zs


def path_log_weights(model: LatentModel, x: Tensor, k: int, *, dreg: bool = False) -> Tensor:
    """log w = log p(x, z) − log q(z | x) for k draws per example, ``[k, batch]``, with q's
    parameters stopped in log q (the latents keep their reparameterization path): the
    values of :func:`latentkit.bounds.log_weights`, the gradients of the path estimators.

    With ``dreg``, each draw's path gradient is scaled by its normalized weight w̃ (so
    −logsumexp(log w) gives q the gradient Σ w̃² ∂log w/∂z ∂z/∂φ, Tucker et al. 2019 eq. 5).
    """
    p, q = model.generative, model.posterior
    xs = repeat(x, "b ... -> (k b) ...", k=k)
    n = xs.shape[0]
    zs = _draw_latents(model, xs)
    holder: list[Tensor] = []
    used = [_ScaleGrad.apply(z, holder) for z in zs] if dreg else zs
    stopped = {
        f"{prefix}.{name}": t.detach()
        for prefix, owner in (("q", q), ("shared", model.shared))
        for name, t in owner.named_parameters()
    }
    try:
        log_q = torch.func.functional_call(
            _Scoped(q, model.shared), stopped, (_log_q, xs, used), strict=False
        )
    except NotImplementedError as exc:
        # A draw-only q (rsample_and_log_prob, no log_prob): its density at the latents
        # with φ stopped needs the inverse it does not offer.
        raise EstimatorError(
            "the 'stl' and 'dreg' gradients evaluate log q at given latents with q's "
            f"parameters stopped; the posterior chain {type(q).__name__} has no log_prob "
            f"there ({exc or 'NotImplementedError'}); use gradient='standard'"
        ) from exc
    log_p = p.likelihood(used[0]).log_prob(xs) + p.prior(n).log_prob(used[-1])
    for l in range(2, model.num_layers + 1):
        log_p = log_p + p.transition(l, used[l - 1]).log_prob(used[l - 2])
    log_w = rearrange(log_p - log_q, "(k b) -> k b", k=k)
    if dreg:
        holder.append(torch.softmax(log_w.detach(), dim=0).reshape(-1))
    return log_w


class IWAEObjective(Objective):
    """−IWAE_k = −(logsumexp_i log w_i − log k) per example, with the gradient estimator
    ``config.gradient``. Its value equals :func:`latentkit.iwae` on the same draws."""

    name = "iwae"

    def __init__(self, config: IWAEConfig, model: LatentModel):
        super().__init__(config, model)
        monte_carlo_estimator(model)  # refuses a chain with no per-sample log-ratio
        self.importance_samples = int(config.k)

    def forward(self, model: LatentModel, x: Tensor, step: int | Tensor | None = None) -> Tensor:
        from latentkit.bounds import log_weights

        k, how = self.config.k, self.config.gradient
        log_w = log_weights(model, x, k) if how == "standard" else None
        if log_w is None:
            log_w = path_log_weights(model, x, k, dreg=how == "dreg")
        return -(torch.logsumexp(log_w, dim=0) - math.log(k))
