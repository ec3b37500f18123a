"""The forward chain's constants: α_t, β_t and everything derived from them, once, as buffers.

Notation (``docs/ddpm.md``; seed 001): one forward step is

    x_t = α_t x_{t-1} + β_t ε_t,   α_t² + β_t² = 1,   i.e. q(x_t | x_{t-1}) = N(α_t x_{t-1}, β_t² I)

and t steps compose to q(x_t | x_0) = N(ᾱ_t x_0, β̄_t² I) with ᾱ_t = α_1⋯α_t and
β̄_t = √(1 − ᾱ_t²) (seed 001, eq. 25). The DDPM paper writes β_t for our β_t² and ᾱ_t for
our ᾱ_t². Every table is indexed by t = 0..T; row 0 is the data (α_0 = ᾱ_0 = 1,
β_0 = β̄_0 = 0), so ``table[t]`` is the constant of step t with no off-by-one.
"""

from __future__ import annotations

import torch
from torch import Tensor

from latentkit.arguments import check_count, check_number, describe_value
from latentkit.diffusion import (
    MAX_STEP_BETA_SQ,
    MAX_TIMESTEPS,
    StepTables,
    cosine_alpha_bar,
    gather_steps,
    step_beta_from_alpha_bar,
)
from latentkit.errors import ConfigError

__all__ = ["MAX_PAPER_BETA", "DiffusionSchedule", "check_beta", "cosine_beta", "linear_beta"]

MAX_PAPER_BETA = MAX_STEP_BETA_SQ
"""Cap on the paper's β_t (our β_t²), as improved DDPM: keeps α_t > 0 at the last steps."""


def linear_beta(num_timesteps: int) -> Tensor:
    """Our β_t, t = 1..T, of DDPM's linear schedule: paper β_t (= our β_t²) linear from 1e-4 to
    0.02 at T = 1000, both ends scaled by 1000/T for other T (as improved DDPM), capped at 0.999.
    """
    check_count(num_timesteps, "linear_beta: num_timesteps", high=MAX_TIMESTEPS, error=ConfigError)
    scale = 1000.0 / num_timesteps
    paper_beta = torch.linspace(scale * 1e-4, scale * 0.02, num_timesteps, dtype=torch.float64)
    return paper_beta.clamp(max=MAX_PAPER_BETA).sqrt()


def cosine_beta(num_timesteps: int, offset: float = 0.008) -> Tensor:
    """Our β_t, t = 1..T, of improved DDPM's cosine schedule (Nichol & Dhariwal, 2021, eq. 17).

    Paper ᾱ_t = f(t)/f(0), f(t) = cos²((t/T + s)/(1 + s) · π/2); so our ᾱ_t = cos(…)/cos(…) and
    β_t² = 1 − (ᾱ_t/ᾱ_{t-1})², capped at 0.999 like the paper.
    """
    check_count(num_timesteps, "cosine_beta: num_timesteps", high=MAX_TIMESTEPS, error=ConfigError)
    check_number(offset, "cosine_beta: offset", low=0.0, error=ConfigError)
    t = torch.arange(num_timesteps + 1, dtype=torch.float64)
    return step_beta_from_alpha_bar(cosine_alpha_bar(t / num_timesteps, offset), MAX_PAPER_BETA)


def check_beta(beta: Tensor, field: str = "beta") -> Tensor:
    """``beta`` unchanged if it is a non-empty 1-d schedule with 0 < β_t < 1; else a ConfigError
    naming ``field``, the first bad step and its value."""
    if not isinstance(field, str):
        raise ConfigError(f"check_beta: field must be a str, got {describe_value(field)}")
    if not isinstance(beta, Tensor) or beta.is_complex():
        raise ConfigError(f"{field!r} must be a real tensor β_1..β_T, got {describe_value(beta)}")
    if beta.ndim != 1 or beta.numel() == 0:
        raise ConfigError(
            f"{field!r} must be a non-empty 1-d schedule β_1..β_T, got shape {tuple(beta.shape)}"
        )
    bad = ~(torch.isfinite(beta) & (beta > 0) & (beta < 1))
    if bool(bad.any()):
        t = int(bad.nonzero()[0, 0]) + 1
        raise ConfigError(
            f"{field!r} must satisfy 0 < β_t < 1 at every step (our β_t, the per-step noise std; "
            f"the DDPM paper's β_t is its square); step t={t} has β_t={float(beta[t - 1])!r}"
        )
    return beta


