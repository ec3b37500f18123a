"""Exact oracles: log p(x) and the exact posterior where they are tractable.

A chain whose every conditional is Gaussian with a mean linear in its parent,

    z_L ~ N(μ_L, diag v_L),   z_{l-1} | z_l ~ N(A_l z_l + b_l, diag v_{l-1}),
    x | z_1 ~ N(W z_1 + c, diag v_x),

has a Gaussian p(x). The backward recursion carries the message x | z_l ~ N(C_l z_l + d_l, Σ_l)
from the data up the chain::

    C_1 = W,            d_1 = c,                 Σ_1 = diag v_x
    C_{l+1} = C_l A,    d_{l+1} = C_l b + d_l,   Σ_{l+1} = C_l diag(v_l) C_lᵀ + Σ_l

so log p(x) = log N(x; C_L μ_L + d_L, C_L diag(v_L) C_Lᵀ + Σ_L), and each exact posterior
factor is a Gaussian prior conditioned on one linear-Gaussian observation of x:
q*(z_L | x) ∝ p(z_L) N(x; C_L z_L + d_L, Σ_L) and
q*(z_{l-1} | z_l, x) ∝ p(z_{l-1} | z_l) N(x; C_{l-1} z_{l-1} + d_{l-1}, Σ_{l-1}).
With q = q* the ELBO equals log p(x) for every draw (seed 001, eq. 10; DESIGN §7.1).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor
from torch.distributions import MultivariateNormal

from latentkit.arguments import checked
from latentkit.chains import LatentModel, LinearGaussianSpec, PosteriorChain
from latentkit.conditions import bind, restrict, tiled
from latentkit.errors import NotTractableError
from latentkit.validation import check_data

__all__ = [
    "ExactLinearGaussianPosterior",
    "LinearGaussianSpec",  # defined with the chains (the contract's type); the oracles read it
    "exact_log_prob",
    "exact_posterior",
    "linear_gaussian_elbo",
]


def _condition(mean: Tensor, var: Tensor, C: Tensor, d: Tensor, S: Tensor, x: Tensor):
    """N(mean, diag var) conditioned on x = C z + d + N(0, S): a MultivariateNormal.

    Kalman form with the Joseph update, which stays symmetric positive definite.
    """
    P = torch.diag(var)
    innovation_cov = C @ P @ C.T + S
    gain = torch.linalg.solve(innovation_cov, C @ P).T  # P Cᵀ (C P Cᵀ + S)⁻¹
    post_mean = mean + (x - d - mean @ C.T) @ gain.T
    eye = torch.eye(P.shape[0], dtype=P.dtype, device=P.device)
    J = eye - gain @ C
    cov = J @ P @ J.T + gain @ S @ gain.T
    cov = 0.5 * (cov + cov.T)
    return MultivariateNormal(post_mean, scale_tril=torch.linalg.cholesky(cov), validate_args=False)


def _spec(model: LatentModel) -> LinearGaussianSpec:
    spec = model.generative.linear_gaussian()
    if spec is None:
        raise NotTractableError(
            f"exact log p(x) is not tractable for {model.name or type(model.generative).__name__}: "
            "its generative chain is not linear-Gaussian (linear_gaussian() returned None) and "
            "defines no log_marginal(); use latentkit.iwae for a tight estimate instead"
        )
    return spec


def _flat(x: Tensor) -> Tensor:
    return x.reshape(x.shape[0], -1)


@checked
def exact_log_prob(
    model: LatentModel, x: Tensor, *, validate: bool = True, condition: Any = None
) -> Tensor:
    """Exact log p(x), ``[batch]``, for chains where it is tractable (log p(x | c) for a
    conditional model given ``condition``).

    Uses the generative chain's own ``log_marginal`` (e.g. a discrete latent summed out)
    when it defines one, else the linear-Gaussian backward recursion. Raises
    :class:`~latentkit.errors.NotTractableError` otherwise. Conditions are taken a value at
    a time: the chain's ``linear_gaussian()`` is the one of that condition.
    """
    if validate:
        check_data(model, x)
    model = bind(model, condition, x.shape[0])
    c = model.condition
    if c is None:
        return _exact(model, x)
    c = tiled(c, x.shape[0], "exact_log_prob")
    out = x.new_empty(x.shape[0])
    values, which = torch.unique(c, dim=0, return_inverse=True)
    for i in range(values.shape[0]):
        rows = (which == i).nonzero().squeeze(1)
        out[rows] = _exact(restrict(model, rows[:1]), x[rows])
    return out


def _exact(model: LatentModel, x: Tensor) -> Tensor:
    own = model.generative.log_marginal(x)
    if own is not None:
        return own
    spec = _spec(model)
    C, d, S = spec.messages()[-1]
    cov = (C * spec.prior_var) @ C.T + S
    return MultivariateNormal(C @ spec.prior_mean + d, covariance_matrix=cov).log_prob(_flat(x))


class ExactLinearGaussianPosterior(PosteriorChain):
    """The exact posterior p(z | x) of a linear-Gaussian chain, as a top-down posterior chain.

    Recomputed from the chain's current parameters at every call, so it stays exact while
    the generative chain trains. Full-covariance factors (``MultivariateNormal``).
    """

    top_down = True

    @checked
    def __init__(self, model: LatentModel):
        super().__init__()
        _spec(model)  # fail now, with the clear error, if the chain is not linear-Gaussian
        object.__setattr__(self, "_generative", model.generative)  # shared, not a submodule

    def top(self, x: Tensor) -> MultivariateNormal:
        spec = self._generative.linear_gaussian()
        C, d, S = spec.messages()[-1]
        return _condition(spec.prior_mean, spec.prior_var, C, d, S, _flat(x))

    def down(self, l: int, z: Tensor, x: Tensor) -> MultivariateNormal:
        spec = self._generative.linear_gaussian()
        A, b, v = spec.transitions[l - 2]
        C, d, S = spec.messages()[l - 2]
        return _condition(z @ A.T + b, v, C, d, S, _flat(x))


def exact_posterior(model: LatentModel) -> ExactLinearGaussianPosterior:
    """The exact posterior chain of a linear-Gaussian model; use ``model.with_posterior(...)``
    (its constructor checks ``model``)."""
    return ExactLinearGaussianPosterior(model)


@checked
def linear_gaussian_elbo(model: LatentModel, x: Tensor) -> Tensor:
    """Closed-form ELBO of a one-layer linear-Gaussian model with a Gaussian q(z|x), ``[batch]``.

    E_q[log N(x; Wz + c, diag v)] = log N(x; Wm + c, diag v) − ½ tr(diag(1/v) W Q Wᵀ) for
    q = N(m, Q); minus the analytic KL(q ‖ p(z)). No sampling: the oracle for checking
    ELBO + KL(q ‖ p(z|x)) = log p(x) exactly (DESIGN §7.1).
    """
    check_data(model, x)
    spec = _spec(model)
    if spec.transitions:
        raise NotTractableError("linear_gaussian_elbo covers one-layer models only")
    q = model.posterior.top(x)
    mean = q.mean
    cov = q.covariance_matrix if isinstance(q, MultivariateNormal) else torch.diag_embed(q.variance)
    W, c, v = spec.weight, spec.bias, spec.noise_var
    resid = _flat(x) - mean @ W.T - c
    fit = -0.5 * ((resid**2 / v).sum(-1) + torch.log(2 * math.pi * v).sum())
    trace = 0.5 * torch.einsum("ij,bjk,ik->b", W / v[:, None], cov, W)
    prior = MultivariateNormal(spec.prior_mean, covariance_matrix=torch.diag(spec.prior_var))
    q_mvn = MultivariateNormal(mean, covariance_matrix=cov)
    return fit - trace - torch.distributions.kl_divergence(q_mvn, prior)
