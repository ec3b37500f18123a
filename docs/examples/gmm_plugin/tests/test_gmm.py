"""The example plugin's own test suite: EM (seed 001) and latentkit's checks on ``gmm``.

Run it with ``pytest docs/examples/gmm_plugin/tests`` once the plugin is installed
(``pip install -e docs/examples/gmm_plugin``); latentkit's pytest plugin provides the
``latentkit_check`` fixture.
"""

from __future__ import annotations

import itertools

import torch
from hypothesis import given
from hypothesis import strategies as st
from latentkit_gmm import em_step, fit_em

import latentkit as lk


@st.composite
def mixtures_and_data(draw):
    """A float64 ``gmm`` with the exact posterior, and data from another random mixture."""
    D, K = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**31 - 1))
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = lk.load_model("gmm", data_dim=D, components=K, posterior="exact").double()
    n = draw(st.integers(2, 40))
    centres = 3 * torch.randn(K + 1, D, generator=gen, dtype=torch.float64)
    which = torch.randint(K + 1, (n,), generator=gen)
    x = centres[which] + torch.randn(n, D, generator=gen, dtype=torch.float64)
    return model, x


def close(a: torch.Tensor, b: torch.Tensor, rel: float = 1e-9) -> bool:
    """Equal up to float64 round-off of a logsumexp over K terms: rel · (1 + |b|)."""
    return bool(((a - b).abs() <= rel * (1 + b.abs())).all())


@given(mixtures_and_data())
def test_em_never_lowers_the_log_likelihood(case):
    """Seed 001, EM: log p(θ') ≥ ELBO(r, θ') ≥ ELBO(r, θ) = log p(θ) at every iteration."""
    model, x = case
    history = fit_em(model, x, steps=12)
    for before, after in itertools.pairwise(history):
        assert after >= before - 1e-9 * (1 + abs(before)), history


@given(mixtures_and_data())
def test_elbo_equals_log_p_after_every_e_step(case):
    """With q = the responsibilities (the E-step), ELBO = log p(x) exactly (seed 001, eq. 10):
    summed over the components, and at every single draw of the Monte Carlo log-ratio."""
    model, x = case
    for _ in range(4):
        em_step(model, x)
        log_p = lk.exact_log_prob(model, x)
        enumerated = lk.elbo(model, x, estimator="enumerated").total
        assert close(enumerated, log_p)
        draws = lk.elbo(model, x, estimator="bottom-up", num_samples=8).samples
        assert close(draws, log_p.expand_as(draws))  # zero variance: every draw is log p


def test_em_fits_separated_clusters():
    """On three well-separated clusters EM ends near the generating log-likelihood."""
    gen = torch.Generator().manual_seed(0)
    centres = torch.tensor([[-6.0, 0.0], [0.0, 6.0], [6.0, 0.0]], dtype=torch.float64)
    x = centres.repeat_interleave(100, 0) + torch.randn(300, 2, generator=gen, dtype=torch.float64)
    torch.manual_seed(1)
    model = lk.load_model("gmm", data_dim=2, components=3).double()
    with torch.no_grad():
        model.generative.means.copy_(x[torch.tensor([0, 100, 200])] + 0.5)
    history = fit_em(model, x, steps=30)
    fitted = sorted(model.generative.means.tolist())
    assert torch.allclose(torch.tensor(fitted, dtype=torch.float64), centres, atol=0.3)
    # per example: log(1/3) − log(2πe) ≈ −3.94 for three equal unit-variance 2-d clusters
    assert history[-1] / 300 > -4.1


def test_latentkit_checks(latentkit_check):
    """latentkit's property checks on every config the plugin declares (``test_configs``)."""
    latentkit_check("gmm")
