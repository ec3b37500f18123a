"""Diagnostics: the terms the averaged ELBO hides, and posterior collapse (DESIGN §10).

ELBO surgery (Hoffman & Johnson 2016; seed 003). Over the N data points x_1..x_N, with
q(z) = (1/N) Σ_n q(z | x_n) the aggregate posterior,

    E_data[ELBO] = E[log p(x | z_1)] − E_data[KL(q(z|x) ‖ p(z))]
    E_data[KL(q(z|x) ‖ p(z))] = I_q(x; z) + KL(q(z) ‖ p(z))           (DESIGN §7.14)

    I_q(x; z)       = E_x E_{z~q(z|x)}[log q(z|x) − log q(z)],   0 ≤ I_q ≤ log N
    KL(q(z) ‖ p(z)) = E_x E_{z~q(z|x)}[log q(z) − log p(z)]

Every figure is a Monte Carlo mean over M draws z ~ q(z | x_i) for each of the N examples,
with log q(z) = logsumexp_n log q(z | x_n) − log N summed over the data in chunks
(:func:`aggregate_log_prob`), so no N × N matrix is ever held. The three estimators share
their draws and their log q(z), so the identity holds per draw, to round-off. The
expectation over x is the data's own (the sum covers every example), so the only noise is
that of the draws: I_q is estimated without bias for the empirical distribution of the
data, and each draw's log q(z | x_i) − log q(z) ≤ log N exactly (q(z) ≥ q(z | x_i) / N).
A standard error is the std of the N·M per-draw values / √(N·M).

Layers. z above is every latent jointly, z_1..z_L, whose density q(z_{1:L} | x) is always
the product of the posterior chain's factors, so the decomposition of the whole chain is
computed for any depth: each draw's ancestral density is evaluated under every other
example (``joint``; N·M·N rows through the chain's factors, in chunks of
``pairs_per_call``). One layer on its own needs its marginal q(z_l | x), which is known
only where the chain states it: q(z_L | x) for a top-down chain (``top``), q(z_1 | x) for a
bottom-up one (``first``), every layer for a layer-batched one (``marginal``: a DDPM's
q(x_t | x_0)). Elsewhere I_q(x; z_l) is not reported, rather than estimated with a biased
inner estimate of log q(z_l | x); for a Markov chain the data processing inequality bounds
it by the reported ones (I(x; z_l) ≤ I(x; z_1) bottom-up). KL(q(z_l) ‖ p(z_l)) needs p(z_l)
as well, so it is reported for z_L (the prior) only.

Collapse. Per latent scalar: the ELBO's KL term of that scalar (``per_dimension_kl``,
closed form for factorized Gaussians) and its activity A_d = Cov_x(E_q[z_d | x]) (Burda et
al. 2016); a unit is active when A_d > ``active_threshold`` (0.01). E_q[z_l | x] is the
mean of the factor each z_l is drawn from, averaged over the M draws (exact for a marginal
layer); for a conditional layer the between-draw variance / M is subtracted, which makes
the estimate of A_d unbiased (M ≥ 2). A categorical z_d's index is a label, so its activity
is its one-hot code's, A_d = Σ_k Var_x(q(z_d = k | x)). Over one example, or for a q without
a finite mean, A_d is not defined: NaN, ``active`` None, neither active nor collapsed.

Given the condition. A class-conditional model (``diagnose(..., conditions=labels)``) is
diagnosed per class: with π_k = N_k / N over the classes present and q(z|c=k) the
aggregate posterior of class k's examples,

    E_data KL(q(z|x,c) ‖ p(z|c)) = I_q(x; z | c) + Σ_k π_k KL(q(z|c=k) ‖ p(z|c=k)),

both terms ≥ 0 and I_q(x; z | c) = Σ_k π_k I_k ≤ Σ_k π_k log N_k. Each class is the walk of
``model.given(k)`` over its examples, with the same seed; each figure is the π-weighted mean
of the classes', its standard error sqrt(Σ π_k² se_k²); the activity is pooled, the formula
above on every example's E_q[z | x, c] (so it counts the spread of the class means). A
float vector condition is refused: each is one example's, with no aggregate posterior of
its own (:mod:`.conditional`; docs/conditional.md).

The DDPM (a layer-batched chain with a fixed q): I(x_0; x_t) along t, which decreases in t
(data processing; :func:`gaussian_diffusion_information` is its closed form for Gaussian
data), and at t = T the decomposition of the prior-matching term. Collapse diagnostics do
not apply to a q without parameters.

Parts: :mod:`.information` (the per-draw values and the mixture q(z): the estimators),
:mod:`.walks` (drawing the chain ancestrally or layer by layer from its marginals),
:mod:`.surgery` (:func:`diagnose`, the entry point), :mod:`.conditional` (given the class),
:mod:`.results` (:class:`Diagnostics`, :class:`LayerDiagnostics`, :func:`diagnostics_table`),
:mod:`.figures` (the plots).
"""

# ``NAME as NAME``: the documented constants, importable from here but not in __all__.
from latentkit.diagnostics.figures import (
    comparison_plot,
    diagnostics_plot,
    training_diagnostics_plot,
)
from latentkit.diagnostics.information import (
    InformationDraws,
    aggregate_log_prob,
    gaussian_diffusion_information,
)
from latentkit.diagnostics.results import METRIC_KEYS as METRIC_KEYS
from latentkit.diagnostics.results import Diagnostics, LayerDiagnostics, diagnostics_table
from latentkit.diagnostics.surgery import ELEMENTS_PER_CALL as ELEMENTS_PER_CALL
from latentkit.diagnostics.surgery import diagnose
from latentkit.diagnostics.walks import DIAGNOSED_TIMESTEPS as DIAGNOSED_TIMESTEPS
from latentkit.diagnostics.walks import MAX_TIMESTEPS as MAX_TIMESTEPS  # the old name
from latentkit.diagnostics.walks import ROWS_PER_CALL as ROWS_PER_CALL

__all__ = [
    "Diagnostics",
    "InformationDraws",
    "LayerDiagnostics",
    "aggregate_log_prob",
    "comparison_plot",
    "diagnose",
    "diagnostics_plot",
    "diagnostics_table",
    "gaussian_diffusion_information",
    "training_diagnostics_plot",
]
