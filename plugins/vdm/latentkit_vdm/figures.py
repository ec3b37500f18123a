"""The three likelihood figures of a continuous-time diffusion, and its per-t breakdown.

For a data set (K-level data with the discretized decoder, ``levels`` = K: 8-bit data in
[−1, 1], binary data {0, 1}, ...; or real data):

* ``discrete``: −ELBO_T of the discrete-T chain (``latentkit.elbo``, every layer's KL in
  batched calls) — a bound on −log P(x) for the discrete model at T steps;
* ``continuous``: −ELBO_∞ (one t, ε and z_0 per example, low-discrepancy t) — a bound on
  −log P(x) of the T → ∞ model (the reverse SDE's);
* ``ode``: the probability-flow ODE's density on z_0 with the decoder p(x | z_0), bounded with
  the model's own q(z_0 | x) (:func:`ode_decoder_bound`) — a bound on −log P(x) of the ODE
  model (a different model from the SDE's: no ordering with the two above);
* ``ode_direct``: −log p_ODE(x), the ODE density at the data itself
  (``latentkit.ode_log_prob``), with uniform dequantization on discrete data (also a bound
  on −log P(x) of the ODE model, in expectation; neither ODE bound is tighter in general).
  The ODE's density lives on the grid the diffusion sees: binary data enter as 2x − 1, and
  the dequantization noise spans one bin of that grid, 2/(K − 1) wide (2/255 at K = 256).

Each is a mean over examples with its standard error; bits/dim only for discrete data
with the discretized decoder. Each carries its short ``label`` (``−ELBO_T (T=1000)``,
``−ELBO_∞``, ``ODE (decoder)``, ``ODE (at x)``), the name tables and ``latentkit compare``
show it by. Each example's two ODE figures are also checked against its
own −ELBO_T (``latentkit.ode.OdeFigure``): an example whose ODE figure exceeds that bound by
more than ``ode_margin`` bits/dim (1 by default), or is not finite, is flagged — its index,
both figures and its solve's NFE listed under ``flagged`` and in ``warning`` — and the mean
and median are given with and without the flagged examples (``without_flagged``). −ELBO_T,
not −ELBO_∞, because an example's bound must be precise on its own: on 32 test digits (8-bit,
T = 1000, a model trained 600 steps) an example's −ELBO_T had a standard deviation between
draws of 0.05 bits/dim (median over examples; 0.13 at most), its −ELBO_∞ from 16 draws of t
0.39 (0.71): the latter is near the margin itself.
``per_t_breakdown`` is the diffusion term's integrand
½ γ'(t) E‖ε − ε̂_θ(z_t, t)‖² over a grid of t (nats per unit time), whose integral over
[0, 1] is the diffusion term: the continuous analogue of a DDPM's per-timestep KL.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
from torch import Tensor

import latentkit as lk
from latentkit.evaluation import Estimate, likelihood_is_discrete
from latentkit.ode import OdeFigure, OdeLogProb, ode_log_prob, prior_typical
from latentkit_vdm.arguments import (
    check_bound_call,
    check_breakdown,
    check_figures_call,
    check_figures_condition,
    check_likelihood_figures,
)

__all__ = ["likelihood_figures", "ode_decoder_bound", "per_t_breakdown", "per_t_plot"]


def _batches(data: Tensor, condition: Tensor | None, stop: int, batch_size: int, ref: Tensor):
    """``data[:stop]`` in batches on the model's device and dtype, each with its conditions
    (``None`` for an unconditional model)."""
    for i in range(0, stop, batch_size):
        j = min(i + batch_size, stop)
        c = None if condition is None else condition[i:j]
        yield data[i:j].to(device=ref.device, dtype=ref.dtype), c


@torch.no_grad()
def per_t_breakdown(
    model, data: Tensor, *, num_t: int = 64, batch_size: int = 256, seed: int = 0, condition=None
) -> dict[str, list[float]]:
    """½ γ'(t) E_{x, ε}‖ε − ε̂_θ‖² at the midpoints t_j = (j + ½)/num_t, averaged over ``data``
    with one ε per (example, t); also the mean ‖ε − ε̂_θ‖² and γ'(t). Lists, one value per t.
    A conditional model: ε̂_θ(z_t, t, c) with ``condition``, one label per example."""
    core = check_figures_call(
        model, data, "per_t_breakdown", seed=seed, num_t=num_t, batch_size=batch_size
    )
    condition = check_figures_condition(model, condition, data.shape[0], "per_t_breakdown")
    ref = core._ref
    t_grid = (torch.arange(num_t, dtype=ref.dtype, device=ref.device) + 0.5) / num_t
    sums = torch.zeros(num_t, dtype=torch.float64)
    n = data.shape[0]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for x, c in _batches(data, condition, n, batch_size, ref):
            b = x.shape[0]
            xs = x.repeat(num_t, *([1] * (x.ndim - 1)))
            ts = t_grid.repeat_interleave(b)
            cs = None if c is None else c.repeat(num_t)  # the rows of xs, in their order
            vals = core.diffusion_integrand(xs, ts, torch.randn_like(xs), condition=cs)
            sums += vals.reshape(num_t, b).double().sum(-1).cpu()
    integrand = sums / n
    _, dg = core.gamma(t_grid)
    dg = dg.double().cpu()
    return {
        "t": t_grid.double().cpu().tolist(),
        "integrand": integrand.tolist(),
        "eps_mse": (2 * integrand / dg).tolist(),
        "gamma_prime": dg.tolist(),
    }


def per_t_plot(breakdown: dict[str, list[float]], path, *, title: str | None = None):
    """Plot the per-t breakdown (integrand and ε-MSE against t) to ``path`` (PNG)."""
    check_breakdown(breakdown, path, title)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from latentkit.plots import save_figure

    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
    total = sum(breakdown["integrand"]) / len(breakdown["integrand"])
    a.plot(breakdown["t"], breakdown["integrand"], color="C0")
    a.set(xlabel="t", ylabel="nats per unit t", yscale="log")
    a.set_title(f"½ γ'(t) E‖ε − ε̂‖²  (∫ ≈ {total:.2f} nats)", fontsize=9)
    b.plot(breakdown["t"], breakdown["eps_mse"], color="C1")
    b.set(xlabel="t", ylabel="E‖ε − ε̂‖²")
    b.set_title("ε-prediction error", fontsize=9)
    for ax in (a, b):
        ax.grid(alpha=0.3)
    fig.suptitle(title or "diffusion term per t", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def ode_decoder_bound(model, x: Tensor, *, generator=None, **ode_options: Any) -> Tensor:
    """log p_ODE(z_0) + log p(x | z_0) − log q(z_0 | x) at one z_0 ~ q(z_0 | x), ``[batch]``:
    unbiased for a lower bound on log P(x).

    The probability-flow ODE defines a density on z_0 (t = 0); with the decoder p(x | z_0) it is
    a latent-variable model of x, and the model's own q(z_0 | x) = N(ᾱ_0 x, β̄_0² I) gives this
    ELBO of it (variational dequantization with a fixed q: for 8-bit data and the discretized
    decoder a bound on the discrete log P(x); for the Gaussian decoder on the density). Its
    mean over z_0 is the bound; ``ode_options`` go to :func:`latentkit.ode_log_prob`.
    """
    check_bound_call(model, x, generator, ode_options, "ode_decoder_bound")
    return _decoder_bound(model, x, generator, **ode_options)[0]


def _decoder_bound(model, x: Tensor, generator, **ode_options: Any) -> tuple[Tensor, OdeLogProb]:
    """:func:`ode_decoder_bound` and the solve's :class:`~latentkit.ode.OdeLogProb`."""
    core = model.generative.core
    q = core.marginal(x.new_zeros(()), x)
    noise = torch.randn(x.shape, dtype=x.dtype, device=x.device, generator=generator)
    z0 = q.mean + q.stddev * noise
    r = ode_log_prob(model, z0, generator=generator, validate=False, **ode_options)
    return r.log_density + core.decoder(z0).log_prob(x) - q.log_prob(z0), r


