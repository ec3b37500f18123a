"""The continuous-time diffusion's identities (DESIGN §7, identity 13; docs/continuous.md).

Exact identities run in float64 with round-off tolerances; statistical ones are z-tests at
Z = 4.5 standard errors at a fixed seed (a false alarm has probability 6.8e-6 per two-sided
comparison under the normal approximation). Gaussian data N(m, diag s²) with the optimal
(linear) ε-network gives closed forms for everything (``latentkit_vdm.gaussian_oracle``).
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from latentkit_vdm.gaussian_oracle import (
    OptimalGaussianEps,
    data_entropy,
    elbo_gap,
    eps_error_given_x,
    mmse_eps,
    ode_gaussian,
)
from latentkit_vdm.model import sample_times
from latentkit_vdm.sampling import sample_ode, sample_sde
from latentkit_vdm.schedule import LearnedLogSNR
from torch.distributions import Normal

import latentkit as lk
from latentkit.diffusion import (
    alpha_bar_sq,
    beta_bar_sq,
    cosine_alpha_bar,
    gamma_from_alpha_bar,
    step_beta_from_alpha_bar,
    step_variance_fraction,
)

Z = 4.5
F64 = torch.float64


def _model(D=2, schedule="linear", gamma_min=-8.0, gamma_max=6.0, T=8, network="linear", **kw):
    cfg = dict(data_shape=(D,), num_timesteps=T, decoder="gaussian", network=network)
    cfg.update(schedule=schedule, gamma_min=gamma_min, gamma_max=gamma_max, hidden=(16,), **kw)
    torch.manual_seed(0)
    return lk.load_model("vdm", **cfg).double()


def _gaussian(D, seed=0):
    g = torch.Generator().manual_seed(seed)
    mean = torch.randn(D, generator=g, dtype=F64)
    var = 0.2 + 2 * torch.rand(D, generator=g, dtype=F64)
    return mean, var


def _optimal(model, mean, var):
    model.core.net = OptimalGaussianEps(model.core.log_snr, mean, var)
    return model


def _data(mean, var, n, seed=1):
    g = torch.Generator().manual_seed(seed)
    return mean + var.sqrt() * torch.randn(n, mean.numel(), generator=g, dtype=F64)


def _randomize(module, seed=3, scale=0.5):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return module


def _z(mean_a, mean_b, se):
    return float((mean_a - mean_b) / se)


def _quadrature(fn, n=20_000):
    """∫_0^1 fn(t) dt by the midpoint rule on n points (error O(n⁻²) for smooth fn)."""
    t = (torch.arange(n, dtype=F64) + 0.5) / n
    return fn(t).mean(0)


# ---- the schedule mathematics ------------------------------------------------------------


schedules = st.sampled_from(("linear", "cosine", "learned"))
gamma_ends = st.tuples(st.floats(-14.0, -1.0), st.floats(1.0, 12.0))


@given(kind=schedules, ends=gamma_ends, seed=st.integers(0, 2**16))
def test_schedule_is_increasing_pinned_and_its_derivative_is_exact(kind, ends, seed):
    """γ(0) = γ_min, γ(1) = γ_max, γ' > 0, and the γ' each schedule returns is dγ/dt
    (autograd), for linear, cosine and the learned monotone network (random weights)."""
    model = _model(schedule=kind, gamma_min=ends[0], gamma_max=ends[1])
    if kind == "learned":
        _randomize(model.core.log_snr, seed, scale=1.0)
    t = torch.linspace(0, 1, 41, dtype=F64, requires_grad=True)
    g, dg = model.core.gamma(t)
    (auto,) = torch.autograd.grad(g.sum(), t)
    assert torch.allclose(dg, auto, rtol=1e-9, atol=1e-9)
    assert bool((dg > 0).all())
    span = model.core.gamma(torch.tensor([0.0, 1.0], dtype=F64))[0]
    want = torch.tensor(ends, dtype=F64)
    if kind == "learned":  # its ends are parameters (randomized): γ_min, γ_min + softplus(span)
        s = model.core.log_snr
        want = torch.stack([s.gamma_min, s.gamma_min + torch.nn.functional.softplus(s.raw_span)])
    assert torch.allclose(span, want, atol=1e-9)


@given(gamma=st.floats(-30.0, 30.0), gs=st.floats(-20.0, 19.0), step=st.floats(1e-6, 10.0))
def test_vp_identities(gamma, gs, step):
    """ᾱ² + β̄² = 1, γ is the inverse of ᾱ(γ), and one step s → t composes the marginals:
    α_{t|s}² β̄_s² + β_{t|s}² = β̄_t² with β_{t|s}² = β̄_t² · (−expm1(γ_s − γ_t))
    (seed 001, eq. 25 in continuous time)."""
    g = torch.tensor(gamma, dtype=F64)
    assert torch.allclose(alpha_bar_sq(g) + beta_bar_sq(g), torch.tensor(1.0, dtype=F64))
    # γ(ᾱ²) has condition number ~ 1/min(ᾱ², β̄²) = 1 + e^{|γ|}: a relative error of a few
    # float64 ulps in ᾱ² becomes that many times (1 + e^{|γ|}) ulps in γ.
    round_off = 16 * torch.finfo(F64).eps * (1 + math.exp(abs(gamma)))
    assert torch.allclose(gamma_from_alpha_bar(alpha_bar_sq(g).sqrt()), g, atol=round_off)
    gs_, gt = torch.tensor(gs, dtype=F64), torch.tensor(gs + step, dtype=F64)
    a_ts_sq = alpha_bar_sq(gt) / alpha_bar_sq(gs_)
    step_var = beta_bar_sq(gt) * step_variance_fraction(gs_, gt)
    assert torch.allclose(a_ts_sq * beta_bar_sq(gs_) + step_var, beta_bar_sq(gt), rtol=1e-12)


def test_step_betas_compose_back_to_alpha_bar():
    """Π_{s ≤ t} α_s = ᾱ_t for the per-step β_t the DDPM plugin derives from ᾱ (uncapped rows),
    and the DDPM's cosine schedule is built from the same shared functions."""
    from latentkit_ddpm.schedule import cosine_beta

    T = 50
    alpha_bar = cosine_alpha_bar(torch.arange(T + 1, dtype=F64) / T)
    beta = step_beta_from_alpha_bar(alpha_bar, cap=1.0)
    composed = torch.cumprod(torch.sqrt(1 - beta**2), 0)
    assert torch.allclose(composed, alpha_bar[1:], rtol=1e-12, atol=1e-15)
    capped = step_beta_from_alpha_bar(alpha_bar)
    assert torch.equal(cosine_beta(T), capped)


