"""K-level data on [−1, 1] and the Normal integrated over their bins: the support
(:class:`LevelGrid`) and the distribution (:class:`DiscretizedNormal`) of the discretized
likelihood, with the log(1 − exp) it needs (:func:`log1mexp`). Importable from
:mod:`latentkit.distributions`."""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor
from torch.distributions import Distribution, constraints

from latentkit.arguments import check_count
from latentkit.errors import ConfigError, InputError

__all__ = ["MAX_LEVELS", "DiscretizedNormal", "LevelGrid", "log1mexp"]

MAX_LEVELS = 2**24
"""The most levels a grid on [−1, 1] may have: finer than 2/2²⁴, float32 (ε = 1.2e-7) no
longer tells neighbouring levels apart."""


def _check_levels(levels: object, where: str) -> int:
    return check_count(
        levels, f"{where}: levels (the data's K levels)", low=2, high=MAX_LEVELS, error=ConfigError
    )


def log1mexp(a: Tensor) -> Tensor:
    """log(1 - exp(a)) for a ≤ 0, accurate at both ends (Mächler's two-branch rule)."""
    if not isinstance(a, Tensor):
        raise InputError(f"log1mexp: a must be a torch.Tensor, got {type(a).__name__}")
    return torch.where(a > -math.log(2.0), torch.log(-torch.expm1(a)), torch.log1p(-torch.exp(a)))


class LevelGrid(constraints.Constraint):
    """The K points x_k = 2k/(K − 1) − 1 of [−1, 1], k = 0..K − 1: a K-level grid.

    ``check(x)`` holds where y = (x + 1)(K − 1)/2, the level x stands for, lies within
    ``tolerance`` of an integer in 0..K − 1. Data made by any few-rounding formula (8-bit
    data as (2k − 255)/255 in float32, for one) miss the grid by a few ε (machine epsilon)
    in x, which y scales by (K − 1)/2, and computing y adds (K − 1)ε at most: under
    2.5(K − 1)ε in all, so 8(K − 1)ε never refuses a grid value, and a value off the grid
    by more is refused. ε is float32's at least, since data are commonly made in float32
    and cast to a float64 model's dtype after (2.4e-4 of a level at K = 256); capped at a
    quarter level, which only float16/bfloat16 reach (they cannot hold a fine grid).
    """

    is_discrete = True
    event_dim = 0

    def __init__(self, levels: int):
        self.levels = _check_levels(levels, "LevelGrid")
        super().__init__()

    def tolerance(self, dtype: torch.dtype) -> float:
        """How far from a level (in levels) a value of ``dtype`` may lie and still be it."""
        own = torch.finfo(dtype).eps if dtype.is_floating_point else 0.0
        eps = max(own, torch.finfo(torch.float32).eps)
        return min(0.25, 8 * (self.levels - 1) * eps)

    def check(self, value: Tensor) -> Tensor:
        tol = self.tolerance(value.dtype)
        y = (value + 1) * ((self.levels - 1) / 2)
        return (y >= -tol) & (y <= self.levels - 1 + tol) & ((y - y.round()).abs() <= tol)

    def __repr__(self) -> str:
        return f"LevelGrid(levels={self.levels})"