def _stratified(n: int, k: int, *, like: Tensor) -> Tensor:
    """k times per example, t_j = (u + j)/k with u ~ U(0, 1) per example: ``[n·k]``."""
    u = torch.rand(n, 1, dtype=like.dtype, device=like.device)
    grid = torch.arange(k, dtype=like.dtype, device=like.device)
    return ((u + grid) / k).reshape(-1)


class _OdeRuns(NamedTuple):
    """Per batch, the two ODE figures' values (log-likelihoods), each solve's NFE and the
    prior log-density its paths ended at; the divergence estimator the solves used."""

    ode: list[Tensor]
    ode_nfe: list[int]
    ode_prior: list[Tensor]
    direct: list[Tensor]
    direct_nfe: list[int]
    direct_prior: list[Tensor]
    divergence: str | None


def _bound_values(
    model, data: Tensor, condition: Tensor | None, batch_size: int, t_draws: int
) -> tuple[list[Tensor], list[Tensor]]:
    """Per batch, ELBO_T of the discrete chain and ELBO_∞ averaged over ``t_draws``
    stratified draws of (t, ε, z_0) per example (float64, on the CPU); given the examples'
    ``condition`` for a conditional model."""
    ref = model.generative.core._ref
    disc, cont = [], []
    for x, c in _batches(data, condition, data.shape[0], batch_size, ref):
        disc.append(lk.elbo(model, x, condition=c).total.double().cpu())
        reps = x.repeat_interleave(t_draws, dim=0)
        cr = None if c is None else c.repeat_interleave(t_draws)  # as the rows of reps
        t = _stratified(x.shape[0], t_draws, like=x)
        total = model.continuous_elbo(reps, t=t, condition=cr).total
        total = total.reshape(-1, t_draws).mean(-1)
        cont.append(total.double().cpu())
    return disc, cont


