"""The draw-with-log-density path: a distribution that defines ``rsample_and_log_prob`` (a
flow whose inverse is expensive) gets the same bounds as one evaluated through
``log_prob``, and the engine never calls its ``log_prob``.

Each case wraps a built-in model's posterior factors twice, around the same Gaussians:
``DrawOnly`` offers only ``rsample_and_log_prob`` (its ``log_prob`` raises), ``LogProbOnly``
only ``rsample`` and ``log_prob``. Neither has a registered KL, so every estimator takes its
log-ratio path. Under one seed both consume the same random numbers, so every term must be
equal to the last bit; a draw whose log-density is taken at another draw, or from another
layer, or not used, breaks the equality.
"""

from __future__ import annotations

from typing import ClassVar

import pytest
import torch
from torch.distributions import Distribution

import latentkit as lk
from latentkit.errors import EstimatorError
from latentkit.estimators import ESTIMATORS, draw_with_log_prob


class _Wrapped(Distribution):
    arg_constraints: ClassVar[dict] = {}
    has_rsample = True

    def __init__(self, base: Distribution):
        self.base = base
        super().__init__(base.batch_shape, base.event_shape, validate_args=False)

    def rsample(self, sample_shape=()):
        return self.base.rsample(sample_shape)

    def sample(self, sample_shape=()):
        return self.base.sample(sample_shape)


class LogProbOnly(_Wrapped):
    def log_prob(self, value):
        return self.base.log_prob(value)


class DrawOnly(_Wrapped):
    def rsample_and_log_prob(self, sample_shape=()):
        z = self.base.rsample(sample_shape)
        return z, self.base.log_prob(z)

    def log_prob(self, value):
        raise NotImplementedError("DrawOnly offers no log_prob")


class WrappedPosterior(lk.PosteriorChain):
    """The same posterior chain, every factor wrapped in ``kind``."""

    def __init__(self, inner: lk.PosteriorChain, kind: type[_Wrapped]):
        super().__init__()
        self.inner, self.kind = inner, kind
        self.top_down, self.bottom_up = inner.top_down, inner.bottom_up
        self.layer_batched = inner.layer_batched

    def encode(self, x):
        return self.inner.encode(x)

    def top(self, x):
        return self.kind(self.inner.top(x))

    def down(self, l, z, x):
        return self.kind(self.inner.down(l, z, x))

    def first(self, x):
        return self.kind(self.inner.first(x))

    def up(self, l, z, x):
        return self.kind(self.inner.up(l, z, x))

    def marginal(self, l, x):
        return self.kind(self.inner.marginal(l, x))


MODELS = {
    "vae": dict(name="vae", data_shape=(3,), latent_dim=2, architecture="mlp", hidden=(4,)),
    "hvae-top-down": dict(
        name="hvae", data_shape=(3,), latent_dims=(2, 2, 1), architecture="mlp", hidden=(4,)
    ),
    "hvae-bottom-up": dict(
        name="hvae",
        data_shape=(3,),
        latent_dims=(2, 2, 1),
        architecture="mlp",
        hidden=(4,),
        posterior="bottom-up",
    ),
    "ddpm": dict(name="ddpm", data_shape=(2,), num_timesteps=4, decoder="gaussian", hidden=(4,)),
}


def _models(key: str):
    cfg = dict(MODELS[key])
    torch.manual_seed(0)
    model = lk.load_model(cfg.pop("name"), **cfg).double()
    draw_only = model.with_posterior(WrappedPosterior(model.posterior, DrawOnly))
    log_prob_only = model.with_posterior(WrappedPosterior(model.posterior, LogProbOnly))
    x = torch.randn(5, *model.data_shape, dtype=torch.float64)
    return model, draw_only, log_prob_only, x


def _terms(model, x, estimator, seed=1):
    torch.manual_seed(seed)
    return lk.elbo(model, x, estimator=estimator, num_samples=2).terms


