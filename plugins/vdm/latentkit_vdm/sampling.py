"""Samplers of the continuous-time model: the reverse SDE (Euler–Maruyama) and the
probability-flow ODE (``torchdiffeq``). Both start from z_1 ~ N(0, I) and return z_0, whose
decoder p(x | z_0) = N(z_0/ᾱ_0, β̄_0²/ᾱ_0²) gives x (``decode=True``: its mean z_0/ᾱ_0).

Reverse SDE (Anderson 1982; Song et al. 2021, eq. 6), with time running from 1 to 0:

    z_{t−Δ} = z_t − [f z_t − g² s_θ(z_t, t)] Δ + g √Δ ξ,   ξ ~ N(0, I),

f z − g² s_θ = γ' β̄_t (ε̂_θ − ½ β̄_t z) (``ContinuousDiffusion.reverse_drift``). Euler–Maruyama
has weak order 1: moment errors shrink as 1/steps.

A conditional model (``VDMConfig.classes``) is sampled given ``condition`` (one label per
draw, or an ``int`` for all), and with ``guidance`` w ≥ 0 by classifier-free guidance's
ε̃ = (1 + w) ε̂_θ(z_t, t, c) − w ε̂_θ(z_t, t, ∅) in place of ε̂_θ; both are checked as
:func:`latentkit.sample` checks them.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from latentkit.arguments import check_count, check_flag
from latentkit.conditions import bind
from latentkit.diffusion import MAX_TIMESTEPS
from latentkit.ode import solve
from latentkit_vdm.arguments import check_generator, vdm_core

__all__ = ["sample_ode", "sample_sde"]


def _decode(core, z0: Tensor, decode: bool) -> Tensor:
    """z_0 itself, or (``decode``) the decoder's mean z_0/ᾱ_0 on the data's own scale: for
    binary data (``levels = 2``) the grid {−1, 1} is read back as {0, 1}, (v + 1)/2."""
    if not decode:
        return z0
    return core.decoder(z0).mean


@torch.no_grad()
def sample_sde(
    model,
    n: int,
    *,
    steps: int = 1000,
    decode: bool = False,
    generator=None,
    condition=None,
    guidance: float | None = None,
) -> Tensor:
    """n draws of z_0 by Euler–Maruyama on the reverse SDE with ``steps`` equal steps
    (1 ≤ steps ≤ ``latentkit.diffusion.MAX_TIMESTEPS``)."""
    core = _checked(model, n, decode, generator, "sample_sde")
    check_count(steps, "sample_sde: steps", high=MAX_TIMESTEPS)
    keywords = _network_keywords(model, n, condition, guidance)
    z = core.prior(n).sample() if generator is None else _normal(core, n, generator)
    dt = 1.0 / steps
    for k in range(steps, 0, -1):
        t = z.new_tensor(k * dt)
        _, g_sq = core.sde_coefficients(t)
        noise = torch.randn(z.shape, dtype=z.dtype, device=z.device, generator=generator)
        z = z - core.reverse_drift(t, z, **keywords) * dt + (g_sq * dt).sqrt() * noise
    return _decode(core, z, decode)


def _checked(model, n: int, decode: bool, generator, where: str):
    """The model's continuous-time diffusion, once the arguments both samplers share are
    checked: a ``vdm`` model, a count ``n``, a flag ``decode``, a generator or None."""
    core = vdm_core(model, where)
    check_count(n, f"{where}: n")
    check_flag(decode, f"{where}: decode")
    check_generator(generator, where, core._ref.device)
    return core


def _network_keywords(model, n: int, condition, guidance) -> dict:
    """``condition`` and ``guidance`` checked and bound for n draws (as by
    :func:`latentkit.sample`), as the keywords ``ContinuousDiffusion.eps`` takes; none for an
    unconditional model given neither."""
    p = bind(model, condition, n, guidance=guidance, sampling=True).generative
    if p.condition_spec is None:
        return {}
    return {"condition": p.condition_for(n), "guidance": p.guidance}


def _normal(core, n: int, generator) -> Tensor:
    ref = core._ref
    return torch.randn(
        (n, *core.data_shape), dtype=ref.dtype, device=ref.device, generator=generator
    )


@torch.no_grad()
def sample_ode(
    model,
    n: int,
    *,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    method: str = "dopri5",
    decode: bool = False,
    generator=None,
    condition=None,
    guidance: float | None = None,
) -> Tensor:
    """n draws of z_0 by solving the probability-flow ODE from t = 1 to t = 0.

    By :func:`latentkit.ode.solve`: the drift is only evaluated for t in [0, 1] (the solver's
    first-step probe, which would reach below 0, is clamped into the span) and adaptive
    methods step exactly onto t = 0; ``method``, ``rtol`` and ``atol`` are checked first."""
    core = _checked(model, n, decode, generator, "sample_ode")
    flow = functools.partial(
        core.probability_flow, **_network_keywords(model, n, condition, guidance)
    )
    z1 = _normal(core, n, generator)
    z0 = solve(flow, z1, 1.0, 0.0, rtol=rtol, atol=atol, method=method)
    return _decode(core, z0, decode)
