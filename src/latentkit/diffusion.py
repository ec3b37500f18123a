"""Variance-preserving diffusion: the schedule mathematics shared by discrete and continuous time.

Notation (``docs/ddpm.md``, ``docs/continuous.md``): the forward marginal is

    q(z_t | x) = N(ᾱ_t x, β̄_t² I),   ᾱ_t² + β̄_t² = 1,

indexed by a step t = 0..T (the ``ddpm`` plugin) or a time t ∈ [0, 1] (the ``vdm`` plugin).
VDM (Kingma et al. 2021) writes α_t, σ_t for our ᾱ_t, β̄_t and parameterizes the schedule by

    γ_t = −log SNR_t = log(β̄_t² / ᾱ_t²),   so ᾱ_t² = sigmoid(−γ_t),  β̄_t² = sigmoid(γ_t).

Between two times s < t the forward chain has one step q(z_t | z_s) = N(α_{t|s} z_s, β_{t|s}² I)
with α_{t|s} = ᾱ_t/ᾱ_s and β_{t|s}² = β̄_t² (−expm1(γ_s − γ_t)) (seed 001, eq. 25 read
backwards); the DDPM's per-step α_t, β_t are these at s = t − 1. Every function here works
elementwise on tensors and keeps the dtype it is given.

A discrete chain's constants are tables indexed by the step t = 0..T: :class:`StepTables`
keeps them exact in float64 whatever dtype the model is cast to, and :func:`gather_steps`
reads one step per example, shaped to broadcast against the batch.

A bad argument is an :class:`~latentkit.InputError` naming the function and the argument.
The functions a bound calls on every step (ᾱ², β̄², the step fraction, γ(u), the gather)
check types only (an ``isinstance`` and a dtype flag: no read-back); those that build a
schedule once also check its values.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import torch
from torch import Tensor, nn

from latentkit.arguments import check_number, describe_value
from latentkit.errors import InputError

__all__ = [
    "MAX_ABS_GAMMA",
    "MAX_STEP_BETA_SQ",
    "MAX_TIMESTEPS",
    "StepTables",
    "alpha_bar_sq",
    "beta_bar_sq",
    "cosine_alpha_bar",
    "cosine_log_snr",
    "gamma_from_alpha_bar",
    "gather_steps",
    "step_beta_from_alpha_bar",
    "step_variance_fraction",
]

MAX_STEP_BETA_SQ = 0.999
"""Cap on one step's β_t² (the DDPM paper's β_t), as improved DDPM: keeps α_t > 0."""

MAX_TIMESTEPS = 1_000_000
"""The most timesteps a discrete diffusion's ``num_timesteps`` may ask for: its schedule
tables hold T + 1 float64 rows each and a full-T bound makes T network calls per example,
so a T beyond this is a typo, refused at validation rather than met by the allocator."""


def _real(value: Any, name: str, where: str) -> Tensor:
    """``value`` if it is a floating-point tensor, else an InputError (no read-back)."""
    if not (isinstance(value, Tensor) and value.is_floating_point()):
        raise InputError(
            f"{where}: {name} must be a floating-point torch.Tensor, got {describe_value(value)}"
        )
    return value


def alpha_bar_sq(gamma: Tensor) -> Tensor:
    """ᾱ_t² = sigmoid(−γ_t): the signal variance at log-SNR −γ_t."""
    return torch.sigmoid(-_real(gamma, "gamma", "alpha_bar_sq"))


def beta_bar_sq(gamma: Tensor) -> Tensor:
    """β̄_t² = sigmoid(γ_t) = 1 − ᾱ_t²: the noise variance at log-SNR −γ_t."""
    return torch.sigmoid(_real(gamma, "gamma", "beta_bar_sq"))


def gamma_from_alpha_bar(alpha_bar: Tensor) -> Tensor:
    """γ = log β̄² − log ᾱ² = log(1 − ᾱ²) − 2 log ᾱ; +inf where ᾱ = 0, −inf where ᾱ = 1."""
    _real(alpha_bar, "alpha_bar", "gamma_from_alpha_bar")
    return torch.log1p(-(alpha_bar**2)) - 2 * torch.log(alpha_bar)


def step_variance_fraction(gamma_s: Tensor, gamma_t: Tensor) -> Tensor:
    """β_{t|s}² / β̄_t² = 1 − SNR_t/SNR_s = −expm1(γ_s − γ_t), for s < t (γ_s < γ_t).

    Also β̃² / β̄_s², the variance of q(z_s | z_t, x) over β̄_s² (Bayes' rule on the step).
    Written with expm1 so that nearby times (large T) keep full precision.
    """
    _real(gamma_s, "gamma_s", "step_variance_fraction")
    return -torch.expm1(gamma_s - _real(gamma_t, "gamma_t", "step_variance_fraction"))


def cosine_alpha_bar(u: Tensor, offset: float = 0.008) -> Tensor:
    """Improved DDPM's cosine schedule (Nichol & Dhariwal 2021, eq. 17) in our ᾱ, at u = t/T:
    ᾱ(u) = cos((u + s)/(1 + s) · π/2) / cos(s/(1 + s) · π/2), so ᾱ(0) = 1.

    Built once per schedule, so its values are checked: u ∈ [0, 1] (a tensor or a number),
    the offset s a finite number ≥ 0."""
    check_number(offset, "cosine_alpha_bar: offset", low=0.0)
    if isinstance(u, bool) or not isinstance(u, (Tensor, int, float)):
        raise InputError(f"cosine_alpha_bar: u must be a real tensor, got {describe_value(u)}")
    u = torch.as_tensor(u)
    low, high = torch.stack(torch.aminmax(u.double())).tolist() if u.numel() else (0, 0)
    if not 0 <= low <= high <= 1:  # NaN fails
        raise InputError(
            f"cosine_alpha_bar: u must lie in [0, 1] (u = t/T), got values in [{low}, {high}]"
        )
    angle = (u + offset) / (1 + offset) * math.pi / 2
    return torch.cos(angle) / math.cos(offset / (1 + offset) * math.pi / 2)


MAX_ABS_GAMMA = 1400.0
"""The largest |γ| :func:`cosine_log_snr` takes: exp(γ/2) overflows a float64 beyond 1419."""


def _ordered(low: Any, high: Any) -> bool:
    """Whether ``low < high`` are floats within ±:data:`MAX_ABS_GAMMA` (decided fast)."""
    return (
        type(low) is float and type(high) is float and -MAX_ABS_GAMMA <= low < high <= MAX_ABS_GAMMA
    )


def cosine_log_snr(u: Tensor, gamma_min: float, gamma_max: float) -> tuple[Tensor, Tensor]:
    """The cosine schedule as γ(u), u ∈ [0, 1], pinned to γ(0) = γ_min and γ(1) = γ_max, and γ'(u).

    With ᾱ = cos φ the log-SNR is log cot² φ, so γ = 2 log tan φ; φ runs linearly from
    φ_min = atan(exp(γ_min/2)) to φ_max = atan(exp(γ_max/2)), and γ'(u) = 4 (φ_max − φ_min) /
    sin 2φ (Kingma & Gao 2023's "cosine" log-SNR, interpolated between the two ends).
    ``u`` a floating-point tensor, γ_min < γ_max numbers within ±:data:`MAX_ABS_GAMMA`
    (float ends are checked by comparisons alone).
    """
    if not (isinstance(u, Tensor) and u.is_floating_point() and _ordered(gamma_min, gamma_max)):
        _real(u, "u", "cosine_log_snr")
        bound = {"low": -MAX_ABS_GAMMA, "high": MAX_ABS_GAMMA}
        check_number(gamma_min, "cosine_log_snr: gamma_min", **bound)
        check_number(gamma_max, "cosine_log_snr: gamma_max", above=gamma_min, **bound)
    phi_min = math.atan(math.exp(gamma_min / 2))
    phi_max = math.atan(math.exp(gamma_max / 2))
    phi = phi_min + u * (phi_max - phi_min)
    return 2 * torch.log(torch.tan(phi)), 4 * (phi_max - phi_min) / torch.sin(2 * phi)


def step_beta_from_alpha_bar(alpha_bar: Tensor, cap: float = MAX_STEP_BETA_SQ) -> Tensor:
    """Per-step β_t, t = 1..T, from ᾱ_0..ᾱ_T (``[T+1]``): β_t² = 1 − (ᾱ_t/ᾱ_{t−1})², capped at
    ``cap`` (improved DDPM), i.e. the DDPM paper's β_t = 1 − ᾱ_t/ᾱ_{t−1} in its notation.

    Built once per schedule, so its values are checked: ᾱ a 1-d table of at least 2 values
    in [0, 1], all but the last > 0 (each divides), and ``cap`` in (0, 1]."""
    where = "step_beta_from_alpha_bar"
    check_number(cap, f"{where}: cap", above=0.0, high=1.0)
    if _real(alpha_bar, "alpha_bar", where).ndim != 1 or alpha_bar.shape[0] < 2:
        raise InputError(
            f"{where}: alpha_bar must be a 1-d table ᾱ_0..ᾱ_T (T ≥ 1), got "
            f"{describe_value(alpha_bar)}"
        )
    if not bool(((alpha_bar >= 0) & (alpha_bar <= 1)).all() & (alpha_bar[:-1] > 0).all()):
        raise InputError(
            f"{where}: alpha_bar must lie in [0, 1] and be > 0 before its last "
            "entry (ᾱ_{t-1} divides)"
        )
    beta_sq = 1.0 - (alpha_bar[1:] / alpha_bar[:-1]) ** 2
    return beta_sq.clamp(min=0.0, max=cap).sqrt()


def gather_steps(table: Tensor, t: int | Tensor, like: Tensor) -> Tensor:
    """``table[t]`` for a table indexed by the step t = 0..T along its first axis, shaped to
    broadcast against ``like`` (``[batch, *event]``).

    ``t`` an int (or a 0-d integer tensor): ``table[t]``, 0-d for a ``[T+1]`` table; an
    InputError outside 0..T. ``t`` a ``LongTensor[batch]`` (one step per example):
    ``[batch, *table.shape[1:], 1, …, 1]``, one trailing 1 per event dimension of ``like``
    (its values are not read back: torch's indexing refuses one outside the table).
    """
    if not isinstance(table, Tensor) or table.ndim == 0:
        raise InputError(
            f"gather_steps: table must be a tensor [T+1, …], got {describe_value(table)}"
        )
    if isinstance(t, Tensor) and t.ndim == 1 and _integer(t):
        if not isinstance(like, Tensor):
            raise InputError(
                f"gather_steps: like must be a torch.Tensor, got {describe_value(like)}"
            )
        return table[t].reshape(t.shape[0], *table.shape[1:], *([1] * (like.ndim - 1)))
    t = _step(t)
    last = table.shape[0] - 1
    if not 0 <= t <= last:
        raise InputError(f"gather_steps: timestep t={t} is outside 0..T={last}")
    return table[t]


def _integer(t: Tensor) -> bool:
    return not (t.is_floating_point() or t.is_complex() or t.dtype == torch.bool)


def _step(t: Any) -> int:
    """An int step from an int or a 0-d integer tensor (not a bool, a float, a string)."""
    if isinstance(t, Tensor):
        if t.ndim == 0 and _integer(t):
            return int(t)
    elif not isinstance(t, bool):
        try:
            return operator.index(t)
        except TypeError:
            pass
    raise InputError(
        "gather_steps: t must be an int, a 0-d integer tensor or a LongTensor[batch], "
        f"got {describe_value(t)}"
    )


def _check_tables(tables: Any) -> None:
    """A mapping of identifier names (not attributes of a module) to real tensors or numbers."""
    if not isinstance(tables, Mapping) or not tables:
        raise InputError(
            f"StepTables: tables must be a non-empty mapping of names to tensors, "
            f"got {describe_value(tables)}"
        )
    for name, value in tables.items():
        if not isinstance(name, str) or not name.isidentifier() or hasattr(nn.Module, name):
            raise InputError(
                f"StepTables: a table's name must be an identifier that no "
                f"torch.nn.Module attribute has, got {describe_value(name)}"
            )
        if (
            isinstance(value, bool)
            or not isinstance(value, (Tensor, int, float))
            or (isinstance(value, Tensor) and value.is_complex())
        ):
            raise InputError(
                f"StepTables: table {name!r} must be a real tensor, got {describe_value(value)}"
            )


class StepTables(nn.Module):
    """Named tables of per-step constants, kept exact: each is computed once in float64 (the
    master, :attr:`exact`) and held as a buffer of the same name in the module's dtype and
    device, re-cast from the master on every ``.to()``/``.double()``/``.float()``, so
    ``model.float().double()`` gives the float64 numbers back, not float32 ones widened.

    The buffers are not saved in ``state_dict``: the configuration rebuilds them.
    """

    def __init__(self, tables: Mapping[str, Tensor]):
        super().__init__()
        _check_tables(tables)
        self._master = {name: torch.as_tensor(v).to(torch.float64) for name, v in tables.items()}
        for name, value in self._master.items():
            self.register_buffer(name, value.to(torch.get_default_dtype()), persistent=False)

    @property
    def exact(self) -> Mapping[str, Tensor]:
        """Every table in float64 as computed, by name (read-only): the buffers of the same
        names are casts of these, re-derived from them on every ``.to()``."""
        return MappingProxyType(self._master)

    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        # Re-derive from the float64 master: a float32 round trip must not leak into float64.
        for name, value in self._master.items():
            now = getattr(self, name)
            setattr(self, name, value.to(device=now.device, dtype=now.dtype))
        return self
