"""``vdm``'s ``eps_skip`` (LSGM's mixed score parameterisation, additive form): ε̂_θ = β̄_t z_t +
the network's output, β̄_t z_t being E[ε | z_t] for data N(0, I) (``docs/continuous.md``).

Exact identities in float64 with round-off tolerances; the statistical one is a z-test at
Z = 4.5 standard errors at a fixed seed, as in ``tests/test_vdm.py``.
"""

from __future__ import annotations

import math

import pytest
import torch
from latentkit_vdm.gaussian_oracle import OptimalGaussianEps

import latentkit as lk
from latentkit.composition import composed_objective
from latentkit.diffusion import alpha_bar_sq, beta_bar_sq

Z = 4.5
F64 = torch.float64


def _model(network="mlp", schedule="linear", gamma_min=-6.0, gamma_max=5.0, D=3, **kw):
    torch.manual_seed(0)
    cfg = dict(data_shape=(D,), decoder="gaussian", network=network, schedule=schedule)
    cfg.update(gamma_min=gamma_min, gamma_max=gamma_max, hidden=(16,), eps_skip=True, **kw)
    return lk.load_model("vdm", **cfg).double()


def _points_and_closed_form(core):
    """Three data points and log N(x; 0, I) + Σ_d [½ log ᾱ_0² + ½ β̄_0² (x_d² − 1)] at each."""
    x = torch.tensor([[0.3, -1.2, 2.0], [0.0, 0.5, -0.4], [1.5, 1.5, -2.5]], dtype=F64)
    g0, _ = core.gamma(torch.zeros((), dtype=F64))
    a0, s0 = alpha_bar_sq(g0), beta_bar_sq(g0)
    log_normal = -0.5 * (x**2 + math.log(2 * math.pi)).sum(-1)
    return x, log_normal + (0.5 * torch.log(a0) + 0.5 * s0 * (x**2 - 1)).sum(-1)


@pytest.mark.parametrize("schedule", ["linear", "cosine", "learned"])
@pytest.mark.parametrize("network", ["mlp", "linear"])
def test_an_untrained_skip_network_is_the_standard_normal_optimum(network, schedule):
    """Untrained (the last layer starts at zero), ε̂ is E[ε | z_t] for data N(0, I) at every
    (z, t): the oracle ε̂* = β̄_t (z − ᾱ_t m)/(ᾱ_t² s² + β̄_t²) at m = 0, s² = 1; the linear
    network's coefficients (the exact oracles' path) say the same."""
    core = _model(network, schedule).core
    optimum = OptimalGaussianEps(core.log_snr, torch.zeros(3, dtype=F64), torch.ones(3, dtype=F64))
    g = torch.Generator().manual_seed(1)
    z, t = torch.randn(64, 3, generator=g, dtype=F64), torch.rand(64, generator=g, dtype=F64)
    with torch.no_grad():
        torch.testing.assert_close(core.eps(z, t), optimum(z, t), rtol=1e-12, atol=1e-12)
        if network == "linear":
            for got, want in zip(core.linear_coefficients(t), optimum.coefficients(t)):
                torch.testing.assert_close(got, want.expand_as(got), rtol=1e-12, atol=1e-12)


def test_the_skip_is_added_to_a_trained_network_and_survives_guidance():
    """ε̂ = β̄_t z_t + the network's output for a network with weights (not only at zero), and
    classifier-free guidance keeps one β̄_t z_t (its weights 1 + w and −w sum to 1)."""
    model = _model(classes=3)
    core = model.core
    torch.manual_seed(2)
    with torch.no_grad():
        for p in core.net.parameters():
            p.normal_(0, 0.3)
        z, t = torch.randn(8, 3, dtype=F64), torch.rand(8, dtype=F64)
        c = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
        gamma, _ = core.gamma(t)
        out = core.net(z, t, gamma, condition=core.condition_spec.features(c, F64))
        skip = beta_bar_sq(gamma).sqrt().unsqueeze(-1) * z
        torch.testing.assert_close(core.eps(z, t, condition=c), out + skip, rtol=1e-12, atol=0)
        null = core.net(z, t, gamma, condition=core.condition_spec.features(c * 0 + 3, F64))
        guided = core.eps(z, t, condition=c, guidance=2.0)
        torch.testing.assert_close(guided, 3 * out - 2 * null + skip, rtol=1e-10, atol=1e-12)


def test_an_untrained_skip_vdm_bounds_a_standard_normal_up_to_the_decoder_end():
    """With ε̂ = E[ε | z_t] for N(0, I) data, the forward process of N(0, I) is the model's
    path (p(z_1) = N(0, I) is its marginal), so ELBO_∞(x) = log N(x; 0, I) + Σ_d E_{q(z_0|x)}
    [log p(x_d | z_0) − log q(x_d | z_0)] = log N(x; 0, I) + Σ_d [½ log ᾱ_0² + ½ β̄_0² (x_d² − 1)]
    exactly (p(x | z_0) = N(z_0/ᾱ_0, β̄_0²/ᾱ_0²), q(x | z_0) = N(ᾱ_0 z_0, β̄_0²)). z-test of
    the estimator over 40,000 draws (t low-discrepancy, ε, z_0) at three data points."""
    core = _model().core
    x, want = _points_and_closed_form(core)
    torch.manual_seed(3)
    n = 40_000
    with torch.no_grad():
        for row, target in zip(x, want):
            draws = core.elbo(row.expand(n, 3)).total
            se = draws.std() / math.sqrt(n)
            assert abs(float((draws.mean() - target) / se)) < Z, (float(draws.mean()), target)


