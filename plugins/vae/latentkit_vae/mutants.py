"""The faults of latentkit's mutation table that ``vae`` carries: every one that needs no
second latent layer, on linear-Gaussian (pPCA) configs, where the exact oracle applies."""

from __future__ import annotations

from latentkit.testing.mutants import CONTROLS, MUTANTS, Mutant, on_model
from latentkit_vae.strategies import linear_vae_configs

__all__ = ["vae_mutants"]

TWO_LAYER_FAULTS = ("transition-offset", "control-p")
"""Faults of a transition p(z_{l−1} | z_l): the ``vae`` has none."""


def vae_mutants() -> list[Mutant]:
    """The mutants on ``vae`` (``ModelSpec.mutants``)."""
    keys = [m.key for m in MUTANTS + CONTROLS if m.key not in TWO_LAYER_FAULTS]
    return on_model("vae", keys, lambda: linear_vae_configs(max_data_dim=4, max_latent_dim=3))
