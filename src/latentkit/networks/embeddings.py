"""Time and feature embeddings for conditional networks: the sinusoidal embedding of a
(diffusion) time, its small MLP, and Fourier features of the input."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from latentkit.networks.layers import mlp

__all__ = ["TimeEmbedding", "embedding_frequencies", "fourier_features", "timestep_embedding"]


def embedding_frequencies(dim: int, max_period: float = 10_000.0, device=None) -> Tensor:
    """The ``dim // 2`` frequencies of :func:`timestep_embedding`, float64:
    ω_k = max_period^(−k/(dim//2)), k = 0..dim//2 − 1."""
    half = dim // 2
    return torch.exp(
        -math.log(max_period) * torch.arange(half, device=device, dtype=torch.float64) / half
    )


def timestep_embedding(
    t: Tensor, dim: int, max_period: float = 10_000.0, *, freqs: Tensor | None = None
) -> Tensor:
    """Sinusoidal embedding of timesteps (as DDPM, Ho et al. 2020, after the Transformer's):
    ``[batch] -> [batch, dim]``, [cos(t ω_k) for k] then [sin(t ω_k) for k], a zero column
    appended when ``dim`` is odd; computed in float64. ``t`` may be integer or real.

    ``freqs``: :func:`embedding_frequencies` of ``dim`` and ``max_period`` on ``t``'s
    device, if the caller keeps them (then they are not computed on every call)."""
    if freqs is None:
        freqs = embedding_frequencies(dim, max_period, t.device)
    angles = t.to(torch.float64)[:, None] * freqs[None]
    emb = torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


class TimeEmbedding(nn.Module):
    """t → sinusoid of width ``dim`` → Linear → activation → Linear: ``[batch] -> [batch,
    out_dim]`` in the module's dtype (submodule ``net``, the MLP)."""

    def __init__(self, dim: int, out_dim: int, activation: str = "silu"):
        super().__init__()
        self.dim = dim
        self.net = mlp([dim, out_dim, out_dim], activation)
        # A plain attribute, not a buffer: float64 whatever dtype the module is cast to.
        self._freqs = embedding_frequencies(dim)

    def forward(self, t: Tensor) -> Tensor:
        first = self.net[0].weight
        if self._freqs.device != t.device:
            self._freqs = self._freqs.to(t.device)
        emb = timestep_embedding(t, self.dim, freqs=self._freqs)
        return self.net(emb.to(first.dtype))


def fourier_features(z: Tensor, exponents: Sequence[int]) -> Tensor:
    """sin(2^n π z) and cos(2^n π z) for each n in ``exponents`` (VDM appendix C), elementwise:
    ``[batch, *event] -> [batch, 2·len(exponents), *event]``, ordered sin(2^{n₁} π z),
    cos(2^{n₁} π z), sin(2^{n₂} π z), … along the new axis 1."""
    angles = torch.stack([z * (math.pi * 2.0**n) for n in exponents], dim=1)
    return rearrange([angles.sin(), angles.cos()], "two b k ... -> b (k two) ...")
