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

import attrs
from torch import Tensor

import latentkit as lk
from latentkit.arguments import check_count, describe_value
from latentkit.conditions import bind
from latentkit.diffusion import MAX_TIMESTEPS
from latentkit.validation import check_data
from latentkit_vdm.chains import VDMGenerative, VDMPosterior
from latentkit_vdm.config import SCHEDULE_GRADIENTS, T_SAMPLERS, VDMConfig
from latentkit_vdm.continuous import ContinuousDiffusion, ContinuousElbo, sample_times
from latentkit_vdm.objectives import CONTINUOUS, SCORE_MATCHING

__all__ = [
    "SCHEDULE_GRADIENTS",
    "T_SAMPLERS",
    "ContinuousDiffusion",
    "ContinuousElbo",
    "VDMConfig",
    "VDMGenerative",
    "VDMModel",
    "VDMPosterior",
    "build_vdm",
    "sample_times",
]


class VDMModel(lk.LatentModel):
    """A continuous-time diffusion: :class:`VDMGenerative` and :class:`VDMPosterior` at
    ``config.num_timesteps``; :meth:`with_timesteps` gives the same network at another T,
    :meth:`continuous_elbo` the T → ∞ bound."""

    generative: VDMGenerative
    posterior: VDMPosterior

    def __init__(self, cfg: VDMConfig, core: ContinuousDiffusion | None = None):
        _check_config(cfg, "VDMModel")
        if core is not None and not isinstance(core, ContinuousDiffusion):
            raise lk.InputError(
                f"VDMModel: core must be a ContinuousDiffusion or None, got {describe_value(core)}"
            )
        core = ContinuousDiffusion(cfg) if core is None else core
        super().__init__(
            VDMGenerative(core, cfg.num_timesteps),
            VDMPosterior(core, cfg.num_timesteps),
            config=cfg,
            **objective_keywords(cfg),
        )

    @property
    def core(self) -> ContinuousDiffusion:
        return self.generative.core

    def with_timesteps(self, num_timesteps: int) -> VDMModel:
        """The discrete-T chain of the same network and schedule (shared, not copied); T at
        most ``latentkit.diffusion.MAX_TIMESTEPS`` (the discrete configs' bound)."""
        check_count(
            num_timesteps, "with_timesteps: num_timesteps", high=MAX_TIMESTEPS, error=lk.ConfigError
        )
        other = VDMModel(attrs.evolve(self.config, num_timesteps=num_timesteps), core=self.core)
        other.name = self.name
        return other.train(self.training)

    def continuous_elbo(
        self,
        x: Tensor,
        *,
        t: Tensor | None = None,
        t_sampler: str = "low-discrepancy",
        condition=None,
    ) -> ContinuousElbo:
        """ELBO_∞(x) and its terms, ``[batch]`` nats (one draw of z_0, t and ε per example);
        ``t`` the times to use (``[batch]`` or one 0-d time, in [0, 1]), else drawn by
        ``t_sampler``. A conditional model: ELBO_∞(x | c) with ``condition`` (one per
        example, or an ``int`` for all), or the conditions of a view (``model.given(c)``);
        never guided (a view with a guidance scale is refused, as by ``latentkit.elbo``)."""
        check_data(self, x, name="continuous_elbo: x")
        if t is not None:
            _check_times(t, x)
        n = x.shape[0]
        p = bind(self, condition, n).generative
        c = None if p.condition_spec is None else p.condition_for(n)
        return self.core.elbo(x, t=t, t_sampler=t_sampler, condition=c)

    def likelihood_figures(self, data: Tensor, **options) -> dict:
        """The discrete-T, continuous and ODE likelihood figures over ``data`` and the per-t
        breakdown (:func:`latentkit_vdm.figures.likelihood_figures`); a conditional model's
        given ``condition=`` (one label per example): bounds on −log p(x | c)."""
        from latentkit_vdm.figures import likelihood_figures

        return likelihood_figures(self, data, **options)

    def per_t_plot(self, breakdown: dict, path, *, title: str | None = None):
        """Plot ``likelihood_figures(...)["per_t"]`` to ``path`` (PNG); returns the path."""
        from latentkit_vdm.figures import per_t_plot

        return per_t_plot(breakdown, path, title=title)


def _check_config(cfg: object, where: str) -> None:
    if not isinstance(cfg, VDMConfig):
        raise lk.ConfigError(f"{where}: cfg must be a VDMConfig, got {describe_value(cfg)}")


def _check_times(t: object, x: Tensor) -> None:
    """``t`` a float tensor, 0-d or ``[batch]``, every value in [0, 1]."""
    batch = x.shape[0]
    if not isinstance(t, Tensor) or not t.is_floating_point():
        raise lk.InputError(f"continuous_elbo: t must be a float tensor, got {describe_value(t)}")
    if t.ndim > 1 or (t.ndim == 1 and t.shape[0] != batch):
        raise lk.ShapeError(
            f"continuous_elbo: t must be 0-d or of shape [{batch}] (one time per example), "
            f"got shape {tuple(t.shape)}"
        )
    if t.dtype != x.dtype:
        raise lk.DTypeError(f"continuous_elbo: t must be {x.dtype}, as x, got {describe_value(t)}")
    if t.device != x.device:
        raise lk.DeviceError(f"continuous_elbo: t must be on {x.device}, as x, got {t.device}")
    if not bool(((t >= 0) & (t <= 1)).all()):  # NaN fails too
        raise lk.InputError(f"continuous_elbo: t must lie in [0, 1], got {describe_value(t)}")


def objective_keywords(cfg: VDMConfig) -> dict:
    """The objective ``cfg.loss`` names, as ``LatentModel``'s ``objective`` keywords."""
    if cfg.loss == "continuous":
        return {"objective": CONTINUOUS, "objective_config": {"t_sampler": cfg.t_sampler}}
    if cfg.loss == "score-matching":
        return {"objective": SCORE_MATCHING, "objective_config": {}}
    return {"objective": "elbo", "objective_config": {}}


default_objective = objective_keywords  # the old name of objective_keywords


def build_vdm(cfg: VDMConfig) -> VDMModel:
    """The continuous-time diffusion described by ``cfg`` (the factory registered as ``vdm``)."""
    _check_config(cfg, "build_vdm")
    return VDMModel(cfg)
