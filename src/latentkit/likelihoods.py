"""Likelihoods p(x | z_1): a decoder's output → a per-example distribution over x.

A decoder emits ``params`` of shape ``[batch, num_params, *data_shape]`` (use
:meth:`Likelihood.from_flat` for an MLP's ``[batch, num_params·D]``). Each likelihood
turns them into ``Independent(..., len(data_shape))`` so ``log_prob(x)`` is ``[batch]``.

=============== ============================ ============================ ===================
name            data                         params                       scale
=============== ============================ ============================ ===================
gaussian        real                         mean (+ raw scale)           fixed/learned/predicted
bernoulli       binary {0, 1}                logits                       —
discretized     8-bit mapped to [-1, 1]      mean (+ raw scale)           fixed/learned/predicted
=============== ============================ ============================ ===================

Scales are ``softplus(raw) + min_scale``: positive, smooth, and never collapsing to 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn
from torch.distributions import Bernoulli, Distribution, Independent, Normal

from latentkit.distributions import DiscretizedNormal
from latentkit.errors import ConfigError

__all__ = [
    "LIKELIHOODS",
    "BernoulliLikelihood",
    "DiscretizedGaussianLikelihood",
    "GaussianLikelihood",
    "Likelihood",
    "make_likelihood",
]


def _softplus_inverse(y: float) -> float:
    return y + math.log(-math.expm1(-y))


class Likelihood(nn.Module):
    """Base class. ``forward(params) -> Distribution`` with ``batch_shape == [batch]``."""

    num_params: int = 1

    def __init__(self, data_shape: Sequence[int]):
        super().__init__()
        self.data_shape = tuple(int(d) for d in data_shape)

    def from_flat(self, out: Tensor) -> Distribution:
        """Build the distribution from an MLP's flat output ``[batch, num_params·D]``."""
        params = rearrange(out, "b (k d) -> b k d", k=self.num_params)
        return self(params.reshape(out.shape[0], self.num_params, *self.data_shape))

    def linear_gaussian_variance(self) -> Tensor | None:
        """The flat noise variance if p(x|z_1) is Gaussian with a fixed/learned scale, else None."""
        return None


class _ScaledLikelihood(Likelihood):
    def __init__(
        self,
        data_shape: Sequence[int],
        scale: float | str = "learned",
        *,
        min_scale: float = 1e-3,
        init_scale: float = 1.0,
    ):
        super().__init__(data_shape)
        self.min_scale = float(min_scale)
        if isinstance(scale, str):
            if scale not in ("learned", "predicted"):
                raise ConfigError(
                    f"likelihood scale must be a positive float, 'learned' or 'predicted'; "
                    f"got {scale!r}"
                )
            self.mode = scale
            if scale == "learned":
                raw = _softplus_inverse(max(init_scale - self.min_scale, 1e-6))
                self.raw_scale = nn.Parameter(torch.full(self.data_shape, raw))
        else:
            if not (scale > 0 and math.isfinite(scale)):
                raise ConfigError(f"likelihood scale must be > 0, got {scale}")
            self.mode = "fixed"
            self.register_buffer("fixed_scale", torch.full(self.data_shape, float(scale)))
        self.num_params = 2 if self.mode == "predicted" else 1

    def scale(self, params: Tensor) -> Tensor:
        if self.mode == "fixed":
            return self.fixed_scale.expand_as(params[:, 0])
        raw = params[:, 1] if self.mode == "predicted" else self.raw_scale.expand_as(params[:, 0])
        return F.softplus(raw) + self.min_scale

    def linear_gaussian_variance(self) -> Tensor | None:
        if self.mode == "fixed":
            return self.fixed_scale.reshape(-1) ** 2
        if self.mode == "learned":
            return (F.softplus(self.raw_scale) + self.min_scale).reshape(-1) ** 2
        return None


class GaussianLikelihood(_ScaledLikelihood):
    """x | z_1 ~ N(mean, diag scale²) over the data dimensions."""

    def forward(self, params: Tensor) -> Distribution:
        return Independent(
            Normal(params[:, 0], self.scale(params), validate_args=False), len(self.data_shape)
        )


class DiscretizedGaussianLikelihood(_ScaledLikelihood):
    """8-bit data in [-1, 1]: each pixel a Normal integrated over its bin (DiscretizedNormal)."""

    def linear_gaussian_variance(self) -> Tensor | None:
        return None

    def forward(self, params: Tensor) -> Distribution:
        return Independent(
            DiscretizedNormal(params[:, 0], self.scale(params)), len(self.data_shape)
        )


class BernoulliLikelihood(Likelihood):
    """x | z_1 ~ Bernoulli(sigmoid(logits)) per dimension; binary data."""

    def __init__(self, data_shape: Sequence[int], scale: float | str | None = None, **_: object):
        super().__init__(data_shape)

    def forward(self, params: Tensor) -> Distribution:
        return Independent(
            Bernoulli(logits=params[:, 0], validate_args=False), len(self.data_shape)
        )


LIKELIHOODS: dict[str, type[Likelihood]] = {
    "gaussian": GaussianLikelihood,
    "bernoulli": BernoulliLikelihood,
    "discretized": DiscretizedGaussianLikelihood,
}


def make_likelihood(
    name: str, data_shape: Sequence[int], scale: float | str = "learned", **options
) -> Likelihood:
    """The likelihood called ``name`` (see the table above) for data of ``data_shape``."""
    if name not in LIKELIHOODS:
        raise ConfigError(f"likelihood must be one of {sorted(LIKELIHOODS)}, got {name!r}")
    return LIKELIHOODS[name](data_shape, scale, **options)
