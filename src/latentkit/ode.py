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

solved forward from x as one ODE on (z, ∫∇·f) with ``torchdiffeq.odeint`` (its adaptive
``dopri5`` by default; ``rtol``/``atol`` are passed through). Adaptive methods are told to
step exactly to t_end (``step_t``), so the drift is only evaluated for t in
[t_start, t_end]. The divergence is

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

``torchdiffeq`` is an optional dependency: ``pip install 'latentkit[ode]'`` (or install the
``vdm`` plugin, which depends on it).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from latentkit.chains import LatentModel
from latentkit.errors import ConfigError, InputError
from latentkit.validation import check_data

__all__ = ["OdeLogProb", "ode_log_prob", "probability_flow_contract", "solver_options"]

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


def _odeint():
    try:
        from torchdiffeq import odeint
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError(
            "latentkit.ode_log_prob needs torchdiffeq: install the optional extra "
            "'latentkit[ode]' (pip install torchdiffeq)"
        ) from None
    return odeint


ADAPTIVE = ("dopri8", "dopri5", "bosh3", "fehlberg2", "adaptive_heun")
"""torchdiffeq's adaptive Runge–Kutta methods (they accept ``step_t``)."""


def solver_options(method: str, times: Tensor, options: dict | None) -> dict | None:
    """``options`` for ``odeint``, with ``step_t`` = the end time for adaptive methods unless
    given: torchdiffeq otherwise steps past the end and interpolates, evaluating the drift
    outside the model's time span (where a schedule such as the cosine one is undefined)."""
    if method not in ADAPTIVE:
        return options
    return {"step_t": times[-1:], **(options or {})}


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
        rtol, atol, method, options: passed to ``torchdiffeq.odeint``.
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
    for name, value in (("rtol", rtol), ("atol", atol), ("bin_width", bin_width)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ConfigError(f"{name} must be a finite number > 0, got {value!r}")
    if validate:
        check_data(model, x)
    odeint = _odeint()
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

    t_start, t_end = p.ode_time_span
    times = torch.tensor([t_start, t_end], dtype=x.dtype, device=x.device)
    options = solver_options(method, times, options)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            zs, divs = odeint(
                dynamics,
                (y, y.new_zeros(n)),
                times,
                rtol=rtol,
                atol=atol,
                method=method,
                options=options,
            )
            z_end, integral = zs[-1], divs[-1]
            prior = p.prior(n).log_prob(z_end)
    finally:
        model.train(was_training)
    log_density = prior + integral
    bound = bpd = None
    if dequantize:
        bound = log_density + D * math.log(bin_width)
        bpd = -bound / (D * math.log(2.0))
    return OdeLogProb(log_density, bound, bpd, prior, z_end, calls[0], kind)
