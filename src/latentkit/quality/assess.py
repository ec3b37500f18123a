"""Sample quality of a model's samples against reference images, and the reference values
that bracket it (docs/quality.md).

    ref = prepare_reference(data.test[:n], kind=data.kind)        # features, Gaussian, radii
    q = sample_quality(samples, ref)                               # -> SampleQuality
    bounds = reference_values(data.train, ref)                     # -> ReferenceValues

``floor``: n training images (draws from the data distribution itself, none of them in the
reference) scored like samples: what a perfect model would get at these sizes. ``ceiling``: n
draws of a model of independent pixels with the training split's per-pixel means (Bernoulli
for binary data, a clipped Gaussian with the per-pixel mean and s.d. otherwise): what a model
that learned nothing of the digits' shapes gets.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import attrs
import torch
from torch import Tensor

from latentkit.arguments import check_choice, check_count, check_seed, describe_value
from latentkit.errors import ConfigError, InputError, ShapeError
from latentkit.quality.features import KINDS, FeatureNetwork, load_feature_network, to_unit_pixels
from latentkit.quality.metrics import (
    ClassifierScore,
    classifier_score,
    frechet_estimate,
    gaussian_stats,
    knn_radii,
    precision_recall,
)
from latentkit.validation import check_positive_int

__all__ = [
    "DrawnSamples",
    "PreparedReference",
    "ReferenceValues",
    "SampleQuality",
    "draw_samples",
    "prepare_reference",
    "reference_values",
    "sample_quality",
    "trivial_samples",
]

_DEFAULT_NETWORK: FeatureNetwork | None = None


def default_network() -> FeatureNetwork:
    """The shipped MNIST LeNet, loaded (and its sha256 checked) once per process."""
    global _DEFAULT_NETWORK
    if _DEFAULT_NETWORK is None:
        _DEFAULT_NETWORK = load_feature_network()
    return _DEFAULT_NETWORK


@attrs.frozen(eq=False)
class PreparedReference:
    """Reference images seen through a feature network, computed once for many sample sets.

    Attributes:
        features: float64 ``[N, D]``; ``mean``, ``cov``: their Gaussian; ``radii``: squared
            k-NN radii (``metrics.knn_radii``) with this ``k``.
        kind: the pixel kind of the images (``Dataset.kind``); samples are read the same way.
        network: the feature network.

    Built by :func:`prepare_reference`; built directly, its fields are checked for type and
    shape (an InputError or ShapeError naming the field), not recomputed.
    """

    features: Tensor
    mean: Tensor
    cov: Tensor
    radii: Tensor
    k: int
    kind: str
    network: FeatureNetwork

    def __attrs_post_init__(self) -> None:
        where = "PreparedReference"
        if not isinstance(self.network, FeatureNetwork):
            raise InputError(
                f"{where}: network must be a FeatureNetwork, got {describe_value(self.network)}"
            )
        check_choice(self.kind, f"{where}: kind", KINDS)
        for field in ("features", "mean", "cov", "radii"):
            value = getattr(self, field)
            if not (isinstance(value, Tensor) and value.dtype == torch.float64):
                raise InputError(
                    f"{where}: {field} must be a float64 tensor, got {describe_value(value)}"
                )
        n, d = self.features.shape if self.features.ndim == 2 else (0, 0)
        want = {"features": (n, d), "mean": (d,), "cov": (d, d), "radii": (n,)}
        for field, shape in want.items():
            if n < 2 or tuple(getattr(self, field).shape) != shape:
                raise ShapeError(
                    f"{where}: features [N ≥ 2, D], mean [D], cov [D, D], radii [N] are needed, "
                    f"got {field} of shape {tuple(getattr(self, field).shape)}"
                )
        check_count(self.k, f"{where}: k (fewer than the {n} reference images)", high=n - 1)

    @property
    def n(self) -> int:
        return self.features.shape[0]


def prepare_reference(
    reference: Tensor,
    *,
    kind: str = "unit",
    network: FeatureNetwork | None = None,
    k: int = 3,
    batch_size: int = 1000,
) -> PreparedReference:
    """Features, Gaussian and k-NN radii of the reference images (pixels of ``kind``);
    ``network`` None: the shipped MNIST LeNet."""
    net = default_network() if network is None else network
    check_positive_int(k, "k")
    feats = net.features(reference, kind=kind, batch_size=batch_size, name="reference")
    if feats.shape[0] <= k:
        raise ShapeError(f"the reference has {feats.shape[0]} images; k = {k} needs more than {k}")
    mean, cov = gaussian_stats(feats)
    return PreparedReference(feats, mean, cov, knn_radii(feats, k), k, kind, net)


def _prepared(
    reference: Tensor | PreparedReference,
    *,
    kind: str | None,
    network: FeatureNetwork | None,
    k: int | None,
    batch_size: int,
) -> PreparedReference:
    """``reference`` itself when prepared (a ``kind``, ``network`` or ``k`` that differs from
    its own is refused), else :func:`prepare_reference` of the images (defaults: ``unit``,
    the shipped LeNet, k = 3)."""
    if not isinstance(reference, PreparedReference):
        return prepare_reference(
            reference,
            kind="unit" if kind is None else kind,
            network=network,
            k=3 if k is None else k,
            batch_size=batch_size,
        )
    for what, given, own in (("kind", kind, reference.kind), ("k", k, reference.k)):
        if given is not None and given != own:
            raise ConfigError(f"{what} = {given!r}, but the prepared reference has {own!r}")
    if network is not None and network is not reference.network:
        raise ConfigError(
            f"network {network.name!r} is not the prepared reference's {reference.network.name!r}"
        )
    return reference


@attrs.frozen
class SampleQuality:
    """Sample-quality figures of one set of samples against one reference set.

    Attributes:
        fld, fld_se: the Fréchet distance between the feature Gaussians (FLD on the shipped
            LeNet) and its bootstrap standard error over ``bootstrap`` resamplings.
        precision, recall: k-NN precision and recall with this ``k``.
        classifier: the network's classifier score on the samples (None without a head).
        n_samples, n_reference: the set sizes (FLD is biased by O(1/n): compare at equal n).
        kind: how the pixels were read (``Dataset.kind``).
        network, network_sha256: which feature network (and weights file) gave the figures.
        seconds: time of the metrics (features included, sampling excluded).
    """

    fld: float
    fld_se: float
    bootstrap: int
    precision: float
    recall: float
    k: int
    classifier: ClassifierScore | None
    n_samples: int
    n_reference: int
    kind: str
    network: str
    network_sha256: str | None
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (NaN s.e. without bootstrap becomes None)."""
        return attrs.asdict(self, recurse=True, value_serializer=_json_value)


