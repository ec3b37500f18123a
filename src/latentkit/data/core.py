"""The :class:`Dataset` record, the pixel conversions, binarization and the variants.

Every source yields *raw* arrays first: ``uint8`` 8-bit levels (built-in image sets, integer
user data) or ``float32`` values (float user data). A *variant* then turns raw arrays into
float32 tensors of one *kind*:

| variant       | kind           | values                                | from uint8 level k   |
|---------------|----------------|---------------------------------------|----------------------|
| ``unit``      | ``unit``       | [0, 1]                                | k / 255              |
| ``binarized`` | ``binary``     | {0, 1}, one Bernoulli(x) draw a value | Bernoulli(k / 255)   |
| ``threshold`` | ``binary``     | {0, 1}, x > 0.5                       | k ≥ 128              |
| ``8bit``      | ``symmetric8`` | 2k/255 − 1, in [−1, 1]                | (2k − 255) / 255     |
| ``real``      | ``real``       | (x − mean) / std, train-set scalars   | (k/255 − mean) / std |
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import attrs
import numpy as np
import torch
from torch import Tensor

from latentkit.arguments import check_number
from latentkit.errors import ConfigError, DTypeError, InputError, ShapeError
from latentkit.validation import check_finite_rows

__all__ = [
    "KINDS",
    "LIKELIHOOD_FOR_KIND",
    "VARIANTS",
    "Dataset",
    "binarize",
    "to_display",
    "to_symmetric",
    "to_unit_interval",
]

KINDS = ("binary", "unit", "symmetric8", "real")
#: variant name → the kind of the tensors it gives
VARIANTS: Mapping[str, str] = {
    "unit": "unit",
    "binarized": "binary",
    "threshold": "binary",
    "8bit": "symmetric8",
    "real": "real",
}
#: the likelihood (``latentkit.make_likelihood`` name) that fits each kind. Grey levels in
#: [0, 1] get a Gaussian density: a Bernoulli gives them no probability (the trainer and
#: ``evaluate`` refuse non-binary data for it, ``latentkit.evaluation.check_likelihood_support``)
LIKELIHOOD_FOR_KIND: Mapping[str, str] = {
    "binary": "bernoulli",
    "unit": "gaussian",
    "symmetric8": "discretized",
    "real": "gaussian",
}


def _shape_repr(t: Any) -> str:
    if isinstance(t, Tensor):
        return f"<{str(t.dtype).removeprefix('torch.')} {list(t.shape)}>"
    return repr(t)


def _check_split(inst: Dataset, attribute: attrs.Attribute, value: Any) -> None:
    name = f"Dataset.{attribute.name}"
    if not isinstance(value, Tensor):
        raise InputError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if value.dtype != torch.float32:
        raise DTypeError(f"{name} must be float32, got {value.dtype}")
    if value.ndim < 1 or tuple(value.shape[1:]) != tuple(inst.data_shape):
        raise ShapeError(
            f"{name} must have shape [N, {', '.join(map(str, inst.data_shape))}], "
            f"got {tuple(value.shape)}"
        )


def _check_kind(inst: Dataset, attribute: attrs.Attribute, value: str) -> None:
    if value not in KINDS:
        raise ConfigError(f"Dataset.kind must be one of {', '.join(KINDS)}; got {value!r}")


def _check_labels(inst: Dataset, attribute: attrs.Attribute, value: Any) -> None:
    if value is None:
        return
    split = inst.train if attribute.name == "train_labels" else inst.test
    if not isinstance(value, Tensor) or value.ndim != 1 or value.shape[0] != split.shape[0]:
        raise ShapeError(
            f"Dataset.{attribute.name} must be a 1-d tensor with one label per example "
            f"({split.shape[0]}), got {_shape_repr(value)}"
        )


@attrs.frozen(eq=False)
class Dataset:
    """A train and a test split of one data set, as float32 tensors of one ``kind``.

    Attributes:
        name: what ``load_dataset`` was given (e.g. ``"mnist"``, ``"file:/data/x.npy"``).
        train: float32 ``[N, *data_shape]``.
        test: float32 ``[M, *data_shape]``.
        data_shape: one example's shape, e.g. ``(1, 28, 28)`` or ``(784,)`` when flattened.
        kind: ``"binary"`` ({0,1}), ``"unit"`` ([0,1]), ``"symmetric8"`` (8-bit levels k as
            2k/255 − 1, for the discretized likelihood) or ``"real"`` (standardized).
        description: one human line: source, sizes, variant, seed.
        train_labels, test_labels: int64 class labels when the source has them, else None.
        variant: the variant that made the tensors (see :data:`VARIANTS`).
        info: facts about the source and transform: ``source`` (path or package and
            version), ``seed``, ``split_seed``, ``pixel_scale``, and for ``real`` the ``mean``
            and ``std`` that were applied (so samples can be mapped back).
    """

    name: str
    train: Tensor = attrs.field(validator=_check_split, repr=_shape_repr)
    test: Tensor = attrs.field(validator=_check_split, repr=_shape_repr)
    data_shape: tuple[int, ...] = attrs.field(converter=lambda s: tuple(int(d) for d in s))
    kind: str = attrs.field(validator=_check_kind)
    description: str
    train_labels: Tensor | None = attrs.field(
        default=None, validator=_check_labels, repr=_shape_repr
    )
    test_labels: Tensor | None = attrs.field(
        default=None, validator=_check_labels, repr=_shape_repr
    )
    variant: str = "unit"
    info: Mapping[str, Any] = attrs.field(factory=dict, repr=False)

    @property
    def dim(self) -> int:
        """Number of values in one example, ∏ data_shape (the D of bits/dim)."""
        return math.prod(self.data_shape)

    @property
    def likelihood(self) -> str:
        """The ``make_likelihood`` name that fits this kind of data."""
        return LIKELIHOOD_FOR_KIND[self.kind]

    @property
    def is_image(self) -> bool:
        """True for the built-in image sets and image folders (before any flattening)."""
        return bool(self.info.get("image", False))

    def to_display(self, x: Tensor) -> Tensor:
        """Map tensors of this data set's kind (e.g. model samples) to [0, 1] for plotting."""
        return to_display(
            x,
            self.kind,
            mean=float(self.info.get("mean", 0.0)),
            std=float(self.info.get("std", 1.0)),
        )


