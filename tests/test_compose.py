"""Composed models (``latentkit.compose``, ``latentkit.composition``) against the theory.

A linear-Gaussian outer VAE (pPCA) over a linear-Gaussian prior (pPCA, a linear-Gaussian
reverse DDPM chain, a ``vdm`` with the linear ε-network and a Gaussian decoder) is
linear-Gaussian end to end, so every identity is checked against a closed form computed here by
hand (a forward, top-down propagation of moments; the oracle uses the backward recursion).

Exact identities run in float64 with tolerance rel = 1e-8 · (1 + size): round-off through
O(D³) linear algebra on matrices whose condition numbers stay below ~1e5 (every noise variance
≥ e^-3 here), far below any real error. Statistical ones are z-tests at Z = 4.5 over
independent replicates (false alarm 3.4e-6 one-sided, 6.8e-6 two-sided, per comparison).
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from latentkit_ddpm import (
    DDPMPosterior,
    LinearGaussianReverse,
    gaussian_data_reverse,
    make_schedule,
)
from latentkit_ddpm.model import DDPMConfig
from torch.distributions import MultivariateNormal, kl_divergence

import latentkit as lk
from latentkit.composition import (
    ComposedConfig,
    ComposedModel,
    build_composed,
    compose,
    compose_by_name,
    composed_objective,
)
from latentkit.testing import strategies as lks

F64 = torch.float64
Z = 4.5
REPLICATES = 400


def close(a: torch.Tensor, b: torch.Tensor, size: torch.Tensor | float = 0.0) -> bool:
    """|a − b| ≤ 1e-8 · (1 + |b| + size): float64 round-off (module docstring)."""
    return bool(((a - b).abs() <= 1e-8 * (1 + b.abs() + size)).all())


def replicate(x: torch.Tensor, r: int = REPLICATES) -> torch.Tensor:
    return x.repeat(r, *([1] * (x.ndim - 1)))  # "b ... -> (r b) ..."


def mean_and_se(values: torch.Tensor, r: int = REPLICATES) -> tuple[torch.Tensor, torch.Tensor]:
    v = values.reshape(r, -1)
    return v.mean(0), v.std(0) / math.sqrt(r)


# --- models -----------------------------------------------------------------------------------


def loaded(name: str, seed: int, *, perturb: bool = False, **config) -> lk.LatentModel:
    """A registered model in float64, its parameters drawn (or perturbed) from ``seed``."""
    model = lk.load_model(name, **config).double()
    return (lks.perturb_parameters if perturb else lks.randomize_parameters)(model, seed)


def linear_vae(data_dim: int, latent_dim: int, seed: int) -> lk.LatentModel:
    shape = (data_dim,)
    return loaded("vae", seed, data_shape=shape, latent_dim=latent_dim, architecture="linear")


def linear_ddpm(dim: int, T: int, seed: int) -> lk.LatentModel:
    """A linear-Gaussian reverse chain (random A_t, b_t, var_t) with the DDPM's forward q."""
    gen = torch.Generator().manual_seed(seed)

    def u(lo, hi, *shape):
        return torch.rand(*shape, generator=gen, dtype=F64) * (hi - lo) + lo

    reverse = LinearGaussianReverse(
        u(0.3, 1.5, T, dim), u(-1, 1, T, dim), u(0.1, 1.0, T, dim), u(-1, 1, dim), u(0.5, 2, dim)
    )
    schedule = make_schedule(DDPMConfig(data_shape=(dim,), num_timesteps=T, schedule="cosine"))
    return lk.LatentModel(reverse, DDPMPosterior(schedule, 1)).double()


def linear_vdm(dim: int, T: int, seed: int) -> lk.LatentModel:
    """A vdm with the linear ε-network and a Gaussian decoder (noise variances ≥ e^-3)."""
    linear = {"network": "linear", "decoder": "gaussian", "gamma_min": -3.0, "gamma_max": 3.0}
    return loaded("vdm", seed, perturb=True, data_shape=(dim,), num_timesteps=T, **linear)


