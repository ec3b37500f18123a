"""The DDPM as a latentkit two-chain model: T latent layers z_t = x_t, data x = x_0.

Posterior chain q (fixed, no parameters) — the forward diffusion, offered every way:

    top(x_0)            = q(x_T | x_0)          = N(ᾱ_T x_0, β̄_T² I)
    down(t, x_t, x_0)   = q(x_{t-1} | x_t, x_0) = N(μ̃_t(x_t, x_0), β̃_t² I)
    first(x_0)          = q(x_1 | x_0)          = N(α_1 x_0, β_1² I)
    up(t, x_{t-1}, x_0) = q(x_t | x_{t-1})      = N(α_t x_{t-1}, β_t² I)
    marginal(t, x_0)    = q(x_t | x_0)          = N(ᾱ_t x_0, β̄_t² I)

Generative chain p: p(x_T) = N(0, I); p(x_{t-1} | x_t) = N(μ_θ(x_t, t), σ_t² I) with
μ_θ = (x_t − β_t²/β̄_t · ε_θ(x_t, t)) / α_t (seed 001, eq. 29 with ε_θ predicting the merged
noise); p(x_0 | x_1) is the same Gaussian at t = 1, discretized over the bins of K-level data
(``levels``; 8-bit by default) or not. With ``levels = 2`` the data are binary, x ∈ {0, 1}, and
every factor that reads x reads the grid point 2x − 1 ∈ {−1, 1} (``DDPMPosterior.on_grid``).
Notation and its conversion to the DDPM paper: ``docs/ddpm.md``.
"""

from __future__ import annotations

import attrs
import torch
from attrs import validators as v
from torch import Tensor, nn
from torch.distributions import Distribution, Independent

import latentkit as lk
from latentkit.diffusion import MAX_TIMESTEPS
from latentkit.distributions import DiscretizedNormal, diag_normal, standard_normal
from latentkit.errors import ConfigError
from latentkit.estimators import layer_term
from latentkit.likelihoods import split_params
from latentkit.networks import ACTIVATIONS
from latentkit_ddpm.networks import EpsMLP, EpsUNet
from latentkit_ddpm.schedule import DiffusionSchedule, check_beta, cosine_beta, linear_beta

__all__ = [
    "DDPMConfig",
    "DDPMGenerative",
    "DDPMModel",
    "DDPMPosterior",
    "build_ddpm",
    "make_schedule",
]


def _positive_ints(instance, attribute, value) -> None:
    if not value or not all(isinstance(d, int) and d > 0 for d in value):
        raise ValueError(f"{attribute.name!r} must be a non-empty tuple of ints > 0, got {value!r}")


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


def _check_network(instance: DDPMConfig, attribute, value: str) -> None:
    kind = instance.resolved_network
    if kind == "unet":
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


MAX_LEVELS = 256
"""The most data levels K a discretized decoder takes (8-bit data)."""


def _check_levels(instance, attribute, value) -> None:
    """``levels``: an int K in 2..256, read by the ``discretized`` decoder alone."""
    if isinstance(value, bool) or not isinstance(value, int) or not 2 <= value <= MAX_LEVELS:
        raise ValueError(
            f"'levels' must be an int K in 2..{MAX_LEVELS} (the data's levels: 2 for binary "
            f"data {{0, 1}}, 256 for 8-bit data), got {value!r}"
        )
    if value != MAX_LEVELS and instance.decoder != "discretized":
        raise ValueError(
            f"'levels' is only read with decoder='discretized' (decoder is "
            f"{instance.decoder!r}); got levels={value}"
        )


def _check_loss(instance: DDPMConfig, attribute, value: str) -> None:
    if value == "simple" and instance.reverse_variance == "learned":
        raise ValueError(
            "'loss'='simple' gives a learned reverse variance no gradient; "
            "use loss='hybrid' or loss='elbo' with reverse_variance='learned'"
        )


