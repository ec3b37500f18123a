"""The objective contract: an ``nn.Module`` whose ``forward(model, x, step)`` is the per-example
loss, and the spec a plugin registers it with."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import attrs
from torch import Tensor, nn

from latentkit.chains import LatentModel
from latentkit.errors import ConfigError, InputTypeError
from latentkit.specs import Spec


class Objective(nn.Module):
    """What the trainer minimises, per example: ``objective(model, x, step) -> [batch]``.

    Built once for a model by :func:`latentkit.make_objective` (so it can resolve estimators
    and size its state for that model), then called with the model on each batch. An
    ``nn.Module``: state it keeps (buffers, e.g. the importance sampler's history) is saved
    in checkpoints beside the model's weights and restored on resume.

    Subclasses set ``name`` and implement :meth:`forward`; :meth:`supports` says which
    models they apply to. ``step`` is the number of optimizer steps taken so far (a Python
    int or a 0-dim tensor on the model's device: a tensor lets ``torch.compile`` trace one
    graph for every step); ``None`` means "after any schedule has ended".
    """

    name: ClassVar[str] = ""
    importance_samples: int = 1
    """k of the bound this objective trains, IWAE_k (1: an ELBO-type bound); the trainer
    selects and reports its validation bound at this k. Set it per instance."""

    def __init__(self, config: Any, model: LatentModel):
        super().__init__()
        if model is not None and not isinstance(model, LatentModel):
            raise InputTypeError(
                f"{type(self).__name__}: model must be a latentkit.LatentModel, got "
                f"{type(model).__name__}"
            )
        self.config = config

    @classmethod
    def supports(cls, model: LatentModel) -> str | None:
        """``None`` if the objective applies to ``model``, else the reason it does not."""
        return None

    def forward(self, model: LatentModel, x: Tensor, step: int | Tensor | None = None) -> Tensor:
        raise NotImplementedError


class FunctionObjective(Objective):
    """An objective from a plain function ``fn(model, x, step) -> [batch]``: for a quick
    experiment, or a test that injects a fault, without registering anything.

    >>> import torch, latentkit as lk
    >>> model = lk.load_model("vae", data_shape=(4,), latent_dim=2)
    >>> mean_only = lk.FunctionObjective(lambda m, x, step: -lk.elbo(m, x).reconstruction)
    >>> trainer = lk.Trainer(model, torch.rand(8, 4), lk.TrainConfig(steps=1, batch_size=4,
    ...                      progress=False), objective=mean_only)
    """

    name = "function"

    def __init__(self, fn: Callable[[LatentModel, Tensor, Any], Tensor]):
        super().__init__(None, None)  # type: ignore[arg-type]
        if not callable(fn):
            raise ConfigError(f"FunctionObjective needs a callable, got {type(fn).__name__}")
        self.fn = fn

    def forward(self, model: LatentModel, x: Tensor, step: int | Tensor | None = None) -> Tensor:
        return self.fn(model, x, step)


@attrs.frozen
class ObjectiveSpec(Spec):
    """What a plugin contributes for one objective (returned from ``latentkit_objectives``).

    Attributes:
        name, config_class, description, plugin: as every :class:`~latentkit.specs.Spec`
            (``config_class``: the objective's options).
        factory: ``factory(config, model) -> Objective`` (an :class:`Objective` subclass
            itself qualifies).
    """
