"""Property tests for the hierarchical VAE (``hvae``): DESIGN §7 identities 1, 2, 3 and 10.

The linear-Gaussian ``hvae`` (random depth L ∈ {2, 3, 4}, random widths, random parameters)
has an exact log p(x) and an exact posterior chain q* at any depth (``latentkit.oracles``),
so identity 1 is checked exactly, draw by draw, not only on average.

Precision: float64 on every device (CPU and CUDA alike), tolerances from float64 round-off
(``close``). Statistics: z-tests at Z = 4.5 over independent draws; one-sided
P(N(0,1) > 4.5) = 3.4e-6 per comparison, two-sided 6.8e-6. A ``ci`` run (25 examples per
test, ≤ 4 examples per batch, ≤ 3 layer terms) makes fewer than 2,000 comparisons, so
the chance of any false alarm is below 1.4 % by the union bound, and the ``ci`` profile
is derandomized (torch seeds are drawn by Hypothesis) so a run is reproducible.
"""

from __future__ import annotations

import math

import pytest
import torch
from einops import rearrange, repeat
from hypothesis import given
from hypothesis import strategies as st

import latentkit as lk
from latentkit.testing import strategies as lks
from latentkit.testing.checks import assert_in_expectation

Z = 4.5  # z-test threshold: one-sided false alarm 3.4e-6, two-sided 6.8e-6 per comparison
DRAWS = 256  # independent draws per example behind every z-test


def close(a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor | float = 0.0) -> bool:
    """|a − b| ≤ 1e-11·(1 + |b| + scale), ``scale`` the size of the terms summed to get ``a``
    (their cancellation is where round-off grows). float64 ε ≈ 2e-16 times the condition
    numbers of the Cholesky-factored covariances (every variance ≥ min_scale², parameters
    O(1)) stays well below 1e-11; the worst seen over 500 ``thorough`` examples is 4e-15."""
    return bool(((a - b).abs() <= 1e-11 * (1 + b.abs() + scale)).all())


# ---- strategies ----------------------------------------------------------------------


@st.composite
def linear_hvae_configs(draw, posterior: str | None = None) -> dict:
    """A linear-Gaussian hvae: depth 2–4, widths 1–4, data 1–6, Gaussian fixed/learned scale."""
    depth = draw(st.integers(2, 4))
    cfg = dict(
        data_shape=(draw(st.integers(1, 6)),),
        latent_dims=tuple(draw(st.integers(1, 4)) for _ in range(depth)),
        architecture="linear",
        likelihood="gaussian",
        likelihood_scale=draw(st.sampled_from(["learned", "fixed"])),
        fixed_scale=draw(st.floats(0.3, 2.0)),
        posterior=posterior or draw(st.sampled_from(["top-down", "bottom-up"])),
    )
    return cfg


@st.composite
def mlp_hvae_configs(draw, posterior: str | None = None) -> dict:
    """A nonlinear hvae: depth 2–4, one or two small hidden layers, any likelihood."""
    depth = draw(st.integers(2, 4))
    return dict(
        data_shape=draw(st.sampled_from([(3,), (5,), (1, 2, 3)])),
        latent_dims=tuple(draw(st.integers(1, 4)) for _ in range(depth)),
        architecture="mlp",
        hidden=tuple(draw(st.lists(st.integers(1, 8), min_size=0, max_size=2))),
        activation=draw(st.sampled_from(["silu", "tanh", "relu"])),
        likelihood=draw(st.sampled_from(["gaussian", "bernoulli", "discretized"])),
        likelihood_scale=draw(st.sampled_from(["learned", "predicted", "fixed"])),
        posterior=posterior or draw(st.sampled_from(["top-down", "bottom-up"])),
    )


