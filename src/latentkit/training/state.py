"""Checkpoints and exact resume: what a checkpoint holds, written atomically, read back checked.

A checkpoint (``latentkit.checkpoint``) holds the weights, the objective's state (a layer
sampler's history), the weight average when one is kept, Adam's state, every rank's RNG
state and the step; resuming from step k and training to n gives bit-for-bit the parameters
of an uninterrupted run to n on CPU (``tests/test_training.py``; after ``kill -9`` too,
``tests/test_kill.py``). :class:`RunState` gathers that state from the trainer's parts and
gives it back to them (the checks of what it reads are in
:mod:`latentkit.training.restore`); :class:`Budget` is what training has cost so far.
"""

from __future__ import annotations

import os
import platform
import time
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from latentkit.checkpoint import (
    check_weights,
    flatten_optimizer_state,
    json_safe,
    list_checkpoints,
    read_checkpoint,
    resolve_checkpoint,
    rng_tensors,
    subset,
    write_checkpoint,
)
from latentkit.config import unstructure_config
from latentkit.errors import NonFiniteTrainingError, TrainingError
from latentkit.training import restore
from latentkit.training.averaging import EMA
from latentkit.training.config import TrainConfig
from latentkit.training.feed import DataFeed
from latentkit.training.health import _name_list
from latentkit.training.loss import TrainingLoss
from latentkit.training.optimization import Optimization
from latentkit.training.reporting import Evaluator, Metrics
from latentkit.training.runtime import Runtime

__all__ = ["Budget", "RunState"]


def _checkpoint_step(json_path: Path) -> int:
    return int(json_path.stem.split("-")[1])


class Budget:
    """What training has cost so far: ``train_seconds``, the wall time of the training
    sessions summed over the run (each resume adds its own) from step ``since_step`` (0,
    unless the run resumed from a checkpoint that did not record it)."""

    def __init__(self) -> None:
        self.train_seconds, self.since_step = 0.0, 0
        self._start: float | None = None

    def start(self) -> None:
        self._start = time.perf_counter()

    def stop(self) -> None:
        if self._start is not None:
            self.train_seconds += time.perf_counter() - self._start
        self._start = None

    def record(self, runtime: Runtime) -> dict[str, Any]:
        """The budget as checkpoints record it, with where the latest session ran
        (``device``, its name, torch's CPU ``threads``, ``world_size``)."""
        seconds = self.train_seconds
        if self._start is not None:  # a checkpoint written inside a session
            seconds += time.perf_counter() - self._start
        device = torch.device(runtime.device)
        if device.type == "cuda":
            name = torch.cuda.get_device_name(device)
        else:
            name = platform.processor() or platform.machine() or device.type
        return {
            "train_seconds": round(seconds, 3),
            "since_step": self.since_step,
            "device": str(device),
            "device_name": name,
            "threads": torch.get_num_threads(),
            "world_size": runtime.dist.world_size,
        }

    def load(self, info: dict[str, Any], where: Path) -> None:
        """The budget of the sessions before the checkpoint ``info``."""
        self.train_seconds, self.since_step = restore.budget_of(info, where)


