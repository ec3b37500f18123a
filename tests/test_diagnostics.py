"""ELBO surgery and collapse diagnostics (DESIGN §7.14, §10; ``latentkit.diagnostics``).

Identities checked, with the data x_1..x_N as the empirical distribution and
q(z) = (1/N) Σ_n q(z | x_n):

* E_x KL(q(z|x) ‖ p(z)) = I_q(x; z) + KL(q(z) ‖ p(z)) per draw, to round-off, with each
  side recomputed here densely from the kept draws (no chunking), and the chunked
  logsumexp equal to the dense one for any chunk size.
* 0 ≤ I_q ≤ log N: each draw's log q(z|x_i) − log q(z) ≤ log N holds exactly (q(z) ≥
  q(z|x_i)/N); ≥ 0 holds in expectation only (a draw can be negative), so it is tested as
  a z-test. Two exact ends: N copies of one example give I_q = 0 per draw; a near-point q
  over well-separated examples gives I_q → log N.
* Closed forms for probabilistic PCA (derivations in the tests' docstrings), the exact
  posterior's I_p(x; z) = ½ log det(I + Wᵀ Ψ⁻¹ W), and the DDPM's
  I(x_0; x_t) = ½ log det(I + ᾱ_t² Σ / β̄_t²), decreasing in t.
* A latent scalar with q(z_d|x) = p(z_d) for every x: KL 0, activity 0, reported collapsed.

Statistical checks: |estimate − closed form| ≤ 5 s.e. + a bias allowance of 2·e^{2I}/N for
the mixture estimator (derived in ``test_ppca_learned_posterior_closed_forms``), at fixed
seeds (a 5-s.e. z-test has a false-alarm rate below 1e-6 per comparison).

Mutants tried by hand in ``latentkit/diagnostics/`` (``walks.py``, ``information.py``)
(each made the tests named fail;
reverted):

* ``aggregate_log_prob`` without ``− math.log(n)``: ``test_duplicated_data_has_no_information``,
  ``test_information_reaches_log_n``, both pPCA tests.
* ``aggregate_log_prob``'s logsumexp over ``dim=0`` instead of ``dim=1``:
  ``test_aggregate_log_prob_matches_dense``.
* ``InformationDraws.aggregate_kl`` as ``log_prior − log_q_aggregate`` (the sign):
  ``test_surgery_identity_per_draw`` (all four models),
  ``test_ppca_learned_posterior_closed_forms``.
* ``_Chain.aggregate_log_prob`` pairing draws and examples as ``"(c r)"`` in either repeat:
  ``test_surgery_identity_per_draw`` (the hierarchical VAEs).
* ``_Activity.result`` without the draw-noise correction, or ``_Activity.add`` taking the
  variance over examples instead of draws: ``test_activity_of_a_conditional_layer_is_corrected``.
"""

from __future__ import annotations

import io
import itertools
import json
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

import latentkit as lk
from latentkit import diagnostics as dg
from latentkit.errors import InputError
from latentkit.testing import strategies as lks

CHEAP = settings(max_examples=10)  # exact identities on tiny models: a few examples suffice


@pytest.fixture(autouse=True, scope="module")
def _float64():
    """float64 throughout (exact identities to round-off); the default dtype is restored."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def _softplus_inv(y: float) -> float:
    return math.log(math.expm1(y))


def _linear_vae(D: int, K: int, seed: int, *, scale: float | None = None) -> lk.LatentModel:
    """A pPCA model (linear decoder, Gaussian likelihood) with a linear encoder; with
    ``scale`` the encoder's scales are that constant (no x-dependence)."""
    torch.manual_seed(seed)
    model = lk.load_model("vae", data_shape=(D,), latent_dim=K, architecture="linear").double()
    if scale is not None:
        enc = model.posterior.net[0]
        with torch.no_grad():
            enc.weight[K:] = 0.0
            enc.bias[K:] = _softplus_inv(scale - model.posterior.head.min_scale)
    return model


