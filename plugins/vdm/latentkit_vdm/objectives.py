"""The continuous-time model's training objectives, registered through ``latentkit_objectives``.

* ``continuous``: −ELBO_∞ (VDM eq. 17): prior matching − reconstruction + ½ γ'(t)‖ε − ε̂_θ‖²,
  one t per example from a low-discrepancy, antithetic or uniform sampler (each t marginally
  U(0, 1), so the loss is unbiased for −ELBO_∞ per example). With a learned schedule, its
  interior (the shape between the ends) gets by default the gradient of the batch mean of
  L_diff², the variance-minimising gradient of VDM §5, and everything else the bound's.
* ``score-matching``: denoising score matching ½ λ(t) ‖s_θ(z_t, t) − ∇ log q(z_t | x)‖² with
  ∇ log q(z_t | x) = −ε/β̄_t and s_θ = −ε̂_θ/β̄_t. With ``weighting="likelihood"``, λ = g² =
  γ' β̄_t² and the loss is the diffusion term itself, which bounds KL(p_data ‖ p_θ) with the
  prior term (Song et al. 2021, eq. 34 / seed 001); the explicit score-matching loss with the
  marginal score ∇ log q_t differs from it by a θ-free constant (Vincent 2011). With
  ``weighting="simple"``, λ = β̄_t² gives ½‖ε − ε̂_θ‖² (L_simple's weighting; no bound).
"""

from __future__ import annotations

import attrs
import torch
from attrs import validators as v
from torch import Tensor

import latentkit as lk
from latentkit.config import int_at_least
from latentkit_vdm.config import SCHEDULE_GRADIENTS, T_SAMPLERS
from latentkit_vdm.continuous import sample_times

__all__ = [
    "CONTINUOUS",
    "SCORE_MATCHING",
    "ContinuousConfig",
    "ContinuousObjective",
    "ScoreMatchingConfig",
    "ScoreMatchingObjective",
    "latentkit_objectives",
]

CONTINUOUS = "continuous"
"""The registry name of the −ELBO_∞ objective (``loss="continuous"`` trains with it)."""
SCORE_MATCHING = "score-matching"
"""The registry name of the score-matching objective (``loss="score-matching"``).

Registry names are global: a package built from a copy of this plugin registers its
objectives under names of its own by changing these two."""


def _needs_core(model: lk.LatentModel) -> str | None:
    core = getattr(model.generative, "core", None)
    if core is None or not hasattr(core, "diffusion_integrand"):
        return f"it needs a continuous-time diffusion (``vdm``); {type(model).__name__} is not one"
    return None


def _condition(model: lk.LatentModel, n: int) -> Tensor | None:
    """The n examples' conditions of a conditional model's view (the trainer binds each
    batch's labels, dropped to the null class at the guidance rate); ``None`` otherwise."""
    p = model.generative
    return None if p.condition_spec is None else p.condition_for(n)


def _tiled(rows: Tensor, k: int) -> Tensor:
    """``rows`` repeated k times along the batch: ``[k · n, ...]``, block m the n rows."""
    return rows.repeat(k, *([1] * (rows.ndim - 1)))


@attrs.frozen(kw_only=True)
class ContinuousConfig:
    """Options of ``continuous``.

    Attributes:
        t_sampler: ``low-discrepancy`` (VDM §3.4), ``antithetic`` or ``uniform``.
        schedule_gradient: what a learned schedule's interior parameters (the profile h of
            γ = γ_min + span · h(t; η)) receive: ``variance``, the gradient of the batch mean
            of L_diff,i² with L_diff,i = ½ γ'(t_i) ‖ε_i − ε̂_θ‖² — the gradient of the
            diffusion estimator's variance, since E[L_diff] does not depend on η when the
            network is conditioned on γ (VDM §5) — or ``elbo``, the bound's own gradient
            (zero in expectation). The network and the ends γ_min, span always get the
            bound's gradient, and the loss's value is −ELBO_∞ either way. Without a learned
            schedule the two are the same.
        draws: draws of (z_0, t, ε) per example, averaged: the same unbiased estimate of
            −ELBO_∞ with ``draws`` times less variance, at ``draws`` times the network's
            batch. The times are drawn for the ``draws · batch`` rows together, so with the
            low-discrepancy sampler each example's ``draws`` times fall one in each of as
            many equal strata of [0, 1). In a composed model (a ``vdm`` prior) this is the
            noise the prior's term puts on the encoder's gradient (docs/compose.md).
    """

    t_sampler: str = attrs.field(default="low-discrepancy", validator=v.in_(T_SAMPLERS))
    schedule_gradient: str = attrs.field(default="variance", validator=v.in_(SCHEDULE_GRADIENTS))
    draws: int = attrs.field(default=1, validator=int_at_least(1))


class ContinuousObjective(lk.Objective):
    name = CONTINUOUS

    @classmethod
    def supports(cls, model: lk.LatentModel) -> str | None:
        return _needs_core(model)

    def forward(self, model, x: Tensor, step=None) -> Tensor:
        core = model.generative.core
        cfg = self.config
        k, n = cfg.draws, x.shape[0]
        condition = _condition(model, n)
        if k > 1:  # rows "(k b)": draw m of example j is row m·n + j
            x = _tiled(x, k)
            condition = None if condition is None else _tiled(condition, k)
        total = core.elbo(
            x,
            t_sampler=cfg.t_sampler,
            schedule_gradient=cfg.schedule_gradient,
            condition=condition,
        ).total
        return -total.reshape(k, n).mean(0)


@attrs.frozen(kw_only=True)
class ScoreMatchingConfig:
    """Options of ``score-matching``.

    Attributes:
        weighting: λ(t): ``likelihood`` (λ = g², the diffusion term of the bound) or
            ``simple`` (λ = β̄_t², i.e. ½‖ε − ε̂‖²).
        t_sampler: as ``continuous``'s.
    """

    weighting: str = attrs.field(default="likelihood", validator=v.in_(("likelihood", "simple")))
    t_sampler: str = attrs.field(default="low-discrepancy", validator=v.in_(T_SAMPLERS))


class ScoreMatchingObjective(lk.Objective):
    name = SCORE_MATCHING

    @classmethod
    def supports(cls, model: lk.LatentModel) -> str | None:
        return _needs_core(model)

    def forward(self, model, x: Tensor, step=None) -> Tensor:
        t = sample_times(x.shape[0], self.config.t_sampler, like=x)
        return model.generative.core.score_matching_loss(
            x,
            t,
            torch.randn_like(x),
            self.config.weighting,
            condition=_condition(model, x.shape[0]),
        )


@lk.hookimpl
def latentkit_objectives() -> list[lk.ObjectiveSpec]:
    return [
        lk.ObjectiveSpec(
            CONTINUOUS,
            ContinuousConfig,
            ContinuousObjective,
            "continuous-time diffusion: −ELBO_∞ with low-variance t sampling (VDM)",
        ),
        lk.ObjectiveSpec(
            SCORE_MATCHING,
            ScoreMatchingConfig,
            ScoreMatchingObjective,
            "continuous-time diffusion: denoising score matching, λ = g² (a bound) or β̄²",
        ),
    ]