def test_an_untrained_skip_prior_makes_the_composed_model_the_plain_vae():
    """Under a VAE, an untrained ``eps_skip`` vdm prior (γ from −13.3, so ᾱ_0² = 1 − 1.7e-6)
    is N(0, I) to the bound: the composed objective's mean equals the outer VAE's own −ELBO
    with its N(0, I) prior (z-test on the paired difference, 4,000 draws of each)."""
    torch.manual_seed(4)
    outer = lk.load_model("vae", data_shape=(6,), latent_dim=3, hidden=(8,)).double()
    prior = lk.load_model(
        "vdm",
        data_shape=(3,),
        decoder="gaussian",
        hidden=(8,),
        fourier_exponents=(),
        eps_skip=True,
        gamma_min=-13.3,
    ).double()
    model = lk.compose(outer, prior=prior)
    objective = composed_objective(model)
    x = torch.randn(1, 6, dtype=F64).expand(4000, 6)
    with torch.no_grad():
        composed = objective(model, x)
        plain = -lk.elbo(outer, x, estimator="top-down-mc").total
    diff = composed.mean() - plain.mean()
    se = math.sqrt((composed.var() + plain.var()) / 4000)
    assert abs(float(diff / se)) < Z, (float(composed.mean()), float(plain.mean()))


def test_eps_skip_is_refused_with_an_x_prediction_and_must_be_a_flag():
    with pytest.raises(lk.ConfigError, match="'eps_skip'.*prediction='eps'"):
        lk.load_model("vdm", data_shape=(3,), prediction="x", eps_skip=True)
    with pytest.raises(lk.ConfigError, match="eps_skip"):
        lk.load_model("vdm", data_shape=(3,), eps_skip="yes")


def test_the_exact_normal_part_is_the_closed_form_at_every_draw_of_an_untrained_model():
    """``normal_part = "exact"``: untrained, the residual is 0, so every draw of ELBO_∞(x) is
    the closed form log N(x; 0, I) + Σ_d [½ log ᾱ_0² + ½ β̄_0² (x_d² − 1)] (the estimated
    form's mean, ``test_an_untrained_skip_vdm_bounds_…``), to float64 round-off."""
    core = _model(normal_part="exact").core
    x, want = _points_and_closed_form(core)
    torch.manual_seed(5)
    with torch.no_grad():
        draws = core.elbo(x.repeat(50, 1)).total.view(50, 3)
    torch.testing.assert_close(draws, want.expand(50, 3), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("schedule", ["linear", "learned"])
def test_the_exact_normal_part_estimates_the_same_bound(schedule):
    """With a network of random weights (a residual far from 0) and a conditional model,
    the exact-normal-part estimator and the plain one have the same mean at fixed x
    (z-test on the difference of 40,000 independent draws of each)."""
    models = [_model(schedule=schedule, classes=3, normal_part=p) for p in ("estimated", "exact")]
    torch.manual_seed(6)
    for p in models[0].core.net.parameters():
        p.data.normal_(0, 0.3)
    models[1].load_state_dict(models[0].state_dict())
    x = torch.tensor([[0.4, -0.9, 1.7]], dtype=F64).expand(40_000, 3)
    c = torch.arange(40_000) % 4  # the null class too
    with torch.no_grad():
        a, b = (m.core.elbo(x, condition=c).total for m in models)
    se = math.sqrt((a.var() + b.var()) / 40_000)
    assert abs(float((a.mean() - b.mean()) / se)) < Z, (float(a.mean()), float(b.mean()))
    assert float(b.var()) < float(a.var())  # and with less noise, even here


def test_the_exact_normal_part_is_refused_without_its_conditions():
    with pytest.raises(lk.ConfigError, match="'normal_part'.*eps_skip=True.*gaussian"):
        lk.load_model("vdm", data_shape=(3,), decoder="gaussian", normal_part="exact")
    with pytest.raises(lk.ConfigError, match="'normal_part'.*decoder='discretized'"):
        lk.load_model("vdm", data_shape=(3,), eps_skip=True, normal_part="exact")


def test_the_exact_normal_part_gives_the_network_the_same_gradient_at_every_draw():
    """What docs/compose.md says of the two forms: at one (t, ε), the residual's term
    (``minus_normal``) differs from the whole diffusion term by the network-free model's
    error, so the network's gradient is the same, float64 round-off; the data's is not
    (that difference is the standard-normal part's own noise)."""
    core = lk.load_model("vdm", data_shape=(3,), decoder="gaussian", hidden=(16,),
                         eps_skip=True, normal_part="exact").double().core  # fmt: skip
    torch.manual_seed(3)
    for p in core.net.parameters():  # a trained-looking network: every output non-zero
        p.data.normal_(0.0, 0.5)
    x = torch.randn(8, 3, dtype=F64, requires_grad=True)
    t, noise = torch.rand(8, dtype=F64), torch.randn(8, 3, dtype=F64)
    params = list(core.net.parameters())
    grads = {}
    for minus in (False, True):
        term = core.diffusion_integrand(x, t, noise, minus_normal=minus).sum()
        grads[minus] = torch.autograd.grad(term, [*params, x])
    for whole, residual in zip(grads[False][:-1], grads[True][:-1], strict=True):
        torch.testing.assert_close(residual, whole, rtol=1e-12, atol=1e-12)
    assert not torch.allclose(grads[False][-1], grads[True][-1])
