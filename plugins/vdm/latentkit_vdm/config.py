"""The continuous-time model's configuration (``VDMConfig``) and its validators; notation:
``docs/continuous.md``."""

from __future__ import annotations

from typing import ClassVar

import attrs

from latentkit.arguments import check_count, check_flag
from latentkit.blocks import EpsNetworkConfig
from latentkit.conditions import ConditionSpec
from latentkit.config import class_count, data_levels, drop_rate, one_of, ruled
from latentkit.diffusion import MAX_TIMESTEPS
from latentkit.errors import ConfigError
from latentkit_vdm.networks import MAX_FOURIER_EXPONENT, TIME_INPUTS

__all__ = ["SCHEDULE_GRADIENTS", "T_SAMPLERS", "VDMConfig"]

T_SAMPLERS = ("low-discrepancy", "antithetic", "uniform")
"""How the ``continuous`` objective draws t (:func:`latentkit_vdm.continuous.sample_times`)."""
SCHEDULE_GRADIENTS = ("variance", "elbo")
"""What a learned schedule's interior receives (``ContinuousDiffusion.diffusion_integrand``)."""


@ruled(f"int in 1..{MAX_TIMESTEPS}")
def _timesteps(instance, attribute, value) -> None:
    check_count(value, repr(attribute.name), high=MAX_TIMESTEPS, error=ConfigError)


def _finite(instance, attribute, value) -> None:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number or not -50 <= value <= 50:  # NaN fails the comparison too
        raise ConfigError(f"{attribute.name!r} must be a number in [-50, 50], got {value!r}")


def _above_gamma_min(instance, attribute, value) -> None:
    _finite(instance, attribute, value)
    if not value > instance.gamma_min:
        raise ConfigError(
            f"'gamma_max' must exceed 'gamma_min' (γ = −log SNR increases with t); "
            f"got gamma_min={instance.gamma_min}, gamma_max={value}"
        )


def _tuple(value):
    # TOML and JSON give lists; anything else is left for the validator to name.
    return tuple(value) if isinstance(value, (list, tuple)) else value


def _fourier_exponents(instance, attribute, value) -> None:
    whole = isinstance(value, tuple) and all(
        isinstance(n, int) and not isinstance(n, bool) for n in value
    )
    if not whole or not all(0 <= n <= MAX_FOURIER_EXPONENT for n in value):
        raise ConfigError(
            f"{attribute.name!r} must be ints n in [0, {MAX_FOURIER_EXPONENT}] (features "
            f"sin(2^n π z), cos(2^n π z)), or empty for none; got {value!r}"
        )
    if len(set(value)) != len(value):
        raise ConfigError(f"{attribute.name!r} repeats an exponent: {value!r}")


def _classes_need_a_network(instance, attribute, value) -> None:
    if value and instance.resolved_network == "linear":
        raise ConfigError(
            "'classes' needs a network other than 'linear' (the linear ε-network reads z and "
            "t alone)"
        )


def _check_prediction(instance, attribute, value: str) -> None:
    if value == "x" and instance.resolved_network == "linear":
        raise ConfigError(
            "'prediction'='x' needs a network other than 'linear' (the linear ε-network is the "
            "exact oracle's, linear in z only as an ε-prediction)"
        )


@ruled("True or False; True needs prediction='eps'")
def _check_eps_skip(instance, attribute, value) -> None:
    check_flag(value, "'eps_skip'", error=ConfigError)
    if value and instance.prediction != "eps":
        raise ConfigError(
            "'eps_skip' adds β̄_t z_t to an ε-prediction: it needs prediction='eps', "
            f"got prediction={instance.prediction!r}"
        )


def _check_normal_part(instance, attribute, value: str) -> None:
    if value == "exact" and not (instance.eps_skip and instance.decoder == "gaussian"):
        raise ConfigError(
            "'normal_part'='exact' takes the bound's N(0, I) part in closed form: it needs "
            f"eps_skip=True and decoder='gaussian', got eps_skip={instance.eps_skip}, "
            f"decoder={instance.decoder!r}"
        )


