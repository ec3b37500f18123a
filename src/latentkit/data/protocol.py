"""The data protocol of the standard MNIST likelihood evaluation: dynamic binarization and a
validation split held out of the training set.

- :class:`DynamicBinarizer` draws a fresh Bernoulli sample of each training image every time
  it is used: at training step ``s`` the batch ``indices`` becomes ``u < p[indices]`` with
  ``u ~ U[0, 1)`` from a CPU ``torch.Generator`` seeded with :func:`step_seed`\\ (seed, s).
  The bits are a pure function of (seed, step, indices) — there is no generator state that
  carries over from one call to the next — so a run resumed at step s sees exactly the
  bits an uninterrupted run would.
- :func:`split_validation` holds out the *last* ``size`` examples of the training split
  (MNIST: 50,000 train / 10,000 validation).

The intensities to binarize are what ``load_dataset(name, variant="unit")`` gives (k/255
for 8-bit sources), so the standard recipe is::

    ds = load_dataset("mnist", variant="unit")
    train, valid = split_validation(ds.train, size=10_000)      # 50,000 / 10,000
    binarizer = DynamicBinarizer(train, seed=0)
    x = binarizer.batch(indices, step)                            # {0, 1}, float32

The mixing formula of :func:`step_seed`. PyTorch's CPU generator (mt19937) uses only the low
32 bits of its seed (``manual_seed(s)`` and ``manual_seed(s + 2**32)`` give the same
stream), so each step gets a 32-bit stream number, made injective in the step::

    fmix32(h)  = MurmurHash3's 32-bit finalizer (a bijection of 0..2^32-1):
                 h ^= h >> 16; h = h·0x85EBCA6B mod 2^32; h ^= h >> 13;
                 h = h·0xC2B2AE35 mod 2^32;       h ^= h >> 16
    key(seed)  = fmix32(lo ^ fmix32(hi ^ 0x9E3779B9)),  lo, hi = the 32-bit halves of seed mod 2^64
    step_seed(seed, step) = fmix32((key(seed) + step) mod 2^32),   0 ≤ step < 2^32

For one seed, distinct steps therefore always get distinct streams (a hash of (seed, step)
into 32 bits would instead repeat a stream after about 2^16 steps, by the birthday bound).
Two different seeds give shifted copies of one sequence of streams: seed B at step t + δ
replays seed A at step t for δ = key(A) − key(B) mod 2^32, so two runs of a million steps
share a step's bits with probability about 2·10^6 / 2^32 ≈ 5·10^-4.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from latentkit.errors import ConfigError, DTypeError, InputError, ShapeError
from latentkit.validation import check_finite_rows

__all__ = ["VALIDATION_SIZE", "DynamicBinarizer", "split_validation", "step_seed"]

#: the size of the standard MNIST validation split (the last 10,000 of the 60,000 train images)
VALIDATION_SIZE = 10_000

_M32 = 0xFFFFFFFF
_MAX_STEP = 2**32 - 1


def _fmix32(h: int) -> int:
    """MurmurHash3's 32-bit finalizer: a bijection of 0..2^32−1 that mixes every bit."""
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & _M32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & _M32
    h ^= h >> 16
    return h


def _is_int(x: Any) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def _check_seed(seed: Any, where: str) -> int:
    if not _is_int(seed):
        raise ConfigError(f"{where}: seed must be an int, got {seed!r}")
    return int(seed)


def _check_step(step: Any, where: str) -> int:
    if not _is_int(step) or not 0 <= int(step) <= _MAX_STEP:
        raise ConfigError(f"{where}: step must be an int in [0, 2^32 − 1], got {step!r}")
    return int(step)


def step_seed(seed: int, step: int) -> int:
    """The 32-bit seed of the CPU generator that draws step ``step``'s uniforms for ``seed``.

    ``fmix32((key(seed) + step) mod 2^32)`` with ``key(seed) = fmix32(lo ^ fmix32(hi ^
    0x9E3779B9))`` (lo, hi: the 32-bit halves of ``seed mod 2^64``; fmix32: MurmurHash3's
    finalizer). Injective in ``step`` for a fixed seed, so no two steps of one run share
    their draws. See the module docstring for why 32 bits.

    Raises:
        ConfigError: ``seed`` is not an int, or ``step`` is not an int in [0, 2^32 − 1].
    """
    s = _check_seed(seed, "step_seed") % 2**64
    t = _check_step(step, "step_seed")
    key = _fmix32((s & _M32) ^ _fmix32((s >> 32) ^ 0x9E3779B9))
    return _fmix32((key + t) & _M32)


