"""The hierarchical VAE family for latentkit (a plugin, discovered through its entry point)."""

from latentkit_hvae.model import HVAEConfig, build_hvae

__all__ = ["HVAEConfig", "build_hvae"]
