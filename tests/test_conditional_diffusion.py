"""Class-conditional diffusions: ``ddpm`` and ``vdm`` with ``classes`` = K, and classifier-free
guidance.

Given c, every network call of the chains, the bounds and the training objectives is
ε_θ(x_t, t, f(c)) with f the one-hot features (all zeros for the null class K), computed here
independently of the chains from the network itself. A guidance scale w changes the sampling
transitions only, to ε̃ = (1 + w) ε_θ(x_t, t, c) − w ε_θ(x_t, t, ∅); ``classes = 0`` is the
unconditional model with its state-dict keys; the trainer drops labels to the null class at
the configured rate. Exact identities in float64, with tolerances of round-off; the one
statistical check states its bound.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from latentkit_vdm import sample_ode, sample_sde
from torch.nn import functional as F

import latentkit as lk
from latentkit.bound_terms import layer_term
from latentkit.testing import strategies as lks
from latentkit.training import TrainConfig, Trainer

K, D, T = 3, 3, 4
F64 = torch.float64
Z = 4.5  # two-sided z bound: a false alarm rate of 6.8e-6


def ddpm(seed: int, **config) -> lk.LatentModel:
    """A small vector DDPM conditional on K classes, with random parameters (the condition
    embedding too: far from the zero-initialized output layer, every c gives another ε)."""
    base = dict(data_shape=(D,), hidden=(16,), num_timesteps=T, decoder="gaussian", classes=K)
    model = lk.load_model("ddpm", **{**base, **config})
    return lks.randomize_parameters(model, seed, 0.5).double()


def vdm(seed: int, **config) -> lk.LatentModel:
    base = dict(data_shape=(D,), hidden=(16,), num_timesteps=T, decoder="gaussian", classes=K)
    model = lk.load_model("vdm", **{**base, **config})
    return lks.randomize_parameters(model, seed, 0.5).double()


def close(a: torch.Tensor, b: torch.Tensor) -> bool:
    # float64, the same operations in another order (two calls vs one batched call): round-off
    # of O(1)–O(100) terms, far below 1e-9.
    return bool(torch.allclose(a, b, rtol=1e-10, atol=1e-10))


def features(c: torch.Tensor) -> torch.Tensor:
    """f(c): one-hot, written here apart from ConditionSpec.features."""
    return F.one_hot(c, K).to(F64)


def ddpm_eps(model, l: int, z: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """ε_θ(x_l, l, f) straight from the network."""
    steps = torch.full((z.shape[0],), l, dtype=torch.long)
    return model.generative.net(z, steps, f)[:, 0]


def vdm_eps(model, l: int, z: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """ε̂_θ(z_t, t, f) at t = t_l = (l − 1)/T straight from the network (x̂ → ε̂ when the
    network predicts x)."""
    core = model.generative.core
    t = torch.full((z.shape[0],), (l - 1) / T, dtype=F64)
    gamma, _ = core.gamma(t)
    out = core.net(z, t, gamma, condition=f)
    if core.prediction == "eps":
        return out
    g = gamma[:, None]
    return (z - torch.sigmoid(-g).sqrt() * out) / torch.sigmoid(g).sqrt()


def vdm_step_mean(model, l: int, z: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """p(z_s | z_t)'s mean with ε̂ = eps: q(z_s | z_t, x̂), x̂ = (z_t − β̄_t ε̂)/ᾱ_t."""
    core = model.generative.core
    s, t = torch.tensor((l - 2) / T, dtype=F64), torch.tensor((l - 1) / T, dtype=F64)
    alpha_t, sigma_t = core.scales(t)
    _, cz, cx, _ = core.step_constants(s, t)
    return cz * z + cx * (z - sigma_t * eps) / alpha_t


cases = st.tuples(
    lks.seeds(),
    st.lists(st.integers(0, K - 1), min_size=1, max_size=5),
    st.integers(2, T),
)


# --- the condition reaches the network ------------------------------------------------------


