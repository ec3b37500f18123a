"""The diagnostics as figures: PNGs drawn with ``latentkit.plots``' settings (Agg backend).

* :func:`diagnostics_plot` — one run's per-dimension KL over its activity panel, or for a
  layer-batched chain (a DDPM) I(x; z_t) against t.
* :func:`comparison_plot` — several runs' units side by side.
* :func:`training_diagnostics_plot` — I_q, KL(q(z) ‖ p(z)) and active units over training.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from latentkit.arguments import checked
from latentkit.diagnostics.results import Diagnostics
from latentkit.errors import InputError

__all__ = ["comparison_plot", "diagnostics_plot", "training_diagnostics_plot"]


def _pyplot():
    """matplotlib.pyplot, imported on first use after ``latentkit.plots`` selects Agg."""
    from latentkit import plots  # it selects the Agg backend before importing pyplot

    return plots.plt


def _check_path(path: str | os.PathLike, where: str) -> None:
    """A figure's path: not a folder, its suffix a format matplotlib writes (none: PNG)."""
    from matplotlib.backend_bases import FigureCanvasBase

    target = Path(path)
    if target.is_dir():
        raise InputError(f"{where}: path {str(target)!r} is a folder; name the figure's file")
    formats = FigureCanvasBase.get_supported_filetypes()
    if target.suffix and target.suffix[1:].lower() not in formats:
        raise InputError(
            f"{where}: path {str(target)!r} has suffix {target.suffix!r}, not a figure format "
            f"matplotlib writes ({', '.join(sorted(formats))})"
        )


def _save(fig: Any, path: str | os.PathLike) -> Path:
    """Write ``fig`` to ``path`` with the house's PNG settings; the path written."""
    from latentkit.plots import save_figure as save  # the house's PNG settings (dpi, margins)

    return save(fig, path)


def _unit_axes(ax_kl, ax_act, diag: Diagnostics, *, sort: bool = False) -> None:
    """Per-dimension KL bars (top) and activity bars with the threshold (bottom)."""
    from matplotlib.ticker import MaxNLocator

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
        if not np.isfinite(a).all():  # no bar at all would read as "collapsed"
            ax_act.text(0.5, 0.5, "activity not defined:\n" + diag._undefined_why(),
                        transform=ax_act.transAxes, ha="center", va="center", fontsize=8,
                        wrap=True)  # fmt: skip
    ax_act.set_ylabel("Cov_x E[z_d | x]")
    ax_act.grid(alpha=0.3, axis="y")
    for ax in (ax_kl, ax_act):  # units are whole numbers, one bar or many
        ax.set_xlim(-0.5, n - 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
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
    """The diagnostics' headline figures as one line (I_q, aggregate KL, active units)."""
    parts = []
    if diag.mutual_information is not None:
        parts.append(f"I_q = {diag.mutual_information.mean:.2f} (log N = {diag.log_n:.2f})")
    if diag.aggregate_kl is not None:
        parts.append(f"KL(q(z)‖p(z)) = {diag.aggregate_kl.mean:.2f}")
    if diag.active_units is not None:
        parts.append(f"active {diag.active_units}/{diag.latent_dims}")
    return ", ".join(parts)


@checked
def diagnostics_plot(
    diag: Diagnostics, path: str | os.PathLike, *, title: str | None = None
) -> Path:
    """Save a PNG: per-dimension KL bars over the active-unit panel (activity on a log scale,
    the threshold dashed; grey bars inactive). For a layer-batched chain (a DDPM), I(x; z_t)
    against t with log N dashed. Returns the path."""
    _check_path(path, "diagnostics_plot")
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


@checked
def comparison_plot(
    runs: Mapping[str, Diagnostics], path: str | os.PathLike, *, title: str | None = None
) -> Path:
    """Save a PNG with one column per run (name → diagnostics): per-dimension KL sorted
    largest first, over the activity panel with its threshold. Shared y axes."""
    if not runs:
        raise InputError("comparison_plot needs at least one run")
    _check_path(path, "comparison_plot")
    plt = _pyplot()
    k = len(runs)
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


@checked
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

    _check_path(path, "training_diagnostics_plot")
    if isinstance(metrics, (str, os.PathLike)) and not Path(metrics).is_file():
        raise InputError(f"training_diagnostics_plot: no metrics file at {str(metrics)!r}")
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
