"""The IAF family for latentkit: a VAE whose posterior is an inverse autoregressive flow."""

from latentkit_iaf.model import IAFConfig, IAFPosterior, InverseAutoregressiveFlow, build_iaf

__all__ = ["IAFConfig", "IAFPosterior", "InverseAutoregressiveFlow", "build_iaf"]
