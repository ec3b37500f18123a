"""The DDPM's two chains: the fixed forward chain q (``DDPMPosterior``) and the denoising
chain p (``DDPMGenerative``), with the per-step constants they read (``ScheduleRows``).
Notation: ``docs/ddpm.md`` and the package's ``model`` module.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Distribution, Independent

import latentkit as lk
from latentkit.arguments import check_count, check_flag, describe_value
from latentkit.diffusion import StepTables, gather_steps
from latentkit.distributions import DiscretizedNormal, diag_normal, standard_normal
from latentkit.likelihoods import split_params
from latentkit_ddpm.config import DDPMConfig
from latentkit_ddpm.schedule import DiffusionSchedule

__all__ = ["DDPMGenerative", "DDPMPosterior", "ScheduleRows", "check_config"]


def check_config(cfg: object, where: str) -> None:
    """``cfg`` a :class:`DDPMConfig`, else a ConfigError naming ``where``."""
    if not isinstance(cfg, DDPMConfig):
        raise lk.ConfigError(f"{where}: cfg must be a DDPMConfig, got {describe_value(cfg)}")


def _check_schedule(schedule: object, where: str) -> None:
    if not isinstance(schedule, DiffusionSchedule):
        raise lk.ConfigError(
            f"{where}: schedule must be a DiffusionSchedule, got {describe_value(schedule)}"
        )


class ScheduleRows(StepTables):
    """Per-timestep constants that are used together, stacked as one ``[T+1, k]`` table so a
    call gathers them with one indexing operation instead of k (``rows(t, like)``).

    Each column is computed in float64 from the schedule's master tables and kept exact as
    :class:`latentkit.diffusion.StepTables` keeps its tables (the buffer ``table``). Not saved
    in ``state_dict``.
    """

    table: Tensor

    def __init__(self, columns: dict[str, Tensor]):
        super().__init__({"table": torch.stack([c.to(torch.float64) for c in columns.values()], 1)})
        self.names = tuple(columns)

    def rows(self, t: int | Tensor, like: Tensor) -> tuple[Tensor, ...]:
        """The k constants of step ``t``, each shaped to broadcast against ``like``
        (``[batch, *event]``): 0-d for an int ``t``, ``[batch, 1, …, 1]`` for a
        ``LongTensor[batch]``."""
        per_example = isinstance(t, Tensor) and t.ndim == 1
        return gather_steps(self.table, t, like).unbind(1 if per_example else 0)


class DDPMPosterior(lk.PosteriorChain):
    """q(x_{1:T} | x_0): the fixed forward chain, top-down, bottom-up and layer-batched.

    Every ``t`` may be an int or a ``LongTensor[batch]`` (one timestep per example). With
    ``binary=True`` the data x_0 ∈ {0, 1} enter as their grid points 2x_0 − 1 (:meth:`on_grid`).
    """

    top_down = True
    bottom_up = True
    layer_batched = True

    def __init__(self, schedule: DiffusionSchedule, event_dims: int, *, binary: bool = False):
        _check_schedule(schedule, "DDPMPosterior")
        check_count(event_dims, "DDPMPosterior: event_dims", error=lk.ConfigError)
        check_flag(binary, "DDPMPosterior: binary", error=lk.ConfigError)
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
    """p(x_T) = N(0, I) · Π p(x_{t-1} | x_t) · p(x_0 | x_1), one ε-network for every t.

    With ``cfg.classes`` = K, p(· | c): the network is ε_θ(x_t, t, c), reading the bound
    view's labels (``condition_for``); a view with a guidance scale w > 0 (sampling only)
    steps with classifier-free guidance's ε̃ = (1 + w) ε_θ(x_t, t, c) − w ε_θ(x_t, t, ∅).
    """

    layer_batched = True

    def __init__(self, cfg: DDPMConfig, schedule: DiffusionSchedule):
        check_config(cfg, "DDPMGenerative")
        _check_schedule(schedule, "DDPMGenerative")
        if schedule.num_timesteps != cfg.num_timesteps:
            raise lk.ConfigError(
                f"DDPMGenerative: the schedule has T = {schedule.num_timesteps} steps, "
                f"cfg.num_timesteps = {cfg.num_timesteps}"
            )
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
        self.clip_denoised = cfg.clip_denoised
        if cfg.clip_denoised:  # x̂_0 = (x_t − β̄_t ε)/ᾱ_t and q(x_{t-1} | x_t, x̂_0)'s mean
            self.denoised_rows = ScheduleRows(
                {
                    "alpha_bar": m["alpha_bar"],
                    "beta_bar": m["beta_bar"],
                    "coef_x0": m["posterior_coef_x0"],
                    "coef_xt": m["posterior_coef_xt"],
                }
            )
        self.eps_skip = cfg.eps_skip
        if cfg.eps_skip:  # ε_θ = β̄_t x_t + the network's output
            self.skip_rows = ScheduleRows({"beta_bar": m["beta_bar"]})
        self.reverse_variance = cfg.reverse_variance
        self.decoder = cfg.decoder
        self.levels, self.binary = cfg.levels, cfg.binary
        self.event_dims = len(cfg.data_shape)
        self.condition_spec = cfg.condition_spec
        features = self.condition_spec.feature_dim if self.condition_spec else 0
        self.net = cfg.eps_network(
            out_groups=2 if cfg.reverse_variance == "learned" else 1, condition_dim=features
        )

    def _timesteps(self, t: int | Tensor, z: Tensor) -> Tensor:
        if isinstance(t, Tensor) and t.ndim == 1:
            return t
        return torch.full((z.shape[0],), int(t), dtype=torch.long, device=z.device)

    def _network(self, t: int | Tensor, z: Tensor) -> tuple[Tensor, ...]:
        """The network's output groups at (x_t, t), given the bound condition c if the chain
        is conditional; with a guidance scale w > 0, ε̂ is the guided ε̃ = (1 + w) ε_θ(x_t,
        t, c) − w ε_θ(x_t, t, ∅) from one call on 2·batch rows (the other groups: c's);
        with ``eps_skip``, β̄_t x_t added to ε̂ (guided or not: the weights sum to 1)."""
        eps, *rest = self._outputs(t, z)
        if self.eps_skip:
            (beta_bar,) = self.skip_rows.rows(t, z)
            eps = eps + beta_bar * z
        return (eps, *rest)

    def _outputs(self, t: int | Tensor, z: Tensor) -> tuple[Tensor, ...]:
        """The network's output groups (guided, with a guidance scale): ``_network``'s body."""
        steps = self._timesteps(t, z)
        spec = self.condition_spec
        # ε̂ (and v) by squeeze/unbind, whose backward is a view/one stack, not out[:, i],
        # whose backward zero-fills and copies a [batch, groups, *data_shape] gradient.
        if spec is None:
            return split_params(self.net(z, steps))
        c = self.condition_for(z.shape[0])
        w = self.guidance
        if not w:
            return split_params(self.net(z, steps, spec.features(c, z.dtype)))
        # c's rows, then the null class's: "(two b) ..." with two = 2
        c = torch.cat([c, torch.full_like(c, spec.null_class)])
        both = self.net(torch.cat([z, z]), steps.repeat(2), spec.features(c, z.dtype))
        given, null = both.chunk(2)
        out = split_params(given)
        return ((1 + w) * out[0] - w * null[:, 0], *out[1:])

    def eps_and_log_var(self, t: int | Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        """ε_θ(x_t, t) (ε_θ(x_t, t, c) given a condition; guided with a guidance scale) and
        log σ_t² (broadcastable to x_t), from one network call."""
        out = self._network(t, z)
        *_, upper, lower = self.reverse_rows.rows(t, z)
        if self.reverse_variance == "learned":
            # Improved DDPM eq. 15 with v = (out + 1)/2, held in [0, 1] so that σ_t² stays
            # between β̃_t² and β_t²: an untrained network cannot extrapolate it to overflow.
            frac = ((out[1] + 1) / 2).clamp(0.0, 1.0)
            return out[0], frac * upper + (1 - frac) * lower
        return out[0], upper if self.reverse_variance == "beta" else lower

    def mean(self, t: int | Tensor, z: Tensor, eps: Tensor) -> Tensor:
        """μ_θ(x_t, t) = (x_t − β_t²/β̄_t · ε_θ) / α_t, the posterior mean at the x_0 ε_θ implies;
        with ``clip_denoised``, the posterior mean at x̂_0 = clip((x_t − β̄_t ε_θ)/ᾱ_t, −1, 1)."""
        if self.clip_denoised:
            alpha_bar, beta_bar, coef_x0, coef_xt = self.denoised_rows.rows(t, z)
            x0 = ((z - beta_bar * eps) / alpha_bar).clamp(-1.0, 1.0)
            return coef_x0 * x0 + coef_xt * z
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
