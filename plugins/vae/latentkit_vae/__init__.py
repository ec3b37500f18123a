"""The VAE family for latentkit (a plugin, discovered through its entry point)."""

from latentkit_vae.model import VAEConfig, build_vae

__all__ = ["VAEConfig", "build_vae"]
