"""Hypothesis strategies of small ``vamp`` configs, declared as the model's test configs."""

from __future__ import annotations

from hypothesis import strategies as st

from latentkit.testing.strategies import encoder_decoder_configs


@st.composite
def vamp_configs(draw, max_data_dim: int = 5, max_latent_dim: int = 3) -> dict:
    """Small ``load_model("vamp", **cfg)`` values.

    Half the draws are linear with a Gaussian likelihood of learned or fixed scale: p(x) is
    then a Gaussian mixture (``log_marginal``), so the exact-log-p check applies. The prior
    is a mixture, for which torch has no closed-form KL: the analytic-vs-Monte-Carlo KL check
    never applies to this model.
    """
    cfg = draw(encoder_decoder_configs(max_data_dim, max_latent_dim))
    cfg["num_pseudo_inputs"] = draw(st.integers(1, 4))
    return cfg
