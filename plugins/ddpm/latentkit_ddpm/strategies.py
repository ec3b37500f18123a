"""Hypothesis strategies for DDPM configs: schedules, and small models across every option.

``ddpm_configs`` is the plugin's ``test_configs``: what ``latentkit verify ddpm`` and the
``latentkit_check`` fixture run latentkit's generic checks on. Configs are small (T ≤ 4,
a few dimensions, tiny networks) so a check runs in milliseconds.
"""

from __future__ import annotations

from hypothesis import strategies as st

__all__ = ["ddpm_configs", "schedules"]


@st.composite
def schedules(draw, min_T: int = 1, max_T: int = 12) -> dict:
    """Config values for a schedule: linear, cosine, or a given β_1..β_T in [0.02, 0.98]."""
    T = draw(st.integers(min_T, max_T))
    kind = draw(st.sampled_from(("linear", "cosine", "given")))
    if kind != "given":
        return {"num_timesteps": T, "schedule": kind}
    beta = draw(st.lists(st.floats(0.02, 0.98), min_size=T, max_size=T))
    return {"num_timesteps": T, "schedule": "given", "beta": tuple(beta)}


@st.composite
def ddpm_configs(draw, max_T: int = 4) -> dict:
    """Small ``load_model("ddpm", **cfg)`` values: any schedule, reverse variance, decoder,
    loss and timestep sampler; vectors through the MLP or 1×4×4 images through the U-Net;
    a third conditional on 3 classes (with guidance's dropout); x̂_0 clipped or not (the
    discretized decoder's data have a range); ε_θ with the β̄_t x_t skip or without."""
    cfg = draw(schedules(1, max_T))
    variance = draw(st.sampled_from(("beta", "posterior", "learned")))
    losses = ("elbo", "hybrid") if variance == "learned" else ("elbo", "simple", "hybrid")
    cfg.update(
        reverse_variance=variance,
        decoder=draw(st.sampled_from(("discretized", "gaussian"))),
        loss=draw(st.sampled_from(losses)),
        timestep_sampler=draw(st.sampled_from(("uniform", "importance"))),
    )
    if draw(st.booleans()):
        cfg.update(data_shape=(draw(st.integers(1, 4)),), hidden=(draw(st.integers(2, 8)),))
    else:
        cfg.update(data_shape=(1, 4, 4), network="unet", channels=4, channel_mult=(1, 2))
    # the checks bind a seeded condition to a conditional model (docs/checks.md)
    cfg["classes"] = draw(st.sampled_from((0, 0, 3)))
    if cfg["decoder"] == "discretized":
        cfg["clip_denoised"] = draw(st.booleans())
    cfg["eps_skip"] = draw(st.booleans())
    return cfg
