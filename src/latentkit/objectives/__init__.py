"""Training objectives: what the trainer minimises, kept apart from the model (DESIGN §8).

A model is its two chains; an :class:`Objective` is a per-example loss ``[batch]`` built
for a model from a registered name and an attrs config, as Pyro keeps ``SVI(model, guide,
optim, loss)`` apart. Plugins add objectives through the ``latentkit_objectives`` hook.
Evaluation (``latentkit.elbo``, ``latentkit.iwae``, ``latentkit evaluate``) always reports
the true bound, never a training surrogate. The objective a model trains with unless told
otherwise (``model.objective_choice``) is built by ``latentkit.training_objective(model)``,
beside the registry it is looked up in. Formulas, estimators and when to use each:
``docs/objectives.md``.

Built in:

* ``elbo`` — −ELBO_β by the engine's estimators, with KL warm-up (β from ``warmup_start``
  to ``beta`` over ``warmup_steps``), free bits (Kingma et al. 2016) and, for layer-batched
  chains, importance-sampled layers (improved DDPM §3.3).
* ``iwae`` — −IWAE_k, with the ``standard``, ``stl`` (sticking the landing, Roeder et al.
  2017) or ``dreg`` (doubly reparameterized, Tucker et al. 2019) gradient.

>>> import torch, latentkit as lk
>>> model = lk.load_model("vae", data_shape=(4,), latent_dim=2)
>>> loss = lk.make_objective("iwae", model, k=8, gradient="dreg")
>>> loss(model, torch.randn(3, 4)).shape
torch.Size([3])
"""

from __future__ import annotations

from latentkit.hookspecs import hookimpl
from latentkit.objectives.base import FunctionObjective, Objective, ObjectiveSpec
from latentkit.objectives.elbo import ElboConfig, ElboObjective, warmup_factor
from latentkit.objectives.iwae import IWAEConfig, IWAEObjective, path_log_weights

__all__ = [
    "ElboConfig",
    "ElboObjective",
    "FunctionObjective",
    "IWAEConfig",
    "IWAEObjective",
    "Objective",
    "ObjectiveSpec",
    "path_log_weights",
    "warmup_factor",
]


@hookimpl
def latentkit_objectives() -> list[ObjectiveSpec]:
    return [
        ObjectiveSpec(
            "elbo",
            ElboConfig,
            ElboObjective,
            "−ELBO_β by the engine's estimators; KL warm-up, free bits, importance-sampled layers",
        ),
        ObjectiveSpec(
            "iwae",
            IWAEConfig,
            IWAEObjective,
            "−IWAE_k with the standard, STL or DReG gradient",
        ),
    ]
