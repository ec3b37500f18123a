"""Property tests of the ``iaf`` plugin: a VAE whose q(z|x) is an inverse autoregressive flow.

Exact identities run in float64 with tolerances from float64 round-off; statistical ones
state their false-alarm rate. Notation: ``docs/iaf.md``.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from latentkit_iaf import InverseAutoregressiveFlow
from latentkit_iaf.strategies import iaf_configs
from markov_bound import assert_bounds_below_exact_log_p  # tests/ is on sys.path

import latentkit as lk
from latentkit.cli import main
from latentkit.networks import MADE
from latentkit.testing import strategies as lks


def close(a: torch.Tensor, b: torch.Tensor, rel: float = 1e-9) -> bool:
    """|a − b| ≤ rel·(1 + |b|): float64 round-off through a few small networks, a d × d
    determinant and d·T inverse passes (each ~1e-15 relative), far below any real error."""
    return bool(((a - b).abs() <= rel * (1 + b.abs())).all())


@st.composite
def flows(draw, max_dim: int = 4):
    """(model, q, x): a float64 ``iaf`` model with ≥ 1 flow step, perturbed away from its
    initialisation, its q(z|x) for a small batch of x."""
    cfg = draw(iaf_configs(max_latent_dim=max_dim))
    cfg["num_steps"] = draw(st.integers(1, 3))
    with lks.seeded(draw(lks.seeds())):
        model = lk.load_model("iaf", **cfg).double()
        lks.perturb_parameters(model, draw(lks.seeds()))
        x = lk.sample(model, draw(st.integers(1, 3)))
    q = model.posterior(x)
    assert isinstance(q, InverseAutoregressiveFlow)
    return model, q, x


@given(
    dim=st.integers(1, 5),
    hidden=st.sampled_from([(), (3,), (7, 5)]),
    context=st.sampled_from([0, 2]),
    seed=lks.seeds(),
)
def test_made_outputs_depend_only_on_earlier_inputs(dim, hidden, context, seed):
    """∂m_i/∂z_j = ∂s_i/∂z_j = 0 for j ≥ i: MADE's Jacobian is strictly lower-triangular
    (Germain et al. 2015), so each IAF step's Jacobian is triangular with diagonal g."""
    with lks.seeded(seed):
        made = MADE(dim, hidden, context).double()
        lks.perturb_parameters(made, seed)
        z = torch.randn(dim, dtype=torch.float64)
        c = torch.randn(context, dtype=torch.float64) if context else None
    jac = torch.autograd.functional.jacobian(lambda v: torch.cat(made(v, c)), z)
    for half in jac.reshape(2, dim, dim):
        assert torch.equal(half.triu(), torch.zeros_like(half))


@given(case=flows())
def test_log_density_is_the_change_of_variables_formula(case):
    """log q(z_T) handed back with the draw = log N(ε; 0, I) − log |det ∂z_T/∂ε|, the
    determinant by autograd in float64 (Kingma et al. 2016, eq. 10 with z_0 = μ + σ ⊙ ε)."""
    _, q, _ = case
    n, d = q.batch_shape[0], q.event_shape[0]
    eps = torch.randn(n, d, dtype=torch.float64)
    _, log_q = q.from_noise(eps)
    jac = torch.autograd.functional.jacobian(lambda e: q.from_noise(e)[0], eps)  # [n,d,n,d]
    blocks = torch.stack([jac[i, :, i, :] for i in range(n)])
    standard = torch.distributions.Normal(0.0, 1.0).log_prob(eps).sum(-1)
    assert close(log_q, standard - torch.linalg.slogdet(blocks).logabsdet)


@given(case=flows())
def test_log_prob_by_the_inverse_equals_the_density_of_the_draw(case):
    """log_prob(z) (inverting every step) = the log-density the draw came with, at the same
    z, for draws with a sample dimension too; and the inverse returns z_0."""
    _, q, _ = case
    z, log_q = q.rsample_and_log_prob((2,))
    assert z.shape == (2, *q.batch_shape, *q.event_shape) and log_q.shape == (2, *q.batch_shape)
    assert close(q.log_prob(z), log_q)
    eps = torch.randn(q.batch_shape + q.event_shape, dtype=torch.float64)
    z0 = q.base.base_dist.loc + q.base.base_dist.scale * eps
    z_t, _ = q.from_base(z0)
    assert close(q.inverse(z_t)[0], z0)


@given(seed=lks.seeds(), steps=st.integers(1, 3), context=st.sampled_from([0, 2]))
def test_one_dimensional_flow_density_integrates_to_one(seed, steps, context):
    """∫ q(z | x) dz = 1 (q normalised), by the trapezoid rule with log_prob (d = 1: the flow
    is a monotone map of z_0). The grid spans the range r of 4000 draws extended by r on
    each side (the density is checked below 1e-12 at both ends) in steps of 3r/40000, about
    σ/2000 for a density of scale σ: the rule's error on a smooth density is then orders
    below the 1e-6 allowed, while a missing log-determinant term or a wrong base scale
    changes the mass by far more."""
    cfg = dict(data_shape=(2,), latent_dim=1, architecture="mlp", hidden=(4,), made_hidden=(4,))
    with lks.seeded(seed):
        model = lk.load_model("iaf", num_steps=steps, context_dim=context, **cfg).double()
        lks.perturb_parameters(model, seed)
        q = model.posterior(torch.randn(1, 2, dtype=torch.float64))
    with lks.seeded(seed + 1), torch.no_grad():
        draws = q.sample((4000,))[:, 0, 0]
        lo, hi = draws.min(), draws.max()
        width = (hi - lo).item()
        grid = torch.linspace(lo - width, hi + width, 40001, dtype=torch.float64)
        density = q.log_prob(grid[:, None, None])[:, 0].exp()
    assert density[0] < 1e-12 and density[-1] < 1e-12, "the grid misses a tail"
    mass = torch.trapezoid(density, grid)
    assert abs(mass.item() - 1.0) < 1e-6, mass