def _gaussian_data(D: int, N: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    L = torch.randn(D, D, generator=g) / math.sqrt(D)
    C = L @ L.T + 0.1 * torch.eye(D)
    mean = torch.randn(D, generator=g)
    x = mean + torch.randn(N, D, generator=g) @ torch.linalg.cholesky(C).T
    return x, mean, C


def _close(estimate: lk.evaluation.Estimate, exact: float, allowance: float = 0.0) -> None:
    tol = 5 * estimate.stderr + allowance
    assert abs(estimate.mean - exact) <= tol, (estimate, exact, tol)


# --------------------------------------------------------------------------- exact identities


@CHEAP
@given(
    seed=lks.seeds(),
    n=st.integers(1, 30),
    m=st.integers(1, 12),
    pairs=st.integers(1, 400),
)
def test_aggregate_log_prob_matches_dense(seed, n, m, pairs):
    """log q(z) = logsumexp_n log q(z|x_n) − log N, chunked any way, equals the dense sum."""
    g = torch.Generator().manual_seed(seed)
    loc, scale = torch.randn(n, 3, generator=g), torch.rand(n, 3, generator=g) + 0.2
    data = torch.cat([loc, scale], dim=1)
    z = torch.randn(m, 3, generator=g)

    def posterior(xs):
        return lk.distributions.diag_normal(xs[:, :3], xs[:, 3:])

    dense = torch.logsumexp(posterior(data).log_prob(z[:, None]), dim=1) - math.log(n)
    chunked = dg.aggregate_log_prob(posterior, z, data, pairs_per_call=pairs)
    torch.testing.assert_close(chunked, dense, rtol=1e-12, atol=1e-12)


def _dense_chain_log_q(model, zs, data):
    """log q(z_1..z_L | x_n) for every draw (rows of zs) and every example: ``[m, N]``,
    one example at a time through the chain's factors (no chunking, no pairing tricks)."""
    q, L = model.posterior, model.num_layers
    cols = []
    for x in data:
        xs = x.expand(zs[0].shape[0], *x.shape)
        h = q.encode(xs)
        if q.top_down:
            fs = [q.down(l + 1, zs[l], h) for l in range(1, L)] + [q.top(h)]
        else:
            fs = [q.first(h)] + [q.up(l, zs[l - 2], h) for l in range(2, L + 1)]
        cols.append(sum(f.log_prob(z) for f, z in zip(fs, zs)))
    return torch.stack(cols, dim=1)


def _dense_chain_log_prior(model, zs):
    p, L = model.generative, model.num_layers
    ps = [p.transition(l + 1, zs[l]) for l in range(1, L)] + [p.prior(zs[0].shape[0])]
    return sum(d.log_prob(z) for d, z in zip(ps, zs))


@pytest.mark.parametrize(
    "name,config",
    [
        ("vae", dict(latent_dim=3, hidden=(8,))),
        ("beta-vae", dict(latent_dim=2, hidden=(8,), beta=4.0)),
        ("hvae", dict(latent_dims=(3, 2), hidden=(8,), posterior="top-down")),
        ("hvae", dict(latent_dims=(2, 2, 2), hidden=(8,), posterior="bottom-up")),
    ],
)
def test_surgery_identity_per_draw(name, config):
    """E_x KL(q(z|x) ‖ p(z)) = I_q(x; z) + KL(q(z) ‖ p(z)) per draw (DESIGN §7.14), with
    log q(z|x_i), log q(z) and log p(z) each recomputed densely from the kept draws."""
    torch.manual_seed(1)
    model = lk.load_model(name, data_shape=(5,), **config).double()
    data = torch.randn(23, 5)
    d = dg.diagnose(model, data, num_draws=3, batch_size=7, pairs_per_call=11, keep_latents=True)
    N, M = 23, 3
    zs = [z.reshape(N * M, *z.shape[2:]) for z in d.latents]
    dense = _dense_chain_log_q(model, zs, data)  # [(N M), N]
    own = dense.reshape(N, M, N)[torch.arange(N), :, torch.arange(N)]  # [N, M]
    agg = (torch.logsumexp(dense, dim=1) - math.log(N)).reshape(N, M)
    prior = _dense_chain_log_prior(model, zs).reshape(N, M)
    j = d.joint
    torch.testing.assert_close(j.log_q_conditional, own, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(j.log_q_aggregate, agg, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(j.log_prior, prior, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(
        j.mutual_information() + j.aggregate_kl(), j.expected_kl(), rtol=0, atol=1e-12
    )
    assert d.mutual_information.mean + d.aggregate_kl.mean == pytest.approx(
        d.expected_kl.mean, abs=1e-12
    )
    assert d.reconstruction.mean - d.expected_kl.mean == pytest.approx(d.elbo.mean, abs=1e-10)
    if model.num_layers == 1:  # the closed-form KL per scalar sums to the engine's analytic KL
        with torch.no_grad():
            engine = lk.elbo(model, data, estimator="analytic").kl.mean()
        assert float(d.per_dimension_kl.sum()) == pytest.approx(float(engine), rel=1e-10)


def test_markov_chain_information_is_the_first_layers():
    """For a bottom-up Markov q(z_1|x) Π q(z_l|z_{l-1}) the factors above z_1 do not see x,
    so they cancel from log q(z|x_i) − log q(z): I_q(x; z_1..z_L) = I_q(x; z_1), per draw."""
    torch.manual_seed(2)
    model = lk.load_model(
        "hvae", data_shape=(4,), latent_dims=(3, 2), hidden=(8,), posterior="bottom-up"
    ).double()
    d = dg.diagnose(model, torch.randn(40, 4) * 2, num_draws=2, pairs_per_call=50)
    torch.testing.assert_close(
        d.joint.mutual_information(), d.layer_draws[1].mutual_information(), rtol=0, atol=1e-10
    )
    assert d.layers[1].mutual_information is None  # q(z_2|x) is not tractable: not reported


@CHEAP
@given(seed=lks.seeds(), n=st.integers(2, 60), m=st.integers(1, 4))
def test_information_is_at_most_log_n_per_draw(seed, n, m):
    """Each draw's log q(z|x_i) − log q(z) ≤ log N exactly, since q(z) ≥ q(z|x_i)/N."""
    torch.manual_seed(seed)
    model = lk.load_model("vae", data_shape=(3,), latent_dim=2, hidden=(8,)).double()
    d = dg.diagnose(model, 3 * torch.randn(n, 3), num_draws=m, seed=seed)
    assert bool((d.joint.mutual_information() <= math.log(n) + 1e-12).all())


@CHEAP
@given(seed=lks.seeds(), n=st.integers(1, 50))
def test_duplicated_data_has_no_information(seed, n):
    """N copies of one example: q(z) = q(z|x), so I_q = 0 for every draw (and the aggregate KL
    is the expected KL)."""
    torch.manual_seed(seed)
    model = lk.load_model("vae", data_shape=(3,), latent_dim=2, hidden=(8,)).double()
    data = torch.randn(1, 3).expand(n, 3).contiguous()
    d = dg.diagnose(model, data, num_draws=2, seed=seed)
    torch.testing.assert_close(d.joint.mutual_information(), torch.zeros(n, 2), rtol=0, atol=1e-10)


def test_information_reaches_log_n():
    """A near-point q (scale 1e-3) over well-separated examples: every q(z|x_n), n ≠ i, is
    negligible at z ~ q(z|x_i), so I_q = log N to within exp(−huge)."""
    model = _linear_vae(2, 2, seed=0, scale=1e-3)
    with torch.no_grad():
        model.posterior.net[0].weight[:2] = torch.eye(2)
        model.posterior.net[0].bias[:2] = 0.0
    data = torch.stack(torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij"), -1)
    data = data.reshape(64, 2)
    d = dg.diagnose(model, data, num_draws=2)
    torch.testing.assert_close(
        d.joint.mutual_information(), torch.full((64, 2), math.log(64)), rtol=0, atol=1e-9
    )


def test_information_is_nonnegative_in_expectation():
    """I_q ≥ 0 and KL(q(z) ‖ p(z)) ≥ 0 hold for the expectations, not per draw: a z-test."""
    torch.manual_seed(3)
    model = lk.load_model("vae", data_shape=(4,), latent_dim=3, hidden=(16,)).double()
    d = dg.diagnose(model, 0.1 * torch.randn(300, 4), num_draws=2)  # little information
    assert bool((d.joint.mutual_information() < 0).any())  # a draw can be negative
    assert d.mutual_information.mean >= -5 * d.mutual_information.stderr
    assert d.aggregate_kl.mean >= -5 * d.aggregate_kl.stderr


# --------------------------------------------------------------------------- closed forms


def test_ppca_learned_posterior_closed_forms():
    """pPCA with an x-independent Gaussian q(z|x) = N(Ax + b, S), data x ~ N(m, C):

    the aggregate posterior is Gaussian, q(z) = N(μ, Σ) with μ = Am + b, Σ = ACAᵀ + S, so

        I_q(x; z) = h(z) − h(z|x) = ½ log det Σ − ½ log det S,
        KL(q(z) ‖ N(0, I)) = ½ (tr Σ + μᵀμ − K − log det Σ),
        E_x KL(q(z|x) ‖ N(0, I)) = ½ (tr S + tr ACAᵀ + μᵀμ − K − log det S),

    and the last is the sum of the first two. The estimator mixes the N data drawn, not
    the population: with r(z) = q(z|x)/q(z), log q_N(z_i) − log q(z_i) =
    log((1/N) Σ_{n≠i} r_n(z_i) + r_i(z_i)/N), whose mean lies between −(R−1)/(2N) − 1/N
    (second order, the spread of the other N − 1 terms) and log(1 + (R−1)/N) (Jensen), with
    R = E[r] = det(I + S⁻¹ACAᵀ) = e^{2I} for a Gaussian channel. The bias of I and of the
    aggregate KL (equal and opposite) is allowed 2·e^{2I}/N; E KL has none. With M = 1
    the (x_i, z_i) are i.i.d., so std/√N is the standard error.
    """
    D, K, N = 5, 3, 3000
    model = _linear_vae(D, K, seed=4, scale=0.6)
    x, mean, C = _gaussian_data(D, N, seed=5)
    enc = model.posterior.net[0]
    A, b = enc.weight[:K].detach(), enc.bias[:K].detach()
    s2 = model.posterior(x[:1]).variance[0].detach()
    P, S = A @ C @ A.T, torch.diag(s2)
    Sigma, mu = P + S, A @ mean + b
    logdet = torch.logdet
    mi = 0.5 * (logdet(Sigma) - logdet(S))
    agg = 0.5 * (Sigma.trace() + mu @ mu - K - logdet(Sigma))
    expected = 0.5 * (S.trace() + P.trace() + mu @ mu - K - logdet(S))
    assert float(mi + agg) == pytest.approx(float(expected), rel=1e-12)
    d = dg.diagnose(model, x, num_draws=1, seed=6)
    bias = 2 * math.exp(2 * float(mi)) / N
    _close(d.mutual_information, float(mi), bias)
    _close(d.aggregate_kl, float(agg), bias)
    _close(d.expected_kl, float(expected))
    # The closed-form KL per scalar has no draw noise: E_x of ½(s² + m_d² − 1 − log s²).
    per_dim = 0.5 * (s2 + ((x @ A.T + b) ** 2).mean(0) - 1 - s2.log())
    torch.testing.assert_close(d.per_dimension_kl, per_dim, rtol=1e-10, atol=1e-12)


def test_ppca_exact_posterior_information():
    """With the exact posterior and data from the model, q(x, z) = p(x, z), so
    I_q = I_p(x; z) = h(z) − h(z|x) = ½ log det(I + Wᵀ Ψ⁻¹ W) (the posterior covariance is
    (I + WᵀΨ⁻¹W)⁻¹ for every x) and q(z) = p(z): the aggregate KL tends to 0."""
    D, K, N = 6, 3, 2500
    torch.manual_seed(7)
    model = lk.load_model("vae", data_shape=(D,), latent_dim=K, architecture="linear").double()
    exact = model.with_posterior(lk.exact_posterior(model))
    x = lk.sample(model, N)
    spec = model.generative.linear_gaussian()
    W, psi = spec.weight.detach(), spec.noise_var.detach()
    mi = 0.5 * torch.logdet(torch.eye(K) + W.T @ (W / psi[:, None]))
    d = dg.diagnose(exact, x, num_draws=1, seed=8)
    bias = 2 * math.exp(2 * float(mi)) / N
    _close(d.mutual_information, float(mi), bias)
    _close(d.aggregate_kl, 0.0, bias)
    _close(d.expected_kl, float(mi))
    assert d.per_dimension_kl is None and d.notes  # full-covariance q: said, not guessed


# --------------------------------------------------------------------------- collapse


@CHEAP
@given(seed=lks.seeds(), idle=st.integers(0, 3))
def test_a_dimension_equal_to_the_prior_is_collapsed(seed, idle):
    """q(z_d|x) = N(0, 1) = p(z_d) for every x: per-dimension KL 0, activity 0, inactive,
    named in ``collapsed`` and in the verdict; the other (driven) dimensions stay active."""
    K = 4
    model = _linear_vae(5, K, seed=seed)
    enc = model.posterior.net[0]
    with torch.no_grad():
        enc.weight[:K] = 2 * torch.randn(K, 5)
        enc.weight[idle] = 0.0
        enc.bias[idle] = 0.0
        enc.weight[K + idle] = 0.0
        enc.bias[K + idle] = _softplus_inv(1.0 - model.posterior.head.min_scale)
    d = dg.diagnose(model, torch.randn(200, 5), num_draws=2, seed=seed)
    assert float(d.per_dimension_kl[idle]) == pytest.approx(0.0, abs=1e-12)
    assert float(d.activity[idle]) == 0.0
    assert d.active_mask.tolist() == [i != idle for i in range(K)]
    assert d.active_units == K - 1
    assert d.collapsed == (f"z1[{idle}]",)
    assert f"inactive: [{idle}]" in d.verdict


def test_activity_of_a_conditional_layer_is_corrected():
    """A ladder whose q(z_2|x) = N(0, 1) and q(z_1|z_2, x) = N(z_2, 1) for every x: E_q[z|x] = 0
    in both layers, so both activities are 0. The average of M draws of z_1's factor mean
    has Cov_x = 1/M; the draw-noise correction removes it, to a sampling error of about
    √(2/N)/M each for the two variances (0.022 at N = 2000, M = 2): so the threshold here
    is 0.1, 4.5 of those errors, where the uncorrected 1/M = 0.5 would be active."""
    model = lk.load_model(
        "hvae", data_shape=(3,), latent_dims=(2, 2), architecture="linear", posterior="top-down"
    ).double()
    q, unit = model.posterior, _softplus_inv(1.0 - 1e-4)
    with torch.no_grad():
        top, down = q.top_head[0][0], q.down_heads[0][0][0]
        for lin in (top, down):
            lin.weight.zero_()
            lin.bias.zero_()
            lin.bias[2:] = unit
        down.weight[:2, :2] = torch.eye(2)  # mean of z_1 = z_2
    N, M = 2000, 2
    d = dg.diagnose(model, torch.randn(N, 3), num_draws=M, joint=False, active_threshold=0.1)
    z1, z2 = d.layers
    assert z2.activity.abs().max() == 0.0
    assert float(z1.activity.abs().max()) < 6 * math.sqrt(2 / N) / M
    assert d.collapsed == ("z1", "z2")


# --------------------------------------------------------------------------- the DDPM


@CHEAP
@given(sched=st.sampled_from(["linear", "cosine"]), T=st.integers(2, 200), D=st.integers(1, 4))
def test_diffusion_information_decreases_in_t(sched, T, D):
    """I(x_0; x_t) = ½ log det(I + ᾱ_t² Σ / β̄_t²) for Gaussian data decreases strictly in t."""
    model = lk.load_model(
        "ddpm", data_shape=(D,), num_timesteps=T, schedule=sched, network="mlp", hidden=(4,)
    )
    s = model.schedule
    C = torch.eye(D) + 0.5
    info = dg.gaussian_diffusion_information(C, s.alpha_bar[1:].double(), s.beta_bar[1:].double())
    assert bool((info[1:] < info[:-1]).all()) and bool((info > 0).all())


def test_diffusion_information_estimate_matches_gaussian_closed_form():
    """The mixture estimate of I(x_0; x_t) over N Gaussian examples agrees with the closed form
    where I ≤ 1.5 nats (bias allowance 2·e^{2I}/N as for pPCA; the Gaussian channel's R is
    e^{2I} too), never exceeds log N per draw, and decreases along t."""
    D, N, T = 2, 1500, 100
    model = lk.load_model(
        "ddpm", data_shape=(D,), num_timesteps=T, network="mlp", hidden=(4,), decoder="gaussian"
    ).double()
    x, _, C = _gaussian_data(D, N, seed=9)
    ts = [10, 20, 30, 45, 60, 100]
    d = dg.diagnose(model, x, num_draws=1, timesteps=ts, seed=10)
    s = model.schedule
    exact = dg.gaussian_diffusion_information(C, s.alpha_bar[ts], s.beta_bar[ts])
    estimates = [layer.mutual_information for layer in d.layers]
    assert [layer.layer for layer in d.layers] == ts
    for est, want in zip(estimates, exact.tolist()):
        if want <= 1.5:
            _close(est, want, 2 * math.exp(2 * want) / N)
        assert bool((d.layer_draws[ts[0]].mutual_information() <= math.log(N) + 1e-12).all())
    means = [e.mean for e in estimates]
    assert all(a > b for a, b in itertools.pairwise(means) if a > 0.05)
    top = d.layers[-1]
    assert top.aggregate_kl is not None and top.kl_term is not None


# --------------------------------------------------------------------------- the API


def test_diagnose_leaves_the_caller_state_alone():
    """Own random stream (the caller's untouched), no gradients, training mode restored,
    the same figures for the same seed."""
    torch.manual_seed(11)
    model = lk.load_model("vae", data_shape=(4,), latent_dim=2, hidden=(8,)).double().train()
    data = torch.randn(30, 4)
    before = torch.get_rng_state()
    a = dg.diagnose(model, data, seed=3)
    assert torch.equal(torch.get_rng_state(), before)
    assert model.training
    b = dg.diagnose(model, data, seed=3)
    c = dg.diagnose(model, data, seed=4)
    assert a.mutual_information == b.mutual_information
    assert a.mutual_information != c.mutual_information
    assert not a.joint.log_q_conditional.requires_grad


def test_outputs_json_table_and_plots(tmp_path):
    """to_json is plain JSON; the table names the terms; the plots write PNGs; the training
    plot reads ``metrics.jsonl`` lines with :meth:`Diagnostics.metrics` keys (None without)."""
    torch.manual_seed(12)
    model = lk.load_model("hvae", data_shape=(4,), latent_dims=(3, 2), hidden=(8,)).double()
    d = dg.diagnose(model, torch.randn(40, 4), num_draws=2)
    blob = json.loads(json.dumps(d.to_json()))
    assert blob["active_units"] == d.active_units and len(blob["layers"]) == 2
    out = io.StringIO()
    Console(file=out, width=120).print(dg.diagnostics_table(d))
    assert "I_q(x; z)" in out.getvalue() and "KL(q(z) ‖ p(z))" in out.getvalue()
    assert dg.diagnostics_plot(d, tmp_path / "units.png").stat().st_size > 0
    assert dg.comparison_plot({"a": d, "b": d}, tmp_path / "cmp.png").stat().st_size > 0
    ddpm = lk.load_model(
        "ddpm", data_shape=(2,), num_timesteps=20, network="mlp", hidden=(4,), decoder="gaussian"
    ).double()
    dd = dg.diagnose(ddpm, torch.randn(50, 2), num_draws=1)
    assert dd.active_units is None and "no collapse diagnostics" in dd.verdict
    assert dg.diagnostics_plot(dd, tmp_path / "ddpm.png").stat().st_size > 0
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text(json.dumps({"split": "train", "step": 1, "elbo": -3.0}) + "\n")
    assert dg.training_diagnostics_plot(metrics, tmp_path / "none.png") is None
    with metrics.open("a") as f:
        for step in (10, 20):
            f.write(json.dumps({"split": "diagnostics", "step": step, **d.metrics()}) + "\n")
    assert dg.training_diagnostics_plot(metrics, tmp_path / "train.png").exists()


def test_a_long_chain_is_diagnosed_at_diagnosed_timesteps_spaced_geometrically():
    """By default a layer-batched chain of T ≤ DIAGNOSED_TIMESTEPS (16) layers is diagnosed at
    every layer, a longer one at 16 layers spaced geometrically from 1 to T (rounded);
    ``MAX_TIMESTEPS``, its old name, is the same number (not diffusion's 10⁶ cap on T)."""
    from types import SimpleNamespace

    from latentkit.diagnostics import walks

    assert walks.DIAGNOSED_TIMESTEPS == 16
    assert dg.MAX_TIMESTEPS == walks.MAX_TIMESTEPS == walks.DIAGNOSED_TIMESTEPS
    assert walks._timesteps(SimpleNamespace(num_layers=16), None) == list(range(1, 17))
    # round(1000^(k/15)) for k = 0..15
    grid = [1, 2, 3, 4, 6, 10, 16, 25, 40, 63, 100, 158, 251, 398, 631, 1000]
    assert walks._timesteps(SimpleNamespace(num_layers=1000), None) == grid


def test_bad_arguments_are_refused():
    model = lk.load_model("vae", data_shape=(4,), latent_dim=2, hidden=(8,)).double()
    with pytest.raises(InputError, match="num_draws"):
        dg.diagnose(model, torch.randn(5, 4), num_draws=0)
    with pytest.raises(InputError, match="active_threshold"):
        dg.diagnose(model, torch.randn(5, 4), active_threshold=-1.0)
    with pytest.raises(lk.ShapeError):
        dg.diagnose(model, torch.randn(5, 3))
    ddpm = lk.load_model("ddpm", data_shape=(2,), num_timesteps=5, network="mlp", hidden=(4,))
    with pytest.raises(InputError, match="timesteps"):
        dg.diagnose(ddpm.double(), torch.randint(0, 256, (5, 2)) / 127.5 - 1, timesteps=[0, 3])


# ---- in the pipeline: the trainer's log, `latentkit evaluate` and the report ---------------


def test_the_pipeline_reports_the_diagnostics(tmp_path, capsys):
    """`train --report` with train.diagnose_examples writes diagnostics lines and both plots;
    `evaluate --json -` carries the figures; `--diagnose 0` turns them off."""
    import json

    from latentkit.cli import main

    run = tmp_path / "run"
    argv = ["train", "--model", "vae", "--data", "digits", "--steps", "20", "--eval-every",
            "10", "--set", "data.validation=300", "--set", "train.diagnose_examples=100",
            "--set", "latent_dim=4", "--set", "hidden=[16]", "--batch-size", "32",
            "--no-progress", "--run-dir", str(run), "--report", "--iwae-k", "2",
            "--diagnose", "100"]  # fmt: skip
    assert main(argv) == 0
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    diag = [x for x in lines if x["split"] == "diagnostics"]
    assert [x["step"] for x in diag] == [10, 20] and all(x["latent_dims"] == 4 for x in diag)
    report = json.loads((run / "report.json").read_text())
    d = report["diagnostics"]
    assert {"diagnostics", "diagnostics_training"} <= set(report["files"])
    for name in ("diagnostics.png", "diagnostics_training.png"):
        assert (run / name).read_bytes()[:4] == b"\x89PNG"
    mi, agg = d["mutual_information"]["mean"], d["aggregate_kl"]["mean"]
    assert abs(mi + agg - d["expected_kl"]["mean"]) <= 1e-6 * (1 + abs(d["expected_kl"]["mean"]))
    capsys.readouterr()
    assert main(["evaluate", str(run), "--json", "-", "--iwae-k", "0", "--diagnose", "50"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert 0 <= payload["diagnostics"]["mutual_information"]["mean"] <= math.log(50) + 1e-9
    assert main(["evaluate", str(run), "--json", "-", "--iwae-k", "0", "--diagnose", "0"]) == 0
    assert json.loads(capsys.readouterr().out)["diagnostics"] is None