class DiscretizedNormal(Distribution):
    """A Normal integrated over the bins of K-level data on [−1, 1] (``levels`` = K ≥ 2).

    Level k ∈ {0..K−1} is x_k = 2k/(K − 1) − 1; its bin is [x_k − h, x_k + h] with the
    half-width h = 1/(K − 1), and the outermost bins extend to ±∞ so the K probabilities
    sum to one. Then −log P(x) is an honest NLL in nats and −log P(x) / (D·ln 2) an honest
    bits/dim for K-level data (DDPM, §3.3, which has K = 256: x = 2k/255 − 1, h = 1/255).
    ``log_prob`` works in log space (``log_ndtr`` and ``log1mexp``), so a bin far in a
    tail keeps a finite, accurate log-probability instead of log(0).

    ``binary=True`` (``levels`` = 2 only) takes and gives binary data v ∈ {0, 1} rather
    than the grid {−1, 1}: v stands for x = 2v − 1 (:meth:`from_binary`), a bijection of
    the two grids, so every probability is the one of its grid point and the support is
    {0, 1}. Otherwise the support is the grid (:class:`LevelGrid`).
    """

    arg_constraints: ClassVar[dict] = {"loc": constraints.real, "scale": constraints.positive}
    has_rsample = False

    def __init__(
        self,
        loc: Tensor,
        scale: Tensor,
        levels: int = 256,
        *,
        binary: bool = False,
        validate_args: bool | None = False,
    ):
        _check_levels(levels, "DiscretizedNormal")
        for name, value in (("loc", loc), ("scale", scale)):
            if not isinstance(value, Tensor):
                raise InputError(
                    f"DiscretizedNormal: {name} must be a torch.Tensor, got {type(value).__name__}"
                )
        if binary and levels != 2:
            raise ConfigError(f"binary=True needs levels=2 (data {{0, 1}}), got levels={levels}")
        self.levels, self.binary = levels, bool(binary)
        self.half_bin = 1.0 / (levels - 1)
        if isinstance(scale, Tensor) and loc.shape == scale.shape:  # nothing to broadcast
            self.loc, self.scale = loc, scale
        else:
            self.loc, self.scale = torch.broadcast_tensors(loc, scale)
        super().__init__(self.loc.shape, validate_args=validate_args)

    @staticmethod
    def from_binary(v: Tensor) -> Tensor:
        """Binary data v ∈ {0, 1} → the K = 2 grid point x = 2v − 1 ∈ {−1, 1}."""
        return 2 * v - 1

    @staticmethod
    def to_binary(x: Tensor) -> Tensor:
        """The K = 2 grid point x ∈ {−1, 1} → the binary datum v = (x + 1)/2 ∈ {0, 1}."""
        return (x + 1) / 2

    @property
    def support(self) -> constraints.Constraint:
        return constraints.boolean if self.binary else LevelGrid(self.levels)

    @property
    def mean(self) -> Tensor:
        return self.to_binary(self.loc) if self.binary else self.loc

    def expand(self, batch_shape, _instance=None):
        return DiscretizedNormal(
            self.loc.expand(batch_shape),
            self.scale.expand(batch_shape),
            self.levels,
            binary=self.binary,
        )

    def log_prob(self, value: Tensor) -> Tensor:
        if self.binary:
            value = self.from_binary(value)
        # The outermost bins are open: x = −1 has no lower edge, x = 1 no upper one. Setting
        # that edge to ∓∞ makes one formula serve every bin, with two log-CDF calls per value
        # instead of four (the middle bins' two, and one for each open end, all computed
        # everywhere). The ∞ sits behind torch.where, whose backward passes no gradient to
        # the branch not taken, so the NaN that log_ndtr's gradient has at −∞ stays out.
        # Any value above 1 − h is the top level (the next one down is 1 − 2h), any below
        # −1 + h the bottom one; at K = 2 that edge is 0, between −1 and 1.
        h = self.half_bin
        edge = 1.0 - h
        upper = torch.where(value > edge, math.inf, (value + h - self.loc) / self.scale)
        lower = torch.where(value < -edge, -math.inf, (value - h - self.loc) / self.scale)
        # log P = log(Φ(hi) − Φ(lo)) in the tail that keeps both CDFs small: for lower > 0
        # the bin is mirrored (1 − Φ(lower) − (1 − Φ(upper)) = Φ(−lower) − Φ(−upper)).
        mirror = lower > 0
        log_hi = torch.special.log_ndtr(torch.where(mirror, -lower, upper))
        log_lo = torch.special.log_ndtr(torch.where(mirror, -upper, lower))
        return log_hi + log1mexp((log_lo - log_hi).clamp(max=0.0))

    def sample(self, sample_shape: torch.Size | tuple = ()) -> Tensor:
        """A draw of the Normal, clamped to [−1, 1] and rounded to the nearest level (the
        level whose bin holds it; beyond ±1, the open outer bins'); {0, 1} if ``binary``."""
        with torch.no_grad():
            shape = self._extended_shape(sample_shape)
            x = self.loc.expand(shape) + self.scale.expand(shape) * torch.randn(
                shape, dtype=self.loc.dtype, device=self.loc.device
            )
            steps = (self.levels - 1) / 2  # y = (x + 1)·steps is the level, 0..K − 1
            x = torch.round((x.clamp(-1.0, 1.0) + 1.0) * steps) / steps - 1.0
            return self.to_binary(x) if self.binary else x
