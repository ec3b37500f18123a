"""Hypothesis strategies of small ``vae`` configs: the model's test configs, and the
linear-Gaussian ones its mutants and the property tests of ``tests/`` use."""

from __future__ import annotations

import torch
from hypothesis import strategies as st

from latentkit.testing.strategies import (
    ARCHITECTURES,
    LIKELIHOOD_SCALES,
    LIKELIHOODS,
    encoder_decoder_fields,
    random_model_cases,
)

__all__ = ["linear_vae_cases", "linear_vae_configs", "vae_configs"]


@st.composite
def linear_vae_configs(draw, max_data_dim: int = 6, max_latent_dim: int = 4) -> dict:
    """Config values for ``load_model("vae", **cfg)`` giving a linear-Gaussian (pPCA) VAE."""
    return {
        "data_shape": (draw(st.integers(1, max_data_dim)),),
        "latent_dim": draw(st.integers(1, max_latent_dim)),
        "architecture": "linear",
        "likelihood": "gaussian",
        "likelihood_scale": "learned",
    }


def linear_vae_cases(device: str | torch.device = "cpu") -> st.SearchStrategy:
    """A float64 linear VAE (pPCA: the exact oracles apply) with random parameters, and a
    batch of data for it: ``(model, x)``."""
    return random_model_cases("vae", linear_vae_configs(), device)


@st.composite
def vae_configs(draw, max_data_dim: int = 6, max_latent_dim: int = 4) -> dict:
    """Small config values for ``load_model("vae", **cfg)`` across its options: linear or
    MLP, Gaussian (learned, predicted or fixed scale), Bernoulli or discretized, plain or
    conditional on 3 classes."""
    fields = draw(
        encoder_decoder_fields(
            draw(st.sampled_from(LIKELIHOODS)),
            architecture=st.sampled_from(ARCHITECTURES),
            likelihood_scale=st.sampled_from(LIKELIHOOD_SCALES),
            hidden=st.integers(1, 8),
            max_data_dim=max_data_dim,
            max_latent_dim=max_latent_dim,
        )
    )
    # A third of the configs conditional (a CVAE on 3 classes): the checks run on the model
    # given a seeded class (latentkit.testing.checks.case.given_seeded_condition).
    return {**fields, "classes": draw(st.sampled_from((0, 0, 3)))}