# ---- the chains -----------------------------------------------------------------------------


@given(seed=st.integers(0, 2**16), T=st.integers(1, 6), kind=schedules)
@settings(max_examples=15)
def test_down_is_bayes_rule_and_layer_kl_is_vdm_eq13(seed, T, kind):
    """q(z_s | z_t, x) is Bayes' rule on q(z_s | x) q(z_t | z_s), and each layer's KL term is
    ½ expm1(γ_t − γ_s) ‖ε − ε̂_θ(z_t, t)‖² with ε = (z_t − ᾱ_t x)/β̄_t (VDM eq. 13), for an MLP."""
    model = _randomize(_model(D=3, schedule=kind, T=T, network="mlp"), seed)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(4, 3, generator=g, dtype=F64)
    z = torch.randn(4, 3, generator=g, dtype=F64)
    core = model.core
    for l in range(2, T + 2):
        s, t = torch.tensor((l - 2) / T, dtype=F64), torch.tensor((l - 1) / T, dtype=F64)
        a_s, s_s = core.scales(s)
        a_t, s_t = core.scales(t)
        step_var = s_t**2 - (a_t / a_s) ** 2 * s_s**2
        prec = 1 / s_s**2 + (a_t / a_s) ** 2 / step_var
        mean = (a_s * x / s_s**2 + (a_t / a_s) * z / step_var) / prec
        q = model.posterior.down(l, z, x)
        assert torch.allclose(q.mean, mean, rtol=1e-9, atol=1e-9)
        assert torch.allclose(q.variance, (1 / prec).expand_as(z), rtol=1e-9)
        up = model.posterior.up(l, z, x)  # the forward step q(z_t | z_s = z)
        assert torch.allclose(up.mean, (a_t / a_s) * z, rtol=1e-9)
        assert torch.allclose(up.variance, step_var.expand_as(z), rtol=1e-9)
        kl = torch.distributions.kl_divergence(q, model.generative.transition(l, z))
        gs, _ = core.gamma(s)
        gt, _ = core.gamma(t)
        eps = (z - a_t * x) / s_t
        want = 0.5 * torch.expm1(gt - gs) * (eps - core.eps(z, t)).pow(2).sum(-1)
        assert torch.allclose(kl, want, rtol=1e-8, atol=1e-10)


