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
the estimate of A_d unbiased (M ≥ 2).

The DDPM (a layer-batched chain with a fixed q): I(x_0; x_t) along t, which decreases in t
(data processing; :func:`gaussian_diffusion_information` is its closed form for Gaussian
data), and at t = T the decomposition of the prior-matching term. Collapse diagnostics do
not apply to a q without parameters.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch
from einops import rearrange, repeat
from rich.table import Table
from rich.text import Text
from torch import Tensor
from torch.distributions import Distribution

from latentkit.chains import LatentModel
from latentkit.errors import EstimatorError, InputError
from latentkit.estimators import kl_or_log_ratio, per_dimension_kl
from latentkit.evaluation import Estimate, check_likelihood_support
from latentkit.validation import check_data, check_positive_int

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

METRIC_KEYS = ("mutual_information", "aggregate_kl", "expected_kl", "active_units", "latent_dims")
"""Keys of :meth:`Diagnostics.metrics`: what a ``metrics.jsonl`` line carries for
:func:`training_diagnostics_plot` (with ``step``)."""

MAX_TIMESTEPS = 16
"""A long layer-batched chain (a DDPM's T) is diagnosed at this many timesteps by default."""

ELEMENTS_PER_CALL = 1 << 22
"""Default budget of one mixture evaluation: (draw, example) pairs × the latent's size."""

ROWS_PER_CALL = 8192
"""Default cap on the rows of one network call in the joint mixture (as ``layer-batched``)."""


# --------------------------------------------------------------------------- per-draw values


@attrs.frozen(eq=False)
class InformationDraws:
    """Per-draw values of one latent (a layer, or all layers jointly), each ``[N, M]``:
    example i, draw m of z ~ q(z | x_i).

    ``log_prior`` is ``None`` where p(z) is not tractable (a layer below the top).
    """

    log_q_conditional: Tensor
    """log q(z | x_i)."""
    log_q_aggregate: Tensor
    """log q(z) = logsumexp_n log q(z | x_n) − log N."""
    log_prior: Tensor | None
    """log p(z)."""

    def mutual_information(self) -> Tensor:
        """log q(z|x_i) − log q(z): averages to I_q(x; z); each value ≤ log N."""
        return self.log_q_conditional - self.log_q_aggregate

    def aggregate_kl(self) -> Tensor | None:
        """log q(z) − log p(z): averages to KL(q(z) ‖ p(z))."""
        return None if self.log_prior is None else self.log_q_aggregate - self.log_prior

    def expected_kl(self) -> Tensor | None:
        """log q(z|x_i) − log p(z): averages to E_x KL(q(z|x) ‖ p(z))."""
        return None if self.log_prior is None else self.log_q_conditional - self.log_prior


