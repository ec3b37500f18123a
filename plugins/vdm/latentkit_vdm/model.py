"""The continuous-time variance-preserving diffusion as a latentkit two-chain model.

Notation (``docs/continuous.md``): t ∈ [0, 1], γ_t = −log SNR_t increasing from γ_min to
γ_max, ᾱ_t² = sigmoid(−γ_t), β̄_t² = sigmoid(γ_t), and the forward marginal

    q(z_t | x) = N(ᾱ_t x, β̄_t² I)                                      (VDM: α_t, σ_t)

The generative model denoises with one ε-network ε̂_θ(z_t, t): x̂_θ(z_t) = (z_t − β̄_t ε̂)/ᾱ_t.

Continuous-time bound (VDM eq. 17 with the decoder of §3.3; nats, per example)::

    −ELBO_∞(x) = KL(q(z_1|x) ‖ N(0, I))                        prior matching
               − E_{q(z_0|x)}[log p(x | z_0)]                  reconstruction
               + ½ E_{t~U(0,1), ε}[γ'(t) ‖ε − ε̂_θ(z_t, t)‖²]   diffusion term

with p(x | z_0) = N(z_0/ᾱ_0, β̄_0²/ᾱ_0²), discretized over the bins of K-level data (``levels``:
level k at 2k/(K − 1) − 1 in [−1, 1]; 8-bit by default) or Gaussian (real data). At K = 2 the
data are binary, x ∈ {0, 1}, and every factor that reads x reads 2x − 1 (``on_grid``).

Discrete-T chain (what ``latentkit.elbo`` evaluates; any T from the same network through
:meth:`VDMModel.with_timesteps`): L = T + 1 latent layers, layer l at time t_l = (l − 1)/T,
so z_1 = z_{t=0} next to the data and z_L = z_{t=1} next to the prior N(0, I). For s = t_{l−1},
t = t_l, the posterior chain (fixed given γ) is layer-batched, top-down and bottom-up:

    q(z_t | x)        = N(ᾱ_t x, β̄_t² I)                                 marginal
    q(z_s | z_t, x)   = N(α_{t|s} β̄_s²/β̄_t² · z_t + ᾱ_s f · x, β̄_s² f I)   down
    q(z_t | z_s)      = N(α_{t|s} z_s, β̄_t² f I)                          up

with f = −expm1(γ_s − γ_t) and α_{t|s} = ᾱ_t/ᾱ_s; p(z_s | z_t) is q(z_s | z_t, x = x̂_θ(z_t)),
so each layer's KL is ½ (SNR_s/SNR_t − 1) ‖ε − ε̂_θ‖² = ½ expm1(γ_t − γ_s) ‖ε − ε̂_θ‖²
(VDM eq. 13), which tends to the diffusion term as T → ∞ (expm1(Δγ) → Δγ = γ' dt).

SDE view (seed 001; Song et al. 2021): the forward chain solves dz = f(t) z dt + g(t) dw with
f = −½ γ' β̄_t², g² = γ' β̄_t² (the VP SDE with β(t) = g²); the score is s_θ = −ε̂_θ/β̄_t; the
probability-flow ODE is dz/dt = f z − ½ g² s_θ = ½ γ' β̄_t (ε̂_θ − β̄_t z).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import attrs
import torch
from attrs import validators as v
from latentkit_ddpm.networks import EpsMLP, EpsUNet
from torch import Tensor, nn
from torch.distributions import Distribution, Independent

import latentkit as lk
from latentkit.diffusion import (
    MAX_TIMESTEPS,
    alpha_bar_sq,
    beta_bar_sq,
    step_variance_fraction,
)
from latentkit.distributions import DiscretizedNormal, diag_normal, standard_normal
from latentkit.networks import ACTIVATIONS
from latentkit.oracles import LinearGaussianSpec
from latentkit_vdm.networks import (
    MAX_FOURIER_EXPONENT,
    TIME_INPUTS,
    ContinuousEps,
    LinearEps,
    TimeInput,
)
from latentkit_vdm.schedule import make_log_snr

__all__ = [
    "ContinuousDiffusion",
    "ContinuousElbo",
    "VDMConfig",
    "VDMGenerative",
    "VDMModel",
    "VDMPosterior",
    "build_vdm",
    "sample_times",
]

T_SAMPLERS = ("low-discrepancy", "antithetic", "uniform")
SCHEDULE_GRADIENTS = ("variance", "elbo")


def _positive_ints(instance, attribute, value) -> None:
    if not value or not all(isinstance(d, int) and d > 0 for d in value):
        raise ValueError(f"{attribute.name!r} must be a non-empty tuple of ints > 0, got {value!r}")


def _finite(instance, attribute, value) -> None:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number or not -50 <= value <= 50:  # NaN fails the comparison too
        raise ValueError(f"{attribute.name!r} must be a number in [-50, 50], got {value!r}")


def _above_gamma_min(instance, attribute, value) -> None:
    _finite(instance, attribute, value)
    if not value > instance.gamma_min:
        raise ValueError(
            f"'gamma_max' must exceed 'gamma_min' (γ = −log SNR increases with t); "
            f"got gamma_min={instance.gamma_min}, gamma_max={value}"
        )


def _fourier_exponents(instance, attribute, value) -> None:
    whole = all(isinstance(n, int) and not isinstance(n, bool) for n in value)
    if not whole or not all(0 <= n <= MAX_FOURIER_EXPONENT for n in value):
        raise ValueError(
            f"{attribute.name!r} must be ints n in [0, {MAX_FOURIER_EXPONENT}] (features "
            f"sin(2^n π z), cos(2^n π z)), or empty for none; got {value!r}"
        )
    if len(set(value)) != len(value):
        raise ValueError(f"{attribute.name!r} repeats an exponent: {value!r}")


def _check_levels(instance, attribute, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 2 <= value <= 256:
        raise ValueError(
            f"'levels' must be an int K in 2..256 (the data's levels: 2 for binary data "
            f"{{0, 1}}, 256 for 8-bit data), got {value!r}"
        )
    if value != 256 and instance.decoder != "discretized":
        raise ValueError(
            f"'levels' is only read with decoder='discretized' (decoder is "
            f"{instance.decoder!r}); got levels={value}"
        )


def _check_prediction(instance, attribute, value: str) -> None:
    if value == "x" and instance.resolved_network == "linear":
        raise ValueError(
            "'prediction'='x' needs a network other than 'linear' (the linear ε-network is the "
            "exact oracle's, linear in z only as an ε-prediction)"
        )


def _check_network(instance, attribute, value: str) -> None:
    if instance.resolved_network != "unet":
        return
    if len(instance.data_shape) != 3:
        raise ValueError(
            f"'network'='unet' needs image data_shape (C, H, W), got {instance.data_shape}"
        )
    step = 2 ** (len(instance.channel_mult) - 1)
    if instance.data_shape[1] % step or instance.data_shape[2] % step:
        raise ValueError(
            f"'channel_mult' has {len(instance.channel_mult)} levels, so H and W must be "
            f"divisible by {step}; data_shape is {instance.data_shape}"
        )


@attrs.frozen(kw_only=True)
class VDMConfig:
    """Configuration of the ``vdm`` model (notation: ``docs/continuous.md``).

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
    """

    data_shape: tuple[int, ...] = attrs.field(
        default=(64,), converter=tuple, validator=_positive_ints
    )
    num_timesteps: int = attrs.field(
        default=1000, validator=[v.instance_of(int), v.ge(1), v.le(MAX_TIMESTEPS)]
    )
    schedule: str = attrs.field(default="linear", validator=v.in_(("linear", "cosine", "learned")))
    gamma_min: float = attrs.field(default=-13.3, validator=_finite)
    gamma_max: float = attrs.field(default=5.0, validator=_above_gamma_min)
    decoder: str = attrs.field(default="discretized", validator=v.in_(("discretized", "gaussian")))
    levels: int = attrs.field(default=256, validator=_check_levels)
    network: str = attrs.field(
        default="auto", validator=[v.in_(("auto", "mlp", "unet", "linear")), _check_network]
    )
    hidden: tuple[int, ...] = attrs.field(
        default=(256, 256), converter=tuple, validator=_positive_ints
    )
    activation: str = attrs.field(default="silu", validator=v.in_(tuple(ACTIVATIONS)))
    channels: int = attrs.field(default=32, validator=[v.instance_of(int), v.gt(0)])
    channel_mult: tuple[int, ...] = attrs.field(
        default=(1, 2), converter=tuple, validator=_positive_ints
    )
    loss: str = attrs.field(
        default="continuous", validator=v.in_(("continuous", "score-matching", "elbo"))
    )
    t_sampler: str = attrs.field(default="low-discrepancy", validator=v.in_(T_SAMPLERS))
    prediction: str = attrs.field(default="eps", validator=[v.in_(("eps", "x")), _check_prediction])
    fourier_exponents: tuple[int, ...] = attrs.field(
        default=(7, 8), converter=tuple, validator=_fourier_exponents
    )
    time_input: str = attrs.field(default="gamma", validator=v.in_(TIME_INPUTS))

    @property
    def resolved_network(self) -> str:
        """``mlp``, ``unet`` or ``linear`` (what ``auto`` means for this ``data_shape``)."""
        if self.network == "auto":
            return "unet" if len(self.data_shape) == 3 else "mlp"
        return self.network


def _network(cfg: VDMConfig, log_snr: nn.Module) -> nn.Module:
    kind = cfg.resolved_network
    time_input = TimeInput(cfg.time_input, cfg.gamma_min, cfg.gamma_max, log_snr)
    if kind == "linear":
        return LinearEps(cfg.data_shape, time_input=time_input)
    copies = ContinuousEps.input_copies(cfg.fourier_exponents)
    if kind == "unet":
        inner = EpsUNet(
            cfg.data_shape, cfg.channels, cfg.channel_mult, in_channels=copies * cfg.data_shape[0]
        )
    else:
        inner = EpsMLP(
            cfg.data_shape,
            cfg.hidden,
            activation=cfg.activation,
            in_features=copies * math.prod(cfg.data_shape),
        )
    return ContinuousEps(inner, fourier_exponents=cfg.fourier_exponents, time_input=time_input)


def sample_times(n: int, kind: str, *, like: Tensor) -> Tensor:
    """n times in [0, 1), each marginally U(0, 1) (so every per-example term is unbiased).

    ``low-discrepancy``: t_i = (u + i/n) mod 1 with one u ~ U(0, 1) (VDM §3.4);
    ``antithetic``: t and 1 − t for the two halves (an odd n's last one alone);
    ``uniform``: i.i.d.
    """
    opts = {"dtype": like.dtype, "device": like.device}
    if kind == "low-discrepancy":
        return torch.remainder(torch.rand((), **opts) + torch.arange(n, **opts) / n, 1.0)
    if kind == "antithetic":
        half = torch.rand(n // 2, **opts)
        return torch.cat([half, 1.0 - half, torch.rand(n % 2, **opts)])
    if kind == "uniform":
        return torch.rand(n, **opts)
    raise lk.ConfigError(f"t_sampler must be one of {T_SAMPLERS}, got {kind!r}")


class ContinuousElbo(NamedTuple):
    """ELBO_∞ and its named terms, each ``[batch]`` nats: total = reconstruction −
    prior_matching − diffusion; ``t`` the times the diffusion term was estimated at."""

    total: Tensor
    reconstruction: Tensor
    prior_matching: Tensor
    diffusion: Tensor
    t: Tensor


class ContinuousDiffusion(nn.Module):
    """γ(t), the ε-network and the decoder: everything both chains and the bound share.

    ``t`` arguments are float tensors: 0-d (one time) or ``[batch]`` (one per example).
    """

    def __init__(self, cfg: VDMConfig, net: nn.Module | None = None):
        super().__init__()
        self.data_shape = tuple(cfg.data_shape)
        self.event_dims = len(self.data_shape)
        self.decoder_kind = cfg.decoder
        self.levels = cfg.levels
        self.binary = cfg.decoder == "discretized" and cfg.levels == 2
        self.prediction = cfg.prediction
        self.log_snr = make_log_snr(cfg.schedule, cfg.gamma_min, cfg.gamma_max)
        self.net = _network(cfg, self.log_snr) if net is None else net
        self.register_buffer("_ref", torch.zeros(()), persistent=False)

    # -- the schedule -----------------------------------------------------------------------

    def _bc(self, t: Tensor, like: Tensor) -> Tensor:
        """``t`` shaped to broadcast against ``like`` (``[batch, *event]``)."""
        return t.reshape(-1, *([1] * (like.ndim - 1))) if t.ndim == 1 else t

    def gamma(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """γ(t) and γ'(t), elementwise."""
        return self.log_snr(t)

    def scales(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """ᾱ_t and β̄_t (VDM's α_t, σ_t), elementwise."""
        g, _ = self.gamma(t)
        return alpha_bar_sq(g).sqrt(), beta_bar_sq(g).sqrt()

    def eps(self, z: Tensor, t: Tensor, gamma: Tensor | None = None) -> Tensor:
        """ε̂_θ(z_t, t); ``t`` 0-d or ``[batch]``. A network with ``takes_gamma`` is also given
        γ(t): ``gamma`` if the caller has it (the same tensor its other terms use), else
        computed here. With ``prediction="x"`` the network's output is x̂_θ and
        ε̂ = (z_t − ᾱ_t x̂_θ)/β̄_t (the same γ(t) gives ᾱ_t, β̄_t)."""
        n = z.shape[0]
        t = t.expand(n) if t.ndim == 0 else t
        takes_gamma = getattr(self.net, "takes_gamma", False)
        if gamma is None and (takes_gamma or self.prediction == "x"):
            gamma, _ = self.gamma(t)
        if gamma is not None:
            gamma = gamma.expand(n) if gamma.ndim == 0 else gamma
        out = self.net(z, t, gamma) if takes_gamma else self.net(z, t)
        if self.prediction == "eps":
            return out
        g = self._bc(gamma, z)
        return (z - alpha_bar_sq(g).sqrt() * out) / beta_bar_sq(g).sqrt()

    @property
    def bin_width(self) -> float:
        """2/(K − 1): the width of a level's bin on the grid the diffusion sees."""
        return 2.0 / (self.levels - 1)

    def on_grid(self, x: Tensor) -> Tensor:
        """The data as the diffusion reads them: binary x ∈ {0, 1} → 2x − 1 ∈ {−1, 1} at
        ``levels = 2`` (``DiscretizedNormal.from_binary``, a bijection of the two grids, so
        no probability changes); else x itself."""
        return DiscretizedNormal.from_binary(x) if self.binary else x

    def q_sample(self, x: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """z_t = ᾱ_t x + β̄_t ε: a draw from q(z_t | x) with the noise given."""
        alpha, sigma = self.scales(self._bc(t, x))
        return alpha * self.on_grid(x) + sigma * noise

    # -- the bound's three terms --------------------------------------------------------------

    def marginal(self, t: Tensor, x: Tensor) -> Independent:
        """q(z_t | x) = N(ᾱ_t x, β̄_t² I)."""
        alpha, sigma = self.scales(self._bc(t, x))
        return diag_normal(alpha * self.on_grid(x), sigma.expand_as(x), self.event_dims)

    def decoder(self, z0: Tensor) -> Distribution:
        """p(x | z_0) = N(z_0/ᾱ_0, β̄_0²/ᾱ_0²), discretized over the K = ``levels`` bins (on
        binary data {0, 1} at K = 2) or not."""
        alpha, sigma = self.scales(z0.new_zeros(()))
        loc, scale = z0 / alpha, (sigma / alpha).expand_as(z0)
        if self.decoder_kind == "discretized":
            dist = DiscretizedNormal(loc, scale, self.levels, binary=self.binary)
            return Independent(dist, self.event_dims)
        return diag_normal(loc, scale, self.event_dims)

    def prior(self, n: int) -> Independent:
        """p(z_1) = N(0, I)."""
        return standard_normal(n, self.data_shape, like=self._ref, event_dims=self.event_dims)

    def prior_matching(self, x: Tensor) -> Tensor:
        """KL(q(z_1 | x) ‖ N(0, I)) = ½ Σ (ᾱ_1² x² + β̄_1² − 1 − log β̄_1²), ``[batch]``."""
        g1, _ = self.gamma(x.new_ones(()))
        var = beta_bar_sq(g1)
        kl = 0.5 * (alpha_bar_sq(g1) * self.on_grid(x) ** 2 + var - 1 - torch.log(var))
        return kl.flatten(1).sum(-1)

    def reconstruction(self, x: Tensor) -> Tensor:
        """log p(x | z_0) at one draw z_0 ~ q(z_0 | x), ``[batch]``."""
        z0 = self.marginal(x.new_zeros(()), x).rsample()
        return self.decoder(z0).log_prob(x)

    def diffusion_integrand(
        self, x: Tensor, t: Tensor, noise: Tensor, *, schedule_gradient: str = "elbo"
    ) -> Tensor:
        """L_i = ½ γ'(t) ‖ε − ε̂_θ(ᾱ_t x + β̄_t ε, t)‖², ``[batch]``: its mean over t ~ U(0, 1)
        and ε is the diffusion term (VDM eq. 17).

        ``schedule_gradient`` is what a schedule written γ = γ_min + span · h(t; η) (the
        ``learned`` one) receives through its profile h and h' (so η, the interior):
        ``elbo``, the gradient of L_i; ``variance``, 2 L_i (a constant) times it, per example,
        i.e. the gradient of L_i² — whose batch mean is the gradient of the estimator's
        variance, E[L] being free of η when ε̂ sees γ rather than t (VDM §5). The value, the
        network's gradient and the ends' gradient are the same either way.
        """
        if schedule_gradient not in SCHEDULE_GRADIENTS:
            raise lk.ConfigError(
                f"schedule_gradient must be one of {SCHEDULE_GRADIENTS}, got {schedule_gradient!r}"
            )
        n = x.shape[0]
        t = t.expand(n) if t.ndim == 0 else t
        profile = None
        if (
            schedule_gradient == "variance"
            and hasattr(self.log_snr, "profile")
            and torch.is_grad_enabled()
        ):
            profile = self.log_snr.profile(t)
            g, dg = self.log_snr.from_profile(*profile)
        else:
            g, dg = self.gamma(t)
        g_x = self._bc(g, x)
        z_t = alpha_bar_sq(g_x).sqrt() * self.on_grid(x) + beta_bar_sq(g_x).sqrt() * noise
        err = (noise - self.eps(z_t, t, g)).pow(2).flatten(1).sum(-1)
        term = 0.5 * dg * err
        if profile is not None:
            weight = 2 * term.detach()  # d(L²)/dη = 2 L dL/dη, L known only now
            for part in profile:
                if part.requires_grad:
                    part.register_hook(lambda grad: grad * weight)
        return term

    def elbo(
        self,
        x: Tensor,
        t: Tensor | None = None,
        t_sampler: str = "low-discrepancy",
        *,
        schedule_gradient: str = "elbo",
    ) -> ContinuousElbo:
        """ELBO_∞(x) by one draw of z_0, of t (``t_sampler``, or the ``t`` given) and of ε;
        ``schedule_gradient`` as :meth:`diffusion_integrand`'s (``elbo``: the plain bound's
        gradient everywhere)."""
        t = sample_times(x.shape[0], t_sampler, like=x) if t is None else t
        recon = self.reconstruction(x)
        prior = self.prior_matching(x)
        diffusion = self.diffusion_integrand(
            x, t, torch.randn_like(x), schedule_gradient=schedule_gradient
        )
        return ContinuousElbo(recon - prior - diffusion, recon, prior, diffusion, t)

    # -- the SDE view ----------------------------------------------------------------------------

    def sde_coefficients(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """f(t) = −½ γ' β̄_t² and g(t)² = γ' β̄_t² of the forward VP SDE dz = f z dt + g dw."""
        g, dg = self.gamma(t)
        g_sq = dg * beta_bar_sq(g)
        return -0.5 * g_sq, g_sq

    def score(self, z: Tensor, t: Tensor) -> Tensor:
        """s_θ(z, t) = −ε̂_θ(z, t)/β̄_t (seed 001: the score of q(z_t) the network implies)."""
        _, sigma = self.scales(self._bc(t, z))
        return -self.eps(z, t) / sigma

    def score_matching_loss(
        self, x: Tensor, t: Tensor, noise: Tensor, weighting: str = "likelihood"
    ) -> Tensor:
        """½ λ(t) ‖s_θ(z_t, t) − ∇_z log q(z_t | x)‖², z_t = ᾱ_t x + β̄_t ε, ``[batch]``: denoising
        score matching with ∇_z log q(z_t | x) = −ε/β̄_t and λ = g² (``likelihood``, Song et al.
        2021 eq. 34; equal to :meth:`diffusion_integrand`) or λ = β̄_t² (``simple``)."""
        g, _ = self.gamma(t)
        _, g_sq = self.sde_coefficients(t)
        lam = g_sq if weighting == "likelihood" else beta_bar_sq(g)
        _, sigma = self.scales(self._bc(t, x))
        z_t = self.q_sample(x, t, noise)
        err = (self.score(z_t, t) + noise / sigma).pow(2).flatten(1).sum(-1)
        return 0.5 * lam.expand(x.shape[0]) * err

    def probability_flow(self, t: Tensor, z: Tensor) -> Tensor:
        """dz/dt = f z − ½ g² s_θ = ½ γ'(t) β̄_t (ε̂_θ − β̄_t z) (Song et al. 2021, eq. 13)."""
        g, dg = self.gamma(self._bc(t, z))
        sigma = beta_bar_sq(g).sqrt()
        return 0.5 * dg * sigma * (self.eps(z, t) - sigma * z)

    def reverse_drift(self, t: Tensor, z: Tensor) -> Tensor:
        """f z − g² s_θ = γ'(t) β̄_t (ε̂_θ − ½ β̄_t z): the reverse SDE's drift (time running
        backwards: dz = [f z − g² s_θ] dt + g dw̄, Anderson 1982)."""
        g, dg = self.gamma(self._bc(t, z))
        sigma = beta_bar_sq(g).sqrt()
        return dg * sigma * (self.eps(z, t) - 0.5 * sigma * z)

    # -- the discrete-T chain's transitions -----------------------------------------------------

    def step_constants(self, s: Tensor, t: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """For s < t: (α_{t|s}, coefficient of z_t, coefficient of x, variance) of
        q(z_s | z_t, x) = N(α_{t|s} β̄_s²/β̄_t² z_t + ᾱ_s f x, β̄_s² f I), f = −expm1(γ_s − γ_t)."""
        gs, _ = self.gamma(s)
        gt, _ = self.gamma(t)
        frac = step_variance_fraction(gs, gt)
        alpha_s, alpha_t = alpha_bar_sq(gs).sqrt(), alpha_bar_sq(gt).sqrt()
        var_s, var_t = beta_bar_sq(gs), beta_bar_sq(gt)
        alpha_ts = alpha_t / alpha_s
        return alpha_ts, alpha_ts * var_s / var_t, alpha_s * frac, var_s * frac


def _times(l: int | Tensor, T: int, like: Tensor) -> tuple[Tensor, Tensor]:
    """(t_{l−1}, t_l) = ((l − 2)/T, (l − 1)/T) as float tensors (0-d for an int ``l``)."""
    t = torch.as_tensor(l, device=like.device).to(like.dtype)
    return (t - 2) / T, (t - 1) / T


class VDMPosterior(lk.PosteriorChain):
    """q(z_{t_1..t_L} | x) at times t_l = (l − 1)/T: fixed given γ, offered every way."""

    top_down = True
    bottom_up = True
    layer_batched = True

    def __init__(self, core: ContinuousDiffusion, num_timesteps: int):
        super().__init__()
        # A reference, not a submodule: the generative chain owns the shared parameters.
        self.__dict__["core"] = core
        self.num_timesteps = num_timesteps

    def marginal(self, l: int | Tensor, x: Tensor) -> Independent:
        """q(z_{t_l} | x)."""
        return self.core.marginal(_times(l, self.num_timesteps, x)[1], x)

    def top(self, x: Tensor) -> Independent:
        """q(z_1 | x), t = 1."""
        return self.marginal(self.num_timesteps + 1, x)

    def first(self, x: Tensor) -> Independent:
        """q(z_0 | x), t = 0."""
        return self.marginal(1, x)

    def down(self, l: int | Tensor, z: Tensor, x: Tensor) -> Independent:
        """q(z_s | z_t = z, x), s = t_{l−1}, t = t_l."""
        c = self.core
        s, t = _times(l, self.num_timesteps, z)
        _, cz, cx, var = c.step_constants(c._bc(s, z), c._bc(t, z))
        loc = cz * z + cx * c.on_grid(x)
        return diag_normal(loc, var.sqrt().expand_as(loc), c.event_dims)

    def up(self, l: int | Tensor, z: Tensor, x: Tensor) -> Independent:
        """q(z_t | z_s = z) = N(α_{t|s} z_s, β̄_t² f I) (Markov: x unused)."""
        c = self.core
        s, t = _times(l, self.num_timesteps, z)
        s, t = c._bc(s, z), c._bc(t, z)
        alpha_ts, _, _, _ = c.step_constants(s, t)
        gs, _ = c.gamma(s)
        gt, _ = c.gamma(t)
        var = beta_bar_sq(gt) * step_variance_fraction(gs, gt)
        loc = alpha_ts * z
        return diag_normal(loc, var.sqrt().expand_as(loc), c.event_dims)


class VDMGenerative(lk.GenerativeChain):
    """p(z_1) = N(0, I) · Π p(z_s | z_t) · p(x | z_0), one ε-network for every t.

    Also the probability-flow contract of :func:`latentkit.ode_log_prob`:
    :meth:`probability_flow` and :attr:`ode_time_span`.
    """

    layer_batched = True
    ode_time_span = (0.0, 1.0)

    def __init__(self, core: ContinuousDiffusion, num_timesteps: int):
        super().__init__(core.data_shape, [core.data_shape] * (num_timesteps + 1))
        self.core = core
        self.num_timesteps = num_timesteps

    def prior(self, n: int) -> Independent:
        return self.core.prior(n)

    def transition(self, l: int | Tensor, z: Tensor) -> Independent:
        """p(z_s | z_t = z) = q(z_s | z_t, x = x̂_θ(z_t)), x̂_θ = (z_t − β̄_t ε̂_θ)/ᾱ_t."""
        c = self.core
        s, t = _times(l, self.num_timesteps, z)
        alpha_t, sigma_t = c.scales(c._bc(t, z))
        x_hat = (z - sigma_t * c.eps(z, t)) / alpha_t
        _, cz, cx, var = c.step_constants(c._bc(s, z), c._bc(t, z))
        loc = cz * z + cx * x_hat
        return diag_normal(loc, var.sqrt().expand_as(loc), c.event_dims)

    def likelihood(self, z1: Tensor) -> Distribution:
        return self.core.decoder(z1)

    def probability_flow(self, t: Tensor, z: Tensor) -> Tensor:
        """dz/dt of the probability-flow ODE at time ``t`` (0-d); see ``latentkit.ode``."""
        return self.core.probability_flow(t, z)

    def linear_gaussian(self) -> LinearGaussianSpec | None:
        """The chain as linear-Gaussian conditionals when ε̂ is linear in z (the network offers
        ``coefficients``) and the decoder is Gaussian; else None."""
        c = self.core
        if not hasattr(c.net, "coefficients") or c.decoder_kind != "gaussian":
            return None
        ref = c._ref
        eye = ref.new_ones(math.prod(self.data_shape))
        transitions = []
        for l in range(2, self.num_layers + 1):
            s, t = _times(l, self.num_timesteps, ref)
            alpha_t, sigma_t = c.scales(t)
            a, b = c.net.coefficients(t.reshape(1))
            _, cz, cx, var = c.step_constants(s, t)
            # loc = cz z + cx (z − σ_t (a z + b))/ᾱ_t
            A = cz + cx * (1 - sigma_t * a[0]) / alpha_t
            transitions.append((torch.diag(A), -cx * sigma_t * b[0] / alpha_t, var * eye))
        alpha_0, sigma_0 = c.scales(ref.new_zeros(()))
        return LinearGaussianSpec(
            prior_mean=0 * eye,
            prior_var=eye,
            transitions=tuple(transitions),
            weight=torch.diag(eye / alpha_0),
            bias=0 * eye,
            noise_var=eye * (sigma_0 / alpha_0) ** 2,
        )


class VDMModel(lk.LatentModel):
    """A continuous-time diffusion: :class:`VDMGenerative` and :class:`VDMPosterior` at
    ``config.num_timesteps``; :meth:`with_timesteps` gives the same network at another T,
    :meth:`continuous_elbo` the T → ∞ bound."""

    generative: VDMGenerative
    posterior: VDMPosterior

    def __init__(self, cfg: VDMConfig, core: ContinuousDiffusion | None = None):
        core = ContinuousDiffusion(cfg) if core is None else core
        super().__init__(
            VDMGenerative(core, cfg.num_timesteps),
            VDMPosterior(core, cfg.num_timesteps),
            config=cfg,
            **default_objective(cfg),
        )

    @property
    def core(self) -> ContinuousDiffusion:
        return self.generative.core

    def with_timesteps(self, num_timesteps: int) -> VDMModel:
        """The discrete-T chain of the same network and schedule (shared, not copied)."""
        whole = isinstance(num_timesteps, int) and not isinstance(num_timesteps, bool)
        if not whole or num_timesteps < 1:
            raise lk.ConfigError(f"num_timesteps must be an int ≥ 1, got {num_timesteps!r}")
        other = VDMModel(attrs.evolve(self.config, num_timesteps=num_timesteps), core=self.core)
        other.name = self.name
        return other.train(self.training)

    def continuous_elbo(
        self, x: Tensor, *, t: Tensor | None = None, t_sampler: str = "low-discrepancy"
    ) -> ContinuousElbo:
        """ELBO_∞(x) and its terms, ``[batch]`` nats (one draw of z_0, t and ε per example)."""
        return self.core.elbo(x, t=t, t_sampler=t_sampler)

    def likelihood_figures(self, data: Tensor, **options) -> dict:
        """The discrete-T, continuous and ODE likelihood figures over ``data`` and the per-t
        breakdown (:func:`latentkit_vdm.ode.likelihood_figures`)."""
        from latentkit_vdm.ode import likelihood_figures

        return likelihood_figures(self, data, **options)

    def per_t_plot(self, breakdown: dict, path, *, title: str | None = None):
        """Plot ``likelihood_figures(...)["per_t"]`` to ``path`` (PNG); returns the path."""
        from latentkit_vdm.ode import per_t_plot

        return per_t_plot(breakdown, path, title=title)


def default_objective(cfg: VDMConfig) -> dict:
    """The objective ``cfg.loss`` names, as ``LatentModel``'s ``objective`` keywords."""
    if cfg.loss == "continuous":
        return {"objective": "continuous", "objective_config": {"t_sampler": cfg.t_sampler}}
    if cfg.loss == "score-matching":
        return {"objective": "score-matching", "objective_config": {}}
    return {"objective": "elbo", "objective_config": {}}


def build_vdm(cfg: VDMConfig) -> VDMModel:
    """The continuous-time diffusion described by ``cfg`` (the factory registered as ``vdm``)."""
    return VDMModel(cfg)
