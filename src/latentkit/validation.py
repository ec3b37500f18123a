"""Checks at the public entry points: a bad tensor gets one clear line, never a torch trace.

These run once per public call (not inside estimators), so hot inner code stays free of
them. The finiteness check reads one boolean back from the device; pass
``validate=False`` to the bounds to skip all checks in a tight training loop.
"""

from __future__ import annotations

import math
import weakref
from typing import Any

import torch
from torch import Tensor
from torch.distributions import Bernoulli, Distribution, Independent, constraints

from latentkit.arguments import check_count
from latentkit.conditions import base_chain, probe, restrict
from latentkit.distributions import DiscretizedNormal, LevelGrid
from latentkit.errors import (
    DeviceError,
    DTypeError,
    InputError,
    NonFiniteError,
    ShapeError,
    SupportError,
)

__all__ = [
    "check_data",
    "check_dataset",
    "check_finite_rows",
    "check_likelihood_support",
    "check_model_input",
    "check_positive_int",
    "check_tensor_kind",
    "likelihood_family",
    "likelihood_is_discrete",
]


def _describe(x: Tensor) -> str:
    return f"{x.dtype} tensor of shape {tuple(x.shape)} on {x.device}"


def check_data(model: Any, x: Any, *, name: str = "x") -> Tensor:
    """Check that ``x`` is a batch the model accepts: ``[batch, *data_shape]``, float, same
    dtype and device as the model, at least one example, no NaN or inf."""
    _check_batch(model, x, name, _model_like(model, "check_data").reference())
    return _check_finite(x, name)


def check_model_input(model: Any, x: Any, *, name: str = "x") -> Tensor:
    """:func:`check_data` and :func:`check_likelihood_support` together, what ``elbo`` and
    ``iwae`` run on their input: where p(x | z_1)'s support is bounded (Bernoulli, an
    interval) a value inside it is finite, so one pass and one read-back decide both in
    the common case; only a batch that fails is looked at again, finiteness first (a NaN is
    named as a NaN, not as a value outside the support)."""
    ref = _model_like(model, "check_model_input").reference()
    _check_batch(model, x, name, ref)
    d = _support_family(model, ref)
    if _all_inside_bounded(d.support, x):
        return x
    _check_finite(x, name)
    check_likelihood_support(model, x, name=name, family=d)
    return x


def _all_inside_bounded(support: constraints.Constraint, x: Tensor) -> bool:
    """True when ``support`` is bounded and every value of ``x`` lies inside it (so every
    value is also finite), in one pass and one read-back; False when it cannot say so (an
    unbounded support, or some value outside: the caller then looks again, slowly, to name
    what is wrong).

    * {0, 1}: x − x·x is exactly 0 at x ∈ {0, 1} and nowhere else in floating point (at
      tiny x, x·x underflows and x remains; NaN and ±inf give NaN), so the largest
      |x − x²| is 0 exactly when every value is a 0 or a 1 (a NaN maximum compares
      unequal). One fused ``addcmul``, an in-place ``abs_`` and one reduction read back as
      a float, against the four passes of ``constraints.boolean.check(x).all()``
      (``count_nonzero`` or ``any`` instead of the reduction: faster at batch 1, three
      times slower at 512 × 784).
    * a closed interval [a, b] with finite ends: ``aminmax`` in one pass, both ends read
      back at once; a NaN propagates into both and fails both comparisons.
    * a K-level grid (:class:`~latentkit.distributions.LevelGrid`, a discretized
      likelihood's): its own ``check``, one read-back; NaN fails its comparisons.
    """
    if x.numel() == 0:
        return False
    if isinstance(support, constraints._Boolean):
        return float(torch.addcmul(x, x, x, value=-1).abs_().amax()) == 0.0
    if isinstance(support, LevelGrid):
        return bool(support.check(x).all())
    if isinstance(support, constraints._Interval):
        a, b = support.lower_bound, support.upper_bound
        if not all(isinstance(e, (int, float)) and math.isfinite(e) for e in (a, b)):
            return False
        low, high = torch.stack(torch.aminmax(x)).tolist()
        return low >= a and high <= b
    return False


