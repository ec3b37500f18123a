"""log p(x) by the probability-flow ODE, per example (:func:`ode_log_prob`): the drift and its
divergence integrated together from the data end to the prior (the package docstring gives
the contract, the divergence estimators and the dequantized bound)."""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from latentkit.arguments import check_choice, check_count, check_flag, check_number
from latentkit.chains import LatentModel
from latentkit.errors import ConfigError, DeviceError, InputError
from latentkit.ode.solver import check_solver, solve
from latentkit.validation import check_data

__all__ = ["EIGHT_BIT_WIDTH", "OdeLogProb", "ode_log_prob", "probability_flow_contract"]

EIGHT_BIT_WIDTH = 2.0 / 255.0
"""Bin width of 8-bit data mapped to [−1, 1] as 2k/255 − 1."""


class OdeLogProb(NamedTuple):
    """What :func:`ode_log_prob` computed, per example (``[batch]``, nats unless noted).

    ``log_density``: log p(y) at the evaluated point (x, or its dequantized y).
    ``log_prob_bound``: D log w + log p(y), a lower bound on log P(x) in expectation
    (``None`` without dequantization). ``bits_per_dim``: −log_prob_bound / (D ln 2)
    (``None`` without dequantization). ``prior_log_prob``: log p_prior(z(t_end)).
    ``nfe``: drift evaluations the solver made. ``divergence``: ``exact`` or ``hutchinson``.
    """

    log_density: Tensor
    log_prob_bound: Tensor | None
    bits_per_dim: Tensor | None
    prior_log_prob: Tensor
    z_end: Tensor
    nfe: int
    divergence: str


def probability_flow_contract(model: LatentModel) -> str | None:
    """``None`` if the model offers the probability-flow contract, else what it lacks."""
    p = getattr(model, "generative", None)  # the contract is duck-typed: no LatentModel needed
    if p is None:
        raise InputError(
            f"probability_flow_contract: model must be a latentkit.LatentModel (or have a "
            f"generative chain), got {type(model).__name__}"
        )
    missing = [a for a in ("probability_flow", "ode_time_span") if not hasattr(p, a)]
    if missing:
        return (
            f"{type(p).__name__} does not define {' and '.join(missing)}: the probability-flow "
            "ODE likelihood needs a generative chain with probability_flow(t, z) and "
            "ode_time_span (see latentkit.ode)"
        )
    return None


def _time_span(model: LatentModel) -> tuple[float, float]:
    """The chain's ``ode_time_span`` as (t_start, t_end), finite and increasing."""
    span = model.generative.ode_time_span
    try:
        t_start, t_end = (float(t) for t in span)
    except (TypeError, ValueError):
        raise InputError(
            f"ode_time_span must be two numbers (t_start, t_end), got {span!r}"
        ) from None
    if not (math.isfinite(t_start) and math.isfinite(t_end) and t_start < t_end):
        raise InputError(
            f"ode_time_span must be finite with t_start < t_end (the data end first), got {span!r}"
        )
    return t_start, t_end


def _probes(z: Tensor, kind: str, k: int, generator: torch.Generator | None) -> Tensor:
    """``k`` Hutchinson probes shaped like ``z``: Rademacher ±1 or standard Gaussian."""
    shape = (k, *z.shape)
    if kind == "gaussian":
        return torch.randn(shape, dtype=z.dtype, device=z.device, generator=generator)
    bits = torch.randint(0, 2, shape, device=z.device, generator=generator)
    return (2 * bits - 1).to(z.dtype)


