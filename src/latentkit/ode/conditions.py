"""The conditions of a conditional model's ODE figure (:func:`latentkit.ode.ode_figure`)."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from latentkit.chains import LatentModel
from latentkit.conditions import check_condition
from latentkit.errors import InputError, ShapeError

__all__ = ["figure_conditions"]


def figure_conditions(model: LatentModel, conditions: Any, n: int) -> Tensor | None:
    """The figure's ``conditions`` checked against the model's condition (one per example,
    on the model's device), ``None`` for a model that takes none; a conditional model
    without them, or conditions for one that takes none, refused."""
    spec = model.condition_spec
    if model.condition is not None:  # a view: its own condition, one per example or one
        if conditions is not None:
            raise InputError("the ODE figure: the model was already given a condition")
        if model.generative.guidance:
            raise InputError(
                "the ODE figure: the model was given a guidance scale; the figure is of the "
                "model given the condition alone"
            )
        rows = model.condition.shape[0]
        if rows not in (1, n):
            raise ShapeError(f"the ODE figure: {n} examples, the model's condition {rows}")
        return None
    if spec is None:
        if conditions is not None:
            raise InputError("the ODE figure: conditions given, but the model takes no condition")
        return None
    if conditions is None:
        raise InputError(
            f"the ODE figure: the model is conditional on {spec.describe()}: pass conditions= "
            "(one per example)"
        )
    return check_condition(spec, conditions, n, like=model.reference(), name="conditions")
