"""The kit's statistical comparison (``latentkit.testing.checks.assert_in_expectation``):
a sequential z-test that redraws at 64, 512 and 4,096 replicates and fails only when the
same entry fails every stage. Its false-alarm rate holds under heavy tails where a
one-stage z-test's does not; its power is that of the first stage; exact sides are
decided at once; a known spread replaces the sample's for rare outcomes.
"""

from __future__ import annotations

import math

import pytest
import torch

from latentkit.testing.checks import STAGES, Z_CRITICAL, CheckFailure, assert_in_expectation
from latentkit.testing.checks.normalisation import reference_shrink

LOGNORMAL_SIGMA = 1.5
"""exp(1.5·N(0, 1)): skewness ≈ 33; a 64-draw mean is below E with probability ~0.7 and
its sample standard error is then too small, so a one-stage z-test fails correct models."""


def lognormal_draws(seed: int, sigma: float = LOGNORMAL_SIGMA):
    """draw(r, stage): r lognormal draws for one entry, against their exact mean."""
    mean = torch.tensor([math.exp(sigma**2 / 2)], dtype=torch.float64)

    def draw(r: int, stage: int):
        gen = torch.Generator().manual_seed(1000 * seed + stage)
        return torch.exp(sigma * torch.randn(r, 1, generator=gen, dtype=torch.float64)), mean

    return draw


def false_alarms(stages, seeds: range) -> int:
    count = 0
    for seed in seeds:
        try:
            assert_in_expectation(lognormal_draws(seed), "E[w]", relation="=", stages=stages)
        except CheckFailure:
            count += 1
    return count


def test_sequential_test_keeps_its_false_alarm_rate_under_heavy_tails():
    """Correct comparisons (draws whose mean is the exact side) with lognormal(0, 1.5²)
    draws, 400 fixed seeds: a one-stage test at 64 replicates fails 4 or more of them
    (2.75 % of 2,000 seeds measured; 3.4e-6 was its nominal rate), the sequential test at
    most 1 (0 of 2,000 measured: a false alarm needs all three independent stages to fail,
    so it is no likelier than the 4,096-replicate stage alone, 0 of 2,000 measured)."""
    seeds = range(400)
    assert false_alarms((STAGES[0],), seeds) >= 4
    assert false_alarms(STAGES, seeds) <= 1


def test_a_real_difference_is_found_with_the_first_stage_power():
    """Normal draws (two entries) whose mean exceeds the exact side by δ standard
    deviations: a stage fails an entry when its z ≈ δ·√r exceeds 4.5, so the later stages
    (√512, √4096) fail any δ the first stage fails, and the rate is the first stage's,
    P(N(0,1) > 4.5 − 8δ) per entry. δ = 1: 1 − 2e-4, all 100 fixed seeds fail. δ = 0.3:
    3.6 % for two entries — at most 10 of 100 (binomial tail 1e-3)."""

    def shifted(seed: int, delta: float):
        def draw(r: int, stage: int):
            gen = torch.Generator().manual_seed(7 * seed + stage)
            noise = torch.randn(r, 2, generator=gen, dtype=torch.float64)
            return noise + delta, torch.zeros(2, dtype=torch.float64)

        return draw

    def fails(delta: float) -> int:
        n = 0
        for seed in range(100):
            try:
                assert_in_expectation(shifted(seed, delta), "E[a] ≤ E[b]")
            except CheckFailure:
                n += 1
        return n

    assert fails(1.0) == 100
    assert 1 <= fails(0.3) <= 10


def test_stages_draw_fresh_replicates_and_stop_at_the_first_pass():
    calls = []

    def always_high(r: int, stage: int):
        calls.append((r, stage))
        return torch.ones(r, 1, dtype=torch.float64) + torch.randn(r, 1, dtype=torch.float64), (
            torch.zeros(1, dtype=torch.float64)
        )

    with pytest.raises(CheckFailure, match=r"at 64, .* at 512, .* at 4096 \(threshold 4.5"):
        assert_in_expectation(always_high, "E[a] ≤ E[b]")
    assert calls == [(r, i) for i, r in enumerate(STAGES)]
    calls.clear()

    def equal(r: int, stage: int):
        calls.append((r, stage))
        return torch.zeros(r, 1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)

    assert_in_expectation(equal, "E[a] ≤ E[b]")
    assert calls == [(STAGES[0], 0)]