def linear_hvae(data_dim: int, latent_dims: tuple[int, ...], seed: int) -> lk.LatentModel:
    """A linear-Gaussian hierarchical VAE with the bottom-up (Markov) posterior."""
    markov = {"architecture": "linear", "posterior": "bottom-up"}
    return loaded("hvae", seed, data_shape=(data_dim,), latent_dims=latent_dims, **markov)


@st.composite
def linear_pairs(draw, kinds=("vae", "ddpm", "vdm")) -> tuple[ComposedModel, torch.Tensor]:
    """A linear-Gaussian outer model (pPCA, or an hvae of 2-3 layers) over a random
    linear-Gaussian prior, and a batch of data."""
    D, d, seed = draw(st.integers(1, 5)), draw(st.integers(1, 3)), draw(lks.seeds())
    below = draw(st.lists(st.integers(1, 3), max_size=2), label="outer layers below the top")
    outer = linear_hvae(D, (*below, d), seed) if below else linear_vae(D, d, seed)
    kind = draw(st.sampled_from(kinds))
    if kind == "vae":
        inner = linear_vae(d, draw(st.integers(1, 3)), seed + 1)
    elif kind == "ddpm":
        inner = linear_ddpm(d, draw(st.integers(1, 4)), seed + 1)
    else:
        inner = linear_vdm(d, draw(st.integers(1, 4)), seed + 1)
    return compose(outer, prior=inner), draw(lks.data_batches((D,)))


