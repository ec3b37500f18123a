"""ε-networks of the continuous-time model: ``net(z_t, t) -> ε̂`` with t ∈ [0, 1] a float tensor.

The contract (what :class:`~latentkit_vdm.model.ContinuousDiffusion` calls): ``forward(z, t)``
with ``z`` ``[batch, *data_shape]`` and ``t`` ``[batch]`` returns ε̂_θ(z, t) of ``z``'s shape,
each example's output depending on that example alone. A network with ``takes_gamma = True``
is called ``forward(z, t, gamma)`` with γ(t) (``[batch]``) as the model computed it, so that
gradients through the network's conditioning reach a learned schedule along the same path as
the model's other uses of γ. A conditional model's network (``VDMConfig.classes``) is also
given the condition's features, ``forward(z, t, gamma, condition)`` (``[batch, F]``, all zeros
for the null class). A network whose output is ε̂ = a(t) ⊙ z + b(t) also offers
``coefficients(t) -> (a, b)`` (each ``[batch, D]``); the model then exposes its discrete chain
to latentkit's exact linear-Gaussian oracle.

* :class:`ContinuousEps` wraps latentkit's ε-networks (``latentkit.networks.EpsMLP`` and
  ``EpsUNet``, the DDPM's). Its input is z_t with, for
  each exponent n of ``fourier_exponents``, the features sin(2^n π z_t) and cos(2^n π z_t)
  (VDM appendix C: they let the network see the fine scale of 8-bit data at small t); its
  time embedding is fed :class:`TimeInput`'s argument, 1000·t or 1000·(normalised γ(t)).
* :class:`LinearEps`: ε̂ = a(s) ⊙ z + b(s), a, b from a time embedding of the same argument s
  (zero at start).

:func:`build_network` gives the one a ``VDMConfig`` describes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from einops import rearrange
from torch import Tensor, nn

from latentkit.networks import EpsMLP, EpsUNet, fourier_features, timestep_embedding

__all__ = [
    "MAX_FOURIER_EXPONENT",
    "TIME_INPUTS",
    "TIME_SCALE",
    "ContinuousEps",
    "LinearEps",
    "TimeInput",
    "build_network",
]

TIME_SCALE = 1000.0
"""The embedding argument spans [0, TIME_SCALE] (the DDPM networks' range of integer steps)."""

TIME_INPUTS = ("gamma", "t")
"""What the time embedding sees: normalised γ(t) or t."""

MAX_FOURIER_EXPONENT = 12
"""2^12 π |z| stays where float32 resolves the sine (|z| ≲ 4: angles below ~5·10⁴)."""

# ``fourier_features`` (imported above) is latentkit.networks'; importing it from here is the
# old way, kept working.


class TimeInput:
    """The argument s of a network's sinusoidal time embedding, from t and γ(t):

    * ``"t"``: s = 1000 t;
    * ``"gamma"``: s = 1000 (γ(t) − γ_min⁰)/(γ_max⁰ − γ_min⁰), γ_min⁰ and γ_max⁰ the configured
      ends (fixed numbers, not a learned schedule's current ends), so the map from γ to s
      never moves. Then ε̂ is a function of z and the SNR alone, which makes the
      continuous bound depend on the schedule only through its ends (VDM §5).

    ``log_snr`` (the model's schedule, referenced, not owned) supplies γ(t) when a caller
    passes t alone.
    """

    def __init__(
        self,
        kind: str = "t",
        gamma_min: float = 0.0,
        gamma_max: float = 1.0,
        log_snr: nn.Module | None = None,
    ):
        if kind not in TIME_INPUTS:
            raise ValueError(f"time input must be one of {TIME_INPUTS}, got {kind!r}")
        if kind == "gamma" and not gamma_max > gamma_min:
            raise ValueError(f"need gamma_max > gamma_min, got {gamma_min}, {gamma_max}")
        self.kind = kind
        self.gamma_min, self.gamma_max = float(gamma_min), float(gamma_max)
        self.log_snr = log_snr

    def __call__(self, t: Tensor, gamma: Tensor | None = None) -> Tensor:
        """s for ``t`` (``[batch]``), with γ(t) given or computed by the schedule."""
        if self.kind == "t":
            return TIME_SCALE * t
        if gamma is None:
            if self.log_snr is None:
                raise ValueError("γ-conditioning needs γ(t): pass gamma or give a schedule")
            gamma, _ = self.log_snr(t)
        return TIME_SCALE * (gamma - self.gamma_min) / (self.gamma_max - self.gamma_min)


class ContinuousEps(nn.Module):
    """latentkit's ε-network (``EpsMLP`` or ``EpsUNet``) at continuous time:
    ε̂(z, t) = inner([z, fourier_features(z)], s(t, γ))[:, 0].

    The Fourier features join z along axis 1: as extra channels for images (the U-Net's
    ``in_channels`` = C (1 + 2k), k exponents) and, since the MLP flattens its input, as
    blocks of D = prod(data_shape) after z's own for the MLP (``in_features`` = D (1 + 2k)).
    The inner network is built for that width (:meth:`input_copies`); its output stays ε̂ of
    z's shape.
    """

    takes_gamma = True

    def __init__(
        self,
        inner: EpsMLP | EpsUNet,
        *,
        fourier_exponents: Sequence[int] = (),
        time_input: TimeInput | None = None,
    ):
        super().__init__()
        self.inner = inner
        self.fourier_exponents = tuple(fourier_exponents)
        self.time_input = TimeInput() if time_input is None else time_input

    @staticmethod
    def input_copies(fourier_exponents: Sequence[int]) -> int:
        """1 + 2k: the inner network's input width in units of z's own."""
        return 1 + 2 * len(tuple(fourier_exponents))

    def inputs(self, z: Tensor, t: Tensor, gamma: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(what the inner network takes as x, the argument s of its time embedding)."""
        if self.fourier_exponents:
            features = fourier_features(z, self.fourier_exponents)
            z = torch.cat([z, rearrange(features, "b k c ... -> b (k c) ...")], dim=1)
        return z, self.time_input(t, gamma)

    def forward(
        self, z: Tensor, t: Tensor, gamma: Tensor | None = None, condition: Tensor | None = None
    ) -> Tensor:
        """ε̂(z, t), or ε̂(z, t, c) given the condition's features (a conditional inner net)."""
        x, s = self.inputs(z, t, gamma)
        out = self.inner(x, s) if condition is None else self.inner(x, s, condition)
        return out[:, 0]


class LinearEps(nn.Module):
    """ε̂ = a(s) ⊙ z + b(s), s = :class:`TimeInput`'s argument: a network linear in z (the
    optimal one on Gaussian data is). It takes no Fourier features: they are not linear."""

    takes_gamma = True

    def __init__(
        self, data_shape: Sequence[int], embed_dim: int = 16, time_input: TimeInput | None = None
    ):
        super().__init__()
        self.data_shape = tuple(data_shape)
        self.embed_dim = embed_dim
        self.time_input = TimeInput() if time_input is None else time_input
        D = math.prod(self.data_shape)
        self.proj = nn.Linear(embed_dim, 2 * D)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def coefficients(self, t: Tensor, gamma: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """a(t), b(t), each ``[batch, D]``."""
        s = self.time_input(t, gamma)
        emb = timestep_embedding(s, self.embed_dim).to(self.proj.weight.dtype)
        a, b = rearrange(self.proj(emb), "n (k d) -> k n d", k=2)
        return a, b

    def forward(self, z: Tensor, t: Tensor, gamma: Tensor | None = None) -> Tensor:
        a, b = self.coefficients(t, gamma)
        flat = rearrange(z, "n ... -> n (...)")
        return (a * flat + b).reshape(z.shape)


def build_network(cfg, log_snr: nn.Module) -> nn.Module:
    """The ε-network a ``VDMConfig`` describes (``network``, ``fourier_exponents``,
    ``time_input`` and the widths), its time input reading γ from ``log_snr``."""
    kind = cfg.resolved_network
    time_input = TimeInput(cfg.time_input, cfg.gamma_min, cfg.gamma_max, log_snr)
    if kind == "linear":
        return LinearEps(cfg.data_shape, time_input=time_input)
    spec = cfg.condition_spec
    inner = cfg.eps_network(
        input_copies=ContinuousEps.input_copies(cfg.fourier_exponents),
        condition_dim=spec.feature_dim if spec is not None else 0,
    )
    return ContinuousEps(inner, fourier_exponents=cfg.fourier_exponents, time_input=time_input)
