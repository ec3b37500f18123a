"""Hypothesis strategies of small ``iaf`` configs, declared as the model's test configs."""

from __future__ import annotations

from hypothesis import strategies as st


@st.composite
def iaf_configs(draw, max_data_dim: int = 5, max_latent_dim: int = 3) -> dict:
    """Small ``load_model("iaf", **cfg)`` values.

    Half the draws are linear with a Gaussian likelihood of learned or fixed scale: their
    generative chain is linear-Gaussian, so the exact-log-p check applies. A quarter have
    no flow step (q is then the diagonal Gaussian, so the closed-form KL check applies);
    the rest take 1–3 steps, with or without a context and hidden MADE layers.
    """
    linear = draw(st.booleans())
    if linear:
        likelihood, scale = "gaussian", draw(st.sampled_from(["learned", "fixed"]))
    else:
        likelihood = draw(st.sampled_from(["gaussian", "bernoulli", "discretized"]))
        scale = draw(st.sampled_from(["learned", "predicted", "fixed"]))
    cfg = {
        "data_shape": (draw(st.integers(1, max_data_dim)),),
        "latent_dim": draw(st.integers(1, max_latent_dim)),
        "architecture": "linear" if linear else "mlp",
        "hidden": (draw(st.integers(2, 8)),),
        "likelihood": likelihood,
        "num_steps": draw(st.sampled_from([0, 1, 2, 3])),
        "made_hidden": draw(st.sampled_from([(), (4,), (6, 6)])),
        "context_dim": draw(st.sampled_from([0, 3])),
    }
    if likelihood != "bernoulli":
        cfg["likelihood_scale"] = scale
    return cfg
