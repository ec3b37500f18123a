"""The argument checks of the plugin's entry points (the samplers, the figures, the model's
own methods, the schedules): each refuses a bad argument with a latentkit error in one line
that names it, before any work. Built on :mod:`latentkit.arguments`; run once per call, never
per timestep."""

from __future__ import annotations

import inspect
import os
from typing import Any

import torch

import latentkit as lk
from latentkit.arguments import (
    check_count,
    check_flag,
    check_model,
    check_number,
    check_seed,
    describe_value,
)
from latentkit.conditions import bind
from latentkit.ode import ODE_FLAG_MARGIN, check_margin, check_solver, ode_log_prob
from latentkit.validation import check_data, check_dataset

__all__ = [
    "GAMMA_BOUND",
    "check_bound_call",
    "check_breakdown",
    "check_figures_call",
    "check_figures_condition",
    "check_gamma_ends",
    "check_generator",
    "check_likelihood_figures",
    "check_ode_examples",
    "check_ode_options",
    "vdm_core",
]

GAMMA_BOUND = 50.0
"""|γ| ≤ 50 for a schedule's ends (``VDMConfig``'s rule): sigmoid(±50) is within float32's
round-off of 0 and 1, so a wider end adds nothing but zeros and ones."""

_NOT_OPTIONS = ("model", "x", "generator", "validate", "dequantize", "bin_width")
""":func:`latentkit.ode_log_prob`'s parameters that the figures set themselves."""


def vdm_core(model: Any, where: str) -> Any:
    """``model``'s continuous-time diffusion (``model.generative.core``), else an InputError
    naming ``where``: a ``vdm`` model is wanted."""
    from latentkit_vdm.continuous import ContinuousDiffusion

    check_model(model, where)
    core = getattr(model.generative, "core", None)
    if not isinstance(core, ContinuousDiffusion):
        raise lk.InputError(
            f"{where}: model must be a vdm model (a continuous-time diffusion), "
            f"got {type(model.generative).__name__} as its generative chain"
        )
    return core


def check_generator(generator: Any, where: str, device: torch.device | None = None) -> None:
    """``None`` or a ``torch.Generator`` (on ``device``, the model's, where given), else an
    InputError (a DeviceError for one of another device)."""
    if generator is not None and not isinstance(generator, torch.Generator):
        raise lk.InputError(
            f"{where}: generator must be a torch.Generator or None, got {describe_value(generator)}"
        )
    if generator is not None and device is not None and generator.device != device:
        raise lk.DeviceError(
            f"{where}: generator is on {generator.device}, the model on {device}; give a "
            "torch.Generator of the model's device"
        )


def check_gamma_ends(gamma_min: Any, gamma_max: Any, where: str) -> tuple[float, float]:
    """γ_min < γ_max, both finite numbers in [−:data:`GAMMA_BOUND`, :data:`GAMMA_BOUND`], else
    a ConfigError naming the end (γ = −log SNR increases with t)."""
    low = check_number(
        gamma_min, f"{where}: gamma_min", low=-GAMMA_BOUND, high=GAMMA_BOUND, error=lk.ConfigError
    )
    high = check_number(
        gamma_max, f"{where}: gamma_max", low=-GAMMA_BOUND, high=GAMMA_BOUND, error=lk.ConfigError
    )
    if not high > low:
        raise lk.ConfigError(
            f"{where}: gamma_max must exceed gamma_min (γ = −log SNR increases with t); "
            f"got gamma_min={gamma_min!r}, gamma_max={gamma_max!r}"
        )
    return low, high


def check_ode_options(options: dict[str, Any], dtype: torch.dtype, where: str) -> None:
    """Options for :func:`latentkit.ode_log_prob`: known names, and the solver's settings
    (:func:`latentkit.ode.check_solver`), checked before the figures start their work."""
    params = inspect.signature(ode_log_prob).parameters
    known = [p for p in params if p not in _NOT_OPTIONS]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise lk.ConfigError(f"{where}: unknown ODE option(s) {unknown}; known: {known}")
    solver = {k: options.get(k, params[k].default) for k in ("method", "rtol", "atol", "options")}
    check_solver(solver["method"], solver["rtol"], solver["atol"], solver["options"], dtype)


