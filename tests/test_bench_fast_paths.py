"""The hot paths the benchmark's overhead sweep measures compute what the plain paths do.

Per-call costs were removed from the engine (``bench/sweep.py`` measures them): Gaussians
built without ``broadcast_all`` and argument validation, a Bernoulli likelihood whose
``log_prob`` skips ``broadcast_all``, estimators resolved once per model, the DDPM's schedule
constants gathered as one stacked row, IWAE drawing a one-layer model's k samples from one
q(z|x) per example. Each is checked here against the computation it replaces, in float64,
exactly or to float round-off; and the caches against going stale.
"""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Bernoulli, Independent, Normal, kl_divergence

import latentkit as lk
from latentkit.bounds import _estimator_log_weights, log_weights
from latentkit.distributions import DiagNormal, diag_normal
from latentkit.errors import EstimatorError
from latentkit.estimators import ESTIMATORS, Estimator, monte_carlo_estimator, resolve_estimator
from latentkit.likelihoods import BernoulliLikelihood

F64 = torch.float64


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_diag_normal_is_torchs_normal_without_the_checks():
    """An Independent(Normal) (its subclass DiagNormal, for the one-call KLs) with the same
    parameters, log_prob, draws (same seed) and KL as Normal(loc, scale); a scale that only
    broadcasts still goes through Normal's own constructor."""
    loc = torch.randn(5, 3, dtype=F64, generator=_gen(0))
    scale = torch.rand(5, 3, dtype=F64, generator=_gen(1)) + 0.1
    fast = diag_normal(loc, scale)
    ref = Independent(Normal(loc, scale), 1)
    assert type(fast) is DiagNormal and isinstance(fast, Independent)
    assert type(fast.base_dist) is Normal
    assert fast.batch_shape == ref.batch_shape and fast.event_shape == ref.event_shape
    assert fast.reinterpreted_batch_ndims == 1
    assert not fast._validate_args and not fast.base_dist._validate_args
    for dims in (0, 2):
        d, r = diag_normal(loc, scale, dims), Independent(Normal(loc, scale), dims)
        assert (d.batch_shape, d.event_shape) == (r.batch_shape, r.event_shape)
    with pytest.raises(ValueError, match="reinterpreted_batch_ndims"):
        diag_normal(loc, scale, 3)
    z = torch.randn(4, 5, 3, dtype=F64, generator=_gen(2))
    assert torch.equal(fast.log_prob(z), ref.log_prob(z))
    torch.manual_seed(3)
    a = fast.rsample((2,))
    torch.manual_seed(3)
    assert torch.equal(a, ref.rsample((2,)))
    other = Independent(Normal(torch.zeros(3, dtype=F64), torch.ones(3, dtype=F64)), 1)
    assert torch.equal(
        kl_divergence(fast, other.expand((5,))), kl_divergence(ref, other.expand((5,)))
    )
    broad = diag_normal(loc, torch.tensor(0.5, dtype=F64))
    assert broad.base_dist.scale.shape == (5, 3)
    assert torch.equal(broad.log_prob(z), Independent(Normal(loc, 0.5), 1).log_prob(z))