# ----------------------------------------------------------------------------- conversions


def _as_uint8_tensor(x: Any, fn: str) -> Tensor:
    if isinstance(x, np.ndarray):
        x = np.ascontiguousarray(x)
        x = torch.from_numpy(x if x.flags.writeable else x.copy())
    if not isinstance(x, Tensor):
        raise InputError(
            f"{fn} expects a uint8 torch.Tensor or numpy array, got {type(x).__name__}"
        )
    if x.dtype != torch.uint8:
        raise DTypeError(
            f"{fn} expects 8-bit levels (uint8, 0..255), got {x.dtype}; "
            "floats in [0, 1] are already on the unit interval"
        )
    return x


def to_unit_interval(x_uint8: Any) -> Tensor:
    """8-bit levels k (uint8 tensor or array) → float32 k/255 in [0, 1]; 0 → 0, 255 → 1."""
    k = _as_uint8_tensor(x_uint8, "to_unit_interval")
    return k.to(torch.float32) / 255.0


def to_symmetric(x_uint8: Any) -> Tensor:
    """8-bit levels k → float32 2k/255 − 1 in [−1, 1], the bin centres of the discretized
    likelihood; computed as (2k − 255)/255 so 0 → −1 and 255 → 1 exactly."""
    k = _as_uint8_tensor(x_uint8, "to_symmetric")
    return (k.to(torch.float32) * 2.0 - 255.0) / 255.0


def _generator(seed: int) -> torch.Generator:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"seed must be an int or None, got {seed!r}")
    return torch.Generator(device="cpu").manual_seed(seed % (2**63))


