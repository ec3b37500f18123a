"""The VampPrior family for latentkit: p(z) = (1/K) Σ_k q(z | u_k) at learned pseudo-inputs."""

from latentkit_vamp.model import VampConfig, VampGenerative, VampPosterior, build_vamp

__all__ = ["VampConfig", "VampGenerative", "VampPosterior", "build_vamp"]