@given(cases, st.sampled_from(("beta", "learned")))
@settings(max_examples=15)
def test_ddpm_transition_and_decoder_given_c_are_the_network_at_c(case, variance):
    seed, labels, l = case
    model = ddpm(seed, reverse_variance=variance)
    c = torch.tensor(labels)
    z = torch.randn(len(labels), D, dtype=F64, generator=torch.Generator().manual_seed(seed))
    p = model.given(c).generative
    for layer, step in ((l, p.transition(l, z)), (1, p.likelihood(z))):
        want = model.generative.mean(layer, z, ddpm_eps(model, layer, z, features(c)))
        assert close(step.mean, want)


@given(cases, st.sampled_from(("eps", "x")))
@settings(max_examples=15)
def test_vdm_transition_given_c_is_the_network_at_c(case, prediction):
    seed, labels, l = case
    model = vdm(seed, prediction=prediction)
    c = torch.tensor(labels)
    z = torch.randn(len(labels), D, dtype=F64, generator=torch.Generator().manual_seed(seed))
    got = model.given(c).generative.transition(l, z).mean
    assert close(got, vdm_step_mean(model, l, z, vdm_eps(model, l, z, features(c))))


LOSSES = [("ddpm", loss) for loss in ("elbo", "simple", "hybrid")] + [
    ("vdm", loss) for loss in ("continuous", "score-matching", "elbo")
]


@pytest.mark.parametrize(("family", "loss"), LOSSES)
def test_each_example_s_loss_reads_its_own_condition(family, loss):
    """The training loss and the ELBO with one draw of the noise: changing the condition of
    example 0 alone changes example 0's term, and no other's (so each row reads its own c,
    in order, and the objective reaches the network with it)."""
    build = ddpm if family == "ddpm" else vdm
    model = build(1, loss=loss, reverse_variance="learned") if loss == "hybrid" else None
    model = model or build(1, loss=loss)
    x = torch.randn(6, D, dtype=F64, generator=torch.Generator().manual_seed(2))
    c = torch.tensor([0, 1, 2, 0, 1, 2])
    other = c.clone()
    other[0] = 2
    for value in (
        lambda cc: lk.training_loss(model.given(cc), x, validate=False),
        lambda cc: lk.elbo(model, x, condition=cc).total,
    ):
        torch.manual_seed(3)
        a = value(c)
        torch.manual_seed(3)
        b = value(other)
        assert torch.equal(a[1:], b[1:])
        assert (a[0] - b[0]).abs() > 1e-6


def test_vdm_continuous_elbo_reads_the_condition():
    model = vdm(4)
    x = torch.randn(3, D, dtype=F64)
    t = torch.tensor([0.2, 0.5, 0.9], dtype=F64)
    terms = []
    for c in (torch.tensor([0, 1, 2]), torch.tensor([1, 1, 2])):
        torch.manual_seed(5)
        terms.append(model.continuous_elbo(x, t=t, condition=c).diffusion)
        torch.manual_seed(5)
        assert torch.equal(model.given(c).continuous_elbo(x, t=t).diffusion, terms[-1])
    assert torch.equal(terms[0][1:], terms[1][1:]) and (terms[0][0] - terms[1][0]).abs() > 1e-6


# --- classifier-free guidance ---------------------------------------------------------------

weights = st.floats(0.1, 6.0)


@given(cases, weights, st.sampled_from(("beta", "learned")))
@settings(max_examples=15)
def test_ddpm_guided_step_is_the_guidance_formula(case, w, variance):
    """ε̃ = (1 + w) ε_θ(x_t, t, c) − w ε_θ(x_t, t, ∅) in p(x_{l-1} | x_l) and in the decoder
    p(x_0 | x_1), from two network calls made here; the variance is the conditional one."""
    seed, labels, l = case
    model = ddpm(seed, reverse_variance=variance)
    c = torch.tensor(labels)
    z = torch.randn(len(labels), D, dtype=F64, generator=torch.Generator().manual_seed(seed))
    guided, plain = model.given(c, guidance=w).generative, model.given(c).generative
    for layer, got, unguided in (
        (l, guided.transition(l, z), plain.transition(l, z)),
        (1, guided.likelihood(z), plain.likelihood(z)),
    ):
        given_c = ddpm_eps(model, layer, z, features(c))
        null = ddpm_eps(model, layer, z, torch.zeros(len(labels), K, dtype=F64))
        eps = (1 + w) * given_c - w * null
        assert close(got.mean, model.generative.mean(layer, z, eps))
        assert close(got.stddev, unguided.stddev)


