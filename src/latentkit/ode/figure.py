"""An ODE figure over a data set (:func:`ode_figure`), each example checked against its own
ELBO-based bound (:class:`OdeFigure`): the flagged examples listed, never folded silently
into a mean."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import attrs
import torch
from torch import Tensor
from torch.distributions import Bernoulli

from latentkit.arguments import check_count, check_model, check_seed, checked
from latentkit.chains import LatentModel
from latentkit.conditions import probe, restrict
from latentkit.errors import ConfigError, InputError, ShapeError
from latentkit.estimates import Estimate
from latentkit.ode.conditions import figure_conditions
from latentkit.ode.log_prob import (
    EIGHT_BIT_WIDTH,
    check_ode_options,
    ode_log_prob,
    probability_flow_contract,
)
from latentkit.validation import check_dataset, likelihood_family

__all__ = [
    "ODE_FLAG_MARGIN",
    "PRIOR_ATYPICAL_SDS",
    "FlaggedExample",
    "OdeFigure",
    "check_margin",
    "ode_data_end",
    "ode_figure",
    "prior_typical",
]

ODE_FLAG_MARGIN = 1.0
"""Bits per dimension by which an example's ODE figure may exceed its own ELBO-based bound
before it is flagged (:class:`OdeFigure`). The ODE defines another model than the one the
bound is of, so its −log p may lie above that bound; but the two share one network, and
1 bit/dim is a factor 2^D in the example's likelihood (on the 8-bit digits of
``docs/continuous.md`` the medians of the ODE figures and of the bounds differ by under
0.7 bits/dim)."""


PRIOR_ATYPICAL_SDS = 10.0
"""An ODE path whose end z(t_end) has a prior log-density this many of the prior's own
standard deviations below the prior's mean log-density is said to have left the prior: for
N(0, I) in D = 64 dimensions that is ‖z‖² ≳ D + 10·√(2D) ≈ 177, a χ²_D tail probability of
about 1.5e-12."""


@attrs.frozen
class FlaggedExample:
    """One example whose ODE figure exceeds its bound by more than the margin (or is not
    finite): its index in the data evaluated, both figures in nats, the NFE of its solve."""

    index: int
    ode_nats: float
    bound_nats: float
    nfe: int
    prior_sds: float | None = None

    @property
    def reason(self) -> str:
        """Why the figure is so far above the bound, where the evidence says:
        ``path left the prior`` when z(t_end) is :data:`PRIOR_ATYPICAL_SDS` or more of the
        prior's own standard deviations of log-density below its mean there (the learned
        drift carried x far outside the region it was trained on, and the ODE model's
        density at x is genuinely that low; docs/continuous.md), else ``unexplained``."""
        if not math.isfinite(self.ode_nats):
            return "not finite"
        if self.prior_sds is not None and self.prior_sds <= -PRIOR_ATYPICAL_SDS:
            below = -self.prior_sds
            return f"path left the prior: log p_prior(z_end) {below:.3g} sd below typical"
        return "unexplained"


def _tensor(attribute: attrs.Attribute, value: Any) -> None:
    if not isinstance(value, Tensor):
        raise InputError(f"OdeFigure.{attribute.name} must be a tensor [N], got {value!r}")


@attrs.frozen
class OdeFigure:
    """An ODE figure over a data set (−log p_ODE, or an upper bound on it, nats per example),
    each example compared with its own ELBO-based upper bound from the same evaluation.

    An example is flagged when its figure is not finite or exceeds its bound by more than
    ``margin`` bits/dim: (ode − bound)/(D ln 2) > margin, a log-likelihood ratio per
    dimension, meaningful for densities and probabilities alike. The figure is reported
    with and without the flagged examples, and they are listed — never folded silently
    into a mean.

    Attributes:
        ode: each example's ODE figure, nats, ``[N]`` (CPU, float64, the data's order).
        bound: each example's ELBO-based bound on −log p, nats, ``[N]``.
        nfe: each example's solve's drift evaluations, ``[N]`` (one solve per batch).
        solve_nfe: each solve's drift evaluations, in order.
        data_dims: D.
        margin: bits/dim (:data:`ODE_FLAG_MARGIN` by default).
        what: what the figure is; ``reference``: what the bound is (e.g. ``−ELBO``).
        divergence: ``exact`` or ``hutchinson``.
        prior_sds: each example's (log p_prior(z(t_end)) − m)/s, m and s the mean and
            standard deviation of the prior's log-density at its own draws, ``[N]`` (or None):
            far below 0, the path left the prior (:attr:`FlaggedExample.reason`).
    """

    ode: Tensor = attrs.field(eq=False, repr=False, validator=lambda i, a, v: _tensor(a, v))
    bound: Tensor = attrs.field(eq=False, repr=False, validator=lambda i, a, v: _tensor(a, v))
    nfe: Tensor = attrs.field(eq=False, repr=False, validator=lambda i, a, v: _tensor(a, v))
    solve_nfe: tuple[int, ...]
    data_dims: int = attrs.field(validator=lambda i, a, v: check_count(v, "OdeFigure.data_dims"))
    margin: float = attrs.field(default=ODE_FLAG_MARGIN, validator=lambda i, a, v: check_margin(v))
    what: str = "−log p_ODE(x)"
    reference: str = "−ELBO"
    divergence: str = "exact"
    prior_sds: Tensor | None = attrs.field(default=None, eq=False, repr=False)

    @property
    def excess_bits_per_dim(self) -> Tensor:
        """(ode − bound)/(D ln 2) per example."""
        return (self.ode - self.bound) / (self.data_dims * math.log(2.0))

    @property
    def flagged_mask(self) -> Tensor:
        """``[N]`` bool: the figure is not finite or exceeds its bound by more than the margin."""
        return ~torch.isfinite(self.ode) | (self.excess_bits_per_dim > self.margin)

    @property
    def flagged(self) -> list[FlaggedExample]:
        """The flagged examples, in the data's order."""
        idx = self.flagged_mask.nonzero().flatten().tolist()
        return [
            FlaggedExample(
                i,
                float(self.ode[i]),
                float(self.bound[i]),
                int(self.nfe[i]),
                None if self.prior_sds is None else float(self.prior_sds[i]),
            )
            for i in idx
        ]

    def _summary(self, values: Tensor, bits: bool) -> dict[str, Any]:
        """Mean ± s.e. and median of ``values`` in nats (and bits/dim when ``bits``)."""
        scale = self.data_dims * math.log(2.0)
        out: dict[str, Any] = {"num_examples": int(values.numel())}
        if values.numel() == 0:
            nats = None
            median = math.nan
        else:
            nats = Estimate.of(values)
            median = float(values.median())
        out["nll_nats"] = None if nats is None else nats.to_json()
        out["median_nll_nats"] = _finite_or_none(median)
        out["bits_per_dim"] = None
        out["median_bits_per_dim"] = None
        if bits and nats is not None:
            out["bits_per_dim"] = Estimate(nats.mean / scale, nats.stderr / scale).to_json()
            out["median_bits_per_dim"] = _finite_or_none(median / scale)
        return out

    def to_json(self, *, bits: bool) -> dict[str, Any]:
        """Plain JSON values: the figure over every example (``nll_nats`` mean ± s.e.,
        ``median_nll_nats``, and in bits/dim when ``bits``), the same ``without_flagged``,
        the ``flagged`` examples, the margin, the NFE and the warning line (or null)."""
        scale = self.data_dims * math.log(2.0)
        every = self._summary(self.ode, bits)
        kept = self._summary(self.ode[~self.flagged_mask], bits)
        return {
            "what": self.what,
            "reference": self.reference,
            **every,
            "without_flagged": kept,
            "margin_bits_per_dim": self.margin,
            "flagged": [
                {
                    "index": f.index,
                    "ode_nats": _finite_or_none(f.ode_nats),
                    "bound_nats": _finite_or_none(f.bound_nats),
                    "excess_bits_per_dim": _finite_or_none((f.ode_nats - f.bound_nats) / scale),
                    "nfe": f.nfe,
                    "prior_sds": None if f.prior_sds is None else _finite_or_none(f.prior_sds),
                    "reason": f.reason,
                }
                for f in self.flagged
            ],
            "nfe": {"total": int(sum(self.solve_nfe)), "per_solve": list(self.solve_nfe)},
            "divergence": self.divergence,
            "warning": self.warning(bits=bits),
        }

    def warning(self, *, bits: bool, limit: int = 10) -> str | None:
        """One line naming the flagged examples (the first ``limit``) with both figures and
        their solve's NFE, and the mean with and without them; ``None`` when none is."""
        flagged = self.flagged
        if not flagged:
            return None
        scale = self.data_dims * math.log(2.0) if bits else 1.0
        unit = "bits/dim" if bits else "nats"
        listed = ", ".join(
            f"#{f.index} ({f.ode_nats / scale:.2f} vs {f.bound_nats / scale:.2f} {unit}, "
            f"NFE {f.nfe}; {f.reason})"
            for f in flagged[:limit]
        )
        more = f" and {len(flagged) - limit} more" if len(flagged) > limit else ""
        kept = self.ode[~self.flagged_mask]
        without = f"{float(kept.mean()) / scale:.2f}" if kept.numel() else "—"
        return (
            f"ODE figure: {len(flagged)} of {self.ode.numel()} examples flagged (not finite, or "
            f"above their own {self.reference} by more than {self.margin:g} bits/dim): "
            f"{listed}{more}; mean {float(self.ode.mean()) / scale:.2f} {unit} with them, "
            f"{without} without"
        )


