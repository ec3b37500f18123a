"""What :func:`~latentkit.diagnostics.diagnose` found, and the diagnostics as a table.

* :class:`LayerDiagnostics` — the figures of one latent layer z_l.
* :class:`Diagnostics` — the decomposition of all layers jointly, the layers', and the
  collapse verdict; :meth:`Diagnostics.metrics` is what a training run logs.
* :func:`diagnostics_table` — a rich table of them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import attrs
import torch
from rich.table import Table
from rich.text import Text
from torch import Tensor

from latentkit.arguments import checked
from latentkit.diagnostics.information import InformationDraws
from latentkit.estimates import Estimate, figure_table, finite_or_none

__all__ = ["METRIC_KEYS", "Diagnostics", "LayerDiagnostics", "diagnostics_table"]

METRIC_KEYS = ("mutual_information", "aggregate_kl", "expected_kl", "active_units", "latent_dims")
"""Keys of :meth:`Diagnostics.metrics`: what a ``metrics.jsonl`` line carries for
:func:`~latentkit.diagnostics.training_diagnostics_plot` (with ``step``)."""


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
    """``[d_l]``: A_d = Cov_x(E_q[z_d | x]), bias-corrected for conditional layers (M ≥ 2);
    for a categorical z_d, Σ_k Var_x(q(z_d = k | x)) (the one-hot's); NaN where not defined
    (one example, or a q without a finite mean)."""
    active: Tensor | None
    """``[d_l]`` bool: A_d > the threshold; ``None`` where the activity is not defined."""
    note: str = ""

    @property
    def name(self) -> str:
        return f"z{self.layer}"

    @property
    def dims(self) -> int:
        return math.prod(self.shape)

    @property
    def activity_undefined(self) -> bool:
        """Whether the layer has units but their activity is not defined (NaN): Cov_x over
        one example, or a q whose E_q[z | x] is not finite. Neither active nor collapsed."""
        return self.activity is not None and self.active is None

    def to_json(self) -> dict[str, Any]:
        def est(e: Estimate | None):
            return None if e is None else e.to_json()

        def vec(t: Tensor | None):
            return None if t is None else [finite_or_none(v) for v in t.double().tolist()]

        return {
            "layer": self.layer,
            "shape": list(self.shape),
            "mutual_information": est(self.mutual_information),
            "aggregate_kl": est(self.aggregate_kl),
            "expected_kl": est(self.expected_kl),
            "kl_term": est(self.kl_term),
            "per_dimension_kl": vec(self.per_dimension_kl),
            "activity": vec(self.activity),
            "active": None if self.active is None else self.active.tolist(),
            "active_units": None if self.active is None else int(self.active.sum()),
            "note": self.note,
        }


@attrs.frozen(eq=False)
class Diagnostics:
    """What :func:`~latentkit.diagnostics.diagnose` found. Nats per example; each
    :class:`Estimate` is a mean over the N·M draws with its standard error.

    The decomposition (``None`` for a layer-batched chain, see :mod:`latentkit.diagnostics`)::

        elbo = reconstruction − expected_kl
        expected_kl = mutual_information + aggregate_kl     (per draw, to round-off)

    Given the condition (``condition`` set: a class-conditional model), each figure is the
    π-weighted sum over the classes present (π_k = N_k / N, ``class_counts``) of class k's:
    ``mutual_information`` is I_q(x; z | c), ``aggregate_kl`` Σ_k π_k KL(q(z|c=k) ‖ p(z|c=k)).
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
    condition: str = ""
    """What the figures are given (``"class labels 0..9"``); empty: not conditional."""
    class_counts: Mapping[int, int] = attrs.field(factory=dict)
    """Given the condition: N_k, the examples of each class present, by class."""

    @property
    def log_n(self) -> float:
        """log N, the most I_q can be for N examples."""
        return math.log(self.num_examples)

    @property
    def information_bound(self) -> float:
        """The most I_q can be: log N, or given the class Σ_k π_k log N_k (≤ log N)."""
        if not self.class_counts:
            return self.log_n
        n = self.num_examples
        return sum(c / n * math.log(c) for c in self.class_counts.values())

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
            if layer.activity_undefined:
                lines.append(f"{layer.name}: activity not defined ({self._undefined_why()})")
            if layer.active is None:
                continue
            n_active, d = int(layer.active.sum()), layer.dims
            if n_active == d:
                every = f"all {d} units" if d > 1 else "its unit"
                lines.append(f"{layer.name}: {every} active")
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
        if all(layer.active is None for layer in self.layers):
            return "; ".join(lines)
        return "; ".join(lines) + f" (active: Cov_x E[z_d|x] > {self.active_threshold:g})"

    def _undefined_why(self) -> str:
        """Why a layer's activity is not defined: the variance over x of one example does
        not exist; else q's E_q[z | x] is not finite (a distribution without a mean)."""
        if self.num_examples < 2:
            return f"N = {self.num_examples}: a variance over x needs two examples or more"
        return "E_q[z | x] is not finite: q has no mean"

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
            "condition": self.condition or None,
            "class_counts": {str(k): c for k, c in self.class_counts.items()} or None,
            "information_bound": self.information_bound,
            "seed": self.seed,
            "seconds": round(self.seconds, 3),
        }