def check_tensor_kind(x: Any, name: str, data_shape: tuple[int, ...] | None = None) -> Tensor:
    """A dense real ``torch.Tensor`` (not a list or array, not sparse or nested, not
    complex), else an :class:`InputError`/:class:`DTypeError` naming ``name``."""
    want = "" if data_shape is None else f" of shape {_want(data_shape)}"
    if not isinstance(x, Tensor):
        raise InputError(f"{name} must be a torch.Tensor{want}, got {type(x).__name__}")
    if x.is_nested:
        raise InputError(f"{name} must be a dense tensor{want}, got a nested tensor")
    if x.layout != torch.strided:
        raise InputError(
            f"{name} must be a dense (strided) tensor, got layout {x.layout}; use {name}.to_dense()"
        )
    if x.is_complex():
        raise DTypeError(f"{name} must be a real tensor, got {_describe(x)}")
    return x


def _model_like(model: Any, where: str) -> Any:
    """``model`` when it has what these checks read (``data_shape``, ``reference()``,
    ``generative``: a LatentModel, or an object offering the same), else an InputError."""
    if not all(hasattr(model, a) for a in ("data_shape", "reference", "generative")):
        raise InputError(
            f"{where}: model must be a latentkit.LatentModel, got {type(model).__name__}"
        )
    return model


def _check_batch(model: Any, x: Any, name: str, ref: Tensor) -> None:
    data_shape = model.data_shape
    check_tensor_kind(x, name, data_shape)
    if not x.is_floating_point():
        hint = (
            " (8-bit images: use latentkit.data.to_unit_interval or to_symmetric first)"
            if x.dtype == torch.uint8
            else ""
        )
        raise DTypeError(f"{name} must be a floating-point tensor, got {_describe(x)}{hint}")
    if x.ndim != len(data_shape) + 1 or tuple(x.shape[1:]) != tuple(data_shape):
        expected = (x.shape[0] if x.ndim else "batch", *data_shape)
        raise ShapeError(
            f"{name} must have shape {_want(data_shape)} (expected {tuple(expected)}), "
            f"got {tuple(x.shape)}"
        )
    if x.shape[0] == 0:
        raise ShapeError(f"{name} is an empty batch (shape {tuple(x.shape)}); pass ≥ 1 example")
    if ref.numel() and x.device != ref.device:
        raise DeviceError(
            f"{name} is on {x.device} but the model is on {ref.device}; "
            f"move one of them (x.to({str(ref.device)!r}) or model.to({str(x.device)!r}))"
        )
    if ref.numel() and x.dtype != ref.dtype:
        raise DTypeError(
            f"{name} has dtype {x.dtype} but the model's parameters are {ref.dtype}; "
            f"use x.to({ref.dtype}) or model.to({x.dtype})"
        )


def _check_finite(x: Tensor, name: str) -> Tensor:
    # One pass and one read-back in the common case: a sum is finite only if every term is
    # (NaN and ±inf propagate); a non-finite sum, which finite values can also give by
    # overflowing, is looked at example by example.
    if bool(torch.isfinite(x.sum())):
        return x
    _refuse_nonfinite(x, name, x.dtype)
    return x


ELEMENTS_PER_PASS = 1 << 24
"""The most values cast at once when a data set's finiteness is looked at example by
example (a copy of at most this many values in the model's dtype)."""


def check_finite_rows(
    data: Tensor, *, name: str = "data", dtype: torch.dtype | None = None
) -> Tensor:
    """Refuse a data set ``[N, ...]`` that holds NaN or inf in any example, not only the
    first: a :class:`NonFiniteError` counting the values and the examples and naming the
    first. With ``dtype`` (the model's), a value finite in the data's own dtype but beyond
    ``dtype``'s range (1e39 in float64 for a float32 model) counts: it is inf once cast.

    One pass over the data and one read-back when all is well (its least and largest
    value, within ``dtype``'s range; a NaN fails both comparisons); only then, in slices
    of :data:`ELEMENTS_PER_PASS` values, example by example. A 0-d tensor is one example.
    Not a float tensor: returned as is (the dtype check is the caller's)."""
    check_tensor_kind(data, name)
    if not data.is_floating_point() or data.numel() == 0:
        return data
    into = data.dtype if dtype is None or not dtype.is_floating_point else dtype
    largest = min(torch.finfo(into).max, torch.finfo(data.dtype).max)
    low, high = torch.stack(torch.aminmax(data)).tolist()
    if -largest <= low and high <= largest:
        return data
    _refuse_nonfinite(data, name, into)
    return data


