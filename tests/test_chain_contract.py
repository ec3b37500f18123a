"""The chain-contract check (``latentkit verify``'s ``contract``): every built-in family keeps
it, and each way of breaking it is caught with the method named."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Categorical, Independent, Normal

import latentkit as lk
from latentkit.testing.checks.case import CheckFailure, ModelCase
from latentkit.testing.checks.contract import chain_contract


def _case(model: lk.LatentModel) -> ModelCase:
    x = torch.randn(3, 4, dtype=torch.float64)
    return ModelCase(
        name="vae", config={}, seed=0, x=x, x_swap=x[:1], swap_index=0, beta=1.0, k=2,
        k_max=4, model=model,
    )  # fmt: skip


def _vae() -> lk.LatentModel:
    torch.manual_seed(0)
    return lk.load_model("vae", data_shape=(4,), latent_dim=2, hidden=(8,)).double()


def test_a_model_that_keeps_the_contract_passes():
    chain_contract(_case(_vae()))


def _prior_as_tensor(m):
    m.generative.prior = lambda n: torch.zeros(n, 2, dtype=torch.float64)


def _prior_without_independent(m):
    m.generative.prior = lambda n: Normal(torch.zeros(n, 2, dtype=torch.float64), 1.0)


def _prior_of_another_size(m):
    z = torch.zeros(5, 2, dtype=torch.float64)
    m.generative.prior = lambda n: Independent(Normal(z, 1.0), 1)


def _likelihood_in_float32(m):
    m.generative.likelihood = lambda z: Independent(Normal(torch.zeros(len(z), 4), 1.0), 1)


def _likelihood_of_another_event(m):
    loc = torch.zeros(3, 5, dtype=torch.float64)
    m.generative.likelihood = lambda z: Independent(Normal(loc, 1.0), 1)


def _posterior_raises(m):
    def top(h):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    m.posterior.top = top


def _posterior_discrete_of_wrong_batch(m):
    m.posterior.first = lambda h: Categorical(logits=torch.zeros(1, 2, dtype=torch.float64))


class _PerDimension(Independent):
    """An Independent whose log_prob forgets to sum over the event: ``[n, d]``."""

    def log_prob(self, value):
        return self.base_dist.log_prob(value)


def _posterior_log_prob_per_dimension(m):
    encoder = m.posterior.forward

    def first(h):
        q = encoder(h)
        return _PerDimension(q.base_dist, 1)

    m.posterior.first = first


BREAKS = [
    (_prior_as_tensor, r"generative.prior\(n\) returned a Tensor"),
    (_prior_without_independent, r"generative.prior\(n\) has batch_shape \(3, 2\)"),
    (_prior_of_another_size, r"generative.prior\(n\) has batch_shape \(5,\)"),
    (_likelihood_in_float32, "generative.likelihood.* dtype torch.float32"),
    (_likelihood_of_another_event, r"generative.likelihood\(z_1\) has event_shape \(5,\)"),
    (_posterior_raises, "posterior.top.* raised RuntimeError"),
    (_posterior_discrete_of_wrong_batch, r"posterior.first\(x\) has batch_shape \(1,\)"),
    (_posterior_log_prob_per_dimension, r"posterior.first\(x\).log_prob .* shape \(3, 2\)"),
]


@pytest.mark.parametrize("brk, message", BREAKS, ids=[b.__name__ for b, _ in BREAKS])
def test_each_break_is_caught_naming_the_method(brk, message):
    model = _vae()
    brk(model)
    with pytest.raises(CheckFailure, match=message):
        chain_contract(_case(model))


@pytest.mark.parametrize("name", ["vae", "hvae", "ddpm", "vdm", "iaf", "vamp", "m2", "gmm"])
def test_every_built_in_family_keeps_the_contract(name):
    from latentkit.testing.checks import run_checks

    if name not in lk.list_models():
        pytest.skip(f"{name} is not installed here")
    results = run_checks(name, max_examples=3, checks=["contract"], derandomize=True)
    assert [r.status for r in results] == ["passed"], results
