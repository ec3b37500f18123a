"""Diagnostics given the condition: a class-conditional model walked class by class.

With π_k = N_k / N over the classes present and q(z|c=k) the aggregate posterior of class
k's examples (the package docstring):

    E_data KL(q(z|x,c) ‖ p(z|c)) = I_q(x; z | c) + Σ_k π_k KL(q(z|c=k) ‖ p(z|c=k))

Each class is the walk of ``model.given(k)`` over its own examples, every one with the same
seed; the figures are combined here. An :class:`~latentkit.estimates.Estimate`'s mean is
the π-weighted mean of the classes' and its standard error sqrt(Σ π_k² se_k²) (the classes
are strata of fixed size); a per-dimension KL is π-weighted too. Each class's per-draw
values, log-likelihoods and draws go back to their examples' rows, so their plain mean over
all N·M draws is the π-weighted mean. The activity is pooled: Cov_x(E_q[z_d | x, c]) over
all N examples, the unconditional formula on the pooled posterior means (the within-class
spread and the between-class spread of the class means alike).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from latentkit.chains import LatentModel
from latentkit.conditions import check_condition
from latentkit.diagnostics.information import InformationDraws
from latentkit.diagnostics.results import LayerDiagnostics
from latentkit.diagnostics.walks import _Activity, _Settings, _walk
from latentkit.errors import InputError
from latentkit.estimates import Estimate


def _check_family(model: LatentModel, conditions: Any) -> bool:
    """Whether ``model`` needs class labels (a class-conditional model, not a member of the
    family), refusing what no labels could mend with one
    :class:`~latentkit.errors.InputError`: conditions given to a model that takes none, a
    member given one condition per example, a float vector condition, none given."""
    spec, name = model.condition_spec, model.name or type(model.generative).__name__
    if model.condition is not None:  # a member of the family: it takes no more
        if conditions is not None:
            raise InputError(f"diagnose: {name} was already given a condition; pass it once")
        if model.condition.shape[0] != 1:
            raise InputError(
                f"diagnose: {name} was given {model.condition.shape[0]} conditions, one per "
                "example; diagnose the model itself with conditions= (the aggregate "
                "posterior of each class needs its examples together)"
            )
        return False
    if spec is None:
        if conditions is not None:
            raise InputError(f"diagnose: {name} takes no conditions (it is not conditional)")
        return False
    if not spec.is_class:
        raise InputError(
            f"diagnose: {name} is conditional on {spec.describe()}: each condition is one "
            "example's, so there is no aggregate posterior q(z | c) per condition to "
            "decompose by; diagnose model.given(c) of one shared condition c instead"
        )
    if conditions is None:
        raise InputError(
            f"diagnose: {name} is conditional on {spec.describe()}: pass conditions= "
            "(one label per example of data)"
        )
    return True


def _check_labels(model: LatentModel, data: Tensor, conditions: Any) -> Tensor:
    """The examples' class labels, int64 ``[N]`` moved to ``data``'s device (an ``int``:
    every example's): one :class:`~latentkit.errors.InputError` or ``ShapeError`` naming
    what is wrong (dtype, shape, a label outside 0..K−1)."""
    spec, n = model.condition_spec, data.shape[0]
    if isinstance(conditions, Tensor):  # like the data, on any device
        conditions = conditions.to(data.device)
    return check_condition(spec, conditions, n, like=data, name="conditions", allow_null=True)


def _diagnose_by_class(
    model: LatentModel, data: Tensor, labels: Tensor, settings: _Settings, seed: int
) -> dict[str, Any]:
    """The fields of :class:`~latentkit.diagnostics.Diagnostics` given the class: the walk of
    ``model.given(k)`` over class k's examples for each class present, combined."""
    n = data.shape[0]
    classes = [int(k) for k in torch.unique(labels).tolist()]
    rows = [(labels == k).nonzero().flatten() for k in classes]
    parts = [_walk(model.given(k), data[r], settings, seed) for k, r in zip(classes, rows)]
    weights = [r.numel() / n for r in rows]
    counts = {k: r.numel() for k, r in zip(classes, rows)}
    out: dict[str, Any] = {
        key: _weighted([p[key] for p in parts], weights)
        for key in ("mutual_information", "aggregate_kl", "expected_kl", "reconstruction", "elbo")
    }
    out["layers"] = _layers(parts, weights, settings)
    out["joint"] = _draws([p["joint"] for p in parts], rows, n)
    out["layer_draws"] = {
        key: _draws([p["layer_draws"][key] for p in parts], rows, n)
        for key in parts[0]["layer_draws"]
    }
    out["log_likelihood"] = _rows_back([p["log_likelihood"] for p in parts], rows, n)
    latents = [p["latents"] for p in parts]
    out["latents"] = (
        None
        if latents[0] is None
        else tuple(_rows_back(list(layer), rows, n) for layer in zip(*latents))
    )
    out["notes"] = _notes(parts, counts, n)
    out["condition"] = model.condition_spec.describe()
    out["class_counts"] = counts
    return out


def _weighted(estimates: Sequence[Estimate | None], weights: Sequence[float]) -> Estimate | None:
    """The π-weighted mean of the classes' estimates, its standard error
    sqrt(Σ π_k² se_k²); ``None`` where a class has none."""
    if any(e is None for e in estimates):
        return None
    mean = sum(w * e.mean for w, e in zip(weights, estimates))
    var = sum(w * w * e.stderr * e.stderr for w, e in zip(weights, estimates))
    return Estimate(float(mean), math.sqrt(var))


def _weighted_tensor(values: Sequence[Tensor | None], weights: Sequence[float]) -> Tensor | None:
    """Σ_k π_k v_k of the classes' per-dimension figures; ``None`` where a class has none."""
    if any(v is None for v in values):
        return None
    return sum(w * v for w, v in zip(weights, values))


def _rows_back(values: Sequence[Tensor | None], rows: Sequence[Tensor], n: int) -> Tensor | None:
    """The classes' per-example tensors (``[N_k, ...]``) back in their examples' order,
    ``[N, ...]``; ``None`` where a class has none."""
    if any(v is None for v in values):
        return None
    out = values[0].new_empty((n, *values[0].shape[1:]))
    for v, r in zip(values, rows):
        out[r.to(v.device)] = v
    return out


def _draws(
    draws: Sequence[InformationDraws | None], rows: Sequence[Tensor], n: int
) -> InformationDraws | None:
    """The classes' per-draw values in their examples' rows: log q(z) of each draw is its
    own class's mixture, so the values average to the figures given the class."""
    if any(d is None for d in draws):
        return None
    return InformationDraws(
        _rows_back([d.log_q_conditional for d in draws], rows, n),
        _rows_back([d.log_q_aggregate for d in draws], rows, n),
        _rows_back([d.log_prior for d in draws], rows, n),
    )


def _layers(
    parts: Sequence[dict[str, Any]], weights: Sequence[float], settings: _Settings
) -> tuple[LayerDiagnostics, ...]:
    """Each layer's figures combined over the classes; its activity pooled over all N."""
    out = []
    for index, same in enumerate(zip(*(p["layers"] for p in parts))):
        first = same[0]

        def est(field: str, same=same) -> Estimate | None:
            return _weighted([getattr(layer, field) for layer in same], weights)

        activity = _pooled_activity(parts, index, settings.m)
        finite = activity is not None and bool(activity.isfinite().all())
        out.append(
            LayerDiagnostics(
                layer=first.layer,
                shape=first.shape,
                mutual_information=est("mutual_information"),
                aggregate_kl=est("aggregate_kl"),
                expected_kl=est("expected_kl"),
                kl_term=est("kl_term"),
                per_dimension_kl=_weighted_tensor(
                    [layer.per_dimension_kl for layer in same], weights
                ),
                activity=activity,
                active=activity > settings.threshold if finite else None,
                note=first.note,
            )
        )
    return tuple(out)


def _pooled_activity(parts: Sequence[dict[str, Any]], index: int, m: int) -> Tensor | None:
    """A_d = Cov_x(E_q[z_d | x, c]) of layer ``index`` over every example of every class:
    the classes' posterior means and draw spreads in one :class:`_Activity`, so the
    unconditional formula (variance over the N examples with N − 1, the draw noise
    Σ_n Var_m / (N·M) taken out) applied to the pooled means."""
    if any(p["activity_parts"] is None for p in parts):
        return None
    pooled = _Activity()
    for p in parts:
        part = p["activity_parts"][index]
        pooled.means.extend(part.means)
        pooled.within.extend(part.within)
    return pooled.result(m)


def _notes(parts: Sequence[dict[str, Any]], counts: dict[int, int], n: int) -> tuple[str, ...]:
    """The classes' notes, each once, and what the figures are given."""
    bound = sum(c / n * math.log(c) for c in counts.values())
    notes = [
        f"given the condition: each figure is the π-weighted sum (π_k = N_k / N) over the "
        f"{len(counts)} classes present of class k's, the walk of model.given(k) over its "
        f"examples; I_q(x; z | c) ≤ Σ_k π_k log N_k = {bound:.3f} nats; the activity is "
        "pooled over all examples"
    ]
    for p in parts:
        notes.extend(note for note in p["notes"] if note not in notes)
    return tuple(notes)