@given(cases, weights, st.sampled_from(("eps", "x")))
@settings(max_examples=15)
def test_vdm_guided_step_is_the_guidance_formula(case, w, prediction):
    seed, labels, l = case
    model = vdm(seed, prediction=prediction)
    c = torch.tensor(labels)
    z = torch.randn(len(labels), D, dtype=F64, generator=torch.Generator().manual_seed(seed))
    got = model.given(c, guidance=w).generative.transition(l, z)
    null = vdm_eps(model, l, z, torch.zeros(len(labels), K, dtype=F64))
    eps = (1 + w) * vdm_eps(model, l, z, features(c)) - w * null
    assert close(got.mean, vdm_step_mean(model, l, z, eps))
    assert close(got.stddev, model.given(c).generative.transition(l, z).stddev)


@pytest.mark.parametrize("build", [ddpm, vdm])
def test_guidance_zero_is_the_conditional_chain(build):
    model = build(6)
    c = torch.tensor([2, 0, 1])
    z = torch.randn(3, D, dtype=F64)
    zero, plain = model.given(c, guidance=0.0).generative, model.given(c).generative
    for l in range(2, T + 1):
        assert torch.equal(zero.transition(l, z).mean, plain.transition(l, z).mean)
    torch.manual_seed(7)
    a = lk.sample(model, 3, condition=c, guidance=0.0)
    torch.manual_seed(7)
    assert torch.equal(a, lk.sample(model, 3, condition=c))


@given(cases, st.sampled_from((0.0, 2.0)))
@settings(max_examples=10)
def test_vdm_probability_flow_given_c_is_the_network_at_c(case, w):
    """dz/dt = ½ γ'(t) β̄_t (ε − β̄_t z) with ε the network's at c (guided at w): what
    latentkit.ode_log_prob integrates for a view given c."""
    seed, labels, l = case
    model = vdm(seed)
    c = torch.tensor(labels)
    z = torch.randn(len(labels), D, dtype=F64, generator=torch.Generator().manual_seed(seed))
    t = torch.tensor((l - 1) / T, dtype=F64)
    eps = vdm_eps(model, l, z, features(c))
    eps = (1 + w) * eps - w * vdm_eps(model, l, z, torch.zeros(len(labels), K, dtype=F64))
    g, dg = model.generative.core.gamma(t)
    sigma = torch.sigmoid(g).sqrt()
    got = model.given(c, guidance=w).generative.probability_flow(t, z)
    assert close(got, 0.5 * dg * sigma * (eps - sigma * z))


def test_vdm_samplers_guide_every_network_call(monkeypatch):
    """sample_sde and sample_ode hand every call of ε̂ the draws' conditions and w (the model
    as built: its ODE is smooth, so the adaptive solver takes few steps)."""
    base = dict(data_shape=(D,), hidden=(16,), num_timesteps=T, decoder="gaussian", classes=K)
    model = lk.load_model("vdm", **base).double()
    core = model.generative.core
    calls = []
    original = core.eps

    def spy(z, t, gamma=None, **keywords):
        calls.append(keywords)
        return original(z, t, gamma, **keywords)

    monkeypatch.setattr(core, "eps", spy)
    c = torch.tensor([1, 0, 2, 2])
    sample_sde(model, 4, steps=3, condition=c, guidance=1.5)
    assert len(calls) == 3
    sample_ode(model, 4, condition=2, guidance=0.5, rtol=1e-3, atol=1e-3)
    assert len(calls) > 3
    for i, keywords in enumerate(calls):
        assert keywords["guidance"] == (1.5 if i < 3 else 0.5)
        assert torch.equal(keywords["condition"], c if i < 3 else torch.full((4,), 2))


# --- the unconditional model is unchanged ---------------------------------------------------