def binarize(x_unit: Tensor, *, seed: int | None = None) -> Tensor:
    """Stochastic binarization: each value x ∈ [0, 1] becomes 1 with probability x.

    Draws u ~ U[0, 1) on the CPU and returns float32 ``(u < x)`` on ``x``'s device, so 0
    stays 0 and 1 stays 1. With an int ``seed`` the draws are fixed (and the draws for the
    first rows do not depend on how many rows follow); with ``None`` they come from torch's
    global generator. E[binarize(x)] = x, so the mean of the result matches the grey levels.
    """
    if not isinstance(x_unit, Tensor) or not x_unit.is_floating_point():
        got = x_unit.dtype if isinstance(x_unit, Tensor) else type(x_unit).__name__
        raise DTypeError(f"binarize expects a floating-point tensor in [0, 1], got {got}")
    if x_unit.numel():
        check_finite_rows(x_unit, name="binarize: the input")
        lo, hi = float(x_unit.min()), float(x_unit.max())
        if lo < 0.0 or hi > 1.0:
            raise InputError(f"binarize expects values in [0, 1], got values in [{lo:g}, {hi:g}]")
    gen = None if seed is None else _generator(seed)
    u = torch.rand(x_unit.shape, generator=gen, dtype=torch.float32, device="cpu")
    return (u.to(x_unit.device) < x_unit).to(torch.float32)


def to_display(x: Tensor, kind: str, *, mean: float = 0.0, std: float = 1.0) -> Tensor:
    """Map values of ``kind`` back to [0, 1] for showing as images (clamped); ``mean`` and
    ``std`` (finite, ``std`` > 0) undo a ``real`` data set's standardization."""
    if not isinstance(x, Tensor):
        raise InputError(f"to_display expects a torch.Tensor, got {type(x).__name__}")
    check_number(mean, "to_display: mean", error=ConfigError)
    check_number(std, "to_display: std", above=0.0, error=ConfigError)
    if kind in ("binary", "unit"):
        y = x
    elif kind == "symmetric8":
        y = (x + 1.0) / 2.0
    elif kind == "real":
        y = x * std + mean
    else:
        raise ConfigError(f"kind must be one of {', '.join(KINDS)}; got {kind!r}")
    return y.clamp(0.0, 1.0)


# ----------------------------------------------------------------------------- raw data


@attrs.frozen(eq=False)
class RawData:
    """What a source hands over before a variant is applied (internal)."""

    train: np.ndarray  # uint8 levels, or float32 values
    test: np.ndarray
    description: str
    train_labels: np.ndarray | None = None
    test_labels: np.ndarray | None = None
    info: Mapping[str, Any] = attrs.field(factory=dict)

    @property
    def data_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.train.shape[1:])


