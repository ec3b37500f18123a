"""An exact oracle for DDPM bounds: Gaussian data, whose reverse chain is known in closed form.

For data x_0 ~ N(m, diag s²) the forward chain keeps every marginal Gaussian,

    q(x_t) = N(ᾱ_t m, diag(ᾱ_t² s² + β̄_t²)) =: N(m_t, diag v_t),

and each reverse step q(x_{t-1} | x_t) is Gaussian with a mean linear in x_t (condition the
jointly Gaussian pair x_{t-1}, x_t = α_t x_{t-1} + β_t ε):

    q(x_{t-1} | x_t) = N(m_{t-1} + A_t (x_t − α_t m_{t-1}), diag(v_{t-1} β_t² / v_t)),
    A_t = α_t v_{t-1} / v_t.

A generative chain built from these transitions is linear-Gaussian, so latentkit's exact
oracle gives its log p(x_0); with the prior q(x_T) its joint *is* q's, and the DDPM
posterior chain is its exact posterior (DESIGN §7, identity 8).
"""

from __future__ import annotations

import torch
from torch import Tensor

import latentkit as lk
from latentkit.arguments import check_choice, describe_value
from latentkit.distributions import diag_normal
from latentkit_ddpm.schedule import DiffusionSchedule

__all__ = ["LinearGaussianReverse", "gaussian_data_marginals", "gaussian_data_reverse"]


def _check_tables(where: str, rows: int = 1, **tables: object) -> None:
    """Finite float tensors of one shape: ``[T, D]`` (``rows=1``) or ``[D]`` (``rows=0``), T, D ≥ 1;
    a variance or a standard deviation (``var``, ``prior_var``, ``std``) > 0 everywhere."""
    first = None
    for name, value in tables.items():
        if not isinstance(value, Tensor) or not value.is_floating_point():
            raise lk.InputError(
                f"{where}: {name} must be a float tensor, got {describe_value(value)}"
            )
        if value.ndim != rows + 1 or 0 in value.shape:
            want = "[T, D]" if rows else "[D]"
            raise lk.ShapeError(f"{where}: {name} must be {want}, got shape {tuple(value.shape)}")
        if first is not None and value.shape != first:
            raise lk.ShapeError(
                f"{where}: {name} has shape {tuple(value.shape)}, the others {tuple(first)}"
            )
        first = value.shape
        if not bool(torch.isfinite(value).all()):
            raise lk.NonFiniteError(f"{where}: {name} holds NaN or inf")
        if name in ("var", "prior_var", "std") and not bool((value > 0).all()):
            least = float(value.min())
            raise lk.InputError(
                f"{where}: {name} must be > 0 everywhere, got a least value {least!r}"
            )


class LinearGaussianReverse(lk.GenerativeChain):
    """p(x_T) = N(prior_mean, diag prior_var), p(x_{t-1} | x_t) = N(A_t x_t + b_t, diag var_t).

    Diagonal A_t; row t − 1 of ``A``, ``b``, ``var`` (each ``[T, D]``) is step t, and t = 1 is
    the likelihood p(x_0 | x_1). Layer-batched; exposes :meth:`linear_gaussian` for
    ``latentkit.exact_log_prob``.
    """

    layer_batched = True

    def __init__(self, A: Tensor, b: Tensor, var: Tensor, prior_mean: Tensor, prior_var: Tensor):
        _check_tables("LinearGaussianReverse", A=A, b=b, var=var)
        _check_tables("LinearGaussianReverse", rows=0, prior_mean=prior_mean, prior_var=prior_var)
        if prior_mean.shape[-1] != A.shape[1]:
            raise lk.ShapeError(
                f"LinearGaussianReverse: prior_mean must be [D] with D = {A.shape[1]} "
                f"(A's columns), got shape {tuple(prior_mean.shape)}"
            )
        T, D = A.shape
        super().__init__((D,), [(D,)] * T)
        for name, value in dict(
            A=A, b=b, var=var, prior_mean=prior_mean, prior_var=prior_var
        ).items():
            self.register_buffer(name, value.detach().clone())

    def _step(self, t: int | Tensor, z: Tensor):
        row = t - 1
        dist = diag_normal(self.A[row] * z + self.b[row], self.var[row].sqrt().expand_as(z))
        return dist

    def prior(self, n: int):
        return diag_normal(self.prior_mean.expand(n, -1), self.prior_var.sqrt().expand(n, -1))

    def transition(self, l: int | Tensor, z: Tensor):
        return self._step(l, z)

    def likelihood(self, z1: Tensor):
        return self._step(1, z1)

    def linear_gaussian(self) -> lk.LinearGaussianSpec:
        T = self.A.shape[0]
        return lk.LinearGaussianSpec(
            prior_mean=self.prior_mean,
            prior_var=self.prior_var,
            transitions=tuple((torch.diag(self.A[t]), self.b[t], self.var[t]) for t in range(1, T)),
            weight=torch.diag(self.A[0]),
            bias=self.b[0],
            noise_var=self.var[0],
        )


def gaussian_data_marginals(
    schedule: DiffusionSchedule, mean: Tensor, std: Tensor
) -> tuple[Tensor, Tensor]:
    """m_t = ᾱ_t m and v_t = ᾱ_t² s² + β̄_t², each ``[T+1, D]`` (row 0 is the data)."""
    alpha_bar = schedule.alpha_bar[:, None].to(mean)
    beta_bar = schedule.beta_bar[:, None].to(mean)
    return alpha_bar * mean, alpha_bar**2 * std**2 + beta_bar**2


def gaussian_data_reverse(
    schedule: DiffusionSchedule, mean: Tensor, std: Tensor, *, prior: str = "exact"
) -> LinearGaussianReverse:
    """The exact reverse chain of ``schedule`` for data N(mean, diag std²) (``[D]`` each).

    ``prior="exact"`` uses p(x_T) = q(x_T), making p's joint equal q's; ``"standard"`` uses
    N(0, I) as a DDPM does, so log p(x_0) < log q(x_0) by the prior's mismatch.
    """
    if not isinstance(schedule, DiffusionSchedule):
        raise lk.InputError(
            f"gaussian_data_reverse: schedule must be a DiffusionSchedule, "
            f"got {describe_value(schedule)}"
        )
    _check_tables("gaussian_data_reverse", rows=0, mean=mean, std=std)
    check_choice(prior, "gaussian_data_reverse: prior", ("exact", "standard"), error=lk.ConfigError)
    m, v = gaussian_data_marginals(schedule, mean, std)
    alpha = schedule.alpha[1:, None].to(mean)
    beta = schedule.beta[1:, None].to(mean)
    A = alpha * v[:-1] / v[1:]
    b = m[:-1] - A * alpha * m[:-1]
    var = v[:-1] * beta**2 / v[1:]
    if prior == "exact":
        prior_mean, prior_var = m[-1], v[-1]
    else:
        prior_mean, prior_var = torch.zeros_like(mean), torch.ones_like(mean)
    return LinearGaussianReverse(A, b, var, prior_mean, prior_var)
