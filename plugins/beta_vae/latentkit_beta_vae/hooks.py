"""latentkit hook implementations of the β-VAE plugin.

Same chains as ``vae``; the model's default objective is ``elbo`` with its β, so training
minimises −ELBO_β. ``latentkit.elbo`` still reports the true ELBO (β = 1) unless asked for
another β.
"""

import attrs
from latentkit_vae import VAEConfig, build_vae

import latentkit as lk
from latentkit.arguments import check_number, describe_value
from latentkit.config import ruled


@ruled("finite float > 0")
def _positive(instance, attribute, value) -> None:
    check_number(value, repr(attribute.name), above=0.0, error=lk.ConfigError)


@attrs.frozen(kw_only=True)
class BetaVAEConfig(VAEConfig):
    """``vae``'s fields plus ``beta``: the weight of the KL term in training (> 0).

    ``beta`` is the ``elbo`` objective's ``beta`` (the model declares ``elbo`` with it): a
    run that also gives ``objective.beta`` with another value is refused, naming both, and a
    resumed run keeps the β it was trained with (docs/training.md, "Settings that name the
    same thing").
    """

    beta: float = attrs.field(default=4.0, validator=_positive)


def build_beta_vae(cfg: BetaVAEConfig) -> lk.LatentModel:
    if not isinstance(cfg, BetaVAEConfig):
        raise lk.ConfigError(
            f"build_beta_vae: cfg must be a BetaVAEConfig, got {describe_value(cfg)}"
        )
    return build_vae(cfg, beta=cfg.beta)


def beta_vae_configs():
    """The ``vae`` test configs plus a β on either side of 1 (Hypothesis is imported only
    when the checks run)."""
    from hypothesis import strategies as st
    from latentkit_vae.strategies import vae_configs

    return st.builds(lambda c, b: {**c, "beta": b}, vae_configs(), st.floats(0.1, 8.0))


@lk.hookimpl
def latentkit_models() -> list[lk.ModelSpec]:
    return [
        lk.ModelSpec(
            name="beta-vae",
            config_class=BetaVAEConfig,
            factory=build_beta_vae,
            description="β-VAE: the VAE trained on ELBO_β = E[log p(x|z)] − β·KL",
            test_configs=beta_vae_configs,
        )
    ]