def check_figures_call(model: Any, data: Any, where: str, *, seed: Any, **counts: Any) -> Any:
    """The figures' common arguments: a ``vdm`` model, a data set of it (any float dtype and
    device, every example finite and in the decoder's support), a seed and counts ≥ 1;
    returns the model's continuous-time diffusion."""
    core = vdm_core(model, where)
    check_dataset(model, data, name=f"{where}: data")
    check_seed(seed, f"{where}: seed")
    for name, value in counts.items():
        check_count(value, f"{where}: {name}")
    return core


def check_figures_condition(model: Any, condition: Any, n: int, where: str) -> torch.Tensor | None:
    """The conditions of the figures' ``n`` examples, on the model's device: ``None`` for an
    unconditional model (which refuses them), else checked as every bound checks them
    (:func:`latentkit.conditions.bind`: one per example, and a conditional model needs
    them); errors name ``where``. A view given a condition already (``model.given(c)``) is
    refused: the figures slice the conditions batch by batch, so they take the model and
    ``condition=``."""
    if model.condition is not None:
        raise lk.InputError(
            f"{where}: give the model itself and condition=, not a view given a condition"
        )
    if isinstance(condition, torch.Tensor):  # on any device, as the data may be
        condition = condition.to(model.reference().device)
    try:
        return bind(model, condition, n).condition
    except lk.LatentkitError as exc:
        raise type(exc)(f"{where}: {exc}") from None


def check_likelihood_figures(
    model: Any, data: Any, condition: Any, *, seed: Any, discrete: Any, ode_examples: Any,
    ode_margin: Any, ode_options: dict[str, Any], **counts: Any,
) -> tuple[torch.Tensor | None, float]:  # fmt: skip
    """:func:`~latentkit_vdm.figures.likelihood_figures`' arguments, before any work; returns
    the examples' conditions (:func:`check_figures_condition`) and the flagging margin."""
    where = "likelihood_figures"
    core = check_figures_call(model, data, where, seed=seed, **counts)
    if discrete is not None:
        check_flag(discrete, f"{where}: discrete")
    check_ode_options(ode_options, core._ref.dtype, where)
    check_ode_examples(ode_examples)
    margin = ODE_FLAG_MARGIN if ode_margin is None else check_margin(ode_margin)
    return check_figures_condition(model, condition, data.shape[0], where), margin


def check_ode_examples(ode_examples: Any) -> None:
    """``None`` (all) or an int ≥ 0 (0: no ODE figure), else a ConfigError."""
    if ode_examples is not None and (
        isinstance(ode_examples, bool) or not isinstance(ode_examples, int) or ode_examples < 0
    ):
        raise lk.ConfigError(
            f"ode_examples must be an int ≥ 0 (0: no ODE figure; None: all), got {ode_examples!r}"
        )


def check_bound_call(model: Any, x: Any, generator: Any, options: dict, where: str) -> None:
    """A ``vdm`` model, a batch ``x`` of it (:func:`latentkit.validation.check_data`), a
    generator or None and :func:`latentkit.ode_log_prob`'s options."""
    core = vdm_core(model, where)
    check_data(model, x, name=f"{where}: x")
    check_generator(generator, where, core._ref.device)
    check_ode_options(options, core._ref.dtype, where)


_BREAKDOWN = ("t", "integrand", "eps_mse")


def check_breakdown(breakdown: Any, path: Any, title: Any) -> None:
    """:func:`~latentkit_vdm.figures.per_t_plot`'s arguments: ``per_t_breakdown``'s dict
    (lists ``t``, ``integrand``, ``eps_mse`` of one length ≥ 1), a path, a title or None."""
    where = "per_t_plot"
    lists = isinstance(breakdown, dict) and all(
        isinstance(breakdown.get(k), (list, tuple)) for k in _BREAKDOWN
    )
    if not lists or len({len(breakdown[k]) for k in _BREAKDOWN}) != 1 or not breakdown["t"]:
        raise lk.InputError(
            f"{where}: breakdown must be per_t_breakdown's dict (lists {list(_BREAKDOWN)} of "
            f"one length ≥ 1), got {describe_value(breakdown)}"
        )
    if not isinstance(path, (str, os.PathLike)):
        raise lk.InputError(f"{where}: path must be a str or a path, got {describe_value(path)}")
    if title is not None and not isinstance(title, str):
        raise lk.InputError(f"{where}: title must be a str or None, got {describe_value(title)}")