@st.composite
def hvaes(draw, configs: st.SearchStrategy[dict], device: torch.device):
    """(model, x): random parameters (seeded), float64 on ``device``, a batch of 1–4.

    x is drawn from the model itself, so Bernoulli and 8-bit data are valid for their
    likelihoods; a linear model instead gets arbitrary data in [-3, 3].
    """
    cfg = draw(configs)
    model = lk.load_model("hvae", **cfg).to(device=device, dtype=torch.float64)
    lks.randomize_parameters(model, draw(lks.seeds()))
    if cfg["architecture"] == "linear":
        x = draw(lks.data_batches(cfg["data_shape"], batch_size=st.integers(1, 4), device=device))
    else:
        torch.manual_seed(draw(lks.seeds()))
        x = lk.sample(model, draw(st.integers(1, 4)))
    return model, x


def replicate(x: torch.Tensor, r: int = DRAWS) -> torch.Tensor:
    return repeat(x, "b ... -> (r b) ...", r=r)


def per_draw(values: torch.Tensor, r: int = DRAWS) -> torch.Tensor:
    """``[(r b), ...]`` from a replicated batch → ``[r, b, ...]``."""
    return rearrange(values, "(r b) ... -> r b ...", r=r)


def mean_and_se(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean over the draws (dim 0) and its standard error."""
    return values.mean(0), values.std(0) / math.sqrt(values.shape[0])


def posterior_draws(
    model: lk.LatentModel, x: torch.Tensor
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """[z_1..z_L] ~ q(·|x) and log q(z|x), drawn in the order the engine's estimator draws
    them (top-down: z_L first; bottom-up: z_1 first), one ``rsample`` per layer, so under the
    same torch seed these are the very draws the estimator used."""
    q, L = model.posterior, model.num_layers
    if q.top_down:
        d = q.top(x)
        zs = [d.rsample()]
        log_q = d.log_prob(zs[0])
        for l in range(L, 1, -1):
            d = q.down(l, zs[0], x)
            zs.insert(0, d.rsample())
            log_q = log_q + d.log_prob(zs[0])
        return zs, log_q
    d = q.first(x)
    zs = [d.rsample()]
    log_q = d.log_prob(zs[0])
    for l in range(2, L + 1):
        d = q.up(l, zs[-1], x)
        zs.append(d.rsample())
        log_q = log_q + d.log_prob(zs[-1])
    return zs, log_q


def log_joint(model: lk.LatentModel, x: torch.Tensor, zs: list[torch.Tensor]) -> torch.Tensor:
    """log p(x, z_1..z_L) = log p(z_L) + Σ log p(z_{l-1}|z_l) + log p(x|z_1), from the chain."""
    p = model.generative
    out = p.prior(x.shape[0]).log_prob(zs[-1]) + p.likelihood(zs[0]).log_prob(x)
    for l in range(2, model.num_layers + 1):
        out = out + p.transition(l, zs[l - 1]).log_prob(zs[l - 2])
    return out


def exact_chain_log_prob(
    model: lk.LatentModel, x: torch.Tensor, zs: list[torch.Tensor]
) -> torch.Tensor:
    """log q*(z|x) = log q*(z_L|x) + Σ log q*(z_{l-1}|z_l, x): the exact posterior's density."""
    exact = lk.exact_posterior(model)
    out = exact.top(x).log_prob(zs[-1])
    for l in range(2, model.num_layers + 1):
        out = out + exact.down(l, zs[l - 1], x).log_prob(zs[l - 2])
    return out


def log_weights(model: lk.LatentModel, x: torch.Tensor) -> torch.Tensor:
    """The engine's log w = log p(x,z) − log q(z|x), one draw per example (its MC estimator)."""
    name = "bottom-up" if model.posterior.bottom_up else "top-down-mc"
    return lk.elbo(model, x, estimator=name, validate=False).total


# ---- identity 1: log p(x) = ELBO(q) + KL(q ‖ p(z|x)) -----------------------------------


@given(data=st.data(), seed=lks.seeds())
def test_log_weight_plus_posterior_log_ratio_is_log_p_on_every_draw(data, seed, device):
    """Identity 1, per draw (seed 001 eq. 10): for every z ~ q(·|x), at any depth,

        log w(z) + log q(z|x) − log q*(z|x) = log p(x),   log w = log p(x,z) − log q(z|x),

    with log w from the engine's Monte Carlo estimator (top-down-mc for the ladder,
    bottom-up for the Markov posterior), q* the exact posterior chain and log p the exact
    marginal. Averaging over q gives log p = ELBO + KL(q ‖ q*) ≥ ELBO on every example.
    """
    model, x = data.draw(hvaes(linear_hvae_configs(), device))
    xr = replicate(x, 16)
    torch.manual_seed(seed)
    log_w = log_weights(model, xr)
    torch.manual_seed(seed)
    zs, log_q = posterior_draws(model, xr)
    log_pxz = log_joint(model, xr, zs)
    assert close(log_w, log_pxz - log_q, scale=log_pxz.abs() + log_q.abs())  # the same draws
    log_q_star = exact_chain_log_prob(model, xr, zs)
    log_p = lk.exact_log_prob(model, xr)
    scale = log_w.abs() + log_q.abs() + log_q_star.abs()
    assert close(log_w + log_q - log_q_star, log_p, scale=scale)


@given(data=st.data(), posterior=st.sampled_from(["top-down", "bottom-up"]))
def test_expected_elbo_is_below_exact_log_p(data, posterior, device):
    """Identity 1's inequality in expectation: E_q[ELBO estimate] ≤ log p(x), one-sided
    z-test per example over 256 draws — with the ladder's analytic estimator and with the
    bottom-up (Markov) posterior's Monte Carlo estimator."""
    model, x = data.draw(hvaes(linear_hvae_configs(posterior), device))
    mean, se = mean_and_se(lk.elbo(model, x, num_samples=DRAWS).samples)
    log_p = lk.exact_log_prob(model, x)
    assert bool((mean <= log_p + Z * se + 1e-9 * (1 + log_p.abs())).all())


@given(data=st.data())
def test_exact_posterior_gives_log_p_on_every_sample(data, device):
    """Identity 1, equality case: with q = q* = p(z|x) plugged in at any depth, every
    Monte Carlo sample of log p(x,z) − log q*(z|x) is log p(x): zero variance, so the
    spread over 16 samples is round-off, and IWAE_k = log p for every k."""
    model, x = data.draw(hvaes(linear_hvae_configs("top-down"), device))
    exact = model.with_posterior(lk.exact_posterior(model))
    log_p = lk.exact_log_prob(model, x)
    result = lk.elbo(exact, x, num_samples=16, estimator="top-down-mc")
    assert close(result.samples, log_p.expand(16, -1), scale=result.reconstruction.abs())
    assert close(lk.iwae(exact, x, 8), log_p, scale=result.reconstruction.abs())


@given(data=st.data())
def test_exact_posterior_analytic_estimator_is_unbiased_for_log_p(data, device):
    """Identity 1 with q = q*, analytic KLs: E[analytic ELBO] = log p (two-sided z-test).

    Not zero-variance: each draw is log p plus the martingale differences
    log p(x|z_l) − E[log p(x|z_l) | z_{l+1}], l = 1..L (z_{L+1} meaning none), which vanish
    only in expectation; the per-draw identity holds for the log-ratio estimator (above).
    """
    model, x = data.draw(hvaes(linear_hvae_configs("top-down"), device))
    exact = model.with_posterior(lk.exact_posterior(model))
    log_p = lk.exact_log_prob(model, x)
    samples = lk.elbo(exact, x, num_samples=DRAWS, estimator="analytic").samples
    mean, se = mean_and_se(samples)
    assert bool(((mean - log_p).abs() <= Z * se + 1e-9 * (1 + log_p.abs())).all())


# ---- identity 2: ELBO_β ≤ ELBO for β ≥ 1, ≥ for β ≤ 1 ---------------------------------


@given(data=st.data(), beta=lks.betas(0.0, 20.0), seed=lks.seeds())
def test_beta_orders_the_bound_on_the_same_draw(data, beta, seed, device):
    """Identity 2 (seed 000): ELBO_β − ELBO = (1 − β)·Σ KL, and every analytic KL is ≥ 0,
    so on the same draw (same torch seed) ELBO_β ≤ ELBO for β ≥ 1 and ≥ for β ≤ 1, exactly."""
    configs = st.one_of(linear_hvae_configs("top-down"), mlp_hvae_configs("top-down"))
    model, x = data.draw(hvaes(configs, device))
    torch.manual_seed(seed)
    r1 = lk.elbo(model, x, estimator="analytic")
    torch.manual_seed(seed)
    rb = lk.elbo(model, x, beta=beta, estimator="analytic")
    assert torch.equal(rb.reconstruction, r1.reconstruction)  # the same draw
    assert bool((r1.kl >= 0).all())
    tol = 1e-12 * (r1.reconstruction.abs() + (1 + beta) * r1.kl)
    if beta >= 1:
        assert bool((rb.total <= r1.total + tol).all())
    if beta <= 1:
        assert bool((rb.total >= r1.total - tol).all())
    assert bool(((rb.total - r1.total - (1 - beta) * r1.kl).abs() <= tol).all())


# ---- identity 3: ELBO ≤ IWAE_k ≤ IWAE_k' ≤ log p (in expectation) ----------------------


@given(data=st.data(), k=st.integers(1, 8), factor=st.integers(2, 8))
def test_iwae_orders_between_elbo_and_log_p(data, k, factor, device):
    """Identity 3 (Burda et al., 2016): ELBO ≤ E[IWAE_k] ≤ E[IWAE_k'] ≤ log p, k' = factor·k,
    at any depth and for both posteriors; one-sided z-tests over 256 independent replicates
    of each bound (ELBO replicates from the engine's default estimator)."""
    model, x = data.draw(hvaes(linear_hvae_configs(), device))
    log_p = lk.exact_log_prob(model, x)
    xr = replicate(x)
    m_e, se_e = mean_and_se(per_draw(lk.elbo(model, xr).total))
    m_k, se_k = mean_and_se(per_draw(lk.iwae(model, xr, k)))
    m_kk, se_kk = mean_and_se(per_draw(lk.iwae(model, xr, k * factor)))
    slack = 1e-9 * (1 + log_p.abs())
    assert bool((m_e <= m_k + Z * torch.hypot(se_e, se_k) + slack).all())
    assert bool((m_k <= m_kk + Z * torch.hypot(se_k, se_kk) + slack).all())
    assert bool((m_kk <= log_p + Z * se_kk + slack).all())


@pytest.mark.parametrize("posterior", ["top-down", "bottom-up"])
def test_iwae_closes_the_gap_at_depth(posterior):
    """Power check for identity 3 on a 3-layer model with an untrained q: the gap
    log p − ELBO is clearly positive and IWAE_256 recovers most of it (a wrong IWAE,
    e.g. a mean of log w instead of a log-mean-exp, would recover none)."""
    torch.manual_seed(5)
    model = lk.load_model(
        "hvae", data_shape=(4,), latent_dims=(3, 2, 2), architecture="linear", posterior=posterior
    ).double()
    x = lk.sample(model, 64)
    log_p = lk.exact_log_prob(model, x)
    gap_elbo = (log_p - lk.elbo(model, x, num_samples=64).total).mean()
    gap_iwae = (log_p - lk.iwae(model, x, 256)).mean()
    assert gap_elbo > 1.0
    assert 0 <= gap_iwae < 0.5 * gap_elbo


# ---- identity 10: KL ≥ 0; analytic KL = Monte Carlo KL in expectation -----------------


@given(data=st.data(), seed=lks.seeds())
def test_every_layer_kl_is_nonnegative(data, seed, device):
    """Identity 10: the prior-matching KL and every per-layer KL(q(z_{l-1}|z_l,x) ‖
    p(z_{l-1}|z_l)) of the ladder posterior are ≥ 0, in closed form, on every draw."""
    configs = st.one_of(linear_hvae_configs("top-down"), mlp_hvae_configs("top-down"))
    model, x = data.draw(hvaes(configs, device))
    torch.manual_seed(seed)
    r = lk.elbo(model, replicate(x, 16), estimator="analytic")
    assert r.estimator == "analytic"
    assert r.layer_kl.shape == (16 * x.shape[0], model.num_layers - 1)
    assert bool((r.prior_matching >= 0).all())
    assert bool((r.layer_kl >= 0).all())


@given(data=st.data(), seed=lks.seeds())
def test_analytic_and_monte_carlo_terms_agree_in_expectation(data, seed, device):
    """Identity 10: each term — reconstruction, prior matching, each layer's KL — has the
    same expectation under the analytic and the top-down Monte Carlo (log-ratio) estimator.

    Both estimators at the same draws (one seed), so the closed form is a control variate
    for the log-ratio: the heavy-tailed spread across z_l (a layer's KL of ~10⁵ nats at
    randomized parameters) cancels, and the reconstruction terms agree draw by draw. The
    kit's sequential two-sided z-test per example and term (``assert_in_expectation``: 4.5
    standard errors at 64 paired draws, then at 512 and 4,096 fresh ones before it fails).
    """
    configs = st.one_of(linear_hvae_configs("top-down"), mlp_hvae_configs("top-down"))
    model, x = data.draw(hvaes(configs, device))

    drawn: dict[int, tuple[dict, dict]] = {}  # stage → (analytic, Monte Carlo) terms

    def terms(r: int, stage: int) -> tuple[dict, dict]:
        if stage not in drawn:
            xr = replicate(x, r)
            with lks.seeded(seed + 7919 * stage, device):
                a = lk.elbo(model, xr, estimator="analytic").terms
            with lks.seeded(seed + 7919 * stage, device):
                m = lk.elbo(model, xr, estimator="top-down-mc").terms
            drawn[stage] = tuple({t: per_draw(v, r) for t, v in side.items()} for side in (a, m))
        return drawn[stage]

    for term in terms(64, 0)[0]:
        assert_in_expectation(
            lambda r, stage, term=term: tuple(side[term] for side in terms(r, stage)),
            f"E[{term}]",
            relation="=",
            names=("analytic", "Monte Carlo"),
            paired=True,
        )


# ---- both posterior variants, any architecture ----------------------------------------


@given(data=st.data())
def test_both_posterior_variants_give_finite_bounds(data, device):
    """Top-down (ladder) and bottom-up (Markov) posteriors on linear and MLP chains, with
    every likelihood: the engine picks analytic resp. bottom-up, and ELBO and IWAE are
    finite ``[batch]`` tensors with IWAE_1's log w on the same footing as the ELBO."""
    model, x = data.draw(hvaes(st.one_of(linear_hvae_configs(), mlp_hvae_configs()), device))
    r = lk.elbo(model, x, num_samples=2)
    expected = "analytic" if model.config.posterior == "top-down" else "bottom-up"
    assert r.estimator == expected
    assert r.total.shape == (x.shape[0],)
    assert r.layer_kl.shape == (x.shape[0], model.num_layers - 1)
    assert bool(torch.isfinite(r.samples).all())
    assert bool(torch.isfinite(lk.iwae(model, x, 4)).all())


def test_estimators_follow_the_posterior_declaration():
    """The ladder is top-down only, the Markov chain bottom-up only; asking the engine for
    an estimator the declaration does not allow is a clear error."""
    kw = dict(data_shape=(3,), latent_dims=(2, 2), architecture="linear")
    ladder = lk.load_model("hvae", **kw)
    markov = lk.load_model("hvae", posterior="bottom-up", **kw)
    assert (ladder.posterior.top_down, ladder.posterior.bottom_up) == (True, False)
    assert (markov.posterior.top_down, markov.posterior.bottom_up) == (False, True)
    x = torch.randn(2, 3)
    with pytest.raises(lk.EstimatorError, match="not top-down"):
        lk.elbo(markov, x, estimator="analytic")
    with pytest.raises(lk.EstimatorError, match="not bottom-up"):
        lk.elbo(ladder, x, estimator="bottom-up")


def test_training_steps_recompute_the_ladder_features():
    """Two optimizer steps on the same batch tensor: the ladder's bottom-up features are
    recomputed with the new parameters each pass (no stale graph is reused): the engine
    encodes once per pass, and the chain keeps no state between passes."""
    model = lk.load_model("hvae", data_shape=(4,), latent_dims=(3, 2), hidden=(8,))
    opt = torch.optim.SGD(model.parameters(), lr=1e-2)
    x = torch.randn(5, 4)
    calls = []
    model.posterior.blocks[0].register_forward_hook(lambda *a: calls.append(1))
    for _ in range(2):
        opt.zero_grad()
        lk.training_loss(model, x).mean().backward()
        opt.step()
    assert len(calls) == 2
    assert not any(isinstance(v, torch.Tensor) for v in vars(model.posterior).values())


# ---- the oracle's reach, sampling, registration, configuration ------------------------


@given(depth=st.integers(2, 6), scale=st.sampled_from(["learned", "fixed"]))
def test_linear_chain_exposes_its_linear_gaussian_spec(depth, scale):
    """architecture="linear" with a Gaussian fixed/learned scale is linear-Gaussian at any
    depth: one (A, b, v) per transition, matching the chain's own conditionals."""
    dims = tuple(range(depth + 1, 1, -1))
    model = lk.load_model(
        "hvae", data_shape=(3,), latent_dims=dims, architecture="linear", likelihood_scale=scale
    ).double()
    spec = model.generative.linear_gaussian()
    assert len(spec.transitions) == depth - 1
    z = torch.randn(4, dims[1], dtype=torch.float64)
    A, b, v = spec.transitions[0]
    step = model.generative.transition(2, z)
    assert torch.allclose(step.mean, z @ A.T + b)
    assert torch.allclose(step.variance, v.expand(4, -1))


@pytest.mark.parametrize(
    "config",
    [
        dict(architecture="mlp"),
        dict(architecture="linear", likelihood_scale="predicted"),
        dict(architecture="linear", likelihood="bernoulli"),
        dict(architecture="linear", likelihood="discretized"),
    ],
)
def test_exact_oracle_refuses_nonlinear_or_non_gaussian_chains(config):
    """Anything but a linear chain with a Gaussian fixed/learned scale is not linear-Gaussian:
    ``linear_gaussian()`` is None and the oracle says so."""
    model = lk.load_model("hvae", data_shape=(3,), latent_dims=(2, 2), **config)
    assert model.generative.linear_gaussian() is None
    with pytest.raises(lk.NotTractableError, match="not linear-Gaussian"):
        lk.exact_log_prob(model, torch.zeros(2, 3))


def test_ancestral_samples_have_the_chain_shapes():
    """latentkit.sample draws z_L ~ p(z_L), then each z_{l-1} | z_l, then x | z_1."""
    model = lk.load_model("hvae", data_shape=(1, 2, 3), latent_dims=(4, 3, 2), hidden=(8,))
    x, zs = lk.sample(model, 5, return_latents=True)
    assert x.shape == (5, 1, 2, 3)
    assert [tuple(z.shape) for z in zs] == [(5, 4), (5, 3), (5, 2)]


def test_hvae_is_registered_through_its_entry_point():
    """``hvae`` comes from the latentkit-hvae distribution's entry point, like a third party's."""
    assert "hvae" in lk.list_models()
    assert lk.get_model_spec("hvae").plugin == "latentkit-hvae"


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("latent_dims", (4,), "L ≥ 2"),
        ("latent_dims", (), "L ≥ 2"),
        ("latent_dims", (4, 0), "ints > 0"),
        ("data_shape", (0,), "ints > 0"),
        ("architecture", "conv", "linear"),
        ("hidden", (8, -1), "ints > 0"),
        ("activation", "sigmoid", "silu"),
        ("likelihood", "poisson", "gaussian"),
        ("likelihood_scale", "free", "learned"),
        ("fixed_scale", 0.0, "0"),
        ("posterior", "sideways", "top-down"),
        ("min_scale", -1e-3, "0"),
        ("stage_hidden", ((8,),), "one non-empty list of widths"),  # 1 list for L = 2
        ("stage_hidden", ((8,), (8,), (8,)), "2 here"),
        ("stage_hidden", ((8,), ()), "non-empty"),
        ("stage_hidden", ((8,), (0,)), "ints > 0"),
        ("stage_hidden", (8, 8), "expected tuple"),  # cattrs: a list of lists
    ],
)
def test_config_errors_name_the_field(field, value, says):
    """A bad value is a ConfigError naming the model, the field and what is allowed."""
    with pytest.raises(lk.ConfigError) as err:
        lk.load_model("hvae", **{field: value})
    message = str(err.value)
    assert "hvae" in message and field in message and says in message, message