def _check_probs(probs: Any) -> Tensor:
    where = "DynamicBinarizer"
    if not isinstance(probs, Tensor):
        raise InputError(
            f"{where} expects probabilities as a torch.Tensor [N, *data_shape], "
            f"got {type(probs).__name__}"
        )
    if not probs.is_floating_point():
        raise DTypeError(
            f"{where} expects floating-point probabilities in [0, 1], got {probs.dtype}; "
            "8-bit levels k become probabilities k/255 with latentkit.data.to_unit_interval"
        )
    if probs.ndim < 1 or probs.shape[0] < 1:
        raise ShapeError(
            f"{where} expects probabilities [N, *data_shape] with N ≥ 1 examples, "
            f"got shape {tuple(probs.shape)}"
        )
    if probs.numel():
        check_finite_rows(probs, name=f"{where}: the probabilities")
        lo, hi = float(probs.min()), float(probs.max())
        if lo < 0.0 or hi > 1.0:
            raise InputError(
                f"{where} expects probabilities in [0, 1], got values in [{lo:g}, {hi:g}]; "
                "pass intensities (load_dataset(..., variant='unit')), not standardized data"
            )
    return probs


class DynamicBinarizer:
    """A fresh Bernoulli draw of each example every time it is used, reproducible by step.

    ``batch(indices, step)`` returns float32 ``(u < probs[indices])`` where ``u`` is one
    ``torch.rand([len(indices), *data_shape])`` block drawn on the CPU from a generator
    seeded with :func:`step_seed`\\ (seed, step). So:

    - the result is a pure function of (seed, step, indices): calling it again, in any
      order, from a new object, or after a restart gives the same bits;
    - ``P(bit = 1) = probs`` (up to the 2^-24 grid of float32 uniforms); 0 stays 0, 1 stays 1;
    - row ``j`` uses row ``j`` of the step's uniform block: it depends on (seed, step, j,
      ``indices[j]``) only, not on the other indices nor on how many follow
      (``batch(idx, s)[:k] == batch(idx[:k], s)``). The bits are keyed by *position*, not by
      example: one example at two positions of a batch gets two independent draws, and
      permuting ``indices`` does not permute the result;
    - the draws are made on the CPU whatever the device of ``probs`` (then moved), so the
      bits do not depend on the device.

    Args:
        probs: ``[N, *data_shape]`` floating-point probabilities in [0, 1], e.g. the train
            split of ``load_dataset(..., variant="unit")`` (held, not copied).
        seed: any int (taken mod 2^64); the run's binarization seed.

    Raises:
        InputError: ``probs`` is not a tensor, or holds values outside [0, 1].
        DTypeError: ``probs`` is not floating point.
        ShapeError: ``probs`` is 0-d or has no examples.
        NonFiniteError: ``probs`` holds NaN or inf.
        ConfigError: ``seed`` is not an int.
    """

    __slots__ = ("_probs", "_seed")

    def __init__(self, probs: Tensor, seed: int) -> None:
        self._seed = _check_seed(seed, "DynamicBinarizer")
        self._probs = _check_probs(probs)

    @property
    def probs(self) -> Tensor:
        """The ``[N, *data_shape]`` probabilities (intensities) being binarized."""
        return self._probs

    @property
    def seed(self) -> int:
        return self._seed

    @property
    def data_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self._probs.shape[1:])

    def __len__(self) -> int:
        return int(self._probs.shape[0])

    def __repr__(self) -> str:
        return (
            f"DynamicBinarizer(N={len(self)}, data_shape={self.data_shape}, seed={self._seed}, "
            f"device={self._probs.device})"
        )

    def _check_indices(self, indices: Any) -> Tensor:
        where = "DynamicBinarizer.batch"
        if not isinstance(indices, Tensor):
            raise InputError(
                f"{where} expects indices as a 1-d integer torch.Tensor, "
                f"got {type(indices).__name__}"
            )
        if indices.is_floating_point() or indices.is_complex() or indices.dtype == torch.bool:
            raise DTypeError(f"{where} expects integer indices (e.g. int64), got {indices.dtype}")
        if indices.ndim != 1:
            raise ShapeError(
                f"{where} expects a 1-d tensor of indices, got shape {tuple(indices.shape)}"
            )
        n = len(self)
        if indices.numel():
            lo, hi = int(indices.min()), int(indices.max())
            if lo < 0 or hi >= n:
                raise InputError(
                    f"{where}: indices must lie in [0, {n - 1}] (N = {n}), got values in "
                    f"[{lo}, {hi}]"
                )
        return indices.to(device=self._probs.device, dtype=torch.int64)

    def batch(self, indices: Tensor, step: int) -> Tensor:
        """Binarize examples ``indices`` for training step ``step``.

        Args:
            indices: 1-d integer tensor of example numbers in [0, N − 1] (repeats allowed).
            step: the training step, an int in [0, 2^32 − 1]; each step gets its own draws.

        Returns:
            float32 ``[len(indices), *data_shape]`` of exact 0s and 1s, on ``probs``' device.

        Raises:
            InputError: ``indices`` is not a tensor, or holds a value outside [0, N − 1].
            DTypeError: ``indices`` is not of an integer dtype.
            ShapeError: ``indices`` is not 1-d.
            ConfigError: ``step`` is not an int in [0, 2^32 − 1].
        """
        step = _check_step(step, "DynamicBinarizer.batch")
        idx = self._check_indices(indices)
        gen = torch.Generator(device="cpu").manual_seed(step_seed(self._seed, step))
        shape = (idx.shape[0], *self._probs.shape[1:])
        u = torch.rand(shape, generator=gen, dtype=torch.float32, device="cpu")
        p = self._probs.index_select(0, idx)
        # compare in float64 for float64 probs, else in float32 (half-precision probs are
        # widened: rounding u to float16 could reach 1.0 and turn a p = 1 into a 0)
        wide = torch.float64 if p.dtype == torch.float64 else torch.float32
        return (u.to(device=p.device, dtype=wide) < p.to(wide)).to(torch.float32)


