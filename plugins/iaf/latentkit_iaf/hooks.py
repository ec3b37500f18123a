"""latentkit hook implementations of the IAF plugin."""

import latentkit as lk
from latentkit_iaf.model import IAFConfig, build_iaf


def iaf_configs():
    """Small configs for the checks (Hypothesis is imported only when they run)."""
    from latentkit_iaf.strategies import iaf_configs

    return iaf_configs()


@lk.hookimpl
def latentkit_models() -> list[lk.ModelSpec]:
    return [
        lk.ModelSpec(
            name="iaf",
            config_class=IAFConfig,
            factory=build_iaf,
            description="VAE with an inverse autoregressive flow q(z|x) (MADE steps)",
            test_configs=iaf_configs,
        )
    ]
