"""Property tests of the ``vamp`` plugin: the VampPrior VAE (Tomczak & Welling 2018).

p(z) = (1/K) Σ_k q(z | u_k) with q's own encoder at K learned pseudo-inputs; the encoder is
a module both chains share (``model.shared``). Exact identities in float64 with tolerances
from float64 round-off; statistical ones state their false-alarm rate. Notation:
``docs/vamp.md``.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from einops import repeat
from hypothesis import given
from hypothesis import strategies as st
from latentkit_vamp.strategies import vamp_configs
from markov_bound import assert_bounds_below_exact_log_p  # tests/ is on sys.path
from torch.distributions import Categorical, MixtureSameFamily, MultivariateNormal

import latentkit as lk
from latentkit.chains import SharedModule
from latentkit.cli import main
from latentkit.objectives import path_log_weights
from latentkit.testing import strategies as lks


def close(a: torch.Tensor, b: torch.Tensor, rel: float = 1e-9) -> bool:
    """|a − b| ≤ rel·(1 + |b|): float64 round-off through small networks and a logsumexp."""
    return bool(((a - b).abs() <= rel * (1 + b.abs())).all())


@st.composite
def vamps(draw, **overrides):
    """(model, x): a float64 ``vamp`` model perturbed away from its initialisation, and
    a small batch sampled from it."""
    cfg = {**draw(vamp_configs()), **overrides}
    with lks.seeded(draw(lks.seeds())):
        model = lk.load_model("vamp", **cfg).double()
        lks.perturb_parameters(model, draw(lks.seeds()))
        x = lk.sample(model, draw(st.integers(1, 3)))
    return model, x


@given(case=vamps())
def test_prior_is_the_normalised_mixture_of_q_at_the_pseudo_inputs(case):
    """log p(z) = logsumexp_k log q(z | u_k) − log K, with q(z | u_k) from the model's own
    posterior chain at its pseudo-inputs (Tomczak & Welling 2018, eq. 9): p is a normalised
    mixture, and p and q use one encoder."""
    model, x = case
    u = model.generative.pseudo_inputs
    K, n = u.shape[0], x.shape[0]
    z = torch.randn(5, n, *model.generative.latent_shapes[0], dtype=torch.float64)
    q_u = model.posterior(u)  # batch [K]
    per_component = q_u.log_prob(repeat(z, "s n d -> s n k d", k=K))  # [s, n, K]
    expected = torch.logsumexp(per_component, dim=-1) - math.log(K)
    assert close(model.generative.prior(n).log_prob(z), expected)


@given(seed=lks.seeds(), data_dim=st.integers(1, 3), K=st.integers(1, 4))
def test_log_marginal_equals_the_integral_over_z(seed, data_dim, K):
    """log p(x) from the Gaussian-mixture closed form = log ∫ p(x | z) p(z) dz by the
    trapezoid rule (latent_dim = 1, linear-Gaussian decoder). The grid spans every mixture
    component and p(z | x) ± 14 scales in steps under a twentieth of the narrowest one, so
    the rule's error on these Gaussian integrands is far below the 1e-7 allowed."""
    cfg = dict(data_shape=(data_dim,), latent_dim=1, architecture="linear", num_pseudo_inputs=K)
    with lks.seeded(seed):
        model = lk.load_model("vamp", **cfg).double()
        lks.perturb_parameters(model, seed)
        x = lk.sample(model, 2)
    p = model.generative
    with torch.no_grad():
        comps = p.components()
        W = p.decoder[0].weight[:, 0]
        noise = p.lik.linear_gaussian_variance()
        post_scale = (1.0 / (1.0 / comps.scale.min() ** 2 + (W**2 / noise).sum())).sqrt()
        narrow = min(comps.scale.min().item(), post_scale.item())
        lo = (comps.loc - 14 * comps.scale).min().item()
        hi = (comps.loc + 14 * comps.scale).max().item()
        # p(z | x) ∝ p(x | z) p(z) lies where some component does; its own width is ≥ post_scale.
        steps = int((hi - lo) / (narrow / 20)) + 1
        grid = torch.linspace(lo, hi, steps, dtype=torch.float64)[:, None]
        log_joint = p.prior(steps).log_prob(grid)[:, None] + torch.stack(
            [p.likelihood(grid).log_prob(xi.expand(steps, -1)) for xi in x], dim=1
        )  # [G, n]
        h = grid[1, 0] - grid[0, 0]
        weights = torch.full((steps, 1), math.log(h), dtype=torch.float64)
        weights[[0, -1]] -= math.log(2)
        quad = torch.logsumexp(log_joint + weights, dim=0)
        assert close(lk.exact_log_prob(model, x), quad, rel=1e-7)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_elbo_and_iwae_are_below_the_exact_log_p(seed):
    """ELBO ≤ log p and IWAE_k ≤ log p by Markov's inequality (tests/markov_bound.py)."""
    assert_bounds_below_exact_log_p(
        "vamp", seed, data_shape=(3,), latent_dim=2, architecture="linear", num_pseudo_inputs=3
    )