def moments(
    spec: lk.LinearGaussianSpec, top: tuple[torch.Tensor, torch.Tensor] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and covariance of a linear-Gaussian chain's data, propagated top-down from the
    prior, or from ``top`` = (mean, covariance) of its top latent in the prior's place
    (independent of the oracle's backward recursion)."""
    m, S = (spec.prior_mean, torch.diag(spec.prior_var)) if top is None else top
    for A, b, v in reversed(spec.transitions):  # transitions[i] is p(z_{i+1} | z_{i+2})
        m, S = A @ m + b, A @ S @ A.T + torch.diag(v)
    W = spec.weight
    return W @ m + spec.bias, W @ S @ W.T + torch.diag(spec.noise_var)


def outer_by_hand(model: ComposedModel) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """W_A, b_A, Ψ_A of the outer pPCA, read from its parameters."""
    p = model.outer.generative
    layer = p.decoder[0]
    return layer.weight, layer.bias, p.lik.linear_gaussian_variance()


def marginal_by_hand(model: ComposedModel) -> MultivariateNormal:
    """p(x): the prior model's marginal N(μ_B, Σ_B) carried down the outer chain; for a pPCA
    outer, N(W_A μ_B + b_A, W_A Σ_B W_Aᵀ + Ψ_A) with W_A, b_A, Ψ_A read from its parameters."""
    mu_B, sigma_B = moments(model.prior.generative.linear_gaussian())
    if model.outer_layers > 1:
        return MultivariateNormal(
            *moments(model.outer.generative.linear_gaussian(), (mu_B, sigma_B))
        )
    W, b, psi = outer_by_hand(model)
    return MultivariateNormal(W @ mu_B + b, W @ sigma_B @ W.T + torch.diag(psi))


class HandPosterior(lk.SingleLayerPosterior):
    """p(z | x) of x = W z + b + N(0, diag ψ) under the prior z ~ N(μ, Σ): full covariance."""

    def __init__(self, W, b, psi, mu, sigma):
        super().__init__()
        precision = torch.linalg.inv(sigma) + W.T @ (W / psi[:, None])
        self.cov = torch.linalg.inv(precision).detach()
        self.cov = 0.5 * (self.cov + self.cov.T)
        self.prior_term = (torch.linalg.solve(sigma, mu)).detach()
        self.W, self.b, self.psi = W.detach(), b.detach(), psi.detach()

    def forward(self, x):
        mean = (self.prior_term + (x - self.b) / self.psi @ self.W) @ self.cov.T
        return MultivariateNormal(mean, covariance_matrix=self.cov)


def with_exact_outer(model: ComposedModel, prior: lk.LatentModel) -> ComposedModel:
    """``model``'s outer part with q_A = the exact p(z | x) under ``prior``'s marginal."""
    mu_B, sigma_B = moments(prior.generative.linear_gaussian())
    q = HandPosterior(*outer_by_hand(model), mu_B, sigma_B)
    return compose(model.outer.with_posterior(q), prior=prior)


# --- structure and errors ---------------------------------------------------------------------


def test_layers_are_the_outer_then_the_prior_and_both_train():
    model = compose(
        linear_vae(5, 3, 0),
        prior=lk.load_model(
            "hvae", data_shape=(3,), latent_dims=(2, 4), posterior="bottom-up", hidden=(8,)
        ).double(),
    )
    assert model.generative.latent_shapes == ((3,), (2,), (4,))
    assert model.data_shape == (5,) and model.outer_layers == 1
    keys = set(model.state_dict())
    assert {k.split(".")[1] for k in keys} == {"outer", "inner"}
    assert "generative.inner.transitions.0.0.0.weight" in keys
    x = torch.randn(4, 5, dtype=F64)
    for loss in (-lk.elbo(model, x).total, composed_objective(model)(model, x)):
        model.zero_grad()
        loss.sum().backward()
        for part in (model.outer, model.prior):  # gradients reach both chains of both parts
            for chain in (part.generative, part.posterior):
                grads = [p.grad for p in chain.parameters() if p.grad is not None]
                assert grads and any(bool(g.abs().sum() > 0) for g in grads), chain


def test_shapes_must_agree():
    outer = linear_vae(5, 3, 0)
    with pytest.raises(lk.ShapeError, match=r"prior's data shape \[4\].*top latent shape \[3\]"):
        compose(outer, prior=linear_vae(4, 2, 1))


def test_parts_that_cannot_join_are_refused_by_name():
    outer = linear_vae(5, 3, 0)
    ladder = lk.load_model("hvae", data_shape=(3,), latent_dims=(2, 2), hidden=(4,)).double()
    with pytest.raises(lk.ConfigError, match="top-down-only posterior chain.*bottom-up"):
        compose(outer, prior=ladder)
    with pytest.raises(lk.ConfigError, match="top-down-only posterior chain"):
        compose(
            lk.load_model("hvae", data_shape=(5,), latent_dims=(3, 2)).double(),
            prior=linear_vae(2, 1, 0),
        )
    binary = lk.load_model("vae", data_shape=(3,), latent_dim=2, likelihood="bernoulli").double()
    with pytest.raises(lk.ConfigError, match="discrete likelihood"):
        compose(outer, prior=binary)
    with pytest.raises(lk.DTypeError, match="float64.*float32"):
        compose(outer, prior=lk.load_model("vae", data_shape=(3,), latent_dim=2))
    with pytest.raises(lk.InputError, match="prior must be a latentkit.LatentModel"):
        compose(outer, prior=torch.nn.Linear(2, 3))


def test_direct_calls_of_the_posterior_follow_one_pass():
    """``up`` above h_1 called with the data itself uses B's encoding of the z_La last seen with
    that tensor; with another tensor it says what is missing."""
    model = compose(linear_vae(4, 2, 0), prior=linear_ddpm(2, 3, 1))
    q, x = model.posterior, torch.randn(3, 4, dtype=F64)
    z1 = q.first(x).sample()
    h1 = q.up(2, z1, x).sample()
    assert q.up(3, h1, x).sample().shape == (3, 2)
    with pytest.raises(lk.EstimatorError, match="needs the prior model's encoding of z_1"):
        q.up(3, h1, x.clone())


# --- exactness: linear-Gaussian end to end ----------------------------------------------------


@given(case=linear_pairs())
def test_exact_log_prob_is_the_closed_form(case):
    """log p(x) = log N(x; W_A μ_B + b_A, W_A Σ_B W_Aᵀ + Ψ_A) for every prior kind."""
    model, x = case
    assert model.generative.linear_gaussian() is not None
    by_hand = marginal_by_hand(model).log_prob(x)
    assert close(lk.exact_log_prob(model, x), by_hand)


@given(case=linear_pairs())
def test_exact_posterior_gives_log_p_on_every_draw(case):
    """With q = the composed model's exact posterior, every draw's log p(x, z, h) − log q(z, h | x)
    is log p(x), and so is IWAE_k."""
    model, x = case
    log_p = marginal_by_hand(model).log_prob(x)
    exact = model.with_posterior(lk.exact_posterior(model))
    r = lk.elbo(exact, x, num_samples=8, estimator="top-down-mc")
    size = r.reconstruction.abs() + r.prior_matching.abs() + r.layer_kl.abs().sum(-1)
    assert close(r.samples, log_p.expand(8, -1), size)
    assert close(lk.iwae(exact, x, 8), log_p, size)


@given(D=st.integers(1, 5), d=st.integers(1, 3), seed=lks.seeds(), data=st.data())
def test_bottom_up_exact_parts_give_log_p_on_every_draw(D, d, seed, data):
    """The joined posterior with exact parts, q_A = p(z | x) and q_B = p_B(h | z), is the exact
    posterior: every bottom-up draw gives log p(x), through the engine (a pPCA prior under its
    exact posterior; a DDPM prior whose reverse chain is exact for Gaussian data, so that its own
    forward q is exact), and so does the composed objective's bound at every draw."""
    gen = torch.Generator().manual_seed(seed)
    if data.draw(st.booleans(), label="ddpm prior"):
        schedule = make_schedule(DDPMConfig(data_shape=(d,), num_timesteps=3, schedule="cosine"))
        q = DDPMPosterior(schedule, 1).double()  # its schedule's constants in float64 first
        mean = torch.randn(d, generator=gen, dtype=F64)
        std = torch.rand(d, generator=gen, dtype=F64) + 0.5
        prior = lk.LatentModel(gaussian_data_reverse(q.schedule, mean, std), q)
    else:
        prior = linear_vae(d, data.draw(st.integers(1, 3), label="e"), seed + 1)
        prior = prior.with_posterior(lk.exact_posterior(prior))
    model = with_exact_outer(compose(linear_vae(D, d, seed), prior=prior.double()), prior)
    x = data.draw(lks.data_batches((D,)), label="x")
    log_p = marginal_by_hand(model).log_prob(x)
    r = lk.elbo(model, x, num_samples=8)
    assert r.estimator == "bottom-up"
    size = r.reconstruction.abs() + r.prior_matching.abs() + r.layer_kl.abs().sum(-1)
    assert close(r.samples, log_p.expand(8, -1), size)
    per_draw = "bottom-up" if prior.posterior.bottom_up else "top-down-mc"
    split = -composed_objective(
        model, prior_objective="elbo", prior_objective_config={"estimator": per_draw}
    )(model, x)
    assert close(split, log_p, size.max())


@given(case=linear_pairs(), k=st.integers(1, 4), factor=st.integers(2, 8))
def test_log_p_bounds_iwae_which_bounds_the_elbo_and_rises_with_k(case, k, factor):
    """ELBO ≤ E[IWAE_k] ≤ E[IWAE_k'] ≤ log p (k' = factor · k): one-sided z-tests over
    replicates, with the composed model's own (learned, inexact) posterior."""
    model, x = case
    log_p = lk.exact_log_prob(model, x)
    xr = replicate(x)
    m_e, se_e = mean_and_se(lk.elbo(model, xr).total.detach())
    m_k, se_k = mean_and_se(lk.iwae(model, xr, k).detach())
    m_kk, se_kk = mean_and_se(lk.iwae(model, xr, k * factor).detach())
    slack = 1e-9 * (1 + log_p.abs())
    assert bool((m_e <= m_k + Z * torch.sqrt(se_e**2 + se_k**2) + slack).all())
    assert bool((m_k <= m_kk + Z * torch.sqrt(se_k**2 + se_kk**2) + slack).all())
    assert bool((m_kk <= log_p + Z * se_kk + slack).all())


# --- IWAE takes the joint weight --------------------------------------------------------------


class Distorted(lk.SingleLayerPosterior):
    """q_B(h | z) = N(μ*(z) + L u, c · Σ*) from the exact N(μ*(z), Σ* = L Lᵀ): wider (c > 1), so
    the weight p_B(h | z)/q_B(h | z) is bounded; KL(q_B ‖ p_B(h | z)) = ½ (D c + |u|² − D − D ln c)
    whatever z."""

    def __init__(self, exact, u: torch.Tensor, c: float):
        super().__init__()
        self.exact, self.u, self.c = exact, u, c

    def forward(self, z):
        d = self.exact.top(z)
        tril = d.scale_tril * math.sqrt(self.c)
        return MultivariateNormal(d.loc + d.scale_tril @ self.u, scale_tril=tril)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_iwae_weight_is_the_joint_one(seed):
    """With q_A = p(z | x) and an inexact q_B, the joint weight divided by p(x) is
    p_B(h | z)/q_B(h | z): E[exp(IWAE_k − log p)] = 1 for every k (two-sided z-tests), and IWAE_k
    closes the gap as k grows (at k = 512, by more than 3/4 of the ELBO's gap; the asymptotic gap
    Var(w/p)/2k is < 0.002 here). A weight built from the reduced bound exp(ELBO_B(z)) would give
    p(x) · exp(−KL) at every draw (KL(q_B ‖ p_B(h|z)) does not depend on z): mean exp(−KL) ≈ 0.55
    and no progress with k — shown on the reduced weights, computed here by hand."""
    e, c, u = 2, 1.5, torch.tensor([0.6, -0.8], dtype=F64)
    prior = linear_vae(2, e, seed + 1)
    prior = prior.with_posterior(Distorted(lk.exact_posterior(prior), u, c))
    model = with_exact_outer(compose(linear_vae(3, 2, seed), prior=prior), prior)
    x = lk.sample(model, 2)
    log_p = lk.exact_log_prob(model, x).detach()
    kl = 0.5 * (e * c + u.dot(u) - e - e * math.log(c))
    R = 2000
    with torch.no_grad():
        for k in (1, 8):
            m, se = mean_and_se(torch.exp(lk.iwae(model, replicate(x, R), k) - log_p.repeat(R)), R)
            assert bool(((m - 1).abs() <= Z * se).all()), (k, m, se)
        gap, se = mean_and_se(log_p.repeat(64) - lk.iwae(model, replicate(x, 64), 512), 64)
        assert bool((gap + Z * se < kl / 4).all()), (gap, se, kl)
        # The reduced weight: log p_A(x|z) − log q_A(z|x) + ELBO_B(z), ELBO_B(z) = log p_B(z) − KL.
        z = model.outer.posterior(replicate(x, R)).sample()
        reduced = (
            model.outer.generative.likelihood(z).log_prob(replicate(x, R))
            - model.outer.posterior(replicate(x, R)).log_prob(z)
            + lk.exact_log_prob(prior, z)
            - kl
        )
        m, se = mean_and_se(torch.exp(reduced - log_p.repeat(R)), R)
        assert bool(((m - 1).abs() > Z * se).all())
        assert close(m, torch.full_like(m, math.exp(-kl)))


def test_iwae_of_the_composed_model_is_not_the_reduced_one():
    """The distortion's KL in the closed form the test above relies on."""
    e, c, u = 2, 1.5, torch.tensor([0.6, -0.8], dtype=F64)
    prior = linear_vae(2, e, 3)
    exact = lk.exact_posterior(prior)
    z = torch.randn(4, 2, dtype=F64)
    kl = kl_divergence(Distorted(exact, u, c)(z), exact.top(z))
    assert close(kl, torch.full_like(kl, 0.5 * (e * c + 1.0 - e - e * math.log(c))))


# --- the composed objective -------------------------------------------------------------------


@given(case=linear_pairs(kinds=("vae", "ddpm")))
def test_the_objective_estimates_the_same_elbo(case):
    """−loss of the composed objective (B's own objective: a VAE's analytic KL, a DDPM's
    one-timestep estimate) and the joined chain's Monte Carlo ELBO estimate the same bound:
    two-sided z-test of the difference of means."""
    model, x = case
    xr = replicate(x)
    with torch.no_grad():
        m1, se1 = mean_and_se(-composed_objective(model)(model, xr))
        m2, se2 = mean_and_se(lk.elbo(model, xr).total)
    slack = 1e-9 * (1 + m2.abs())
    assert bool(((m1 - m2).abs() <= Z * torch.sqrt(se1**2 + se2**2) + slack).all())


def test_the_objective_refuses_a_model_that_is_not_composed():
    model = linear_vae(3, 2, 0)
    with pytest.raises(lk.EstimatorError, match="needs a composed model"):
        composed_objective(model)


# --- by name ----------------------------------------------------------------------------------


def test_compose_by_name_fills_the_prior_and_its_config_rebuilds_it():
    model = compose_by_name(
        "vae",
        {"data_shape": [6], "latent_dim": 3},
        "vdm",
        {
            "num_timesteps": 4,
            "decoder": "gaussian",
            "network": "mlp",
            "hidden": [8],
            "fourier_exponents": [],
        },
    )
    assert model.name == "composed" and isinstance(model.config, ComposedConfig)
    assert model.prior.data_shape == (3,)
    again = build_composed(lk.structure_config(ComposedConfig, lk.unstructure_config(model.config)))
    again.load_state_dict(model.state_dict())
    x = torch.randn(2, 6)
    torch.manual_seed(0)
    a = lk.elbo(model, x).total
    torch.manual_seed(0)
    assert torch.equal(a, lk.elbo(again, x).total)
    filled = compose_by_name("vae", {"data_shape": [4], "latent_dim": 2}, "vae")
    assert filled.config.prior_config == {"data_shape": [2], "likelihood": "gaussian"}
    shaped = build_composed(
        ComposedConfig(outer="vae", prior="vae", data_shape=(1, 2, 2), likelihood="bernoulli")
    )
    assert shaped.data_shape == (1, 2, 2)
    assert shaped.config.outer_config["likelihood"] == "bernoulli"


def test_compose_by_name_errors_name_the_field():
    with pytest.raises(lk.ConfigError, match="model 'composed'.*'prior'"):
        compose_by_name("vae", {}, "")
    with pytest.raises(lk.UnknownModelError, match="no model named 'nope'"):
        compose_by_name("vae", {}, "nope")
    with pytest.raises(lk.ConfigError, match="model 'vae'.*latent_dim"):
        compose_by_name("vae", {}, "vae", {"latent_dim": 0})
    with pytest.raises(lk.ShapeError, match=r"\[5\].*\[8\]"):
        compose_by_name("vae", {}, "vae", {"data_shape": [5]})


# --- the registry entry and the generic checks ------------------------------------------------


@pytest.fixture
def composed_registered():
    """``latentkit.composition`` registered as a plugin in this process (unless the core already
    registers it): the ``composed`` model and objective by name."""
    import latentkit.composition as module

    ours = "composed" not in lk.list_models()
    if ours:
        lk.register_plugin(module, name="latentkit.composition")
    try:
        yield
    finally:
        if ours:
            lk.unregister_plugin(module)


def test_the_generic_checks_pass_on_composed_models(composed_registered):
    """``latentkit verify composed``'s checks, on the small configs the entry declares (vae,
    hvae, ddpm and vdm priors): none fails."""
    from latentkit.testing.checks import run_checks

    results = run_checks("composed", max_examples=4, derandomize=True)
    assert results and not [r for r in results if r.failed]
    assert {r.check.key for r in results if r.status == "passed"} >= {
        "samples",
        "finite",
        "iwae-ordering",
        "normalised",
        "exact-log-p",
    }


def test_composed_by_name_and_its_objective(composed_registered):
    model = lk.load_model(
        "composed",
        outer="vae",
        outer_config={"data_shape": [4], "latent_dim": 2},
        prior="vdm",
        prior_config={"num_timesteps": 3, "decoder": "gaussian", "hidden": [8]},
    )
    assert isinstance(model, ComposedModel) and model.prior.data_shape == (2,)
    loss = lk.make_objective("composed", model)
    assert loss.prior_objective.name == "continuous"  # the vdm's own default objective
    assert loss(model, torch.randn(3, 4)).shape == (3,)
    state = dict(loss.state_dict())
    assert all(k.startswith("prior_objective.") for k in state)


def test_a_composed_run_checkpoints_rebuilds_and_resumes(composed_registered, tmp_path):
    """Registered, a composed model trains with the composed objective (a vdm prior's
    continuous bound), its checkpoint rebuilds it by name (``load_trained_model``), and 3 + 3
    resumed steps give the weights of 6 uninterrupted ones."""
    values = {
        "outer": "vae",
        "outer_config": {"data_shape": [4], "latent_dim": 2, "hidden": [8]},
        "prior": "vdm",
        "prior_config": {"num_timesteps": 3, "decoder": "gaussian", "hidden": [8]},
    }
    data = torch.rand(32, 4)

    def run(folder, steps, resume=False):
        torch.manual_seed(0)
        model = lk.load_model("composed", **values)
        cfg = lk.TrainConfig(steps=steps, batch_size=8, progress=False, seed=3)
        trainer = lk.Trainer(model, data, cfg, objective="composed", run_dir=folder)
        if resume:
            trainer.resume(folder)
        trainer.fit()
        return model

    whole = run(tmp_path / "whole", 6)
    first = run(tmp_path / "split", 3)
    rebuilt, info = lk.load_trained_model(tmp_path / "split")
    assert isinstance(rebuilt, ComposedModel) and info["model"] == "composed"
    for key, value in first.state_dict().items():
        assert torch.equal(value, rebuilt.state_dict()[key]), key
    assert info["objective"]["name"] == "composed"
    resumed = run(tmp_path / "split", 6, resume=True)
    for key, value in whole.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key


PLUGIN_PRIORS = [
    ("iaf", {"latent_dim": 2, "hidden": [8]}),
    ("vamp", {"latent_dim": 2, "hidden": [8], "num_pseudo_inputs": 3}),
    ("gmm", {"components": 3}),
    ("gmm", {"components": 3, "posterior": "amortized", "hidden": [4]}),
]


@pytest.mark.parametrize("prior, config", PLUGIN_PRIORS, ids=[p for p, c in PLUGIN_PRIORS])
def test_plugins_as_priors_pass_the_generic_checks(composed_registered, prior, config):
    """A flow-posterior VAE, a VampPrior VAE and a mixture (exact or amortized
    responsibilities, a discrete latent) as the prior of a VAE: the checks that hold for any
    latent model (finite bounds, log p ≥ IWAE_k ≥ ELBO in expectation, normalised samples)."""
    from hypothesis import strategies as st

    from latentkit.testing.checks import run_checks

    if prior not in lk.list_models():
        pytest.skip(f"the {prior} plugin is not installed here")
    outer = {"data_shape": [4], "latent_dim": 2, "hidden": [8]}
    cfg = {"outer": "vae", "outer_config": outer, "prior": prior, "prior_config": config}
    results = run_checks(
        "composed",
        configs=st.just(cfg),
        max_examples=3,
        derandomize=True,
        checks=["samples", "finite", "iwae-ordering", "kl-nonnegative"],
    )
    assert results and not [r for r in results if r.failed], results
    assert {r.check.key for r in results if r.status == "passed"} == {
        "samples",
        "finite",
        "iwae-ordering",
        "kl-nonnegative",
    }