def _est(values: Tensor | None) -> Estimate | None:
    return None if values is None else Estimate.of(values.flatten())


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
        active=None if activity is None or not activity.isfinite().all() else activity > threshold,
        note=note,
    )


_LABELS = (
    "ELBO",
    "  reconstruction E[log p(x|z_1)]",
    "  E_x KL(q(z|x) ‖ p(z))",
    "    = I_q(x; z)",
    "    + KL(q(z) ‖ p(z))",
    "log N (the most I_q can be)",
)
_GIVEN_LABELS = (
    "ELBO given c",
    "  reconstruction E[log p(x|z_1,c)]",
    "  E_x KL(q(z|x,c) ‖ p(z|c))",
    "    = I_q(x; z | c)",
    "    + Σ_k π_k KL(q(z|c=k) ‖ p(z|c=k))",
    "Σ_k π_k log N_k (the most I_q can be)",
)
"""The decomposition's rows of :func:`diagnostics_table`, and given the class."""


@checked
def diagnostics_table(diag: Diagnostics, title: str = "Diagnostics") -> Table:
    """The diagnostics as a rich table: the decomposition, then one block per layer."""
    labels = _GIVEN_LABELS if diag.condition else _LABELS
    figures = (diag.elbo, diag.reconstruction, diag.expected_kl, diag.mutual_information,
               diag.aggregate_kl)  # fmt: skip
    rows: list[tuple[str, Estimate | str | None, str]] = [
        (name, e, "nats") for name, e in zip(labels, figures) if e is not None
    ]
    rows.append((labels[-1], f"{diag.information_bound:.3f}", "nats"))
    undefined = any(layer.activity_undefined for layer in diag.layers)
    given, c = (" | c", ",c") if diag.condition else ("", "")
    if diag.active_units is not None or undefined:
        count = "not defined" if undefined else f"{diag.active_units} / {diag.latent_dims}"
        rows.append((f"active units (Cov_x E[z|x{c}] > {diag.active_threshold:g})", count, ""))
    for layer in diag.layers if len(diag.layers) <= 16 else ():
        for label, e in (
            ("I_q(x; {}" + given + ")", layer.mutual_information),
            ("KL(q({0}" + given + ") ‖ p({0}" + given + "))", layer.aggregate_kl),
            ("KL term of {}", layer.kl_term),
        ):
            if e is not None:
                rows.append(("  " + label.format(layer.name), e, "nats"))
        if layer.active is not None or layer.activity_undefined:
            active = (
                "not defined"
                if layer.active is None
                else f"{int(layer.active.sum())} / {layer.dims}"
            )
            rows.append((f"  active units of {layer.name}", active, ""))
    prefix = f"given {diag.condition}, by class: " if diag.condition else ""
    caption = Text(
        f"{prefix}N = {_count(diag.num_examples, 'example')} × "
        f"M = {_count(diag.num_draws, 'draw')}, seed {diag.seed}, {diag.seconds:.1f} s. "
        + diag.verdict
    )
    return figure_table(title, rows, places=3, caption=caption)


def _count(n: int, noun: str) -> str:
    """``n`` and the noun, in the plural unless n is 1."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