@attrs.frozen(kw_only=True)
class VDMConfig(EpsNetworkConfig):
    """Configuration of the ``vdm`` model (notation: ``docs/continuous.md``); the ε-network's
    fields (``data_shape``, ``network`` to ``channel_mult``) are
    ``latentkit.blocks.EpsNetworkConfig``'s, and ``network`` also takes ``linear``.

    Attributes:
        data_shape: one example: ``(D,)`` vectors or ``(C, H, W)`` images.
        num_timesteps: T of the discrete chain that ``latentkit.elbo`` evaluates (L = T + 1
            layers); the continuous bound does not depend on it.
        schedule: γ(t): ``linear`` (VDM), ``cosine`` or ``learned`` (VDM's monotone network).
        gamma_min: γ(0) = −log SNR at t = 0 (in [−50, 50]).
        gamma_max: γ(1) (> gamma_min, in [−50, 50]).
        decoder: p(x | z_0): ``discretized`` (K-level data, ``levels``) or ``gaussian``.
        levels: K, the data's levels, 2..256 (``discretized`` only): level k is the grid
            point 2k/(K − 1) − 1 of [−1, 1], its bin 2/(K − 1) wide. The data are those grid
            points (256: the ``8bit`` variant, kind ``symmetric8``), except at K = 2: binary
            data {0, 1} (``binarized``/``threshold``, kind ``binary``), read as 2x − 1.
        network: ε̂_θ: ``mlp``, ``unet`` (images), ``linear`` (ε̂ = a(t) ⊙ z + b(t)) or
            ``auto`` (unet for images, else mlp).
        hidden: MLP hidden widths.
        activation: MLP activation.
        channels: U-Net base width.
        channel_mult: U-Net width multipliers, one per level.
        loss: the default training objective: ``continuous`` (−ELBO_∞, this plugin),
            ``score-matching`` (λ = g² denoising score matching, this plugin) or ``elbo``
            (the discrete-T chain's one-layer estimate, core).
        t_sampler: t of the ``continuous`` objective: ``low-discrepancy`` (VDM §3.4),
            ``antithetic`` (pairs t, 1 − t) or ``uniform``.
        prediction: what the network outputs: ``eps`` (ε̂_θ, the default) or ``x`` (x̂_θ, and
            ε̂ = (z_t − ᾱ_t x̂_θ)/β̄_t). On data on a coarse lattice (binary data, ``levels=2``)
            the x-prediction is a bounded, nearly piecewise-constant function, while the
            ε-prediction at small noise is a sawtooth of slope 1/β̄_t that an MLP cannot draw.
        fourier_exponents: the n of the Fourier features sin(2^n π z_t), cos(2^n π z_t)
            joined to the ``mlp``/``unet`` input (VDM appendix C; ints in [0, 12], empty:
            none). The default (7, 8) has periods of 2 and 1 bins of 8-bit data in [−1, 1]
            (the frequencies of VDM's code, which writes them 2^m · 2π, m = 6, 7). The
            ``linear`` network takes none (it must stay linear in z).
        time_input: what the network's time embedding sees: ``gamma``,
            1000 (γ(t) − gamma_min)/(gamma_max − gamma_min) with this config's (fixed) ends,
            so ε̂ is a function of the SNR and the continuous bound depends on the schedule
            only through its ends (VDM §5); or ``t``, 1000 t. The two coincide for the
            ``linear`` schedule.
        classes: 0 (default) for the unconditional model; K ≥ 2 for a class-conditional one,
            ε̂_θ(z_t, t, c) on labels c in 0..K−1 with classifier-free guidance (the null
            class K; ``latentkit.sample(model, n, condition=c, guidance=w)``, and the
            ``condition``/``guidance`` of ``sample_sde`` and ``sample_ode``). Not with the
            ``linear`` network.
        guidance_drop: with ``classes``, the probability in [0, 1) with which training
            replaces a label by the null class (classifier-free guidance's dropout).
        eps_skip: False (default): ε̂_θ is the network's output; True: ε̂_θ = β̄_t z_t + the
            network's output (LSGM's mixed score parameterisation, additive form), β̄_t z_t
            being E[ε | z_t] for data N(0, I). The network learns the residual from a
            standard normal: an untrained one (its last layer starts at zero) makes the model
            N(0, I)'s exact ε-prediction, which is what a diffusion *prior* over a VAE's
            latent should start from (``docs/compose.md``). Needs ``prediction = "eps"``.
        normal_part: how the continuous bound (``continuous`` objective, ``continuous_elbo``)
            is estimated: ``estimated`` (default: one draw of z_0, t and ε for all three
            terms) or ``exact`` (with ``eps_skip`` and the Gaussian decoder): ELBO_∞(x) =
            ELBO_∞ of the network-free model, which is log N(x; 0, I) + Σ_d [½ log ᾱ_0² +
            ½ β̄_0² (x_d² − 1)] in closed form, plus E_{t,ε}[½ γ'(t) (‖ε − β̄_t z_t‖² −
            ‖ε − ε̂_θ‖²)], the residual's term, drawn with the same t and ε. The same bound;
            the chi-square noise of the standard normal's own diffusion term (about
            ½ γ' √(2D) nats per draw) is gone (``docs/continuous.md``).
    """

    NETWORKS: ClassVar[tuple[str, ...]] = ("auto", "mlp", "unet", "linear")

    num_timesteps: int = attrs.field(default=1000, validator=_timesteps)
    schedule: str = attrs.field(default="linear", validator=one_of("linear", "cosine", "learned"))
    gamma_min: float = attrs.field(default=-13.3, validator=_finite)
    gamma_max: float = attrs.field(default=5.0, validator=_above_gamma_min)
    decoder: str = attrs.field(default="discretized", validator=one_of("discretized", "gaussian"))
    levels: int = attrs.field(default=256, validator=data_levels())
    loss: str = attrs.field(
        default="continuous", validator=one_of("continuous", "score-matching", "elbo")
    )
    t_sampler: str = attrs.field(default="low-discrepancy", validator=one_of(*T_SAMPLERS))
    prediction: str = attrs.field(default="eps", validator=[one_of("eps", "x"), _check_prediction])
    fourier_exponents: tuple[int, ...] = attrs.field(
        default=(7, 8), converter=_tuple, validator=_fourier_exponents
    )
    time_input: str = attrs.field(default="gamma", validator=one_of(*TIME_INPUTS))
    classes: int = attrs.field(default=0, validator=[class_count, _classes_need_a_network])
    guidance_drop: float = attrs.field(default=0.1, validator=drop_rate)
    eps_skip: bool = attrs.field(default=False, validator=_check_eps_skip)
    normal_part: str = attrs.field(
        default="estimated", validator=[one_of("estimated", "exact"), _check_normal_part]
    )

    @property
    def condition_spec(self) -> ConditionSpec | None:
        """What the model is conditioned on: K class labels with guidance (``classes`` = K),
        or ``None`` (``classes`` = 0)."""
        return ConditionSpec.of_classes(self.classes, guidance=True, drop_rate=self.guidance_drop)