def _check_arguments(
    model: LatentModel,
    x: Tensor,
    *,
    divergence: str,
    probe: str,
    num_probes: int,
    exact_max_dims: int,
    dequantize: bool,
    bin_width: float | None,
    generator: torch.Generator | None,
    validate: bool,
    method: str,
    rtol: float,
    atol: float,
    options: dict | None,
) -> None:
    """Refuse a model without the contract and every unusable option, before any work."""
    reason = probability_flow_contract(model)
    if reason is not None:
        raise InputError(f"ode_log_prob: {reason}")
    check_choice(divergence, "divergence", ("auto", "exact", "hutchinson"), error=ConfigError)
    check_choice(probe, "probe", ("rademacher", "gaussian"), error=ConfigError)
    check_count(num_probes, "num_probes", error=ConfigError)
    check_count(exact_max_dims, "exact_max_dims", low=0, error=ConfigError)
    check_flag(dequantize, "dequantize", error=ConfigError)
    check_flag(validate, "validate", error=ConfigError)
    if bin_width is not None:
        if not dequantize:
            raise ConfigError(
                f"bin_width={bin_width!r} is the discrete data's bin width, read only with "
                "dequantize=True (the continuous density log p(x) has none)"
            )
        check_number(bin_width, "bin_width", above=0.0, error=ConfigError)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ConfigError(f"generator must be a torch.Generator or None, got {generator!r}")
    if generator is not None and generator.device != model.reference().device:
        raise DeviceError(
            f"ode_log_prob: generator is on {generator.device}, the model on "
            f"{model.reference().device}; give a torch.Generator of the model's device"
        )
    dtype = x.dtype if isinstance(x, Tensor) and x.is_floating_point() else model.reference().dtype
    check_solver(method, rtol, atol, options, dtype)


_FIGURE_OPTIONS = ("divergence", "probe", "num_probes", "exact_max_dims", "rtol", "atol",
                   "method", "options", "validate")  # fmt: skip


def check_ode_options(model: LatentModel, **options: object) -> None:
    """Refuse, before any solve, the options of :func:`ode_log_prob` that it would refuse
    (and any other name), in the model's dtype: what a caller that solves batch by batch
    checks first (``ode_figure``)."""
    unknown = sorted(set(options) - set(_FIGURE_OPTIONS))
    if unknown:
        raise ConfigError(f"unknown ODE option(s) {unknown}; known: {', '.join(_FIGURE_OPTIONS)}")
    params = inspect.signature(ode_log_prob).parameters
    settings = {k: p.default for k, p in params.items() if p.kind is p.KEYWORD_ONLY}
    settings.update(options)
    del settings["dequantize"], settings["bin_width"]  # set by the caller, not by options
    _check_arguments(model, None, dequantize=False, bin_width=None, **settings)


def _exact_divergence(f: Tensor, z: Tensor, *, n: int, D: int) -> Tensor:
    """Σ_i ∂f_i/∂z_i per example, by D vector-Jacobian products, ``[n]``."""
    flat_f = f.reshape(n, D)
    total = f.new_zeros(n)
    for i in range(D):
        (grad,) = torch.autograd.grad(flat_f[:, i].sum(), z, retain_graph=i < D - 1)
        total = total + grad.reshape(n, D)[:, i]
    return total


def _hutchinson_divergence(f: Tensor, z: Tensor, *, probes: Tensor, n: int, D: int) -> Tensor:
    """vᵀ (∂f/∂z) v averaged over the probes v (``probes[j]``, shaped like z), ``[n]``."""
    num_probes = probes.shape[0]
    total = f.new_zeros(n)
    for j in range(num_probes):
        v = probes[j]
        (vjp,) = torch.autograd.grad(f, z, v, retain_graph=j < num_probes - 1)
        total = total + (vjp * v).reshape(n, D).sum(-1)
    return total / num_probes


def _divergence(
    kind: str, y: Tensor, D: int, *, probe: str, num_probes: int, generator
) -> Callable[[Tensor, Tensor], Tensor]:
    """∇·f(f, z) by ``kind``: exact, or Hutchinson with probes drawn here (after the
    dequantization noise, from the same ``generator``) and fixed along the path."""
    n = y.shape[0]
    if kind == "hutchinson":
        probes = _probes(y, probe, num_probes, generator)
        return functools.partial(_hutchinson_divergence, probes=probes, n=n, D=D)
    return functools.partial(_exact_divergence, n=n, D=D)


