"""The ELBO engine: term bookkeeping, estimator choice, and errors for malformed chains."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Normal

import latentkit as lk
from latentkit.chains import GenerativeChain, SingleLayerPosterior


def test_result_terms_are_per_example_and_add_up():
    model = lk.load_model("vae", data_shape=(6,), latent_dim=3)
    x = torch.randn(5, 6)
    r = lk.elbo(model, x, num_samples=3, beta=2.0)
    assert r.total.shape == r.reconstruction.shape == r.prior_matching.shape == (5,)
    assert r.layer_kl.shape == (5, 0) and r.samples.shape == (3, 5)
    assert set(r.terms) == {"reconstruction", "prior_matching"}
    assert torch.allclose(r.total, r.reconstruction - 2.0 * r.kl)
    assert torch.allclose(r.total, r.samples.mean(0))
    assert r.estimator == "analytic"


def test_auto_prefers_analytic_for_top_down_chains():
    model = lk.load_model("vae", data_shape=(2,), latent_dim=1)
    assert lk.elbo(model, torch.zeros(1, 2)).estimator == "analytic"
    assert lk.elbo(model, torch.zeros(1, 2), estimator="bottom-up").estimator == "bottom-up"


def test_gradients_flow_through_the_reparameterized_bound():
    model = lk.load_model("vae", data_shape=(4,), latent_dim=2, hidden=(8,))
    lk.elbo(model, torch.randn(3, 4)).total.sum().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(float(g.abs().sum()) > 0 for g in model.posterior.parameters() for g in [g.grad])


class _BadShapes(GenerativeChain):
    """A plugin mistake: a distribution whose data dims sit in batch_shape."""

    def __init__(self):
        super().__init__((3,), [(2,)])
        self.w = torch.nn.Parameter(torch.zeros(2, 3))

    def prior(self, n):
        return lk.distributions.diag_normal(torch.zeros(n, 2), torch.ones(n, 2))

    def likelihood(self, z1):
        return Normal(z1 @ self.w, 1.0)  # forgot Independent(..., 1)


class _Encoder(SingleLayerPosterior):
    def forward(self, x):
        return lk.distributions.diag_normal(x[:, :2], torch.ones_like(x[:, :2]))


def test_malformed_distribution_shape_is_explained():
    model = lk.LatentModel(_BadShapes(), _Encoder())
    with pytest.raises(lk.EstimatorError, match="Independent") as exc:
        lk.elbo(model, torch.zeros(4, 3))
    assert "log p(x|z_1)" in str(exc.value) and "(4, 3)" in str(exc.value)


def test_posterior_without_a_direction_is_refused():
    class NoDirection(lk.PosteriorChain):
        pass

    with pytest.raises(TypeError, match="neither top_down nor bottom_up"):
        lk.LatentModel(_BadShapes(), NoDirection())


def test_sample_shapes_and_latents():
    model = lk.load_model("vae", data_shape=(1, 2, 2), latent_dim=3)
    x, zs = lk.sample(model, 7, return_latents=True)
    assert x.shape == (7, 1, 2, 2) and [z.shape for z in zs] == [(7, 3)]
    assert lk.sample(model, 2, likelihood_mean=True).shape == (2, 1, 2, 2)


def test_layer_batched_terms_sit_at_their_example_and_layer():
    """One call over every layer computes (example, layer) pairs as ``(c b)`` rows and
    hands them back as ``[b, c]``. Its per-(example, layer) KL must agree with calls of one
    layer each (``pairs_per_call`` = batch, where the layout is trivial): for two unlike
    examples repeated R times, each (example, layer) mean differs by less than 5 standard
    errors of the difference (a false alarm about 1 in 10⁶ per comparison)."""
    torch.manual_seed(0)
    # A short chain of unlike steps and a network far from ε̂ = 0 (whose KLs would not
    # depend on x_0), so that every (example, layer) cell has its own size.
    model = lk.load_model("ddpm", data_shape=(2,), num_timesteps=4, schedule="given",
                          beta=(0.02, 0.2, 0.5, 0.8), hidden=(8,)).double()  # fmt: skip
    for param in model.parameters():
        torch.nn.init.normal_(param, std=1.0)
    base = torch.tensor([[-1.0, -1.0], [1.0, 1.0]], dtype=torch.float64)
    x = base.repeat(4000, 1)  # row r is example r % 2
    n = x.shape[0]
    together = lk.elbo(
        model, x, estimator="layer-batched", pairs_per_call=3 * n, validate=False
    ).layer_kl
    one_each = lk.elbo(model, x, estimator="layer-batched", pairs_per_call=n, validate=False)
    one_each = one_each.layer_kl
    assert together.shape == one_each.shape == (n, 3)
    for e in (0, 1):
        a, b = together[e::2], one_each[e::2]
        se = (a.var(0) / a.shape[0] + b.var(0) / b.shape[0]).sqrt()
        assert bool(((a.mean(0) - b.mean(0)).abs() <= 5 * se).all()), (e, a.mean(0), b.mean(0))
    cells = torch.stack([one_each[e::2].mean(0) for e in (0, 1)]).flatten()
    apart = (cells[:, None] - cells[None, :]).abs() + torch.eye(6, dtype=cells.dtype) * 1e9
    assert apart.min() > 20 * se.max()  # all six cells differ: no shuffled layout passes