class ExactPosterior(lk.SingleLayerPosterior):
    """p(z | x) of a linear-Gaussian VampPrior model: the mixture over k of
    N(m_k, S_k), S_k = (diag σ_k⁻² + Wᵀ diag s⁻² W)⁻¹, m_k = S_k (μ_k / σ_k² + Wᵀ (x − c) / s²),
    weighted ∝ N(x; W μ_k + c, W diag σ_k² Wᵀ + diag s²) (Bayes' rule per component)."""

    def __init__(self, generative):
        super().__init__()
        object.__setattr__(self, "p", generative)  # the model's p, not a submodule of q

    def forward(self, x):
        p = self.p
        comps, W, c = p.components(), p.decoder[0].weight, p.decoder[0].bias
        s2 = p.lik.linear_gaussian_variance()
        precision = torch.diag_embed(comps.scale**-2) + (W.T / s2) @ W  # [K, d, d]
        S = torch.linalg.inv(precision)
        rhs = (comps.loc / comps.scale**2)[None] + (((x - c) / s2) @ W)[:, None]  # [n, K, d]
        m = torch.einsum("kij,nkj->nki", S, rhs)
        cov = torch.einsum("ia,ka,ja->kij", W, comps.scale**2, W) + torch.diag_embed(s2)
        logits = MultivariateNormal(comps.loc @ W.T + c, cov).log_prob(x[:, None])  # [n, K]
        parts = MultivariateNormal(m, S.expand(x.shape[0], *S.shape))
        return MixtureSameFamily(Categorical(logits=logits), parts)


@given(case=vamps(architecture="linear", likelihood="gaussian", likelihood_scale="learned"))
def test_with_the_exact_posterior_every_draw_gives_log_p(case):
    """With q = p(z | x), log p(x, z) − log q(z | x) = log p(x) at every draw (DESIGN §7.1,
    zero variance): the prior's mixture weights 1/K, the likelihood and the closed-form
    log p(x) are consistent, exactly."""
    model, x = case
    exact = model.with_posterior(ExactPosterior(model.generative))
    draws = lk.elbo(exact, x, num_samples=8, estimator="top-down-mc").samples  # [8, n]
    assert close(draws, lk.exact_log_prob(model, x).expand_as(draws), rel=1e-8)


def test_no_exact_log_p_without_a_linear_gaussian_decoder():
    for cfg in (dict(architecture="mlp"), dict(architecture="linear", likelihood="bernoulli")):
        model = lk.load_model("vamp", data_shape=(3,), latent_dim=2, hidden=(4,), **cfg)
        assert model.generative.log_marginal(torch.zeros(1, 3)) is None
        with pytest.raises(lk.NotTractableError):
            lk.exact_log_prob(model, torch.zeros(1, 3))


def test_the_encoder_is_owned_once_and_shared_by_both_chains():
    """One set of encoder weights in the state_dict (``shared.encoder``), used by q and by
    the prior; a state_dict round trip and ``.double()`` reach both."""
    a = lk.load_model("vamp", data_shape=(3,), latent_dim=2, hidden=(4,))
    keys = list(a.state_dict())
    assert [k for k in keys if "encoder" in k] == [k for k in keys if k.startswith("shared.")]
    assert any(k.startswith("shared.encoder.net") for k in keys)
    assert "generative.prior_loc" not in keys
    for chain in (a.generative, a.posterior):
        assert isinstance(chain.encoder, SharedModule)
        assert chain.encoder.module is a.shared["encoder"]
    torch.manual_seed(1)
    b = lk.load_model("vamp", data_shape=(3,), latent_dim=2, hidden=(4,))
    b.load_state_dict(a.state_dict())
    z = torch.randn(4, 2)
    assert torch.equal(a.generative.prior(4).log_prob(z), b.generative.prior(4).log_prob(z))
    b = b.double()
    assert b.generative.prior(4).log_prob(z.double()).dtype == torch.float64