def _ode_values(
    model, data: Tensor, condition, m: int, batch_size: int, gen, is_discrete: bool, ode_options
) -> _OdeRuns:
    """The two ODE figures on the first ``m`` examples, their noise drawn from ``gen``: the
    decoder bound on z_0 and the density at the data (dequantized over one bin of the grid
    the diffusion sees when ``is_discrete``); a conditional model's ODE is the flow given
    each batch's ``condition`` (its view ``model.given(c)``)."""
    core = model.generative.core
    runs = _OdeRuns([], [], [], [], [], [], None)
    for x, c in _batches(data, condition, m, batch_size, core._ref):
        flow = model if c is None else model.given(c, validate=False)
        bound, rd = _decoder_bound(flow, x, gen, **ode_options)
        runs.ode.append(bound.double().cpu())
        runs.ode_nfe.append(rd.nfe)
        runs.ode_prior.append(rd.prior_log_prob.double().cpu())
        r = ode_log_prob(
            flow,
            core.on_grid(x),
            dequantize=is_discrete,
            generator=gen,
            **{"bin_width": core.bin_width if is_discrete else None, **ode_options},
        )
        runs.direct.append((r.log_prob_bound if is_discrete else r.log_density).double().cpu())
        runs.direct_nfe.append(r.nfe)
        runs.direct_prior.append(r.prior_log_prob.double().cpu())
        runs = runs._replace(divergence=r.divergence)
    return runs


def _figure(
    values: list[Tensor], what: str, bound: str, label: str, bits_scale: float | None
) -> dict:
    """Mean (with its standard error) and median of −``values`` in nats, and in bits/dim
    when ``bits_scale`` (D log 2, discrete data) is given; ``label`` its short name."""
    nll = -torch.cat(values)
    nats = Estimate.of(nll)
    out = {
        "what": what,
        "bound": bound,
        "label": label,
        "nll_nats": nats.to_json(),
        "median_nll_nats": float(nll.median()),
        "bits_per_dim": None,
    }
    if bits_scale is not None:
        out["bits_per_dim"] = Estimate(nats.mean / bits_scale, nats.stderr / bits_scale).to_json()
        out["median_bits_per_dim"] = float(nll.median()) / bits_scale
    return out


class _Flagging(NamedTuple):
    """What every ODE figure is checked against: each example's own −ELBO_T (``reference``,
    ``bound``), the flagging margin and the prior's typical log-density (mean, sd)."""

    bound: Tensor
    reference: str
    data_dims: int
    margin: float
    typical: tuple[float, float]
    bits: bool


def _flagged(
    values: list[Tensor],
    nfe: list[int],
    prior: list[Tensor],
    what: str,
    bound: str,
    label: str,
    *,
    against: _Flagging,
    divergence: str | None,
) -> dict[str, Any]:
    """The ODE figure, each example against its own −ELBO_T (flagged ones listed, each
    with the prior log-density its path ended at, in the prior's own sds); ``label`` its
    short name."""
    sizes = [v.numel() for v in values]
    fig = OdeFigure(
        ode=-torch.cat(values),
        bound=against.bound,
        nfe=torch.repeat_interleave(torch.tensor(nfe), torch.tensor(sizes)),
        solve_nfe=tuple(nfe),
        data_dims=against.data_dims,
        margin=against.margin,
        what=what,
        reference=against.reference,
        divergence=divergence,
        prior_sds=(torch.cat(prior) - against.typical[0]) / against.typical[1],
    )
    return {**fig.to_json(bits=against.bits), "bound": bound, "label": label}