def _refuse_nonfinite(data: Tensor, name: str, into: torch.dtype) -> None:
    """Count the non-finite values of ``data`` (in ``into``) example by example; raise if
    there is any."""
    rows = data.reshape(data.shape[0], -1) if data.ndim else data.reshape(1, 1)
    per_pass = max(1, ELEMENTS_PER_PASS // max(1, rows.shape[1]))
    bad_rows, bad, nan = [], 0, 0
    for part in rows.split(per_pass):
        part = part.to(into)
        finite = torch.isfinite(part)
        bad += int((~finite).sum())
        nan += int(torch.isnan(part).sum())
        bad_rows.append(~finite.all(1))
    if not bad:
        return
    which = torch.cat(bad_rows)
    cast = "" if into == data.dtype else f" (in {into}, the model's precision)"
    raise NonFiniteError(
        f"{name}: NaN or inf in {int(which.sum())} of {rows.shape[0]} examples (the first, "
        f"example {int(which.nonzero()[0, 0])}); {bad} non-finite value(s) ({nan} NaN, "
        f"{bad - nan} inf){cast}"
    )


def check_dataset(
    model: Any, data: Any, *, name: str = "data", dtype: torch.dtype | None = None
) -> Tensor:
    """The one check of a data set that a model is trained on (the trainer), evaluated
    over (:func:`~latentkit.evaluate`) or diagnosed over (:func:`~latentkit.diagnose`):
    a dense float tensor ``[N, *model.data_shape]`` with N ≥ 1, every example finite
    (:func:`check_finite_rows`, in the model's dtype) and inside p(x | z_1)'s support
    (:func:`check_likelihood_support`); a typed one-line error naming ``name`` otherwise.

    The data may live on any device and in any float dtype (they are moved batch by
    batch). With ``dtype``, a float data set is cast to it first, checked as cast, and the
    cast is returned (the trainer keeps its data in its own dtype); else ``data`` itself,
    checked in the model's dtype."""
    _check_batch(
        _model_like(model, "check_dataset"), data, name, torch.empty(0)
    )  # kind, float, shape, N ≥ 1; any device
    if dtype is not None:
        data = data.to(dtype=dtype)
    else:  # checked in the precision the model will see the data in
        ref = model.reference()
        dtype = ref.dtype if ref.is_floating_point() else None
    check_finite_rows(data, name=name, dtype=dtype)
    check_likelihood_support(model, data, name=name)
    return data


def _want(data_shape: tuple[int, ...]) -> str:
    return f"[batch, {', '.join(map(str, data_shape))}]"


def check_positive_int(value: Any, name: str) -> int:
    """An int in [1, :data:`~latentkit.arguments.MAX_COUNT`] (bools refused), else an
    InputError naming the argument."""
    return check_count(value, name)


def likelihood_family(model: Any) -> Distribution:
    """The base distribution of p(x | z_1) (``Independent`` unwrapped), at z_1 = 0.

    Only its type and support matter to callers, so any z_1 does: zeros avoid sampling the
    chain (a DDPM's ancestral sampling would cost T network calls). A one-layer chain whose
    z_1 is not a float (a mixture's component index) is asked at a draw of its prior.
    """
    ref = _model_like(model, "likelihood_family").reference()
    model = probe(model)
    if model.condition is not None:  # a view of n conditions: one row's suffices here
        model = restrict(model, slice(0, 1))
    dtype = ref.dtype if ref.is_floating_point() else torch.get_default_dtype()
    z1 = torch.zeros(1, *model.generative.latent_shapes[0], dtype=dtype, device=ref.device)
    with torch.no_grad():
        try:
            d: Distribution = model.generative.likelihood(z1)
        except (IndexError, RuntimeError, TypeError, ValueError):
            if model.generative.num_layers != 1:
                raise
            with torch.random.fork_rng(devices=_devices(ref)):  # the caller's draws stay put
                d = model.generative.likelihood(model.generative.prior(1).sample())
    while isinstance(d, Independent):
        d = d.base_dist
    return d


def _devices(ref: Tensor) -> list[int]:
    return [ref.device.index or 0] if ref.device.type == "cuda" else []


_FAMILIES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _support_family(model: Any, ref: Tensor | None = None) -> Distribution:
    """:func:`likelihood_family`, built once per generative chain and kept while it lives:
    the family of p(x | z_1) does not change as its weights train, so ``elbo``/``iwae``
    check the support at no extra network call after the first. ``ref``: the model's
    :meth:`~latentkit.LatentModel.reference` if the caller has it."""
    generative = base_chain(model.generative)
    found = _FAMILIES.get(generative)
    ref = model.reference() if ref is None else ref
    if found is None or found[0] != (ref.device, ref.dtype):
        found = ((ref.device, ref.dtype), likelihood_family(model))
        _FAMILIES[generative] = found
    return found[1]


def likelihood_is_discrete(model: Any) -> bool:
    """Whether p(x | z_1) is a probability mass function (Bernoulli, discretized Normal, …)."""
    d = likelihood_family(model)
    return isinstance(d, (Bernoulli, DiscretizedNormal)) or bool(
        getattr(d.support, "is_discrete", False)
    )


def _support_words(d: Distribution) -> tuple[str, str]:
    """(the support in words, what to do about data outside it) for p(x | z_1)'s family."""
    support = d.support
    if isinstance(d, Bernoulli):
        return "binary values {0, 1}", (
            "binarize the data (data variant 'binarized' or 'threshold', or "
            "latentkit.data.binarize), or use a likelihood for continuous values "
            "(likelihood='gaussian')"
        )
    if isinstance(d, DiscretizedNormal):
        return _discretized_words(d.levels, d.binary)
    if isinstance(support, constraints.interval):
        return f"[{support.lower_bound:g}, {support.upper_bound:g}]", "rescale the data"
    return repr(support), "transform the data into it"


def _discretized_words(levels: int, binary: bool) -> tuple[str, str]:
    """:func:`_support_words` of a K-level discretized Normal: the model's ``levels`` named,
    and the levels that the two built-in discrete data kinds need."""
    if binary:
        return "binary values {0, 1} (levels=2: mapped to the grid {-1, 1} by 2x - 1)", (
            "binarize the data (data variant 'binarized' or 'threshold', or "
            "latentkit.data.binarize); 8-bit data (variant '8bit') need levels=256"
        )
    where = f"the {levels} levels 2k/{levels - 1} - 1, k = 0..{levels - 1} (levels={levels})"
    if levels == 256:
        return where, (
            "map 8-bit data with latentkit.data.to_symmetric (data variant '8bit'); binary "
            "data {0, 1} (variant 'binarized' or 'threshold') need levels=2 or a Bernoulli "
            "likelihood"
        )
    return where, (
        f"map level k of {levels}-level data to 2k/{levels - 1} - 1; binary data {{0, 1}} "
        "(variant 'binarized' or 'threshold') need levels=2, 8-bit data (variant '8bit') "
        "levels=256"
    )


def _inside(d: Distribution, data: Tensor) -> Tensor | None:
    """Which values of ``data`` lie in ``d``'s support, or None if it cannot say alone."""
    try:
        return d.support.check(data)
    except (NotImplementedError, ValueError, RuntimeError):  # a support we cannot test alone
        return None


def check_likelihood_support(
    model: Any, data: Tensor, *, name: str = "data", family: Distribution | None = None
) -> None:
    """Refuse ``data`` that p(x | z_1) gives no probability: values outside its support.

    A Bernoulli likelihood evaluated at x = 0.3 returns a number (the cross-entropy), but it
    is no log-probability, so bounds, NLLs and bits/dim computed from it mean nothing; this
    check turns that silent error into a :class:`~latentkit.errors.SupportError` that counts
    the values outside the support and shows the first. The check runs on ``data``'s own
    device, once per call (the trainer's and ``evaluate``'s entry points), never per step.
    A support that depends on the decoder's output (``constraints.dependent``) is not checked.
    """
    check_tensor_kind(data, name)
    d = _support_family(model) if family is None else family
    inside = _inside(d, data)
    if inside is None or bool(inside.all()):
        return
    outside = ~inside
    count = int(outside.sum())
    first = tuple(int(i) for i in outside.nonzero()[0])
    where, fix = _support_words(d)
    raise SupportError(
        f"{name}: the model's likelihood p(x|z_1) is {type(d).__name__}, defined on {where}, "
        f"but {count} of {data.numel()} values lie outside it (the first, "
        f"{float(data[first]):g}, at index {first}); {fix}"
    )