def test_replacing_q_keeps_the_prior():
    """``with_posterior`` changes q only: the VampPrior stays on the model's own encoder."""
    model = lk.load_model("vamp", data_shape=(3,), latent_dim=2, hidden=(4,))
    other = lk.load_model("vae", data_shape=(3,), latent_dim=2, hidden=(4,)).posterior
    swapped = model.with_posterior(other)
    z = torch.randn(4, 2)
    assert torch.equal(
        swapped.generative.prior(4).log_prob(z), model.generative.prior(4).log_prob(z)
    )
    assert swapped.shared["encoder"] is model.shared["encoder"]


def test_sticking_the_landing_stops_the_shared_encoder_in_log_q():
    """STL's log w = log p(x, z) − log q_φ̄(z | x): φ stopped in log q only, also where φ is
    the shared encoder (reached through ``model.shared``, not through q's own parameters).
    Its gradient equals the one computed by hand with q's mean and scale detached."""
    with lks.seeded(0):
        model = lk.load_model("vamp", data_shape=(3,), latent_dim=2, hidden=(4,)).double()
        lks.perturb_parameters(model, 3)
    x = torch.randn(5, 3, dtype=torch.float64)
    with lks.seeded(1):
        log_w = path_log_weights(model, x, 1)[0]
    got = torch.autograd.grad(log_w.sum(), list(model.parameters()))
    with lks.seeded(1):
        q = model.posterior(x)
        z = q.rsample()
    stopped = lk.distributions.diag_normal(q.base_dist.loc.detach(), q.base_dist.scale.detach())
    p = model.generative
    by_hand = p.likelihood(z).log_prob(x) + p.prior(5).log_prob(z) - stopped.log_prob(z)
    want = torch.autograd.grad(by_hand.sum(), list(model.parameters()))
    for g, w in zip(got, want):
        assert close(g, w, rel=1e-12)


def test_config_errors_name_the_field():
    with pytest.raises(lk.ConfigError, match="num_pseudo_inputs"):
        lk.load_model("vamp", num_pseudo_inputs=0)


def test_trains_and_evaluates_from_the_cli(tmp_path, capsys):
    """``latentkit train --model vamp`` on the shipped digits, then ``evaluate`` (with the
    diagnostics) from the checkpoint: the shared encoder saves and loads once."""
    run = tmp_path / "vamp"
    tiny = ["--steps", "6", "--batch-size", "32", "--no-progress", "--set", "hidden=[8]"]
    assert main(["train", "--model", "vamp", "--data", "digits", "--run-dir", str(run), *tiny]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(run), "--json", "-", "--diagnose", "50", "--iwae-k", "4"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert math.isfinite(report["elbo"]["mean"])


def test_verify_passes_from_the_cli(capsys):
    assert main(["verify", "vamp", "--max-examples", "4"]) == 0, capsys.readouterr().out


def test_evaluation_says_which_term_the_analytic_estimator_took_by_monte_carlo():
    """KL(q ‖ VampPrior) has no closed form: the report names the prior term as Monte Carlo
    instead of calling the whole bound analytic; a plain VAE's report names none."""
    torch.manual_seed(0)
    x = torch.randn(8, 4)
    vamp = lk.load_model("vamp", data_shape=[4], latent_dim=2, hidden=[8], likelihood="gaussian")
    vae = lk.load_model("vae", data_shape=[4], latent_dim=2, hidden=[8], likelihood="gaussian")
    assert lk.evaluate(vamp, x, iwae_k=0).monte_carlo_terms == ("prior_matching",)
    assert lk.evaluate(vae, x, iwae_k=0).monte_carlo_terms == ()
    from latentkit.evaluation import report_table

    caption = report_table(lk.evaluate(vamp, x, iwae_k=0)).caption
    assert "Monte Carlo: prior_matching" in caption