def _finite_or_none(value: float) -> float | None:
    """``value``, or ``None`` (JSON null) where it is not finite."""
    return value if math.isfinite(value) else None


def check_margin(margin: Any) -> float:
    """The flagging margin, a finite number ≥ 0 of bits/dim, or a ConfigError."""
    if isinstance(margin, bool) or not isinstance(margin, (int, float)):
        raise ConfigError(f"ode_margin must be a number of bits/dim, got {margin!r}")
    if not (math.isfinite(margin) and margin >= 0):
        raise ConfigError(f"ode_margin must be a finite number ≥ 0 (bits/dim), got {margin!r}")
    return float(margin)


def ode_data_end(model: LatentModel) -> tuple[Callable[[Tensor], Tensor], float]:
    """How discrete data enter the ODE, and the width of their bins there, read from the
    likelihood p(x | z_1): a discretized Normal's grid on [−1, 1] (binary data mapped onto
    it, ``from_binary``), bins 2·half_bin wide; Bernoulli data {0, 1} as they are, bins 1
    wide. A ConfigError for a likelihood whose bins are not known."""
    family = likelihood_family(check_model(model, "ode_data_end"))
    if isinstance(family, Bernoulli):
        return (lambda x: x), 1.0
    half = getattr(family, "half_bin", None)
    if isinstance(half, float) and half > 0:
        to_grid = type(family).from_binary if getattr(family, "binary", False) else None
        return (to_grid or (lambda x: x)), 2.0 * half
    raise ConfigError(
        f"the ODE figure on discrete data needs the data's bins, and p(x | z_1) = "
        f"{type(family).__name__} does not give them (a discretized Normal or a Bernoulli does)"
    )