def test_discrete_chain_is_the_exact_oracles_chain_and_its_elbo_is_below_log_p():
    """With a linear ε-network and the Gaussian decoder the discrete-T chain is
    linear-Gaussian (its ``linear_gaussian()`` reproduces every transition exactly):
    latentkit's exact oracle gives log p_T(x), and E[ELBO_T(x)] ≤ log p_T(x) per example
    (z-test over 4,000 draws each)."""
    D = 2
    mean, var = _gaussian(D)
    model = _optimal(_model(D, T=6), mean, var)
    spec = model.generative.linear_gaussian()
    z = torch.randn(3, D, dtype=F64)
    for i, (A, b, v) in enumerate(spec.transitions):
        p = model.generative.transition(i + 2, z)  # p(z_{i+1} | z_{i+2})
        assert torch.allclose(z @ A.T + b, p.mean, rtol=1e-10, atol=1e-12)
        assert torch.allclose(v.expand(3, D), p.variance, rtol=1e-10)
    x = _data(mean, var, 5)
    log_p = lk.exact_log_prob(model, x)
    torch.manual_seed(0)
    r = lk.elbo(model, x, num_samples=4000)
    se = r.samples.std(0) / math.sqrt(4000)
    assert bool(((r.total - log_p) / se < Z).all())
    assert bool((r.total < log_p).all())


def test_end_terms_are_the_closed_forms():
    """KL(q(z_1|x) ‖ N(0, I)) = ½ Σ(ᾱ_1² x² + β̄_1² − 1 − log β̄_1²) (torch's closed form for the
    engine's q(z_1|x)), and the decoder is N(z_0/ᾱ_0, β̄_0²/ᾱ_0²) — at ends where ᾱ_0 and β̄_1
    are far from 1, so that a dropped factor shows."""
    for decoder in ("gaussian", "discretized"):
        model = _model(3, gamma_min=-1.0, gamma_max=1.0, decoder=decoder)
        core = model.core
        x = torch.randn(5, 3, dtype=F64)
        q1 = model.posterior.top(x)
        want = torch.distributions.kl_divergence(q1, model.generative.prior(5))
        assert torch.allclose(core.prior_matching(x), want, rtol=1e-12)
        a0, s0 = core.scales(torch.tensor(0.0, dtype=F64))
        z0 = torch.randn(5, 3, dtype=F64)
        base = core.decoder(z0).base_dist
        assert torch.allclose(base.loc, z0 / a0) and torch.allclose(
            base.scale, (s0 / a0).expand(5, 3)
        )
        a1, s1 = core.scales(torch.tensor(1.0, dtype=F64))
        assert torch.allclose(q1.mean, a1 * x) and torch.allclose(q1.stddev, s1.expand(5, 3))


# ---- probability-flow ODE likelihood ---------------------------------------------------------


@given(D=st.integers(1, 3), seed=st.integers(0, 2**16), kind=st.sampled_from(("linear", "cosine")))
@settings(max_examples=6)
def test_ode_log_prob_equals_the_gaussian_the_ode_carries_the_prior_to(D, seed, kind):
    """Gaussian data with the optimal (linear) ε-network: log p_ODE(x) equals the closed-form
    log N(x; m_0 − k m_1, k²), k = √(v_0/v_1), to solver tolerance (rtol = atol = 1e-9;
    allowed 1e-6 nats, 1000× the local tolerance), with the exact divergence."""
    mean, var = _gaussian(D, seed)
    model = _optimal(_model(D, schedule=kind), mean, var)
    x = _data(mean, var, 4, seed)
    r = lk.ode_log_prob(model, x, rtol=1e-9, atol=1e-9, divergence="exact")
    m, v = ode_gaussian(model.core, mean, var)
    want = Normal(m, v.sqrt()).log_prob(x).sum(-1)
    assert torch.allclose(r.log_density, want, atol=1e-6, rtol=0)
    assert r.divergence == "exact"


