"""Exact log-likelihood by the probability-flow ODE (instantaneous change of variables).

A model whose generative chain defines a density by an ODE dz/dt = f(t, z) that carries its
prior p(z at t_end) to the data end t_start offers this small contract:

* ``model.generative.probability_flow(t, z) -> Tensor``: f(t, z), with ``t`` a 0-d tensor and
  ``z`` ``[batch, *data_shape]`` (the same shape out). Each example's drift depends on that
  example alone (no batch statistics: the model is evaluated in ``eval()`` mode).
* ``model.generative.ode_time_span``: ``(t_start, t_end)``, the data end first
  (``(0.0, 1.0)`` for the ``vdm`` plugin's diffusion, t_start < t_end).
* ``model.generative.prior(n)``: the distribution of z at t_end (``batch_shape == [n]``).

Then, for z(t_start) = x (Chen et al. 2018; Song et al. 2021, appendix D.2),

    log p(x) = log p_prior(z(t_end)) + ∫_{t_start}^{t_end} ∇·f(t, z(t)) dt,

solved forward from x as one ODE on (z, ∫∇·f) by :func:`solve` (``torchdiffeq.odeint``,
its adaptive ``dopri5`` by default; ``rtol``/``atol`` are passed through). The drift is only
ever evaluated at t in [t_start, t_end], for every method and either direction of time:

* :func:`within_span` clamps the t handed to the drift into the span. torchdiffeq asks for
  t outside it in two places: the adaptive methods' first-step heuristic (Hairer, Nørsett &
  Wanner, §II.4) evaluates f(t0 + h0, y0 + h0 f0) with h0 = 0.01 ‖y0‖/‖f0‖ in the error
  norm, which exceeds the span whenever the drift is small beside the state (h0 ≈ 50 for an
  untrained ``vdm`` at t = 0; a cosine schedule's γ is NaN past the ends); and a fixed
  grid's points k·step_size, which may round an ulp past the end. The probe only sizes the
  first trial step, which the controller then accepts or shrinks on its own error estimate:
  probing at the nearest time of the span gives another first step, hence a result that
  differs within the tolerance, and never integrates anything outside the span; the ulp is
  below the solver's error;
* adaptive methods are told to step exactly onto the end time (``step_t``, added to any
  the caller gives), so no accepted step straddles it: without it the last step overshoots
  and the end value is interpolated from a polynomial fitted on both sides.

Solver settings are checked before any work (:func:`check_solver`): a method torchdiffeq
has, ``rtol`` and ``atol`` finite and at least the state dtype's machine epsilon (below it
the controller asks for an error smaller than the rounding of the state it controls), and
``options`` a dict. The divergence is

* ``exact``: Σ_i ∂f_i/∂z_i by D vector-Jacobian products per evaluation (small D);
* ``hutchinson``: vᵀ (∂f/∂z) v with one probe v per example, fixed along the path
  (Grathwohl et al. 2019), averaged over ``num_probes`` probes. The estimate of log p(x) is
  unbiased; with J = ∫ ∂f/∂z dt along the path and S = (J + Jᵀ)/2, its variance is
  2‖S‖_F² / num_probes for Gaussian probes and 2(‖S‖_F² − Σ_i S_ii²) / num_probes for
  Rademacher ones (zero when J is diagonal);
* ``auto``: exact for D ≤ ``exact_max_dims``, else Hutchinson.

Discrete data (``dequantize=True``): 8-bit values x on the grid of width w = 2/255 in [−1, 1]
are dequantized, y = x + w (u − ½) with u ~ U[0, 1]^D, and by Jensen's inequality

    log P(x) = log ∫_bin p(y) dy ≥ D log w + E_u[log p(y)],

so ``log_prob_bound`` = D log w + log p(y) (one u per example) is an unbiased estimate of a
lower bound on the discrete log-likelihood, and ``bits_per_dim`` = −log_prob_bound/(D ln 2)
an upper bound in expectation (Ho et al. 2019's uniform dequantization).

Over a data set, :func:`ode_figure` computes the figure per example and compares each with
its own ELBO-based upper bound from the same evaluation (:class:`OdeFigure`): an example
whose ODE figure exceeds its bound by more than ``margin`` bits/dim (:data:`ODE_FLAG_MARGIN`
= 1), or is not finite, is flagged — listed with its index, both figures and its solve's
NFE — and the mean and median are reported with and without the flagged examples.

``torchdiffeq`` is an optional dependency: ``pip install 'latentkit[ode]'`` (or install the
``vdm`` plugin, which depends on it).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import attrs
import torch
from torch import Tensor
from torch.distributions import Bernoulli

from latentkit.chains import LatentModel
from latentkit.errors import ConfigError, InputError, ShapeError
from latentkit.evaluation import Estimate
from latentkit.validation import check_data, likelihood_family

__all__ = [
    "METHODS",
    "ODE_FLAG_MARGIN",
    "PRIOR_ATYPICAL_SDS",
    "FlaggedExample",
    "OdeFigure",
    "OdeLogProb",
    "check_margin",
    "check_solver",
    "ode_data_end",
    "ode_figure",
    "ode_log_prob",
    "prior_typical",
    "probability_flow_contract",
    "solve",
    "solver_options",
    "within_span",
]

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


def _torchdiffeq_odeint():
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
    eps = torch.finfo(dtype).eps
    for name, value in (("rtol", rtol), ("atol", atol)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{name} must be a number, got {value!r}")
        if not (math.isfinite(value) and value > 0):
            raise ConfigError(f"{name} must be a finite number > 0, got {value!r}")
        if value < eps:
            raise ConfigError(
                f"{name} = {value:g} is below {dtype}'s machine epsilon {eps:.3g}: the solver's "
                f"error estimate is rounded at that scale and cannot meet it; use ≥ {eps:.3g}"
            )
    if options is not None and not isinstance(options, dict):
        raise ConfigError(
            f"options must be a dict of torchdiffeq solver options (or None), got "
            f"{type(options).__name__}"
        )


def within_span(func: Callable[[Tensor, Any], Any], t_a: float, t_b: float) -> Callable:
    """``func(t, state)`` evaluated at t clamped into [min(t_a, t_b), max(t_a, t_b)].

    Wrap an ODE's right-hand side with it so that the solver's first-step probe, or a grid
    point rounded past an end, never reaches a time where the model is undefined (module
    docstring: only step-size heuristics ask there, so the clamp changes no integrated
    interval). Either direction of time: torchdiffeq calls the wrapped function with the
    caller's own t.
    """
    lo, hi = min(t_a, t_b), max(t_a, t_b)

    def guarded(t: Tensor, state: Any) -> Any:
        return func(t.clamp(lo, hi), state)

    return guarded


def solver_options(method: str, times: Tensor, options: dict | None) -> dict | None:
    """``options`` for ``odeint``, with the end time ``times[-1]`` added to ``step_t`` for
    adaptive methods unless it is already a ``step_t`` or ``jump_t``: torchdiffeq otherwise
    steps past the end and interpolates back."""
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
    and the settings are checked first (:func:`check_solver`, with the dtype of ``y0``).
    """
    first = y0 if isinstance(y0, Tensor) else y0[0]
    check_solver(method, rtol, atol, options, first.dtype)
    for name, value in (("t_from", t_from), ("t_to", t_to)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InputError(f"solve: {name} must be a number, got {value!r}")
    if not (math.isfinite(t_from) and math.isfinite(t_to) and t_from != t_to):
        raise InputError(f"solve: needs two distinct finite times, got {t_from!r} and {t_to!r}")
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


def probability_flow_contract(model: LatentModel) -> str | None:
    """``None`` if the model offers the probability-flow contract, else what it lacks."""
    p = model.generative
    missing = [a for a in ("probability_flow", "ode_time_span") if not hasattr(p, a)]
    if missing:
        return (
            f"{type(p).__name__} does not define {' and '.join(missing)}: the probability-flow "
            "ODE likelihood needs a generative chain with probability_flow(t, z) and "
            "ode_time_span (see latentkit.ode)"
        )
    return None


def _time_span(model: LatentModel) -> tuple[float, float]:
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
    shape = (k, *z.shape)
    if kind == "gaussian":
        return torch.randn(shape, dtype=z.dtype, device=z.device, generator=generator)
    bits = torch.randint(0, 2, shape, device=z.device, generator=generator)
    return (2 * bits - 1).to(z.dtype)


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
    bin_width: float = EIGHT_BIT_WIDTH,
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
        bin_width: the bin width w of the discrete data (2/255 for 8-bit data in [−1, 1]).
        generator: random stream for the probes and the dequantization noise.
        validate: check ``x`` (shape, dtype, device, finiteness) first.
    """
    reason = probability_flow_contract(model)
    if reason is not None:
        raise InputError(f"ode_log_prob: {reason}")
    if divergence not in ("auto", "exact", "hutchinson"):
        raise ConfigError(f"divergence must be 'auto', 'exact' or 'hutchinson', got {divergence!r}")
    if probe not in ("rademacher", "gaussian"):
        raise ConfigError(f"probe must be 'rademacher' or 'gaussian', got {probe!r}")
    if isinstance(num_probes, bool) or not isinstance(num_probes, int) or num_probes < 1:
        raise ConfigError(f"num_probes must be an int ≥ 1, got {num_probes!r}")
    if isinstance(bin_width, bool) or not (
        isinstance(bin_width, (int, float)) and math.isfinite(bin_width) and bin_width > 0
    ):
        raise ConfigError(f"bin_width must be a finite number > 0, got {bin_width!r}")
    dtype = x.dtype if isinstance(x, Tensor) and x.is_floating_point() else model.reference().dtype
    check_solver(method, rtol, atol, options, dtype)
    t_start, t_end = _time_span(model)
    if validate:
        check_data(model, x)
    p = model.generative
    D = math.prod(model.data_shape)
    n = x.shape[0]
    kind = (
        divergence if divergence != "auto" else ("exact" if D <= exact_max_dims else "hutchinson")
    )
    y = x
    if dequantize:
        u = torch.rand(x.shape, dtype=x.dtype, device=x.device, generator=generator)
        y = x + bin_width * (u - 0.5)
    probes = _probes(y, probe, num_probes, generator) if kind == "hutchinson" else None
    calls = [0]

    def div_exact(f: Tensor, z: Tensor) -> Tensor:
        flat_f = f.reshape(n, D)
        total = f.new_zeros(n)
        for i in range(D):
            (grad,) = torch.autograd.grad(flat_f[:, i].sum(), z, retain_graph=i < D - 1)
            total = total + grad.reshape(n, D)[:, i]
        return total

    def div_hutchinson(f: Tensor, z: Tensor) -> Tensor:
        total = f.new_zeros(n)
        for j in range(num_probes):
            v = probes[j]
            (vjp,) = torch.autograd.grad(f, z, v, retain_graph=j < num_probes - 1)
            total = total + (vjp * v).reshape(n, D).sum(-1)
        return total / num_probes

    div_fn = div_exact if kind == "exact" else div_hutchinson

    def dynamics(t: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        calls[0] += 1
        z = state[0]
        with torch.enable_grad():
            z = z.detach().requires_grad_(True)
            f = p.probability_flow(t, z)
            div = div_fn(f, z)
        return f.detach(), div.detach()

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            z_end, integral = solve(
                dynamics,
                (y, y.new_zeros(n)),
                t_start,
                t_end,
                rtol=rtol,
                atol=atol,
                method=method,
                options=options,
            )
            prior = p.prior(n).log_prob(z_end)
    finally:
        model.train(was_training)
    log_density = prior + integral
    bound = bpd = None
    if dequantize:
        bound = log_density + D * math.log(bin_width)
        bpd = -bound / (D * math.log(2.0))
    return OdeLogProb(log_density, bound, bpd, prior, z_end, calls[0], kind)


# -- an ODE figure over a data set, each example checked against its own bound ---------------

ODE_FLAG_MARGIN = 1.0
"""Bits per dimension by which an example's ODE figure may exceed its own ELBO-based bound
before it is flagged (:class:`OdeFigure`). The ODE defines another model than the one the
bound is of, so its −log p may lie above that bound; but the two share one network, and
1 bit/dim is a factor 2^D in the example's likelihood (on the 8-bit digits of
``docs/continuous.md`` the medians of the ODE figures and of the bounds differ by under
0.7 bits/dim)."""


PRIOR_ATYPICAL_SDS = 10.0
"""An ODE path whose end z(t_end) has a prior log-density this many of the prior's own
standard deviations below the prior's mean log-density is said to have left the prior: for
N(0, I) in D = 64 dimensions that is ‖z‖² ≳ D + 10·√(2D) ≈ 177, a χ²_D tail probability of
about 1.5e-12."""


@attrs.frozen
class FlaggedExample:
    """One example whose ODE figure exceeds its bound by more than the margin (or is not
    finite): its index in the data evaluated, both figures in nats, the NFE of its solve."""

    index: int
    ode_nats: float
    bound_nats: float
    nfe: int
    prior_sds: float | None = None

    @property
    def reason(self) -> str:
        """Why the figure is so far above the bound, where the evidence says:
        ``path left the prior`` when z(t_end) is :data:`PRIOR_ATYPICAL_SDS` or more of the
        prior's own standard deviations of log-density below its mean there (the learned
        drift carried x far outside the region it was trained on, and the ODE model's
        density at x is genuinely that low; docs/continuous.md), else ``unexplained``."""
        if not math.isfinite(self.ode_nats):
            return "not finite"
        if self.prior_sds is not None and self.prior_sds <= -PRIOR_ATYPICAL_SDS:
            below = -self.prior_sds
            return f"path left the prior: log p_prior(z_end) {below:.3g} sd below typical"
        return "unexplained"


@attrs.frozen
class OdeFigure:
    """An ODE figure over a data set (−log p_ODE, or an upper bound on it, nats per example),
    each example compared with its own ELBO-based upper bound from the same evaluation.

    An example is flagged when its figure is not finite or exceeds its bound by more than
    ``margin`` bits/dim: (ode − bound)/(D ln 2) > margin, a log-likelihood ratio per
    dimension, meaningful for densities and probabilities alike. The figure is reported
    with and without the flagged examples, and they are listed — never folded silently
    into a mean.

    Attributes:
        ode: each example's ODE figure, nats, ``[N]`` (CPU, float64, the data's order).
        bound: each example's ELBO-based bound on −log p, nats, ``[N]``.
        nfe: each example's solve's drift evaluations, ``[N]`` (one solve per batch).
        solve_nfe: each solve's drift evaluations, in order.
        data_dims: D.
        margin: bits/dim (:data:`ODE_FLAG_MARGIN` by default).
        what: what the figure is; ``reference``: what the bound is (e.g. ``−ELBO``).
        divergence: ``exact`` or ``hutchinson``.
        prior_sds: each example's (log p_prior(z(t_end)) − m)/s, m and s the mean and
            standard deviation of the prior's log-density at its own draws, ``[N]`` (or None):
            far below 0, the path left the prior (:attr:`FlaggedExample.reason`).
    """

    ode: Tensor = attrs.field(eq=False, repr=False)
    bound: Tensor = attrs.field(eq=False, repr=False)
    nfe: Tensor = attrs.field(eq=False, repr=False)
    solve_nfe: tuple[int, ...]
    data_dims: int
    margin: float = ODE_FLAG_MARGIN
    what: str = "−log p_ODE(x)"
    reference: str = "−ELBO"
    divergence: str = "exact"
    prior_sds: Tensor | None = attrs.field(default=None, eq=False, repr=False)

    @property
    def excess_bits_per_dim(self) -> Tensor:
        """(ode − bound)/(D ln 2) per example."""
        return (self.ode - self.bound) / (self.data_dims * math.log(2.0))

    @property
    def flagged_mask(self) -> Tensor:
        """``[N]`` bool: the figure is not finite or exceeds its bound by more than the margin."""
        return ~torch.isfinite(self.ode) | (self.excess_bits_per_dim > self.margin)

    @property
    def flagged(self) -> list[FlaggedExample]:
        """The flagged examples, in the data's order."""
        idx = self.flagged_mask.nonzero().flatten().tolist()
        return [
            FlaggedExample(
                i,
                float(self.ode[i]),
                float(self.bound[i]),
                int(self.nfe[i]),
                None if self.prior_sds is None else float(self.prior_sds[i]),
            )
            for i in idx
        ]

    def _summary(self, values: Tensor, bits: bool) -> dict[str, Any]:
        scale = self.data_dims * math.log(2.0)
        out: dict[str, Any] = {"num_examples": int(values.numel())}
        if values.numel() == 0:
            nats = None
            median = math.nan
        else:
            nats = Estimate.of(values)
            median = float(values.median())
        out["nll_nats"] = None if nats is None else nats.to_json()
        out["median_nll_nats"] = _finite_or_none(median)
        out["bits_per_dim"] = None
        out["median_bits_per_dim"] = None
        if bits and nats is not None:
            out["bits_per_dim"] = Estimate(nats.mean / scale, nats.stderr / scale).to_json()
            out["median_bits_per_dim"] = _finite_or_none(median / scale)
        return out

    def to_json(self, *, bits: bool) -> dict[str, Any]:
        """Plain JSON values: the figure over every example (``nll_nats`` mean ± s.e.,
        ``median_nll_nats``, and in bits/dim when ``bits``), the same ``without_flagged``,
        the ``flagged`` examples, the margin, the NFE and the warning line (or null)."""
        scale = self.data_dims * math.log(2.0)
        every = self._summary(self.ode, bits)
        kept = self._summary(self.ode[~self.flagged_mask], bits)
        return {
            "what": self.what,
            "reference": self.reference,
            **every,
            "without_flagged": kept,
            "margin_bits_per_dim": self.margin,
            "flagged": [
                {
                    "index": f.index,
                    "ode_nats": _finite_or_none(f.ode_nats),
                    "bound_nats": _finite_or_none(f.bound_nats),
                    "excess_bits_per_dim": _finite_or_none((f.ode_nats - f.bound_nats) / scale),
                    "nfe": f.nfe,
                    "prior_sds": None if f.prior_sds is None else _finite_or_none(f.prior_sds),
                    "reason": f.reason,
                }
                for f in self.flagged
            ],
            "nfe": {"total": int(sum(self.solve_nfe)), "per_solve": list(self.solve_nfe)},
            "divergence": self.divergence,
            "warning": self.warning(bits=bits),
        }

    def warning(self, *, bits: bool, limit: int = 10) -> str | None:
        """One line naming the flagged examples (the first ``limit``) with both figures and
        their solve's NFE, and the mean with and without them; ``None`` when none is."""
        flagged = self.flagged
        if not flagged:
            return None
        scale = self.data_dims * math.log(2.0) if bits else 1.0
        unit = "bits/dim" if bits else "nats"
        listed = ", ".join(
            f"#{f.index} ({f.ode_nats / scale:.2f} vs {f.bound_nats / scale:.2f} {unit}, "
            f"NFE {f.nfe}; {f.reason})"
            for f in flagged[:limit]
        )
        more = f" and {len(flagged) - limit} more" if len(flagged) > limit else ""
        kept = self.ode[~self.flagged_mask]
        without = f"{float(kept.mean()) / scale:.2f}" if kept.numel() else "—"
        return (
            f"ODE figure: {len(flagged)} of {self.ode.numel()} examples flagged (not finite, or "
            f"above their own {self.reference} by more than {self.margin:g} bits/dim): "
            f"{listed}{more}; mean {float(self.ode.mean()) / scale:.2f} {unit} with them, "
            f"{without} without"
        )


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def check_margin(margin: Any) -> float:
    """The flagging margin, a finite number ≥ 0 of bits/dim, or a ConfigError."""
    if isinstance(margin, bool) or not isinstance(margin, (int, float)):
        raise ConfigError(f"ode_margin must be a number of bits/dim, got {margin!r}")
    if not (math.isfinite(margin) and margin >= 0):
        raise ConfigError(f"ode_margin must be a finite number ≥ 0 (bits/dim), got {margin!r}")
    return float(margin)