@pytest.mark.parametrize("family", ["ddpm", "vdm"])
@pytest.mark.parametrize("network", ["mlp", "unet"])
def test_classes_zero_keeps_the_state_dict_keys(family, network):
    """classes = 0 builds no condition embedding: its keys are the conditional model's less
    the one embedding matrix [time-embedding width, K] (tests/test_legacy_checkpoints.py loads
    checkpoints saved before conditioning existed)."""
    shape = (1, 4, 4) if network == "unet" else (D,)
    common = dict(data_shape=shape, network=network, hidden=(8,), channels=4, num_timesteps=T)
    plain = lk.load_model(family, **common).state_dict()
    conditional = lk.load_model(family, **common, classes=K).state_dict()
    extra = sorted(set(conditional) - set(plain))
    assert set(plain) <= set(conditional) and len(extra) == 1
    assert extra[0].endswith("time.condition.weight") and conditional[extra[0]].shape[1] == K
    assert not any("condition" in key for key in plain)
    assert all(plain[k].shape == conditional[k].shape for k in plain)
    assert lk.load_model(family, **common).condition_spec is None


@pytest.mark.parametrize("family", ["ddpm", "vdm"])
def test_the_spec_carries_classes_and_the_drop_rate(family):
    model = lk.load_model(family, data_shape=(D,), hidden=(8,), classes=5, guidance_drop=0.25)
    assert model.condition_spec == lk.ConditionSpec(num_classes=5, guidance=True, drop_rate=0.25)


# --- training -------------------------------------------------------------------------------


def test_trainer_trains_a_conditional_ddpm_on_digits_dropping_labels_at_the_rate():
    """A conditional DDPM trains on the digits and their labels; the null class (all-zero
    features) reaches the network in a fraction of the rows that is guidance_drop = 0.2 within
    Z = 4.5 binomial standard errors over 100 steps of 128 labels (``simple``: one network
    call per step, each row dropped independently)."""
    ds = lk.load_dataset("digits")
    rate, steps, batch = 0.2, 100, 128
    torch.manual_seed(0)
    model = lk.load_model(
        "ddpm",
        data_shape=ds.data_shape,
        network="mlp",
        hidden=(32,),
        num_timesteps=20,
        decoder="gaussian",
        loss="simple",
        classes=10,
        guidance_drop=rate,
    )
    rows, nulls = [], []

    def count(module, args):
        if not (module.training and torch.is_grad_enabled()):
            return  # the trainer's other calls (a probe of the likelihood, an evaluation)
        f = args[2]
        rows.append(f.shape[0])
        nulls.append(int((f.abs().sum(1) == 0).sum()))
        assert bool(((f == 0) | (f == 1)).all()) and bool((f.sum(1) <= 1).all())

    model.generative.net.register_forward_pre_hook(count)
    embedding = model.generative.net.time.condition.weight.detach().clone()
    config = TrainConfig(steps=steps, batch_size=batch, progress=False, checkpoint_every=0)
    Trainer(model, ds.train, config, train_labels=ds.train_labels).fit()
    n = sum(rows)
    assert n == steps * batch
    se = math.sqrt(n * rate * (1 - rate))
    assert abs(sum(nulls) - n * rate) <= Z * se, (sum(nulls), n * rate, se)
    assert not torch.equal(model.generative.net.time.condition.weight, embedding)
    x = lk.sample(model, 4, condition=torch.tensor([0, 3, 7, 9]), guidance=2.0)
    assert bool(torch.isfinite(x).all())


# --- the closed forms given c ---------------------------------------------------------------


@given(cases)
@settings(max_examples=15)
def test_layer_batched_terms_equal_the_sequential_ones_given_c(case):
    """The engine's layer-batched path (x tiled over layers in one call, the conditions tiled
    with it) gives every layer's KL term the sequential per-layer call gives at the same
    x_l, row by row: the ELBO's layer terms agree given c (float64)."""
    seed, labels, _ = case
    model = ddpm(seed, reverse_variance="learned", decoder="discretized")
    n = len(labels)
    c = torch.tensor(labels)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, D), generator=gen).to(F64) / 127.5 - 1
    zs = torch.randn(T - 1, n, D, dtype=F64, generator=gen)
    view = model.given(c)
    layers = torch.arange(2, T + 1)
    batched = layer_term(
        view, x.repeat(T - 1, 1), layers.repeat_interleave(n), z=zs.flatten(0, 1)
    ).view(T - 1, n)
    for i, l in enumerate(layers.tolist()):
        one = layer_term(view, x, torch.full((n,), l), z=zs[i])
        assert close(batched[i], one)


