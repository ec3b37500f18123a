"""latentkit hook implementations of the VampPrior plugin."""

import latentkit as lk
from latentkit_vamp.model import VampConfig, build_vamp


def vamp_configs():
    """Small configs for the checks (Hypothesis is imported only when they run)."""
    from latentkit_vamp.strategies import vamp_configs

    return vamp_configs()


@lk.hookimpl
def latentkit_models() -> list[lk.ModelSpec]:
    return [
        lk.ModelSpec(
            name="vamp",
            config_class=VampConfig,
            factory=build_vamp,
            description="VampPrior VAE: p(z) = mixture of q(z|u_k) at K learned pseudo-inputs",
            test_configs=vamp_configs,
        )
    ]
