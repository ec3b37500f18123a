"""Conditional models: p(x, z | c), q(z | x, c) as one latent model per condition.

The properties of every other family, given c: the exact log p(x | c) of a linear-Gaussian
conditional VAE equals its closed form (computed here from the weights, independently of
the oracle), the exact posterior makes every ELBO draw equal log p(x | c), the closed-form
ELBO sits below it, and IWAE_k rises towards it. A condition dropped in q, in p(x | z, c)
or in p(z | c) fails one of them (the mutants below). Float64 throughout.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.nn import functional as F

import latentkit as lk
from latentkit.oracles import linear_gaussian_elbo

K, D, LATENT = 3, 4, 1


def linear_cvae(seed: int, *, latent: int = LATENT) -> lk.LatentModel:
    torch.manual_seed(seed)
    model = lk.load_model(
        "vae", data_shape=(D,), latent_dim=latent, architecture="linear", classes=K
    ).double()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.6)
    return model


def closed_form(model: lk.LatentModel, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """log N(x; W μ_c + b + V e_c, W diag(σ_c²) Wᵀ + diag ψ), read off the weights."""
    p = model.generative
    d = p.prior_loc.shape[0]
    layer = p.decoder[0]
    W, V, b = layer.weight[:, :d], layer.weight[:, d:], layer.bias
    e = F.one_hot(c, K).double()
    loc, log_scale = (e @ p.prior_map).chunk(2, -1)
    psi = p.lik.linear_gaussian_variance()
    out = []
    for i in range(x.shape[0]):
        mean = W @ loc[i] + b + V @ e[i]
        cov = (W * log_scale[i].exp() ** 2) @ W.T + torch.diag(psi)
        out.append(torch.distributions.MultivariateNormal(mean, cov).log_prob(x[i]))
    return torch.stack(out)


def close(a: torch.Tensor, b: torch.Tensor) -> bool:
    # float64: the oracle and the closed form take different routes (Cholesky of D×D
    # matrices built from O(1) weights); 1e-9 relative leaves room for that round-off only.
    return bool(torch.allclose(a, b, rtol=1e-9, atol=1e-9))


cases = st.tuples(st.integers(0, 2**16), st.lists(st.integers(0, K - 1), min_size=1, max_size=6))


@given(cases)
def test_exact_log_prob_given_c_is_the_closed_form(case):
    seed, labels = case
    model = linear_cvae(seed)
    c = torch.tensor(labels)
    x = lk.sample(model, len(labels), condition=c)
    assert close(lk.exact_log_prob(model, x, condition=c), closed_form(model, x, c))


@given(cases)
def test_exact_posterior_makes_every_draw_log_p_given_c(case):
    seed, labels = case
    model = linear_cvae(seed, latent=2)
    x = torch.randn(len(labels), D, dtype=torch.float64)
    for k in range(K):
        member = model.given(torch.tensor([k]))
        exact = member.with_posterior(lk.exact_posterior(member))
        log_p = lk.exact_log_prob(model, x, condition=k)
        draws = lk.elbo(exact, x, num_samples=8, estimator="top-down-mc").samples
        assert close(draws, log_p.expand(8, -1))
        assert bool((linear_gaussian_elbo(member, x) <= log_p + 1e-9).all())


def test_iwae_rises_towards_log_p_given_c():
    """Means over 400 examples: IWAE_1 < IWAE_8 < IWAE_64 ≤ log p(x | c), each gap many
    standard errors wide (the differences' standard errors are printed on failure)."""
    model = linear_cvae(3, latent=2)
    c = torch.arange(400) % K
    x = lk.sample(model, 400, condition=c)
    log_p = lk.exact_log_prob(model, x, condition=c)
    torch.manual_seed(0)
    bounds = [lk.iwae(model, x, k, condition=c) for k in (1, 8, 64)]
    for lower, upper in zip([*bounds], [*bounds[1:], log_p], strict=True):
        gap = upper - lower
        se = gap.std() / math.sqrt(gap.numel())
        assert gap.mean() > 4 * se, (gap.mean(), se)


def fit_exact_encoder(model: lk.LatentModel) -> None:
    """Set a one-latent linear q(z | x, c) to the exact posterior of each class. With p(z | c)
    of unit scale (its log-scale map zeroed here), that posterior has mean a·x + o_c and a
    scale s that its inputs [x, e_c] express exactly (a per-class prior scale would make
    the coefficient a depend on c, beyond a linear map of [x, e_c])."""
    enc = model.posterior.net[0]
    with torch.no_grad():
        model.generative.prior_map[:, LATENT:].zero_()
        enc.weight.zero_()
        enc.bias.zero_()
        for k in range(K):
            member = model.given(torch.tensor([k]))
            q = lk.exact_posterior(member)
            mean0 = q.top(torch.zeros(1, D, dtype=torch.float64)).mean[0, 0]
            for j in range(D):  # the mean is affine in x: read each coefficient
                e = torch.zeros(1, D, dtype=torch.float64)
                e[0, j] = 1.0
                enc.weight[0, j] = q.top(e).mean[0, 0] - mean0
            enc.weight[0, D + k] = mean0
            s = q.top(torch.zeros(1, D, dtype=torch.float64)).variance[0, 0].sqrt()
            raw = s - model.posterior.head.min_scale
            enc.weight[1, D + k] = raw + torch.log(-torch.expm1(-raw))  # softplus⁻¹


@given(cases)
@settings(max_examples=10)
def test_conditional_encoder_reaches_the_exact_posterior(case):
    """q(z | x, c) of the plugin can be the exact posterior of every class: then each ELBO
    draw is log p(x | c). A q that ignores c cannot (its offsets are per class)."""
    seed, labels = case
    model = linear_cvae(seed)
    fit_exact_encoder(model)
    c = torch.tensor(labels)
    x = torch.randn(len(labels), D, dtype=torch.float64)
    draws = lk.elbo(model, x, condition=c, num_samples=4, estimator="top-down-mc").samples
    assert close(draws, lk.exact_log_prob(model, x, condition=c).expand(4, -1))


def test_condition_reaches_every_factor():
    """Changing c changes p(z | c), p(x | z, c) and q(z | x, c)."""
    model = linear_cvae(5)
    x, z = torch.randn(2, D, dtype=torch.float64), torch.randn(2, LATENT, dtype=torch.float64)
    a, b = model.given(torch.tensor([0, 0])), model.given(torch.tensor([1, 1]))
    assert not torch.equal(a.generative.prior(2).mean, b.generative.prior(2).mean)
    assert not torch.equal(a.generative.likelihood(z).mean, b.generative.likelihood(z).mean)
    assert not torch.equal(a.posterior.top(x).mean, b.posterior.top(x).mean)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m, x: lk.elbo(m, x), "is conditional on class labels 0..2"),
        (lambda m, x: lk.elbo(m, x, condition=torch.tensor([0, 3])), "3 is outside"),
        (lambda m, x: lk.iwae(m, x, 2, condition=torch.zeros(2)), "integer class labels"),
        (lambda m, x: lk.elbo(m, x, condition=torch.tensor([0])), "shape [2]"),
        (lambda m, x: lk.sample(m, 2, condition="1"), "class labels"),
        (lambda m, x: lk.sample(m, 2, condition=1, guidance=2.0), "guidance"),
        (lambda m, x: lk.exact_log_prob(m, x, condition=-1), "-1 is outside"),
        (lambda m, x: m.given(0).given(1), "already given"),
    ],
)
def test_bad_conditions_are_one_clear_error(call, message):
    model = linear_cvae(0)
    x = torch.randn(2, D, dtype=torch.float64)
    with pytest.raises(lk.LatentkitError, match=message.replace("[", r"\[").replace(".", r"\.")):
        call(model, x)