def test_layer_batched_and_sequential_elbos_agree_in_expectation_given_c():
    """The layer-batched ELBO (x_t ~ q(x_t | x_0) per layer) and the sequential analytic one
    given c: per example and per layer, means of R = 128 replicates pass a two-sided z-test
    at Z = 4.5 (false alarm 6.8e-6 per comparison)."""
    model = ddpm(11, reverse_variance="learned", decoder="discretized", schedule="cosine")
    x = torch.randint(0, 256, (3, D), generator=torch.Generator().manual_seed(1)) / 127.5 - 1
    x, c, R = x.to(F64), torch.tensor([0, 1, 2]), 128
    torch.manual_seed(12)
    seq = lk.elbo(model, x.repeat(R, 1), condition=c.repeat(R), estimator="analytic")
    bat = lk.elbo(model, x.repeat(R, 1), condition=c.repeat(R), estimator="layer-batched")
    for a, b in [(seq.total, bat.total), *zip(seq.layer_kl.T, bat.layer_kl.T)]:
        a, b = a.reshape(R, 3), b.reshape(R, 3)
        diff = a.mean(0) - b.mean(0)
        se = (a.var(0) / R + b.var(0) / R).sqrt()
        assert bool((diff.abs() <= Z * se + 1e-9).all()), (diff, se)


# --- bad input ------------------------------------------------------------------------------


def _trainer_with_label(label: int) -> None:
    model = ddpm(0)
    x = torch.randn(8, D, dtype=F64)
    labels = torch.full((8,), label)
    Trainer(model, x, TrainConfig(steps=1, batch_size=4, progress=False), train_labels=labels)


X0 = torch.zeros(1, D, dtype=F64)
BAD = [
    (lambda: lk.sample(ddpm(0), 2, condition=K + 1), "outside the label set"),
    (lambda: sample_sde(vdm(0), 2, steps=2, condition=torch.tensor([0, K + 1])), "outside"),
    (lambda: _trainer_with_label(K), "train_labels 3 is outside the label set 0..2"),
    (lambda: lk.sample(lk.load_model("ddpm", data_shape=(D,)), 2, guidance=1.0), "no guidance"),
    (lambda: sample_ode(lk.load_model("vdm", data_shape=(D,)), 2, guidance=1.0), "no guidance"),
    (lambda: lk.sample(ddpm(0), 2, condition=0, guidance=-1.0), "guidance must be"),
    (lambda: sample_sde(vdm(0), 2, steps=2, condition=0, guidance=-0.5), "guidance must be"),
    (lambda: sample_sde(vdm(0), 2, steps=2), "pass condition="),
    (lambda: lk.elbo(ddpm(0).given(0, guidance=1.0), X0), "guidance"),
    (lambda: vdm(0).given(0, guidance=1.0).continuous_elbo(X0), "guidance"),
]


@pytest.mark.parametrize(("call", "message"), BAD)
def test_bad_input_is_one_clear_error(call, message):
    with pytest.raises(lk.InputError) as info:
        call()
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("family", ["ddpm", "vdm"])
@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"classes": 1}, "classes"),
        ({"classes": -2}, "classes"),
        ({"classes": True}, "classes"),
        ({"classes": 2.0}, "classes"),
        ({"guidance_drop": 1.0}, "guidance_drop"),
        ({"guidance_drop": -0.1}, "guidance_drop"),
        ({"guidance_drop": float("nan")}, "guidance_drop"),
        ({"guidance_drop": "0.1"}, "guidance_drop"),
    ],
)
def test_bad_config_names_the_field(family, values, field):
    with pytest.raises(lk.ConfigError, match=field):
        lk.load_model(family, data_shape=(D,), **values)


def test_vdm_refuses_classes_with_the_linear_network():
    with pytest.raises(lk.ConfigError, match="'classes' needs a network other than 'linear'"):
        lk.load_model("vdm", data_shape=(D,), network="linear", classes=K)
