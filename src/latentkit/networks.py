"""Small network parts that plugins share: MLPs and a diagonal-Gaussian head."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Independent

from latentkit.distributions import diag_normal
from latentkit.errors import ConfigError

__all__ = ["ACTIVATIONS", "GaussianHead", "mlp"]

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "silu": nn.SiLU,
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "softplus": nn.Softplus,
}


def mlp(sizes: Sequence[int], activation: str = "silu") -> nn.Sequential:
    """Linear layers of the given sizes with ``activation`` between them (none after the last)."""
    if activation not in ACTIVATIONS:
        raise ConfigError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


class GaussianHead(nn.Module):
    """features ``[batch, 2·d]`` → N(mean, diag scale²), scale = softplus(raw) + min_scale."""

    def __init__(self, min_scale: float = 1e-4):
        super().__init__()
        self.min_scale = float(min_scale)

    def forward(self, features: Tensor) -> Independent:
        mean, raw = features.chunk(2, dim=-1)
        return diag_normal(mean, F.softplus(raw) + self.min_scale)