def test_ode_gaussian_tends_to_the_data_as_snr_ends_go_to_0_and_infinity():
    """The ODE's Gaussian approaches N(m, s²) as γ_min → −∞ and γ_max → +∞: its error at
    (γ_min, γ_max) = (−24, 24) is below 1e-4 (e^{−12} ≈ 6e-6 relative scale)."""
    mean, var = _gaussian(3)
    errors = []
    for end in (4.0, 12.0, 24.0):
        model = _optimal(_model(3, gamma_min=-end, gamma_max=end), mean, var)
        m, v = ode_gaussian(model.core, mean, var)
        errors.append(float((m - mean).abs().max() + (v - var).abs().max()))
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 1e-4


class _Coupled(torch.nn.Module):
    """A small nonlinear ε-network whose Jacobian is not diagonal: (1 + t)·tanh(z W)."""

    def __init__(self, D: int):
        super().__init__()
        g = torch.Generator().manual_seed(11)
        self.W = torch.nn.Parameter(torch.randn(D, D, generator=g, dtype=F64))

    def forward(self, z, t):
        return (1 + t).unsqueeze(-1) * torch.tanh(z @ self.W)


def test_hutchinson_is_unbiased_and_rademacher_is_exact_for_a_diagonal_jacobian():
    """Hutchinson's estimate of log p_ODE has the exact-divergence value as its mean (z-test
    over 300 Gaussian probes, a network with a full Jacobian), and Rademacher probes give the
    exact value for every probe when ∂f/∂z is diagonal (the linear ε-network), as their
    variance 2(‖S‖_F² − Σ S_ii²) says."""
    D = 3
    model = _model(D, gamma_min=-5.0, gamma_max=5.0)
    model.core.net = _Coupled(D)
    x = torch.randn(1, D, dtype=F64).repeat(300, 1)
    tol = {"rtol": 1e-8, "atol": 1e-8}
    exact = lk.ode_log_prob(model, x[:1], divergence="exact", **tol).log_density
    gen = torch.Generator().manual_seed(0)
    est = lk.ode_log_prob(
        model, x, divergence="hutchinson", probe="gaussian", generator=gen, **tol
    ).log_density
    assert est.std() > 1e-3  # a full Jacobian: the probes do vary
    assert abs(_z(est.mean(), exact[0], est.std() / math.sqrt(300))) < Z
    mean, var = _gaussian(D)
    lin = _optimal(_model(D), mean, var)
    xs = _data(mean, var, 6)
    a = lk.ode_log_prob(lin, xs, divergence="exact", **tol).log_density
    b = lk.ode_log_prob(lin, xs, divergence="hutchinson", **tol).log_density
    assert torch.allclose(a, b, atol=1e-9)


def test_dequantized_bits_per_dim_is_a_bound_on_the_discrete_likelihood():
    """On 8-bit data, E_u[D log w + log p(x + w(u − ½))] ≤ log P(bin of x), checked against the
    bin probability of the ODE's Gaussian (closed form) for a 1-d model (z-test, 2,000 u), and
    tight: the Jensen gap ½ Var_u[log p] ≈ (w ∂log p/∂x)²/24 is below 1e-3 nats here while
    log p changes by 0.08 across the bin — noise over any other interval than the bin
    (e.g. [x, x + w]) misses by ~0.04 nats."""
    mean, var = torch.tensor([0.1], dtype=F64), torch.tensor([0.01], dtype=F64)
    model = _optimal(_model(1), mean, var)
    w = 2 / 255
    x = torch.full((2000, 1), round((0.2 + 1) / w) * w - 1, dtype=F64)
    gen = torch.Generator().manual_seed(0)
    r = lk.ode_log_prob(model, x, dequantize=True, generator=gen, rtol=1e-8, atol=1e-8)
    m, v = ode_gaussian(model.core, mean, var)
    d = Normal(m, v.sqrt())
    log_bin = torch.log(d.cdf(x[:1] + w / 2) - d.cdf(x[:1] - w / 2)).sum()
    se = r.log_prob_bound.std() / math.sqrt(2000)
    assert float((r.log_prob_bound.mean() - log_bin) / se) < Z
    assert float(log_bin - r.log_prob_bound.mean()) < 1e-3 + Z * float(se)
    bpd = -r.log_prob_bound / math.log(2)
    assert torch.allclose(r.bits_per_dim, bpd)


