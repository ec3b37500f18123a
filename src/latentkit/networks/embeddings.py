"""Time and feature embeddings for conditional networks: the sinusoidal embedding of a
(diffusion) time, its small MLP, and Fourier features of the input."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from latentkit.arguments import check_count, check_number, checked
from latentkit.errors import ConfigError, InputError
from latentkit.networks.layers import mlp

__all__ = ["TimeEmbedding", "embedding_frequencies", "fourier_features", "timestep_embedding"]


def embedding_frequencies(dim: int, max_period: float = 10_000.0, device=None) -> Tensor:
    """The ``dim // 2`` frequencies of :func:`timestep_embedding`, float64:
    ω_k = max_period^(−k/(dim//2)), k = 0..dim//2 − 1 (``dim`` ≥ 2, ``max_period`` > 0)."""
    half = check_count(dim, "embedding dim", low=2, error=ConfigError) // 2
    check_number(max_period, "max_period", above=0.0, error=ConfigError)
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
    if not isinstance(t, Tensor) or t.ndim != 1:
        raise InputError(f"timestep_embedding: t must be a tensor [batch], got {_what(t)}")
    if freqs is None:
        freqs = embedding_frequencies(dim, max_period, t.device)
    angles = t.to(torch.float64)[:, None] * freqs[None]
    emb = torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


class TimeEmbedding(nn.Module):
    """t → sinusoid of width ``dim`` → Linear → activation → Linear: ``[batch] -> [batch,
    out_dim]`` in the module's dtype (submodule ``net``, the MLP).

    With ``condition_dim`` = F > 0, a conditional network's embedding: the condition's
    features f (``[batch, F]``, e.g. ``ConditionSpec.features``: a one-hot class, all zeros
    for classifier-free guidance's null class) enter through a learned linear map without
    bias (submodule ``condition``), added to the time's: emb(t) + E f. The null class's
    embedding is then the time's alone. Without it (F = 0) the module and its state-dict
    keys are the unconditional ones."""

    @checked
    def __init__(self, dim: int, out_dim: int, activation: str = "silu", *, condition_dim: int = 0):
        check_count(dim, "TimeEmbedding: dim", low=2, error=ConfigError)
        check_count(out_dim, "TimeEmbedding: out_dim", error=ConfigError)
        check_count(condition_dim, "TimeEmbedding: condition_dim", low=0, error=ConfigError)
        super().__init__()
        self.dim = dim
        self.condition_dim = condition_dim
        self.net = mlp([dim, out_dim, out_dim], activation)
        if condition_dim:
            self.condition = nn.Linear(condition_dim, out_dim, bias=False)
        # A plain attribute, not a buffer: float64 whatever dtype the module is cast to.
        self._freqs = embedding_frequencies(dim)

    def forward(self, t: Tensor, condition: Tensor | None = None) -> Tensor:
        first = self.net[0].weight
        if self._freqs.device != t.device:
            self._freqs = self._freqs.to(t.device)
        emb = self.net(timestep_embedding(t, self.dim, freqs=self._freqs).to(first.dtype))
        if not self.condition_dim:
            if condition is not None:
                raise InputError("TimeEmbedding: a condition given to an unconditional network")
            return emb
        if condition is None or tuple(condition.shape) != (t.shape[0], self.condition_dim):
            raise InputError(
                f"TimeEmbedding: condition must be features [{t.shape[0]}, "
                f"{self.condition_dim}], got {_what(condition)}"
            )
        return emb + self.condition(condition.to(first.dtype))


def fourier_features(z: Tensor, exponents: Sequence[int]) -> Tensor:
    """sin(2^n π z) and cos(2^n π z) for each n in ``exponents`` (VDM appendix C), elementwise:
    ``[batch, *event] -> [batch, 2·len(exponents), *event]``, ordered sin(2^{n₁} π z),
    cos(2^{n₁} π z), sin(2^{n₂} π z), … along the new axis 1."""
    if not isinstance(z, Tensor) or z.ndim < 1:
        raise InputError(f"fourier_features: z must be a tensor [batch, ...], got {_what(z)}")
    if not exponents or not all(type(n) is int and abs(n) <= 64 for n in exponents):
        raise InputError(
            "fourier_features: exponents must be a non-empty sequence of ints in [-64, 64] "
            f"(powers of 2 beyond float64's range mean nothing), got {exponents!r}"
        )
    angles = torch.stack([z * (math.pi * 2.0**n) for n in exponents], dim=1)
    return rearrange([angles.sin(), angles.cos()], "two b k ... -> b (k two) ...")


def _what(value: object) -> str:
    if isinstance(value, Tensor):
        return f"shape {tuple(value.shape)}"
    return type(value).__name__
