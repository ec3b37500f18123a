"""The DDPM's configuration (``DDPMConfig``) and its validators; notation: ``docs/ddpm.md``."""

from __future__ import annotations

import attrs
import torch
from attrs import validators as v

from latentkit.blocks import EpsNetworkConfig
from latentkit.config import MAX_DATA_LEVELS, data_levels
from latentkit.diffusion import MAX_TIMESTEPS
from latentkit.errors import ConfigError
from latentkit_ddpm.schedule import check_beta

__all__ = ["DDPMConfig"]


def _check_given_beta(instance: DDPMConfig, attribute, value: tuple[float, ...]) -> None:
    if instance.schedule != "given":
        if value:
            raise ValueError(
                f"'beta' is only read with schedule='given' (schedule is {instance.schedule!r})"
            )
        return
    if len(value) != instance.num_timesteps:
        raise ValueError(
            f"'beta' must hold num_timesteps={instance.num_timesteps} values β_1..β_T, "
            f"got {len(value)}"
        )
    try:
        check_beta(torch.tensor(value, dtype=torch.float64))
    except ConfigError as exc:
        raise ValueError(str(exc)) from None


MAX_LEVELS = MAX_DATA_LEVELS  # the old name of latentkit.config.MAX_DATA_LEVELS


def _check_loss(instance: DDPMConfig, attribute, value: str) -> None:
    if value == "simple" and instance.reverse_variance == "learned":
        raise ValueError(
            "'loss'='simple' gives a learned reverse variance no gradient; "
            "use loss='hybrid' or loss='elbo' with reverse_variance='learned'"
        )


@attrs.frozen(kw_only=True)
class DDPMConfig(EpsNetworkConfig):
    """Configuration of the ``ddpm`` model (notation: ``docs/ddpm.md``); the ε-network's
    fields (``data_shape``, ``network`` to ``channel_mult``) are
    ``latentkit.blocks.EpsNetworkConfig``'s.

    Attributes:
        data_shape: one example: ``(D,)`` vectors or ``(C, H, W)`` images.
        num_timesteps: T, the number of latent layers x_1..x_T (≥ 1).
        schedule: ``linear`` (DDPM), ``cosine`` (improved DDPM) or ``given`` (``beta``).
        beta: with ``schedule="given"``, our β_1..β_T (per-step noise std, 0 < β_t < 1;
            the DDPM paper's β_t is its square).
        reverse_variance: σ_t² of p(x_{t-1} | x_t): ``beta`` (β_t²), ``posterior`` (β̃_t², the
            variance of q(x_{t-1} | x_t, x_0)) or ``learned`` (log-space interpolation
            between them, improved DDPM, with the weight held in [0, 1]).
        decoder: p(x_0 | x_1): ``discretized`` (K-level data, ``levels``; bits/dim are an
            honest bound) or ``gaussian`` (real-valued data).
        levels: K, the data's levels, 2..256 (``discretized`` only): level k is the grid
            point 2k/(K − 1) − 1 of [−1, 1] and its bin is 2/(K − 1) wide. The data are those
            grid points (256: the ``8bit`` variant, kind ``symmetric8``), except at K = 2:
            binary data {0, 1} (the ``binarized``/``threshold`` variants, kind ``binary``),
            which the model reads as 2x − 1.
        network: ε_θ: ``mlp``, ``unet`` (needs ``(C, H, W)``) or ``auto`` (unet for images).
        hidden: MLP hidden widths.
        activation: MLP activation (silu, relu, gelu, tanh, softplus).
        channels: U-Net base width.
        channel_mult: U-Net width multipliers, one per resolution level.
        loss: the model's default training objective (``latentkit train --objective``
            overrides it): ``elbo`` (−ELBO by the unbiased one-timestep estimator),
            ``simple`` (L_simple = ‖ε − ε_θ‖², a reweighted bound, not the ELBO) or
            ``hybrid`` (L_simple + λ·T·L_t with the mean stopped in L_t, improved DDPM).
        timestep_sampler: t for ``loss="elbo"``: ``uniform`` or ``importance`` (p(t) ∝
            √E[L_t²] over the last 10 losses per t, improved DDPM §3.3): the ``elbo``
            objective's ``layer_sampler``.
        hybrid_weight: λ of ``loss="hybrid"`` (> 0): the ``hybrid`` objective's ``weight``.
    """

    num_timesteps: int = attrs.field(
        default=1000, validator=[v.instance_of(int), v.ge(1), v.le(MAX_TIMESTEPS)]
    )
    schedule: str = attrs.field(default="linear", validator=v.in_(("linear", "cosine", "given")))
    beta: tuple[float, ...] = attrs.field(default=(), converter=tuple, validator=_check_given_beta)
    reverse_variance: str = attrs.field(
        default="beta", validator=v.in_(("beta", "posterior", "learned"))
    )
    decoder: str = attrs.field(default="discretized", validator=v.in_(("discretized", "gaussian")))
    levels: int = attrs.field(default=MAX_DATA_LEVELS, validator=data_levels())
    loss: str = attrs.field(
        default="elbo", validator=[v.in_(("elbo", "simple", "hybrid")), _check_loss]
    )
    timestep_sampler: str = attrs.field(
        default="uniform", validator=v.in_(("uniform", "importance"))
    )
    hybrid_weight: float = attrs.field(default=0.001, validator=[v.gt(0.0), v.lt(float("inf"))])

    @property
    def binary(self) -> bool:
        """Whether the data are binary {0, 1} (``levels = 2``), read as 2x − 1."""
        return self.decoder == "discretized" and self.levels == 2
