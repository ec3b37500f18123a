"""What :func:`~latentkit.evaluate` measured (:class:`EvalReport`), as JSON and as a table.

Nats per example; bits/dim only where both the data and p(x | z_1) are discrete (the
module :mod:`latentkit.evaluation` says why). Importable from :mod:`latentkit.evaluation`
as before.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import TYPE_CHECKING, Any

import attrs
import torch
from rich.table import Table
from torch import Tensor

from latentkit.estimates import Estimate, figure_table, finite_or_none

if TYPE_CHECKING:
    from latentkit.ode import OdeFigure

__all__ = ["EvalReport", "examples_digest", "ode_warning", "progress_bar", "report_table"]


@attrs.frozen
class EvalReport:
    """What :func:`~latentkit.evaluate` measured. Nats per example; ``layer_kl`` is a mean
    per layer."""

    num_examples: int
    data_dims: int
    elbo: Estimate
    reconstruction: Estimate
    prior_matching: Estimate
    kl: Estimate
    layer_kl: list[float]
    estimator: str
    num_samples: int
    iwae_k: int
    iwae: Estimate | None
    discrete: bool
    seed: int
    seconds: float
    info: dict[str, Any] = attrs.field(factory=dict)
    iwae_seconds: float = 0.0
    """Wall time of the IWAE part of ``seconds`` (0 when IWAE is skipped)."""
    monte_carlo_terms: tuple[str, ...] = ()
    """Terms the ``analytic`` estimator had to estimate by the Monte Carlo log-ratio, torch
    knowing no closed-form KL for them (e.g. ``prior_matching`` under a VampPrior)."""
    per_example: dict[str, Tensor] = attrs.field(factory=dict, eq=False, repr=False)
    """Each example's ``elbo`` and, when computed, ``iwae`` bound (nats, ``[N]`` on the CPU,
    in the data's order): two models evaluated on the same examples compare by
    :func:`paired_difference`, whose standard error is far smaller than either one's."""
    ode: OdeFigure | None = attrs.field(default=None, eq=False)
    """The probability-flow ODE figure on the first ``ode_examples`` examples, each checked
    against its own −IWAE_k (or −ELBO) with the flagged ones listed
    (:class:`latentkit.ode.OdeFigure`); ``None`` unless asked for."""

    @property
    def nll(self) -> Estimate | None:
        """−IWAE_k in nats: the negative log-likelihood estimate (an upper bound on it)."""
        return None if self.iwae is None else Estimate(-self.iwae.mean, self.iwae.stderr)

    def _bpd(self, nats: Estimate | None) -> Estimate | None:
        if nats is None or not self.discrete:
            return None
        scale = self.data_dims * math.log(2.0)
        return Estimate(nats.mean / scale, nats.stderr / scale)

    @property
    def bits_per_dim(self) -> Estimate | None:
        """NLL in bits/dim (from IWAE if computed, else from −ELBO); None for continuous data."""
        nll = self.nll or Estimate(-self.elbo.mean, self.elbo.stderr)
        return self._bpd(nll)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON values (missing figures are ``null``)."""
        neg_elbo = Estimate(-self.elbo.mean, self.elbo.stderr)
        bpd_elbo = self._bpd(neg_elbo)
        bpd_iwae = self._bpd(self.nll)
        return {
            **self.info,
            "num_examples": self.num_examples,
            "data_dims": self.data_dims,
            "units": "nats per example (bits_per_dim: bits per data dimension)",
            "elbo": self.elbo.to_json(),
            "reconstruction": self.reconstruction.to_json(),
            "prior_matching": self.prior_matching.to_json(),
            "kl": self.kl.to_json(),
            "layer_kl": [finite_or_none(v) for v in self.layer_kl],
            "estimator": self.estimator,
            "monte_carlo_terms": list(self.monte_carlo_terms),
            "num_samples": self.num_samples,
            "iwae_k": self.iwae_k,
            "iwae": self.iwae.to_json() if self.iwae else None,
            "nll_nats": self.nll.to_json() if self.nll else None,
            "discrete_likelihood": self.discrete,
            "bits_per_dim": {
                "elbo": bpd_elbo.to_json() if bpd_elbo else None,
                "iwae": bpd_iwae.to_json() if bpd_iwae else None,
            },
            "seed": self.seed,
            "seconds": round(self.seconds, 3),
            "iwae_seconds": round(self.iwae_seconds, 3),
            "ode": None if self.ode is None else self.ode.to_json(bits=self.discrete),
        }


def report_table(report: EvalReport, title: str = "Evaluation") -> Table:
    """The report as a rich table: one row per figure, with its standard error and unit."""
    rows: list[tuple[str, Estimate | str | None, str]] = [
        ("ELBO", report.elbo, "nats"),
        ("  reconstruction E[log p(x|z_1)]", report.reconstruction, "nats"),
        ("  prior matching KL(q(z_L|x)‖p(z_L))", report.prior_matching, "nats"),
        ("  all KL terms", report.kl, "nats"),
    ]
    if report.iwae_k:
        rows.append((f"IWAE-{report.iwae_k} NLL", report.nll, "nats"))
    bpd = report.bits_per_dim
    if bpd is not None:
        rows.append((f"IWAE-{report.iwae_k} NLL" if report.iwae_k else "−ELBO", bpd, "bits/dim"))
    L = len(report.layer_kl) + 1
    if 1 < L <= 8:
        for l, v in enumerate(report.layer_kl, start=1):
            rows.append((f"  KL term of z_{l}", f"{v:.2f}", "nats"))
    elif L > 8:
        rows.append((f"  KL terms of z_1..z_{L - 1}", f"{sum(report.layer_kl):.2f}", "nats"))
    rows += _ode_rows(report)
    return figure_table(title, rows, places={"bits/dim": 4}, caption=_caption(report))


def _caption(report: EvalReport) -> str:
    """What was evaluated, how, and how long it took."""
    n = report.num_examples
    return (
        (f"{n} examples" if n != 1 else "1 example (no standard error: it needs two)")
        + f", D = {report.data_dims}, estimator {report.estimator}"
        + (
            f" (Monte Carlo: {', '.join(report.monte_carlo_terms)}, no closed-form KL)"
            if report.monte_carlo_terms
            else ""
        )
        + ", "
        f"seed {report.seed}, {report.seconds:.1f} s"
        + (f" (IWAE {report.iwae_seconds:.1f} s)" if report.iwae_k else "; IWAE skipped")
        + ("" if report.discrete else "; no bits/dim (continuous likelihood or data)")
        + (
            f"; ODE: {len(report.ode.flagged)} flagged (listed below)"
            if report.ode is not None and report.ode.flagged
            else ""
        )
    )


def _ode_rows(report: EvalReport) -> list[tuple[str, Estimate | None, str]]:
    """The ODE figure's rows: the mean over its examples, the median, and the mean without
    the flagged examples when there are any; in nats, and bits/dim for discrete data."""
    o = report.ode
    if o is None:
        return []
    kept = o.ode[~o.flagged_mask]
    stats = [(f"ODE −log p, {o.ode.numel()} examples", o.ode)]
    if kept.numel() < o.ode.numel():
        stats.append((f"  without the {o.ode.numel() - kept.numel()} flagged", kept))
    rows: list[tuple[str, Estimate | None, str]] = []
    units = [("nats", 1.0)] + (
        [("bits/dim", report.data_dims * math.log(2.0))] if report.discrete else []
    )
    for name, values in stats:
        if values.numel() == 0:
            continue
        e = Estimate.of(values)
        median = float(values.median())
        for unit, scale in units:
            rows.append((name, Estimate(e.mean / scale, e.stderr / scale), unit))
            rows.append(("    median", Estimate(median / scale, math.nan), unit))
    return rows


def ode_warning(report: EvalReport) -> str | None:
    """The line naming the examples the ODE figure flagged (``None`` when none is)."""
    return None if report.ode is None else report.ode.warning(bits=report.discrete)


def examples_digest(data: Tensor) -> str:
    """sha256 of the evaluated examples (shape and values, as float64): two reports with the
    same digest scored the same examples in the same order."""
    x = data.detach().to("cpu", torch.float64).contiguous()
    h = hashlib.sha256(json.dumps(list(x.shape)).encode())
    h.update(x.numpy().tobytes())
    return h.hexdigest()


def progress_bar(label: str, console: Any, *, enabled: bool = True) -> Any:
    """The bar a long step of an evaluation shows on ``console`` (the evaluation's examples,
    the sampling's samples): ``label``, the bar, done of total and the time left; removed
    when done; none without a console, off a terminal, or when not ``enabled``
    (``--no-progress``)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn(f"[bold]{label}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not (enabled and console is not None and console.is_terminal),
    )