def test_one_dimensional_draws_follow_the_density():
    """The draws' empirical CDF matches the CDF integrated from log_prob: Kolmogorov–Smirnov
    statistic below its α = 1e-4 critical value √(ln(2/α)/2)/√n (n = 4000 draws)."""
    cfg = dict(data_shape=(2,), latent_dim=1, architecture="mlp", hidden=(4,), num_steps=3)
    with lks.seeded(7):
        model = lk.load_model("iaf", made_hidden=(4,), context_dim=2, **cfg).double()
        lks.perturb_parameters(model, 7)
        q = model.posterior(torch.randn(1, 2, dtype=torch.float64))
    with lks.seeded(8), torch.no_grad():
        draws = q.sample((4000,))[:, 0, 0].sort().values
        width = (draws[-1] - draws[0]).item()
        grid = torch.linspace(draws[0] - width, draws[-1] + width, 40001, dtype=torch.float64)
        density = q.log_prob(grid[:, None, None])[:, 0].exp()
    cdf = torch.cat([density.new_zeros(1), torch.cumulative_trapezoid(density, grid)])
    i = torch.searchsorted(grid, draws).clamp(1, grid.shape[0] - 1)  # grid[i-1] ≤ draw < grid[i]
    frac = (draws - grid[i - 1]) / (grid[i] - grid[i - 1])
    model_cdf = cdf[i - 1] + frac * (cdf[i] - cdf[i - 1])
    n = draws.shape[0]
    ecdf_hi = torch.arange(1, n + 1, dtype=torch.float64) / n
    ks = torch.maximum(ecdf_hi - model_cdf, model_cdf - (ecdf_hi - 1.0 / n)).max()
    assert ks < math.sqrt(math.log(2 / 1e-4) / 2) / math.sqrt(n), ks


def test_the_engine_never_inverts_the_flow(monkeypatch):
    """Every estimator and IWAE use the log-density that comes with each draw: with
    ``log_prob`` (the inverse) disabled, all of them still run."""
    model = lk.load_model("iaf", data_shape=(3,), latent_dim=2, hidden=(4,), made_hidden=(4,))
    x = torch.randn(4, 3)

    def refuse(self, value):
        raise AssertionError("the engine inverted the flow")

    monkeypatch.setattr(InverseAutoregressiveFlow, "log_prob", refuse)
    for estimator in ("analytic", "top-down-mc", "bottom-up"):
        assert torch.isfinite(lk.elbo(model, x, estimator=estimator).total).all()
    assert torch.isfinite(lk.iwae(model, x, k=3)).all()
    loss = lk.training_loss(model, x).mean()
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.posterior.parameters())


def test_zero_steps_is_the_vae():
    """num_steps = 0: q is the VAE's diagonal Gaussian; with the VAE's weights the two
    models give the same ELBO at the same seed (closed-form KL)."""
    cfg = dict(data_shape=(3,), latent_dim=2, hidden=(5,))
    vae = lk.load_model("vae", **cfg).double()
    iaf = lk.load_model("iaf", num_steps=0, context_dim=0, **cfg).double()
    iaf.load_state_dict(vae.state_dict())
    x = torch.randn(4, 3, dtype=torch.float64)
    with lks.seeded(1):
        a = lk.elbo(vae, x).total
    with lks.seeded(1):
        b = lk.elbo(iaf, x).total
    assert torch.equal(a, b)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_elbo_and_iwae_are_below_the_exact_log_p(seed):
    """ELBO ≤ log p and IWAE_k ≤ log p by Markov's inequality (tests/markov_bound.py)."""
    assert_bounds_below_exact_log_p(
        "iaf", seed, data_shape=(3,), latent_dim=2, architecture="linear", num_steps=2
    )


def test_config_errors_name_the_field():
    for field, value in [("num_steps", -1), ("context_dim", -2), ("made_hidden", (0,))]:
        with pytest.raises(lk.ConfigError, match=field):
            lk.load_model("iaf", **{field: value})


def test_trains_and_evaluates_from_the_cli(tmp_path, capsys):
    """``latentkit train --model iaf`` on the shipped digits, then ``evaluate`` from the
    checkpoint (the diagnostics need E[z|x], which a flow does not give in closed form)."""
    run = tmp_path / "iaf"
    tiny = ["--steps", "6", "--batch-size", "32", "--no-progress", "--set", "hidden=[8]"]
    assert main(["train", "--model", "iaf", "--data", "digits", "--run-dir", str(run), *tiny]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(run), "--json", "-", "--diagnose", "0", "--iwae-k", "4"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert math.isfinite(report["elbo"]["mean"])


def test_verify_passes_from_the_cli(capsys):
    assert main(["verify", "iaf", "--max-examples", "4"]) == 0, capsys.readouterr().out


def test_diagnostics_of_a_flow_posterior_use_the_mean_of_the_draws():
    """A flow's q has no closed-form mean: the active-unit count takes E_q[z|x] as the mean of
    its draws instead of failing (``latentkit evaluate`` runs the diagnostics by default)."""
    torch.manual_seed(0)
    model = lk.load_model("iaf", data_shape=[6], latent_dim=2, hidden=[8], num_steps=2)
    with pytest.raises(NotImplementedError):
        _ = model.posterior.first(torch.randn(3, 6)).mean
    d = lk.diagnose(model, torch.randn(40, 6), seed=0)
    assert len(d.layers) == 1 and d.active_units is not None and d.activity is not None