def test_bernoulli_likelihood_log_prob_is_torchs():
    """The likelihood's Bernoulli gives torch's log_prob exactly, on binary and on grey
    values, the gradient x − σ(l), and broadcasts like torch's when the value's shape
    differs."""
    lik = BernoulliLikelihood((6,))
    logits = torch.randn(4, 1, 6, dtype=F64, generator=_gen(4)) * 5
    d = lik(logits)
    ref = Independent(Bernoulli(logits=logits[:, 0], validate_args=False), 1)
    x = (torch.rand(4, 6, dtype=F64, generator=_gen(5)) < 0.5).to(F64)
    grey = torch.rand(4, 6, dtype=F64, generator=_gen(6))
    for value in (x, grey):
        assert torch.equal(d.log_prob(value), ref.log_prob(value))
        assert not torch.equal(d.log_prob(1 - value), ref.log_prob(value))
    many = (torch.rand(3, 4, 6, generator=_gen(7)) < 0.5).to(F64)
    assert torch.equal(d.log_prob(many), ref.log_prob(many))
    images = BernoulliLikelihood((2, 3))(logits.reshape(4, 1, 2, 3))
    assert torch.equal(
        images.log_prob(x.reshape(4, 2, 3)),
        Independent(Bernoulli(logits=logits.reshape(4, 2, 3), validate_args=False), 2).log_prob(
            x.reshape(4, 2, 3)
        ),
    )
    l = logits.clone().requires_grad_()
    (g,) = torch.autograd.grad(lik(l).log_prob(x).sum(), l)
    assert torch.allclose(g[:, 0], x - torch.sigmoid(logits[:, 0]), rtol=0, atol=1e-15)
    # from_flat, the decoder's path (no module call, no k axis): the same distribution.
    for shape, flat in (((6,), logits[:, 0]), ((2, 3), logits[:, 0])):
        made = BernoulliLikelihood(shape).from_flat(flat)
        want = Independent(Bernoulli(logits=flat.reshape(4, *shape)), len(shape))
        assert (made.batch_shape, made.event_shape) == (want.batch_shape, want.event_shape)
        v = x.reshape(4, *shape)
        assert torch.equal(made.log_prob(v), want.log_prob(v))
        assert torch.equal(made.mean, want.mean)


def test_time_embedding_keeps_the_frequencies_it_would_compute():
    """The DDPM's time embedding with its kept float64 frequencies gives the numbers the
    embedding computed afresh gives, also after the module is cast to float64 and back."""
    from latentkit_ddpm.networks import _TimeEmbedding, timestep_embedding

    emb = _TimeEmbedding(16, 8, "silu")
    t = torch.tensor([0, 1, 7, 999])
    fresh = timestep_embedding(t, 16)
    emb = emb.double().float()
    assert emb._freqs.dtype == torch.float64
    assert torch.equal(emb(t), emb.net(fresh.float()))


@pytest.fixture
def vae():
    torch.manual_seed(0)
    return lk.load_model("vae", data_shape=(5,), latent_dim=2, hidden=(8,)).double()


def test_estimator_is_resolved_once_per_model_and_arguments(vae):
    """The same object for the same model, name and options; another for other options or
    another model; an unhashable option is resolved afresh, not refused."""
    a = resolve_estimator(vae, "auto")
    assert resolve_estimator(vae, "auto") is a
    assert resolve_estimator(vae, "analytic") is not a or a.name == "analytic"
    other = lk.load_model("vae", data_shape=(5,), latent_dim=2, hidden=(8,))
    assert resolve_estimator(other, "auto") is not a
    ddpm = lk.load_model("ddpm", data_shape=(3,), num_timesteps=4, network="mlp", hidden=(8,))
    lb = resolve_estimator(ddpm, "layer-batched", pairs_per_call=7)
    assert resolve_estimator(ddpm, "layer-batched", pairs_per_call=7) is lb
    assert resolve_estimator(ddpm, "layer-batched", pairs_per_call=8).pairs_per_call == 8


def test_estimator_with_unhashable_options_is_resolved_afresh(vae, monkeypatch):
    """An option the cache cannot key on (a list) resolves without the cache, not an error."""

    class WithTable(Estimator):
        name = "with-table"

        def __init__(self, *, table):
            self.table = table

    monkeypatch.setitem(ESTIMATORS, "with-table", WithTable)
    a = resolve_estimator(vae, "with-table", table=[1, 2])
    b = resolve_estimator(vae, "with-table", table=[1, 2])
    assert a is not b and a.table == b.table == [1, 2]


