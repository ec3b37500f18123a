"""Ancestral sampling from the generative chain.

z_L ~ p(z_L), then z_{l-1} ~ p(z_{l-1} | z_l) for l = L..2, then x ~ p(x | z_1).
"""

from __future__ import annotations

import torch
from torch import Tensor

from latentkit.arguments import check_flag, check_model
from latentkit.chains import LatentModel
from latentkit.conditions import bind
from latentkit.validation import check_positive_int

__all__ = ["class_grid", "sample"]


@torch.no_grad()
def sample(
    model: LatentModel,
    n: int,
    *,
    likelihood_mean: bool = False,
    return_latents: bool = False,
    condition=None,
    guidance: float | None = None,
) -> Tensor | tuple[Tensor, list[Tensor]]:
    """Draw ``n`` examples ``[n, *data_shape]``, all n in one batch at every layer.

    Args:
        likelihood_mean: return the mean of p(x|z_1) instead of a draw from it (the
            usual picture for images; a draw adds per-pixel noise).
        return_latents: also return the latents ``[z_1, ..., z_L]``.
        condition: a conditional model's conditions, one per sample (an ``int`` for all).
        guidance: classifier-free guidance scale w ≥ 0 (models built for guidance): the
            samples then follow no model whose likelihood a bound reports.
    """
    check_model(model, "sample")
    check_positive_int(n, "n")
    check_flag(likelihood_mean, "likelihood_mean")
    check_flag(return_latents, "return_latents")
    p = bind(model, condition, n, guidance=guidance, sampling=True).generative
    z = p.prior(n).sample()
    latents = [z]
    for l in range(p.num_layers, 1, -1):
        z = p.transition(l, z).sample()
        latents.append(z)
    lik = p.likelihood(z)
    x = lik.mean if likelihood_mean else lik.sample()
    return (x, latents[::-1]) if return_latents else x


def class_grid(model: LatentModel, per_class: int) -> Tensor | None:
    """The conditions of a grid of samples with one row per class, ``per_class`` to a row:
    ``[0]*per_class + [1]*per_class + …`` (``None`` for a model not conditional on classes,
    whose grid needs no conditions)."""
    check_model(model, "class_grid")
    check_positive_int(per_class, "per_class")
    spec = model.condition_spec
    if spec is None or not spec.is_class:
        return None
    classes = torch.arange(int(spec.num_classes), device=model.reference().device)
    return classes.repeat_interleave(per_class)