def _json_value(_inst: Any, _field: Any, value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, tuple):
        return list(value)
    return value


def sample_quality(
    samples: Tensor,
    reference: Tensor | PreparedReference,
    *,
    kind: str | None = None,
    network: FeatureNetwork | None = None,
    labels: Tensor | None = None,
    k: int | None = None,
    bootstrap: int = 50,
    seed: int = 0,
    batch_size: int = 1000,
) -> SampleQuality:
    """FLD (with bootstrap s.e.), k-NN precision and recall, and the classifier score of
    ``samples`` against ``reference`` images (or a :func:`prepare_reference` of them, whose
    kind, network and k then apply; for images the defaults are ``unit``, the shipped LeNet
    and k = 3).

    Args:
        samples: ``[N, *image_shape]`` (or flat) pixels of ``kind``: ``unit``/``binary`` in
            [0, 1], ``symmetric8`` in [−1, 1].
        labels: the classes asked for, for conditional samples (the classifier score then
            gives the accuracy against them).
        network: a :class:`FeatureNetwork`; None: the shipped MNIST LeNet.

    Raises:
        ShapeError: images of the wrong shape for the network, too few of them for ``k``.
        NonFiniteError: NaN or inf samples. ConfigError: a bad kind, k or bootstrap, pixels
            far outside the kind's range.
    """
    start = time.perf_counter()
    ref = _prepared(reference, kind=kind, network=network, k=k, batch_size=batch_size)
    net = ref.network
    if labels is not None and net.head is None:
        raise ConfigError(f"labels need a classifier head; the network {net.name!r} has none")
    feats, logits = net.features_and_logits(samples, kind=ref.kind, batch_size=batch_size)
    if feats.shape[0] <= ref.k:
        raise ShapeError(f"{feats.shape[0]} samples; k = {ref.k} needs more than {ref.k}")
    fd = frechet_estimate(feats, ref.features, bootstrap=bootstrap, seed=seed)
    precision, recall = precision_recall(ref.features, feats, k=ref.k, reference_radii=ref.radii)
    return SampleQuality(
        fld=fd.value,
        fld_se=fd.se,
        bootstrap=fd.bootstrap,
        precision=precision,
        recall=recall,
        k=ref.k,
        classifier=None if logits is None else classifier_score(logits, labels),
        n_samples=feats.shape[0],
        n_reference=ref.n,
        kind=ref.kind,
        network=net.name,
        network_sha256=net.sha256,
        seconds=time.perf_counter() - start,
    )


