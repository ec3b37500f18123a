"""latentkit hook implementations of the DDPM plugin: the model and its objectives."""

import latentkit as lk
from latentkit_ddpm.model import DDPMConfig, build_ddpm
from latentkit_ddpm.objectives import latentkit_objectives

__all__ = ["latentkit_models", "latentkit_objectives"]


def ddpm_configs():
    """Small configs for the checks (Hypothesis is imported only when they run)."""
    from latentkit_ddpm.strategies import ddpm_configs

    return ddpm_configs()


@lk.hookimpl
def latentkit_models() -> list[lk.ModelSpec]:
    return [
        lk.ModelSpec(
            name="ddpm",
            config_class=DDPMConfig,
            factory=build_ddpm,
            description="DDPM: T latent layers x_1..x_T, the fixed forward diffusion as q",
            test_configs=ddpm_configs,
            continuous_data={"decoder": "gaussian"},  # as another model's prior
        )
    ]