class RunState:
    """The run's state in checkpoints: written from the trainer's parts, read back into them.

    Args:
        run_dir: the run folder (``checkpoints/`` and ``best/`` go there; None: nothing is
            written).
        config: the training configuration (recorded; compared on resume).
        runtime, model, loss, optimization, feed, metrics, evaluator: the parts whose state
            a checkpoint holds (weights, objective state, Adam and the average, the data
            order, the last metrics, the best validation value).
        model_name, model_config, data_info: what rebuilds the model and reloads the data.
    """

    def __init__(
        self,
        *,
        run_dir: Path | None,
        config: TrainConfig,
        runtime: Runtime,
        model: torch.nn.Module,
        loss: TrainingLoss,
        optimization: Optimization,
        feed: DataFeed,
        metrics: Metrics,
        evaluator: Evaluator,
        model_name: str | None = None,
        model_config: dict[str, Any] | None = None,
        data_info: dict[str, Any] | None = None,
    ):
        self.run_dir, self.config, self.runtime, self.model = run_dir, config, runtime, model
        self.loss, self.optimization, self.feed = loss, optimization, feed
        self.metrics, self.evaluator = metrics, evaluator
        self.model_name, self.model_config = model_name, model_config
        self.data_info = dict(data_info or {})
        self.budget = Budget()
        self.last_checkpoint: Path | None = None
        self.resumed_from: Path | None = None
        self.saved_step = -1

    def refuse_a_later_run(self, step: int) -> None:
        """Refuse to train into a run folder holding checkpoints of steps past ``step`` (this
        run's start) that this run did not write (another run's): its checkpoints would mix
        with them, and pruning or ``latest_checkpoint`` would pick the wrong ones."""
        if self.run_dir is None or not self.runtime.dist.is_main:
            return
        folders = [self.run_dir / "checkpoints"]
        if self.resumed_from is None:  # a resumed run's best/ may be ahead of its checkpoint
            folders.append(self.run_dir / "best")
        for folder in folders:
            later = [p for p in list_checkpoints(folder) if _checkpoint_step(p) > step]
            if later and (self.last_checkpoint is None or later[-1] != self.last_checkpoint):
                raise TrainingError(
                    f"{folder} holds a checkpoint of a later step ({later[-1].name}) than this "
                    f"run's start (step {step}); resume from it, or train into another "
                    "run_dir (or remove that run)"
                )

    def tensors(self) -> dict[str, Tensor]:
        """Weights, optimizer state and RNG states, named for the safetensors file (a
        collective under torchrun: every rank's RNG state is gathered)."""
        tensors = {f"model/{k}": t for k, t in self.model.state_dict().items()}
        tensors.update({f"objective/{k}": t for k, t in self.loss.objective.state_dict().items()})
        ema = self.optimization.ema
        if ema is not None:
            tensors.update({f"ema/{k}": t for k, t in ema.state_dict().items()})
        opt_tensors, _ = flatten_optimizer_state(self.optimization.optimizer.state_dict())
        tensors.update(opt_tensors)
        mine = rng_tensors(prefix="")
        if self.runtime.dist.active:
            everyone: list[Any] = [None] * self.runtime.dist.world_size
            dist.all_gather_object(everyone, {k: t.cpu() for k, t in mine.items()})
        else:
            everyone = [mine]
        for rank, states in enumerate(everyone):
            for k, t in states.items():
                tensors[f"rng/rank{rank}{k}"] = t
        return tensors

    @property
    def run_config(self) -> dict[str, Any]:
        """What the loggers record as the run's configuration."""
        return {
            "model": self.model_name,
            "model_config": self.model_config,
            "objective": self.loss.record,
            "train": unstructure_config(self.config),
            "data": self.data_info,
        }

    def info(self, step: int) -> dict[str, Any]:
        """The checkpoint's JSON at ``step``: what rebuilds the model and resumes the run."""
        optimizer = self.optimization.optimizer
        _, opt_plain = flatten_optimizer_state(optimizer.state_dict())
        ema = self.optimization.ema
        return {
            "model": self.model_name,
            "model_config": self.model_config,
            "objective": self.loss.record,
            "train_config": unstructure_config(self.config),
            "data": self.data_info,
            "data_order": self.feed.record(step),
            "optimizer": {"class": type(optimizer).__name__, **opt_plain},
            "world_size": self.runtime.dist.world_size,
            "nonfinite": {"policy": self.config.on_nonfinite, **self.optimization.health.counts()},
            "ema": None if ema is None else {"decay": ema.decay, "warmup": ema.warmup},
            "metrics": json_safe(self.metrics.last),
            "best_validation_elbo": self.evaluator.best,
            "best_validation_k": self.evaluator.selection_k,
            "torch": torch.__version__,
            "budget": self.budget.record(self.runtime),
        }

    def save(self, step: int) -> Path | None:
        """Write a checkpoint of ``step`` (rank 0 writes; every rank must call it). Refused
        (:class:`NonFiniteTrainingError`) when a tensor it would hold is not finite."""
        tensors = self.tensors()  # a collective under DDP: every rank gathers
        self._refuse_non_finite(tensors, step)
        self.saved_step = step
        if self.run_dir is None or not self.runtime.dist.is_main:
            self.runtime.barrier()
            return None
        path = write_checkpoint(
            self.run_dir / "checkpoints",
            step,
            tensors,
            self.info(step),
            keep_last=self.config.keep_checkpoints,
        )
        self.last_checkpoint = path
        self.runtime.barrier()
        return path

    def save_best(self, step: int) -> None:
        """The model's weights as they are (the average, inside an averaged evaluation) in
        ``run_dir/best/``: weights for evaluation, not a resume point (rank 0 alone)."""
        if self.run_dir is None:
            return
        tensors = {f"model/{k}": t for k, t in self.model.state_dict().items()}
        write_checkpoint(self.run_dir / "best", step, tensors, self.info(step), keep_last=1)

    def _refuse_non_finite(self, tensors: dict[str, Tensor], step: int) -> None:
        """Refuse a checkpoint whose weights, objective state or optimizer state hold NaN or
        inf (an update that overflowed, e.g. Adam's second moment beyond float32's range,
        with a finite loss and gradient): it would not load, and the run must not exit 0."""
        floats = [(k, t) for k, t in tensors.items() if t.is_floating_point()]
        if not floats:
            return
        ok = torch.stack([torch.isfinite(t).all() for _, t in floats])
        if bool(ok.all()):  # one read per checkpoint
            return
        bad = [k for (k, _), good in zip(floats, ok.tolist()) if not good]
        raise NonFiniteTrainingError(
            f"after step {step}: {_name_list(bad)} hold NaN or inf values (an update "
            f"overflowed), so no checkpoint was written; the last good checkpoint is "
            f"{self.last_checkpoint or 'none written'} (lower lr, or set grad_clip)"
        )

    def resume(self, path: str | os.PathLike) -> int:
        """Load weights, objective state, average, optimizer, counts, budget, RNG and step
        from a checkpoint into the parts; return the step.

        The training configuration's data-order and optimizer fields should match the
        checkpoint's (:data:`~latentkit.training.EXACT_RESUME_FIELDS`); a change is warned
        about, since the continuation is then no longer the uninterrupted run.
        """
        tensors, info = read_checkpoint(path)
        where = resolve_checkpoint(path)
        restore.compare_config(info, where, self.config, self.feed.order.num_examples)
        weights = subset(tensors, "model")
        check_weights(self.model, weights, where=str(where))
        self.model.load_state_dict(weights)
        restore.load_objective_state(
            self.loss.objective, self.loss.record, subset(tensors, "objective"), info, where
        )
        self._load_average(subset(tensors, "ema"), where)
        optimizer = self.optimization.optimizer
        params = list(self.model.parameters())
        optimizer.load_state_dict(restore.optimizer_state(optimizer, params, tensors, info, where))
        step = self.saved_step = info["step"]
        counts = restore.fault_counts(info, where)
        if counts is not None:
            health = self.optimization.health
            health.skipped_steps, health.skips_in_a_row = counts
        self.budget.load(info, where)
        restore.load_rng(tensors, info, where, self.runtime, self.config.seed, step)
        self.last_checkpoint = self.resumed_from = where
        metrics = info.get("metrics")
        self.metrics.last = dict(metrics) if isinstance(metrics, dict) else {}
        self.evaluator.best = restore.best_validation(info, where, self.evaluator.selection_k)
        self.metrics.truncate(step)
        return step

    def _load_average(self, tensors: dict[str, Tensor], where: Path) -> None:
        """The weight average's saved state; a run that turns the average on (or off) when
        resuming starts it afresh from the current weights (or drops it), with a warning."""
        ema = self.optimization.ema
        if ema is None:
            if tensors:
                warnings.warn(
                    "the checkpoint holds a weight average (ema_decay > 0); this run keeps none",
                    stacklevel=4,
                )
            return
        if not tensors:
            warnings.warn(
                "the checkpoint holds no weight average; it starts from the resumed weights",
                stacklevel=4,
            )
            self.optimization.ema = EMA(self.model, ema.decay, warmup=ema.warmup)
            return
        restore.load_average(ema, tensors, where)
