"""A Gaussian mixture as a latentkit model: categorical prior, Gaussian likelihood, EM."""

from latentkit_gmm.em import em_step, fit_em
from latentkit_gmm.model import GMMConfig, GMMGenerative, build_gmm

__all__ = ["GMMConfig", "GMMGenerative", "build_gmm", "em_step", "fit_em"]