def test_a_failure_must_repeat_at_every_stage_for_the_same_entry():
    """Entry 0 fails the first stage only, entry 1 the later ones only: no entry fails all
    stages, so the comparison passes (an OR across stages would fail it)."""

    def draw(r: int, stage: int):
        a = torch.zeros(r, 2, dtype=torch.float64)
        a[:, 0 if stage == 0 else 1] = 1.0
        a[0] += 1e-3  # some spread, so se > 0
        return a, torch.zeros(2, dtype=torch.float64)

    assert_in_expectation(draw, "E[a] ≤ E[b]")


def test_exact_sides_are_decided_at_once():
    calls = []

    def draw(r: int, stage: int):
        calls.append(stage)
        return torch.tensor([1.0], dtype=torch.float64), torch.tensor([0.0], dtype=torch.float64)

    with pytest.raises(CheckFailure, match=r"difference is 1 \(exact\)"):
        assert_in_expectation(draw, "E[a] ≤ E[b]")
    assert calls == [0]


def test_two_sided_comparison_fails_either_way():
    def draw(sign: float):
        return lambda r, stage: (
            torch.full((r, 1), sign, dtype=torch.float64) + 1e-3 * torch.randn(r, 1),
            torch.zeros(1, dtype=torch.float64),
        )

    for sign, direction in ((1.0, "a ≤ b"), (-1.0, "b ≤ a")):
        with pytest.raises(CheckFailure, match=direction):
            assert_in_expectation(draw(sign), "E", relation="=", names=("a", "b"))
    with pytest.raises(ValueError, match="relation"):
        assert_in_expectation(draw(1.0), "E", relation="<")


def test_known_spread_judges_rare_outcomes():
    """A frequency of 0 for an outcome of probability 1e-4 is no evidence (its sample spread
    is 0, which a sample-variance z-test would read as certainty); the binomial spread
    √(p(1 − p)) decides. A frequency of 0.6 for a probability of 0.5 at 64 draws and more
    is (z = 1.6 at 64 fails nothing; the test passes only if p is right)."""
    p = torch.tensor([1e-4, 0.5], dtype=torch.float64)
    sd = (p * (1 - p)).sqrt()

    def draw(freq_of_half: float):
        def d(r: int, stage: int):
            hits = torch.zeros(r, 2, dtype=torch.float64)
            hits[: round(freq_of_half * r), 1] = 1.0
            return hits, p

        return d

    assert_in_expectation(draw(0.5), "frequency", relation="=", sd=sd)
    with pytest.raises(CheckFailure, match="example 1"):
        assert_in_expectation(draw(0.8), "frequency", relation="=", sd=sd)


@pytest.mark.parametrize("dim", [1, 2, 4, 16, 64])
def test_reference_shrink_bounds_the_ratio_variance(dim):
    """For d = N(0, I_D) and r = N(0, c² I_D): E_d[(r/d)²] = (c √(2 − c²))^{−D}; the chosen
    c makes it 2 (relative variance 1) for D ≥ 2, and c = 0.5 (1.51) for D = 1; checked by
    the formula and by 200,000 draws (relative error of the mean of (r/d)² ≲ 1 %)."""
    c = reference_shrink(dim)
    second_moment = (c * math.sqrt(2 - c * c)) ** (-dim)
    if dim == 1:
        assert c == 0.5
        assert second_moment == pytest.approx(1.512, abs=1e-3)
    else:
        assert second_moment == pytest.approx(2.0, rel=1e-9)
    gen = torch.Generator().manual_seed(dim)
    z = torch.randn(200_000, dim, generator=gen, dtype=torch.float64)
    log_ratio = (-0.5 * (z / c) ** 2 - math.log(c) + 0.5 * z**2).sum(-1)
    assert float((2 * log_ratio).exp().mean()) == pytest.approx(second_moment, rel=0.05)
    assert float(log_ratio.exp().mean()) == pytest.approx(1.0, rel=0.02)
    assert Z_CRITICAL == 4.5
