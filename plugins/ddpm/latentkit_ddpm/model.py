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

import torch
from torch import Tensor

import latentkit as lk
from latentkit.estimators import layer_term
from latentkit_ddpm.chains import DDPMGenerative, DDPMPosterior, check_config
from latentkit_ddpm.chains import ScheduleRows as ScheduleRows  # its old home was this module
from latentkit_ddpm.config import MAX_LEVELS as MAX_LEVELS  # its old home was this module
from latentkit_ddpm.config import DDPMConfig
from latentkit_ddpm.schedule import DiffusionSchedule, cosine_beta, linear_beta

__all__ = [
    "DDPMConfig",
    "DDPMGenerative",
    "DDPMModel",
    "DDPMPosterior",
    "build_ddpm",
    "make_schedule",
]


def make_schedule(cfg: DDPMConfig) -> DiffusionSchedule:
    """The forward chain's constants for ``cfg`` (schedule and T)."""
    check_config(cfg, "make_schedule")
    if cfg.schedule == "given":
        beta = torch.tensor(cfg.beta, dtype=torch.float64)
    elif cfg.schedule == "cosine":
        beta = cosine_beta(cfg.num_timesteps)
    else:
        beta = linear_beta(cfg.num_timesteps)
    return DiffusionSchedule(beta)


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
        check_config(cfg, "DDPMModel")
        schedule = make_schedule(cfg)
        super().__init__(
            DDPMGenerative(cfg, schedule),
            DDPMPosterior(schedule, len(cfg.data_shape), binary=cfg.binary),
            config=cfg,
            **objective_keywords(cfg),
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


def objective_keywords(cfg: DDPMConfig) -> dict:
    """The objective ``cfg.loss`` names, as ``LatentModel``'s ``objective`` keywords."""
    if cfg.loss == "simple":
        return {"objective": "simple", "objective_config": {}}
    if cfg.loss == "hybrid":
        return {"objective": "hybrid", "objective_config": {"weight": cfg.hybrid_weight}}
    return {"objective": "elbo", "objective_config": {"layer_sampler": cfg.timestep_sampler}}


default_objective = objective_keywords  # the old name of objective_keywords


def build_ddpm(cfg: DDPMConfig) -> DDPMModel:
    """The DDPM described by ``cfg`` (the factory registered as ``ddpm``)."""
    check_config(cfg, "build_ddpm")
    return DDPMModel(cfg)
