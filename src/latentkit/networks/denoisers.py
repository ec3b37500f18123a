"""ε-prediction networks ε_θ(x_t, t) for diffusions: a time-conditioned MLP (vectors) and a
small U-Net (images).

Both take ``x_t`` of shape ``[batch, *data_shape]`` and ``t`` of shape ``[batch]`` (integer
steps, or a real time on the same scale, e.g. 1000·t for t ∈ [0, 1]) and return
``[batch, out_groups, *data_shape]``: group 0 is ε̂; a model may read more groups (the DDPM's
group 1, ``out_groups = 2``, is the raw interpolation weight v of a learned reverse variance,
improved DDPM eq. 15). The last layer starts at zero, so an untrained network predicts ε̂ = 0.

``in_features`` (MLP) and ``in_channels`` (U-Net) let a caller feed more than ``x_t`` (e.g.
:func:`~latentkit.networks.fourier_features` of it concatenated to it); the output keeps
``data_shape``. Their default is the data's own width.

``condition_dim`` = F > 0 makes a conditional ε_θ(x_t, t, c): ``forward(x, t, condition)``
with the condition's features ``[batch, F]`` (``ConditionSpec.features``: one-hot classes,
all zeros for the null class of classifier-free guidance), embedded linearly and added to
the time embedding (:class:`~latentkit.networks.TimeEmbedding`). F = 0 (the default) is the
unconditional network, its parameters and state-dict keys unchanged.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from latentkit.arguments import check_count, check_shape, checked
from latentkit.errors import ConfigError
from latentkit.networks.embeddings import TimeEmbedding
from latentkit.networks.layers import activation_layer

__all__ = ["EpsMLP", "EpsUNet", "check_unet_shape"]


class EpsMLP(nn.Module):
    """ε_θ for vectors: an MLP on x_t with the time embedding added at every layer,
    h_{i+1} = act(W_i h_i + P_i embed(t)); with ``condition_dim`` > 0, embed(t) + E f(c)."""

    @checked
    def __init__(
        self,
        data_shape: Sequence[int],
        hidden: Sequence[int] = (256, 256),
        *,
        out_groups: int = 1,
        activation: str = "silu",
        in_features: int | None = None,
        condition_dim: int = 0,
    ):
        self.data_shape = check_shape(data_shape, "EpsMLP: data_shape", error=ConfigError)
        check_shape(hidden, "EpsMLP: hidden", error=ConfigError)
        check_count(out_groups, "EpsMLP: out_groups", error=ConfigError)
        check_count(condition_dim, "EpsMLP: condition_dim", low=0, error=ConfigError)
        if in_features is not None:
            check_count(in_features, "EpsMLP: in_features", error=ConfigError)
        super().__init__()
        self.out_groups = out_groups
        D = math.prod(self.data_shape)
        widths = [D if in_features is None else in_features, *hidden]
        self.time = TimeEmbedding(hidden[0], hidden[0], activation, condition_dim=condition_dim)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(widths))
        self.time_proj = nn.ModuleList(nn.Linear(hidden[0], b) for b in hidden)
        self.act = activation_layer(activation)
        self.out = nn.Linear(widths[-1], D * out_groups)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor, t: Tensor, condition: Tensor | None = None) -> Tensor:
        emb = self.time(t, condition)
        h = x.flatten(1)
        for layer, proj in zip(self.layers, self.time_proj):
            h = self.act(layer(h) + proj(emb))
        return self.out(h).reshape(x.shape[0], self.out_groups, *self.data_shape)


@checked
def check_unet_shape(data_shape: Sequence[int], channel_mult: Sequence[int]) -> None:
    """Refuse (ConfigError) a ``data_shape`` an :class:`EpsUNet` of these levels cannot take:
    it must be an image ``(C, H, W)`` with H and W divisible by 2^(len(channel_mult) − 1)."""
    shape = check_shape(data_shape, "data_shape", error=ConfigError)
    check_shape(channel_mult, "channel_mult", error=ConfigError)
    if len(shape) != 3:
        raise ConfigError(f"'network'='unet' needs image data_shape (C, H, W), got {shape}")
    step = 2 ** (len(channel_mult) - 1)
    if shape[1] % step or shape[2] % step:
        raise ConfigError(
            f"'channel_mult' has {len(channel_mult)} levels, so H and W must be "
            f"divisible by {step}; data_shape is {shape}"
        )


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(8, channels), channels)


class _ResBlock(nn.Module):
    """GN → SiLU → conv → + time → GN → SiLU → conv, with a 1×1 skip when widths differ."""

    def __init__(self, c_in: int, c_out: int, time_dim: int):
        super().__init__()
        self.block1 = nn.Sequential(_norm(c_in), nn.SiLU(), nn.Conv2d(c_in, c_out, 3, padding=1))
        self.time = nn.Sequential(nn.SiLU(), nn.Linear(time_dim, c_out))
        self.block2 = nn.Sequential(_norm(c_out), nn.SiLU(), nn.Conv2d(c_out, c_out, 3, padding=1))
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.block1(x) + self.time(emb)[:, :, None, None]
        return self.skip(x) + self.block2(h)


class EpsUNet(nn.Module):
    """ε_θ for images ``[C, H, W]``: a small U-Net (DDPM §4 in miniature, no attention).

    One residual block per level; level i has ``channels · channel_mult[i]`` channels and
    levels are joined by stride-2 convolutions down and nearest-neighbour upsampling up, so
    H and W must be divisible by 2^(len(channel_mult) − 1) (:func:`check_unet_shape`).
    With ``condition_dim`` > 0 the time embedding is embed(t) + E f(c).
    """

    @checked
    def __init__(
        self,
        data_shape: Sequence[int],
        channels: int = 32,
        channel_mult: Sequence[int] = (1, 2),
        *,
        out_groups: int = 1,
        in_channels: int | None = None,
        condition_dim: int = 0,
    ):
        shape = check_shape(data_shape, "EpsUNet: data_shape", error=ConfigError)
        if len(shape) != 3:
            raise ConfigError(f"EpsUNet: data_shape must be an image (C, H, W), got {shape}")
        check_shape(channel_mult, "EpsUNet: channel_mult", error=ConfigError)
        check_count(channels, "EpsUNet: channels", error=ConfigError)
        check_count(out_groups, "EpsUNet: out_groups", error=ConfigError)
        check_count(condition_dim, "EpsUNet: condition_dim", low=0, error=ConfigError)
        if in_channels is not None:
            check_count(in_channels, "EpsUNet: in_channels", error=ConfigError)
        super().__init__()
        C = data_shape[0]
        self.out_groups = out_groups
        time_dim = 4 * channels
        self.time = TimeEmbedding(channels, time_dim, "silu", condition_dim=condition_dim)
        widths = [channels * m for m in channel_mult]
        self.conv_in = nn.Conv2d(C if in_channels is None else in_channels, channels, 3, padding=1)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        c = channels
        for i, w in enumerate(widths):
            self.down.append(_ResBlock(c, w, time_dim))
            c = w
            if i < len(widths) - 1:
                self.downsample.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
        self.middle = _ResBlock(c, c, time_dim)
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i, w in reversed(list(enumerate(widths))):
            self.up.append(_ResBlock(c + w, w, time_dim))
            c = w
            if i > 0:
                self.upsample.append(nn.Conv2d(c, c, 3, padding=1))
        self.conv_out = nn.Sequential(
            _norm(c), nn.SiLU(), nn.Conv2d(c, C * out_groups, 3, padding=1)
        )
        nn.init.zeros_(self.conv_out[-1].weight)
        nn.init.zeros_(self.conv_out[-1].bias)

    def forward(self, x: Tensor, t: Tensor, condition: Tensor | None = None) -> Tensor:
        emb = self.time(t, condition)
        h = self.conv_in(x)
        skips = []
        for i, block in enumerate(self.down):
            h = block(h, emb)
            skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)
        h = self.middle(h, emb)
        for i, block in enumerate(self.up):
            h = block(torch.cat([h, skips.pop()], dim=1), emb)
            if i < len(self.upsample):
                h = self.upsample[i](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.conv_out(h).unflatten(1, (self.out_groups, -1))  # "b (k c) h w -> b k c h w"
