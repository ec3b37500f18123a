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
from torch import Tensor, nn
from torch.distributions import Bernoulli, Distribution, Independent

from latentkit.arguments import check_number, check_shape, checked, describe_value
from latentkit.distributions import DiscretizedNormal, diag_normal
from latentkit.errors import ConfigError, InputError

__all__ = [
    "LIKELIHOODS",
    "BernoulliLikelihood",
    "DiscretizedGaussianLikelihood",
    "GaussianLikelihood",
    "Likelihood",
    "make_likelihood",
    "split_params",
]


def split_params(params: Tensor) -> tuple[Tensor, ...]:
    """``[batch, k, *data_shape]`` → its k parameters, each ``[batch, *data_shape]``.

    By ``squeeze`` (k = 1) or one ``unbind``, not by indexing ``params[:, i]``: the backward
    of an index builds a zero-filled ``[batch, k, *data_shape]`` gradient and copies into
    it, two passes over the decoder's output per parameter on every training step; these
    backwards are a view and one stack.
    """
    if not isinstance(params, Tensor) or params.ndim < 2:
        raise InputError(
            f"split_params: params must be a tensor [batch, k, *data_shape], got "
            f"{describe_value(params)}"
        )
    if params.shape[1] == 1:
        return (params.squeeze(1),)
    return params.unbind(1)


def _softplus_inverse(y: float) -> float:
    return y + math.log(-math.expm1(-y))


class Likelihood(nn.Module):
    """Base class. ``forward(params) -> Distribution`` with ``batch_shape == [batch]``."""

    num_params: int = 1

    def __init__(self, data_shape: Sequence[int]):
        super().__init__()
        self.data_shape = check_shape(data_shape, "likelihood data_shape", error=ConfigError)

    def from_flat(self, out: Tensor) -> Distribution:
        """Build the distribution from an MLP's flat output ``[batch, num_params·D]``."""
        # "b (k d) -> b k *data_shape" as one reshape: this runs on every decoder call.
        return self(out.reshape(out.shape[0], self.num_params, *self.data_shape))

    def linear_gaussian_variance(self) -> Tensor | None:
        """The flat noise variance if p(x|z_1) is Gaussian with a fixed/learned scale, else None."""
        return None


class _ScaledLikelihood(Likelihood):
    @checked
    def __init__(
        self,
        data_shape: Sequence[int],
        scale: float | str = "learned",
        *,
        min_scale: float = 1e-3,
        init_scale: float = 1.0,
    ):
        super().__init__(data_shape)
        self.min_scale = check_number(min_scale, "min_scale", low=0.0, error=ConfigError)
        check_number(init_scale, "init_scale", above=0.0, error=ConfigError)
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
            check_number(scale, "likelihood scale", above=0.0, error=ConfigError)
            self.mode = "fixed"
            self.register_buffer("fixed_scale", torch.full(self.data_shape, float(scale)))
        self.num_params = 2 if self.mode == "predicted" else 1

    def scale(self, params: Tensor) -> Tensor:
        return self._scale(split_params(params))

    def _scale(self, parts: tuple[Tensor, ...]) -> Tensor:
        if self.mode == "fixed":
            return self.fixed_scale.expand_as(parts[0])
        raw = parts[1] if self.mode == "predicted" else self.raw_scale.expand_as(parts[0])
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
        parts = split_params(params)
        return diag_normal(parts[0], self._scale(parts), len(self.data_shape))


class DiscretizedGaussianLikelihood(_ScaledLikelihood):
    """8-bit data in [-1, 1]: each pixel a Normal integrated over its bin (DiscretizedNormal)."""

    def linear_gaussian_variance(self) -> Tensor | None:
        return None

    def forward(self, params: Tensor) -> Distribution:
        parts = split_params(params)
        return Independent(
            DiscretizedNormal(parts[0], self._scale(parts)),
            len(self.data_shape),
            validate_args=False,
        )


class BernoulliLikelihood(Likelihood):
    """x | z_1 ~ Bernoulli(sigmoid(logits)) per dimension; binary data."""

    def __init__(self, data_shape: Sequence[int], scale: float | str | None = None, **_: object):
        super().__init__(data_shape)

    def forward(self, params: Tensor) -> Distribution:
        return self._events(split_params(params)[0])

    def from_flat(self, out: Tensor) -> Distribution:
        # One parameter and no weights: the logits are the output itself, reshaped (a no-op
        # for flat data), without the module call and the k-axis squeeze of the general path.
        if tuple(out.shape[1:]) != self.data_shape:
            out = out.reshape(out.shape[0], *self.data_shape)
        return self._events(out)

    def _events(self, logits: Tensor) -> _BernoulliEvents:
        # What Bernoulli(logits=...) and Independent(...) set, without broadcast_all (one
        # tensor has nothing to broadcast against) and torch.Size arithmetic.
        base = Bernoulli.__new__(Bernoulli)
        base.logits = base._param = logits
        Distribution.__init__(base, logits.shape, validate_args=False)
        out = _BernoulliEvents.__new__(_BernoulliEvents)
        out.base_dist, out.reinterpreted_batch_ndims = base, len(self.data_shape)
        cut = logits.ndim - out.reinterpreted_batch_ndims
        Distribution.__init__(out, logits.shape[:cut], logits.shape[cut:], validate_args=False)
        return out


class _BernoulliEvents(Independent):
    """``Independent(Bernoulli(logits=...))`` whose ``log_prob``, when the value has the
    logits' shape (a likelihood's case), is −Σ BCE-with-logits: torch's numbers exactly (the
    sign of each term flipped after the sum instead of before), without ``broadcast_all``
    and without a negated ``[batch, D]`` copy, forward or backward."""

    def log_prob(self, value: Tensor) -> Tensor:
        base = self.base_dist
        if base._validate_args or value.shape != base.logits.shape:
            return super().log_prob(value)
        bce = F.binary_cross_entropy_with_logits(base.logits, value, reduction="none")
        if self.reinterpreted_batch_ndims != 1:
            bce = bce.reshape(*bce.shape[: bce.ndim - self.reinterpreted_batch_ndims], -1)
        return -bce.sum(-1)


LIKELIHOODS: dict[str, type[Likelihood]] = {
    "gaussian": GaussianLikelihood,
    "bernoulli": BernoulliLikelihood,
    "discretized": DiscretizedGaussianLikelihood,
}


def make_likelihood(
    name: str, data_shape: Sequence[int], scale: float | str = "learned", **options
) -> Likelihood:
    """The likelihood called ``name`` (see the table above) for data of ``data_shape``."""
    if not isinstance(name, str) or name not in LIKELIHOODS:
        raise ConfigError(f"likelihood must be one of {sorted(LIKELIHOODS)}, got {name!r}")
    return LIKELIHOODS[name](data_shape, scale, **options)
