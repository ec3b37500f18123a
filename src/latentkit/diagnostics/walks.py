"""The two walks behind :func:`~latentkit.diagnostics.diagnose`: draws and their per-draw values.

* :func:`_diagnose_chain` — a chain drawn ancestrally (VAE, β-VAE, hierarchical VAE): one
  drawing pass over the data (:class:`_ChainPass`), then the mixture of the layer whose
  factor is its marginal, the joint mixture of all layers, and every layer's figures.
* :func:`_diagnose_marginals` — a layer-batched chain (a DDPM): each diagnosed layer drawn
  from its marginal q(z_l | x), its mixture taken layer by layer.

Rows are drawn ordered (draw, example) and gathered per example, ``[N, M, ...]``. Each walk
returns the fields of :class:`~latentkit.diagnostics.Diagnostics` that it measures, and
``activity_parts``: each layer's :class:`_Activity` (``None`` where there is no activity),
which :func:`_walk`'s callers pool over classes (:mod:`.conditional`) or drop.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial
from typing import Any

import attrs
import numpy as np
import torch
from einops import rearrange, repeat
from torch import Tensor
from torch.distributions import Categorical, Distribution, Independent

from latentkit.chains import LatentModel
from latentkit.diagnostics.information import (
    InformationDraws,
    _Chain,
    _sample,
    aggregate_log_prob,
)
from latentkit.diagnostics.results import LayerDiagnostics, _est, _layer_result
from latentkit.errors import EstimatorError, InputError
from latentkit.estimators import kl_or_log_ratio, per_dimension_kl
from latentkit.evaluation import seeded_eval

DIAGNOSED_TIMESTEPS = 16
"""A long layer-batched chain (a DDPM's T) is diagnosed at this many timesteps by default."""
MAX_TIMESTEPS = DIAGNOSED_TIMESTEPS  # the old name (not latentkit.diffusion.MAX_TIMESTEPS)

ROWS_PER_CALL = 8192
"""Default cap on the rows of one network call in the joint mixture (as ``layer-batched``)."""


@attrs.frozen
class _Settings:
    """:func:`~latentkit.diagnostics.diagnose`'s arguments, checked, the budget filled in."""

    batch_size: int
    m: int
    """num_draws: draws of z per example."""
    threshold: float
    """active_threshold."""
    joint: bool
    timesteps: Sequence[int] | None
    pairs_per_call: int
    keep_latents: bool


def _walk(model: LatentModel, data: Tensor, settings: _Settings, seed: int) -> dict[str, Any]:
    """The walk ``model``'s posterior chain allows, in ``eval()`` under its own random stream
    seeded with ``seed``: the fields of :class:`~latentkit.diagnostics.Diagnostics` it
    measures, and ``activity_parts``."""
    walk = _diagnose_marginals if model.posterior.layer_batched else _diagnose_chain
    with seeded_eval(model, seed):
        return walk(model, data, model.reference(), settings)


def _per_example(values: Tensor, m: int) -> Tensor:
    """Rows ordered (draw, example) → ``[examples, draws, ...]``."""
    return rearrange(values, "(m b) ... -> b m ...", m=m)


def _timesteps(model: LatentModel, timesteps: Sequence[int] | None) -> list[int]:
    """The timesteps to diagnose: ``timesteps`` checked against 1..L, else every one up to
    :data:`DIAGNOSED_TIMESTEPS`, else that many spaced geometrically from 1 to L."""
    L = model.num_layers
    if timesteps is None:
        if L <= DIAGNOSED_TIMESTEPS:
            return list(range(1, L + 1))
        grid = np.unique(np.round(np.geomspace(1, L, DIAGNOSED_TIMESTEPS)).astype(int))
        return [int(t) for t in grid]
    ts = sorted({int(t) for t in timesteps})
    if not ts or ts[0] < 1 or ts[-1] > L:
        raise InputError(f"timesteps must lie in 1..{L}, got {list(timesteps)}")
    return ts


# --------------------------------------------------------------------------- ancestral chains


def _unit_means(factor: Distribution, z: Tensor) -> Tensor:
    """E_q[u(z_d) | x] of each latent scalar d, ``[n, d, K]``: u the identity (K = 1) for a
    real-valued latent; for a categorical one the one-hot of its K categories, whose mean is
    q's probabilities (a category's index is a label, not a number to average: torch's
    ``Categorical.mean`` is NaN)."""
    base = factor
    while isinstance(base, Independent):
        base = base.base_dist
    if isinstance(base, Categorical):
        return rearrange(base.probs, "n ... k -> n (...) k")
    try:
        mean = factor.mean
    except NotImplementedError:  # a flow's q: E_q[z | x] as the mean of the m draws
        mean = z
    return rearrange(mean, "n ... -> n (...) 1")


class _Activity:
    """Streams E_q[u(z) | x] per example into A_d = Σ_k Var_x(E_q[u_k(z_d) | x]) with the
    draw-noise correction: Cov_x(E_q[z_d | x]) for a real latent (K = 1), the trace of the
    covariance of q's probabilities for a categorical one (:func:`_unit_means`)."""

    def __init__(self):
        self.means: list[Tensor] = []
        self.within: list[Tensor] = []

    def add(self, unit_means: Tensor) -> None:  # [b, M, d, K]
        """Keep one batch's per-example means ``[b, d, K]`` and, with M > 1, the spread
        within each example."""
        self.means.append(unit_means.mean(1))
        if unit_means.shape[1] > 1:
            self.within.append(unit_means.var(1).sum(0))

    def result(self, m: int) -> Tensor:
        """Activity per dimension ``[d]``, the draw noise of M draws per example taken out;
        NaN (not defined) for one example, whose variance over x does not exist."""
        means = torch.cat(self.means)
        if means.shape[0] < 2:
            return means.new_full(means.shape[1:-1], math.nan)
        a = means.var(0)
        if self.within:  # E[Var_x(mean of M)] = A + E_x Var(mean | x) / M
            a = a - torch.stack(self.within).sum(0) / means.shape[0] / m
        return a.sum(-1)


class _ChainPass:
    """One drawing pass through the chain, batch by batch: each value kept per example
    (``[b, M, ...]`` per batch), every layer's KL term, per-dimension KL and activity."""

    def __init__(self, chain: _Chain, m: int):
        L = chain.L
        self.chain, self.m = chain, m
        self.marginal = chain.marginal_layer()
        self.analytic = chain.top_down  # the engine's pairing: closed form only when aligned
        self.own_q: list[Tensor] = []  # log q(z_1..z_L | x_i)
        self.own_p: list[Tensor] = []  # log p(z_1..z_L)
        self.lik: list[Tensor] = []  # log p(x_i | z_1)
        self.layer_q: list[Tensor] = []  # log q(z_l | x_i) of the marginal layer
        self.layer_p: list[Tensor] = []  # its log p(z_l) (z_L only)
        self.terms: list[list[Tensor]] = [[] for _ in range(L)]
        self.dims: list[list[Tensor] | None] = [[] for _ in range(L)]
        self.activity = [_Activity() for _ in range(L)]
        self.draws: list[list[Tensor]] = [[] for _ in range(L)]
        self.factorized = True

    def add(self, x: Tensor) -> None:
        """One draw of z_1..z_L for each row of ``x`` (rows ordered (draw, example))."""
        chain, m = self.chain, self.m
        zs, fs = chain.draw(x)
        ps = chain.priors(zs)
        log_q = [f.log_prob(z) for f, z in zip(fs, zs)]
        log_p = [d.log_prob(z) for d, z in zip(ps, zs)]
        self.own_q.append(_per_example(sum(log_q), m))
        self.own_p.append(_per_example(sum(log_p), m))
        self.lik.append(_per_example(chain.model.generative.likelihood(zs[0]).log_prob(x), m))
        self.layer_q.append(_per_example(log_q[self.marginal - 1], m))
        self.layer_p.append(_per_example(log_p[self.marginal - 1], m))
        for l in range(chain.L):
            self._add_layer(l, fs[l], ps[l], zs[l])

    def _add_layer(self, l: int, factor: Distribution, prior: Distribution, z: Tensor) -> None:
        """Layer z_{l+1}'s KL term, per-dimension KL (while q stays factorized), activity."""
        m, analytic = self.m, self.analytic
        kl = kl_or_log_ratio(factor, prior, z, analytic=analytic)
        self.terms[l].append(_per_example(kl, m))
        dims = self.dims[l]
        if dims is not None:
            try:
                dims.append(per_dimension_kl(factor, prior, z, analytic=analytic).sum(0))
            except EstimatorError:
                self.dims[l], self.factorized = None, False
        self.activity[l].add(_per_example(_unit_means(factor, z), m))
        self.draws[l].append(_per_example(z, m))


def _diagnose_chain(
    model: LatentModel, data: Tensor, ref: Tensor, settings: _Settings
) -> dict[str, Any]:
    """A chain drawn ancestrally (VAE, β-VAE, hierarchical VAE)."""
    chain, m = _Chain(model), settings.m
    drawn = _ChainPass(chain, m)
    for xb in data.split(settings.batch_size):
        drawn.add(repeat(xb.to(ref), "b ... -> (m b) ...", m=m))
    zs_all = [torch.cat(d) for d in drawn.draws]  # [N, M, *shape]
    flat = [rearrange(z, "n m ... -> (n m) ...") for z in zs_all]
    layer_info = _marginal_layer_draws(drawn, flat[drawn.marginal - 1], data, ref, settings)
    joint_info, notes = _joint_draws(drawn, layer_info, flat, data, ref, settings)
    if not drawn.factorized:
        notes.append("no per-dimension KL: q's factors are not factorized over scalars")
    layers = _chain_layers(drawn, layer_info, data.shape[0], settings.threshold)
    log_lik = torch.cat(drawn.lik)
    expected = None if joint_info is None else joint_info.expected_kl()
    return {
        "mutual_information": None if joint_info is None else _est(joint_info.mutual_information()),
        "aggregate_kl": None if joint_info is None else _est(joint_info.aggregate_kl()),
        "expected_kl": _est(expected),
        "reconstruction": _est(log_lik),
        "elbo": _est(log_lik - torch.cat(drawn.own_q) + torch.cat(drawn.own_p)),
        "layers": layers,
        "notes": tuple(notes),
        "joint": joint_info,
        "layer_draws": {drawn.marginal: layer_info},
        "log_likelihood": log_lik,
        "latents": tuple(zs_all) if settings.keep_latents else None,
        "activity_parts": tuple(drawn.activity),
    }


def _marginal_layer_draws(
    drawn: _ChainPass, z: Tensor, data: Tensor, ref: Tensor, settings: _Settings
) -> InformationDraws:
    """The per-draw values of the layer whose factor is its marginal q(z_l | x) (z_L
    top-down, z_1 bottom-up) at its draws ``z`` (``[N·M, *shape]``); log p(z_l) for z_L."""
    chain = drawn.chain
    q = chain.model.posterior

    def factor_of_marginal(xs: Tensor) -> Distribution:
        h = q.encode(xs.to(ref))
        return q.top(h) if chain.top_down else q.first(h)

    agg = aggregate_log_prob(factor_of_marginal, z, data, pairs_per_call=settings.pairs_per_call)
    agg = rearrange(agg, "(n m) -> n m", m=settings.m)
    top_prior = torch.cat(drawn.layer_p) if drawn.marginal == chain.L else None
    return InformationDraws(torch.cat(drawn.layer_q), agg, top_prior)


def _joint_draws(
    drawn: _ChainPass,
    layer_info: InformationDraws,
    flat: Sequence[Tensor],
    data: Tensor,
    ref: Tensor,
    settings: _Settings,
) -> tuple[InformationDraws | None, list[str]]:
    """The per-draw values of all layers jointly, and the notes: for one layer its own; for
    several the joint mixture (N·M·N rows through q's factors), unless ``joint=False``."""
    chain = drawn.chain
    if chain.L == 1:
        return layer_info, []
    if not settings.joint:
        return None, ["joint decomposition skipped (joint=False)"]
    rows = min(settings.pairs_per_call, ROWS_PER_CALL)
    joint_agg = chain.aggregate_log_prob(flat, data, rows, ref)
    info = InformationDraws(
        torch.cat(drawn.own_q),
        rearrange(joint_agg, "(n m) -> n m", m=settings.m),
        torch.cat(drawn.own_p),
    )
    return info, []


def _chain_layers(
    drawn: _ChainPass, layer_info: InformationDraws, n: int, threshold: float
) -> tuple[LayerDiagnostics, ...]:
    """Each layer's figures: I_q and KL(q(z_l) ‖ p(z_l)) for the marginal layer only; the KL
    term, per-dimension KL (mean over the n examples and M draws) and activity for all."""
    chain, m = drawn.chain, drawn.m
    shapes = chain.model.generative.latent_shapes
    layers = []
    for l in range(1, chain.L + 1):
        dims = drawn.dims[l - 1]
        is_marginal = l == drawn.marginal
        layers.append(
            _layer_result(
                l,
                tuple(shapes[l - 1]),
                layer_info if is_marginal else None,
                torch.cat(drawn.terms[l - 1]),
                None if dims is None else torch.stack(dims).sum(0) / (n * m),
                drawn.activity[l - 1].result(m),
                threshold,
                _layer_note(chain.top_down, is_marginal, m),
            )
        )
    return tuple(layers)


def _layer_note(top_down: bool, is_marginal: bool, m: int) -> str:
    """Why a layer of an ancestral chain has, or lacks, its I_q; how its activity was taken."""
    if is_marginal:
        return "q(z_l|x) is the chain's " + ("top" if top_down else "first") + " factor"
    return "I_q(x; z_l) not reported: q(z_l|x) is an integral over the chain; " + (
        "activity from E_q[z_l|x] averaged over the M draws, draw noise subtracted"
        if m > 1
        else "activity biased up by the draw noise (M = 1)"
    )


# --------------------------------------------------------------------------- layer-batched chains


def _diagnose_marginals(
    model: LatentModel, data: Tensor, ref: Tensor, settings: _Settings
) -> dict[str, Any]:
    """A layer-batched chain (a DDPM): each layer drawn from its marginal q(z_l | x)."""
    shapes = model.generative.latent_shapes
    layers, draws = [], {}
    for t in _timesteps(model, settings.timesteps):
        info, kl = _marginal_draws(model, t, data, ref, settings)
        draws[t] = info
        layers.append(
            _layer_result(
                t,
                tuple(shapes[t - 1]),
                info,
                kl,
                None,
                None,
                0.0,
                "q(z_t|x) = the chain's marginal",
            )
        )
    return {
        "mutual_information": None,
        "aggregate_kl": None,
        "expected_kl": None,
        "reconstruction": None,
        "elbo": None,
        "layers": tuple(layers),
        "notes": (
            "layer-batched chain: I(x; z_t) per layer from its marginal; no joint decomposition "
            "(p(z_1..z_L) would cost L network calls per draw and example)",
        ),
        "joint": None,
        "layer_draws": draws,
        "log_likelihood": None,
        "latents": None,
        "activity_parts": None,
    }


def _marginal(model: LatentModel, t: int, xs: Tensor, ref: Tensor) -> Distribution:
    """q(z_t | x) for each row of ``xs`` (moved to the model's device and dtype)."""
    xs = xs.to(ref)
    t_rows = torch.full((xs.shape[0],), t, dtype=torch.long, device=xs.device)
    return model.posterior.marginal(t_rows, xs)


def _marginal_draws(
    model: LatentModel, t: int, data: Tensor, ref: Tensor, settings: _Settings
) -> tuple[InformationDraws, Tensor | None]:
    """Layer t's per-draw values at z ~ q(z_t | x_i), and, for t = L, its KL term."""
    m, p = settings.m, model.generative
    z_rows, own, prior, kl = [], [], [], []
    for xb in data.split(settings.batch_size):
        x = repeat(xb.to(ref), "b ... -> (m b) ...", m=m)
        f = _marginal(model, t, x, ref)
        z = _sample(f)
        z_rows.append(_per_example(z, m))
        own.append(_per_example(f.log_prob(z), m))
        if t == model.num_layers:
            prior_t = p.prior(x.shape[0])
            prior.append(_per_example(prior_t.log_prob(z), m))
            kl.append(_per_example(kl_or_log_ratio(f, prior_t, z, analytic=True), m))
    z = rearrange(torch.cat(z_rows), "n m ... -> (n m) ...")
    factor = partial(_marginal, model, t, ref=ref)
    agg = aggregate_log_prob(factor, z, data, pairs_per_call=settings.pairs_per_call)
    info = InformationDraws(
        torch.cat(own), rearrange(agg, "(n m) -> n m", m=m), torch.cat(prior) if prior else None
    )
    return info, torch.cat(kl) if kl else None
