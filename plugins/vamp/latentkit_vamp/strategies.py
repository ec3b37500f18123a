"""Hypothesis strategies of small ``vamp`` configs, declared as the model's test configs."""

from __future__ import annotations

from hypothesis import strategies as st


@st.composite
def vamp_configs(draw, max_data_dim: int = 5, max_latent_dim: int = 3) -> dict:
    """Small ``load_model("vamp", **cfg)`` values.

    Half the draws are linear with a Gaussian likelihood of learned or fixed scale: p(x) is
    then a Gaussian mixture (``log_marginal``), so the exact-log-p check applies. The prior
    is a mixture, for which torch has no closed-form KL: the analytic-vs-Monte-Carlo KL check
    never applies to this model.
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
        "num_pseudo_inputs": draw(st.integers(1, 4)),
    }
    if likelihood != "bernoulli":
        cfg["likelihood_scale"] = scale
    return cfg
