"""The ODE solver behind :mod:`latentkit.ode`: ``torchdiffeq.odeint`` with its settings checked,
the drift kept inside its time span and adaptive steps landing on the end time (the
package docstring says why)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from latentkit.arguments import check_count, check_number
from latentkit.errors import ConfigError, InputError

__all__ = [
    "ADAPTIVE",
    "FIXED_GRID",
    "MAX_FIXED_STEPS",
    "METHODS",
    "OPTIONS",
    "check_solver",
    "solve",
    "solver_options",
    "within_span",
]


def _torchdiffeq_odeint():
    """``torchdiffeq.odeint``, or an ImportError naming the extra that installs it."""
    try:
        from torchdiffeq import odeint
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the probability-flow ODE needs torchdiffeq: install the optional extra "
            "'latentkit[ode]' (pip install torchdiffeq)"
        ) from None
    return odeint


ADAPTIVE = ("dopri8", "dopri5", "bosh3", "fehlberg2", "adaptive_heun")
"""torchdiffeq's adaptive Runge–Kutta methods (they accept ``step_t``)."""
FIXED_GRID = (
    "euler",
    "midpoint",
    "heun2",
    "heun3",
    "rk4",
    "explicit_adams",
    "implicit_adams",
    "fixed_adams",
)
"""torchdiffeq's fixed-grid methods (``options={"step_size": h}``; one step without it)."""
METHODS = (*ADAPTIVE, *FIXED_GRID, "scipy_solver")
"""Every ``method`` torchdiffeq's ``odeint`` takes (``scipy_solver`` needs SciPy)."""

_STEPS = ("min_step", "max_step")
OPTIONS = {
    **dict.fromkeys(ADAPTIVE, ("first_step", "step_t", "jump_t", "safety", "ifactor",
                               "dfactor", "max_num_steps", "norm", "dtype", *_STEPS)),
    **dict.fromkeys(FIXED_GRID, ("step_size", "grid_constructor", "interp", "perturb")),
    **dict.fromkeys(("explicit_adams", "implicit_adams", "fixed_adams"), (
        "step_size", "grid_constructor", "interp", "perturb", "max_iters", "max_order")),
    "scipy_solver": ("solver", *_STEPS),
}  # fmt: skip
"""The ``options`` each method's solver reads (torchdiffeq 0.2: its solvers' keyword
arguments); torchdiffeq itself only warns of another name, and ignores it."""

MAX_FIXED_STEPS = 10**6
"""The most steps a fixed-grid method may take (``step_size`` ≥ the time span / 10⁶)."""

_POSITIVE = ("step_size", "first_step", "max_step", "safety", "ifactor", "dfactor")
_COUNTS = ("max_num_steps", "max_iters", "max_order")


def check_solver(
    method: str, rtol: float, atol: float, options: dict | None, dtype: torch.dtype
) -> None:
    """Refuse solver settings that cannot work, one :class:`~latentkit.errors.ConfigError` each.

    ``method`` one of :data:`METHODS`; ``rtol`` and ``atol`` finite numbers ≥ ε, the machine
    epsilon of the state's ``dtype`` (1.2e-7 for float32, 2.2e-16 for float64); ``options``
    a dict or None. Why ε: the controller compares its local error estimate with
    atol + rtol·|y|, and the estimate, a weighted sum of the stage increments formed in
    ``dtype``, carries rounding of about ε times the step's increment. The states integrated
    here are O(1) (data in [−1, 1], an N(0, I) prior), so a tolerance below ε asks for an
    error below that rounding: the controller can only shrink the step, by about ε/tol, and
    the result is no more accurate (float32 at rtol = atol = 1e-14 on a 60-dimensional toy
    ran for minutes where ε took 50 evaluations; 0.1 ε gave no smaller error than ε).
    """
    if not isinstance(method, str) or method not in METHODS:
        raise ConfigError(f"method must be one of {list(METHODS)}, got {method!r}")
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise ConfigError(f"dtype must be a floating-point torch.dtype, got {dtype!r}")
    eps = torch.finfo(dtype).eps
    for name, value in (("rtol", rtol), ("atol", atol)):
        check_number(value, name, above=0.0, high=1.0, error=ConfigError)
        if value < eps:
            raise ConfigError(
                f"{name} = {value:g} is below {dtype}'s machine epsilon {eps:.3g}: the solver's "
                f"error estimate is rounded at that scale and cannot meet it; use ≥ {eps:.3g}"
            )
    if options is None:
        return
    if not isinstance(options, dict):
        raise ConfigError(
            f"options must be a dict of torchdiffeq solver options (or None), got "
            f"{type(options).__name__}"
        )
    _check_options(method, options)


def _check_options(method: str, options: dict) -> None:
    """Each option a name ``method``'s solver reads, and the numeric ones in range."""
    unknown = sorted(map(str, set(options) - set(OPTIONS[method])))
    if unknown:
        raise ConfigError(
            f"options {unknown} are not read by method {method!r} (it reads "
            f"{', '.join(OPTIONS[method])}); torchdiffeq would ignore them"
        )
    for name, value in options.items():
        if name in _POSITIVE and value is not None:
            check_number(value, f"options[{name!r}]", above=0.0, error=ConfigError)
        elif name == "min_step":
            check_number(value, "options['min_step']", low=0.0, error=ConfigError)
        elif name in _COUNTS:
            check_count(value, f"options[{name!r}]", error=ConfigError)