def test_unconditional_model_refuses_a_condition():
    model = lk.load_model("vae", data_shape=(D,), latent_dim=2).double()
    x = torch.randn(2, D, dtype=torch.float64)
    for call in (
        lambda: lk.elbo(model, x, condition=1),
        lambda: lk.iwae(model, x, 2, condition=1),
        lambda: lk.sample(model, 2, condition=1),
        lambda: model.given(1),
    ):
        with pytest.raises(lk.InputError, match="takes no condition"):
            call()


@given(cases)
@settings(max_examples=10)
def test_marginal_sums_the_condition_out(case):
    """log p(x) = log Σ_c p(c) p(x | c) with p(c) uniform: the exact marginal equals the
    log-sum-exp of the closed forms; the IWAE marginal is below it on average."""
    seed, labels = case
    model = linear_cvae(seed)
    x = lk.sample(model, len(labels), condition=torch.tensor(labels))
    each = torch.stack(
        [closed_form(model, x, torch.full_like(x[:, 0], c).long()) for c in range(K)]
    )
    expected = torch.logsumexp(each - math.log(K), dim=0)
    assert close(lk.marginal_log_prob(model, x, exact=True), expected)
    probs = lk.class_log_probs(model, x, exact=True).softmax(-1)
    assert close(probs.sum(-1), torch.ones(len(labels), dtype=torch.float64))


