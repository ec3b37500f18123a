"""The faults of latentkit's mutation table that ``hvae`` carries: those of a transition
p(z_{l−1} | z_l), on linear-Gaussian configs, where the exact oracle applies (the faults
of a single layer are carried by a one-layer model)."""

from __future__ import annotations

from latentkit.testing.mutants import Mutant, on_model
from latentkit_hvae.strategies import linear_hvae_configs

__all__ = ["hvae_mutants"]


def hvae_mutants() -> list[Mutant]:
    """The mutants on ``hvae`` (``ModelSpec.mutants``)."""
    return on_model("hvae", ["transition-offset", "control-p"], linear_hvae_configs)
