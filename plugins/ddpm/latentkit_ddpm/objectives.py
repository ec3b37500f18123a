"""The DDPM's own training objectives, registered through ``latentkit_objectives``.

* ``simple``: L_simple = ‖ε − ε_θ(ᾱ_t x_0 + β̄_t ε, t)‖², t ~ U{1..T} (DDPM eq. 14): each
  ELBO term with its weight β_t⁴/(2σ_t² α_t² β̄_t²) dropped — a reweighted bound, not the
  ELBO.
* ``hybrid``: L_simple + λ·T·L_t at the same (x_t, t), μ_θ's gradient stopped in L_t
  (improved DDPM eq. 16). T·L_t with t ~ U{1..T} is unbiased for Σ_{t=1..T} L_t, the bound
  without its prior term (which has no parameters); L_t is the engine's layer term.

The importance-sampled timestep is the core ``elbo`` objective's ``layer_sampler``: it
applies to any layer-batched chain, not only this one.
"""

from __future__ import annotations

import attrs
import torch
from torch import Tensor

import latentkit as lk

__all__ = ["HybridConfig", "HybridObjective", "SimpleConfig", "SimpleObjective"]


@attrs.frozen(kw_only=True)
class SimpleConfig:
    """``simple`` takes no options."""


def _weight(instance, attribute, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1e300:
        raise ValueError(f"{attribute.name!r} must be a finite number > 0, got {value!r}")


@attrs.frozen(kw_only=True)
class HybridConfig:
    """Options of ``hybrid``.

    Attributes:
        weight: λ, the weight of the variational term (improved DDPM uses 0.001).
    """

    weight: float = attrs.field(default=0.001, validator=_weight)


class _EpsObjective(lk.Objective):
    """Shared by ``simple`` and ``hybrid``: one draw of (t, ε, x_t) and one network call."""

    @classmethod
    def supports(cls, model: lk.LatentModel) -> str | None:
        if not hasattr(model.generative, "eps_and_log_var") or not hasattr(model, "q_sample"):
            return f"it needs a DDPM (an ε-network and q_sample); {type(model).__name__} is not one"
        return None

    @staticmethod
    def noised(model, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """t ~ U{1..T}, ε ~ N(0, I), x_t, and the network's ε_θ(x_t, t) and log σ_t²."""
        t = torch.randint(1, model.num_layers + 1, (x.shape[0],), device=x.device)
        noise = torch.randn_like(x)
        x_t = model.q_sample(x, t, noise)
        eps, log_var = model.generative.eps_and_log_var(t, x_t)
        return t, noise, x_t, eps, log_var


class SimpleObjective(_EpsObjective):
    name = "simple"

    def __init__(self, config: SimpleConfig, model: lk.LatentModel):
        super().__init__(config, model)
        if getattr(model.generative, "reverse_variance", None) == "learned":
            raise lk.ConfigError(
                "objective 'simple' gives a learned reverse variance no gradient; "
                "use 'hybrid' or 'elbo' with reverse_variance='learned'"
            )

    def forward(self, model, x: Tensor, step=None) -> Tensor:
        _, noise, _, eps, _ = self.noised(model, x)
        return (noise - eps).pow(2).flatten(1).sum(-1)


class HybridObjective(_EpsObjective):
    name = "hybrid"

    def forward(self, model, x: Tensor, step=None) -> Tensor:
        t, noise, x_t, eps, log_var = self.noised(model, x)
        simple = (noise - eps).pow(2).flatten(1).sum(-1)
        vlb = model.timestep_term(x, t, x_t, eps.detach(), log_var)
        return simple + self.config.weight * model.num_layers * vlb


@lk.hookimpl
def latentkit_objectives() -> list[lk.ObjectiveSpec]:
    return [
        lk.ObjectiveSpec(
            "simple", SimpleConfig, SimpleObjective, "DDPM: L_simple = ‖ε − ε_θ‖² (reweighted)"
        ),
        lk.ObjectiveSpec(
            "hybrid",
            HybridConfig,
            HybridObjective,
            "DDPM: L_simple + λ·T·L_t, μ_θ stopped in L_t (improved DDPM)",
        ),
    ]
