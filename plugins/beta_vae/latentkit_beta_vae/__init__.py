"""The β-VAE family for latentkit: the VAE's chains, trained on ELBO_β (KL terms × β)."""

from latentkit_beta_vae.hooks import BetaVAEConfig, build_beta_vae

__all__ = ["BetaVAEConfig", "build_beta_vae"]
