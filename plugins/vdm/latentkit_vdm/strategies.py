"""Hypothesis strategies for ``vdm`` configs: small models across every option.

``vdm_configs`` is the plugin's ``test_configs``: what ``latentkit verify vdm`` and the
``latentkit_check`` fixture run latentkit's generic checks on. With ``network="linear"`` and
the Gaussian decoder the discrete chain is linear-Gaussian, so the exact-log-p check applies.
"""

from __future__ import annotations

from hypothesis import strategies as st

__all__ = ["vdm_configs"]


@st.composite
def vdm_configs(draw, max_T: int = 4) -> dict:
    """Small ``load_model("vdm", **cfg)`` values: any schedule, decoder, network, loss and
    t sampler; T ≤ ``max_T``; vectors (MLP or linear) or 1×4×4 images (U-Net); a third of
    the MLP and U-Net ones conditional on 3 classes (the linear network reads z alone)."""
    cfg = {
        "num_timesteps": draw(st.integers(1, max_T)),
        "schedule": draw(st.sampled_from(("linear", "cosine", "learned"))),
        "gamma_min": draw(st.floats(-10.0, -1.0)),
        "gamma_max": draw(st.floats(1.0, 8.0)),
        "decoder": draw(st.sampled_from(("discretized", "gaussian"))),
        "loss": draw(st.sampled_from(("continuous", "score-matching", "elbo"))),
        "t_sampler": draw(st.sampled_from(("low-discrepancy", "antithetic", "uniform"))),
        "eps_skip": draw(st.booleans()),
    }
    kind = draw(st.sampled_from(("mlp", "linear", "unet")))
    if kind == "unet":
        cfg.update(data_shape=(1, 4, 4), network="unet", channels=4, channel_mult=(1, 2))
    else:
        cfg.update(data_shape=(draw(st.integers(1, 4)),), network=kind)
        cfg.update(hidden=(draw(st.integers(2, 8)),))
    if kind != "linear":  # the checks bind a seeded condition (docs/checks.md)
        cfg["classes"] = draw(st.sampled_from((0, 0, 3)))
    return cfg