def test_ode_decoder_bound_is_below_the_discrete_log_likelihood_of_ode_plus_decoder():
    """The ODE density on z_0 with the discretized decoder is a model of 8-bit x whose bin
    probability is closed form (z_0 ~ N(c, k²) from the ODE, x = z_0/ᾱ_0 + β̄_0/ᾱ_0 · η binned);
    log p_ODE(z_0) + log p(x|z_0) − log q(z_0|x), z_0 ~ q(z_0|x), is below it in expectation
    (z-test over 2,000 draws) and within 0.05 nats of it (q(z_0|x) is nearly its posterior)."""
    from latentkit_vdm.ode import ode_decoder_bound

    mean, var = torch.tensor([0.1], dtype=F64), torch.tensor([0.3], dtype=F64)
    model = _optimal(_model(1, decoder="discretized"), mean, var)
    w = 2 / 255
    x = torch.full((2000, 1), round((0.2 + 1) / w) * w - 1, dtype=F64)
    gen = torch.Generator().manual_seed(0)
    bound = ode_decoder_bound(model, x, generator=gen, rtol=1e-8, atol=1e-8)
    c, k_sq = ode_gaussian(model.core, mean, var)
    a0, s0 = model.core.scales(torch.tensor(0.0, dtype=F64))
    y = Normal(c / a0, ((k_sq + s0**2) / a0**2).sqrt())
    log_bin = torch.log(y.cdf(x[:1] + w / 2) - y.cdf(x[:1] - w / 2)).sum()
    se = bound.std() / math.sqrt(2000)
    assert float((bound.mean() - log_bin) / se) < Z
    assert float(log_bin - bound.mean()) < 0.05


# ---- the continuous bound ------------------------------------------------------------------


def test_continuous_elbo_gap_at_the_optimum_is_only_the_endpoint_terms():
    """Optimal ε-network, Gaussian data and decoder: E_data[−ELBO_∞] = H(p_data) +
    KL(q(z_1) ‖ N(0, I)) + E KL(q(x|z_0) ‖ p(x|z_0)) (I-MMSE; z-test over 60,000 examples),
    hence E_data[ELBO_∞] ≤ E_data[log p_data] with exactly that gap."""
    D = 3
    mean, var = _gaussian(D)
    model = _optimal(_model(D, gamma_min=-6.0, gamma_max=4.0), mean, var)
    x = _data(mean, var, 60_000)
    torch.manual_seed(0)
    e = model.continuous_elbo(x).total
    prior, decoder = elbo_gap(model.core, mean, var)
    assert prior > 0 and decoder > 0
    want = data_entropy(var) + prior + decoder
    assert abs(_z(-e.mean(), want, e.std() / math.sqrt(x.shape[0]))) < Z


def _discrete_diffusion(core, var, T):
    t = torch.arange(1, T + 1, dtype=F64) / T
    gt, _ = core.gamma(t)
    gs, _ = core.gamma(t - 1 / T)
    return (0.5 * torch.expm1(gt - gs) * mmse_eps(core, var, t)).sum()


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_discrete_bound_improves_as_T_doubles_and_converges_to_the_continuous(kind):
    """Optimal network, data-averaged (closed form): the diffusion term of the T-step bound
    falls strictly each time T doubles (T = 1..8192), and its excess over ½∫γ' E‖ε − ε̂‖² dt
    is first order, excess(2T)/excess(T) ∈ [0.45, 0.55] for T ≥ 512 (the midpoint quadrature
    on 200,000 points is exact to ~1e-9 here)."""
    mean, var = _gaussian(3)
    model = _optimal(_model(3, schedule=kind), mean, var)
    core = model.core
    cont = _quadrature(lambda t: 0.5 * core.gamma(t)[1] * mmse_eps(core, var, t), 200_000)
    Ts = [2**k for k in range(14)]
    disc = torch.stack([_discrete_diffusion(core, var, T) for T in Ts])
    assert bool((disc[1:] < disc[:-1]).all())
    excess = disc - cont
    assert bool((excess > 0).all())
    ratios = excess[1:] / excess[:-1]
    assert bool(((ratios[9:] > 0.45) & (ratios[9:] < 0.55)).all()), ratios


