"""The ``continuous`` objective's ``draws``: k draws of (z_0, t, ε) per example, averaged.

Claims, float64 on a tiny ``eps_skip`` ``vdm``:

* unbiased: with the network's output zero the bound is the closed-form normal part
  (``ContinuousDiffusion.normal_part``), and the mean loss over independent calls equals −it
  (z-test); with a random MLP the means at k = 1 and k = 4 agree (two-sample z-test);
* k times less variance at least: log(k · var_k / var_1) ≤ 4.5 standard errors, the
  standard error of a log sample variance being √((κ − 1)/N) with κ the sample's own kurtosis
  (the normal-theory √(2/N) would understate it for these heavy-tailed losses);
* per example: changing one example (or, in a conditional model, its label) changes only its
  own loss at the same seed — the rows' "(k b)" tiling and the reshape read the same order;
* a bad ``draws`` is one ``ConfigError`` naming the field.

Mutants (each tried by hand): ``reshape(n, k).mean(1)`` (the per-example tests), the
conditions not tiled or tiled "(b k)" (the conditional per-example test), ``draws`` ignored
(the variance test), ``sum`` for ``mean`` (both unbiasedness tests).
"""

from __future__ import annotations

import math

import pytest
import torch

import latentkit as lk

F64 = torch.float64
Z = 4.5
N = 2000


def _model(**extra) -> lk.LatentModel:
    torch.manual_seed(0)
    return lk.load_model(
        "vdm", data_shape=(3,), decoder="gaussian", hidden=(16,), fourier_exponents=(),
        eps_skip=True, **extra,
    ).double()  # fmt: skip


def _losses(model, x: torch.Tensor, draws: int, calls: int = N) -> torch.Tensor:
    objective = lk.make_objective("continuous", model, draws=draws)
    with torch.no_grad():
        return torch.stack([objective(model, x) for _ in range(calls)])


def _x() -> torch.Tensor:
    return torch.tensor([[0.3, -1.2, 2.0], [1.5, 0.1, -0.4]], dtype=F64)


@pytest.mark.parametrize("draws", [1, 3, 8])
def test_the_averaged_loss_is_unbiased_for_the_closed_form(draws):
    model = _model()
    for p in model.generative.core.net.parameters():
        torch.nn.init.zeros_(p)  # ε̂ = β̄_t z_t: the bound is the normal part, in closed form
    x = _x()
    torch.manual_seed(1)
    losses = _losses(model, x, draws)
    want = -model.generative.core.normal_part(x)
    z = (losses.mean(0) - want) / (losses.std(0) / math.sqrt(N))
    assert z.abs().max() < Z, z


def test_more_draws_keep_the_mean_of_one_draw():
    model = _model()
    x = _x()
    torch.manual_seed(2)
    one, four = _losses(model, x, 1), _losses(model, x, 4)
    se = (one.var(0) / N + four.var(0) / N).sqrt()
    z = (one.mean(0) - four.mean(0)) / se
    assert z.abs().max() < Z, z


def _kurtosis(v: torch.Tensor) -> torch.Tensor:
    c = v - v.mean(0)
    return c.pow(4).mean(0) / c.pow(2).mean(0).pow(2)


@pytest.mark.parametrize("draws", [4, 16])
def test_k_draws_cut_the_variance_k_times_at_least(draws):
    model = _model()
    x = _x()
    torch.manual_seed(3)
    one, many = _losses(model, x, 1), _losses(model, x, draws)
    log_ratio = torch.log(draws * many.var(0) / one.var(0))
    se = ((_kurtosis(one) - 1) / N + (_kurtosis(many) - 1) / N).sqrt()
    assert (log_ratio < Z * se).all(), (log_ratio, se)
    # and the variance does fall: at k = 16 by far more than its standard error
    assert (torch.log(many.var(0) / one.var(0)) < -Z * se).all()


def _one_seed(objective, model, x: torch.Tensor) -> torch.Tensor:
    torch.manual_seed(4)
    with torch.no_grad():
        return objective(model, x)


def test_each_example_keeps_its_own_draws():
    model = _model()
    objective = lk.make_objective("continuous", model, draws=3)
    x = torch.randn(5, 3, dtype=F64, generator=torch.Generator().manual_seed(5))
    before = _one_seed(objective, model, x)
    moved = x.clone()
    moved[2] += 1.0
    after = _one_seed(objective, model, moved)
    assert before.shape == (5,)
    others = [0, 1, 3, 4]
    torch.testing.assert_close(after[others], before[others], rtol=1e-12, atol=0)
    assert not torch.isclose(after[2], before[2])


def test_a_conditional_models_labels_follow_their_examples():
    model = _model(classes=3)
    with torch.no_grad():  # the class embedding starts at zero: give the labels an effect
        for p in model.generative.core.net.parameters():
            p.normal_(0.0, 0.5)
    objective = lk.make_objective("continuous", model, draws=4)
    x = torch.randn(5, 3, dtype=F64, generator=torch.Generator().manual_seed(6))
    labels = torch.tensor([0, 1, 2, 1, 0])
    before = _one_seed(objective, model.given(labels), x)
    changed = labels.clone()
    changed[1] = 2
    after = _one_seed(objective, model.given(changed), x)
    others = [0, 2, 3, 4]
    torch.testing.assert_close(after[others], before[others], rtol=1e-12, atol=0)
    assert not torch.isclose(after[1], before[1])


@pytest.mark.parametrize("bad", [0, -2, 1.5, "4"])
def test_a_bad_draws_is_refused_naming_the_field(bad):
    with pytest.raises(lk.ConfigError, match="draws"):
        lk.make_objective("continuous", _model(), draws=bad)