@attrs.frozen(kw_only=True)
class DDPMConfig:
    """Configuration of the ``ddpm`` model (notation: ``docs/ddpm.md``).

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

    data_shape: tuple[int, ...] = attrs.field(
        default=(64,), converter=tuple, validator=_positive_ints
    )
    num_timesteps: int = attrs.field(
        default=1000, validator=[v.instance_of(int), v.ge(1), v.le(MAX_TIMESTEPS)]
    )
    schedule: str = attrs.field(default="linear", validator=v.in_(("linear", "cosine", "given")))
    beta: tuple[float, ...] = attrs.field(default=(), converter=tuple, validator=_check_given_beta)
    reverse_variance: str = attrs.field(
        default="beta", validator=v.in_(("beta", "posterior", "learned"))
    )
    decoder: str = attrs.field(default="discretized", validator=v.in_(("discretized", "gaussian")))
    levels: int = attrs.field(default=MAX_LEVELS, validator=_check_levels)
    network: str = attrs.field(
        default="auto", validator=[v.in_(("auto", "mlp", "unet")), _check_network]
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

    @property
    def resolved_network(self) -> str:
        """``mlp`` or ``unet`` (what ``auto`` means for this ``data_shape``)."""
        if self.network == "auto":
            return "unet" if len(self.data_shape) == 3 else "mlp"
        return self.network


class ScheduleRows(nn.Module):
    """Per-timestep constants that are used together, stacked as one ``[T+1, k]`` table so a
    call gathers them with one indexing operation instead of k (``rows(t, like)``).

    Each column is computed in float64 from the schedule's master tables and re-cast from
    that float64 master on every ``.to()`` (as :class:`DiffusionSchedule` does), so
    ``model.float().double()`` keeps it exact. Not saved in ``state_dict``.
    """

    table: Tensor

    def __init__(self, columns: dict[str, Tensor]):
        super().__init__()
        self.names = tuple(columns)
        self._master = torch.stack([c.to(torch.float64) for c in columns.values()], dim=1)
        self.register_buffer("table", self._master.to(torch.get_default_dtype()), persistent=False)

    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        self.table = self._master.to(device=self.table.device, dtype=self.table.dtype)
        return self

    def rows(self, t: int | Tensor, like: Tensor) -> tuple[Tensor, ...]:
        """The k constants of step ``t``, each shaped to broadcast against ``like``
        (``[batch, *event]``): 0-d for an int ``t``, ``[batch, 1, …, 1]`` for a
        ``LongTensor[batch]``."""
        if isinstance(t, Tensor) and t.ndim == 1:
            shape = (t.shape[0], len(self.names), *([1] * (like.ndim - 1)))
            return self.table[t].reshape(shape).unbind(1)
        t = int(t)
        if not 0 <= t < self.table.shape[0]:
            raise IndexError(f"timestep t={t} is outside 0..T={self.table.shape[0] - 1}")
        return self.table[t].unbind(0)


def make_schedule(cfg: DDPMConfig) -> DiffusionSchedule:
    """The forward chain's constants for ``cfg`` (schedule and T)."""
    if cfg.schedule == "given":
        beta = torch.tensor(cfg.beta, dtype=torch.float64)
    elif cfg.schedule == "cosine":
        beta = cosine_beta(cfg.num_timesteps)
    else:
        beta = linear_beta(cfg.num_timesteps)
    return DiffusionSchedule(beta)


class DDPMPosterior(lk.PosteriorChain):
    """q(x_{1:T} | x_0): the fixed forward chain, top-down, bottom-up and layer-batched.

    Every ``t`` may be an int or a ``LongTensor[batch]`` (one timestep per example). With
    ``binary=True`` the data x_0 ∈ {0, 1} enter as their grid points 2x_0 − 1 (:meth:`on_grid`).
    """

    top_down = True
    bottom_up = True
    layer_batched = True

    def __init__(self, schedule: DiffusionSchedule, event_dims: int, *, binary: bool = False):
        super().__init__()
        self.schedule = schedule
        self.event_dims = event_dims
        self.binary = binary
        m = schedule.exact
        self.marginal_rows = ScheduleRows({"alpha_bar": m["alpha_bar"], "beta_bar": m["beta_bar"]})
        self.down_rows = ScheduleRows(
            {
                "posterior_coef_x0": m["posterior_coef_x0"],
                "posterior_coef_xt": m["posterior_coef_xt"],
                "beta_tilde": m["beta_tilde"],
            }
        )

    def _normal(self, loc: Tensor, scale: Tensor) -> Independent:
        return diag_normal(loc, scale.expand_as(loc), self.event_dims)

    def on_grid(self, x: Tensor) -> Tensor:
        """The data as the diffusion reads them: binary x ∈ {0, 1} → 2x − 1 ∈ {−1, 1}
        (``DiscretizedNormal.from_binary``, a bijection of the two grids); else x itself."""
        return DiscretizedNormal.from_binary(x) if self.binary else x

    def marginal(self, t: int | Tensor, x: Tensor) -> Independent:
        """q(x_t | x_0) = N(ᾱ_t x_0, β̄_t² I) (seed 001, eq. 25)."""
        alpha_bar, beta_bar = self.marginal_rows.rows(t, x)
        return self._normal(alpha_bar * self.on_grid(x), beta_bar)

    def top(self, x: Tensor) -> Independent:
        """q(x_T | x_0)."""
        return self.marginal(self.schedule.num_timesteps, x)

    def down(self, t: int | Tensor, z: Tensor, x: Tensor) -> Independent:
        """q(x_{t-1} | x_t = z, x_0 = x) = N(coef_x0·x_0 + coef_xt·x_t, β̃_t² I), 2 ≤ t ≤ T."""
        coef_x0, coef_xt, beta_tilde = self.down_rows.rows(t, x)
        return self._normal(coef_x0 * self.on_grid(x) + coef_xt * z, beta_tilde)

    def first(self, x: Tensor) -> Independent:
        """q(x_1 | x_0) = N(α_1 x_0, β_1² I)."""
        return self.marginal(1, x)

    def up(self, t: int | Tensor, z: Tensor, x: Tensor) -> Independent:
        """q(x_t | x_{t-1} = z) = N(α_t x_{t-1}, β_t² I), 2 ≤ t ≤ T (Markov: x_0 unused)."""
        s = self.schedule
        return self._normal(s.gather(s.alpha, t, z) * z, s.gather(s.beta, t, z))


