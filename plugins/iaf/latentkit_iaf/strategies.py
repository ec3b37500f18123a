"""Hypothesis strategies of small ``iaf`` configs, declared as the model's test configs."""

from __future__ import annotations

from hypothesis import strategies as st

from latentkit.testing.strategies import encoder_decoder_configs


@st.composite
def iaf_configs(draw, max_data_dim: int = 5, max_latent_dim: int = 3) -> dict:
    """Small ``load_model("iaf", **cfg)`` values.

    Half the draws are linear with a Gaussian likelihood of learned or fixed scale: their
    generative chain is linear-Gaussian, so the exact-log-p check applies. A quarter have
    no flow step (q is then the diagonal Gaussian, so the closed-form KL check applies);
    the rest take 1–3 steps, with or without a context and hidden MADE layers.
    """
    cfg = draw(encoder_decoder_configs(max_data_dim, max_latent_dim))
    cfg["num_steps"] = draw(st.sampled_from([0, 1, 2, 3]))
    cfg["made_hidden"] = draw(st.sampled_from([(), (4,), (6, 6)]))
    cfg["context_dim"] = draw(st.sampled_from([0, 3]))
    return cfg