def test_estimator_cache_follows_the_chains_capabilities():
    """Changing what the posterior declares, or swapping the chain, resolves again: a
    stale cache would keep an estimator the model no longer supports, or miss a better one."""
    model = lk.load_model("ddpm", data_shape=(3,), num_timesteps=4, network="mlp", hidden=(8,))
    q = model.posterior
    assert resolve_estimator(model, "auto").name == "layer-batched"
    q.layer_batched = False
    try:
        assert resolve_estimator(model, "auto").name == "analytic"
        with pytest.raises(EstimatorError, match="not layer-batched"):
            resolve_estimator(model, "layer-batched")
    finally:
        q.layer_batched = True
    assert resolve_estimator(model, "auto").name == "layer-batched"
    hvae = lk.load_model("hvae", data_shape=(5,), latent_dims=(3, 2), hidden=(8,))
    assert resolve_estimator(hvae, "auto").name == "analytic"
    markov = lk.load_model(
        "hvae", data_shape=(5,), latent_dims=(3, 2), hidden=(8,), posterior="bottom-up"
    )
    hvae.posterior = markov.posterior
    assert resolve_estimator(hvae, "auto").name == "bottom-up"
    assert monte_carlo_estimator(hvae).name == "bottom-up"


def _ddpm(T: int = 6, **extra):
    torch.manual_seed(0)
    model = lk.load_model(
        "ddpm", data_shape=(3,), num_timesteps=T, network="mlp", hidden=(8,), **extra
    )
    torch.nn.init.normal_(model.generative.net.out.weight, std=0.3)
    return model.double()


def test_ddpm_stacked_rows_are_the_schedules_constants():
    """Every stacked constant equals its schedule table, for int and tensor t, exactly in
    float64 and again after a float32 round trip (re-derived from the float64 master)."""
    model = _ddpm()
    for m in (model, model.float().double()):
        s, p, q = m.schedule, m.generative, m.posterior
        t = torch.arange(1, 7)
        like = torch.zeros(6, 3, dtype=F64)
        ab, bb = q.marginal_rows.rows(t, like)
        c0, ct, bt = q.down_rows.rows(t, like)
        eps, alpha, up, low = p.reverse_rows.rows(t, like)
        want = {
            "alpha_bar": ab,
            "beta_bar": bb,
            "posterior_coef_x0": c0,
            "posterior_coef_xt": ct,
            "beta_tilde": bt,
            "alpha": alpha,
            "log_sigma_sq_upper": up,
            "log_sigma_sq_lower": low,
        }
        for name, got in want.items():
            assert got.shape == (6, 1) and got.dtype == F64
            assert torch.equal(got[:, 0], s._master[name][1:]), name
        assert torch.equal(eps[:, 0], (s._master["beta"] ** 2 / s._master["beta_bar"])[1:])
        assert torch.equal(p.reverse_rows.rows(3, like)[1], s._master["alpha"][3])
    with pytest.raises(lk.InputError, match="outside 0..T=6"):
        model.posterior.marginal_rows.rows(7, like)


def test_ddpm_reverse_mean_and_marginal_follow_the_formulas():
    """μ_θ = (x_t − β_t²/β̄_t · ε_θ)/α_t and q(x_t | x_0) = N(ᾱ_t x_0, β̄_t²) from the stacked
    rows, against the schedule's tables gathered one by one (float64, round-off)."""
    model = _ddpm()
    s, p = model.schedule, model.generative
    x0 = torch.randn(5, 3, dtype=F64, generator=_gen(8))
    t = torch.tensor([2, 3, 4, 5, 6])
    xt = torch.randn(5, 3, dtype=F64, generator=_gen(9))
    eps = torch.randn(5, 3, dtype=F64, generator=_gen(10))

    def g(name):
        return getattr(s, name)[t][:, None]

    want = (xt - g("beta") ** 2 / g("beta_bar") * eps) / g("alpha")
    assert torch.allclose(p.mean(t, xt, eps), want, rtol=1e-14, atol=0)
    q_t = model.posterior.marginal(t, x0)
    assert torch.equal(q_t.base_dist.loc, g("alpha_bar") * x0)
    assert torch.equal(q_t.base_dist.scale, g("beta_bar").expand_as(x0))
    prior = p.prior(5)
    assert torch.equal(
        prior.log_prob(xt), Independent(Normal(0.0, torch.ones_like(xt)), 1).log_prob(xt)
    )