def _linear_shapes(module: torch.nn.Module) -> list[tuple[int, int]]:
    """(in, out) of every nn.Linear in ``module``, in order."""
    return [
        (m.in_features, m.out_features) for m in module.modules() if isinstance(m, torch.nn.Linear)
    ]


@pytest.mark.parametrize("posterior", ["top-down", "bottom-up"])
def test_stage_hidden_sets_each_stage_widths(posterior):
    """The IWAE paper's two-layer model: 784-200-200-100 and 100-100-50. Stage 1 (between x
    and z_1) takes the first widths, stage 2 (between z_1 and z_2) the second, in p and q."""
    m = lk.load_model(
        "hvae",
        data_shape=(784,),
        latent_dims=(100, 50),
        stage_hidden=[[200, 200], [100, 100]],  # lists, as TOML gives them
        activation="tanh",
        likelihood="bernoulli",
        posterior=posterior,
    )
    p, q = m.generative, m.posterior
    assert _linear_shapes(p.decoder) == [(100, 200), (200, 200), (200, 784)]
    assert _linear_shapes(p.transitions[0]) == [(50, 100), (100, 100), (100, 200)]
    if posterior == "bottom-up":
        assert _linear_shapes(q.first_head) == [(784, 200), (200, 200), (200, 200)]
        assert _linear_shapes(q.up_heads[0]) == [(100, 100), (100, 100), (100, 100)]
    else:  # h_1 = f_1(x) is 200 wide, h_2 = f_2(h_1) 100; q(z_1 | z_2, x) reads (z_2, h_1)
        assert _linear_shapes(q.blocks[0]) == [(784, 200), (200, 200)]
        assert _linear_shapes(q.blocks[1]) == [(200, 100), (100, 100)]
        assert _linear_shapes(q.top_head) == [(100, 100)]
        assert _linear_shapes(q.down_heads[0]) == [(250, 100), (100, 100), (100, 200)]
    x = torch.bernoulli(torch.full((3, 784), 0.3))
    bound = lk.elbo(m, x)
    assert bound.total.shape == (3,) and bool(torch.isfinite(bound.total).all())