def derived_seed(seed: int, stream: int) -> int:
    """An independent 63-bit seed for ``stream`` of ``seed`` (NumPy's SeedSequence)."""
    state = np.random.SeedSequence([int(seed) % (2**63), stream]).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def split_indices(n: int, n_test: int, split_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A fixed seeded split: a permutation of range(n) (NumPy PCG64 seeded with
    ``split_seed``), its first ``n_test`` entries for test and the rest for train, both in
    permuted order (so a prefix of either is a random subset)."""
    perm = np.random.Generator(np.random.PCG64(split_seed)).permutation(n)
    return perm[n_test:], perm[:n_test]


def _float_range(a: np.ndarray) -> tuple[float, float]:
    return (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)


def _unit(a: np.ndarray, variant: str, where: str) -> Tensor:
    """Raw array → float32 tensor in [0, 1] (uint8 by k/255; floats must already be there)."""
    if a.dtype == np.uint8:
        return to_unit_interval(a)
    lo, hi = _float_range(a)
    if lo < 0.0 or hi > 1.0:
        raise InputError(
            f"variant {variant!r} needs values in [0, 1] (or uint8 levels), but {where} holds "
            f"values in [{lo:g}, {hi:g}]; use variant='real' (standardized) or rescale the data"
        )
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


def _levels(a: np.ndarray, where: str) -> np.ndarray:
    """Raw array → uint8 levels; floats only when they sit on the k/255 grid."""
    if a.dtype == np.uint8:
        return a
    lo, hi = _float_range(a)
    k = np.rint(a.astype(np.float64) * 255.0)
    if lo < 0.0 or hi > 1.0 or (a.size and float(np.abs(a * 255.0 - k).max()) > 1e-3):
        raise InputError(
            f"variant '8bit' needs 8-bit data (uint8 levels, or floats k/255), but {where} holds "
            f"float values in [{lo:g}, {hi:g}] off the k/255 grid; quantize it yourself "
            "(e.g. np.rint(x * 255).astype(np.uint8)) or use variant 'unit' or 'real'"
        )
    return k.astype(np.uint8)


def _mean_std(a: np.ndarray) -> tuple[float, float]:
    """Mean and (unbiased) std of the unit-interval values of a raw array, in float64; for
    uint8 levels exactly, from the level histogram."""
    n = a.size
    if n < 2:
        return (float(a.mean()) / (255.0 if a.dtype == np.uint8 else 1.0) if n else 0.0), 0.0
    if a.dtype == np.uint8:
        counts = np.bincount(a.reshape(-1), minlength=256).astype(np.float64)
        levels = np.arange(256, dtype=np.float64) / 255.0
        mean = float(counts @ levels) / n
        var = float(counts @ (levels - mean) ** 2) / (n - 1)
    else:
        v = a.astype(np.float64)
        mean, var = float(v.mean()), float(v.var(ddof=1))
    return mean, math.sqrt(max(var, 0.0))


def apply_variant(raw: RawData, *, name: str, variant: str, seed: int, flatten: bool) -> Dataset:
    """Turn a source's raw arrays into a :class:`Dataset` (see the module's table)."""
    if variant not in VARIANTS:
        raise ConfigError(f"variant must be one of {', '.join(VARIANTS)}; got {variant!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"seed must be an int, got {seed!r}")
    info = dict(raw.info)
    info.update(variant=variant, seed=seed)
    tr_where, te_where = f"{name} (train)", f"{name} (test)"
    if variant == "unit":
        train, test = _unit(raw.train, variant, tr_where), _unit(raw.test, variant, te_where)
        extra = ""
    elif variant == "binarized":
        train = binarize(_unit(raw.train, variant, tr_where), seed=derived_seed(seed, 0))
        test = binarize(_unit(raw.test, variant, te_where), seed=derived_seed(seed, 1))
        extra = f", stochastically binarized (seed {seed})"
    elif variant == "threshold":
        train = (_unit(raw.train, variant, tr_where) > 0.5).to(torch.float32)
        test = (_unit(raw.test, variant, te_where) > 0.5).to(torch.float32)
        extra = ", thresholded at 0.5"
    elif variant == "8bit":
        train = to_symmetric(_levels(raw.train, tr_where))
        test = to_symmetric(_levels(raw.test, te_where))
        extra = ", 8-bit levels k as 2k/255 - 1"
    else:  # real
        if raw.train.dtype == np.uint8:
            train, test = to_unit_interval(raw.train), to_unit_interval(raw.test)
        else:
            train = torch.from_numpy(np.ascontiguousarray(raw.train, dtype=np.float32))
            test = torch.from_numpy(np.ascontiguousarray(raw.test, dtype=np.float32))
        mean, std = _mean_std(raw.train)
        if not std > 0.0 or not math.isfinite(std):
            raise InputError(
                f"variant 'real' standardizes by the train split's std, but {tr_where} is "
                f"constant (std {std:g}); use variant 'unit' or different data"
            )
        train, test = (train - mean) / std, (test - mean) / std
        info.update(mean=mean, std=std)
        extra = f", standardized (mean {mean:.4g}, std {std:.4g} of the train split)"
    data_shape = raw.data_shape
    if flatten:
        train, test = train.reshape(train.shape[0], -1), test.reshape(test.shape[0], -1)
        data_shape = (math.prod(data_shape),)
    info["flattened"] = flatten

    def labels(a: np.ndarray | None) -> Tensor | None:
        return None if a is None else torch.from_numpy(np.asarray(a, dtype=np.int64).copy())

    return Dataset(
        name=name,
        train=train.contiguous(),
        test=test.contiguous(),
        data_shape=data_shape,
        kind=VARIANTS[variant],
        description=raw.description + extra,
        train_labels=labels(raw.train_labels),
        test_labels=labels(raw.test_labels),
        variant=variant,
        info=info,
    )
