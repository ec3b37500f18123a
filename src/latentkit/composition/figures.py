"""The continuous-time figure of a composed model whose prior is a continuous-time diffusion.

``latentkit evaluate`` scores such a model's joined chain with the prior at T = 12 steps
(``evaluation_model``): a proper discrete model, but its bound is far below the continuous
one on a latent of many dimensions (each step's ε-error weighs (e^{Δγ} − 1)/Δγ times the
continuous rate: hundreds of nats on 50 dimensions, ``docs/compose.md``). The figure here is
the bound training minimises, ELBO_∞ = E_q[log p_A(x | z) − log q_A(z | x) + ELBO_∞,B(z)],
on the examples given: a lower bound on log p(x) of the model whose prior is the
continuous-time diffusion (the T → ∞ limit of its discrete chains), estimated without bias.
It has no IWAE: no draw of it is an importance weight.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from latentkit.estimates import Estimate

__all__ = ["continuous_bound", "continuous_figures", "continuous_values", "has_continuous_prior"]

T_DRAWS = 16
"""Draws of (z, t, ε) per example that the figure averages."""


def has_continuous_prior(model: Any) -> bool:
    """Whether ``model``'s prior offers a continuous-time bound (``continuous_elbo``)."""
    return callable(getattr(model.prior, "continuous_elbo", None))


def continuous_bound(model: Any, data: torch.Tensor, *, seed: int) -> float | None:
    """The mean ELBO_∞ over ``data`` (:func:`continuous_figures`' figure, nats, a bound: not
    negated) for a composed model with a continuous-time prior; ``None`` for any other model.
    What the trainer's periodic evaluation records as ``elbo_continuous`` and chooses the best
    checkpoint on."""
    if getattr(model, "outer", None) is None or not has_continuous_prior(model):
        return None  # not a composed model (one with its parts), or its prior is discrete
    figure = continuous_figures(model, data, discrete=False, seed=seed)["continuous"]
    return -figure["nll_nats"]["mean"]


@torch.no_grad()
def continuous_values(
    model: Any, data: torch.Tensor, *, seed: int = 0, batch_size: int = 100, t_draws: int = T_DRAWS
) -> torch.Tensor:
    """−ELBO_∞ of each example, ``[N]`` float64 on the CPU: the mean of ``t_draws`` draws of
    the composed objective with the prior's ``continuous`` bound. The draws of a batch are
    tiled ("(draw b)"), so the prior's low-discrepancy t gives each example's draws one t in
    each of ``t_draws`` equal strata of [0, 1) (adjacent copies would share nearly one t, and
    their mean would keep most of a single draw's variance). The model's random stream and
    its train/eval mode are left as they were."""
    from latentkit.registry import make_objective

    # the model's own (composed) objective by the name it declares, with the prior's bound
    own, options = model.objective_choice
    objective = make_objective(own, model, **{**options, "prior_objective": "continuous"})
    ref = model.reference()
    was_training = model.training
    model.eval()
    values = []
    try:
        with torch.random.fork_rng(devices=[] if ref.device.type == "cpu" else [ref.device]):
            torch.manual_seed(seed)
            for part in data.split(batch_size):
                x = part.to(device=ref.device, dtype=ref.dtype)
                tiled = x.repeat(t_draws, *([1] * (x.ndim - 1)))  # "b ... -> (draw b) ..."
                loss = objective(model, tiled).reshape(t_draws, -1).mean(0)
                values.append(loss.double().cpu())
    finally:
        model.train(was_training)
    return torch.cat(values)


def continuous_figures(
    model: Any,
    data: torch.Tensor,
    *,
    discrete: bool,
    seed: int = 0,
    batch_size: int = 100,
    t_draws: int = T_DRAWS,
) -> dict[str, Any]:
    """``{"continuous": figure}``: :func:`continuous_values` summarised as the other
    likelihood figures are (nats, bits/dim when ``discrete``, ± the standard error over
    examples)."""
    nll = continuous_values(model, data, seed=seed, batch_size=batch_size, t_draws=t_draws)
    nats = Estimate.of(nll)
    bits = math.prod(model.data_shape) * math.log(2.0) if discrete else None
    figure = {
        "what": f"−ELBO_∞: the prior's continuous-time bound on z ({t_draws} draws/example)",
        "bound": "upper bound (T → ∞ prior)",
        "label": "−ELBO_∞",
        "nll_nats": nats.to_json(),
        "median_nll_nats": float(nll.median()),
        "bits_per_dim": None,
        "num_examples": int(nll.numel()),
    }
    if bits is not None:
        figure["bits_per_dim"] = Estimate(nats.mean / bits, nats.stderr / bits).to_json()
    return {"continuous": figure}