class _Solved(NamedTuple):
    """Per-example results of the batched solves: the figure (nats, float64), the prior's
    standardized log-density at z(t_end), each example's solve's NFE, each solve's NFE and
    the divergence used."""

    values: Tensor
    prior_sds: Tensor
    nfe: Tensor
    solve_nfe: tuple[int, ...]
    divergence: str


def _check_figure_inputs(model: LatentModel, data: Tensor, bound: Tensor, margin: Any) -> float:
    """Refuse a model without the contract, a bad margin or a bound that is not ``[N]``;
    the margin as a float."""
    reason = probability_flow_contract(model)
    if reason is not None:
        raise InputError(f"the ODE figure: {reason}")
    margin = check_margin(margin)
    n = data.shape[0]
    if not (isinstance(bound, Tensor) and bound.shape == (n,)):
        raise ShapeError(
            f"bound must be [N] = [{n}], one per example, got {getattr(bound, 'shape', bound)!r}"
        )
    return margin


def _solve_batches(
    model: LatentModel,
    data: Tensor,
    *,
    discrete: bool,
    batch_size: int,
    seed: int,
    ode_options: dict[str, Any],
    conditions: Tensor | None,
) -> tuple[_Solved, float]:
    """One :func:`ode_log_prob` solve per batch of ``data``, seeded by ``seed`` (a conditional
    model's: the flow given the batch's ``conditions``); also the bin width the figure used."""
    to_ode, width = ode_data_end(model) if discrete else ((lambda x: x), EIGHT_BIT_WIDTH)
    ref = model.reference()
    gen = torch.Generator(device=ref.device).manual_seed(seed)
    values, nfes, solves, sds, kind = [], [], [], [], "exact"
    typical = prior_typical(probe(model), seed)
    bound_per_row = model.condition is not None and model.condition.shape[0] > 1
    for i in range(0, data.shape[0], batch_size):
        x = to_ode(data[i : i + batch_size].to(device=ref.device, dtype=ref.dtype))
        flow = restrict(model, slice(i, i + batch_size)) if bound_per_row else model
        if conditions is not None:
            flow = model.given(conditions[i : i + batch_size], validate=False)
        r = ode_log_prob(
            flow,
            x,
            dequantize=discrete,
            bin_width=width if discrete else None,
            generator=gen,
            **ode_options,
        )
        values.append(-(r.log_prob_bound if discrete else r.log_density).double().cpu())
        sds.append((r.prior_log_prob.double().cpu() - typical[0]) / typical[1])
        nfes.append(torch.full((x.shape[0],), r.nfe, dtype=torch.long))
        solves.append(r.nfe)
        kind = r.divergence
    solved = _Solved(torch.cat(values), torch.cat(sds), torch.cat(nfes), tuple(solves), kind)
    return solved, width


