"""What the generic strategies of ``latentkit.testing.strategies`` draw, on the ``vae`` plugin
(whose config has the encoder/decoder fields) as a plugin author would use them."""

from __future__ import annotations

import pytest
import torch
from hypothesis import find, given, settings
from latentkit_vae.strategies import linear_vae_configs, vae_configs

import latentkit as lk
from latentkit.testing import strategies as lks

FIELDS = {"data_shape", "latent_dim", "architecture", "hidden", "likelihood"}


def _fields_of(cfg: dict) -> set[str]:
    return FIELDS | ({"likelihood_scale"} if cfg["likelihood"] != "bernoulli" else set())


@settings(max_examples=60, derandomize=True, deadline=None, database=None)
@given(cfg=lks.encoder_decoder_configs(max_data_dim=5, max_latent_dim=3))
def test_encoder_decoder_configs_are_linear_gaussian_exactly_when_linear(cfg):
    """The fields, in their ranges; a linear draw has a Gaussian likelihood of learned or
    fixed scale, so its chain is linear-Gaussian (the exact oracle applies), an MLP's not."""
    assert set(cfg) == _fields_of(cfg)
    assert 1 <= cfg["data_shape"][0] <= 5 and 1 <= cfg["latent_dim"] <= 3
    assert 2 <= cfg["hidden"][0] <= 8 and cfg["likelihood"] in lks.LIKELIHOODS
    linear = cfg["architecture"] == "linear"
    if linear:
        assert cfg["likelihood"] == "gaussian" and cfg["likelihood_scale"] in ("learned", "fixed")
    model = lk.load_model("vae", **cfg)
    assert (model.generative.linear_gaussian() is not None) == linear


@settings(max_examples=40, derandomize=True, deadline=None, database=None)
@given(cfg=vae_configs())
def test_vae_configs_build(cfg):
    assert set(cfg) == _fields_of(cfg) | {"classes"}  # the vae's own: plain or conditional
    assert cfg["architecture"] in lks.ARCHITECTURES and 1 <= cfg["hidden"][0] <= 8
    assert cfg.get("likelihood_scale", "learned") in lks.LIKELIHOOD_SCALES
    lk.load_model("vae", **cfg)


@pytest.mark.parametrize("architecture", lks.ARCHITECTURES)
@pytest.mark.parametrize("likelihood", lks.LIKELIHOODS)
def test_vae_configs_cross_every_architecture_with_every_likelihood(architecture, likelihood):
    """Each pair is drawn (``find`` raises when no example has it)."""
    found = find(
        vae_configs(),
        lambda c: (c["architecture"], c["likelihood"]) == (architecture, likelihood),
        # find stops at the first hit; the room is for the plugin's own extra draws (classes)
        settings=settings(database=None, derandomize=True, max_examples=500),
    )
    assert found["architecture"] == architecture


@settings(max_examples=15, derandomize=True, deadline=None, database=None)
@given(case=lks.random_model_cases("vae", linear_vae_configs()))
def test_random_model_cases_give_a_float64_model_off_its_init_and_data_for_it(case):
    """The model in float64 with every parameter redrawn (the likelihood's scale, which its
    init sets to one value, is moved), and a finite batch of its data shape."""
    model, x = case
    assert all(p.dtype == torch.float64 for p in model.parameters())
    assert x.dtype == torch.float64 and x.shape[1:] == model.data_shape
    assert bool(torch.isfinite(x).all())
    fresh = lk.load_model("vae", **lk.unstructure_config(model.config))
    initial = fresh.generative.linear_gaussian().noise_var.double()
    assert not torch.allclose(model.generative.linear_gaussian().noise_var, initial)
