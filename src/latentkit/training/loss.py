"""What the trainer minimises: the objective, and the module each step calls.

:class:`TrainingLoss` holds the objective (built by name for the model, or given) and the
module the loop calls, ``objective(model, x, step).mean()`` wrapped as one
``nn.Module`` so ``torch.compile`` and DistributedDataParallel can wrap it in turn.
"""

from __future__ import annotations

import warnings
from typing import Any

import attrs
import torch
from torch import Tensor, nn

from latentkit.chains import LatentModel
from latentkit.config import unstructure_config
from latentkit.errors import ConfigError
from latentkit.objectives import Objective
from latentkit.registry import make_objective
from latentkit.training.runtime import Runtime

__all__ = [
    "TrainingLoss",
    "build_objective",
    "drop_conditions",
    "importance_samples",
    "refuse_missing_labels",
]


class _Loss(nn.Module):
    """The model and its objective as one module, so DDP and torch.compile can wrap them."""

    def __init__(self, model: LatentModel, objective: Objective):
        super().__init__()
        self.model = model
        self.objective = objective

    def forward(self, x: Tensor, step: Tensor, c: Tensor | None = None) -> Tensor:
        # forward() directly: the objective is not hooked, and this is the hot path.
        model = self.model
        if c is not None:  # a conditional model: the member of the family for these c
            c = drop_conditions(model.condition_spec, c) if self.training else c
            model = model.given(c, validate=False, allow_missing=True)
        return self.objective.forward(model, x, step)


def drop_conditions(spec: Any, c: Tensor) -> Tensor:
    """Classifier-free guidance's training: each class label replaced by the null class
    (each vector by zeros) with probability ``spec.drop_rate``, so one network learns
    p(x | c) and p(x | ∅). Missing labels (``MISSING_LABEL``) stay missing."""
    if spec is None or not spec.drop_rate:
        return c
    drop = torch.rand(c.shape[0], device=c.device) < spec.drop_rate
    if spec.is_class:
        return torch.where(drop & (c >= 0), torch.full_like(c, spec.null_class), c)
    return c * (~drop).to(c.dtype).view(-1, *([1] * (c.ndim - 1)))


def build_objective(
    model: LatentModel,
    objective: str | Objective | None,
    options: dict[str, Any] | None,
    device: torch.device,
) -> Objective:
    """The objective named ``objective`` (built with ``options``), the one given, or the
    model's own (``model.objective_choice``), on ``device``."""
    if isinstance(objective, Objective):
        if options:
            raise ConfigError("objective_config is only read with an objective name")
        return objective.to(device)
    if objective is None:
        if options:
            raise ConfigError("objective_config needs an objective name")
        objective, options = model.objective_choice
    if not isinstance(objective, str):
        raise ConfigError(
            f"objective must be a registered name or a latentkit.Objective, got "
            f"{type(objective).__name__}"
        )
    return make_objective(objective, model, **dict(options or {})).to(device)


def importance_samples(objective: Objective) -> int:
    """The importance samples of the bound ``objective`` trains (1: the ELBO), as the
    objective declares them (``importance_samples``; an objective that declares nothing
    trains the ELBO)."""
    declared = getattr(objective, "importance_samples", 1)  # a duck-typed objective: the ELBO
    return int(declared)


def refuse_missing_labels(labels: Tensor | None, objective: Objective) -> None:
    """A ConfigError when the training labels have unlabelled examples and ``objective``
    does not declare ``missing_labels`` (only a semi-supervised objective uses them)."""
    if labels is None or labels.ndim != 1 or getattr(objective, "missing_labels", False):
        return
    missing = int((labels < 0).sum())
    if missing:
        raise ConfigError(
            f"{missing} training examples have no label; the {objective.name or 'given'} "
            "objective needs every label (a semi-supervised objective, e.g. m2's, uses "
            'unlabelled examples; or set [data] labels = "all")'
        )