@pytest.mark.parametrize("key", list(MODELS))
def test_every_estimator_gives_the_same_terms_from_the_draws_log_density(key):
    """For every estimator the model supports: terms(draw-only q) = terms(log_prob q),
    exactly, at the same seed (the density of each draw is the one handed back with it)."""
    _, draw_only, log_prob_only, x = _models(key)
    tried = []
    for name, cls in ESTIMATORS.items():
        if cls.supports(draw_only) is not None or name == "enumerated":
            continue
        tried.append(name)
        a, b = _terms(draw_only, x, name), _terms(log_prob_only, x, name)
        assert a.keys() == b.keys()
        for term in a:
            assert torch.equal(a[term], b[term]), (name, term, a[term] - b[term])
    assert tried, "no estimator applied"


@pytest.mark.parametrize("key", ["vae", "hvae-top-down", "hvae-bottom-up"])
def test_the_wrapped_chain_is_the_model_itself(key):
    """The log_prob-only wrapper changes nothing: its per-sample Monte Carlo terms equal the
    unwrapped model's at the same seed, so the draw-only equality above is about the model."""
    model, _, log_prob_only, x = _models(key)
    name = "bottom-up" if model.posterior.bottom_up else "top-down-mc"
    a, b = _terms(model, x, name), _terms(log_prob_only, x, name)
    for term in a:
        assert torch.equal(a[term], b[term]), term


@pytest.mark.parametrize("key", ["vae", "hvae-top-down", "hvae-bottom-up"])
def test_iwae_from_the_draws_log_density(key):
    """IWAE_k is the same with a draw-only q (its log weights come from the estimator)."""
    _, draw_only, log_prob_only, x = _models(key)
    torch.manual_seed(3)
    a = lk.iwae(draw_only, x, k=4)
    torch.manual_seed(3)
    b = lk.iwae(log_prob_only, x, k=4)
    assert torch.equal(a, b)


def test_a_density_offset_in_the_draw_moves_the_bound_by_exactly_that():
    """ELBO(q with log-density + c per layer) = ELBO(q) − c·L: the engine subtracts the
    density it was handed, with its sign, once per layer."""

    class Shifted(DrawOnly):
        def rsample_and_log_prob(self, sample_shape=()):
            z, log_q = super().rsample_and_log_prob(sample_shape)
            return z, log_q + 0.25

    model, draw_only, _, x = _models("hvae-bottom-up")
    shifted = model.with_posterior(WrappedPosterior(model.posterior, Shifted))
    for name in ("bottom-up",):
        torch.manual_seed(1)
        a = lk.elbo(shifted, x, estimator=name).total
        torch.manual_seed(1)
        b = lk.elbo(draw_only, x, estimator=name).total
        torch.testing.assert_close(a, b - 0.25 * model.num_layers, rtol=0, atol=1e-12)


def test_draw_with_log_prob_falls_back_to_a_plain_draw():
    d = LogProbOnly(lk.distributions.diag_normal(torch.zeros(2, 3), torch.ones(2, 3)))
    z, log_q = draw_with_log_prob(d)
    assert z.shape == (2, 3) and log_q is None


def test_path_gradients_refuse_a_draw_only_posterior_with_a_clear_error():
    """STL and DReG need log q at given latents with φ stopped: a draw-only q is refused by
    name; the standard gradient works."""
    _, draw_only, log_prob_only, x = _models("vae")
    for gradient in ("stl", "dreg"):
        loss = lk.make_objective("iwae", log_prob_only, k=2, gradient=gradient)
        assert loss(log_prob_only, x).shape == (5,)
        bad = lk.make_objective("iwae", draw_only, k=2, gradient=gradient)
        with pytest.raises(EstimatorError, match="WrappedPosterior has no log_prob"):
            bad(draw_only, x)
    standard = lk.make_objective("iwae", draw_only, k=2)
    assert torch.isfinite(standard(draw_only, x)).all()