def test_engine_discrete_bound_matches_the_closed_form_at_any_T():
    """``latentkit.elbo`` on ``with_timesteps(T)`` of one network: its summed layer KLs average
    to the closed-form discrete diffusion term (z-test over 40,000 data draws), T = 3 and 16."""
    mean, var = _gaussian(2)
    model = _optimal(_model(2, T=8), mean, var)
    x = _data(mean, var, 40_000)
    torch.manual_seed(0)
    for T in (3, 16):
        other = model.with_timesteps(T)
        assert other.core is model.core and other.num_layers == T + 1
        layer = lk.elbo(other, x).layer_kl.sum(-1)
        want = _discrete_diffusion(model.core, var, T)
        assert abs(_z(layer.mean(), want, layer.std() / math.sqrt(x.shape[0]))) < Z


@pytest.mark.parametrize("sampler", ["low-discrepancy", "antithetic", "uniform"])
def test_continuous_estimator_is_unbiased_against_dense_quadrature(sampler):
    """Given ε, the mean over t of the sampled diffusion term equals ∫_0^1 of it (midpoint rule
    on 20,000 t) for a nonlinear MLP: z-test over 300 batches of 32 (one estimate per batch:
    the t's of a batch are dependent). With the linear network the full estimator (t and ε
    drawn) matches the quadrature of the closed-form E_ε (20,000 draws)."""
    model = _randomize(_model(2, network="mlp"), 7)
    core = model.core
    g = torch.Generator().manual_seed(0)
    x, eps = torch.randn(1, 2, generator=g, dtype=F64), torch.randn(1, 2, generator=g, dtype=F64)
    with torch.no_grad():
        want = _quadrature(
            lambda t: core.diffusion_integrand(x.expand(len(t), 2), t, eps.expand(len(t), 2))
        )
        torch.manual_seed(1)
        batches = torch.stack(
            [
                core.diffusion_integrand(
                    x.expand(32, 2), sample_times(32, sampler, like=x), eps.expand(32, 2)
                ).mean()
                for _ in range(300)
            ]
        )
    assert abs(_z(batches.mean(), want, batches.std() / math.sqrt(300))) < Z
    lin = _randomize(_model(2), 8)
    with torch.no_grad():
        want = _quadrature(
            lambda t: (
                0.5 * lin.core.gamma(t)[1] * eps_error_given_x(lin.core, x.expand(len(t), 2), t)
            )
        )
        xs = x.expand(20_000, 2)
        est = lin.core.diffusion_integrand(
            xs, sample_times(20_000, "uniform", like=x), torch.randn_like(xs)
        )
    assert abs(_z(est.mean(), want, est.std() / math.sqrt(20_000))) < Z


def test_t_samplers_are_uniform_marginally():
    """Each sampler's t lies in [0, 1) and the low-discrepancy and antithetic ones have the
    U(0, 1) mean ½ exactly per batch (even n) — the structure that lowers the variance."""
    like = torch.zeros((), dtype=F64)
    for kind in ("low-discrepancy", "antithetic", "uniform"):
        t = sample_times(64, kind, like=like)
        assert t.shape == (64,) and bool(((t >= 0) & (t < 1)).all())
    assert abs(float(sample_times(64, "antithetic", like=like).mean()) - 0.5) < 1e-12
    lo = sample_times(64, "low-discrepancy", like=like).sort().values
    assert torch.allclose(lo.diff(), torch.full((63,), 1 / 64, dtype=F64), atol=1e-12)


# ---- score matching ---------------------------------------------------------------------------