@torch.no_grad()
def likelihood_figures(
    model,
    data: Tensor,
    *,
    discrete: bool | None = None,
    batch_size: int = 100,
    ode_examples: int | None = 100,
    seed: int = 0,
    num_t: int = 64,
    t_draws: int = 16,
    ode_margin: float | None = None,
    condition=None,
    **ode_options: Any,
) -> dict[str, Any]:
    """The discrete-T bound, the continuous bound and the ODE likelihood over ``data``, and
    the per-t breakdown, as plain JSON values (``docs/continuous.md``); a conditional
    model's given ``condition``: bounds on −log p(x | c), the ODE the flow given c.

    Args:
        model: a ``vdm`` model.
        data: ``[N, *data_shape]``.
        discrete: whether the data are discrete (K-level, ``levels``); ``None`` trusts the
            decoder. Bits/dim and the ODE's dequantization need it.
        batch_size: examples per call for the two bounds.
        ode_examples: the first this many examples get the ODE likelihood (``None``: all;
            0: none, and ``ode``/``ode_direct`` are ``None``); it costs one adaptive ODE
            solve per batch.
        seed: the evaluation's own random stream.
        num_t: grid points of the per-t breakdown.
        t_draws: draws of (t, ε, z_0) per example for −ELBO_∞, averaged (low-discrepancy t
            over each example's draws).
        ode_margin: bits/dim by which an example's ODE figure may exceed its own −ELBO_T
            before it is flagged; ``None``: ``latentkit.ode.ODE_FLAG_MARGIN`` (1).
        condition: a conditional model's labels ``[N]``, one per example (else refused).
        **ode_options: passed to :func:`latentkit.ode_log_prob` (``rtol``, ``atol``, ...).
    """
    c, margin = check_likelihood_figures(
        model, data, condition, seed=seed, discrete=discrete, ode_examples=ode_examples,
        ode_margin=ode_margin, ode_options=ode_options, batch_size=batch_size, num_t=num_t,
        t_draws=t_draws,
    )  # fmt: skip
    is_discrete = likelihood_is_discrete(model) if discrete is None else bool(discrete)
    m = data.shape[0] if ode_examples is None else min(ode_examples, data.shape[0])
    was_training = model.training
    model.eval()
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            disc, cont = _bound_values(model, data, c, batch_size, t_draws)
            gen = torch.Generator(device=model.generative.core._ref.device).manual_seed(seed)
            typical = prior_typical(model, seed)
            runs = _ode_values(model, data, c, m, batch_size, gen, is_discrete, ode_options)
        breakdown = per_t_breakdown(model, data, num_t=num_t, seed=seed, condition=c)
    finally:
        model.train(was_training)
    T = model.generative.num_timesteps
    against = _Flagging(
        -torch.cat(disc)[:m], f"−ELBO_T, T = {T}", model.data_dims, margin, typical, is_discrete
    )
    return _report(disc, cont, runs, against, breakdown, seed=seed, num_timesteps=T)


def _report(
    disc: list[Tensor],
    cont: list[Tensor],
    runs: _OdeRuns,
    against: _Flagging,
    breakdown: dict,
    *,
    seed: int,
    num_timesteps: int,
) -> dict[str, Any]:
    """:func:`likelihood_figures`' JSON from the values it computed."""
    bits = against.data_dims * math.log(2.0) if against.bits else None
    none = not runs.ode_nfe  # no ODE example was asked for (ode_examples = 0)
    flag = {"against": against, "divergence": runs.divergence}
    discrete_label = f"−ELBO_T (T={num_timesteps})"
    return {
        "discrete": {
            **_figure(disc, against.reference, "upper bound", discrete_label, bits),
            "num_timesteps": num_timesteps,
        },
        "continuous": _figure(cont, "−ELBO_∞ (T → ∞)", "upper bound", "−ELBO_∞", bits),
        "ode": None
        if none
        else _flagged(
            runs.ode,
            runs.ode_nfe,
            runs.ode_prior,
            "−E_q[log p_ODE(z_0) + log p(x|z_0) − log q(z_0|x)]: the ODE density on z_0 "
            "with the decoder",
            "upper bound in expectation",
            "ODE (decoder)",
            **flag,
        ),
        "ode_direct": None
        if none
        else _flagged(
            runs.direct,
            runs.direct_nfe,
            runs.direct_prior,
            "−log p_ODE(x), the ODE density at the data"
            + (" with uniform dequantization" if against.bits else ""),
            "upper bound in expectation" if against.bits else "exact up to solver tolerance",
            "ODE (at x)",
            **flag,
        ),
        "per_t": breakdown,
        "discrete_data": against.bits,
        "seed": seed,
    }
