"""latentkit hook implementations of the continuous-time diffusion plugin."""

import latentkit as lk
from latentkit_vdm.model import VDMConfig, build_vdm
from latentkit_vdm.objectives import latentkit_objectives

__all__ = ["latentkit_models", "latentkit_objectives"]


def vdm_configs():
    """Small configs for the checks (Hypothesis is imported only when they run)."""
    from latentkit_vdm.strategies import vdm_configs

    return vdm_configs()


@lk.hookimpl
def latentkit_models() -> list[lk.ModelSpec]:
    return [
        lk.ModelSpec(
            name="vdm",
            config_class=VDMConfig,
            factory=build_vdm,
            description="continuous-time VP diffusion (VDM): ELBO_∞, score SDE, ODE likelihood",
            test_configs=vdm_configs,
            continuous_data={"decoder": "gaussian"},  # as another model's prior
            checks=_checks,
        )
    ]


def _checks():
    """The family's own identities, run by ``latentkit verify vdm`` after the generic checks
    (imported when asked for: they need Hypothesis and the testing kit)."""
    from latentkit_vdm.checks import VDM_CHECKS

    return VDM_CHECKS