class TrainingLoss:
    """The objective and the module the loop calls (compiled and DDP-wrapped as asked).

    Args:
        model: the model trained.
        objective: the built objective (:func:`build_objective`).
        runtime: the device (the step counter lives there), autocast, the process group.
        sample: this rank's batch of step 0, on which ``torch.compile`` compiles and DDP
            probes for parameters the loss leaves without a gradient.
        seed: seeds the noise of those trial calls (forked: training's noise is untouched).
        sample_labels: the conditions of ``sample`` (a conditional model), else ``None``.
        compile: ``torch.compile`` the module (the eager one, with a warning, when Dynamo
            cannot trace the model).
    """

    def __init__(
        self,
        model: LatentModel,
        objective: Objective,
        runtime: Runtime,
        *,
        sample: Tensor,
        seed: int,
        compile: bool = False,
        sample_labels: Tensor | None = None,
    ):
        self.model, self.objective, self.runtime, self.seed = model, objective, runtime, seed
        self.step_t = torch.zeros((), dtype=torch.long, device=runtime.device)
        module: nn.Module = _Loss(model, objective)
        args = (sample, self.step_t) + (() if sample_labels is None else (sample_labels,))
        if compile:
            module = self._compiled(module, args)
        if runtime.dist.active:
            ids = [runtime.device.index] if runtime.device.type == "cuda" else None
            unused = self._has_unused_parameters(module, args)
            module = nn.parallel.DistributedDataParallel(
                module, device_ids=ids, find_unused_parameters=unused
            )
        self.module = module

    def mean(self, x: Tensor, step: int, c: Tensor | None = None) -> Tensor:
        """The mean loss of batch ``x`` (conditions ``c``, for a conditional model) at
        optimizer step ``step`` (under autocast if on)."""
        self.step_t.fill_(step)  # a device tensor: no recompile, no host sync
        with self.runtime.autocast():
            if c is None:
                return self.module(x, self.step_t).mean()
            return self.module(x, self.step_t, c).mean()

    @property
    def record(self) -> dict[str, Any]:
        """The objective's name and options, as checkpoints record them."""
        o = self.objective
        config = unstructure_config(o.config) if attrs.has(type(o.config)) else None
        return {"name": o.name or type(o).__name__, "config": config}

    def _state(self) -> dict[str, Tensor]:
        return {k: t.clone() for k, t in self.objective.state_dict().items()}

    def _compiled(self, module: nn.Module, args: tuple[Tensor, ...]) -> nn.Module:
        """``torch.compile(module)``, compiled now on this rank's first batch (noise forked),
        or the eager module with a warning when Dynamo cannot trace the model."""
        compiled = torch.compile(module)
        # The warm-up calls must leave no trace in the objective's state (a sampler's history).
        state = self._state()
        try:
            with self.runtime.fork_rng(self.seed), self.runtime.autocast():
                # One eager call first: the engine's caches (the resolved estimator, the
                # likelihood's family) are filled outside the trace, not mutated inside it.
                module(*args)
                compiled(*args)
        except Exception as exc:  # Dynamo's failures have many types; all mean "not this model"
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            warnings.warn(
                f"compile: torch.compile could not trace this model ({first}); training without it",
                stacklevel=4,
            )
            return module
        finally:
            self.objective.load_state_dict(state)
        return compiled

    def _has_unused_parameters(self, module: nn.Module, args: tuple[Tensor, ...]) -> bool:
        """Whether the loss leaves some parameter without a gradient (DDP must then look for
        them each step); probed on two examples, with noise that leaves the trajectory be."""
        params = [p for p in self.model.parameters() if p.requires_grad]
        state = self._state()
        sample, step, *labels = args
        with self.runtime.fork_rng(self.seed):
            loss = module(sample[:2], step, *(c[:2] for c in labels)).mean()
            grads = torch.autograd.grad(loss, params, allow_unused=True)
        self.objective.load_state_dict(state)
        return any(g is None for g in grads)
