"""latentkit hook implementations of the VAE plugin."""

import latentkit as lk
from latentkit_vae.model import VAEConfig, build_vae


def vae_configs():
    """Small configs for the checks (Hypothesis is imported only when they run)."""
    from latentkit_vae.strategies import vae_configs

    return vae_configs()


def vae_mutants():
    """The model with the faults the checks are tested on (imported when asked for)."""
    from latentkit_vae.mutants import vae_mutants

    return vae_mutants()


@lk.hookimpl
def latentkit_models() -> list[lk.ModelSpec]:
    return [
        lk.ModelSpec(
            name="vae",
            config_class=VAEConfig,
            factory=build_vae,
            description=(
                "VAE: one Gaussian latent layer, learned q(z|x); linear = probabilistic PCA"
            ),
            test_configs=vae_configs,
            mutants=vae_mutants,
        )
    ]
