"""Learning-rate schedules: how the rate of each optimizer step follows from the step alone.

A schedule is a frozen :class:`LRSchedule` and one pure function of the step,
:func:`lr_factor`, giving the multiplier of the base learning rate; :func:`apply_lr` writes
``base_lr · factor`` into every parameter group. Nothing is stateful, so a run resumed at
step k computes the same factors as the uninterrupted run (no scheduler state to save,
unlike ``torch.optim.lr_scheduler``).

``step`` is 0-based: ``lr_factor(s, step, T)`` is the factor of update number n = step + 1,
and the schedule is one continuous function f(n) of the update number sampled at
n = 1 … T, with W = ``warmup_steps`` and m = ``min_factor``::

    warm-up   f(n) = n / W                            1 ≤ n ≤ W    f(0) = 0, f(W) = 1
    constant  f(n) = 1                                n > W
    step      f(n) = γ^⌊(n − W − 1) / K⌋              n > W        γ = step_gamma, K = step_every
    cosine    f(n) = m + (1 − m) · ½ (1 + cos(π p))   n > W        f(W) = 1, f(T) = m
              p = min(1, (n − W) / (T − W))

So no update is spent at learning rate 0, the W-th update is the first at the full rate,
the step schedule first multiplies by γ at update W + K + 1 (K updates at the full rate),
and the cosine (SGDR, Loshchilov & Hutter 2017, eq. 5, one half period without restarts)
reaches m at the last update, n = T, and stays there for any update after it. At the
middle, n − W = (T − W)/2, the cosine factor is (1 + m)/2.

Mutations tried (each made by hand here; the tests of ``tests/test_schedules.py`` it fails)
----------------------------------------------------------------------------------------
* cosine with the wrong phase, ``cos(π (1 − p))``: ``test_cosine_ends_at_min_factor…``,
  ``…_without_warmup…`` and the monotonicity property;
* a full cosine period, ``cos(2π p)``: the mid-point and end tests and the property;
* the cosine progress counted from the 0-based step, ``(step − W)/(T − W)`` (the last
  update above m): the mid-point and end tests;
* the warm-up ramp ``step / W`` (a first update at rate 0): ``test_warmup_ramps…``;
* the step decay counted from step 0, ``γ^⌊step / K⌋``: ``test_step_decay…``.
"""

from __future__ import annotations

import math
from typing import Any

import attrs
import torch
from torch import Tensor

from latentkit.config import int_at_least as _int_at_least
from latentkit.config import one_of as _one_of
from latentkit.errors import ConfigError

__all__ = ["LR_KINDS", "LRSchedule", "apply_lr", "lr_factor"]

LR_KINDS = ("constant", "cosine", "step")
"""The learning-rate schedules :class:`LRSchedule` knows (after the warm-up)."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _number_in(low: float, high: float, *, low_open: bool = False) -> Any:
    def check(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        if not _is_number(value) or not (low < value if low_open else low <= value) or value > high:
            interval = f"{'(' if low_open else '['}{low:g}, {high:g}]"
            raise ConfigError(f"{attribute.name!r} must be a number in {interval}, got {value!r}")

    return check


@attrs.frozen(kw_only=True)
class LRSchedule:
    """How the learning rate moves with the step (the base rate itself is the trainer's).

    Attributes:
        kind: after the warm-up, ``constant`` (the base rate), ``cosine`` (half a cosine
            from the base rate down to ``min_factor`` of it at the last step) or ``step``
            (multiplied by ``step_gamma`` every ``step_every`` steps).
        warmup_steps: updates of linear warm-up from 0 to the base rate (0: none).
        min_factor: the cosine's floor, a fraction of the base rate, in [0, 1].
        step_every: updates between two decays of the ``step`` schedule (≥ 1).
        step_gamma: the ``step`` schedule's multiplier per decay, in (0, 1].
    """

    kind: str = attrs.field(default="constant", validator=_one_of(*LR_KINDS))
    warmup_steps: int = attrs.field(default=0, validator=_int_at_least(0))
    min_factor: float = attrs.field(default=0.0, validator=_number_in(0.0, 1.0))
    step_every: int = attrs.field(default=1000, validator=_int_at_least(1))
    step_gamma: float = attrs.field(default=0.5, validator=_number_in(0.0, 1.0, low_open=True))


def lr_factor(schedule: LRSchedule, step: int, total_steps: int) -> float:
    """The multiplier of the base learning rate for optimizer step ``step`` (0-based).

    A pure function of its arguments: f(n) of the module docstring at update n = step + 1,
    in [0, 1]. ``total_steps`` (the run's T) matters to ``cosine`` only, which needs
    T > ``warmup_steps``; a step at or past T gets ``min_factor``.
    """
    if not _is_int(step) or step < 0:
        raise ConfigError(f"'step' must be an int ≥ 0, got {step!r}")
    if not _is_int(total_steps) or total_steps < 1:
        raise ConfigError(f"'total_steps' must be an int ≥ 1, got {total_steps!r}")
    warmup = schedule.warmup_steps
    if schedule.kind == "cosine" and total_steps <= warmup:
        raise ConfigError(
            f"'total_steps' ({total_steps}) must exceed 'warmup_steps' ({warmup}) for a "
            "cosine schedule"
        )
    n = step + 1
    if n <= warmup:
        return n / warmup
    if schedule.kind == "step":
        return schedule.step_gamma ** ((n - warmup - 1) // schedule.step_every)
    if schedule.kind == "cosine":
        progress = min(1.0, (n - warmup) / (total_steps - warmup))
        floor = schedule.min_factor
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0


def apply_lr(optimizer: torch.optim.Optimizer, base_lr: float, factor: float) -> float:
    """Set every parameter group's learning rate to ``base_lr · factor``; returns that rate.

    A tensor-valued ``lr`` (a capturable or compiled optimizer's) is filled in place, so the
    optimizer keeps the same tensor.
    """
    lr = base_lr * factor
    if not _is_number(lr) or lr < 0:
        raise ConfigError(
            f"'lr' must be a finite number ≥ 0, got base_lr={base_lr!r} × factor={factor!r}"
        )
    for group in optimizer.param_groups:
        if isinstance(group["lr"], Tensor):
            group["lr"].fill_(lr)
        else:
            group["lr"] = lr
    return lr