@checked
def ode_figure(
    model: LatentModel,
    data: Tensor,
    bound: Tensor,
    *,
    discrete: bool,
    batch_size: int = 500,
    seed: int = 0,
    margin: float = ODE_FLAG_MARGIN,
    reference: str = "−ELBO",
    conditions: Tensor | None = None,
    **ode_options: Any,
) -> OdeFigure:
    """−log p_ODE over ``data`` (one solve per batch), each example against its ``bound``.

    Args:
        model: a model offering the probability-flow contract (module docstring).
        data: ``[N, *data_shape]``; moved to the model's device and dtype batch by batch.
        bound: ``[N]``, each example's ELBO-based upper bound on −log p (nats).
        discrete: discrete data: the figure is the dequantized bound ``−log_prob_bound``
            with the bins of :func:`ode_data_end`; else the density's −log p(x).
        batch_size: examples per solve.
        seed: seed of the dequantization noise and the Hutchinson probes.
        margin: bits/dim; see :class:`OdeFigure`.
        reference: what ``bound`` is, for the report.
        conditions: a conditional model's, one per example (``[N]`` class labels or
            ``[N, *shape]`` vectors): each example's figure is the flow of the model given
            its condition, −log p_ODE(x | c); refused for a model that takes none.
        **ode_options: passed to :func:`ode_log_prob` (``rtol``, ``atol``, ``method``, ...).
    """
    check_dataset(model, data)
    margin = _check_figure_inputs(model, data, bound, margin)
    check_count(batch_size, "batch_size")
    check_seed(seed)
    check_ode_options(model, **ode_options)
    conditions = figure_conditions(model, conditions, data.shape[0])
    solved, width = _solve_batches(
        model,
        data,
        discrete=discrete,
        batch_size=batch_size,
        seed=seed,
        ode_options=ode_options,
        conditions=conditions,
    )
    what = "−log p_ODE(x)" + (
        f" with uniform dequantization (bins {width:.4g} wide): an upper bound in expectation"
        if discrete
        else ""
    )
    return OdeFigure(
        ode=solved.values,
        bound=bound.detach().double().cpu(),
        nfe=solved.nfe,
        solve_nfe=solved.solve_nfe,
        data_dims=math.prod(model.data_shape),
        margin=margin,
        what=what,
        reference=reference,
        divergence=solved.divergence,
        prior_sds=solved.prior_sds,
    )


def prior_typical(model: LatentModel, seed: int = 0, draws: int = 512) -> tuple[float, float]:
    """Mean and standard deviation of log p_prior(z) over ``draws`` of the prior's own
    (seeded by ``seed``, the global stream untouched), the yardstick of
    :attr:`OdeFigure.prior_sds` (``draws`` ≥ 2: a standard deviation needs two)."""
    check_model(model, "prior_typical")
    check_seed(seed)
    check_count(draws, "draws", low=2)
    device = model.reference().device
    with torch.no_grad(), torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        prior = model.generative.prior(draws)
        lp = prior.log_prob(prior.sample()).double().cpu()
    return float(lp.mean()), max(float(lp.std()), 1e-12)
