"""latentkit hook implementations: the module the ``latentkit.plugins`` entry point names."""

import latentkit as lk
from latentkit_gmm.model import GMMConfig, build_gmm


def test_configs():
    """Small configs covering both posteriors, for ``latentkit verify gmm``."""
    from hypothesis import strategies as st

    return st.fixed_dictionaries(
        {
            "data_dim": st.integers(1, 3),
            "components": st.integers(1, 4),
            "posterior": st.sampled_from(("exact", "amortized")),
            "hidden": st.sampled_from(((), (4,))),
        }
    )


@lk.hookimpl
def latentkit_models() -> list[lk.ModelSpec]:
    return [
        lk.ModelSpec(
            name="gmm",
            config_class=GMMConfig,
            factory=build_gmm,
            description="Gaussian mixture: categorical z, Gaussian x|z; exact or amortized q(z|x)",
            test_configs=test_configs,
        )
    ]
