"""Sample-quality metrics on features, in float64: the Fréchet distance between feature
Gaussians, k-NN precision and recall, and a classifier's score.

* Fréchet distance (Dowson & Landau 1982; the squared 2-Wasserstein distance between
  N(μ₁, Σ₁) and N(μ₂, Σ₂)), called FLD on the shipped LeNet's features:

      d² = ‖μ₁ − μ₂‖² + tr Σ₁ + tr Σ₂ − 2 tr (Σ₁^{½} Σ₂ Σ₁^{½})^{½}

  Σ₁^{½} Σ₂ Σ₁^{½} is symmetric positive semi-definite, so its square root's trace is the sum
  of the square roots of its eigenvalues (``eigvalsh``), clamped at 0: on near-singular
  covariances round-off makes some slightly negative, where a general matrix square root
  goes complex. The plug-in estimate is biased upwards by O(1/N): compare figures at the same
  numbers of samples and reference images.
* Precision and recall (Kynkäänniemi et al. 2019): each set's manifold is the union of balls
  around its points, of radius the distance to the point's k-th nearest other point of the
  same set. Precision: the share of samples inside the reference's manifold; recall: the
  share of reference points inside the samples' manifold.
* Classifier score (Salimans et al. 2016's form, on a data set's own classifier): with
  p(y|x) the classifier's probabilities and p̄(y) their mean over the samples,
  exp(E_x KL(p(y|x) ‖ p̄(y))) = exp(H(p̄) − E_x H(p(y|x))): from 1 (all samples alike or
  unrecognizable) to the number of classes (each sample sure, classes balanced).
"""

from __future__ import annotations

import math

import attrs
import torch
from torch import Tensor

from latentkit.arguments import check_count, check_seed, describe_value
from latentkit.errors import ConfigError, DTypeError, InputError, NonFiniteError, ShapeError
from latentkit.quality.features import check_finite
from latentkit.validation import check_positive_int

__all__ = [
    "MAX_BOOTSTRAP",
    "ClassifierScore",
    "FrechetEstimate",
    "classifier_score",
    "frechet_distance",
    "frechet_estimate",
    "gaussian_stats",
    "knn_radii",
    "precision_recall",
    "sqrtm_psd",
    "trace_sqrt_product",
]

MAX_BOOTSTRAP = 100_000
"""The most bootstrap resamplings :func:`frechet_estimate` takes: its s.e. is settled to
a fraction of a percent long before (the default is 50), and each costs two
eigendecompositions."""

CHUNK_ELEMENTS = 2**22
"""Distances are computed in blocks of at most this many float64 entries (32 MiB)."""


def _check_features(x: Tensor, name: str, min_rows: int = 2) -> Tensor:
    if not isinstance(x, Tensor) or x.ndim != 2:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ShapeError(f"{name} must be features [N, D], got {shape}")
    if x.shape[0] < min_rows:
        raise ShapeError(f"{name} has {x.shape[0]} rows; at least {min_rows} are needed")
    x = x.detach().to(torch.float64)
    check_finite(x, name)
    return x


def gaussian_stats(features: Tensor) -> tuple[Tensor, Tensor]:
    """Mean ``[D]`` and unbiased covariance ``[D, D]`` (divisor N − 1) of ``[N, D]``, float64."""
    x = _check_features(features, "features")
    mu = x.mean(0)
    xc = x - mu
    return mu, xc.T @ xc / (x.shape[0] - 1)


def sqrtm_psd(a: Tensor) -> Tensor:
    """The symmetric square root of a symmetric positive semi-definite matrix, by ``eigh`` of
    its symmetric part with eigenvalues clamped at 0 (round-off makes them slightly negative
    on singular matrices)."""
    evals, evecs = torch.linalg.eigh((a + a.T) / 2)
    return (evecs * evals.clamp_min(0).sqrt()) @ evecs.T


def trace_sqrt_product(cov1: Tensor, cov2: Tensor) -> Tensor:
    """tr (Σ₁^{½} Σ₂ Σ₁^{½})^{½} = tr (Σ₁Σ₂)^{½}, the sum of the square roots of the
    (clamped at 0) eigenvalues of the symmetric Σ₁^{½} Σ₂ Σ₁^{½}."""
    r = sqrtm_psd(cov1)
    m = r @ cov2 @ r
    return torch.linalg.eigvalsh((m + m.T) / 2).clamp_min(0).sqrt().sum()