def test_stage_hidden_equal_to_hidden_builds_the_same_model():
    """Every stage at ``hidden``'s widths is the default model: the same modules, and from the
    same seed the same weights (so checkpoints from before the field existed still load)."""
    cfg = dict(data_shape=(6,), latent_dims=(4, 3, 2), hidden=(5, 7), likelihood="bernoulli")
    for posterior in ("top-down", "bottom-up"):
        torch.manual_seed(0)
        a = lk.load_model("hvae", posterior=posterior, **cfg)
        torch.manual_seed(0)
        b = lk.load_model("hvae", posterior=posterior, stage_hidden=[[5, 7]] * 3, **cfg)
        sa, sb = a.state_dict(), b.state_dict()
        assert list(sa) == list(sb)
        assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_ladder_features_take_the_last_width_of_each_stage():
    """With uneven widths inside a stage, h_l is as wide as stage l's last layer: block l+1,
    the top head and q(z_{l-1} | z_l, x) read that width, not the stage's first."""
    m = lk.load_model(
        "hvae", data_shape=(6,), latent_dims=(4, 3), stage_hidden=[[12, 7], [5, 9]],
        likelihood="bernoulli", posterior="top-down",
    )  # fmt: skip
    q = m.posterior
    assert _linear_shapes(q.blocks[0]) == [(6, 12), (12, 7)]
    assert _linear_shapes(q.blocks[1]) == [(7, 5), (5, 9)]
    assert _linear_shapes(q.top_head) == [(9, 6)]
    assert _linear_shapes(q.down_heads[0]) == [(3 + 7, 5), (5, 9), (9, 8)]
    assert bool(torch.isfinite(lk.elbo(m, torch.bernoulli(torch.full((2, 6), 0.5))).total).all())