def ode_data_end(model: LatentModel) -> tuple[Callable[[Tensor], Tensor], float]:
    """How discrete data enter the ODE, and the width of their bins there, read from the
    likelihood p(x | z_1): a discretized Normal's grid on [−1, 1] (binary data mapped onto
    it, ``from_binary``), bins 2·half_bin wide; Bernoulli data {0, 1} as they are, bins 1
    wide. A ConfigError for a likelihood whose bins are not known."""
    family = likelihood_family(model)
    if isinstance(family, Bernoulli):
        return (lambda x: x), 1.0
    half = getattr(family, "half_bin", None)
    if isinstance(half, float) and half > 0:
        to_grid = type(family).from_binary if getattr(family, "binary", False) else None
        return (to_grid or (lambda x: x)), 2.0 * half
    raise ConfigError(
        f"the ODE figure on discrete data needs the data's bins, and p(x | z_1) = "
        f"{type(family).__name__} does not give them (a discretized Normal or a Bernoulli does)"
    )


def ode_figure(
    model: LatentModel,
    data: Tensor,
    bound: Tensor,
    *,
    discrete: bool,
    batch_size: int = 500,
    seed: int = 0,
    margin: float = ODE_FLAG_MARGIN,
    reference: str = "−ELBO",
    **ode_options: Any,
) -> OdeFigure:
    """−log p_ODE over ``data`` (one solve per batch), each example against its ``bound``.

    Args:
        model: a model offering the probability-flow contract (module docstring).
        data: ``[N, *data_shape]``; moved to the model's device and dtype batch by batch.
        bound: ``[N]``, each example's ELBO-based upper bound on −log p (nats).
        discrete: discrete data: the figure is the dequantized bound ``−log_prob_bound``
            with the bins of :func:`ode_data_end`; else the density's −log p(x).
        batch_size: examples per solve.
        seed: seed of the dequantization noise and the Hutchinson probes.
        margin: bits/dim; see :class:`OdeFigure`.
        reference: what ``bound`` is, for the report.
        **ode_options: passed to :func:`ode_log_prob` (``rtol``, ``atol``, ``method``, ...).
    """
    reason = probability_flow_contract(model)
    if reason is not None:
        raise InputError(f"the ODE figure: {reason}")
    margin = check_margin(margin)
    n = data.shape[0]
    if not (isinstance(bound, Tensor) and bound.shape == (n,)):
        raise ShapeError(
            f"bound must be [N] = [{n}], one per example, got {getattr(bound, 'shape', bound)!r}"
        )
    to_ode, width = ode_data_end(model) if discrete else ((lambda x: x), EIGHT_BIT_WIDTH)
    ref = model.reference()
    gen = torch.Generator(device=ref.device).manual_seed(seed)
    values, nfes, solves, sds, kind = [], [], [], [], "exact"
    typical = prior_typical(model, seed)
    for i in range(0, n, batch_size):
        x = to_ode(data[i : i + batch_size].to(device=ref.device, dtype=ref.dtype))
        r = ode_log_prob(
            model, x, dequantize=discrete, bin_width=width, generator=gen, **ode_options
        )
        values.append(-(r.log_prob_bound if discrete else r.log_density).double().cpu())
        sds.append((r.prior_log_prob.double().cpu() - typical[0]) / typical[1])
        nfes.append(torch.full((x.shape[0],), r.nfe, dtype=torch.long))
        solves.append(r.nfe)
        kind = r.divergence
    what = "−log p_ODE(x)" + (
        f" with uniform dequantization (bins {width:.4g} wide): an upper bound in expectation"
        if discrete
        else ""
    )
    return OdeFigure(
        ode=torch.cat(values),
        bound=bound.detach().double().cpu(),
        nfe=torch.cat(nfes),
        solve_nfe=tuple(solves),
        data_dims=math.prod(model.data_shape),
        margin=margin,
        what=what,
        reference=reference,
        divergence=kind,
        prior_sds=torch.cat(sds),
    )


def prior_typical(model: LatentModel, seed: int = 0, draws: int = 512) -> tuple[float, float]:
    """Mean and standard deviation of log p_prior(z) over ``draws`` of the prior's own
    (seeded by ``seed``, the global stream untouched), the yardstick of
    :attr:`OdeFigure.prior_sds`."""
    device = model.reference().device
    with torch.no_grad(), torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        prior = model.generative.prior(draws)
        lp = prior.log_prob(prior.sample()).double().cpu()
    return float(lp.mean()), max(float(lp.std()), 1e-12)