def frechet_distance(mu1: Tensor, cov1: Tensor, mu2: Tensor, cov2: Tensor) -> float:
    """d² = ‖μ₁ − μ₂‖² + tr Σ₁ + tr Σ₂ − 2 tr (Σ₁^{½} Σ₂ Σ₁^{½})^{½}, in float64.

    Not clamped: equal Gaussians give 0 up to round-off of either sign (~1e-12 of tr Σ).
    Means ``[D]`` and covariances ``[D, D]``: real tensors of finite values (an InputError,
    ShapeError or NonFiniteError naming the argument otherwise).
    """
    given = {"mu1": mu1, "cov1": cov1, "mu2": mu2, "cov2": cov2}
    for name, value in given.items():
        if not isinstance(value, Tensor) or value.is_complex() or value.dtype == torch.bool:
            raise InputError(
                f"frechet_distance: {name} must be a real tensor, got {describe_value(value)}"
            )
    mu1, mu2, cov1, cov2 = (t.to(torch.float64) for t in (mu1, mu2, cov1, cov2))
    d = mu1.shape[0] if mu1.ndim == 1 else -1
    if mu2.shape != (d,) or cov1.shape != (d, d) or cov2.shape != (d, d):
        raise ShapeError(
            f"Gaussians of different shapes: means {tuple(mu1.shape)}, {tuple(mu2.shape)}; "
            f"covariances {tuple(cov1.shape)}, {tuple(cov2.shape)}"
        )
    for name, value in zip(given, (mu1, cov1, mu2, cov2)):
        if value.numel() and not bool(torch.isfinite(value).all()):
            raise NonFiniteError(f"frechet_distance: {name} holds NaN or inf")
    diff = mu1 - mu2
    mean_term = diff @ diff
    return float(mean_term + cov1.trace() + cov2.trace() - 2 * trace_sqrt_product(cov1, cov2))


@attrs.frozen
class FrechetEstimate:
    """The Fréchet distance between two feature sets' Gaussians and its bootstrap error.

    ``se``: the standard deviation of the distance over ``bootstrap`` resamplings (with
    replacement, of both sets); NaN when ``bootstrap`` is 0.
    """

    value: float
    se: float
    bootstrap: int


def frechet_estimate(
    features1: Tensor, features2: Tensor, *, bootstrap: int = 50, seed: int = 0
) -> FrechetEstimate:
    """The plug-in Fréchet distance of two ``[N, D]`` feature sets with a bootstrap s.e."""
    a = _check_features(features1, "samples' features")
    b = _check_features(features2, "reference features")
    if a.shape[1] != b.shape[1]:
        raise ShapeError(f"feature sets of different widths: {a.shape[1]} and {b.shape[1]}")
    check_count(bootstrap, "bootstrap (0: no s.e.)", low=0, high=MAX_BOOTSTRAP, error=ConfigError)
    check_seed(seed)
    value = frechet_distance(*gaussian_stats(a), *gaussian_stats(b))
    gen = torch.Generator().manual_seed(seed)
    reps = []
    for _ in range(bootstrap):
        ia = torch.randint(a.shape[0], (a.shape[0],), generator=gen)
        ib = torch.randint(b.shape[0], (b.shape[0],), generator=gen)
        reps.append(frechet_distance(*gaussian_stats(a[ia]), *gaussian_stats(b[ib])))
    se = float(torch.tensor(reps, dtype=torch.float64).std()) if bootstrap > 1 else math.nan
    return FrechetEstimate(value=value, se=se, bootstrap=bootstrap)


def _sq_dists(a: Tensor, b: Tensor) -> Tensor:
    """Squared Euclidean distances ``[len(a), len(b)]`` by ‖a‖² + ‖b‖² − 2a·b, with entries
    within that sum's rounding bound set to exactly 0 (so a point's distance to itself or to a
    copy is 0, whatever the matmul's blocking). The bound: each of the three dot products errs
    by at most γ_D ≈ D·eps/2 times ‖a‖² + ‖b‖², so 2·D·eps·(‖a‖² + max ‖b‖²) covers a row."""
    a2, b2 = (a * a).sum(1), (b * b).sum(1)
    d = torch.addmm(b2[None, :], a, b.T, alpha=-2.0).add_(a2[:, None])
    tol = 2 * a.shape[1] * torch.finfo(d.dtype).eps * (a2 + b2.max())
    return d.masked_fill_(d <= tol[:, None], 0.0)


