"""Checkpoints and exact resume: what a checkpoint holds, and how it is read back, checked.

A checkpoint (``latentkit.checkpoint``) holds the weights, the objective's state (a layer
sampler's history), the weight average when one is kept, Adam's state, every rank's RNG
state and the step; resuming from step k and training to n gives bit-for-bit the parameters
of an uninterrupted run to n on CPU (``tests/test_training.py``; after ``kill -9`` too,
``tests/test_kill.py``).
"""

from __future__ import annotations

import json
import math
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
    CheckpointError,
    atomic_write_bytes,
    check_weights,
    flatten_optimizer_state,
    json_safe,
    list_checkpoints,
    memory_bytes,
    read_checkpoint,
    read_regular_file,
    resolve_checkpoint,
    restore_rng,
    rng_tensors,
    subset,
    unflatten_optimizer_state,
    write_checkpoint,
)
from latentkit.config import unstructure_config
from latentkit.errors import LatentkitError, NonFiniteTrainingError, TrainingError
from latentkit.schedules import EMA
from latentkit.training.config import EXACT_RESUME_FIELDS
from latentkit.training.health import _name_list
from latentkit.training.runtime import seed_everything

__all__ = ["CheckpointState"]


def _checkpoint_step(json_path: Path) -> int:
    return int(json_path.stem.split("-")[1])