class DiffusionSchedule(StepTables):
    """α_t, β_t, ᾱ_t, β̄_t and the posterior/reverse-variance constants, each a ``[T+1]`` buffer.

    Args:
        beta: our β_t for t = 1..T (``[T]``, 0 < β_t < 1); computed in float64.

    Buffers (row t; row 0 is the data and only filled in where it means something):

    * ``alpha``, ``beta``: one step, α_t = √(1 − β_t²).
    * ``alpha_bar``, ``beta_bar``: t steps composed, ᾱ_t = Π α_s, β̄_t = √(1 − ᾱ_t²).
    * ``posterior_coef_x0``, ``posterior_coef_xt``, ``beta_tilde``: q(x_{t-1} | x_t, x_0) =
      N(coef_x0·x_0 + coef_xt·x_t, β̃_t² I) with coef_x0 = ᾱ_{t-1} β_t² / β̄_t²,
      coef_xt = α_t β̄_{t-1}² / β̄_t², β̃_t = β̄_{t-1} β_t / β̄_t (Bayes' rule on eq. 25).
    * ``log_sigma_sq_upper`` = log β_t² and ``log_sigma_sq_lower`` = log β̃_t², the two fixed
      reverse variances (DDPM §3.2); at t = 1, β̃_1 = 0, so the lower one uses β̃_2 (T ≥ 2)
      or β_1 (T = 1), as improved DDPM's clipped log-variance.

    Buffers are :class:`latentkit.diffusion.StepTables`': not saved in ``state_dict`` (the
    config rebuilds them), re-cast from a float64 master (:attr:`exact`) on every ``.to()``,
    so ``model.float().double()`` keeps them exact.
    """

    alpha: Tensor
    beta: Tensor
    alpha_bar: Tensor
    beta_bar: Tensor
    posterior_coef_x0: Tensor
    posterior_coef_xt: Tensor
    beta_tilde: Tensor
    log_sigma_sq_upper: Tensor
    log_sigma_sq_lower: Tensor

    def __init__(self, beta: Tensor):
        try:
            if isinstance(beta, Tensor) and beta.is_complex():
                raise TypeError("complex")
            beta = torch.as_tensor(beta, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError):
            raise ConfigError(
                f"DiffusionSchedule: beta must be β_1..β_T (a tensor or a sequence of numbers), "
                f"got {describe_value(beta)}"
            ) from None
        beta = check_beta(beta.detach().cpu())
        zero, one = beta.new_zeros(1), beta.new_ones(1)
        beta_sq = beta**2
        log_alpha = 0.5 * torch.log1p(-beta_sq)
        log_alpha_bar = torch.cumsum(log_alpha, 0)
        # β̄_t² = 1 − ᾱ_t² via expm1: exact even where ᾱ_t is within round-off of 1.
        beta_bar_sq = torch.cat([zero, -torch.expm1(2 * log_alpha_bar)])
        alpha_bar = torch.cat([one, torch.exp(log_alpha_bar)])
        alpha = torch.cat([one, torch.exp(log_alpha)])
        beta_sq = torch.cat([zero, beta_sq])
        safe = beta_bar_sq.clone()
        safe[0] = 1.0  # row 0 of the posterior tables is unused; avoid 0/0
        beta_tilde_sq = beta_bar_sq.roll(1) * beta_sq / safe
        beta_tilde_sq[0] = 0.0
        lower = beta_tilde_sq.clone()
        lower[1] = beta_tilde_sq[2] if len(beta) >= 2 else beta_sq[1]
        lower[0] = lower[1]
        upper = beta_sq.clone()
        upper[0] = upper[1]
        coef_x0 = alpha_bar.roll(1) * beta_sq / safe
        coef_x0[0] = 1.0
        coef_xt = alpha * beta_bar_sq.roll(1) / safe
        coef_xt[0] = 0.0
        super().__init__(
            {
                "alpha": alpha,
                "beta": beta_sq.sqrt(),
                "alpha_bar": alpha_bar,
                "beta_bar": beta_bar_sq.sqrt(),
                "posterior_coef_x0": coef_x0,
                "posterior_coef_xt": coef_xt,
                "beta_tilde": beta_tilde_sq.sqrt(),
                "log_sigma_sq_upper": upper.log(),
                "log_sigma_sq_lower": lower.log(),
            }
        )

    @property
    def num_timesteps(self) -> int:
        """T."""
        return self.beta.shape[0] - 1

    def gather(self, table: Tensor, t: int | Tensor, like: Tensor) -> Tensor:
        """``table[t]`` shaped to broadcast against ``like`` (``[batch, *event]``):
        :func:`latentkit.diffusion.gather_steps`.

        ``t`` is an int (a 0-d result) or a ``LongTensor[batch]`` (a ``[batch, 1, …, 1]`` result).
        """
        return gather_steps(table, t, like)
