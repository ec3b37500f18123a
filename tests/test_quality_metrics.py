"""Sample-quality metrics (latentkit.quality.metrics): the Fréchet distance against closed
forms, its bootstrap error against replicate spread, k-NN precision and recall against a
brute-force oracle, and the classifier score's identities (docs/quality.md)."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

import latentkit as lk
from latentkit.quality import (
    classifier_score,
    frechet_distance,
    frechet_estimate,
    gaussian_stats,
    knn_radii,
    precision_recall,
)
from latentkit.quality.metrics import sqrtm_psd, trace_sqrt_product

EPS = torch.finfo(torch.float64).eps


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _random_cov(d: int, seed: int, rank: int | None = None) -> torch.Tensor:
    a = torch.randn(d, rank or d, generator=_gen(seed), dtype=torch.float64)
    return a @ a.T / d + (0 if rank else 0.1) * torch.eye(d, dtype=torch.float64)


def _cond(cov: torch.Tensor) -> float:
    ev = torch.linalg.eigvalsh(cov)
    return float(ev.max() / ev.min())


# --- Fréchet distance -------------------------------------------------------------------


def test_gaussian_stats_are_the_mean_and_unbiased_covariance():
    """Against torch.cov (divisor N − 1) and the mean, in float64, to round-off."""
    x = torch.randn(50, 4, generator=_gen(9), dtype=torch.float64) * 3 + 2
    mu, cov = gaussian_stats(x.float())
    assert mu.dtype == cov.dtype == torch.float64
    assert torch.allclose(mu, x.float().double().mean(0), rtol=0, atol=1e-12)
    assert torch.allclose(cov, torch.cov(x.float().double().T), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_frechet_of_a_set_with_itself_is_zero(seed):
    """d²(N(μ, Σ), N(μ, Σ)) = 0 up to round-off: tr Σ + tr Σ − 2 tr (Σ^{½} Σ Σ^{½})^{½}.
    Bound: eigvalsh has backward error ~D·eps·‖Σ²‖; the square roots turn it into at most
    ~D·eps·κ(Σ)·tr Σ on a well-conditioned Σ, and we allow 10 times that."""
    x = torch.randn(400, 12, generator=_gen(seed), dtype=torch.float64) @ torch.randn(
        12, 12, generator=_gen(seed + 100), dtype=torch.float64
    )
    mu, cov = gaussian_stats(x)
    d = frechet_distance(mu, cov, mu, cov)
    assert abs(d) <= 10 * 12 * EPS * _cond(cov) * float(cov.trace())


@pytest.mark.parametrize("seed", range(4))
def test_frechet_is_symmetric(seed):
    """d²(P, Q) = d²(Q, P): tr (Σ₁Σ₂)^{½} = tr (Σ₂Σ₁)^{½} (the same eigenvalues); equal up
    to round-off (same bound as above, on the worse-conditioned covariance)."""
    mu1 = torch.randn(6, generator=_gen(seed), dtype=torch.float64)
    mu2 = torch.randn(6, generator=_gen(seed + 1), dtype=torch.float64)
    c1, c2 = _random_cov(6, seed + 2), _random_cov(6, seed + 3)
    d12, d21 = frechet_distance(mu1, c1, mu2, c2), frechet_distance(mu2, c2, mu1, c1)
    bound = 10 * 6 * EPS * max(_cond(c1), _cond(c2)) * float(c1.trace() + c2.trace())
    assert d12 > 0.1 and abs(d12 - d21) <= bound


@pytest.mark.parametrize("seed", range(4))
def test_frechet_diagonal_closed_form(seed):
    """Commuting (diagonal) covariances: d² = ‖μ₁ − μ₂‖² + Σ_i (σ₁ᵢ − σ₂ᵢ)², exact to
    round-off (relative 1e3·eps; only sums, products and square roots of well-scaled values)."""
    g = _gen(seed)
    mu1, mu2 = torch.randn(5, generator=g, dtype=torch.float64), torch.randn(5, generator=g)
    s1 = torch.rand(5, generator=g, dtype=torch.float64) + 0.2
    s2 = torch.rand(5, generator=g, dtype=torch.float64) + 0.2
    expected = float(((mu1 - mu2.double()) ** 2).sum() + ((s1 - s2) ** 2).sum())
    got = frechet_distance(mu1, torch.diag(s1**2), mu2.double(), torch.diag(s2**2))
    assert got == pytest.approx(expected, rel=1e3 * EPS, abs=1e3 * EPS)


@pytest.mark.parametrize("seed", range(6))
def test_frechet_two_by_two_closed_form(seed):
    """Non-commuting 2×2 covariances: Σ₁Σ₂ has positive eigenvalues a, b, so
    tr (Σ₁Σ₂)^{½} = √a + √b = √(tr Σ₁Σ₂ + 2 √(det Σ₁ det Σ₂)): an answer with no eigensolver."""
    c1, c2 = _random_cov(2, seed), _random_cov(2, seed + 50)
    mu1 = torch.randn(2, generator=_gen(seed + 7), dtype=torch.float64)
    mu2 = torch.randn(2, generator=_gen(seed + 8), dtype=torch.float64)
    tr_sqrt = math.sqrt(float((c1 @ c2).trace()) + 2 * math.sqrt(float(c1.det() * c2.det())))
    expected = float((mu1 - mu2) @ (mu1 - mu2) + c1.trace() + c2.trace()) - 2 * tr_sqrt
    bound = 10 * 2 * EPS * max(_cond(c1), _cond(c2)) * float(c1.trace() + c2.trace())
    assert abs(c1 @ c2 - c2 @ c1).max() > 1e-3  # the covariances do not commute
    assert frechet_distance(mu1, c1, mu2, c2) == pytest.approx(expected, abs=bound)


def test_frechet_estimate_agrees_with_two_known_gaussians():
    """Features drawn from N(μ₁, Σ₁) and N(μ₂, Σ₂) (D = 4, 20,000 each): the plug-in estimate
    is within 4 bootstrap s.e. of the closed form (a z-test at a fixed seed, false-alarm rate
    ~6e-5 for a normal estimate). Its O(D/N) upward bias is ~(tr Σ₁ + tr Σ₂)/N ≈ 5e-4, under
    a tenth of the s.e. here, so it does not enter the bound."""
    d, n = 4, 20_000
    c1, c2 = _random_cov(d, 1), _random_cov(d, 2)
    mu1 = torch.zeros(d, dtype=torch.float64)
    mu2 = torch.full((d,), 0.5, dtype=torch.float64)
    truth = frechet_distance(mu1, c1, mu2, c2)
    x1 = mu1 + torch.randn(n, d, generator=_gen(3), dtype=torch.float64) @ sqrtm_psd(c1)
    x2 = mu2 + torch.randn(n, d, generator=_gen(4), dtype=torch.float64) @ sqrtm_psd(c2)
    est = frechet_estimate(x1, x2, bootstrap=50, seed=0)
    bias = float(c1.trace() + c2.trace()) / n
    assert est.se > 0 and bias < est.se / 10
    assert abs(est.value - truth) <= 4 * est.se, (est, truth)


def test_bootstrap_se_matches_replicate_spread():
    """The bootstrap s.e. estimates the estimator's s.d.: over R = 40 independent replicate
    pairs (N = 800, D = 3), the s.d. of the 40 estimates over the mean bootstrap s.e. lies in
    the 99.9% interval of s/σ for 40 normal draws, √(χ²₃₉/39) ∈ [0.66, 1.35]."""
    c1, c2 = _random_cov(3, 11), _random_cov(3, 12)
    r1, r2 = sqrtm_psd(c1), sqrtm_psd(c2)
    shift = torch.tensor([0.3, 0.0, -0.2], dtype=torch.float64)
    values, ses = [], []
    for rep in range(40):
        x1 = torch.randn(800, 3, generator=_gen(1000 + rep), dtype=torch.float64) @ r1
        x2 = shift + torch.randn(800, 3, generator=_gen(2000 + rep), dtype=torch.float64) @ r2
        est = frechet_estimate(x1, x2, bootstrap=40, seed=rep)
        values.append(est.value)
        ses.append(est.se)
    ratio = float(torch.tensor(values).std()) / (sum(ses) / len(ses))
    lo, hi = (math.sqrt(stats.chi2.ppf(q, 39) / 39) for q in (0.0005, 0.9995))
    assert lo <= ratio <= hi, (ratio, lo, hi)


def test_near_singular_covariance_gives_a_real_distance():
    """Rank-deficient covariances (5 features spanned by 2 directions, as dead or collinear
    units give): Σ^{½}ΣΣ^{½} has eigenvalues that round-off makes negative (checked), whose
    square roots would be NaN or complex; they are clamped at 0. A set with itself is then 0
    up to the square root of the round-off: ≤ D·√(D·eps)·λ_max."""
    x = torch.randn(300, 2, generator=_gen(0), dtype=torch.float64) @ torch.randn(
        2, 5, generator=_gen(1), dtype=torch.float64
    )
    mu, cov = gaussian_stats(x)
    r = sqrtm_psd(cov)
    m = r @ cov @ r
    assert float(torch.linalg.eigvalsh((m + m.T) / 2).min()) < 0  # the hostile case occurs
    assert float(torch.linalg.eigvalsh(cov).min()) < 0
    lam = float(torch.linalg.eigvalsh(cov).max())
    d = frechet_distance(mu, cov, mu, cov)
    assert math.isfinite(d) and abs(d) <= 5 * math.sqrt(5 * EPS) * lam
    assert torch.isfinite(trace_sqrt_product(cov, cov))
    # and against a full-rank Gaussian the distance is finite and positive
    other = _random_cov(5, 3)
    assert 0 < frechet_distance(mu, cov, mu, other) < math.inf


def test_fewer_samples_than_features_is_handled():
    """N = 4 < D = 16: a singular covariance of rank 3; the distance of a set with itself
    stays within the square-root round-off bound and nothing is NaN."""
    x = torch.randn(4, 16, generator=_gen(5), dtype=torch.float64)
    mu, cov = gaussian_stats(x)
    lam = float(torch.linalg.eigvalsh(cov).max())
    assert abs(frechet_distance(mu, cov, mu, cov)) <= 16 * math.sqrt(16 * EPS) * lam


def test_frechet_refuses_mismatched_shapes():
    mu, cov = torch.zeros(3), torch.eye(3)
    with pytest.raises(lk.ShapeError, match="different shapes"):
        frechet_distance(mu, cov, torch.zeros(4), torch.eye(4))
    with pytest.raises(lk.ShapeError, match="different widths"):
        frechet_estimate(torch.randn(10, 3), torch.randn(10, 4))
    with pytest.raises(lk.ConfigError, match="bootstrap"):
        frechet_estimate(torch.randn(10, 3), torch.randn(10, 3), bootstrap=-1)


# --- precision and recall ---------------------------------------------------------------


def _brute_precision_recall(real: list[list[float]], fake: list[list[float]], k: int):
    """Kynkäänniemi et al. 2019, written out with Python lists: radius = distance to the k-th
    nearest other member of the same set; a point is in a manifold when within some ball."""

    def dist(a, b):
        return math.sqrt(sum((u - v) ** 2 for u, v in zip(a, b)))

    def radii(s):
        return [
            sorted(dist(p, q) for j, q in enumerate(s) if j != i)[k - 1] for i, p in enumerate(s)
        ]

    rr, rf = radii(real), radii(fake)
    precision = sum(any(dist(g, r) <= rad for r, rad in zip(real, rr)) for g in fake) / len(fake)
    recall = sum(any(dist(r, g) <= rad for g, rad in zip(fake, rf)) for r in real) / len(real)
    return precision, recall


def test_precision_recall_hand_example():
    """1-D reference {0, 1, 3, 7, 15}: 1-NN radii 1, 1, 2, 4, 8; 2-NN radii 3, 2, 3, 6, 12.
    Samples {1.5, 10, 26, 40} (no point on a ball's edge). k = 1: 1.5 lies in 1's ball
    [0, 2], 10 in 7's [3, 11], 26 and 40 in none → precision 2/4; every reference point is
    within 8.5 (the 1-NN radius of 1.5 and of 10) of 1.5 or 10 → recall 1. k = 2: 26 also lies
    in 15's ball [3, 27] → precision 3/4."""
    real = torch.tensor([[0.0], [1.0], [3.0], [7.0], [15.0]], dtype=torch.float64)
    fake = torch.tensor([[1.5], [10.0], [26.0], [40.0]], dtype=torch.float64)
    close = pytest.approx
    assert knn_radii(real, 1).sqrt().tolist() == close([1.0, 1.0, 2.0, 4.0, 8.0], rel=1e-12)
    assert knn_radii(real, 2).sqrt().tolist() == close([3.0, 2.0, 3.0, 6.0, 12.0], rel=1e-12)
    assert knn_radii(fake, 1).sqrt().tolist() == close([8.5, 8.5, 14.0, 14.0], rel=1e-12)
    assert precision_recall(real, fake, k=1) == (0.5, 1.0)
    assert precision_recall(real, fake, k=2) == (0.75, 1.0)


@pytest.mark.parametrize("k", [1, 2, 3, 5])
@pytest.mark.parametrize("seed", range(3))
def test_precision_recall_matches_brute_force(k, seed):
    """Random sets in 3-D of different spreads: the chunked matrix code equals the
    list-based oracle exactly (the sets have no near-ties at float64 resolution)."""
    g = _gen(seed)
    real = torch.randn(40, 3, generator=g, dtype=torch.float64)
    fake = 0.5 + 1.5 * torch.randn(30, 3, generator=g, dtype=torch.float64)
    expected = _brute_precision_recall(real.tolist(), fake.tolist(), k)
    assert precision_recall(real, fake, k=k) == expected
    assert precision_recall(real, fake, k=k, chunk_elements=37) == expected


def test_precision_recall_is_shift_invariant():
    """Features offset by 10⁸ (as unnormalized activations may be): the same figures as the
    oracle on the unshifted sets. ‖a‖² + ‖b‖² − 2a·b would lose every digit of distances ~1
    next to norms ~10¹⁶; the code centres the sets first (the shift itself rounds by 1e-8)."""
    g = _gen(4)
    real = torch.randn(40, 3, generator=g, dtype=torch.float64)
    fake = 0.5 + 1.5 * torch.randn(30, 3, generator=g, dtype=torch.float64)
    expected = _brute_precision_recall(real.tolist(), fake.tolist(), 3)
    assert precision_recall(real + 1e8, fake + 1e8, k=3) == expected
    radii = knn_radii(real + 1e8, 3)
    assert torch.allclose(radii, knn_radii(real, 3), rtol=1e-6)


def test_precision_recall_of_a_set_with_itself_is_one():
    """Every point lies in its own ball (distance 0 ≤ radius): precision = recall = 1 exactly,
    even with exact duplicates whose k-NN radius is 0, large offsets, and any chunking."""
    x = torch.randn(200, 8, generator=_gen(0), dtype=torch.float64) * 3 + 1e3
    x = torch.cat([x, x[:5], x[:5], x[:5], x[:5]])  # 5 points with 4 copies: radius 0 for k=3
    assert float(knn_radii(x, 3)[:5].max()) == 0.0
    for chunk in (10**9, 1000, 7):
        assert precision_recall(x, x, k=3, chunk_elements=chunk) == (1.0, 1.0)


def test_precision_and_recall_tell_a_collapsed_model():
    """Samples all from one of two clusters 20 s.d. apart: recall at most ½ (no sample's
    3-NN ball, radius < 10 here, reaches the second cluster), precision high (what samples
    of the first cluster's own distribution get at n = 100: 0.94 at this seed)."""
    g = _gen(2)
    real = torch.cat([torch.randn(100, 2, generator=g), 20 + torch.randn(100, 2, generator=g)])
    fake = torch.randn(100, 2, generator=g)
    assert float(knn_radii(fake.double(), 3).max()) < 10**2
    p, r = precision_recall(real.double(), fake.double(), k=3)
    assert p >= 0.85 and 0.4 <= r <= 0.5


def test_knn_refuses_too_few_points():
    with pytest.raises(lk.ConfigError, match="k = 3 needs more than 3"):
        knn_radii(torch.randn(3, 2), 3)
    with pytest.raises(lk.InputError, match="k must be an int"):
        knn_radii(torch.randn(5, 2), 0)


# --- classifier score ---------------------------------------------------------------------


def test_classifier_score_identity():
    """log score = E_x KL(p(y|x) ‖ p̄) = H(p̄) − E_x H(p(y|x)), to float64 round-off."""
    logits = 3 * torch.randn(500, 10, generator=_gen(0), dtype=torch.float64)
    s = classifier_score(logits)
    assert math.log(s.score) == pytest.approx(s.marginal_entropy - s.mean_entropy, abs=1e-12)
    p = torch.softmax(logits, 1)
    h = -(p * p.log()).sum(1).mean()
    assert s.mean_entropy == pytest.approx(float(h), abs=1e-12)
    assert sum(s.class_counts) == 500


def test_classifier_score_extremes():
    """Uniform probabilities: score 1, both entropies log 10. Sure and balanced (logit gap 60:
    off-class mass e^−60, entropies ~1e-24): score 10. Sure and all one class: score 1."""
    flat = classifier_score(torch.zeros(30, 10))
    assert flat.score == pytest.approx(1.0, abs=1e-12)
    assert flat.mean_entropy == pytest.approx(math.log(10), abs=1e-12)
    assert flat.marginal_entropy == pytest.approx(math.log(10), abs=1e-12)
    sure = 60.0 * torch.eye(10).repeat(3, 1)
    balanced = classifier_score(sure)
    assert balanced.score == pytest.approx(10.0, rel=1e-12)
    assert balanced.class_counts == (3,) * 10
    assert classifier_score(60.0 * torch.eye(10)[[4] * 30]).score == pytest.approx(1, abs=1e-12)


def test_classifier_accuracy_against_requested_labels():
    """Requested labels: 3 of 4 samples classified as asked; the label's mean log-probability."""
    logits = torch.log(torch.tensor([[0.7, 0.3], [0.2, 0.8], [0.6, 0.4], [0.9, 0.1]]))
    s = classifier_score(logits, torch.tensor([0, 1, 1, 0]))
    assert s.accuracy == 0.75
    assert s.accuracy_se == pytest.approx(math.sqrt(0.75 * 0.25 / 4))
    assert s.label_log_prob == pytest.approx(math.log(0.7 * 0.8 * 0.4 * 0.9) / 4, abs=1e-7)
    with pytest.raises(lk.ConfigError, match="labels must lie in 0..1"):
        classifier_score(logits, torch.tensor([0, 1, 2, 0]))
    with pytest.raises(lk.ShapeError, match="labels has 3 entries for 4"):
        classifier_score(logits, torch.tensor([0, 1, 1]))
