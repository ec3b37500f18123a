"""The m2 objective keeps the view of its model given the K labels (made once: a module made
inside a loss is what torch.compile cannot trace), and uses it only for views of the chains
it was made from; any other model handed to it (an EMA copy) is scored with its own
parameters."""

from __future__ import annotations

import copy

import pytest
import torch
from latentkit_m2.objective import class_bounds, enumerated, m2_loss

import latentkit as lk
from latentkit.conditions import base_chain

K, D = 3, 5


def _model() -> lk.LatentModel:
    torch.manual_seed(0)
    return lk.load_model(
        "m2", data_shape=(D,), latent_dim=2, hidden=(8,), classes=K, classifier_hidden=(6,)
    ).double()


def _loss(objective, model, x, labels, seed=3):
    torch.manual_seed(seed)
    return objective(model.given(labels, allow_missing=True), x)


def test_the_kept_view_gives_what_a_new_one_gives():
    model = _model()
    objective = lk.make_objective("m2", model, alpha=30.0, labelled=4)
    x = torch.rand(4, D, dtype=torch.float64).bernoulli()
    labels = torch.tensor([0, -1, 2, -1])
    kept = _loss(objective, model, x, labels)
    torch.manual_seed(3)
    fresh = m2_loss(model, x, labels, objective.weight)  # a view made in the call
    torch.testing.assert_close(kept, fresh, rtol=0, atol=0)
    # one view for every call with the same chains: nothing built per call
    assert objective._enumerated(model.given(labels, allow_missing=True)) is objective._member


def test_another_model_is_scored_with_its_own_parameters():
    model = _model()
    objective = lk.make_objective("m2", model, alpha=30.0, labelled=4)
    other = copy.deepcopy(model)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x = torch.rand(4, D, dtype=torch.float64).bernoulli()
    labels = torch.tensor([1, -1, -1, 0])
    got = _loss(objective, other, x, labels)
    torch.manual_seed(3)
    want = m2_loss(other, x, labels, objective.weight)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert not torch.equal(got, _loss(objective, model, x, labels))


def test_the_enumerated_rows_pair_each_example_with_each_label():
    """Column y of class_bounds is ELBO(x | y) + log p(y) with x's own draws: with one
    latent draw per row and the rows' noise fixed, the (b k) layout is checked against the
    labelled bound computed row by row from the same noise."""
    model = _model()
    x = torch.rand(3, D, dtype=torch.float64).bernoulli()
    member = enumerated(model)
    assert member.condition.tolist() == list(range(K))
    torch.manual_seed(5)
    bounds = class_bounds(model, x, member=member)
    torch.manual_seed(5)
    rows = x.repeat_interleave(K, dim=0)
    ys = torch.arange(K).repeat(3)
    each = lk.elbo(model, rows, condition=ys).total.unflatten(0, (3, K))
    torch.testing.assert_close(bounds, each - torch.log(torch.tensor(float(K))).double())


def test_enumerated_refuses_a_model_that_is_not_m2():
    with pytest.raises(lk.InputError, match="enumerated: the model is not an M2 model"):
        enumerated(lk.load_model("vae", data_shape=(D,), latent_dim=2, hidden=(4,)))


def test_base_chain_is_the_chain_a_view_was_made_from():
    model = _model()
    view = model.given(torch.tensor([1, 0]))
    assert base_chain(view.generative) is model.generative
    assert base_chain(view.posterior) is base_chain(model.posterior) is model.posterior
    with pytest.raises(lk.InputError, match="base_chain: expected a chain .* got NoneType"):
        base_chain(None)
