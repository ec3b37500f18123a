"""What a resume reads from a checkpoint, checked before it is used.

Each function reads one part of a checkpoint's state (``tensors`` and its JSON ``info``,
read from ``where``), refuses what is malformed with a
:class:`~latentkit.errors.CheckpointError` naming the file and the field, and warns where a
resume goes on but not as the uninterrupted run would. :class:`~latentkit.training.state.
RunState` calls them in turn.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from latentkit.checkpoint import CheckpointError, restore_rng, subset, unflatten_optimizer_state
from latentkit.errors import LatentkitError
from latentkit.objectives import Objective
from latentkit.training.averaging import EMA
from latentkit.training.config import EXACT_RESUME_FIELDS, TrainConfig
from latentkit.training.runtime import Runtime, seed_everything

__all__ = [
    "best_validation",
    "budget_of",
    "compare_config",
    "fault_counts",
    "load_average",
    "load_objective_state",
    "load_rng",
    "optimizer_state",
]

_STACK = 4
"""Warnings point at the caller of ``Trainer.resume``."""

RESEED_STRIDE = 104729
"""A resume under another process count reseeds each rank with seed + stride · step + rank."""


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def compare_config(
    info: dict[str, Any], where: Path, config: TrainConfig, num_examples: int
) -> None:
    """Warn about changed :data:`EXACT_RESUME_FIELDS` (the continuation is then not the
    uninterrupted run); refuse another data set size (the data order would differ)."""
    saved = info.get("train_config") or {}
    if not isinstance(saved, dict):
        raise CheckpointError(f"{where}: 'train_config' must be an object, got {saved!r}")
    changed = [f for f in EXACT_RESUME_FIELDS if f in saved and saved[f] != getattr(config, f)]
    if config.lr_schedule == "cosine" and saved.get("steps") not in (None, config.steps):
        changed.append("steps (the cosine learning-rate schedule spans the run's steps)")
    if changed:
        warnings.warn(
            f"resuming with changed {changed}: training goes on, but not as the "
            "uninterrupted run would have",
            stacklevel=_STACK,
        )
    order = info.get("data_order") or {}
    n = order.get("num_examples") if isinstance(order, dict) else None
    if n is not None and n != num_examples:
        raise CheckpointError(
            f"the checkpoint was trained on {n} examples, this data set has "
            f"{num_examples}; load the same data to resume"
        )


def fault_counts(info: dict[str, Any], where: Path) -> tuple[int, int] | None:
    """The ``skip`` policy's counts (skipped steps, and in a row), checked; None when the
    checkpoint's ``nonfinite`` record is not an object (refused unless absent)."""
    faults = info.get("nonfinite") or {}
    counts = (
        [faults.get(k, 0) for k in ("skipped_steps", "skips_in_a_row")]
        if isinstance(faults, dict)
        else [None]
    )
    if not all(_is_count(c) for c in counts):
        raise CheckpointError(f"{where}: 'nonfinite' must hold counts ≥ 0, got {faults!r}")
    return (counts[0], counts[1]) if isinstance(faults, dict) else None


def budget_of(info: dict[str, Any], where: Path) -> tuple[float, int]:
    """(train_seconds, since_step) of the sessions before the checkpoint: a checkpoint that
    does not record them (written by an earlier latentkit) starts the count at its step."""
    budget = info.get("budget")
    if budget is None:
        return 0.0, int(info["step"])
    seconds = budget.get("train_seconds") if isinstance(budget, dict) else None
    since = budget.get("since_step") if isinstance(budget, dict) else None
    if not (
        isinstance(seconds, (int, float))
        and not isinstance(seconds, bool)
        and math.isfinite(seconds)
        and seconds >= 0
        and _is_count(since)
        and since <= info["step"]
    ):
        raise CheckpointError(
            f"{where}: 'budget' must hold train_seconds ≥ 0 and since_step in "
            f"[0, step], got {budget!r}"
        )
    return float(seconds), since