def test_iwae_one_layer_draws_match_the_estimator_path(vae):
    """A one-layer model's k draws from one q(z|x) per example are the same random numbers
    as k·batch single draws: the log-weights agree with the estimator path to round-off."""
    x = torch.randn(3, 5, dtype=F64, generator=_gen(11))
    torch.manual_seed(12)
    fast = log_weights(vae, x, 7)
    torch.manual_seed(12)
    slow = _estimator_log_weights(monte_carlo_estimator(vae), vae, x, 7)
    assert fast.shape == (7, 3)
    assert torch.allclose(fast, slow, rtol=1e-12, atol=1e-12)
    assert not torch.allclose(fast[0], fast[1])  # k distinct draws, not one repeated


def test_iwae_one_layer_path_is_exact_with_the_exact_posterior():
    """With q = the exact posterior of a linear-Gaussian VAE, every log-weight is log p(x)
    (DESIGN §7.1): the one-layer path keeps each draw's log q paired with its z."""
    torch.manual_seed(0)
    model = lk.load_model(
        "vae", data_shape=(3,), latent_dim=2, architecture="linear", likelihood_scale="fixed"
    ).double()
    x = torch.randn(4, 3, dtype=F64, generator=_gen(13))
    exact = model.with_posterior(lk.exact_posterior(model))
    w = log_weights(exact, x, 5)
    assert torch.allclose(w, lk.exact_log_prob(model, x).expand(5, 4), rtol=0, atol=1e-10)


def test_finiteness_check_reads_one_sum_and_never_refuses_finite_data(vae):
    """The input check sums x once; finite data whose sum overflows is still accepted
    (checked element by element), and one NaN or inf anywhere is still refused."""
    from latentkit.errors import NonFiniteError
    from latentkit.validation import check_data

    model = vae.float()
    big = torch.full((4, 5), 3e38)
    assert not torch.isfinite(big.sum())
    assert check_data(model, big) is big
    for bad, what in ((float("nan"), "1 NaN"), (float("inf"), "0 NaN, 1 inf")):
        x = torch.zeros(4, 5)
        x[2, 3] = bad
        with pytest.raises(NonFiniteError, match=what):
            check_data(model, x)
    mixed = big.clone()
    mixed[0, 0] = -float("inf")
    with pytest.raises(NonFiniteError, match="1 non-finite"):
        check_data(model, mixed)


def test_one_layer_training_loss_is_the_estimators_total_without_placing_it():
    """The ``elbo`` objective's single-layer loss skips the ``[n, L − 1]`` placement of the
    drawn term and is still exactly −total of the estimator's draw on the same seed; the
    placed draw holds the same term at the drawn layer, zeros elsewhere."""
    from latentkit.estimators import SingleLayer

    model = _ddpm(T=9)
    x = torch.rand(5, 3, dtype=F64, generator=_gen(14)) * 2 - 1
    objective = lk.make_objective("elbo", model)
    assert objective.summed
    torch.manual_seed(15)
    loss = objective(model, x)
    torch.manual_seed(15)
    placed = SingleLayer()(model, x)
    assert torch.equal(loss, -placed.total())
    torch.manual_seed(15)
    summed, l = SingleLayer().draw_summed(model, x)
    assert placed.layer_kl.shape == (5, 8) and summed.layer_kl.shape == (5, 1)
    assert torch.equal(placed.layer_kl.gather(1, (l - 2).unsqueeze(1)), summed.layer_kl)
    assert int((placed.layer_kl != 0).sum()) == 5