class _Augmented:
    """d/dt (z, ∫∇·f) = (f(t, z), ∇·f(t, z)): the state the solver carries, with the count
    of drift evaluations (``calls``)."""

    def __init__(self, chain, divergence: Callable[[Tensor, Tensor], Tensor]):
        self.chain, self.divergence, self.calls = chain, divergence, 0

    def __call__(self, t: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        """The drift and its divergence at (t, z), detached from the graph that gave them."""
        self.calls += 1
        z = state[0]
        with torch.enable_grad():
            z = z.detach().requires_grad_(True)
            f = self.chain.probability_flow(t, z)
            div = self.divergence(f, z)
        return f.detach(), div.detach()


def _integrate(
    model: LatentModel, dynamics: _Augmented, y: Tensor, span: tuple[float, float], **solver
) -> tuple[Tensor, Tensor, Tensor]:
    """(z(t_end), ∫∇·f dt, log p_prior(z(t_end))) from z(t_start) = y, in ``eval()`` mode
    and without a graph; the model's training mode is restored after."""
    n = y.shape[0]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            z_end, integral = solve(dynamics, (y, y.new_zeros(n)), *span, **solver)
            prior = model.generative.prior(n).log_prob(z_end)
    finally:
        model.train(was_training)
    return z_end, integral, prior


def ode_log_prob(
    model: LatentModel,
    x: Tensor,
    *,
    divergence: str = "auto",
    probe: str = "rademacher",
    num_probes: int = 1,
    exact_max_dims: int = 32,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    method: str = "dopri5",
    options: dict | None = None,
    dequantize: bool = False,
    bin_width: float | None = None,
    generator: torch.Generator | None = None,
    validate: bool = True,
) -> OdeLogProb:
    """log p(x) of the density the model's probability-flow ODE defines, per example.

    Args:
        model: a model offering the probability-flow contract (module docstring).
        x: ``[batch, *model.data_shape]``, the model's dtype and device.
        divergence: ``exact``, ``hutchinson`` or ``auto`` (exact for D ≤ ``exact_max_dims``).
        probe: Hutchinson probes: ``rademacher`` or ``gaussian``.
        num_probes: probes per example (the variance falls as 1/num_probes).
        exact_max_dims: the largest D for which ``auto`` chooses the exact divergence.
        rtol, atol, method, options: passed to ``torchdiffeq.odeint`` (:func:`solve`; checked
            first by :func:`check_solver`).
        dequantize: add uniform noise within each 8-bit bin and report the discrete bound.
        bin_width: the bin width w of the discrete data, with ``dequantize`` only (None: 2/255,
            8-bit data in [−1, 1]); given without ``dequantize``, a ConfigError.
        generator: random stream for the probes and the dequantization noise.
        validate: check ``x`` (shape, dtype, device, finiteness) first.
    """
    solver = {"rtol": rtol, "atol": atol, "method": method, "options": options}
    _check_arguments(
        model, x, divergence=divergence, probe=probe, num_probes=num_probes,
        exact_max_dims=exact_max_dims, dequantize=dequantize, bin_width=bin_width,
        generator=generator, validate=validate, **solver,
    )  # fmt: skip
    span = _time_span(model)
    if validate:
        check_data(model, x)
    D = math.prod(model.data_shape)
    kind = (
        divergence if divergence != "auto" else ("exact" if D <= exact_max_dims else "hutchinson")
    )
    y = x
    if dequantize:
        bin_width = EIGHT_BIT_WIDTH if bin_width is None else bin_width
        u = torch.rand(x.shape, dtype=x.dtype, device=x.device, generator=generator)
        y = x + bin_width * (u - 0.5)
    div = _divergence(kind, y, D, probe=probe, num_probes=num_probes, generator=generator)
    dynamics = _Augmented(model.generative, div)
    z_end, integral, prior = _integrate(model, dynamics, y, span, **solver)
    log_density = prior + integral
    bound = bpd = None
    if dequantize:
        bound = log_density + D * math.log(bin_width)
        bpd = -bound / (D * math.log(2.0))
    return OdeLogProb(log_density, bound, bpd, prior, z_end, dynamics.calls, kind)
