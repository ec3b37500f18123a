"""Small network parts: MLPs, a diagonal-Gaussian head, and MADE's masked layers for
autoregressive flows."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Independent

from latentkit.arguments import check_count, check_number, check_shape, checked
from latentkit.distributions import diag_normal
from latentkit.errors import ConfigError

__all__ = ["ACTIVATIONS", "MADE", "GaussianHead", "MaskedLinear", "activation_layer", "mlp"]

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "silu": nn.SiLU,
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "softplus": nn.Softplus,
}


def activation_layer(name: str) -> nn.Module:
    """A new module of the activation ``name`` (one of :data:`ACTIVATIONS`); a ConfigError
    naming the choices for any other name."""
    if not isinstance(name, str) or name not in ACTIVATIONS:
        raise ConfigError(f"activation must be one of {sorted(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name]()


@checked
def mlp(sizes: Sequence[int], activation: str = "silu") -> nn.Sequential:
    """Linear layers of the given sizes with ``activation`` between them (none after the last)."""
    check_shape(sizes, "mlp: sizes", error=ConfigError)
    activation_layer(activation)  # refuse an unknown name even where no layer needs one
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(activation_layer(activation))
    return nn.Sequential(*layers)


class GaussianHead(nn.Module):
    """features ``[batch, 2·d]`` → N(mean, diag scale²), scale = softplus(raw) + min_scale."""

    @checked
    def __init__(self, min_scale: float = 1e-4):
        super().__init__()
        self.min_scale = check_number(min_scale, "GaussianHead: min_scale", low=0.0)

    def forward(self, features: Tensor) -> Independent:
        mean, raw = features.chunk(2, dim=-1)
        return diag_normal(mean, F.softplus(raw) + self.min_scale)


class MaskedLinear(nn.Linear):
    """y = x (W ⊙ M)ᵀ + b with a fixed 0/1 ``mask`` M of shape ``[out, in]`` (a buffer)."""

    @checked
    def __init__(self, in_features: int, out_features: int, mask: Tensor):
        check_count(in_features, "MaskedLinear: in_features", error=ConfigError)
        check_count(out_features, "MaskedLinear: out_features", error=ConfigError)
        super().__init__(in_features, out_features)
        if mask.shape != (out_features, in_features):
            raise ConfigError(
                f"mask has shape {tuple(mask.shape)}, expected ({out_features}, {in_features})"
            )
        self.register_buffer("mask", mask.to(self.weight.dtype))

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


class MADE(nn.Module):
    """A masked autoencoder (Germain et al. 2015): ``forward(z, context) -> (m, s)``, each
    ``[..., dim]``, where output i depends on z_1..z_{i-1} and the context only (so
    ∂m_i/∂z_j = ∂s_i/∂z_j = 0 for j ≥ i: a strictly lower-triangular Jacobian).

    Degrees: input i has degree i (1..dim); a hidden unit k has degree k mod dim (0..dim−1)
    and sees the inputs of degree ≤ its own; output i sees the hidden units of degree < i.
    The context (``[..., context_dim]``, broadcast against z's leading dimensions) enters the
    first layer unmasked.

    Args:
        dim: D, the number of autoregressive variables.
        hidden: widths of the hidden layers (may be empty: then m, s are strictly
            lower-triangular linear maps of z plus a function of the context).
        context_dim: width of the context (0: none).
        activation: one of :data:`ACTIVATIONS`.
    """

    @checked
    def __init__(
        self, dim: int, hidden: Sequence[int], context_dim: int = 0, activation: str = "relu"
    ):
        check_count(dim, "MADE: dim", error=ConfigError)
        check_shape(hidden, "MADE: hidden", min_len=0, error=ConfigError)
        check_count(context_dim, "MADE: context_dim", low=0, error=ConfigError)
        super().__init__()
        self.act = activation_layer(activation)
        self.dim, self.context_dim = int(dim), int(context_dim)
        degrees = [torch.arange(1, dim + 1)]
        degrees += [torch.arange(h) % dim for h in hidden]
        layers = []
        for d_in, d_out in itertools.pairwise(degrees):
            layers.append(MaskedLinear(len(d_in), len(d_out), (d_out[:, None] >= d_in).int()))
        out = torch.arange(1, dim + 1).repeat(2)  # m and s share the output degrees
        layers.append(MaskedLinear(len(degrees[-1]), 2 * dim, (out[:, None] > degrees[-1]).int()))
        self.layers = nn.ModuleList(layers)
        first = len(degrees[1]) if hidden else 2 * dim
        self.context = nn.Linear(context_dim, first) if context_dim else None

    def forward(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        h = self.layers[0](z)
        if self.context is not None:
            if context is None:
                raise ConfigError(f"this MADE takes a context of width {self.context_dim}")
            h = h + self.context(context)
        for layer in self.layers[1:]:
            h = layer(self.act(h))
        m, s = h.chunk(2, dim=-1)
        return m, s