class DDPMGenerative(lk.GenerativeChain):
    """p(x_T) = N(0, I) · Π p(x_{t-1} | x_t) · p(x_0 | x_1), one ε-network for every t."""

    layer_batched = True

    def __init__(self, cfg: DDPMConfig, schedule: DiffusionSchedule):
        super().__init__(cfg.data_shape, [cfg.data_shape] * cfg.num_timesteps)
        self.schedule = schedule
        m = schedule.exact
        # β_t²/β̄_t (row 0, the data, has β̄_0 = 0 and is never used: 0 there, not 0/0).
        eps_coef = m["beta"] ** 2 / torch.where(m["beta_bar"] > 0, m["beta_bar"], 1.0)
        self.reverse_rows = ScheduleRows(
            {
                "eps_coef": eps_coef,
                "alpha": m["alpha"],
                "log_sigma_sq_upper": m["log_sigma_sq_upper"],
                "log_sigma_sq_lower": m["log_sigma_sq_lower"],
            }
        )
        self.reverse_variance = cfg.reverse_variance
        self.decoder = cfg.decoder
        self.levels, self.binary = cfg.levels, cfg.binary
        self.event_dims = len(cfg.data_shape)
        groups = 2 if cfg.reverse_variance == "learned" else 1
        if cfg.resolved_network == "unet":
            self.net = EpsUNet(cfg.data_shape, cfg.channels, cfg.channel_mult, out_groups=groups)
        else:
            self.net = EpsMLP(
                cfg.data_shape, cfg.hidden, out_groups=groups, activation=cfg.activation
            )

    def _timesteps(self, t: int | Tensor, z: Tensor) -> Tensor:
        if isinstance(t, Tensor) and t.ndim == 1:
            return t
        return torch.full((z.shape[0],), int(t), dtype=torch.long, device=z.device)

    def eps_and_log_var(self, t: int | Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        """ε_θ(x_t, t) and log σ_t² (broadcastable to x_t), from one network call."""
        # ε̂ (and v) by squeeze/unbind, whose backward is a view/one stack, not out[:, i],
        # whose backward zero-fills and copies a [batch, groups, *data_shape] gradient.
        out = split_params(self.net(z, self._timesteps(t, z)))
        *_, upper, lower = self.reverse_rows.rows(t, z)
        if self.reverse_variance == "learned":
            # Improved DDPM eq. 15 with v = (out + 1)/2, held in [0, 1] so that σ_t² stays
            # between β̃_t² and β_t²: an untrained network cannot extrapolate it to overflow.
            frac = ((out[1] + 1) / 2).clamp(0.0, 1.0)
            return out[0], frac * upper + (1 - frac) * lower
        return out[0], upper if self.reverse_variance == "beta" else lower

    def mean(self, t: int | Tensor, z: Tensor, eps: Tensor) -> Tensor:
        """μ_θ(x_t, t) = (x_t − β_t²/β̄_t · ε_θ) / α_t, the posterior mean at the x_0 ε_θ implies."""
        coef, alpha, *_ = self.reverse_rows.rows(t, z)
        return (z - coef * eps) / alpha

    def reverse_from(
        self, t: int | Tensor, z: Tensor, eps: Tensor, log_var: Tensor, *, decoder: bool = False
    ) -> Distribution:
        """p(x_{t-1} | x_t = z) from the network's outputs; the decoder p(x_0 | x_1) if asked
        (discretized: over the K = ``levels`` bins, on binary data {0, 1} at K = 2)."""
        loc = self.mean(t, z, eps)
        scale = torch.exp(0.5 * log_var).expand_as(loc)
        if decoder and self.decoder == "discretized":
            dist = DiscretizedNormal(loc, scale, self.levels, binary=self.binary)
            return Independent(dist, self.event_dims, validate_args=False)
        return diag_normal(loc, scale, self.event_dims)

    def prior(self, n: int) -> Independent:
        """p(x_T) = N(0, I)."""
        # Expanded scalars: no [n, *data_shape] tensors are allocated for constants.
        return standard_normal(
            n, self.data_shape, like=self.schedule.alpha, event_dims=self.event_dims
        )

    def transition(self, l: int | Tensor, z: Tensor) -> Distribution:
        """p(x_{l-1} | x_l = z), 2 ≤ l ≤ T; ``l`` an int or a ``LongTensor[batch]``."""
        return self.reverse_from(l, z, *self.eps_and_log_var(l, z))

    def likelihood(self, z1: Tensor) -> Distribution:
        """p(x_0 | x_1): discretized (K-level data) or Gaussian."""
        return self.reverse_from(1, z1, *self.eps_and_log_var(1, z1), decoder=True)


class DDPMModel(lk.LatentModel):
    """A DDPM: :class:`DDPMGenerative` and :class:`DDPMPosterior`.

    ``latentkit.elbo(model, x)`` evaluates the full-T bound (``layer-batched`` by default;
    ``analytic`` and ``bottom-up`` on request). What training minimises is an objective
    (``latentkit.objectives``): ``config.loss`` picks the model's default one — ``elbo``
    (the one-timestep estimate, with ``config.timestep_sampler`` as its layer sampler),
    or this plugin's ``simple`` and ``hybrid`` (``latentkit_ddpm.objectives``).
    """

    generative: DDPMGenerative
    posterior: DDPMPosterior

    def __init__(self, cfg: DDPMConfig):
        schedule = make_schedule(cfg)
        super().__init__(
            DDPMGenerative(cfg, schedule),
            DDPMPosterior(schedule, len(cfg.data_shape), binary=cfg.binary),
            config=cfg,
            **default_objective(cfg),
        )

    @property
    def schedule(self) -> DiffusionSchedule:
        return self.posterior.schedule

    def q_sample(self, x0: Tensor, t: int | Tensor, eps: Tensor) -> Tensor:
        """x_t = ᾱ_t x_0 + β̄_t ε: a draw from q(x_t | x_0) with the noise given (x_0 binary
        at ``levels = 2``: 2x_0 − 1 is what is noised)."""
        alpha_bar, beta_bar = self.posterior.marginal_rows.rows(t, x0)
        return alpha_bar * self.posterior.on_grid(x0) + beta_bar * eps

    def timestep_term(
        self, x0: Tensor, t: Tensor, x_t: Tensor, eps: Tensor, log_var: Tensor
    ) -> Tensor:
        """L_t, ``[batch]``, given ε_θ and log σ_t² at (x_t, t), t a ``LongTensor`` in 1..T:
        −log p(x_0 | x_1) where t = 1, KL(q(x_{t-1} | x_t, x_0) ‖ p(x_{t-1} | x_t)) where t ≥ 2
        (the engine's :func:`latentkit.estimators.layer_term` at this draw of x_t).

        Pass ``eps.detach()`` for improved DDPM's L_vlb inside L_hybrid (no gradient to μ_θ).
        """
        p = self.generative
        nll = -p.reverse_from(t, x_t, eps, log_var, decoder=True).log_prob(x0)
        if self.num_layers == 1:
            return nll
        # Rows with t = 1 would give q a zero variance: evaluate them at t = 2, then discard.
        kl = layer_term(
            self, x0, t.clamp(min=2), z=x_t, transition=p.reverse_from(t, x_t, eps, log_var)
        )
        return torch.where(t == 1, nll, kl)


def default_objective(cfg: DDPMConfig) -> dict:
    """The objective ``cfg.loss`` names, as ``LatentModel``'s ``objective`` keywords."""
    if cfg.loss == "simple":
        return {"objective": "simple", "objective_config": {}}
    if cfg.loss == "hybrid":
        return {"objective": "hybrid", "objective_config": {"weight": cfg.hybrid_weight}}
    return {"objective": "elbo", "objective_config": {"layer_sampler": cfg.timestep_sampler}}


def build_ddpm(cfg: DDPMConfig) -> DDPMModel:
    """The DDPM described by ``cfg`` (the factory registered as ``ddpm``)."""
    return DDPMModel(cfg)