def _rows_per_chunk(cols: int, chunk_elements: int) -> int:
    return max(1, chunk_elements // max(cols, 1))


def knn_radii(features: Tensor, k: int = 3, *, chunk_elements: int = CHUNK_ELEMENTS) -> Tensor:
    """Squared distance ``[N]`` from each point to its k-th nearest other point of the set
    (the point itself, at distance 0, is the 0-th), in blocks of rows."""
    x = _check_features(features, "features")
    check_positive_int(k, "k")
    if k >= x.shape[0]:
        raise ConfigError(f"k = {k} needs more than {k} points per set, got {x.shape[0]}")
    x = x - x.mean(0)  # distances are shift-invariant; centred values round less
    rows = _rows_per_chunk(x.shape[0], chunk_elements)
    out = [
        _sq_dists(x[s : s + rows], x).topk(k + 1, dim=1, largest=False).values[:, k]
        for s in range(0, x.shape[0], rows)
    ]
    return torch.cat(out)


def precision_recall(
    reference: Tensor,
    samples: Tensor,
    *,
    k: int = 3,
    reference_radii: Tensor | None = None,
    chunk_elements: int = CHUNK_ELEMENTS,
) -> tuple[float, float]:
    """k-NN precision and recall of ``samples`` against ``reference`` (features ``[N, D]``).

    ``reference_radii``: :func:`knn_radii` of ``reference`` with the same ``k`` when already
    computed (the reference is shared by many sample sets). Distances are taken in blocks of
    ``chunk_elements`` float64 entries, so memory stays bounded for 10,000 × 10,000.
    """
    r = _check_features(reference, "reference features")
    g = _check_features(samples, "samples' features")
    if r.shape[1] != g.shape[1]:
        raise ShapeError(f"feature sets of different widths: {r.shape[1]} and {g.shape[1]}")
    if reference_radii is None:
        r_radii = knn_radii(r, k, chunk_elements=chunk_elements)
    elif tuple(reference_radii.shape) != (r.shape[0],):
        raise ShapeError(
            f"reference_radii must be [{r.shape[0]}], got {tuple(reference_radii.shape)}"
        )
    else:
        r_radii = reference_radii.to(torch.float64)
    g_radii = knn_radii(g, k, chunk_elements=chunk_elements)
    center = r.mean(0)  # distances are shift-invariant; centred values round less
    r, g = r - center, g - center
    inside = torch.zeros(g.shape[0], dtype=torch.bool)
    covered = torch.zeros(r.shape[0], dtype=torch.bool)
    rows = _rows_per_chunk(r.shape[0], chunk_elements)
    for s in range(0, g.shape[0], rows):
        d = _sq_dists(g[s : s + rows], r)
        inside[s : s + rows] = (d <= r_radii[None, :]).any(1)
        covered |= (d <= g_radii[s : s + rows, None]).any(0)
    return float(inside.double().mean()), float(covered.double().mean())


@attrs.frozen
class ClassifierScore:
    """A classifier's view of samples (entropies in nats).

    Attributes:
        score: exp(E_x KL(p(y|x) ‖ p̄(y))), in [1, classes].
        mean_entropy: E_x H(p(y|x)): low when every sample is clearly one class.
        marginal_entropy: H(p̄(y)): log(classes) when the classes are balanced.
        class_counts: how many samples the classifier puts in each class (argmax).
        accuracy: with requested labels (conditional samples): the share classified as the
            class asked for; ``accuracy_se`` its binomial standard error; ``label_log_prob``
            the mean log p(label | x). None without labels.
    """

    score: float
    mean_entropy: float
    marginal_entropy: float
    class_counts: tuple[int, ...]
    accuracy: float | None = None
    accuracy_se: float | None = None
    label_log_prob: float | None = None


def _entropy(log_p: Tensor) -> Tensor:
    """H = −Σ_y p log p over the last dimension (0 log 0 = 0)."""
    return -(log_p.exp() * log_p).nan_to_num(0.0).sum(-1)


def classifier_score(logits: Tensor, labels: Tensor | None = None) -> ClassifierScore:
    """The :class:`ClassifierScore` of samples whose class logits are ``[N, classes]``."""
    if not isinstance(logits, Tensor) or logits.ndim != 2 or logits.shape[0] < 1:
        raise ShapeError("logits must be [N, classes] with N ≥ 1")
    if bool(torch.isnan(logits).any()):
        raise NonFiniteError(f"logits hold NaN in {int(torch.isnan(logits).any(1).sum())} rows")
    log_p = torch.log_softmax(logits.to(torch.float64), dim=1)
    log_marginal = torch.logsumexp(log_p, dim=0) - math.log(log_p.shape[0])
    kl = (log_p.exp() * (log_p - log_marginal)).nan_to_num(0.0).sum(1)
    counts = torch.bincount(log_p.argmax(1), minlength=log_p.shape[1])
    out = {
        "score": math.exp(float(kl.mean())),
        "mean_entropy": float(_entropy(log_p).mean()),
        "marginal_entropy": float(_entropy(log_marginal)),
        "class_counts": tuple(int(c) for c in counts),
    }
    if labels is not None:
        y = torch.as_tensor(labels)
        if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
            raise DTypeError(f"labels must be integer class indices, got {y.dtype}")
        y = y.to(torch.int64).reshape(-1)
        if y.shape[0] != log_p.shape[0]:
            raise ShapeError(f"labels has {y.shape[0]} entries for {log_p.shape[0]} samples")
        if bool(((y < 0) | (y >= log_p.shape[1])).any()):
            raise ConfigError(f"labels must lie in 0..{log_p.shape[1] - 1}")
        acc = float((log_p.argmax(1) == y).double().mean())
        out.update(
            accuracy=acc,
            accuracy_se=math.sqrt(acc * (1 - acc) / y.shape[0]),
            label_log_prob=float(log_p.gather(1, y[:, None]).mean()),
        )
    return ClassifierScore(**out)
