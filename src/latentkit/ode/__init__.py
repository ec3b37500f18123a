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

The package: :mod:`latentkit.ode.solver` (the solver and its settings),
:mod:`latentkit.ode.log_prob` (:func:`ode_log_prob`), :mod:`latentkit.ode.figure` (the figure
over a data set and its flags); every public name is importable from ``latentkit.ode``.
"""

# ``NAME as NAME``: importable from here as before, but not in __all__.
from latentkit.ode.figure import (
    ODE_FLAG_MARGIN,
    PRIOR_ATYPICAL_SDS,
    FlaggedExample,
    OdeFigure,
    check_margin,
    ode_data_end,
    ode_figure,
    prior_typical,
)
from latentkit.ode.log_prob import EIGHT_BIT_WIDTH as EIGHT_BIT_WIDTH
from latentkit.ode.log_prob import (
    OdeLogProb,
    ode_log_prob,
    probability_flow_contract,
)
from latentkit.ode.solver import ADAPTIVE as ADAPTIVE
from latentkit.ode.solver import FIXED_GRID as FIXED_GRID
from latentkit.ode.solver import (
    METHODS,
    check_solver,
    solve,
    solver_options,
    within_span,
)

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
