"""M2 (Kingma et al. 2014, the ``m2`` plugin): its bounds, its objective and its labels.

A linear M2 (linear decoder, Gaussian likelihood) is linear-Gaussian given each label y:
x | y ~ N(b + V e_y, W Wᵀ + diag ψ), read off the weights here (independently of the
oracles). On it: log p(x) by enumerating y is the log-sum-exp of those densities plus
log p(y); the unlabelled bound U(x) is below log p(x); U(x) is E_q(y|x)[ELBO(x|y) + log p(y)]
+ H[q(y|x)] (a Monte Carlo check over y); U(x) ≤ log Σ_y exp(ELBO(x|y) + log p(y)) draw by
draw; and with q(y|x) = p(y|x) and q(z|x,y) exact, U(x) = log p(x). With one latent
dimension both exact posteriors are expressible by the plugin's networks: q(z | x, y) is
N(a·x + o_y, s²) (a linear map of [x, e_y]) and log p(y | x) is affine in x (the classes
share one covariance), a linear classifier. Float64 throughout.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from latentkit_m2 import (
    M2Config,
    build_m2,
    classification_error,
    mask_labels,
    unlabelled_elbo,
)
from latentkit_m2.objective import class_bounds, unlabelled_bound

import latentkit as lk

K, D = 3, 4
F64 = torch.float64


def linear_m2(seed: int, *, latent: int = 1) -> lk.LatentModel:
    torch.manual_seed(seed)
    model = lk.load_model(
        "m2",
        data_shape=(D,),
        latent_dim=latent,
        architecture="linear",
        likelihood="gaussian",
        classes=K,
        classifier_hidden=(),
    ).double()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.6)
    return model


def weights(model: lk.LatentModel) -> tuple[torch.Tensor, ...]:
    """W, V, b, ψ of x = W z + V e_y + b + N(0, diag ψ)."""
    p = model.generative
    layer, d = p.decoder[0], p.latent_dim
    psi = p.lik.linear_gaussian_variance()
    return layer.weight[:, :d], layer.weight[:, d:], layer.bias, psi


def log_p_given_each_y(model: lk.LatentModel, x: torch.Tensor) -> torch.Tensor:
    """log N(x; b + V e_y, W Wᵀ + diag ψ) for every y, ``[batch, K]``."""
    W, V, b, psi = weights(model)
    cov = W @ W.T + torch.diag(psi)
    cols = [torch.distributions.MultivariateNormal(b + V[:, y], cov).log_prob(x) for y in range(K)]
    return torch.stack(cols, -1)


def softplus_inverse(y: torch.Tensor) -> torch.Tensor:
    return y + torch.log(-torch.expm1(-y))


def set_exact_encoder(model: lk.LatentModel) -> None:
    """q(z | x, y) := p(z | x, y) = N(a·(x − b − V e_y), s²), s² = 1/(1 + wᵀψ⁻¹w),
    a = s² ψ⁻¹ w (one latent dimension, p(z) = N(0, 1))."""
    W, V, b, psi = weights(model)
    w = W[:, 0]
    s2 = 1.0 / (1.0 + (w * w / psi).sum())
    a = s2 * w / psi
    enc = model.posterior.net[0]
    with torch.no_grad():
        enc.weight.zero_()
        enc.bias.zero_()
        enc.weight[0, :D] = a
        enc.weight[0, D:] = -(a @ (b.unsqueeze(1) + V))
        enc.bias[1] = softplus_inverse(s2.sqrt() - model.posterior.head.min_scale)


def set_exact_classifier(model: lk.LatentModel) -> None:
    """q(y | x) := p(y | x): logits m_yᵀC⁻¹x − ½ m_yᵀC⁻¹m_y (+ log p(y), uniform), with
    m_y = b + V e_y and C = W Wᵀ + diag ψ shared by every y."""
    W, V, b, psi = weights(model)
    means = (b.unsqueeze(1) + V).T  # [K, D]
    prec_means = torch.linalg.solve(W @ W.T + torch.diag(psi), means.T).T
    clf = model.posterior.classifier[0]
    with torch.no_grad():
        clf.weight.copy_(prec_means)
        clf.bias.copy_(-0.5 * (means * prec_means).sum(-1))


def classifier_log_q(model: lk.LatentModel, x: torch.Tensor) -> torch.Tensor:
    """log q(y | x) of the linear classifier, from its weights, ``[batch, K]``."""
    clf = model.posterior.classifier[0]
    return (x @ clf.weight.T + clf.bias).log_softmax(-1)


def close(a: torch.Tensor, b: torch.Tensor) -> bool:
    # float64: the sides take different routes (Cholesky of a D×D covariance, the engine's
    # log-densities) through O(1) weights; 1e-9 leaves room for that round-off only.
    return bool(torch.allclose(a, b, rtol=1e-9, atol=1e-9))


cases = st.tuples(st.integers(0, 2**16), st.integers(1, 6))


@given(cases)
@settings(max_examples=8)
def test_marginal_by_enumeration_is_the_logsumexp_of_the_conditionals(case):
    """lk.marginal_log_prob(exact) = log Σ_y p(y) N(x; b + V e_y, W Wᵀ + diag ψ), and each
    lk.exact_log_prob(m, x, condition=y) is its column (M2's linear_gaussian given y)."""
    seed, n = case
    model = linear_m2(seed, latent=2)
    x = torch.randn(n, D, dtype=F64) * 2
    each = log_p_given_each_y(model, x)
    for y in range(K):
        assert close(lk.exact_log_prob(model, x, condition=y), each[:, y])
    expected = torch.logsumexp(each + math.log(1 / K), -1)
    assert close(lk.marginal_log_prob(model, x, exact=True), expected)
    assert close(model.generative.label_log_prior().exp(), torch.full((K,), 1 / K, dtype=F64))


@given(cases)
@settings(max_examples=10)
def test_exact_posteriors_make_the_unlabelled_bound_log_p(case):
    """q(y | x) = p(y | x) and q(z | x, y) = p(z | x, y): U(x) = log p(x) on every draw
    (the Monte Carlo log-ratio is then constant in z)."""
    seed, n = case
    model = linear_m2(seed)
    set_exact_encoder(model)
    set_exact_classifier(model)
    x = torch.randn(n, D, dtype=F64) * 2
    log_p = torch.logsumexp(log_p_given_each_y(model, x) - math.log(K), -1)
    for _ in range(3):
        assert close(unlabelled_elbo(model, x, estimator="top-down-mc"), log_p)
    log_q = model.posterior.classify(x).logits
    assert close(log_q, torch.log_softmax(log_p_given_each_y(model, x), -1))


def test_unlabelled_bound_is_below_log_p():
    """U(x) ≤ log p(x) per example: the mean of 200 one-draw estimates Û (unbiased for U)
    is below log p(x) + 5 standard errors (one-sided; a false alarm has probability
    < 3e-7 per example under normality of the mean)."""
    model = linear_m2(7, latent=2)
    x = torch.randn(8, D, dtype=F64) * 2
    log_p = lk.marginal_log_prob(model, x, exact=True)
    torch.manual_seed(0)
    with torch.no_grad():
        draws = torch.stack([unlabelled_elbo(model, x) for _ in range(200)])
    mean, se = draws.mean(0), draws.std(0) / math.sqrt(200)
    assert bool((mean <= log_p + 5 * se).all()), (mean - log_p, se)
    assert bool((mean < log_p).all())  # the random q is far from exact: a real gap


def test_unlabelled_bound_is_the_expectation_over_y_plus_the_entropy():
    """U(x) = E_{y ~ q(y|x)}[ELBO(x | y) + log p(y)] + H[q(y | x)], by 4,000 draws of y per
    example (q(z | x, y) exact, so each ELBO(x | y) draw is exact and only y varies; the
    classifier random). |mean − (U − H)| < 5 standard errors: a false alarm has
    probability < 6e-7 per example."""
    model = linear_m2(3)
    set_exact_encoder(model)
    x = torch.randn(5, D, dtype=F64) * 2
    with torch.no_grad():
        u = unlabelled_elbo(model, x, estimator="top-down-mc")
        q = model.posterior.classify(x)
        torch.manual_seed(1)
        s = 4000
        y = q.sample((s,))  # [s, batch]
        xs = x.repeat(s, 1)
        b = lk.elbo(model, xs, condition=y.reshape(-1), estimator="top-down-mc").total
        b = b.reshape(s, -1) - math.log(K)
    mean, se = b.mean(0), b.std(0) / math.sqrt(s)
    assert bool(((mean + q.entropy() - u).abs() < 5 * se).all()), (mean + q.entropy() - u, se)
    assert bool((se > 1e-3).all())  # y matters: the check is not of a constant


@given(st.integers(0, 2**16))
@settings(max_examples=10)
def test_unlabelled_bound_is_below_the_marginalised_labelled_bound(seed):
    """U(x) ≤ log Σ_y exp b_y(x), b_y = ELBO(x|y) + log p(y), on the same draws of z: for any
    reals b_y, Σ_y q_y (b_y − log q_y) ≤ log Σ_y exp b_y (Gibbs' inequality, equality at
    q ∝ exp b), so it holds draw by draw, not only in expectation. An MLP M2, where the
    estimates b_y are noisy."""
    torch.manual_seed(seed)
    model = lk.load_model(
        "m2", data_shape=(D,), latent_dim=2, hidden=(8,), classes=K, classifier_hidden=(5,)
    ).double()
    x = torch.randn(6, D, dtype=F64)
    with torch.no_grad():
        torch.manual_seed(seed + 1)
        u = unlabelled_elbo(model, x)
        torch.manual_seed(seed + 1)
        b = class_bounds(model, x)
        log_q = model.posterior.classify(x).logits
    assert close(u, unlabelled_bound(log_q, b))  # the same draws
    assert bool((u <= torch.logsumexp(b, -1) + 1e-12).all())
    assert close(unlabelled_bound(b.log_softmax(-1), b), torch.logsumexp(b, -1))


def test_class_bounds_are_the_labelled_elbos():
    """Column y of class_bounds is lk.elbo(m, x, condition=y) + log p(y): exactly with an
    exact q(z | x, y) and the Monte Carlo log-ratio."""
    model = linear_m2(4)
    set_exact_encoder(model)
    x = torch.randn(5, D, dtype=F64)
    b = class_bounds(model, x, estimator="top-down-mc")
    for y in range(K):
        e = lk.elbo(model, x, condition=y, estimator="top-down-mc").total
        assert close(b[:, y], e - math.log(K))
    assert close(b, log_p_given_each_y(model, x) - math.log(K))


@pytest.mark.parametrize("alpha, labelled", [(5000.0, 100), (3.0, 2)])
def test_objective_is_the_labelled_and_unlabelled_losses(alpha, labelled):
    """The m2 objective per example: −(log p(x|y) + log p(y)) − (α/N_l)·log q(y|x) on a
    labelled row, −Σ_y q(y|x)(log p(x|y) + log p(y) − log q(y|x)) on an unlabelled one
    (q(z | x, y) exact, so each ELBO(x|y) is log p(x|y); the classifier random), with the
    weights read here."""
    model = linear_m2(9)
    set_exact_encoder(model)
    objective = lk.make_objective(
        "m2", model, estimator="top-down-mc", alpha=alpha, labelled=labelled
    )
    assert objective.missing_labels is True
    x = torch.randn(6, D, dtype=F64) * 2
    labels = torch.tensor([0, -1, 2, -1, 1, -1])
    loss = objective(model.given(labels, allow_missing=True), x)
    b = log_p_given_each_y(model, x) - math.log(K)
    log_q = classifier_log_q(model, x)
    rows = torch.arange(6)
    y = labels.clamp_min(0)
    labelled_loss = -b[rows, y] - alpha / labelled * log_q[rows, y]
    unlabelled_loss = -(log_q.exp() * (b - log_q)).sum(-1)
    expected = torch.where(labels >= 0, labelled_loss, unlabelled_loss)
    assert loss.shape == (6,)
    assert close(loss, expected)


def test_objective_takes_the_model_alpha_unless_given():
    model = lk.load_model("m2", data_shape=(D,), classes=K, alpha=30.0, labelled=3)
    assert lk.make_objective("m2", model).weight == 10.0
    assert lk.make_objective("m2", model, alpha=6.0).weight == 2.0
    default = lk.load_model("m2", data_shape=(D,), classes=K)
    assert lk.training_objective(default).weight == 0.1 * 50_000 / 100


def test_trainer_trains_with_missing_labels_only_under_m2():
    """lk.Trainer feeds MISSING_LABEL rows to the m2 objective (it declares missing_labels);
    the elbo objective refuses them."""
    torch.manual_seed(0)
    model = lk.load_model(
        "m2", data_shape=(D,), latent_dim=2, hidden=(8,), classes=K, classifier_hidden=(4,)
    )
    x = torch.randn(24, D)
    labels = mask_labels(torch.arange(24) % K, 2, seed=0)
    cfg = lk.TrainConfig(steps=3, batch_size=8, progress=False, checkpoint_every=0)
    before = [p.detach().clone() for p in model.posterior.classifier.parameters()]
    lk.Trainer(model, x, cfg, train_labels=labels, objective="m2").fit()
    after = list(model.posterior.classifier.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(after, before, strict=True))
    with pytest.raises(lk.ConfigError, match="have no label"):
        lk.Trainer(model, x, cfg, train_labels=labels, objective="elbo")


def test_label_reaches_the_decoder_and_the_encoder_not_the_classifier():
    model = linear_m2(5)
    x, z = torch.randn(2, D, dtype=F64), torch.randn(2, 1, dtype=F64)
    a, b = model.given(torch.tensor([0, 0])), model.given(torch.tensor([1, 1]))
    assert not torch.equal(a.generative.likelihood(z).mean, b.generative.likelihood(z).mean)
    assert not torch.equal(a.posterior.top(x).mean, b.posterior.top(x).mean)
    assert torch.equal(a.generative.prior(2).mean, b.generative.prior(2).mean)
    assert torch.equal(a.posterior.classify(x).logits, b.posterior.classify(x).logits)


def test_classification_error_counts_argmax_mistakes():
    model = linear_m2(2)
    clf = model.posterior.classifier[0]
    with torch.no_grad():  # q(y|x) puts its mode on y = sign of x_0 (0 or 1), never 2
        clf.weight.zero_()
        clf.bias.zero_()
        clf.weight[1, 0] = 1.0
        clf.weight[0, 0] = -1.0
    x = torch.randn(3000, D, dtype=F64)
    labels = torch.randint(0, K, (3000,))
    predicted = (x[:, 0] > 0).long()
    assert classification_error(model, x, labels) == float((predicted != labels).double().mean())
    assert classification_error(model, x, predicted) == 0.0


@given(
    st.lists(st.integers(0, K - 1), min_size=K, max_size=40),
    st.integers(1, 3),
    st.integers(0, 2**32 - 1),
)
def test_mask_labels_keeps_per_class_of_each_class(values, per_class, seed):
    labels = torch.tensor(values)
    counts = torch.bincount(labels, minlength=K)
    if int(counts.min()) < per_class:
        with pytest.raises(lk.InputError, match="fewer than per_class"):
            mask_labels(labels, per_class, seed, num_classes=K)
        return
    out = mask_labels(labels, per_class, seed, num_classes=K)
    kept = out >= 0
    assert torch.equal(out[kept], labels[kept])
    assert bool((out[~kept] == lk.MISSING_LABEL).all())
    assert torch.bincount(out[kept], minlength=K).tolist() == [per_class] * K
    assert torch.equal(out, mask_labels(labels, per_class, seed, num_classes=K))


def test_mask_labels_depends_on_the_seed():
    labels = torch.arange(1000) % 10
    picks = {tuple(mask_labels(labels, 10, s).tolist()) for s in range(4)}
    assert len(picks) == 4


def _vae() -> lk.LatentModel:
    return lk.load_model("vae", data_shape=(D,), latent_dim=2)


def _m2() -> lk.LatentModel:
    return linear_m2(0)


X = torch.zeros(2, D, dtype=F64)
BAD = [
    (lambda: unlabelled_elbo("model", X), lk.InputError, "LatentModel"),
    (lambda: unlabelled_elbo(_vae(), X), lk.InputError, "not an M2 model"),
    (lambda: unlabelled_elbo(_m2(), X, num_samples=0), lk.InputError, "num_samples"),
    (lambda: unlabelled_elbo(_m2(), X, estimator="exact"), lk.InputError, "estimator"),
    (lambda: unlabelled_elbo(_m2(), X[:, :2]), lk.ShapeError, "shape"),
    (lambda: unlabelled_elbo(_m2(), X, validate=1), lk.InputError, "validate"),
    (lambda: classification_error(_m2(), X, torch.tensor([0, -1])), lk.InputError, "-1"),
    (lambda: classification_error(_m2(), X, torch.zeros(2)), lk.InputError, "integer"),
    (lambda: classification_error(_m2(), X, torch.tensor([0])), lk.ShapeError, r"\[2\]"),
    (lambda: classification_error(_m2(), X[:0], torch.tensor([]).long()), lk.InputError, "empty"),
    (lambda: classification_error(_vae(), X.float(), torch.tensor([0, 1])), lk.InputError, "M2"),
    (lambda: mask_labels([0, 1], 1, 0), lk.InputError, "1-d tensor"),
    (lambda: mask_labels(torch.zeros(4), 1, 0), lk.InputError, "integers"),
    (lambda: mask_labels(torch.tensor([0, 1, -1]), 1, 0), lk.InputError, "all known"),
    (lambda: mask_labels(torch.tensor([0, 1]), 0, 0), lk.InputError, "per_class"),
    (lambda: mask_labels(torch.tensor([0, 1]), 1, -3), lk.InputError, "seed"),
    (lambda: mask_labels(torch.tensor([0, 2]), 1, 0), lk.InputError, "class 1 has 0"),
    (lambda: mask_labels(torch.tensor([0, 1]), 1, 0, num_classes=3), lk.InputError, "class 2"),
    (lambda: mask_labels(torch.tensor([0, 3]), 1, 0, num_classes=3), lk.InputError, "outside"),
    (lambda: mask_labels(torch.tensor([], dtype=torch.long), 1, 0), lk.InputError, "empty"),
    (lambda: build_m2({"classes": 3}), lk.ConfigError, "M2Config"),
    (lambda: lk.load_model("m2", classes=1), lk.ConfigError, "classes"),
    (lambda: lk.load_model("m2", alpha=-1.0), lk.ConfigError, "alpha"),
    (lambda: lk.load_model("m2", alpha=math.inf), lk.ConfigError, "alpha"),
    (lambda: lk.load_model("m2", labelled=0), lk.ConfigError, "labelled"),
    (lambda: lk.load_model("m2", classifier_hidden=(0,)), lk.ConfigError, "classifier_hidden"),
    (lambda: lk.make_objective("m2", _vae()), lk.ConfigError, "does not apply"),
    (lambda: lk.make_objective("m2", _m2(), alpha=-2.0), lk.ConfigError, "alpha"),
    (lambda: lk.make_objective("m2", _m2(), estimator="no"), lk.ConfigError, "estimator"),
    (lambda: lk.make_objective("m2", _m2())(_m2(), X), lk.InputError, "bound condition"),
]


@pytest.mark.parametrize("call, error, message", BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_arguments_are_one_typed_line(call, error, message):
    with pytest.raises(error, match=message) as info:
        call()
    assert "\n" not in str(info.value)


def test_config_defaults_are_the_papers():
    cfg = M2Config()
    assert (cfg.latent_dim, cfg.hidden, cfg.activation) == (50, (500,), "softplus")
    assert (cfg.classes, cfg.classifier_hidden, cfg.alpha) == (10, (500,), 5000.0)
    assert cfg.classification_weight == 50.0
    model = build_m2(M2Config(data_shape=(D,), classes=K))
    assert model.condition_spec == lk.ConditionSpec(num_classes=K)
    assert model.objective_choice == ("m2", {"alpha": 5000.0, "labelled": 100})