class CheckpointState:
    """The trainer's part that writes checkpoints and resumes from them (a mixin of
    :class:`Trainer`)."""

    def _refuse_a_later_run(self) -> None:
        """Refuse to train into a run folder holding checkpoints of steps past this one's
        start that this trainer did not write (another run's): its checkpoints would mix with
        them, and pruning or ``latest_checkpoint`` would pick the wrong ones."""
        if self.run_dir is None or not self.dist.is_main:
            return
        folders = [self.run_dir / "checkpoints"]
        if self.resumed_from is None:  # a resumed run's best/ may be ahead of its checkpoint
            folders.append(self.run_dir / "best")
        for folder in folders:
            later = [p for p in list_checkpoints(folder) if _checkpoint_step(p) > self.step]
            if later and (self.last_checkpoint is None or later[-1] != self.last_checkpoint):
                raise TrainingError(
                    f"{folder} holds a checkpoint of a later step ({later[-1].name}) than this "
                    f"run's start (step {self.step}); resume from it, or train into another "
                    "run_dir (or remove that run)"
                )

    # ---

    def state_tensors(self) -> dict[str, Tensor]:
        """Weights, optimizer state and RNG states, named for the safetensors file."""
        tensors = {f"model/{k}": t for k, t in self.model.state_dict().items()}
        tensors.update({f"objective/{k}": t for k, t in self.loss_objective.state_dict().items()})
        if self.ema is not None:
            tensors.update({f"ema/{k}": t for k, t in self.ema.state_dict().items()})
        opt_tensors, _ = flatten_optimizer_state(self.optimizer.state_dict())
        tensors.update(opt_tensors)
        mine = rng_tensors(prefix="")
        if self.dist.active:
            everyone: list[Any] = [None] * self.dist.world_size
            dist.all_gather_object(everyone, {k: t.cpu() for k, t in mine.items()})
        else:
            everyone = [mine]
        for rank, states in enumerate(everyone):
            for k, t in states.items():
                tensors[f"rng/rank{rank}{k}"] = t
        return tensors

    def save_checkpoint(self) -> Path | None:
        """Write a checkpoint of the current step (rank 0 writes; every rank must call it).

        Refused (:class:`NonFiniteTrainingError`) after a faulty step: a checkpoint never
        holds the weights a NaN/inf update made."""
        self.raise_on_fault()
        tensors = self.state_tensors()  # a collective under DDP: every rank gathers
        self._refuse_non_finite(tensors)
        self._saved_step = self.step
        if self.run_dir is None or not self.dist.is_main:
            if self.dist.active:
                dist.barrier()
            return None
        path = write_checkpoint(
            self.run_dir / "checkpoints",
            self.step,
            tensors,
            self._checkpoint_info(),
            keep_last=self.config.keep_checkpoints,
        )
        self.last_checkpoint = path
        if self.dist.active:
            dist.barrier()
        return path

    def _refuse_non_finite(self, tensors: dict[str, Tensor]) -> None:
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
            f"after step {self.step}: {_name_list(bad)} hold NaN or inf values (an update "
            f"overflowed), so no checkpoint was written; the last good checkpoint is "
            f"{self.last_checkpoint or 'none written'} (lower lr, or set grad_clip)"
        )

    def _checkpoint_info(self) -> dict[str, Any]:
        _, opt_plain = flatten_optimizer_state(self.optimizer.state_dict())
        return {
            "model": self.model_name,
            "model_config": self.model_config,
            "objective": self.objective_record,
            "train_config": unstructure_config(self.config),
            "data": self.data_info,
            "data_order": {
                "seed": self.config.seed,
                "num_examples": self.order.num_examples,
                "batch_size": self.config.batch_size,
                **self.order.position(self.step),
            },
            "optimizer": {"class": type(self.optimizer).__name__, **opt_plain},
            "world_size": self.dist.world_size,
            "nonfinite": {
                "policy": self.config.on_nonfinite,
                "skipped_steps": self.skipped_steps,
                "skips_in_a_row": self._skips_in_a_row,
            },
            "ema": None
            if self.ema is None
            else {"decay": self.ema.decay, "warmup": self.ema.warmup},
            "metrics": json_safe(self.last_metrics),
            "best_validation_elbo": self.best_validation,
            "best_validation_k": self.selection_k,
            "torch": torch.__version__,
            "budget": self._budget(),
        }

    def _budget(self) -> dict[str, Any]:
        """What training has cost so far: ``train_seconds``, the wall time of :meth:`fit`
        summed over the run's sessions (each resume adds its own) from step ``since_step``
        (0, unless the run resumed from a checkpoint that did not record it), and where the
        latest session ran (``device``, its name, torch's CPU ``threads``, ``world_size``)."""
        seconds = self.train_seconds
        if self._fit_start is not None:  # a checkpoint written inside fit
            seconds += time.perf_counter() - self._fit_start
        device = torch.device(self.device)
        if device.type == "cuda":
            name = torch.cuda.get_device_name(device)
        else:
            name = platform.processor() or platform.machine() or device.type
        return {
            "train_seconds": round(seconds, 3),
            "since_step": self.seconds_since_step,
            "device": str(device),
            "device_name": name,
            "threads": torch.get_num_threads(),
            "world_size": self.dist.world_size,
        }

    def _load_budget(self, info: dict[str, Any], where: Path) -> None:
        """The budget of the sessions before the checkpoint: a checkpoint that does not record
        one (written by an earlier latentkit) starts the count at its step."""
        budget = info.get("budget")
        if budget is None:
            self.train_seconds, self.seconds_since_step = 0.0, int(info["step"])
            return
        seconds = budget.get("train_seconds") if isinstance(budget, dict) else None
        since = budget.get("since_step") if isinstance(budget, dict) else None
        if not (
            isinstance(seconds, (int, float))
            and not isinstance(seconds, bool)
            and math.isfinite(seconds)
            and seconds >= 0
            and isinstance(since, int)
            and not isinstance(since, bool)
            and 0 <= since <= info["step"]
        ):
            raise CheckpointError(
                f"{where}: 'budget' must hold train_seconds ≥ 0 and since_step in "
                f"[0, step], got {budget!r}"
            )
        self.train_seconds, self.seconds_since_step = float(seconds), since

    def resume(self, path: str | os.PathLike) -> int:
        """Load weights, optimizer, RNG and step from a checkpoint; return the step.

        The training configuration's data-order and optimizer fields should match the
        checkpoint's (:data:`EXACT_RESUME_FIELDS`); a change is warned about, since the
        continuation is then no longer the uninterrupted run.
        """
        tensors, info = read_checkpoint(path)
        where = resolve_checkpoint(path)
        self._compare_config(info, where)
        weights = subset(tensors, "model")
        check_weights(self.model, weights, where=str(where))
        self.model.load_state_dict(weights)
        self._load_objective_state(subset(tensors, "objective"), info, where)
        self._load_ema_state(subset(tensors, "ema"), where)
        self.optimizer.load_state_dict(self._optimizer_state(tensors, info, where))
        self.step = self._saved_step = info["step"]
        self._load_fault_counts(info, where)
        self._load_budget(info, where)
        self._load_rng(tensors, info, where)
        self.last_checkpoint = self.resumed_from = where
        metrics = info.get("metrics")
        self.last_metrics = dict(metrics) if isinstance(metrics, dict) else {}
        best = info.get("best_validation_elbo")
        if best is not None and not (isinstance(best, (int, float)) and math.isfinite(best)):
            raise CheckpointError(f"{where}: 'best_validation_elbo' must be a finite number")
        self.best_validation = None if best is None else float(best)
        if info.get("best_validation_k", 1) != self.selection_k:
            # kept by another bound (select_k changed): not comparable, the next one is best
            self.best_validation = None
        if self.run_dir is not None and self.dist.is_main:
            self._truncate_metrics(self.step)
        return self.step

    def _compare_config(self, info: dict[str, Any], where: Path) -> None:
        """Warn about changed :data:`EXACT_RESUME_FIELDS` (the continuation is then not the
        uninterrupted run); refuse another data set size (the data order would differ)."""
        saved = info.get("train_config") or {}
        if not isinstance(saved, dict):
            raise CheckpointError(f"{where}: 'train_config' must be an object, got {saved!r}")
        changed = [
            f for f in EXACT_RESUME_FIELDS if f in saved and saved[f] != getattr(self.config, f)
        ]
        if self.config.lr_schedule == "cosine" and saved.get("steps") not in (
            None,
            self.config.steps,
        ):
            changed.append("steps (the cosine learning-rate schedule spans the run's steps)")
        if changed:
            warnings.warn(
                f"resuming with changed {changed}: training goes on, but not as the "
                "uninterrupted run would have",
                stacklevel=3,
            )
        order = info.get("data_order") or {}
        n = order.get("num_examples") if isinstance(order, dict) else None
        if n is not None and n != self.order.num_examples:
            raise CheckpointError(
                f"the checkpoint was trained on {n} examples, this data set has "
                f"{self.order.num_examples}; load the same data to resume"
            )

    def _load_fault_counts(self, info: dict[str, Any], where: Path) -> None:
        """The ``skip`` policy's counts of skipped steps, checked."""
        faults = info.get("nonfinite") or {}
        counts = (
            [faults.get(k, 0) for k in ("skipped_steps", "skips_in_a_row")]
            if isinstance(faults, dict)
            else [None]
        )
        if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts):
            raise CheckpointError(f"{where}: 'nonfinite' must hold counts ≥ 0, got {faults!r}")
        if isinstance(faults, dict):
            self.skipped_steps, self._skips_in_a_row = counts

    def _load_rng(self, tensors: dict[str, Tensor], info: dict[str, Any], where: Path) -> None:
        """This rank's generator states, or a reseed (warned) when the process count changed."""
        rng = subset(tensors, f"rng/rank{self.dist.rank}")
        if info.get("world_size", 1) == self.dist.world_size and rng:
            try:
                restore_rng(rng)
            except (KeyError, RuntimeError, TypeError) as exc:
                raise CheckpointError(
                    f"{where}: the saved random-generator state is malformed ({type(exc).__name__})"
                ) from None
        else:
            warnings.warn(
                f"the checkpoint was written by {info.get('world_size')!r} process(es), this "
                f"run has {self.dist.world_size}: the model's noise is reseeded",
                stacklevel=3,
            )
            seed_everything((self.config.seed + 104729 * self.step + self.dist.rank) % 2**63)
        self._rng_ready = True

    def _load_objective_state(
        self, tensors: dict[str, Tensor], info: dict[str, Any], where: Path
    ) -> None:
        """The objective's saved state (e.g. a layer sampler's history), checked like the
        weights: the same names, shapes and dtypes, finite; and the same objective."""
        saved = info.get("objective")
        if isinstance(saved, dict) and saved.get("name") != self.objective_record["name"]:
            warnings.warn(
                f"resuming with objective {self.objective_record['name']!r}; the checkpoint "
                f"was trained with {saved.get('name')!r}",
                stacklevel=3,
            )
        mine = self.loss_objective.state_dict()
        if not mine and not tensors:
            return
        same = isinstance(saved, dict) and saved == self.objective_record
        if set(tensors) != set(mine) or not same:
            warnings.warn(
                "the checkpoint's objective state does not match this objective's; it starts "
                "afresh",
                stacklevel=3,
            )
            return
        for k, t in tensors.items():
            ok = t.shape == mine[k].shape and t.dtype == mine[k].dtype
            if not ok or (t.is_floating_point() and not bool(torch.isfinite(t).all())):
                raise CheckpointError(f"{where}: objective state {k!r} is malformed")
        self.loss_objective.load_state_dict(tensors)

    def _load_ema_state(self, tensors: dict[str, Tensor], where: Path) -> None:
        """The weight average's saved state; a run that turns the average on (or off) when
        resuming starts it afresh from the current weights (or drops it), with a warning."""
        if self.ema is None:
            if tensors:
                warnings.warn(
                    "the checkpoint holds a weight average (ema_decay > 0); this run keeps none",
                    stacklevel=3,
                )
            return
        if not tensors:
            warnings.warn(
                "the checkpoint holds no weight average; it starts from the resumed weights",
                stacklevel=3,
            )
            self.ema = EMA(self.model, self.config.ema_decay, warmup=self.config.ema_warmup)
            return
        try:
            self.ema.load_state_dict(tensors)
        except LatentkitError as exc:
            raise CheckpointError(f"{where}: {exc}") from None

    def _optimizer_state(
        self, tensors: dict[str, Tensor], info: dict[str, Any], where: Path
    ) -> dict[str, Any]:
        """Adam's saved state, checked against this model's parameters. The hyper-parameters
        (param groups) are this trainer's own, not the file's: nothing but moments and step
        counts is taken from the checkpoint."""
        plain = info.get("optimizer")
        scalars = plain.get("state_scalars", {}) if isinstance(plain, dict) else None
        params = list(self.model.parameters())
        try:
            state = unflatten_optimizer_state(
                subset(tensors, "optimizer"), {"param_groups": [], "state_scalars": scalars}
            )["state"]
        except (AttributeError, TypeError, ValueError) as exc:
            raise CheckpointError(
                f"{where}: the optimizer state is malformed ({type(exc).__name__})"
            ) from None
        for index, entry in state.items():
            if not 0 <= index < len(params):
                raise CheckpointError(
                    f"{where}: optimizer state for parameter {index}; the model has {len(params)}"
                )
            for key, value in entry.items():
                if isinstance(value, Tensor):
                    shape_ok = value.ndim == 0 or tuple(value.shape) == tuple(params[index].shape)
                    finite = not value.is_floating_point() or bool(torch.isfinite(value).all())
                    if shape_ok and finite:
                        continue
                elif isinstance(value, (int, float)) and math.isfinite(value):
                    continue
                raise CheckpointError(
                    f"{where}: optimizer state {key!r} of parameter {index} is malformed "
                    "(wrong shape, type, or not finite)"
                )
        return {"state": state, "param_groups": self.optimizer.state_dict()["param_groups"]}

    def _truncate_metrics(self, step: int) -> None:
        """Drop metric lines past ``step`` (written after the checkpoint, before a crash)."""
        if not self.metrics_path.exists():
            return
        try:  # a FIFO or a link to /dev/zero is refused, never read (it would block, or not end)
            raw = read_regular_file(self.metrics_path, limit=memory_bytes(), what="metrics")
        except OSError as exc:
            raise TrainingError(f"cannot resume: {exc}") from None
        kept = []
        for line in raw.decode("utf-8", "replace").splitlines():
            try:
                record = json.loads(line)
            except (ValueError, RecursionError):
                continue  # a line cut short by the crash, or not a metrics line at all
            if isinstance(record, dict) and isinstance(record.get("step", 0), int):
                if record.get("step", 0) <= step:
                    kept.append(line)
        atomic_write_bytes(self.metrics_path, ("\n".join(kept) + "\n" if kept else "").encode())
