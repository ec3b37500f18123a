"""ε-networks of the continuous-time model: ``net(z_t, t) -> ε̂`` with t ∈ [0, 1] a float tensor.

The contract (what :class:`~latentkit_vdm.model.ContinuousDiffusion` calls): ``forward(z, t)``
with ``z`` ``[batch, *data_shape]`` and ``t`` ``[batch]`` returns ε̂_θ(z, t) of ``z``'s shape,
each example's output depending on that example alone. A network whose output is
ε̂ = a(t) ⊙ z + b(t) also offers ``coefficients(t) -> (a, b)`` (each ``[batch, D]``); the
model then exposes its discrete chain to latentkit's exact linear-Gaussian oracle.

* :class:`TimeScaledEps` reuses the DDPM plugin's MLP and U-Net, fed 1000·t so that their
  sinusoidal time embedding spans the frequencies it has for integer steps.
* :class:`LinearEps`: ε̂ = a(t) ⊙ z + b(t), a(t), b(t) from a time embedding (zero at start).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from einops import rearrange
from latentkit_ddpm.networks import EpsMLP, EpsUNet, timestep_embedding
from torch import Tensor, nn

__all__ = ["TIME_SCALE", "LinearEps", "TimeScaledEps"]

TIME_SCALE = 1000.0
"""t ∈ [0, 1] is fed to the DDPM networks as TIME_SCALE·t (their embedding's range)."""


class TimeScaledEps(nn.Module):
    """The DDPM plugin's ε-network (MLP or U-Net) at continuous time: inner(z, 1000 t)[:, 0]."""

    def __init__(self, inner: EpsMLP | EpsUNet):
        super().__init__()
        self.inner = inner

    def forward(self, z: Tensor, t: Tensor) -> Tensor:
        return self.inner(z, TIME_SCALE * t)[:, 0]


class LinearEps(nn.Module):
    """ε̂ = a(t) ⊙ z + b(t): a network linear in z (the optimal one on Gaussian data is)."""

    def __init__(self, data_shape: Sequence[int], embed_dim: int = 16):
        super().__init__()
        self.data_shape = tuple(data_shape)
        self.embed_dim = embed_dim
        D = math.prod(self.data_shape)
        self.proj = nn.Linear(embed_dim, 2 * D)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def coefficients(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """a(t), b(t), each ``[batch, D]``."""
        emb = timestep_embedding(TIME_SCALE * t, self.embed_dim).to(self.proj.weight.dtype)
        a, b = rearrange(self.proj(emb), "n (k d) -> k n d", k=2)
        return a, b

    def forward(self, z: Tensor, t: Tensor) -> Tensor:
        a, b = self.coefficients(t)
        flat = rearrange(z, "n ... -> n (...)")
        return (a * flat + b).reshape(z.shape)
