"""The DDPM's configuration (``DDPMConfig``) and its validators; notation: ``docs/ddpm.md``."""

from __future__ import annotations

import attrs
import torch

from latentkit.arguments import check_count, check_flag, check_number
from latentkit.blocks import EpsNetworkConfig
from latentkit.conditions import ConditionSpec
from latentkit.config import (
    MAX_DATA_LEVELS,
    class_count,
    data_levels,
    drop_rate,
    one_of,
    ruled,
)
from latentkit.diffusion import MAX_TIMESTEPS
from latentkit.errors import ConfigError
from latentkit_ddpm.schedule import check_beta

__all__ = ["DDPMConfig"]


def _tuple(value):
    # TOML and JSON give lists; anything else is left for the validator to name.
    return tuple(value) if isinstance(value, (list, tuple)) else value


def _check_given_beta(instance: DDPMConfig, attribute, value: tuple[float, ...]) -> None:
    if not isinstance(value, tuple):
        raise ConfigError(f"'beta' must be a tuple of numbers β_1..β_T, got {value!r}")
    if instance.schedule != "given":
        if value:
            raise ConfigError(
                f"'beta' is only read with schedule='given' (schedule is {instance.schedule!r})"
            )
        return
    if len(value) != instance.num_timesteps:
        raise ConfigError(
            f"'beta' must hold num_timesteps={instance.num_timesteps} values β_1..β_T, "
            f"got {len(value)}"
        )
    numbers = all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in value)
    if not numbers:
        raise ConfigError(f"'beta' must be numbers β_1..β_T, got {value!r}")
    check_beta(torch.tensor(value, dtype=torch.float64))


@ruled(f"int in 1..{MAX_TIMESTEPS}")
def _timesteps(instance: DDPMConfig, attribute, value: int) -> None:
    check_count(value, repr(attribute.name), high=MAX_TIMESTEPS, error=ConfigError)


@ruled("finite float > 0")
def _positive(instance: DDPMConfig, attribute, value: float) -> None:
    check_number(value, repr(attribute.name), above=0.0, error=ConfigError)


MAX_LEVELS = MAX_DATA_LEVELS  # the old name of latentkit.config.MAX_DATA_LEVELS


def _check_loss(instance: DDPMConfig, attribute, value: str) -> None:
    if value == "simple" and instance.reverse_variance == "learned":
        raise ConfigError(
            "'loss'='simple' gives a learned reverse variance no gradient; "
            "use loss='hybrid' or loss='elbo' with reverse_variance='learned'"
        )


@ruled("True or False")
def _check_flag_field(instance: DDPMConfig, attribute, value: bool) -> None:
    check_flag(value, repr(attribute.name), error=ConfigError)


@ruled("True or False; True needs decoder='discretized'")
def _check_clip(instance: DDPMConfig, attribute, value: bool) -> None:
    check_flag(value, "'clip_denoised'", error=ConfigError)
    if value and instance.decoder != "discretized":
        raise ConfigError(
            "'clip_denoised'=True holds x̂_0 in the data's range [−1, 1], which only "
            f"decoder='discretized' data have (decoder is {instance.decoder!r})"
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
        classes: 0 (default) for the unconditional DDPM; K ≥ 2 for a class-conditional one,
            ε_θ(x_t, t, c) on labels c in 0..K−1 with classifier-free guidance (the null
            class K; ``latentkit.sample(model, n, condition=c, guidance=w)``).
        guidance_drop: with ``classes``, the probability in [0, 1) with which training
            replaces a label by the null class (classifier-free guidance's dropout).
        clip_denoised: False (default) for DDPM's μ_θ(x_t, t) from ε_θ; True for the mean of
            q(x_{t-1} | x_t, x̂_0) at x̂_0 = (x_t − β̄_t ε_θ)/ᾱ_t held in [−1, 1], the data's
            range (DDPM's sampler; ``decoder="discretized"`` only). It is the model's mean in
            every use, bounds and samples alike: a different model with the same network,
            whose bound the evaluation reports. Off the boundary it equals the default's.
        eps_skip: False (default): ε_θ is the network's output; True: ε_θ = β̄_t x_t + the
            network's output, the network learning the residual from E[ε | x_t] of data with
            x_0 ~ N(0, I) (β̄_t x_t). Where x_t is nearly all noise (large t), ε ≈ x_t and the
            network's output need only be small, which an MLP without a skip connection
            does not learn: its samples drift off the data (docs/ddpm.md).
    """

    num_timesteps: int = attrs.field(default=1000, validator=_timesteps)
    schedule: str = attrs.field(default="linear", validator=one_of("linear", "cosine", "given"))
    beta: tuple[float, ...] = attrs.field(default=(), converter=_tuple, validator=_check_given_beta)
    reverse_variance: str = attrs.field(
        default="beta", validator=one_of("beta", "posterior", "learned")
    )
    decoder: str = attrs.field(default="discretized", validator=one_of("discretized", "gaussian"))
    levels: int = attrs.field(default=MAX_DATA_LEVELS, validator=data_levels())
    loss: str = attrs.field(
        default="elbo", validator=[one_of("elbo", "simple", "hybrid"), _check_loss]
    )
    timestep_sampler: str = attrs.field(
        default="uniform", validator=one_of("uniform", "importance")
    )
    hybrid_weight: float = attrs.field(default=0.001, validator=_positive)
    classes: int = attrs.field(default=0, validator=class_count)
    guidance_drop: float = attrs.field(default=0.1, validator=drop_rate)
    clip_denoised: bool = attrs.field(default=False, validator=_check_clip)
    eps_skip: bool = attrs.field(default=False, validator=_check_flag_field)

    @property
    def condition_spec(self) -> ConditionSpec | None:
        """What the model is conditioned on: K class labels with guidance (``classes`` = K),
        or ``None`` (``classes`` = 0)."""
        return ConditionSpec.of_classes(self.classes, guidance=True, drop_rate=self.guidance_drop)

    @property
    def binary(self) -> bool:
        """Whether the data are binary {0, 1} (``levels = 2``), read as 2x − 1."""
        return self.decoder == "discretized" and self.levels == 2
