"""latentkit hook implementations of the M2 plugin: the ``m2`` model and objective."""

import latentkit as lk
from latentkit_m2.model import M2Config, build_m2
from latentkit_m2.objective import M2Objective, M2ObjectiveConfig


def m2_configs():
    """Small configs for the checks (Hypothesis is imported only when they run)."""
    from latentkit_m2.strategies import m2_configs

    return m2_configs()


@lk.hookimpl
def latentkit_models() -> list[lk.ModelSpec]:
    return [
        lk.ModelSpec(
            name="m2",
            config_class=M2Config,
            factory=build_m2,
            description=(
                "M2 (Kingma et al. 2014): semi-supervised VAE, p(x | y, z) with a classifier "
                "q(y | x); conditional on the label y"
            ),
            test_configs=m2_configs,
            labelled_field="labelled",
        )
    ]


@lk.hookimpl
def latentkit_objectives() -> list[lk.ObjectiveSpec]:
    return [
        lk.ObjectiveSpec(
            "m2",
            M2ObjectiveConfig,
            M2Objective,
            "M2's semi-supervised loss: −ELBO(x|y) − log p(y) − (α/N_l)·log q(y|x) on a "
            "labelled example, −U(x) (y enumerated) on an unlabelled one",
        )
    ]
