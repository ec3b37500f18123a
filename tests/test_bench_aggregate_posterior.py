"""The formulas of bench/aggregate_posterior_fit.py: log N(z; 0, I) and the EM mixture fit,
recomputed in float64 (a one-component fit is the Gaussian maximum-likelihood fit, and a
two-component fit to well-separated clusters each cluster's own, to round-off)."""

from __future__ import annotations

import math

import torch

from bench.aggregate_posterior_fit import fit_gmm, standard_log_prob

F64 = torch.float64


def test_the_standard_normal_log_density():
    z = torch.randn(7, 5, dtype=F64)
    want = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
    torch.testing.assert_close(standard_log_prob(z), want, rtol=0, atol=1e-12)


def test_one_component_is_the_gaussian_maximum_likelihood_fit():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(400, 3, generator=g, dtype=F64) @ torch.tensor(
        [[1.0, 0.3, 0.0], [0.0, 0.5, 0.2], [0.0, 0.0, 2.0]], dtype=F64
    ) + torch.tensor([1.0, -2.0, 0.5], dtype=F64)
    fitted = fit_gmm(z, 1, steps=3, seed=0)
    want = _mle(z)  # with the 1e-6 jitter fit_gmm states
    points = torch.randn(9, 3, dtype=F64)
    torch.testing.assert_close(fitted(points), want.log_prob(points), rtol=1e-10, atol=1e-10)


def _mle(z: torch.Tensor) -> torch.distributions.MultivariateNormal:
    centred = z - z.mean(0)
    cov = centred.T @ centred / len(z) + 1e-6 * torch.eye(z.shape[1], dtype=F64)
    return torch.distributions.MultivariateNormal(z.mean(0), covariance_matrix=cov)


def test_two_separated_clusters_are_each_clusters_own_fit():
    """Clusters 24 standard deviations apart: every responsibility is 0 or 1 to round-off,
    so EM's fixed point is each cluster's own maximum-likelihood Gaussian, weighted by its
    share of the points."""
    g = torch.Generator().manual_seed(1)
    a = torch.randn(300, 2, generator=g, dtype=F64) * 0.5 + torch.tensor([6.0, 0.0], dtype=F64)
    b = torch.randn(100, 2, generator=g, dtype=F64) * 0.5 - torch.tensor([6.0, 0.0], dtype=F64)
    fitted = fit_gmm(torch.cat([a, b]), 2, steps=50, seed=0)
    points = torch.randn(9, 2, dtype=F64) * 4
    parts = torch.stack(
        [_mle(a).log_prob(points) + math.log(0.75), _mle(b).log_prob(points) + math.log(0.25)]
    )
    torch.testing.assert_close(fitted(points), parts.logsumexp(0), rtol=1e-9, atol=1e-9)
