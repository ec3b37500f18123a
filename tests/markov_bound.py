"""ELBO ≤ log p and IWAE_k ≤ log p, tested without a variance (shared by the plugin tests).

The mean of k importance weights is an unbiased estimate of p(x), so over n examples with
independent draws E[exp Σ_i (IWAE_k(x_i) − log p(x_i))] = 1, and by Markov's inequality the
sum exceeds T with probability ≤ e^(−T) = 1e-6 however heavy the weights' tails (k = 1 is
the ELBO's one-draw estimate; DESIGN §7.1, 7.3).
"""

from __future__ import annotations

import math

import latentkit as lk
from latentkit.testing import strategies as lks

MARKOV_T = math.log(1e6)  # P(Σ excess > T) ≤ e^(−T) = 1e-6


def assert_bounds_below_exact_log_p(name: str, seed: int, n: int = 64, **config) -> None:
    """Build model ``name`` with ``config`` in float64, perturb it, and check Σ_i of IWAE_k −
    log p stays below :data:`MARKOV_T` for k = 1 and 16 on n of its own samples."""
    with lks.seeded(seed):
        model = lk.load_model(name, **config).double()
        lks.perturb_parameters(model, seed)
        x = lk.sample(model, n)
        log_p = lk.exact_log_prob(model, x)
        for k in (1, 16):
            excess = (lk.iwae(model, x, k=k) - log_p).sum()
            assert excess <= MARKOV_T, (name, k, float(excess))