def load_rng(
    tensors: dict[str, Tensor],
    info: dict[str, Any],
    where: Path,
    runtime: Runtime,
    seed: int,
    step: int,
) -> None:
    """This rank's generator states, or a reseed (warned) when the process count changed."""
    rank, world = runtime.dist.rank, runtime.dist.world_size
    rng = subset(tensors, f"rng/rank{rank}")
    if info.get("world_size", 1) == world and rng:
        try:
            restore_rng(rng)
        except (KeyError, RuntimeError, TypeError) as exc:
            raise CheckpointError(
                f"{where}: the saved random-generator state is malformed ({type(exc).__name__})"
            ) from None
        return
    warnings.warn(
        f"the checkpoint was written by {info.get('world_size')!r} process(es), this "
        f"run has {world}: the model's noise is reseeded",
        stacklevel=_STACK,
    )
    seed_everything((seed + RESEED_STRIDE * step + rank) % 2**63)


def load_objective_state(
    objective: Objective,
    record: dict[str, Any],
    tensors: dict[str, Tensor],
    info: dict[str, Any],
    where: Path,
) -> None:
    """The objective's saved state (e.g. a layer sampler's history), checked like the
    weights: the same names, shapes and dtypes, finite; and the same objective (``record``,
    its name and options)."""
    saved = info.get("objective")
    if isinstance(saved, dict) and saved.get("name") != record["name"]:
        warnings.warn(
            f"resuming with objective {record['name']!r}; the checkpoint "
            f"was trained with {saved.get('name')!r}",
            stacklevel=_STACK,
        )
    mine = objective.state_dict()
    if not mine and not tensors:
        return
    same = isinstance(saved, dict) and saved == record
    if set(tensors) != set(mine) or not same:
        warnings.warn(
            "the checkpoint's objective state does not match this objective's; it starts afresh",
            stacklevel=_STACK,
        )
        return
    for k, t in tensors.items():
        ok = t.shape == mine[k].shape and t.dtype == mine[k].dtype
        if not ok or (t.is_floating_point() and not bool(torch.isfinite(t).all())):
            raise CheckpointError(f"{where}: objective state {k!r} is malformed")
    objective.load_state_dict(tensors)


def load_average(ema: EMA, tensors: dict[str, Tensor], where: Path) -> None:
    """The weight average's saved state, refused naming the file when it does not fit."""
    try:
        ema.load_state_dict(tensors)
    except LatentkitError as exc:
        raise CheckpointError(f"{where}: {exc}") from None


def _entry_ok(value: Any, param: Tensor) -> bool:
    if isinstance(value, Tensor):
        shape_ok = value.ndim == 0 or tuple(value.shape) == tuple(param.shape)
        return shape_ok and (not value.is_floating_point() or bool(torch.isfinite(value).all()))
    return isinstance(value, (int, float)) and math.isfinite(value)


def optimizer_state(
    optimizer: torch.optim.Optimizer,
    params: list[Tensor],
    tensors: dict[str, Tensor],
    info: dict[str, Any],
    where: Path,
) -> dict[str, Any]:
    """Adam's saved state, checked against the model's ``params``. The hyper-parameters
    (param groups) are ``optimizer``'s own, not the file's: nothing but moments and step
    counts is taken from the checkpoint."""
    plain = info.get("optimizer")
    scalars = plain.get("state_scalars", {}) if isinstance(plain, dict) else None
    try:
        state = unflatten_optimizer_state(
            subset(tensors, "optimizer"), {"param_groups": [], "state_scalars": scalars}
        )["state"]
    except (AttributeError, TypeError, ValueError) as exc:
        raise CheckpointError(
            f"{where}: the optimizer state is malformed ({type(exc).__name__})"
        ) from None
    for index, entry in state.items():
        if not 0 <= index < len(params):
            raise CheckpointError(
                f"{where}: optimizer state for parameter {index}; the model has {len(params)}"
            )
        for key, value in entry.items():
            if not _entry_ok(value, params[index]):
                raise CheckpointError(
                    f"{where}: optimizer state {key!r} of parameter {index} is malformed "
                    "(wrong shape, type, or not finite)"
                )
    return {"state": state, "param_groups": optimizer.state_dict()["param_groups"]}


def best_validation(info: dict[str, Any], where: Path, selection_k: int) -> float | None:
    """The best validation value so far, checked; None when it was kept by another bound
    (``select_k`` changed: not comparable, so the next evaluation is the best)."""
    best = info.get("best_validation_elbo")
    if best is not None and not (isinstance(best, (int, float)) and math.isfinite(best)):
        raise CheckpointError(f"{where}: 'best_validation_elbo' must be a finite number")
    if info.get("best_validation_k", 1) != selection_k:
        return None
    return None if best is None else float(best)