def test_iwae_marginal_is_a_lower_bound_on_average():
    model = linear_cvae(11, latent=2)
    x = lk.sample(model, 300, condition=torch.arange(300) % K)
    torch.manual_seed(1)
    gap = lk.marginal_log_prob(model, x, exact=True) - lk.marginal_log_prob(model, x, k=4)
    se = gap.std() / math.sqrt(gap.numel())
    assert gap.mean() > 3 * se, (gap.mean(), se)  # one-sided: below, by > 3 standard errors


LINEAR_CVAE = {
    "data_shape": (3,),
    "latent_dim": 2,
    "architecture": "linear",
    "likelihood": "gaussian",
    "classes": 3,
}


def _checks(**options):
    from hypothesis import strategies as hst

    from latentkit.testing.checks import run_checks

    return run_checks(
        "vae",
        configs=hst.just(LINEAR_CVAE),
        max_examples=5,
        checks=["exact-log-p", "iwae-ordering", "normalised", "samples"],
        shrink=False,
        **options,
    )


def test_the_checks_kit_verifies_a_conditional_model_given_a_seeded_class():
    results = _checks()
    assert [r.status for r in results] == ["passed"] * len(results), results


def test_the_checks_kit_sees_a_condition_dropped_in_the_oracle(monkeypatch):
    """The exact oracle's p(x | c) without c's decoder offset: samples (which use it) no
    longer follow the density the oracle reports, and the kit says so."""
    from latentkit.blocks import DecoderChain

    original = DecoderChain.linear_gaussian

    def dropped(self):
        spec = original(self)
        layer = self.decoder[0]
        return type(spec)(**{**spec.__dict__, "bias": layer.bias}) if spec else spec

    monkeypatch.setattr(DecoderChain, "linear_gaussian", dropped)
    results = {r.check.key: r.status for r in _checks()}
    assert "failed" in results.values(), results


def test_a_batch_with_no_label_logs_its_loss_without_terms():
    """A semi-supervised objective's batch may hold only unlabelled examples: the train line
    has its loss and no ELBO terms (they are the labelled examples' bound), not a crash."""
    if "m2" not in lk.list_models():
        pytest.skip("the m2 plugin is not installed here")
    torch.manual_seed(0)
    model = lk.load_model("m2", data_shape=(6,), latent_dim=2, classes=3)
    x = torch.rand(32, 6).round()
    labels = torch.full((32,), lk.MISSING_LABEL)
    labels[:3] = torch.arange(3)
    cfg = lk.TrainConfig(steps=8, batch_size=4, progress=False, log_every=1)
    trainer = lk.Trainer(model, x, cfg, train_labels=labels)
    trainer.fit()
    last = trainer.last_metrics["train"]
    assert math.isfinite(last["loss"])
    assert ("elbo" in last) == bool((labels[trainer.order.indices(7)] >= 0).any())


def test_a_view_of_many_conditions_passes_the_input_check():
    """The input check asks the likelihood's family on one row: a view bound to a whole
    batch's conditions answers it (it asked a view of n conditions for 1 row, and failed)."""
    model = linear_cvae(2)
    c = torch.tensor([0, 1, 2, 1])
    x = lk.sample(model, 4, condition=c)
    from latentkit.validation import _FAMILIES

    _FAMILIES.clear()  # the family is cached per chain: ask it afresh, through the view
    assert lk.training_loss(model.given(c), x).shape == (4,)


def test_sample_quality_draws_a_class_conditional_model_class_by_class(monkeypatch):
    """The quality pipeline's default sampler gives a class-conditional model classes
    0..K−1 in turn across its batches (its marginal with p(c) uniform), not no condition."""
    import latentkit.sampling as sampling
    from latentkit.quality.assess import draw_samples

    seen = []
    real = sampling.sample

    def spy(model, n, **kw):
        seen.append(kw["condition"].tolist())
        return real(model, n, **kw)

    monkeypatch.setattr(sampling, "sample", spy)
    drawn = draw_samples(linear_cvae(0), 7, batch_size=2)
    assert seen == [[0, 1], [2, 0], [1, 2], [0]]
    assert "classes 0..2 in turn" in drawn.sampler