def test_score_matching_with_g2_is_the_diffusion_term_per_draw():
    """½ g² ‖s_θ − ∇ log q(z_t|x)‖² with g² = γ' β̄_t² and s_θ = −ε̂/β̄_t equals ½ γ' ‖ε − ε̂‖²
    at every (x, t, ε) (float64 round-off), and the λ = β̄² weighting gives ½ ‖ε − ε̂‖²."""
    model = _randomize(_model(3, network="mlp", schedule="cosine"), 2)
    core = model.core
    g = torch.Generator().manual_seed(0)
    x, eps = torch.randn(16, 3, generator=g, dtype=F64), torch.randn(16, 3, generator=g, dtype=F64)
    t = torch.rand(16, generator=g, dtype=F64)
    dsm = core.score_matching_loss(x, t, eps)
    assert torch.allclose(dsm, core.diffusion_integrand(x, t, eps), rtol=1e-10)
    simple = core.score_matching_loss(x, t, eps, "simple")
    z_t = core.q_sample(x, t, eps)
    assert torch.allclose(simple, 0.5 * (eps - core.eps(z_t, t)).pow(2).sum(-1), rtol=1e-10)


def _esm_minus_dsm(model, mean, var, n, seed):
    """Per-draw ESM − DSM with λ = g²: ESM uses the true marginal score of q(z_t) (Gaussian)."""
    core = model.core
    g = torch.Generator().manual_seed(seed)
    x = mean + var.sqrt() * torch.randn(n, mean.numel(), generator=g, dtype=F64)
    t = torch.rand(n, generator=g, dtype=F64)
    eps = torch.randn(x.shape, generator=g, dtype=F64)
    z_t = core.q_sample(x, t, eps)
    gam, _ = core.gamma(t.unsqueeze(-1))
    true_score = -(z_t - alpha_bar_sq(gam).sqrt() * mean) / (
        alpha_bar_sq(gam) * var + beta_bar_sq(gam)
    )
    _, g_sq = core.sde_coefficients(t)
    esm = 0.5 * g_sq * (core.score(z_t, t) - true_score).pow(2).sum(-1)
    return esm - core.score_matching_loss(x, t, eps)


def test_score_matching_equals_explicit_score_matching_up_to_a_theta_free_constant():
    """E[ESM_θ] = E[DSM_θ] − C with C = ½∫γ' E‖ε − ε̂*‖² dt (the diffusion term at the optimum),
    the same C for two unrelated networks (an MLP and a linear one), z-test over 60,000 draws;
    and their gradients agree: E[∇_θ(ESM − DSM)] = 0 per parameter (z-test over 64 batches)."""
    D = 2
    mean, var = _gaussian(D)
    probe = _model(D, gamma_min=-5.0, gamma_max=5.0)
    C = _quadrature(lambda t: 0.5 * probe.core.gamma(t)[1] * mmse_eps(probe.core, var, t))
    for network, seed in (("mlp", 1), ("linear", 2)):
        model = _randomize(_model(D, network=network, gamma_min=-5.0, gamma_max=5.0), seed)
        with torch.no_grad():
            diff = _esm_minus_dsm(model, mean, var, 60_000, seed)
        assert abs(_z(diff.mean(), -C, diff.std() / math.sqrt(60_000))) < Z, network
    model = _randomize(_model(D, gamma_min=-5.0, gamma_max=5.0), 4)
    params = [p for p in model.parameters() if p.requires_grad]
    grads = []
    for r in range(64):
        loss = _esm_minus_dsm(model, mean, var, 256, 100 + r).mean()
        grads.append(torch.cat([g.flatten() for g in torch.autograd.grad(loss, params)]))
    grads = torch.stack(grads)
    se = grads.std(0) / math.sqrt(64)
    moving = se > 1e-12
    assert bool(moving.any())
    assert bool((grads.mean(0)[moving].abs() / se[moving] < Z).all())


# ---- samplers -------------------------------------------------------------------------------


