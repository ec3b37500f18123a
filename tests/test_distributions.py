"""The distributions torch lacks: the discretized Normal and the MVN/diagonal KLs."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.distributions import Independent, MultivariateNormal, Normal, kl_divergence

from latentkit.distributions import (
    DiscretizedNormal,
    StandardNormal,
    diag_normal,
    log1mexp,
    standard_normal,
    to_multivariate,
)

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


def _grid(dtype=torch.float64):
    locs = torch.linspace(-3, 3, 25, dtype=torch.float64)
    scales = torch.logspace(-3, 1, 17, dtype=torch.float64)
    loc, scale, x = torch.meshgrid(locs, scales, levels, indexing="ij")
    return loc.to(dtype), scale.to(dtype), x.to(dtype)


def test_discretized_normal_is_the_normal_mass_of_each_bin():
    """log P(x) = log(Φ(upper) − Φ(lower)) per bin, Φ(upper) at x = −1 and 1 − Φ(lower) at
    x = 1, checked against float64 CDF differences where they are accurate: at P > 1e-6 the
    difference of two CDFs in [0, 1] loses at most 1e-16 / 1e-6, so its log is good to
    1e-10 absolute (the tails are the previous test's)."""
    loc, scale, x = _grid()
    lp = DiscretizedNormal(loc, scale).log_prob(x)
    upper = torch.special.ndtr((x + 1 / 255 - loc) / scale)
    lower = torch.special.ndtr((x - 1 / 255 - loc) / scale)
    mass = torch.where(
        x < -1 + 1 / 255, upper, torch.where(x > 1 - 1 / 255, 1 - lower, upper - lower)
    )
    keep = mass > 1e-6
    assert int(keep.sum()) > 10_000 and bool(keep[..., 0].any()) and bool(keep[..., -1].any())
    torch.testing.assert_close(lp[keep], mass[keep].log(), rtol=0, atol=1e-9)


def test_discretized_normal_gradients_are_finite_and_exact_at_the_open_bins():
    """The open end bins put ±∞ behind torch.where: no NaN may leak into the gradient, and
    gradcheck (float64 finite differences) agrees at both ends, mirrored or not."""
    loc = torch.tensor([-1.5, -0.99, 0.0, 0.99, 1.5], dtype=torch.float64, requires_grad=True)
    scale = torch.tensor([0.3, 0.01, 1.0, 0.01, 0.3], dtype=torch.float64, requires_grad=True)
    for value in (-1.0, 1.0, 1 - 2 / 255):
        x = torch.full((5,), value, dtype=torch.float64)
        assert torch.autograd.gradcheck(
            lambda m, s, x=x: DiscretizedNormal(m, s).log_prob(x), (loc, scale)
        )
    loc, scale, x = _grid(torch.float32)
    loc.requires_grad_(), scale.requires_grad_()
    grads = torch.autograd.grad(DiscretizedNormal(loc, scale).log_prob(x).sum(), (loc, scale))
    assert all(bool(torch.isfinite(g).all()) for g in grads)


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


def _torch_pair(loc: torch.Tensor, scale: torch.Tensor, event_dims: int) -> Independent:
    return Independent(Normal(loc, scale), event_dims)


@pytest.mark.parametrize(
    ("shape", "event_dims"), [((4,), 0), ((3, 4), 0), ((3, 4), 1), ((2, 3, 5), 1), ((2, 3, 5), 2)]
)
@given(seed=st.integers(0, 2**16))
def test_diag_normal_kls_equal_torchs_independent_normal_kl(shape, event_dims, seed):
    """KL(DiagNormal ‖ DiagNormal) and KL(DiagNormal ‖ N(0, I)), the one-call closed forms,
    equal torch's Independent/Normal KL on the same parameters, to float64 round-off, for
    every number of event dimensions (each a separate summation path)."""
    g = torch.Generator().manual_seed(seed)
    mq, mp = torch.randn(2, *shape, generator=g, dtype=torch.float64) * 2
    sq, sp = torch.rand(2, *shape, generator=g, dtype=torch.float64) * 3 + 0.05
    q, p = diag_normal(mq, sq, event_dims), diag_normal(mp, sp, event_dims)
    expected = kl_divergence(_torch_pair(mq, sq, event_dims), _torch_pair(mp, sp, event_dims))
    torch.testing.assert_close(kl_divergence(q, p), expected, rtol=1e-12, atol=1e-12)
    std = standard_normal(shape[0], shape[1:], like=mq, event_dims=event_dims)
    assert isinstance(std, StandardNormal)
    ones = torch.ones_like(mq)
    expected_std = kl_divergence(
        _torch_pair(mq, sq, event_dims), _torch_pair(torch.zeros_like(mq), ones, event_dims)
    )
    torch.testing.assert_close(kl_divergence(q, std), expected_std, rtol=1e-12, atol=1e-12)
    # N(0, I) as the posterior: the general form on its expanded scalars.
    torch.testing.assert_close(
        kl_divergence(std, p),
        kl_divergence(
            _torch_pair(torch.zeros_like(mp), ones, event_dims), _torch_pair(mp, sp, event_dims)
        ),
        rtol=1e-12,
        atol=1e-12,
    )


def test_standard_normal_is_n01_in_every_other_respect():
    """standard_normal's log_prob, sample shapes and moments are those of N(0, I)."""
    like = torch.zeros((), dtype=torch.float64)
    d = standard_normal(5, (3, 2), like=like)
    x = torch.randn(5, 3, 2, dtype=torch.float64)
    assert d.batch_shape == (5,) and d.event_shape == (3, 2)
    torch.testing.assert_close(d.log_prob(x), Normal(0.0, 1.0).log_prob(x).sum((-1, -2)))
    assert d.rsample().shape == (5, 3, 2) and d.expand((5,)).event_shape == (3, 2)
    assert isinstance(d.expand((5,)), StandardNormal)


def test_diag_kl_refuses_mismatched_event_dims_like_torch():
    """Different event ranks: no closed form, as torch says for Independent pairs."""
    a = diag_normal(torch.zeros(2, 3), torch.ones(2, 3), 1)
    b = diag_normal(torch.zeros(2, 3), torch.ones(2, 3), 0)
    with pytest.raises(NotImplementedError):
        kl_divergence(a, b)
    with pytest.raises(NotImplementedError):
        kl_divergence(b, standard_normal(2, (3,), like=torch.zeros(())))


def test_standard_kl_broadcasts_like_the_general_form():
    """A q that broadcasts against N(0, I)'s batch: the same numbers as the general form."""
    q = diag_normal(torch.tensor([[0.5, -1.0]]), torch.tensor([[2.0, 0.3]]))
    p = standard_normal(3, (2,), like=torch.zeros(()))
    expected = kl_divergence(
        _torch_pair(q.base_dist.loc, q.base_dist.scale, 1),
        _torch_pair(torch.zeros(3, 2), torch.ones(3, 2), 1),
    )
    torch.testing.assert_close(kl_divergence(q, p), expected)


@pytest.mark.parametrize("event_dims", [0, 1, 2])
@pytest.mark.parametrize(
    ("q_from", "p_from"),
    [
        ((2, 1, 1), (2, 1, 1)),  # one scale per example on both sides (a diffusion's)
        ((2, 3, 1), (2, 1, 1)),  # compact along the last axis only, and one side coarser
        ((1, 1, 1), (2, 1, 1)),  # a scalar against one per example
        ((2, 1, 5), (2, 3, 5)),  # one side full: the ratio is full too
        ((1, 3, 1), (2, 1, 1)),  # compact along the batch
    ],
)
@given(seed=st.integers(0, 2**16))
def test_diag_kl_with_expanded_scales_equals_torchs(q_from, p_from, event_dims, seed):
    """Scales expanded from fewer values (stride 0) take the compact path of KL(DiagNormal ‖
    DiagNormal): r and log r on the compact values, each counted for the event positions it
    stands for. The same numbers as torch's Independent/Normal KL on materialized copies, to
    float64 round-off, whichever axes are compact and on either side."""
    shape = (2, 3, 5)
    g = torch.Generator().manual_seed(seed)
    mq, mp = torch.randn(2, *shape, generator=g, dtype=torch.float64) * 2
    sq = (torch.rand(q_from, generator=g, dtype=torch.float64) * 3 + 0.05).expand(shape)
    sp = (torch.rand(p_from, generator=g, dtype=torch.float64) * 3 + 0.05).expand(shape)
    q, p = diag_normal(mq, sq, event_dims), diag_normal(mp, sp, event_dims)
    expected = kl_divergence(
        _torch_pair(mq, sq.contiguous(), event_dims), _torch_pair(mp, sp.contiguous(), event_dims)
    )
    got = kl_divergence(q, p)
    assert got.shape == expected.shape == shape[: len(shape) - event_dims]
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("event_dims", [0, 1, 2])
@pytest.mark.parametrize("p_from", [(2, 1, 1), (2, 3, 5)])
@pytest.mark.parametrize("q_shape", [(1, 3, 5), (2, 3, 1)])
def test_diag_kl_with_expanded_scales_broadcasts_q_against_p(q_shape, p_from, event_dims):
    """A q whose loc broadcasts against p's (a batch of 1 against 2, or one value along the
    last axis against 5), q's scale one scalar expanded: torch's numbers on materialized
    copies."""
    shape, g = (2, 3, 5), torch.Generator().manual_seed(7)
    mq = torch.randn(q_shape, generator=g, dtype=torch.float64)
    mp = torch.randn(shape, generator=g, dtype=torch.float64)
    sq = torch.tensor(0.7, dtype=torch.float64).expand(q_shape)
    sp = (torch.rand(p_from, generator=g, dtype=torch.float64) + 0.2).expand(shape)
    q, p = diag_normal(mq, sq, event_dims), diag_normal(mp, sp, event_dims)
    q_torch = _torch_pair(mq, sq.contiguous(), event_dims)
    p_torch = _torch_pair(mp, sp.contiguous(), event_dims)
    for got, expected in [  # and the other way round: the smaller one as p
        (kl_divergence(q, p), kl_divergence(q_torch, p_torch)),
        (kl_divergence(p, q), kl_divergence(p_torch, q_torch)),
    ]:
        assert got.shape == expected.shape == shape[: len(shape) - event_dims]
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