def aggregate_log_prob(
    posterior: Callable[[Tensor], Distribution],
    z: Tensor,
    data: Tensor,
    *,
    pairs_per_call: int = 1 << 16,
) -> Tensor:
    """log q(z) = logsumexp_n log q(z | x_n) − log N for each row of ``z``, ``[m]``.

    ``posterior(x)`` returns q(z | x) with ``batch_shape [len(x)]``; its ``log_prob`` must
    broadcast ``[m, 1, *event]`` against it (every torch distribution does). The sum over
    the N examples runs in chunks, each q(z | x_n) built once and evaluated at every row of
    ``z``, at most ``pairs_per_call`` (row, example) pairs at a time, with a running
    logsumexp: memory O(pairs_per_call · event + N · parameters), never N × m.
    """
    check_positive_int(pairs_per_call, "pairs_per_call")
    n, m = data.shape[0], z.shape[0]
    rows = min(m, max(1, math.isqrt(pairs_per_call)))
    chunk = max(1, pairs_per_call // rows)
    factors = [posterior(xs) for xs in data.split(chunk)]
    out = []
    for zs in z.split(rows):
        zs = zs.unsqueeze(1)  # [rows, 1, *event] against batch [chunk]
        total = torch.stack([torch.logsumexp(f.log_prob(zs), dim=1) for f in factors])
        out.append(torch.logsumexp(total, dim=0))
    return torch.cat(out) - math.log(n)


def _sample(d: Distribution) -> Tensor:
    return d.sample()  # under no_grad: no reparameterization needed


def _flat(z: Tensor) -> Tensor:
    return rearrange(z, "n ... -> n (...)")


class _Chain:
    """The posterior chain walked in one direction: draws, factors, and the joint density.

    Top-down: z_L ~ q(z_L | x), z_{l-1} ~ q(z_{l-1} | z_l, x); bottom-up: z_1 ~ q(z_1 | x),
    z_l ~ q(z_l | z_{l-1}, x). ``factors[l-1]`` is the factor z_l was drawn from and
    ``priors[l-1]`` its p-factor (p(z_l | z_{l+1}), the prior for z_L), paired as the ELBO
    engine pairs them (``latentkit.estimators``).
    """

    def __init__(self, model: LatentModel):
        self.model, self.L = model, model.num_layers
        self.top_down = model.posterior.top_down

    def factors(self, zs: Sequence[Tensor], x: Tensor) -> list[Distribution]:
        """q's factor of each latent at the draws ``zs`` (z_1..z_L, batch as ``x``)."""
        q, L = self.model.posterior, self.L
        h = q.encode(x)
        if self.top_down:
            return [q.down(l + 1, zs[l], h) for l in range(1, L)] + [q.top(h)]
        return [q.first(h)] + [q.up(l, zs[l - 2], h) for l in range(2, L + 1)]

    def draw(self, x: Tensor) -> tuple[list[Tensor], list[Distribution]]:
        """One draw of z_1..z_L ~ q(· | x) and the factor each came from."""
        q, L = self.model.posterior, self.L
        h = q.encode(x)
        zs: list[Tensor | None] = [None] * L
        fs: list[Distribution | None] = [None] * L
        order = range(L, 0, -1) if self.top_down else range(1, L + 1)
        for l in order:
            if self.top_down:
                f = q.top(h) if l == L else q.down(l + 1, zs[l], h)
            else:
                f = q.first(h) if l == 1 else q.up(l, zs[l - 2], h)
            fs[l - 1], zs[l - 1] = f, _sample(f)
        return zs, fs

    def priors(self, zs: Sequence[Tensor]) -> list[Distribution]:
        p, L = self.model.generative, self.L
        return [p.transition(l + 1, zs[l]) for l in range(1, L)] + [p.prior(zs[0].shape[0])]

    def log_prob(self, zs: Sequence[Tensor], x: Tensor) -> Tensor:
        """log q(z_1..z_L | x), ``[n]`` (rows of ``zs`` paired with rows of ``x``)."""
        return sum(f.log_prob(z) for f, z in zip(self.factors(zs, x), zs))

    def marginal_layer(self) -> int:
        """The layer whose factor is its marginal q(z_l | x): L top-down, 1 bottom-up."""
        return self.L if self.top_down else 1

    def aggregate_log_prob(
        self, zs: Sequence[Tensor], data: Tensor, pairs_per_call: int, to: Tensor
    ) -> Tensor:
        """log q(z_1..z_L) = logsumexp_n log q(z_1..z_L | x_n) − log N, ``[m]``: each draw
        paired with every example through the chain's factors, chunked."""
        m, n = zs[0].shape[0], data.shape[0]
        rows = min(m, max(1, math.isqrt(pairs_per_call)))
        chunk = max(1, pairs_per_call // rows)
        out = []
        for start in range(0, m, rows):
            block = [z[start : start + rows] for z in zs]
            r = block[0].shape[0]
            running = None
            for xs in data.split(chunk):
                xs = xs.to(to)
                c = xs.shape[0]
                pairs = [repeat(z, "r ... -> (r c) ...", c=c) for z in block]
                lp = self.log_prob(pairs, repeat(xs, "c ... -> (r c) ...", r=r))
                s = torch.logsumexp(rearrange(lp, "(r c) -> r c", c=c), dim=1)
                running = s if running is None else torch.logaddexp(running, s)
            out.append(running)
        return torch.cat(out) - math.log(n)


# --------------------------------------------------------------------------- results


@attrs.frozen(eq=False)
class LayerDiagnostics:
    """What is known of latent layer z_l (``layer`` l; z_1 next to the data).

    Figures in nats per example; ``None`` where the layer's marginal (or p's) is not
    tractable, or where the figure does not apply (a DDPM's fixed q has no units).
    """

    layer: int
    shape: tuple[int, ...]
    mutual_information: Estimate | None
    """I_q(x; z_l), where q(z_l | x) is known."""
    aggregate_kl: Estimate | None
    """KL(q(z_l) ‖ p(z_l)), for z_L (p(z_L) the prior) when q(z_L | x) is known."""
    expected_kl: Estimate | None
    """E_x E_q[log q(z_l|x) − log p(z_l)] at the same draws: I + aggregate KL, per draw."""
    kl_term: Estimate | None
    """The ELBO's KL term of z_l (closed form where torch has it, else the log-ratio)."""
    per_dimension_kl: Tensor | None
    """``[d_l]``: that term per scalar, E over the data and draws (factorized q only)."""
    activity: Tensor | None
    """``[d_l]``: A_d = Cov_x(E_q[z_d | x]), bias-corrected for conditional layers (M ≥ 2)."""
    active: Tensor | None
    """``[d_l]`` bool: A_d > the threshold."""
    note: str = ""

    @property
    def name(self) -> str:
        return f"z{self.layer}"

    @property
    def dims(self) -> int:
        return math.prod(self.shape)

    def to_json(self) -> dict[str, Any]:
        def est(e: Estimate | None):
            return None if e is None else e.to_json()

        def vec(t: Tensor | None):
            return None if t is None else t.tolist()

        return {
            "layer": self.layer,
            "shape": list(self.shape),
            "mutual_information": est(self.mutual_information),
            "aggregate_kl": est(self.aggregate_kl),
            "expected_kl": est(self.expected_kl),
            "kl_term": est(self.kl_term),
            "per_dimension_kl": vec(self.per_dimension_kl),
            "activity": vec(self.activity),
            "active": vec(self.active),
            "active_units": None if self.active is None else int(self.active.sum()),
            "note": self.note,
        }


@attrs.frozen(eq=False)
class Diagnostics:
    """What :func:`diagnose` found. Nats per example; each :class:`Estimate` is a mean over
    the N·M draws with its standard error.

    The decomposition (``None`` for a layer-batched chain, see the module docstring)::

        elbo = reconstruction − expected_kl
        expected_kl = mutual_information + aggregate_kl     (per draw, to round-off)
    """

    num_examples: int
    num_draws: int
    mutual_information: Estimate | None
    """I_q(x; z) of all latents jointly; 0 ≤ I_q ≤ log N."""
    aggregate_kl: Estimate | None
    """KL(q(z) ‖ p(z)) of all latents jointly."""
    expected_kl: Estimate | None
    """E_x KL(q(z|x) ‖ p(z)), the ELBO's total KL, as E[log q(z|x) − log p(z)]."""
    reconstruction: Estimate | None
    """E[log p(x | z_1)] at the same draws."""
    elbo: Estimate | None
    """reconstruction − expected_kl, per draw."""
    layers: tuple[LayerDiagnostics, ...]
    active_threshold: float
    seed: int
    seconds: float
    notes: tuple[str, ...] = ()
    joint: InformationDraws | None = attrs.field(default=None, repr=False)
    """The per-draw values behind the joint figures."""
    layer_draws: Mapping[int, InformationDraws] = attrs.field(factory=dict, repr=False)
    """Per-draw values behind each layer's figures, by layer."""
    log_likelihood: Tensor | None = attrs.field(default=None, repr=False)
    """``[N, M]`` log p(x_i | z_1) at the draws."""
    latents: tuple[Tensor, ...] | None = attrs.field(default=None, repr=False)
    """With ``keep_latents=True``: the draws z_1..z_L, each ``[N, M, *shape]``."""

    @property
    def log_n(self) -> float:
        """log N, the most I_q can be for N examples."""
        return math.log(self.num_examples)

    def _cat(self, field: str) -> Tensor | None:
        parts = [getattr(layer, field) for layer in self.layers]
        if not parts or any(p is None for p in parts):
            return None
        return torch.cat(parts)

    @property
    def per_dimension_kl(self) -> Tensor | None:
        """Every latent scalar's KL term, z_1's first (``[Σ_l d_l]``), or None."""
        return self._cat("per_dimension_kl")

    @property
    def activity(self) -> Tensor | None:
        """Cov_x(E_q[z_d | x]) of every latent scalar, z_1's first, or None."""
        return self._cat("activity")

    @property
    def active_mask(self) -> Tensor | None:
        """Which latent scalars are active (z_1's first), or None."""
        return self._cat("active")

    @property
    def active_units(self) -> int | None:
        """How many latent scalars are active (Burda et al. 2016)."""
        mask = self.active_mask
        return None if mask is None else int(mask.sum())

    @property
    def latent_dims(self) -> int:
        return sum(layer.dims for layer in self.layers)

    @property
    def collapsed(self) -> tuple[str, ...]:
        """The inactive latent scalars, ``"z1[3]"``; a layer with none active as ``"z2"``."""
        out: list[str] = []
        for layer in self.layers:
            if layer.active is None:
                continue
            idle = (~layer.active).nonzero().flatten().tolist()
            if idle and len(idle) == layer.dims:
                out.append(layer.name)
            else:
                out.extend(f"{layer.name}[{d}]" for d in idle)
        return tuple(out)

    @property
    def verdict(self) -> str:
        """One sentence per layer: how many units are active, which collapsed."""
        lines = []
        for layer in self.layers:
            if layer.active is None:
                continue
            n_active, d = int(layer.active.sum()), layer.dims
            if n_active == d:
                lines.append(f"{layer.name}: all {d} units active")
                continue
            idle = (~layer.active).nonzero().flatten().tolist()
            kl = ""
            if layer.per_dimension_kl is not None:
                kl = f"; their KL at most {float(layer.per_dimension_kl[idle].max()):.3g} nats"
            if n_active == 0:
                lines.append(f"{layer.name}: collapsed, no unit of {d} active{kl}")
            else:
                shown = ", ".join(str(i) for i in idle[:12]) + (" …" if len(idle) > 12 else "")
                lines.append(
                    f"{layer.name}: {n_active} of {d} units active; inactive: [{shown}]{kl}"
                )
        if not lines:
            return "no collapse diagnostics for this model (its q has no units to collapse)"
        return "; ".join(lines) + f" (active: Cov_x E[z_d|x] > {self.active_threshold:g})"

    def metrics(self) -> dict[str, float | int | None]:
        """The figures a training run logs (:data:`METRIC_KEYS`); add ``step`` to the line."""

        def mean(e: Estimate | None) -> float | None:
            return None if e is None else e.mean

        return {
            "mutual_information": mean(self.mutual_information),
            "aggregate_kl": mean(self.aggregate_kl),
            "expected_kl": mean(self.expected_kl),
            "active_units": self.active_units,
            "latent_dims": self.latent_dims,
        }

    def to_json(self) -> dict[str, Any]:
        """Plain JSON values (missing figures are ``null``)."""

        def est(e: Estimate | None):
            return None if e is None else e.to_json()

        return {
            "units": "nats per example",
            "num_examples": self.num_examples,
            "num_draws": self.num_draws,
            "log_n": self.log_n,
            "elbo": est(self.elbo),
            "reconstruction": est(self.reconstruction),
            "expected_kl": est(self.expected_kl),
            "mutual_information": est(self.mutual_information),
            "aggregate_kl": est(self.aggregate_kl),
            "active_threshold": self.active_threshold,
            "active_units": self.active_units,
            "latent_dims": self.latent_dims,
            "collapsed": list(self.collapsed),
            "verdict": self.verdict,
            "layers": [layer.to_json() for layer in self.layers],
            "notes": list(self.notes),
            "seed": self.seed,
            "seconds": round(self.seconds, 3),
        }


# --------------------------------------------------------------------------- the estimators


def _devices(ref: Tensor) -> list[int]:
    return [ref.device.index or 0] if ref.device.type == "cuda" else []


def _per_example(values: Tensor, m: int) -> Tensor:
    """Rows ordered (draw, example) → ``[examples, draws, ...]``."""
    return rearrange(values, "(m b) ... -> b m ...", m=m)


def _timesteps(model: LatentModel, timesteps: Sequence[int] | None) -> list[int]:
    L = model.num_layers
    if timesteps is None:
        if L <= MAX_TIMESTEPS:
            return list(range(1, L + 1))
        grid = np.unique(np.round(np.geomspace(1, L, MAX_TIMESTEPS)).astype(int))
        return [int(t) for t in grid]
    ts = sorted({int(t) for t in timesteps})
    if not ts or ts[0] < 1 or ts[-1] > L:
        raise InputError(f"timesteps must lie in 1..{L}, got {list(timesteps)}")
    return ts


class _Activity:
    """Streams E_q[z | x] per example into Cov_x(E_q[z_d | x]) with the draw-noise correction."""

    def __init__(self):
        self.means: list[Tensor] = []
        self.within: list[Tensor] = []

    def add(self, factor_means: Tensor) -> None:  # [b, M, d]
        self.means.append(factor_means.mean(1))
        if factor_means.shape[1] > 1:
            self.within.append(factor_means.var(1).sum(0))

    def result(self, m: int) -> Tensor:
        means = torch.cat(self.means)
        a = means.var(0) if means.shape[0] > 1 else torch.zeros_like(means[0])
        if self.within:  # E[Var_x(mean of M)] = A + E_x Var(mean | x) / M
            a = a - torch.stack(self.within).sum(0) / means.shape[0] / m
        return a


def _est(values: Tensor | None) -> Estimate | None:
    return None if values is None else Estimate.of(values.flatten())


@torch.no_grad()
def diagnose(
    model: LatentModel,
    data: Tensor,
    *,
    batch_size: int = 500,
    num_draws: int = 4,
    active_threshold: float = 0.01,
    joint: bool = True,
    timesteps: Sequence[int] | None = None,
    pairs_per_call: int | None = None,
    keep_latents: bool = False,
    seed: int = 0,
) -> Diagnostics:
    """ELBO surgery and collapse diagnostics of ``model`` over ``data`` (module docstring).

    Args:
        model: any :class:`~latentkit.LatentModel`; put in ``eval()`` for the call and
            restored after.
        data: ``[N, *model.data_shape]``, the N examples whose aggregate posterior q(z) is
            taken (moved to the model's device and dtype chunk by chunk). The mixture costs
            O(N² · M) density evaluations: for a large data set pass a random subset (I_q of
            N examples is at most log N).
        batch_size: examples per drawing pass.
        num_draws: M, draws of z per example (≥ 2 makes the activity of a conditional layer
            unbiased).
        active_threshold: a unit is active when Cov_x(E_q[z_d | x]) exceeds it.
        joint: compute the decomposition of all layers jointly for a multi-layer chain
            (N·M·N rows through q's factors); for one layer it is that layer's and free.
        timesteps: a layer-batched chain's layers to diagnose (default: all when L ≤ 16,
            else 16 from 1 to L, spaced geometrically).
        pairs_per_call: the most (draw, example) pairs per evaluation, which bounds the
            memory; ``None``: :data:`ELEMENTS_PER_CALL` / (the largest latent's size) for a
            layer's mixture, and at most :data:`ROWS_PER_CALL` rows per network call for the
            joint of a multi-layer chain.
        keep_latents: keep the draws z_1..z_L in the result (``latents``).
        seed: seed of the diagnostics' own random stream (the caller's is untouched).
    """
    if not isinstance(model, LatentModel):
        raise InputError(f"model must be a latentkit.LatentModel, got {type(model).__name__}")
    check_positive_int(batch_size, "batch_size")
    check_positive_int(num_draws, "num_draws")
    if pairs_per_call is not None:
        check_positive_int(pairs_per_call, "pairs_per_call")
    if not (isinstance(active_threshold, (int, float)) and active_threshold >= 0):
        raise InputError(f"active_threshold must be a number ≥ 0, got {active_threshold!r}")
    ref = model.reference()
    if not isinstance(data, Tensor):
        raise InputError(f"data must be a torch.Tensor, got {type(data).__name__}")
    check_data(model, data[:1].to(device=ref.device, dtype=ref.dtype), name="data")
    check_likelihood_support(model, data, name="data")
    if pairs_per_call is None:
        size = max(math.prod(s) for s in model.generative.latent_shapes)
        pairs_per_call = max(1, ELEMENTS_PER_CALL // size)
    was_training = model.training
    model.eval()
    start = time.perf_counter()
    try:
        with torch.random.fork_rng(devices=_devices(ref)):
            torch.manual_seed(seed)
            if model.posterior.layer_batched:
                result = _diagnose_marginals(
                    model, data, ref, batch_size, num_draws, timesteps, pairs_per_call
                )
            else:
                result = _diagnose_chain(
                    model,
                    data,
                    ref,
                    batch_size,
                    num_draws,
                    active_threshold,
                    joint,
                    pairs_per_call,
                    keep_latents,
                )
    finally:
        model.train(was_training)
    return Diagnostics(
        num_examples=data.shape[0],
        num_draws=num_draws,
        active_threshold=float(active_threshold),
        seed=seed,
        seconds=time.perf_counter() - start,
        **result,
    )


def _layer_result(
    layer: int,
    shape: tuple[int, ...],
    info: InformationDraws | None,
    kl_term: Tensor | None,
    per_dim: Tensor | None,
    activity: Tensor | None,
    threshold: float,
    note: str,
) -> LayerDiagnostics:
    return LayerDiagnostics(
        layer=layer,
        shape=shape,
        mutual_information=None if info is None else _est(info.mutual_information()),
        aggregate_kl=None if info is None else _est(info.aggregate_kl()),
        expected_kl=None if info is None else _est(info.expected_kl()),
        kl_term=_est(kl_term),
        per_dimension_kl=per_dim,
        activity=activity,
        active=None if activity is None else activity > threshold,
        note=note,
    )


def _diagnose_chain(
    model: LatentModel,
    data: Tensor,
    ref: Tensor,
    batch_size: int,
    m: int,
    threshold: float,
    joint: bool,
    pairs_per_call: int,
    keep_latents: bool,
) -> dict[str, Any]:
    """A chain drawn ancestrally (VAE, β-VAE, hierarchical VAE)."""
    chain, L = _Chain(model), model.num_layers
    p = model.generative
    analytic = chain.top_down  # the engine's pairing: closed form only when aligned with p
    own_q, own_p, lik = [], [], []
    layer_q = []  # log q(z_l | x_i) of the marginal layer
    layer_p = []  # its log p(z_l) (z_L only)
    terms: list[list[Tensor]] = [[] for _ in range(L)]
    dims: list[list[Tensor] | None] = [[] for _ in range(L)]
    activity = [_Activity() for _ in range(L)]
    draws: list[list[Tensor]] = [[] for _ in range(L)]
    marginal = chain.marginal_layer()
    factorized = True
    for xb in data.split(batch_size):
        xb = xb.to(ref)
        x = repeat(xb, "b ... -> (m b) ...", m=m)
        zs, fs = chain.draw(x)
        ps = chain.priors(zs)
        log_q = [f.log_prob(z) for f, z in zip(fs, zs)]
        log_p = [d.log_prob(z) for d, z in zip(ps, zs)]
        own_q.append(_per_example(sum(log_q), m))
        own_p.append(_per_example(sum(log_p), m))
        lik.append(_per_example(p.likelihood(zs[0]).log_prob(x), m))
        layer_q.append(_per_example(log_q[marginal - 1], m))
        layer_p.append(_per_example(log_p[marginal - 1], m))
        for l in range(L):
            kl = kl_or_log_ratio(fs[l], ps[l], zs[l], analytic=analytic)
            terms[l].append(_per_example(kl, m))
            if dims[l] is not None:
                try:
                    d = per_dimension_kl(fs[l], ps[l], zs[l], analytic=analytic)
                    dims[l].append(d.sum(0))
                except EstimatorError:
                    dims[l], factorized = None, False
            activity[l].add(_per_example(_flat(fs[l].mean), m))
            draws[l].append(_per_example(zs[l], m))
    n = data.shape[0]
    zs_all = [torch.cat(d) for d in draws]  # [N, M, *shape]
    flat = [rearrange(z, "n m ... -> (n m) ...") for z in zs_all]
    q = model.posterior

    def factor_of_marginal(xs: Tensor) -> Distribution:
        h = q.encode(xs.to(ref))
        return q.top(h) if chain.top_down else q.first(h)

    agg = aggregate_log_prob(
        factor_of_marginal, flat[marginal - 1], data, pairs_per_call=pairs_per_call
    )
    agg = rearrange(agg, "(n m) -> n m", m=m)
    top_prior = torch.cat(layer_p) if marginal == L else None
    layer_info = InformationDraws(torch.cat(layer_q), agg, top_prior)
    notes = []
    joint_info = None
    if L == 1:
        joint_info = layer_info
    elif joint:
        rows = min(pairs_per_call, ROWS_PER_CALL)
        joint_agg = chain.aggregate_log_prob(flat, data, rows, ref)
        joint_info = InformationDraws(
            torch.cat(own_q), rearrange(joint_agg, "(n m) -> n m", m=m), torch.cat(own_p)
        )
    else:
        notes.append("joint decomposition skipped (joint=False)")
    if not factorized:
        notes.append("no per-dimension KL: q's factors are not factorized over scalars")
    layers = []
    for l in range(1, L + 1):
        is_marginal = l == marginal
        if is_marginal:
            note = "q(z_l|x) is the chain's " + ("top" if chain.top_down else "first") + " factor"
        else:
            note = "I_q(x; z_l) not reported: q(z_l|x) is an integral over the chain; " + (
                "activity from E_q[z_l|x] averaged over the M draws, draw noise subtracted"
                if m > 1
                else "activity biased up by the draw noise (M = 1)"
            )
        layers.append(
            _layer_result(
                l,
                tuple(p.latent_shapes[l - 1]),
                layer_info if is_marginal else None,
                torch.cat(terms[l - 1]),
                None if dims[l - 1] is None else torch.stack(dims[l - 1]).sum(0) / (n * m),
                activity[l - 1].result(m),
                threshold,
                note,
            )
        )
    log_lik = torch.cat(lik)
    expected = None if joint_info is None else joint_info.expected_kl()
    return {
        "mutual_information": None if joint_info is None else _est(joint_info.mutual_information()),
        "aggregate_kl": None if joint_info is None else _est(joint_info.aggregate_kl()),
        "expected_kl": _est(expected),
        "reconstruction": _est(log_lik),
        "elbo": _est(log_lik - torch.cat(own_q) + torch.cat(own_p)),
        "layers": tuple(layers),
        "notes": tuple(notes),
        "joint": joint_info,
        "layer_draws": {marginal: layer_info},
        "log_likelihood": log_lik,
        "latents": tuple(zs_all) if keep_latents else None,
    }


def _diagnose_marginals(
    model: LatentModel,
    data: Tensor,
    ref: Tensor,
    batch_size: int,
    m: int,
    timesteps: Sequence[int] | None,
    pairs_per_call: int,
) -> dict[str, Any]:
    """A layer-batched chain (a DDPM): each layer drawn from its marginal q(z_l | x)."""
    q, p, L = model.posterior, model.generative, model.num_layers
    ts = _timesteps(model, timesteps)

    def marginal(t: int, xs: Tensor) -> Distribution:
        xs = xs.to(ref)
        return q.marginal(torch.full((xs.shape[0],), t, dtype=torch.long, device=xs.device), xs)

    layers, draws = [], {}
    for t in ts:
        z_rows, own, prior, kl = [], [], [], []
        for xb in data.split(batch_size):
            xb = xb.to(ref)
            x = repeat(xb, "b ... -> (m b) ...", m=m)
            f = marginal(t, x)
            z = _sample(f)
            z_rows.append(_per_example(z, m))
            own.append(_per_example(f.log_prob(z), m))
            if t == L:
                prior_t = p.prior(x.shape[0])
                prior.append(_per_example(prior_t.log_prob(z), m))
                kl.append(_per_example(kl_or_log_ratio(f, prior_t, z, analytic=True), m))
        z = rearrange(torch.cat(z_rows), "n m ... -> (n m) ...")
        agg = aggregate_log_prob(
            lambda xs, t=t: marginal(t, xs), z, data, pairs_per_call=pairs_per_call
        )
        info = InformationDraws(
            torch.cat(own), rearrange(agg, "(n m) -> n m", m=m), torch.cat(prior) if prior else None
        )
        draws[t] = info
        layers.append(
            _layer_result(
                t,
                tuple(p.latent_shapes[t - 1]),
                info,
                torch.cat(kl) if kl else None,
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
    }


def gaussian_diffusion_information(cov: Tensor, alpha_bar: Tensor, beta_bar: Tensor) -> Tensor:
    """I(x_0; x_t) for Gaussian data x_0 ~ N(μ, Σ) and x_t = ᾱ_t x_0 + β̄_t ε, ``[len(t)]``:

        I = ½ log det(I + (ᾱ_t² / β̄_t²) Σ) = ½ Σ_k log(1 + ᾱ_t² λ_k / β̄_t²),

    λ_k the eigenvalues of Σ (h(x_t) − h(x_t | x_0) for a Gaussian channel; seed 001 eq. 25
    for q(x_t | x_0)). Decreasing in t: ᾱ_t falls and β̄_t rises. μ does not enter.
    """
    lam = torch.linalg.eigvalsh(cov).clamp(min=0)
    snr = (alpha_bar / beta_bar) ** 2
    return 0.5 * torch.log1p(snr[:, None] * lam[None, :]).sum(-1)


# --------------------------------------------------------------------------- tables and plots


def _fmt(e: Estimate | None) -> tuple[str, str]:
    if e is None:
        return "—", ""
    se = "" if not math.isfinite(e.stderr) else f"± {e.stderr:.3f}"
    return f"{e.mean:.3f}", se


def diagnostics_table(diag: Diagnostics, title: str = "Diagnostics") -> Table:
    """The diagnostics as a rich table: the decomposition, then one block per layer."""
    table = Table(title=title)
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("stderr", justify="right")
    table.add_column("unit")
    rows: list[tuple[str, Estimate | None]] = [
        ("ELBO", diag.elbo),
        ("  reconstruction E[log p(x|z_1)]", diag.reconstruction),
        ("  E_x KL(q(z|x) ‖ p(z))", diag.expected_kl),
        ("    = I_q(x; z)", diag.mutual_information),
        ("    + KL(q(z) ‖ p(z))", diag.aggregate_kl),
    ]
    for name, e in rows:
        if e is not None:
            table.add_row(Text(name), *_fmt(e), "nats")
    table.add_row("log N (the most I_q can be)", f"{diag.log_n:.3f}", "", "nats")
    if diag.active_units is not None:
        table.add_row(
            Text(f"active units (Cov_x E[z|x] > {diag.active_threshold:g})"),
            f"{diag.active_units} / {diag.latent_dims}",
            "",
            "",
        )
    for layer in diag.layers if len(diag.layers) <= 16 else ():
        for label, e in (
            ("I_q(x; {})", layer.mutual_information),
            ("KL(q({0}) ‖ p({0}))", layer.aggregate_kl),
            ("KL term of {}", layer.kl_term),
        ):
            if e is not None:
                table.add_row(Text("  " + label.format(layer.name)), *_fmt(e), "nats")
        if layer.active is not None:
            table.add_row(
                f"  active units of {layer.name}",
                f"{int(layer.active.sum())} / {layer.dims}",
                "",
                "",
            )
    table.caption = Text(
        f"N = {diag.num_examples} examples × M = {diag.num_draws} draws, seed {diag.seed}, "
        f"{diag.seconds:.1f} s. {diag.verdict}"
    )
    return table


def _pyplot():
    """matplotlib.pyplot, imported on first use after ``latentkit.plots`` selects Agg."""
    from latentkit import plots  # it selects the Agg backend before importing pyplot

    return plots.plt


def _save(fig: Any, path: str | os.PathLike) -> Path:
    from latentkit.plots import _save as save  # the house's PNG settings (dpi, margins)

    return save(fig, path)


def _unit_axes(ax_kl, ax_act, diag: Diagnostics, *, sort: bool = False) -> None:
    """Per-dimension KL bars (top) and activity bars with the threshold (bottom)."""
    kl = diag.per_dimension_kl
    act = diag.activity
    names = [f"{layer.name}" for layer in diag.layers for _ in range(layer.dims)]
    active = diag.active_mask
    n = len(names)
    order = np.arange(n)
    if sort and kl is not None:
        order = np.argsort(-kl.double().cpu().numpy(), kind="stable")
    pos = np.arange(n)
    colors = np.where(active.cpu().numpy()[order], "C0", "C7") if active is not None else "C0"
    if kl is not None:
        ax_kl.bar(pos, kl.double().cpu().numpy()[order], color=colors)
    ax_kl.set_ylabel("KL per dimension (nats)")
    ax_kl.grid(alpha=0.3, axis="y")
    if act is not None:
        a = act.double().cpu().numpy()[order]
        floor = max(diag.active_threshold * 1e-3, 1e-8)
        ax_act.bar(pos, np.maximum(a, floor), color=colors, bottom=0)
        ax_act.axhline(diag.active_threshold, color="C3", ls="--", lw=1.2, label="threshold")
        ax_act.set_yscale("log")
        ax_act.set_ylim(bottom=floor)
        ax_act.legend(fontsize=8, loc="upper right")
    ax_act.set_ylabel("Cov_x E[z_d | x]")
    ax_act.grid(alpha=0.3, axis="y")
    if sort:
        ax_act.set_xlabel("latent dimensions, ranked by KL (grey: inactive)")
    else:
        # Layer boundaries and labels on the shared x axis.
        edges = np.cumsum([0] + [layer.dims for layer in diag.layers])
        for e in edges[1:-1]:
            for ax in (ax_kl, ax_act):
                ax.axvline(e - 0.5, color="k", lw=0.8, alpha=0.5)
        ax_act.set_xlabel(
            "latent dimension ("
            + ", ".join(f"{layer.name}: {layer.dims}" for layer in diag.layers)
            + "; grey: inactive)"
        )


def _summary(diag: Diagnostics) -> str:
    parts = []
    if diag.mutual_information is not None:
        parts.append(f"I_q = {diag.mutual_information.mean:.2f} (log N = {diag.log_n:.2f})")
    if diag.aggregate_kl is not None:
        parts.append(f"KL(q(z)‖p(z)) = {diag.aggregate_kl.mean:.2f}")
    if diag.active_units is not None:
        parts.append(f"active {diag.active_units}/{diag.latent_dims}")
    return ", ".join(parts)


def diagnostics_plot(
    diag: Diagnostics, path: str | os.PathLike, *, title: str | None = None
) -> Path:
    """Save a PNG: per-dimension KL bars over the active-unit panel (activity on a log scale,
    the threshold dashed; grey bars inactive). For a layer-batched chain (a DDPM), I(x; z_t)
    against t with log N dashed. Returns the path."""
    plt = _pyplot()
    if diag.per_dimension_kl is None and diag.activity is None:
        fig, ax = plt.subplots(figsize=(7, 4))
        layers = [layer for layer in diag.layers if layer.mutual_information is not None]
        t = [layer.layer for layer in layers]
        mi = [layer.mutual_information.mean for layer in layers]
        se = [layer.mutual_information.stderr for layer in layers]
        ax.errorbar(t, mi, yerr=se, fmt="o-", color="C0", ms=4, label="I(x; z_t), estimated")
        ax.axhline(diag.log_n, color="C3", ls="--", lw=1, label=f"log N = {diag.log_n:.2f}")
        if len(t) > 1 and t[-1] / t[0] > 20:
            ax.set_xscale("log")
        ax.set(xlabel="layer / timestep t", ylabel="nats")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_title(title or "mutual information between the data and each layer", fontsize=10)
        fig.tight_layout()
        return _save(fig, path)
    width = min(14.0, max(6.0, 0.18 * diag.latent_dims + 2))
    fig, (ax_kl, ax_act) = plt.subplots(2, 1, figsize=(width, 5.5), sharex=True)
    _unit_axes(ax_kl, ax_act, diag)
    ax_kl.set_title(title or _summary(diag), fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def comparison_plot(
    runs: Mapping[str, Diagnostics], path: str | os.PathLike, *, title: str | None = None
) -> Path:
    """Save a PNG with one column per run (name → diagnostics): per-dimension KL sorted
    largest first, over the activity panel with its threshold. Shared y axes."""
    plt = _pyplot()
    k = len(runs)
    if not k:
        raise InputError("comparison_plot needs at least one run")
    dims = max(d.latent_dims for d in runs.values())
    width = min(16.0, max(4.0, k * (0.12 * dims + 1.5)))
    fig, axes = plt.subplots(2, k, figsize=(width, 5.5), sharey="row", squeeze=False)
    for j, (name, diag) in enumerate(runs.items()):
        _unit_axes(axes[0, j], axes[1, j], diag, sort=True)
        axes[0, j].set_title(f"{name}\n{_summary(diag)}", fontsize=9)
        if j:
            axes[0, j].set_ylabel("")
            axes[1, j].set_ylabel("")
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return _save(fig, path)


def training_diagnostics_plot(
    metrics: str | os.PathLike | Sequence[dict[str, Any]],
    path: str | os.PathLike,
    *,
    title: str | None = None,
) -> Path | None:
    """Plot I_q, KL(q(z)‖p(z)) and active units against the step from ``metrics.jsonl``
    lines that carry them (:data:`METRIC_KEYS`, as :meth:`Diagnostics.metrics` writes them,
    with ``step``). Returns the path, or ``None`` (and writes nothing) when no line has them.
    """
    from latentkit.plots import read_metrics

    plt = _pyplot()
    records = read_metrics(metrics) if isinstance(metrics, (str, os.PathLike)) else list(metrics)
    records = [
        r
        for r in records
        if r.get("step") is not None
        and (r.get("mutual_information") is not None or r.get("active_units") is not None)
    ]
    if not records:
        return None
    fig, (ax_i, ax_a) = plt.subplots(1, 2, figsize=(11, 4))
    for key, label, color in (
        ("mutual_information", "I_q(x; z)", "C0"),
        ("aggregate_kl", "KL(q(z) ‖ p(z))", "C2"),
        ("expected_kl", "E_x KL(q(z|x) ‖ p(z))", "C7"),
    ):
        pts = [(r["step"], r[key]) for r in records if r.get(key) is not None]
        if pts:
            s, y = zip(*pts)
            ax_i.plot(s, y, "o-", color=color, ms=3, label=label)
    pts = [(r["step"], r["active_units"]) for r in records if r.get("active_units") is not None]
    if pts:
        s, y = zip(*pts)
        ax_a.plot(s, y, "o-", color="C0", ms=3, label="active units")
        dims = [r.get("latent_dims") for r in records if r.get("latent_dims")]
        if dims:
            ax_a.axhline(max(dims), color="C7", ls="--", lw=1, label=f"latent dims ({max(dims)})")
    ax_i.set(xlabel="step", ylabel="nats per example", title="ELBO surgery over training")
    ax_a.set(xlabel="step", ylabel="units", title="active units over training")
    from latentkit.plots import finish_panels

    return finish_panels(fig, (ax_i, ax_a), path, title)