def _span(where: str, t_a: Any, t_b: Any) -> tuple[float, float]:
    """Two distinct finite times, as floats, else an InputError."""
    for name, value in (("t_from", t_a), ("t_to", t_b)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InputError(f"{where}: {name} must be a number, got {value!r}")
    if not (math.isfinite(t_a) and math.isfinite(t_b) and t_a != t_b):
        raise InputError(f"{where}: needs two distinct finite times, got {t_a!r} and {t_b!r}")
    return float(t_a), float(t_b)


def _first_state(func: Any, y0: Any) -> Tensor:
    """The first tensor of ``y0`` (a floating-point tensor or a non-empty tuple of them),
    with ``func`` callable; else an InputError."""
    if not callable(func):
        raise InputError(f"solve: func must be callable f(t, y), got {type(func).__name__}")
    parts = (y0,) if isinstance(y0, Tensor) else y0
    if not (
        isinstance(parts, tuple)
        and parts
        and all(isinstance(p, Tensor) and p.is_floating_point() for p in parts)
    ):
        raise InputError(
            f"solve: y0 must be a floating-point tensor or a non-empty tuple of them, got "
            f"{type(y0).__name__}"
        )
    return parts[0]


def within_span(func: Callable[[Tensor, Any], Any], t_a: float, t_b: float) -> Callable:
    """``func(t, state)`` evaluated at t clamped into [min(t_a, t_b), max(t_a, t_b)].

    Wrap an ODE's right-hand side with it so that the solver's first-step probe, or a grid
    point rounded past an end, never reaches a time where the model is undefined (module
    docstring: only step-size heuristics ask there, so the clamp changes no integrated
    interval). Either direction of time: torchdiffeq calls the wrapped function with the
    caller's own t.
    """
    if not callable(func):
        raise InputError(f"within_span: func must be callable f(t, y), got {type(func).__name__}")
    t_a, t_b = _span("within_span", t_a, t_b)
    lo, hi = min(t_a, t_b), max(t_a, t_b)

    def guarded(t: Tensor, state: Any) -> Any:
        return func(t.clamp(lo, hi), state)

    return guarded


def solver_options(method: str, times: Tensor, options: dict | None) -> dict | None:
    """``options`` for ``odeint``, with the end time ``times[-1]`` added to ``step_t`` for
    adaptive methods unless it is already a ``step_t`` or ``jump_t``: torchdiffeq otherwise
    steps past the end and interpolates back."""
    if not isinstance(times, Tensor) or times.ndim != 1 or times.numel() < 2:
        raise InputError(
            f"solver_options: times must be a 1-d tensor of at least 2 times, got "
            f"{getattr(times, 'shape', type(times).__name__)}"
        )
    if options is not None and not isinstance(options, dict):
        raise ConfigError(f"options must be a dict or None, got {type(options).__name__}")
    if method not in ADAPTIVE:
        return options
    out = dict(options or {})
    end = times[-1:]
    marks = [
        torch.as_tensor(out[k], dtype=times.dtype, device=times.device).reshape(-1)
        for k in ("step_t", "jump_t")
        if out.get(k) is not None
    ]
    if not any(bool((m == end).any()) for m in marks):
        given = out.get("step_t")
        out["step_t"] = (
            end
            if given is None
            else torch.cat([torch.as_tensor(given, dtype=times.dtype).reshape(-1), end])
        )
    return out


def solve(
    func: Callable[[Tensor, Any], Any],
    y0: Tensor | tuple[Tensor, ...],
    t_from: float,
    t_to: float,
    *,
    method: str = "dopri5",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    options: dict | None = None,
) -> Tensor | tuple[Tensor, ...]:
    """y(t_to) for dy/dt = func(t, y), y(t_from) = y0, by ``torchdiffeq.odeint``.

    ``y0`` a tensor or a tuple of tensors (the result has the same structure); ``t_to`` may be
    below ``t_from`` (time running backwards). ``func`` is only ever called with t in the
    span (:func:`within_span`; adaptive methods step onto ``t_to``, :func:`solver_options`),
    and the settings are checked first (:func:`check_solver`, with the dtype of ``y0``; a
    fixed grid of at most :data:`MAX_FIXED_STEPS` steps).
    """
    first = _first_state(func, y0)
    check_solver(method, rtol, atol, options, first.dtype)
    t_from, t_to = _span("solve", t_from, t_to)
    step = (options or {}).get("step_size")
    if step is not None and abs(t_to - t_from) / step > MAX_FIXED_STEPS:
        raise ConfigError(
            f"options['step_size'] = {step:g} takes more than {MAX_FIXED_STEPS:,} steps over "
            f"[{min(t_from, t_to):g}, {max(t_from, t_to):g}]; use ≥ "
            f"{abs(t_to - t_from) / MAX_FIXED_STEPS:.3g}"
        )
    odeint = _torchdiffeq_odeint()
    times = torch.tensor([float(t_from), float(t_to)], dtype=first.dtype, device=first.device)
    path = odeint(
        within_span(func, float(t_from), float(t_to)),
        y0,
        times,
        rtol=rtol,
        atol=atol,
        method=method,
        options=solver_options(method, times, options),
    )
    return path[-1] if isinstance(y0, Tensor) else tuple(p[-1] for p in path)
