"""M2 for latentkit (Kingma et al. 2014): a semi-supervised class-conditional VAE with a
classifier q(y | x) (a plugin, discovered through its entry point)."""

from latentkit_m2.labels import mask_labels
from latentkit_m2.model import M2Config, M2Generative, M2Posterior, build_m2
from latentkit_m2.objective import (
    M2Objective,
    M2ObjectiveConfig,
    classification_error,
    unlabelled_elbo,
)

__all__ = [
    "M2Config",
    "M2Generative",
    "M2Objective",
    "M2ObjectiveConfig",
    "M2Posterior",
    "build_m2",
    "classification_error",
    "mask_labels",
    "unlabelled_elbo",
]