def trivial_samples(train: Tensor, n: int, *, kind: str = "unit", seed: int = 0) -> Tensor:
    """``n`` draws of independent pixels fitted to ``train`` (pixels of ``kind``): Bernoulli
    of the per-pixel mean for ``binary``, else a Gaussian of the per-pixel mean and s.d.
    clipped to the kind's range. Returned in ``kind``'s own scale."""
    check_positive_int(n, "n")
    x = to_unit_pixels(train, kind, name="train").double()
    gen = torch.Generator().manual_seed(check_seed(seed))
    mean = x.mean(0)
    if kind == "binary":
        out = (torch.rand((n, *mean.shape), generator=gen, dtype=torch.float64) < mean).double()
    else:
        noise = torch.randn((n, *mean.shape), generator=gen, dtype=torch.float64)
        out = (mean + x.std(0) * noise).clamp(0.0, 1.0)
    out = out.to(torch.float32)
    return out * 2.0 - 1.0 if kind == "symmetric8" else out


@attrs.frozen
class ReferenceValues:
    """The figures that bracket a model's: ``floor`` (held-out data as samples) and
    ``ceiling`` (independent pixels), at the same sizes, network and k."""

    floor: SampleQuality
    ceiling: SampleQuality

    def to_dict(self) -> dict[str, Any]:
        return {"floor": self.floor.to_dict(), "ceiling": self.ceiling.to_dict()}


def reference_values(
    train: Tensor,
    reference: Tensor | PreparedReference,
    *,
    n: int | None = None,
    kind: str | None = None,
    network: FeatureNetwork | None = None,
    k: int | None = None,
    bootstrap: int = 50,
    seed: int = 0,
    batch_size: int = 1000,
) -> ReferenceValues:
    """Floor and ceiling of :func:`sample_quality` against ``reference``: the first ``n``
    ``train`` images (default: as many as the reference holds) as samples, and ``n`` draws
    of :func:`trivial_samples` fitted to the whole ``train``. ``train`` and ``reference``
    must be disjoint (a data set's train and test splits)."""
    ref = _prepared(reference, kind=kind, network=network, k=k, batch_size=batch_size)
    n = ref.n if n is None else check_positive_int(n, "n")
    if n > train.shape[0]:
        raise ConfigError(f"n = {n} is more than the {train.shape[0]} training images")
    common = {"bootstrap": bootstrap, "seed": seed, "batch_size": batch_size}
    floor = sample_quality(train[:n], ref, **common)
    ceiling = sample_quality(trivial_samples(train, n, kind=ref.kind, seed=seed), ref, **common)
    return ReferenceValues(floor=floor, ceiling=ceiling)


@attrs.frozen(eq=False)
class DrawnSamples:
    """Samples with what drew them: ``sampler`` (e.g. ``"ancestral, 1000 steps"``) and the
    wall-clock ``seconds`` of the drawing, reported apart from the metrics' time."""

    images: Tensor
    sampler: str
    seconds: float


def draw_samples(
    model: Any,
    n: int,
    *,
    batch_size: int = 500,
    seed: int | None = 0,
    sampler: Callable[[Any, int], Tensor] | None = None,
    sampler_name: str | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> DrawnSamples:
    """``n`` samples of ``model`` in batches, on the CPU, calling ``on_batch(done)`` after each
    (the hook of a progress bar). ``sampler(model, b)`` draws ``b`` (default: ancestral
    sampling, ``latentkit.sample``; a diffusion's own sampler names itself by ``sampler_name``).
    ``seed`` fixes the draws without touching the global random state."""
    from latentkit.sampling import sample

    check_positive_int(n, "n")
    check_positive_int(batch_size, "batch_size")
    if seed is not None:
        check_seed(seed)
    layers = getattr(model, "num_layers", "?")
    name = sampler_name or f"ancestral, {layers} layer{'' if layers == 1 else 's'}"
    spec = getattr(model, "condition_spec", None)
    draw = sampler or sample
    if sampler is None and spec is not None and spec.is_class:
        # A class-conditional model: classes 0..K-1 in turn, so the samples are of its
        # marginal Σ_c p(c) p(x | c) with p(c) uniform (balanced to within one per class).
        k = int(spec.num_classes)
        name += f", classes 0..{k - 1} in turn"

        drawn = 0

        def draw(m: Any, b: int) -> Tensor:
            nonlocal drawn
            labels = (torch.arange(b) + drawn) % k
            drawn += b
            return sample(m, b, condition=labels.to(m.reference().device))

    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    start = time.perf_counter()
    out = []
    with torch.random.fork_rng(devices=devices, enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        done = 0
        while done < n:
            b = min(batch_size, n - done)
            out.append(draw(model, b).detach().cpu())
            done += b
            if on_batch is not None:
                on_batch(done)
    return DrawnSamples(torch.cat(out), name, time.perf_counter() - start)
