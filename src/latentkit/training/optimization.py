"""One optimizer step: the loss and its gradient, the non-finite policy, the update.

:class:`Optimization` holds Adam, the learning-rate schedule (a pure function of the step,
:mod:`latentkit.training.lr_schedules`), the health watch that clips the gradient and
decides whether a faulty update is made (:mod:`latentkit.training.health`), and the
weight average updated after each update (:mod:`latentkit.training.averaging`).
"""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor, nn

from latentkit.errors import ConfigError
from latentkit.training.averaging import EMA
from latentkit.training.config import TrainConfig
from latentkit.training.health import HealthWatch
from latentkit.training.loss import TrainingLoss
from latentkit.training.lr_schedules import LRSchedule, apply_lr, lr_factor

__all__ = ["Optimization", "lr_schedule_of"]


def lr_schedule_of(config: TrainConfig) -> LRSchedule:
    """The learning-rate schedule a :class:`~latentkit.training.TrainConfig` asks for,
    checked against its steps (a cosine must end after its warm-up)."""
    c = config
    schedule = LRSchedule(
        kind=c.lr_schedule,
        warmup_steps=c.lr_warmup_steps,
        min_factor=c.lr_min_factor,
        step_every=c.lr_step_every,
        step_gamma=max(c.lr_gamma, 1e-300),
    )
    if c.lr_schedule == "cosine" and c.steps <= c.lr_warmup_steps:
        raise ConfigError(
            f"lr_warmup_steps ({c.lr_warmup_steps}) must be below steps ({c.steps}) for a "
            "cosine schedule"
        )
    return schedule


class Optimization:
    """Adam's step on a :class:`TrainingLoss`, with its schedule, health watch and average.

    Args:
        model: the model whose parameters Adam updates.
        loss: what each step minimises.
        health: clips the gradient and applies the non-finite policy.
        lr: the base learning rate; ``schedule`` scales it by the step.
        total_steps: the run's T (the cosine schedule spans it).
        weight_decay: Adam's L2 weight decay.
        ema: the weight average updated after each update (None: none is kept).
    """

    def __init__(
        self,
        model: nn.Module,
        loss: TrainingLoss,
        health: HealthWatch,
        *,
        lr: float,
        schedule: LRSchedule,
        total_steps: int,
        weight_decay: float = 0.0,
        ema: EMA | None = None,
    ):
        self.model, self.loss, self.health = model, loss, health
        self.lr, self.schedule, self.total_steps = lr, schedule, total_steps
        self.optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
        self.ema = ema

    @classmethod
    def from_config(
        cls,
        config: TrainConfig,
        model: nn.Module,
        loss: TrainingLoss,
        health: HealthWatch,
        *,
        schedule: LRSchedule | None = None,
    ) -> Optimization:
        """Adam as a :class:`~latentkit.training.TrainConfig` asks (``lr``, its schedule,
        ``weight_decay``, a weight average with ``ema_decay`` > 0)."""
        ema = None
        if config.ema_decay > 0:
            ema = EMA(model, config.ema_decay, warmup=config.ema_warmup)
        return cls(
            model,
            loss,
            health,
            lr=config.lr,
            schedule=schedule or lr_schedule_of(config),
            total_steps=config.steps,
            weight_decay=config.weight_decay,
            ema=ema,
        )

    def step(self, x: Tensor, step: int, c: Tensor | None = None) -> Tensor | None:
        """Optimizer step number ``step`` (0-based) on batch ``x`` (conditions ``c``): its
        loss, or ``None`` when the ``skip`` policy skipped a faulty update."""
        loss = self.loss.mean(x, step, c)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        finite = self.health.observe(loss.detach(), step)
        if self.health.policy == "skip" and not self.health.decide(finite, step):
            return None
        apply_lr(self.optimizer, self.lr, lr_factor(self.schedule, step, self.total_steps))
        self.optimizer.step()
        if self.ema is not None:
            self.ema.update(self.model)
        return loss.detach()

    @property
    def current_lr(self) -> float:
        """The rate the last update used (the first group's)."""
        return self.optimizer.param_groups[0]["lr"]

    def averaged(self) -> contextlib.AbstractContextManager:
        """The model holds the weight average inside the ``with`` body (when one is kept)."""
        if self.ema is None:
            return contextlib.nullcontext()
        return self.ema.swapped(self.model)
