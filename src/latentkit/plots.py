"""Figures a person would rather look at than read: PNGs drawn with matplotlib's Agg backend.

* :func:`sample_grid` — a grid of examples (model samples or data).
* :func:`training_curves` — the bound and its terms over training, from ``metrics.jsonl``.
* :func:`layer_kl_plot` — each latent layer's KL contribution to the bound; for a DDPM
  (many layers) a log-scale curve over the timestep t.

Each function writes one PNG and returns its path. Nothing here opens a window. Each checks
its arguments first (its annotations by :func:`latentkit.arguments.checked`, then the values:
sizes, NaN, paths): a bad one is an :class:`~latentkit.InputError` naming it.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display is needed or opened

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.backend_bases import FigureCanvasBase
from torch import Tensor

from latentkit.arguments import check_count, check_number, check_path, check_shape, checked
from latentkit.errors import InputError, NonFiniteError, ShapeError

__all__ = [
    "as_images",
    "finish_panels",
    "layer_kl_plot",
    "read_metrics",
    "sample_grid",
    "save_figure",
    "training_curves",
]

_DPI = 120


@checked
def as_images(x: Tensor, data_shape: Sequence[int] | None = None) -> np.ndarray:
    """``[n, *shape]`` values in [0, 1] → ``[n, H, W]`` (grey) or ``[n, H, W, 3]`` arrays.

    Images are ``(C, H, W)`` or ``(H, W)``; a flat vector of a square length D is shown as
    √D × √D (digits' 64 → 8 × 8); any other vector as one row of D pixels. ``x`` a real
    tensor of at least one example and no NaN (values beyond [0, 1] are clipped).
    """
    shape = _image_shape(x, data_shape)
    x = x.detach().float().cpu().reshape(x.shape[0], *shape)
    if x.ndim == 2:
        side = math.isqrt(x.shape[1])
        x = x.reshape(-1, side, side) if side * side == x.shape[1] else x.reshape(-1, 1, x.shape[1])
    elif x.ndim == 4:
        if x.shape[1] == 1:
            x = x[:, 0]
        elif x.shape[1] == 3:
            x = x.permute(0, 2, 3, 1)
        else:
            x = x[:, 0]  # more channels than a picture has: show the first
    return x.clamp(0.0, 1.0).numpy()


def _image_shape(x: Tensor, data_shape: Sequence[int] | None) -> tuple[int, ...]:
    """The shape of one example of ``x`` (``data_shape`` when given), checked against ``x``."""
    if x.ndim < 2 or x.shape[0] == 0 or x.shape[1:].numel() == 0 or x.is_complex():
        raise ShapeError(
            f"as_images: x must be a real tensor [n ≥ 1, *shape], got shape "
            f"{tuple(x.shape)} of {x.dtype}"
        )
    shape = tuple(x.shape[1:]) if data_shape is None else check_shape(data_shape, "data_shape")
    if math.prod(shape) != x.shape[1:].numel() or len(shape) > 3:
        raise ShapeError(
            f"as_images: data_shape {shape} must be (D,), (H, W) or (C, H, W) "
            f"and hold the {x.shape[1:].numel()} values of an example of x"
        )
    nan = torch.isnan(x.detach()).flatten(1).any(1) if x.is_floating_point() else None
    if nan is not None and bool(nan.any()):
        raise NonFiniteError(
            f"as_images: x holds NaN (in {int(nan.sum())} of {x.shape[0]} "
            f"examples, the first {int(nan.nonzero()[0, 0])})"
        )
    return shape


@checked
def sample_grid(
    x: Tensor,
    path: str | os.PathLike,
    *,
    data_shape: Sequence[int] | None = None,
    title: str | None = None,
    ncols: int | None = None,
) -> Path:
    """Save ``x`` (values in [0, 1]; map them with ``Dataset.to_display``) as a grid PNG,
    ``ncols`` (1 to the number of examples; default about √n) to a row."""
    _image_shape(x, data_shape)
    n = x.shape[0]
    if ncols is not None:
        check_count(ncols, "sample_grid: ncols (at most one per example)", high=n)
    target = _target(path, "sample_grid")
    images = as_images(x, data_shape)
    ncols = ncols or math.ceil(math.sqrt(n))
    nrows = math.ceil(n / ncols)
    h, w = images.shape[1:3]
    pad = max(1, h // 14)
    canvas = np.ones((nrows * (h + pad) + pad, ncols * (w + pad) + pad, *images.shape[3:]))
    for i in range(n):
        r, c = divmod(i, ncols)
        y0, x0 = pad + r * (h + pad), pad + c * (w + pad)
        canvas[y0 : y0 + h, x0 : x0 + w] = images[i]
    # About 0.6-0.7 inch per example, crisp pixels (no interpolation).
    fig_w = min(10.0, max(3.0, ncols * max(0.6, w / 40)))
    fig_h = fig_w * canvas.shape[0] / canvas.shape[1] + (0.4 if title else 0.0)
    fig, ax = plt.subplots(figsize=(fig_w, fig_h))
    ax.imshow(canvas, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=10)
    return save_figure(fig, target)


@checked
def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` file (a line cut short by a crash is skipped); a
    path that is no file is an InputError."""
    out = []
    for line in check_path(path, "read_metrics: path", exists="file").read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def _smooth(y: np.ndarray, width: int) -> np.ndarray:
    if width <= 1 or y.size < width:
        return y
    kernel = np.ones(width) / width
    padded = np.concatenate([np.full(width - 1, y[0]), y])
    return np.convolve(padded, kernel, mode="valid")


@checked
def training_curves(
    metrics: str | os.PathLike | Sequence[dict[str, Any]],
    path: str | os.PathLike,
    *,
    title: str | None = None,
) -> Path:
    """Plot the ELBO (train, and validation or test where evaluated) and its terms by step.

    Left: ELBO in nats per example (higher is better); the training curve is a running
    mean over ~5% of the run, raw values faint behind it. Right: the terms
    −E[log p(x|z_1)] (reconstruction cost) and Σ KL, both ≥ 0 and lower is better.
    """
    _target(path, "training_curves")
    records = read_metrics(metrics) if isinstance(metrics, (str, os.PathLike)) else list(metrics)
    train = [r for r in records if r.get("split") == "train" and r.get("elbo") is not None]
    held = [r for r in records if r.get("split") in ("test", "validation")]
    held = [r for r in held if r.get("elbo") is not None]
    split = "validation" if any(r["split"] == "validation" for r in held) else "test"
    test = [r for r in held if r["split"] == split]
    fig, (ax_b, ax_t) = plt.subplots(1, 2, figsize=(11, 4))
    width = max(1, len(train) // 20)
    if train:
        s = np.array([r["step"] for r in train])
        for ax, key, label, color, sign in (
            (ax_b, "elbo", "train ELBO", "C0", 1.0),
            (ax_t, "reconstruction", "train −E[log p(x|z₁)]", "C1", -1.0),
            (ax_t, "kl", "train Σ KL", "C2", 1.0),
        ):
            y = sign * np.array([r[key] for r in train], dtype=float)
            ax.plot(s, y, color=color, alpha=0.25, lw=0.8)
            ax.plot(s, _smooth(y, width), color=color, lw=1.8, label=label)
    if test:
        s = np.array([r["step"] for r in test])
        ax_b.plot(s, [r["elbo"] for r in test], "o-", color="C3", ms=4, label=f"{split} ELBO")
        ax_t.plot(
            s,
            [-r["reconstruction"] for r in test],
            "s--",
            color="C1",
            ms=4,
            label=f"{split} −E[log p(x|z₁)]",
        )
        ax_t.plot(s, [r["kl"] for r in test], "s--", color="C2", ms=4, label=f"{split} Σ KL")
    if train:
        # Zoom on the last 80% of training: the first steps' huge losses would flatten the rest
        # (a non-finite value, from a step that diverged, is drawn where it can be, not zoomed on).
        tail = np.array([r["elbo"] for r in train[len(train) // 5 :]] + [r["elbo"] for r in test])
        tail = tail[np.isfinite(tail)]
        if tail.size:
            lo, hi = float(np.min(tail)), float(np.max(tail))
            margin = 0.1 * (hi - lo) + 1e-6
            ax_b.set_ylim(lo - margin, hi + margin)
    ax_b.set(xlabel="step", ylabel="nats per example", title="ELBO (higher is better)")
    ax_t.set(xlabel="step", ylabel="nats per example", title="terms of −ELBO (lower is better)")
    return finish_panels(fig, (ax_b, ax_t), path, title)


@checked
def finish_panels(
    fig: plt.Figure, axes: Sequence[Any], path: str | os.PathLike, title: str | None
) -> Path:
    """Grid and legend on each panel, the figure's title, then write the PNG."""
    _target(path, "finish_panels")
    for ax in axes:
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return save_figure(fig, path)


@checked
def layer_kl_plot(
    layer_kl: Sequence[float] | Tensor,
    prior_matching: float,
    path: str | os.PathLike,
    *,
    reconstruction: float | None = None,
    timesteps: bool | None = None,
    title: str | None = None,
) -> Path:
    """Each latent layer's term of −ELBO, in nats per example.

    ``layer_kl[l-1]`` is the KL term of z_l (1 ≤ l < L) and ``prior_matching`` that of z_L;
    ``reconstruction`` (E log p(x|z_1)), when given, is shown as the term −E log p(x|z_1).
    With ``timesteps`` (default: when L > 16) the layers are a DDPM's x_1..x_T and the plot
    is the bound's terms L_t over t on a log scale, in the DDPM paper's indexing:
    L_0 = −E log p(x_0|x_1), L_t = E KL(q(x_t|x_{t+1},x_0) ‖ p(x_t|x_{t+1})) for
    1 ≤ t < T, L_T = KL(q(x_T|x_0) ‖ p(x_T)); otherwise one bar per layer. Every term
    must be a finite number (``layer_kl`` a sequence or a 1-d tensor).
    """
    kl = layer_kl.tolist() if isinstance(layer_kl, Tensor) and layer_kl.ndim == 1 else layer_kl
    for i, v in enumerate(kl):
        check_number(v, f"layer_kl_plot: layer_kl[{i}]")
    values = np.array([*kl, check_number(prior_matching, "layer_kl_plot: prior_matching")])
    if reconstruction is not None:
        check_number(reconstruction, "layer_kl_plot: reconstruction")
    target = _target(path, "layer_kl_plot")
    timesteps = values.size > 16 if timesteps is None else timesteps
    fig, ax = plt.subplots(figsize=(8, 4))
    if timesteps:
        _terms_over_t(ax, values, reconstruction)
    else:
        _layer_bars(ax, values, reconstruction)
    ax.grid(alpha=0.3, axis="y")
    ax.set_title(title or "contribution of each layer to −ELBO", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, target)


def _terms_over_t(ax: Any, values: np.ndarray, reconstruction: float | None) -> None:
    """``values`` = L_1..L_T (L_T the prior matching) over t on a log scale, with L_0 =
    −``reconstruction`` at t = 0 when given: 1 ≤ t < T a curve, the ends marked (▼ on the
    axis where a term is ≤ 0 or too small to show)."""
    L = values.size
    t = np.arange(1, L + 1)
    if reconstruction is not None:
        t, values = np.concatenate([[0], t]), np.concatenate([[-reconstruction], values])
    positive = values[values > 0]
    floor = max(positive.min() / 2, positive.max() * 1e-9) if positive.size else 1e-12
    shown = np.maximum(values, floor)
    inner = (t >= 1) & (t < L)
    ax.plot(
        t[inner],
        shown[inner],
        color="C0",
        lw=1.2,
        label="L_t = KL(q(x_t | x_t+1, x_0) ‖ p(x_t | x_t+1)), 1 ≤ t < T",
    )
    ends = [(L, "C3", "L_T = prior matching")]
    if reconstruction is not None:
        ends.insert(0, (0, "C1", "L_0 = −E log p(x_0 | x_1)"))
    for at, color, label in ends:
        k = int(np.searchsorted(t, at))
        below = values[k] < floor  # ≤ 0 or tiny: a ▼ on the axis, not a made-up height
        ax.plot(
            [at],
            [floor / 2 if below else values[k]],
            "v" if below else "o",
            color=color,
            ms=7,
            clip_on=False,
            label=f"{label}: {values[k]:.3g}" + (" (below the axis)" if below else ""),
        )
    ax.set_yscale("log")
    ax.set_ylim(bottom=floor / 2)
    ax.set(xlabel="timestep t", ylabel="nats per example (log scale)")
    ax.legend(
        fontsize=8,
        loc="best",
        title=f"Σ L_t over 1 ≤ t < T: {values[inner].sum():.2f};  "
        f"−ELBO = Σ all: {values.sum():.2f}",
        title_fontsize=8,
    )


def _layer_bars(ax: Any, values: np.ndarray, reconstruction: float | None) -> None:
    """One bar per layer z_1..z_L (``values``), the prior's last; −E log p(x|z_1) first when
    ``reconstruction`` is given."""
    L = values.size
    names = [f"z{l}" for l in range(1, L)] + [f"z{L}\n(prior)"]
    colors = ["C0"] * (L - 1) + ["C3"]
    if reconstruction is not None:
        names, colors = ["x\n(−E log p(x|z1))", *names], ["C1", *colors]
        values = np.concatenate([[-reconstruction], values])
    bars = ax.bar(names, values, color=colors)
    ax.bar_label(bars, fmt="%.2f", fontsize=8)
    ax.set(ylabel="nats per example", xlabel="latent layer (z1 next to the data)")
    ax.margins(y=0.15)


def _target(path: Any, where: str) -> Path:
    """Where a figure goes: a path that is not a folder, with a suffix matplotlib writes
    (none: a PNG)."""
    target = check_path(path, f"{where}: path")
    if target.is_dir():
        raise InputError(f"{where}: path {str(target)!r} is a folder, not a file name")
    kinds = FigureCanvasBase.get_supported_filetypes()
    if target.suffix and target.suffix[1:].lower() not in kinds:
        raise InputError(
            f"{where}: path {str(target)!r} has a suffix matplotlib does not "
            f"write; use one of {', '.join('.' + k for k in sorted(kinds))}"
        )
    return target


@checked
def save_figure(fig: plt.Figure, path: str | os.PathLike) -> Path:
    """Write ``fig`` to ``path`` with the house's settings (120 dpi, tight margins), close it.

    The parent folders are made; the file appears whole or not at all (written beside the
    target, then renamed over it), so an interrupted run leaves no half-written figure.
    Returns the path. The format follows the suffix (``.png``, ``.pdf``, ``.svg``).
    """
    path = _target(path, "save_figure")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial{path.suffix}")
    try:
        fig.savefig(partial, dpi=_DPI, bbox_inches="tight", pad_inches=0.1)
        os.replace(partial, path)
    finally:
        plt.close(fig)
        partial.unlink(missing_ok=True)
    return path


_save = save_figure  # the name this module's callers used before it was public