def split_validation(train: Tensor, size: int = VALIDATION_SIZE) -> tuple[Tensor, Tensor]:
    """Hold the last ``size`` examples of ``train`` out as a validation split.

    The usual MNIST protocol: of the official 60,000 training images (in their official
    order, as ``load_dataset("mnist")`` gives them) the last 10,000 are for validation,
    leaving 50,000 to train on. Works on any tensor with a leading example dimension, so
    labels split the same way: ``split_validation(ds.train_labels, size)``.

    Args:
        train: ``[N, ...]`` tensor of N ≥ 2 examples.
        size: number of validation examples, an int in [1, N − 1].

    Returns:
        ``(kept, validation)`` = ``(train[:N - size], train[N - size:])``: views of ``train``
        (no copy), disjoint, ``N − size`` and ``size`` examples, in their original order.

    Raises:
        InputError: ``train`` is not a tensor.
        ShapeError: ``train`` is 0-d.
        ConfigError: ``size`` is not an int in [1, N − 1] (names N).
    """
    if not isinstance(train, Tensor):
        raise InputError(f"split_validation expects a torch.Tensor, got {type(train).__name__}")
    if train.ndim < 1:
        raise ShapeError("split_validation expects a tensor [N, ...] of examples, got a 0-d one")
    n = int(train.shape[0])
    if not _is_int(size) or not 1 <= int(size) <= n - 1:
        if n < 2:
            why = f"the data hold {n} example(s); a split needs at least 2"
        else:
            why = f"it must be an int in [1, {n - 1}] so both parts are non-empty"
        raise ConfigError(
            f"split_validation: validation size {size!r} is unusable: {why} (N = {n})"
        )
    cut = n - int(size)
    return train[:cut], train[cut:]


def keep_labels(labels: Tensor, per_class: int, *, seed: int = 0) -> Tensor:
    """The semi-supervised protocol: ``per_class`` labels of each class kept, the others
    replaced by ``latentkit.MISSING_LABEL`` (−1), the kept examples drawn uniformly without
    replacement with a generator seeded by ``seed``.

    Refuses (``ConfigError``) a ``per_class`` that a class cannot supply, or labels that are
    not a 1-D integer tensor. ``keep_labels(y, 10)`` on MNIST: 100 labels in all.
    """
    from latentkit.arguments import check_count, check_seed
    from latentkit.conditions import MISSING_LABEL

    check_count(per_class, "labels per class", error=ConfigError)
    check_seed(seed, "seed")
    if not isinstance(labels, Tensor) or labels.ndim != 1 or labels.dtype.is_floating_point:
        raise ConfigError("keep_labels: labels must be a 1-D integer tensor")
    out = torch.full_like(labels, MISSING_LABEL)
    generator = torch.Generator().manual_seed(seed)
    for c in torch.unique(labels[labels >= 0]).tolist():
        where = (labels == c).nonzero().squeeze(1)
        if where.numel() < per_class:
            raise ConfigError(
                f"[data] labels = {per_class} per class, but class {c} has only "
                f"{where.numel()} training examples"
            )
        chosen = where[torch.randperm(where.numel(), generator=generator)[:per_class]]
        out[chosen] = labels[chosen]
    return out