def test_ode_sampler_reaches_the_odes_gaussian_and_the_data():
    """Probability-flow ODE from N(0, I) with the optimal network: the mean and variance of 4,000
    draws match the closed-form Gaussian it carries N(0, I) to (z-tests; the variance's SE from
    the Gaussian 4th moment, √(2/n) v), which is within 1e-3 of the data's N(m, s²) at
    γ = ∓20 (prior mismatch ᾱ_1 = e^{−10}, decoder noise β̄_0 = e^{−10})."""
    mean, var = _gaussian(2)
    model = _optimal(_model(2, gamma_min=-20.0, gamma_max=20.0), mean, var)
    gen = torch.Generator().manual_seed(0)
    z = sample_ode(model, 4000, rtol=1e-6, atol=1e-6, generator=gen)
    m, v = ode_gaussian(model.core, mean, var)
    assert float((m - mean).abs().max()) < 1e-3 and float((v - var).abs().max()) < 1e-3
    n = z.shape[0]
    assert bool(((z.mean(0) - m).abs() / (v / n).sqrt() < Z).all())
    assert bool(((z.var(0) - v).abs() / (v * math.sqrt(2 / n)) < Z).all())


def _em_moments(core, mean, var, steps):
    """Exact mean and variance of the Euler–Maruyama chain's output for the optimal (affine)
    network: z ← z − (A z + c)Δ + g√Δ ξ is affine-Gaussian step by step."""
    m = torch.zeros_like(mean)
    v = torch.ones_like(var)
    dt = 1.0 / steps
    net = core.net
    for k in range(steps, 0, -1):
        t = torch.tensor(k * dt, dtype=F64)
        gam, dg = core.gamma(t)
        sigma = beta_bar_sq(gam).sqrt()
        a, b = net.coefficients(t.reshape(1))
        A = dg * sigma * (a[0] - 0.5 * sigma)
        c = dg * sigma * b[0]
        m = m - (A * m + c) * dt
        v = (1 - A * dt) ** 2 * v + dg * sigma**2 * dt
    return m, v


def test_reverse_sde_sampler_reaches_the_data_moments():
    """Euler–Maruyama on the reverse SDE with the optimal network: the sample mean and variance
    of 4,000 draws (1,000 steps) match the chain's exact Gaussian (z-tests); that Gaussian's
    moment error halves each time the steps double (weak order 1: ratios in [0.45, 0.55] from
    500 to 2,000 steps), and its Richardson limit 2·m(2N) − m(N) is the data's N(m, s²)
    within 1e-4 (the prior mismatch ᾱ_1 = e^{−10} and the O(N⁻²) remainder)."""
    mean, var = _gaussian(2)
    model = _optimal(_model(2, gamma_min=-20.0, gamma_max=20.0), mean, var)
    moments = {N: _em_moments(model.core, mean, var, N) for N in (500, 1000, 2000)}
    errors = {
        N: float((m - mean).abs().max() + (v - var).abs().max()) for N, (m, v) in moments.items()
    }
    assert 0.45 < errors[1000] / errors[500] < 0.55
    assert 0.45 < errors[2000] / errors[1000] < 0.55
    (m1, v1), (m2, v2) = moments[1000], moments[2000]
    assert float((2 * m2 - m1 - mean).abs().max()) < 1e-4
    assert float((2 * v2 - v1 - var).abs().max()) < 1e-4
    m, v = m1, v1
    gen = torch.Generator().manual_seed(0)
    z = sample_sde(model, 4000, steps=1000, generator=gen)
    n = z.shape[0]
    assert bool(((z.mean(0) - m).abs() / (v / n).sqrt() < Z).all())
    assert bool(((z.var(0) - v).abs() / (v * math.sqrt(2 / n)) < Z).all())


# ---- the learned schedule's gradients -----------------------------------------------------


def test_learned_schedule_gets_gradients_through_the_bound():
    """The continuous objective reaches every parameter of the learned γ network (finite,
    non-zero gradients), and γ stays increasing after a large random step."""
    model = _model(3, schedule="learned", network="mlp")
    loss = lk.make_objective("continuous", model)(model, torch.randn(8, 3, dtype=F64)).mean()
    loss.backward()
    sched = model.core.log_snr
    assert isinstance(sched, LearnedLogSNR)
    for name, p in sched.named_parameters():
        assert p.grad is not None and bool(torch.isfinite(p.grad).all()), name
    assert float(sched.gamma_min.grad.abs()) > 0
    _randomize(sched, 9, scale=3.0)
    _, dg = sched(torch.linspace(0, 1, 101, dtype=F64))
    assert bool((dg > 0).all())
