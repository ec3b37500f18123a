"""Hypothesis strategies of small ``m2`` configs (the model's test configs)."""

from __future__ import annotations

from hypothesis import strategies as st

__all__ = ["m2_configs"]


@st.composite
def m2_configs(draw, max_data_dim: int = 6, max_latent_dim: int = 3) -> dict:
    """Small config values for ``load_model("m2", **cfg)``: linear or MLP nets, a linear or
    MLP classifier, Gaussian or Bernoulli data, 2..4 classes."""
    return {
        "data_shape": (draw(st.integers(1, max_data_dim)),),
        "latent_dim": draw(st.integers(1, max_latent_dim)),
        "architecture": draw(st.sampled_from(["linear", "mlp"])),
        "hidden": (draw(st.integers(1, 8)),),
        "likelihood": draw(st.sampled_from(["gaussian", "bernoulli"])),
        "classes": draw(st.integers(2, 4)),
        "classifier_hidden": draw(st.sampled_from([(), (4,)])),
    }
