"""Checks at the public entry points: a bad tensor gets one clear line, never a torch trace.

These run once per public call (not inside estimators), so hot inner code stays free of
them. The finiteness check reads one boolean back from the device; pass
``validate=False`` to the bounds to skip all checks in a tight training loop.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from latentkit.errors import DeviceError, DTypeError, InputError, NonFiniteError, ShapeError

__all__ = ["check_data", "check_positive_int"]


def _describe(x: Tensor) -> str:
    return f"{x.dtype} tensor of shape {tuple(x.shape)} on {x.device}"


def check_data(model: Any, x: Any, *, name: str = "x") -> Tensor:
    """Check that ``x`` is a batch the model accepts: ``[batch, *data_shape]``, float, same
    dtype and device as the model, at least one example, no NaN or inf."""
    data_shape = model.data_shape
    if not isinstance(x, Tensor):
        raise InputError(
            f"{name} must be a torch.Tensor of shape {_want(data_shape)}, got {type(x).__name__}"
        )
    ref = model.reference()
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
    # One pass and one read-back in the common case: a sum is finite only if every term is
    # (NaN and ±inf propagate); a non-finite sum, which finite values can also give by
    # overflowing, is looked at element by element.
    if bool(torch.isfinite(x.sum())):
        return x
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        nan = int(torch.isnan(x).sum())
        raise NonFiniteError(
            f"{name} holds {bad} non-finite value(s) ({nan} NaN, {bad - nan} inf) "
            f"in a {_describe(x)}"
        )
    return x


def _want(data_shape: tuple[int, ...]) -> str:
    return f"[batch, {', '.join(map(str, data_shape))}]"


def check_positive_int(value: Any, name: str) -> int:
    """An int ≥ 1 (bools refused), else an InputError naming the argument."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{name} must be an int ≥ 1, got {value!r}")
    return value
