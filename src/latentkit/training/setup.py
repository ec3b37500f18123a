"""The trainer's set-up: its data (checked once), its objective (built by name, compiled,
wrapped for DistributedDataParallel) and the batches of each step."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any

import attrs
import torch
from torch import Tensor, nn

from latentkit.chains import LatentModel
from latentkit.config import unstructure_config
from latentkit.errors import ConfigError
from latentkit.objectives import Objective
from latentkit.registry import make_objective
from latentkit.schedules import LRSchedule
from latentkit.training.runtime import DataOrder
from latentkit.validation import check_dataset

__all__ = ["TrainerSetup"]


class _Loss(nn.Module):
    """The model and its objective as one module, so DDP and torch.compile can wrap them."""

    def __init__(self, model: LatentModel, objective: Objective):
        super().__init__()
        self.model = model
        self.objective = objective

    def forward(self, x: Tensor, step: Tensor) -> Tensor:
        # forward() directly: the objective is not hooked, and this is the hot path.
        return self.objective.forward(self.model, x, step)


class TrainerSetup:
    """The trainer's part that builds what the loop runs on (a mixin of :class:`Trainer`)."""

    def _setup_data(
        self,
        train_data: Tensor,
        test_data: Tensor | None,
        validation_data: Tensor | None,
        dynamic_binarization: bool,
    ) -> None:
        """Every example checked once; training data placed; the data order fixed."""
        config = self.config
        self.binarizer = None
        if dynamic_binarization:
            from latentkit.data import DynamicBinarizer

            self.binarizer = DynamicBinarizer(train_data.to(self.dtype), seed=config.seed)
            self.train_data = self.binarizer.probs
        else:
            self.train_data = self._place(self._checked(train_data, "train_data"))
        self.test_data = None if test_data is None else self._checked(test_data, "test_data")
        self.validation_data = (
            None if validation_data is None else self._checked(validation_data, "validation_data")
        )
        self.order = DataOrder(train_data.shape[0], config.batch_size, config.seed)

    def _setup_optimizer(self) -> None:
        """Adam and its learning-rate schedule (a pure function of the step)."""
        config = self.config
        self.optimizer = torch.optim.Adam(
            self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        self.lr_schedule = LRSchedule(
            kind=config.lr_schedule,
            warmup_steps=config.lr_warmup_steps,
            min_factor=config.lr_min_factor,
            step_every=config.lr_step_every,
            step_gamma=max(config.lr_gamma, 1e-300),
        )
        if config.lr_schedule == "cosine" and config.steps <= config.lr_warmup_steps:
            raise ConfigError(
                f"lr_warmup_steps ({config.lr_warmup_steps}) must be below steps "
                f"({config.steps}) for a cosine schedule"
            )

    def _setup_objective(
        self, objective: str | Objective | None, options: dict[str, Any] | None
    ) -> None:
        """The objective, and the module the loop calls: compiled and DDP-wrapped as asked."""
        self.loss_objective = self._build_objective(objective, options)
        self._step_t = torch.zeros((), dtype=torch.long, device=self.device)
        module: nn.Module = _Loss(self.model, self.loss_objective)
        if self.config.compile:
            module = self._compiled(module)
        if self.dist.active:
            ids = [self.device.index] if self.device.type == "cuda" else None
            module = nn.parallel.DistributedDataParallel(
                module, device_ids=ids, find_unused_parameters=self._has_unused_parameters()
            )
        self.objective = module
        if self.config.amp and self.device.type != "cuda":
            warnings.warn(
                "amp: bf16 autocast is used on CUDA only; training in float32", stacklevel=3
            )

    def _build_objective(
        self, objective: str | Objective | None, options: dict[str, Any] | None
    ) -> Objective:
        if isinstance(objective, Objective):
            if options:
                raise ConfigError("objective_config is only read with an objective name")
            return objective.to(self.device)
        if objective is None:
            if options:
                raise ConfigError("objective_config needs an objective name")
            name, declared = self.model.default_objective
            objective, options = name, declared
        if not isinstance(objective, str):
            raise ConfigError(
                f"objective must be a registered name or a latentkit.Objective, got "
                f"{type(objective).__name__}"
            )
        return make_objective(objective, self.model, **dict(options or {})).to(self.device)

    @property
    def objective_record(self) -> dict[str, Any]:
        """The objective's name and options, as checkpoints record them."""
        o = self.loss_objective
        config = unstructure_config(o.config) if attrs.has(type(o.config)) else None
        return {"name": o.name or type(o).__name__, "config": config}

    def _compiled(self, objective: nn.Module) -> nn.Module:
        """``torch.compile(objective)``, compiled now on one batch (noise forked), or the eager
        objective with a warning when Dynamo cannot trace the model."""
        compiled = torch.compile(objective)
        share = self.config.batch_size // self.dist.world_size
        x = self.batch(0)[:share]
        # The warm-up calls must leave no trace in the objective's state (a sampler's history).
        state = {k: t.clone() for k, t in self.loss_objective.state_dict().items()}
        try:
            with self._fork_rng(self.config.seed), self._autocast_for(self.device):
                # One eager call first: the engine's caches (the resolved estimator, the
                # likelihood's family) are filled outside the trace, not mutated inside it.
                objective(x, self._step_t)
                compiled(x, self._step_t)
        except Exception as exc:  # Dynamo's failures have many types; all mean "not this model"
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            warnings.warn(
                f"compile: torch.compile could not trace this model ({first}); training without it",
                stacklevel=3,
            )
            return objective
        finally:
            self.loss_objective.load_state_dict(state)
        return compiled

    def _has_unused_parameters(self) -> bool:
        """Whether the loss leaves some parameter without a gradient (DDP must then look for
        them each step); probed on two examples, with noise that leaves the trajectory be."""
        x = self.batch(0)[:2]
        params = [p for p in self.model.parameters() if p.requires_grad]
        state = {k: t.clone() for k, t in self.loss_objective.state_dict().items()}
        with self._fork_rng(self.config.seed):
            loss = self.loss_objective(self.model, x, self._step_t).mean()
            grads = torch.autograd.grad(loss, params, allow_unused=True)
        self.loss_objective.load_state_dict(state)
        return any(g is None for g in grads)

    def _checked(self, data: Any, name: str) -> Tensor:
        """``data`` in the trainer's dtype, every example checked once
        (:func:`~latentkit.validation.check_dataset`): a float tensor ``[N, *data_shape]``
        with N ≥ 1, finite after the cast, inside p(x|z_1)'s support."""
        return check_dataset(self.model, data, name=name, dtype=self.dtype)

    def _place(self, data: Tensor) -> Tensor:
        data = data.to(dtype=self.dtype)
        # Small data sets live on the accelerator, so a batch is one index, not a copy.
        if self.device.type == "cuda" and data.numel() * data.element_size() < 2**30:
            data = data.to(self.device)
        return data

    def batch(self, step: int) -> Tensor:
        """This process's share of step ``step``'s global batch, on the training device."""
        idx = self.order.indices(step)
        share = self.config.batch_size // self.dist.world_size
        rows = slice(self.dist.rank * share, (self.dist.rank + 1) * share)
        if self.binarizer is not None:  # bits of the global batch, so ranks draw apart
            return self.binarizer.batch(idx, step)[rows].to(self.device, dtype=self.dtype)
        idx = idx[rows]
        return self.train_data[idx.to(self.train_data.device)].to(self.device, non_blocking=True)

    def _autocast_for(self, device: torch.device) -> contextlib.AbstractContextManager:
        if self.config.amp and device.type == "cuda":
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _fork_rng(self, seed: int) -> contextlib.AbstractContextManager:
        @contextlib.contextmanager
        def forked() -> Iterator[None]:
            devices = [self.device.index or 0] if self.device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(seed)
                yield

        return forked()
