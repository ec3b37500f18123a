"""Models compose: any model as the prior of another, by joining their chains (DESIGN §11).

A model A with latents z_1..z_La and a model B whose data are A's top latent z = z_La, with
latents h_1..h_Lb, give one model over z_1..z_La, h_1..h_Lb::

    p(x, z, h)  = p_A(x | z_1) Π p_A(z_{l-1} | z_l) · p_B(z_La | h_1) Π p_B(h_{l-1} | h_l) p_B(h_Lb)
    q(z, h | x) = q_A(z_1 | x) Π q_A(z_l | z_{l-1}) · q_B(h_1 | z_La) Π q_B(h_l | h_{l-1})

A's prior p_A(z_La) is replaced by B's whole generative chain. The composed posterior is
bottom-up (Markov between the parts), so the engine's ``bottom-up`` estimator gives every
draw's log p(x, z, h) − log q(z, h | x): the ELBO, and IWAE with the *joint* importance weight
p_A(x|z) p_B(z, h) / (q_A(z|x) q_B(h|z)). Nothing here computes a bound: the composed model is
an ordinary :class:`~latentkit.LatentModel` and every estimator, oracle and check applies.

Training may replace the inner part by B's own objective (a continuous-time diffusion's
ELBO_∞, a VAE's analytic KL): :class:`ComposedObjective`, whose loss is
−E_q[log p_A(x | z) − log q_A(z | x) + ELBO_B(z)] — an unbiased estimate of a lower bound on
log p(x), but its per-draw value is NOT an importance log weight (exp ELBO_B(z) is not an
unbiased estimate of p_B(z)); IWAE always uses the joint chain. Notation: ``docs/compose.md``.
"""

from __future__ import annotations

from latentkit.composition.by_name import (
    ComposedConfig,
    build_composed,
    compose_by_name,
    composed_test_configs,
    latentkit_models,
    latentkit_objectives,
)
from latentkit.composition.chains import ComposedEncoding, ComposedGenerative, ComposedPosterior
from latentkit.composition.model import (
    EVALUATION_TIMESTEPS,
    ComposedModel,
    compose,
    evaluation_model,
)
from latentkit.composition.objective import (
    ComposedObjective,
    ComposedObjectiveConfig,
    composed_objective,
)

__all__ = [
    "EVALUATION_TIMESTEPS",
    "ComposedConfig",
    "ComposedEncoding",
    "ComposedGenerative",
    "ComposedModel",
    "ComposedObjective",
    "ComposedObjectiveConfig",
    "ComposedPosterior",
    "build_composed",
    "compose",
    "compose_by_name",
    "composed_objective",
    "composed_test_configs",
    "evaluation_model",
    "latentkit_models",
    "latentkit_objectives",
]
