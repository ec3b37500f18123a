"""The distributions torch lacks: the discretized Normal and the MVN/diagonal KLs."""

from __future__ import annotations

import math

import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.distributions import Independent, MultivariateNormal, Normal, kl_divergence

from latentkit.distributions import DiscretizedNormal, diag_normal, log1mexp, to_multivariate

levels = torch.arange(256, dtype=torch.float64) * 2 / 255 - 1


@given(
    loc=st.floats(-3, 3),
    log_scale=st.floats(math.log(1e-4), math.log(10.0)),
)
def test_discretized_normal_sums_to_one_over_the_256_levels(loc, log_scale):
    """The 256 bins (outer ones open) partition the real line: Σ P(x_k) = 1."""
    d = DiscretizedNormal(
        torch.tensor(loc, dtype=torch.float64), torch.tensor(math.exp(log_scale)).double()
    )
    total = torch.logsumexp(d.log_prob(levels), 0)
    assert abs(float(total)) < 1e-9


def test_discretized_normal_tail_bins_stay_finite_and_accurate():
    """A bin 40 σ from the mean: log P is about −800, not −inf (log-space CDF differences)."""
    d = DiscretizedNormal(
        torch.tensor(-1.0, dtype=torch.float64), torch.tensor(0.05, dtype=torch.float64)
    )
    lp = d.log_prob(torch.tensor(1.0 - 2 / 255, dtype=torch.float64))
    assert torch.isfinite(lp)
    z = (1.0 - 2 / 255 - 1 / 255 + 1.0) / 0.05
    approx = -0.5 * z**2 - math.log(z * math.sqrt(2 * math.pi))  # Mills-ratio tail
    assert abs(float(lp) - approx) < 0.05 * abs(approx)


def test_discretized_normal_samples_are_levels():
    d = DiscretizedNormal(torch.zeros(1000), torch.full((1000,), 0.5))
    s = d.sample()
    assert bool(((s + 1) * 127.5 - torch.round((s + 1) * 127.5)).abs().max() < 1e-4)
    assert float(s.min()) >= -1 and float(s.max()) <= 1


def test_log1mexp_matches_naive_where_naive_is_accurate():
    a = torch.linspace(-30, -1e-3, 200, dtype=torch.float64)
    assert torch.allclose(log1mexp(a), torch.log(1 - torch.exp(a)), rtol=1e-10)
    assert torch.isfinite(log1mexp(torch.tensor(-1e-20, dtype=torch.float64)))


@given(d=st.integers(1, 5), seed=st.integers(0, 10_000))
def test_registered_kls_match_the_full_covariance_formula(d, seed):
    """KL(MVN ‖ diag Normal) and KL(diag Normal ‖ MVN) equal the MVN–MVN closed form."""
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(d, d, generator=g, dtype=torch.float64)
    mvn = MultivariateNormal(
        torch.randn(d, generator=g).double(), A @ A.T + 0.1 * torch.eye(d).double()
    )
    diag = diag_normal(
        torch.randn(2, d, generator=g).double(), torch.rand(2, d, generator=g).double() + 0.1
    )
    full = to_multivariate(diag)
    assert torch.allclose(kl_divergence(mvn, diag), kl_divergence(mvn, full), rtol=1e-12)
    assert torch.allclose(kl_divergence(diag, mvn), kl_divergence(full, mvn), rtol=1e-12)
    assert isinstance(diag, Independent) and isinstance(diag.base_dist, Normal)
