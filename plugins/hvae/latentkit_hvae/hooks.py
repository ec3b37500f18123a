"""latentkit hook implementations of the hierarchical VAE plugin."""

import latentkit as lk
from latentkit_hvae.model import HVAEConfig, build_hvae


def hvae_configs():
    """Small configs for the checks (Hypothesis is imported only when they run)."""
    from latentkit_hvae.strategies import hvae_configs

    return hvae_configs()


def hvae_mutants():
    """The model with the faults the checks are tested on (imported when asked for)."""
    from latentkit_hvae.mutants import hvae_mutants

    return hvae_mutants()


@lk.hookimpl
def latentkit_models() -> list[lk.ModelSpec]:
    return [
        lk.ModelSpec(
            name="hvae",
            config_class=HVAEConfig,
            factory=build_hvae,
            description=(
                "hierarchical VAE: L ≥ 2 Gaussian layers, ladder (top-down) or Markov "
                "(bottom-up) q; linear = exact oracle at any depth"
            ),
            test_configs=hvae_configs,
            mutants=hvae_mutants,
        )
    ]
