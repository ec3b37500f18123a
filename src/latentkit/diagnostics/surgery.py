""":func:`diagnose`: ELBO surgery and collapse diagnostics of a model over a data set.

It checks its arguments, puts the model in ``eval()`` mode under its own random stream,
and runs the walk the posterior chain allows (:mod:`latentkit.diagnostics.walks`); a
class-conditional model is walked class by class, given each class, and the figures
combined (:mod:`latentkit.diagnostics.conditional`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from latentkit.arguments import check_flag, check_model, check_number, check_seed
from latentkit.chains import LatentModel
from latentkit.diagnostics.conditional import _check_family, _check_labels, _diagnose_by_class
from latentkit.diagnostics.results import Diagnostics
from latentkit.diagnostics.walks import _Settings, _walk
from latentkit.errors import InputError
from latentkit.validation import check_dataset, check_positive_int

__all__ = ["ELEMENTS_PER_CALL", "diagnose"]

ELEMENTS_PER_CALL = 1 << 22
"""Default budget of one mixture evaluation: (draw, example) pairs × the latent's size."""


def _check_inputs(model: LatentModel, data: Tensor, given: dict[str, Any]) -> Tensor | None:
    """Refuse bad arguments, each with one error naming it, before any work; return the
    examples' class labels (``None``: an unconditional model, or a member of the family).
    ``given``: diagnose's keyword arguments."""
    check_model(model, "diagnose")
    check_positive_int(given["batch_size"], "batch_size")
    check_positive_int(given["num_draws"], "num_draws")
    if given["pairs_per_call"] is not None:
        check_positive_int(given["pairs_per_call"], "pairs_per_call")
    check_number(given["active_threshold"], "active_threshold", low=0.0)
    for flag in ("joint", "keep_latents"):
        check_flag(given[flag], flag)
    check_seed(given["seed"])
    timesteps = given["timesteps"]
    if timesteps is not None:
        if not model.posterior.layer_batched:
            raise InputError(
                "timesteps picks layers of a layer-batched chain (a diffusion's); "
                f"{type(model.posterior).__name__} is not one: leave timesteps=None"
            )
        if isinstance(timesteps, (str, bytes)) or not all(
            isinstance(t, int) and not isinstance(t, bool) for t in timesteps
        ):
            raise InputError(f"timesteps must be a sequence of ints, got {timesteps!r}")
    by_class = _check_family(model, given["conditions"])
    check_dataset(model, data, name="data")  # every example, not only the first
    return _check_labels(model, data, given["conditions"]) if by_class else None


def _default_pairs_per_call(model: LatentModel) -> int:
    """:data:`ELEMENTS_PER_CALL` / (the largest latent's size), at least 1."""
    size = max(math.prod(s) for s in model.generative.latent_shapes)
    return max(1, ELEMENTS_PER_CALL // size)


def _measure(
    model: LatentModel, data: Tensor, labels: Tensor | None, asked: _Settings, seed: int
) -> dict[str, Any]:
    """The fields of :class:`Diagnostics` the walk measures: of ``model`` itself, or, given
    the examples' class ``labels``, class by class (:mod:`.conditional`)."""
    if labels is not None:
        return _diagnose_by_class(model, data, labels, asked, seed)
    result = _walk(model, data, asked, seed)
    del result["activity_parts"]  # pooled over classes only
    return result


@torch.no_grad()
def diagnose(
    model: LatentModel,
    data: Tensor,
    *,
    conditions: Any = None,
    batch_size: int = 500,
    num_draws: int = 4,
    active_threshold: float = 0.01,
    joint: bool = True,
    timesteps: Sequence[int] | None = None,
    pairs_per_call: int | None = None,
    keep_latents: bool = False,
    seed: int = 0,
) -> Diagnostics:
    """ELBO surgery and collapse diagnostics of ``model`` over ``data`` (the package docstring).

    Args:
        model: any :class:`~latentkit.LatentModel`; put in ``eval()`` for the call and
            restored after.
        data: ``[N, *model.data_shape]``, the N examples whose aggregate posterior q(z) is
            taken (moved to the model's device and dtype chunk by chunk). The mixture costs
            O(N² · M) density evaluations: for a large data set pass a random subset (I_q of
            N examples is at most log N).
        conditions: a class-conditional model's labels, one per example of ``data`` (an
            ``int``: every example's), on any device: the figures are given the class
            (the package docstring). ``None`` for an unconditional model or a member
            ``model.given(k)``. A float vector condition is refused (no aggregate posterior).
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
    given = dict(batch_size=batch_size, num_draws=num_draws, active_threshold=active_threshold,
                 joint=joint, timesteps=timesteps, pairs_per_call=pairs_per_call,
                 keep_latents=keep_latents, seed=seed, conditions=conditions)  # fmt: skip
    labels = _check_inputs(model, data, given)
    pairs = pairs_per_call or _default_pairs_per_call(model)
    threshold = float(active_threshold)
    asked = _Settings(batch_size, num_draws, threshold, joint, timesteps, pairs, keep_latents)
    start = time.perf_counter()
    result = _measure(model, data, labels, asked, seed)
    return Diagnostics(
        num_examples=data.shape[0],
        num_draws=num_draws,
        active_threshold=threshold,
        seed=seed,
        seconds=time.perf_counter() - start,
        **result,
    )
