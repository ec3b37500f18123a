"""One small trainer for any latent model: minimise ``objective(model, x, step).mean()`` with Adam.

It knows nothing of a model's family: what it minimises is an objective
(``latentkit.objectives``: −ELBO_β with warm-up or free bits, −IWAE_k, a DDPM's one-timestep
or hybrid loss), the model's default one unless given another. The bound's terms shown
live and logged come from :func:`latentkit.elbo` on the current batch: the true bound,
never the training surrogate.

Reproducibility, and exact resume
---------------------------------
* The examples of step s are fixed by (seed, s): epoch e = s // (N // B) takes a
  permutation drawn from a generator seeded by (seed, e), and step s its slice
  (:class:`DataOrder`). No data-loader state is needed to resume.
* The model's own noise (reparameterized draws, a DDPM's timesteps) comes from torch's
  global generator, seeded with ``seed + rank`` at the start and saved in each checkpoint.
* Evaluation and the logged ELBO terms run inside ``torch.random.fork_rng`` with their own
  seed, so how often you log or evaluate does not change the training trajectory.
* A checkpoint (``latentkit.checkpoint``) holds the weights, the weight average (when
  ``ema_decay`` > 0), Adam's state, every rank's RNG state and the step. Resuming from step k
  and training to n gives bit-for-bit the parameters of an uninterrupted run to n on CPU
  (``tests/test_training.py``; after a ``kill -9`` too, ``tests/test_kill.py``). The
  learning-rate schedule is a pure function of the step (``latentkit.schedules``).

Bad data and numerical faults
-----------------------------
* Every example is checked once, when the trainer is built: a float tensor of the model's
  ``[N, *data_shape]``, no NaN or inf (after the cast to the model's dtype), and inside the
  support of p(x | z_1) (binary for a Bernoulli likelihood); a typed one-line error names
  the problem otherwise.
* Each step's health is computed on the device: ``isfinite`` of the loss and of the total
  gradient norm (the norm ``grad_clip`` needs anyway, from per-parameter norms so a fault
  can name its parameters). With ``on_nonfinite="stop"`` (the default) nothing is read back
  per step: the steps' flags (tensors the step computed anyway) are kept and read, in one
  read, where the loop reads the device already — each log step, before every evaluation
  and checkpoint, at the end, and at least every :data:`CHECK_EVERY` steps — so a fault
  stops training with :class:`~latentkit.errors.NonFiniteTrainingError` naming the first
  faulty step and the culprit (the loss, or the parameters whose gradient is not finite),
  and no checkpoint is ever written after it (the last good one stays as it was). With
  ``on_nonfinite="skip"`` the update must be decided before it happens, so the flag is read
  every step (one host sync per step, the price of skipping): a faulty step is skipped (no
  optimizer update, the data order moves on), and more than ``max_skips`` in a row stop the
  run as above.

Several processes
-----------------
Launched by ``torchrun --nproc_per_node=N`` (which sets RANK, WORLD_SIZE, LOCAL_RANK), the
trainer joins the process group (gloo on CPU, NCCL on CUDA), wraps the objective in
DistributedDataParallel and gives rank r the r-th contiguous slice of each global batch of
``batch_size`` examples, so the averaged gradient is that of the whole batch. Rank 0
alone writes metrics and checkpoints and runs the periodic evaluation.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import attrs
import torch
import torch.distributed as dist
from rich.console import Console
from torch import Tensor

from latentkit.chains import LatentModel
from latentkit.config import unstructure_config
from latentkit.errors import ConfigError
from latentkit.estimators import training_estimator
from latentkit.objectives import Objective
from latentkit.schedules import EMA, apply_lr, lr_factor
from latentkit.training.config import TrainConfig
from latentkit.training.health import StepHealth
from latentkit.training.loggers import JsonlLogger, Logger, make_logger
from latentkit.training.reporting import Reporting, _Display, _LossWindow
from latentkit.training.runtime import init_distributed, resolve_device, seed_everything
from latentkit.training.setup import TrainerSetup
from latentkit.training.state import CheckpointState

__all__ = ["TrainResult", "Trainer"]


@attrs.frozen
class TrainResult:
    """How :meth:`Trainer.fit` ended."""

    step: int
    interrupted: bool
    checkpoint: Path | None
    last_metrics: dict[str, Any]


class Trainer(TrainerSetup, StepHealth, CheckpointState, Reporting):
    """Train ``model`` on ``train_data`` with Adam; log, evaluate and checkpoint into ``run_dir``.

    Args:
        model: any :class:`~latentkit.LatentModel`.
        train_data: ``[N, *model.data_shape]`` floats (moved to the model's dtype).
        config: a :class:`TrainConfig`.
        objective: what to minimise: an objective's registered name (built with
            ``objective_config``), a built :class:`~latentkit.Objective`, or ``None`` for
            the model's default (``model.default_objective``).
        objective_config: options of the objective named by ``objective``.
        validation_data: examples held out of training for the periodic evaluations; when
            given, the test data are never touched by the trainer, and the checkpoint of the
            best validation ELBO is kept in ``run_dir/best/``.
        dynamic_binarization: ``train_data`` are pixel probabilities in [0, 1]; each use of
            an example draws it afresh as Bernoulli bits, a pure function of (seed, step,
            position in the global batch) (:class:`latentkit.data.DynamicBinarizer`), so a
            resumed run sees the bits an uninterrupted one would.
        test_data: examples for the periodic evaluation (optional).
        run_dir: where ``metrics.jsonl`` and ``checkpoints/`` go (None: write nothing).
        model_name, model_config: recorded in checkpoints so they rebuild the model;
            default to the model's own ``name`` and ``config`` (set by ``load_model``).
        data_info: how the data were loaded (recorded in checkpoints, for ``resume``).
        console: where progress and messages go.

    The parts: data, objective and optimizer (:class:`~latentkit.training.setup.TrainerSetup`),
    the non-finite policy (:class:`~latentkit.training.health.StepHealth`),
    checkpoints and resume (:class:`~latentkit.training.state.CheckpointState`), metric
    lines and evaluations (:class:`~latentkit.training.reporting.Reporting`), where metrics
    go (:mod:`latentkit.training.loggers`); this class holds the loop.
    """

    def __init__(
        self,
        model: LatentModel,
        train_data: Tensor,
        config: TrainConfig | None = None,
        *,
        objective: str | Objective | None = None,
        objective_config: dict[str, Any] | None = None,
        test_data: Tensor | None = None,
        validation_data: Tensor | None = None,
        dynamic_binarization: bool = False,
        run_dir: str | os.PathLike | None = None,
        model_name: str | None = None,
        model_config: Any = None,
        data_info: dict[str, Any] | None = None,
        console: Console | None = None,
    ):
        if not isinstance(model, LatentModel):
            raise TypeError(f"model must be a latentkit.LatentModel, got {type(model).__name__}")
        self.config = config = config or TrainConfig()
        self.console = console or Console(stderr=True)
        self.dist, self.device = init_distributed(resolve_device(config.device))
        if config.batch_size % self.dist.world_size:
            raise ConfigError(
                f"batch_size: {config.batch_size} does not split evenly over "
                f"{self.dist.world_size} processes"
            )
        self.model = model.to(self.device)
        ref = self.model.reference()
        self.dtype = ref.dtype if ref.is_floating_point() else torch.get_default_dtype()
        self._setup_data(train_data, test_data, validation_data, dynamic_binarization)
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.model_name = model_name or getattr(model, "name", None)
        cfg = model_config if model_config is not None else getattr(model, "config", None)
        self.model_config = unstructure_config(cfg) if cfg is not None else None
        self.data_info = dict(data_info or {})
        self._setup_optimizer()
        self._setup_objective(objective, objective_config)
        self.step = 0
        self.resumed_from: Path | None = None
        self.last_checkpoint: Path | None = None
        self.last_metrics: dict[str, Any] = {}
        self.best_validation: float | None = None
        self.train_seconds, self.seconds_since_step = 0.0, 0  # the budget (checkpoint "budget")
        self._fit_start: float | None = None
        self._diagnose_examples = config.diagnose_examples
        self._stop: int = 0
        self._saved_step = -1
        self._rng_ready = False
        self._term_estimator = training_estimator(self.model).name
        # Step health, kept on the device (latentkit.training.health).
        self._params = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        self._init_health()
        self.ema = (
            EMA(self.model, config.ema_decay, warmup=config.ema_warmup)
            if config.ema_decay > 0
            else None
        )
        self.logger = make_logger(config.logger, self.run_dir if self.dist.is_main else None)

    def fit(self, *, until: int | None = None) -> TrainResult:
        """Train from the current step to ``config.steps`` (or stop early at ``until``).

        Stopping at ``until`` < steps, or on SIGINT/SIGTERM (after the step in flight),
        writes a checkpoint and returns ``interrupted=True``; a second signal aborts at once.
        At ``config.steps`` already, returns at once and writes nothing. A ``run_dir`` whose
        checkpoints include a step past this trainer's start that it did not write (another,
        later run) is refused with :class:`TrainingError` before anything is written.
        """
        cfg = self.config
        end = cfg.steps if until is None else min(until, cfg.steps)
        if self.step >= cfg.steps:  # nothing to train: no evaluation, no metrics line
            return TrainResult(self.step, False, self.last_checkpoint, dict(self.last_metrics))
        self._refuse_a_later_run()
        if not self._rng_ready:
            seed_everything(cfg.seed + self.dist.rank)
            self._rng_ready = True
        self.model.train()
        self.loss_objective.train()
        if self.dist.is_main:
            self.logger.log_config(self.run_config)
        display = _Display(self.console, cfg.progress and self.dist.is_main, cfg.steps, self.step)
        handlers = self._catch_signals()
        window = _LossWindow(self.device)
        interrupted = False
        self._fit_start = time.perf_counter()
        try:
            while self.step < end:
                x, loss = self._train_step(skip=cfg.on_nonfinite == "skip")
                window.add(loss)
                stats = None
                if self.step % cfg.log_every == 0 or self.step == end:
                    stats = self._log_train(x, *window.close(cfg.batch_size))
                self._periodic(end)
                display.update(self.step, stats)
                if self._should_stop():
                    interrupted = True
                    break
            interrupted = interrupted or self.step < cfg.steps
            self.raise_on_fault()
            if self._eval_data is not None and not interrupted:
                self.evaluate_now()
            if self._saved_step != self.step:
                self.save_checkpoint()
        finally:
            self.train_seconds += time.perf_counter() - self._fit_start
            self._fit_start = None
            display.stop()
            self._restore_signals(handlers)
        self._log_curves()
        return TrainResult(self.step, interrupted, self.last_checkpoint, dict(self.last_metrics))

    def _train_step(self, *, skip: bool) -> tuple[Tensor, Tensor | None]:
        """One optimizer step on the batch of step ``self.step``: that batch, and its loss
        (``None`` when ``skip`` mode skipped a faulty update)."""
        cfg = self.config
        x = self.batch(self.step)
        self._step_t.fill_(self.step)  # a device tensor: no recompile, no host sync
        with self._autocast():
            loss = self.objective(x, self._step_t).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        finite = self._step_health(loss.detach())
        updated = not skip or self._update_or_skip(finite)
        if updated:
            apply_lr(self.optimizer, cfg.lr, lr_factor(self.lr_schedule, self.step, cfg.steps))
            self.optimizer.step()
            if self.ema is not None:
                self.ema.update(self.model)
        self.step += 1
        return x, (loss.detach() if updated else None)

    def _periodic(self, end: int) -> None:
        """The evaluation and checkpoint due after this step, if any."""
        cfg = self.config
        if cfg.eval_every and self.step % cfg.eval_every == 0 and self.step != end:
            self.evaluate_now()
        if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
            self.save_checkpoint()

    def _autocast(self) -> contextlib.AbstractContextManager:
        return self._autocast_for(self.device)

    # --------------------------------------------------------------------

    def _catch_signals(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}

        def handler(signum: int, frame: Any) -> None:
            if self._stop:
                raise KeyboardInterrupt
            self._stop = signum

        old = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            old[sig] = signal.signal(sig, handler)
        return old

    @staticmethod
    def _restore_signals(old: dict[int, Any]) -> None:
        for sig, h in old.items():
            signal.signal(sig, h)

    def _should_stop(self) -> bool:
        if not self.dist.active:
            return bool(self._stop)
        # Every rank must stop after the same step, or the others wait forever in all-reduce.
        flag = torch.tensor([1 if self._stop else 0], device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    # --------------------------------------------------------------------

    @property
    def run_config(self) -> dict[str, Any]:
        """What the loggers record as the run's configuration."""
        return {
            "model": self.model_name,
            "model_config": self.model_config,
            "objective": self.objective_record,
            "train": unstructure_config(self.config),
            "data": self.data_info,
        }

    def _log_curves(self) -> None:
        """Hand the training curves to a logger that keeps figures (not the JSONL one)."""
        if type(self.logger) in (Logger, JsonlLogger) or not self.dist.is_main:
            self.logger.close()
            return
        from latentkit.plots import training_curves

        path = training_curves(self.metrics_path, self.run_dir / ".curves-for-logger.png")
        try:
            self.logger.log_figure("curves", path, self.step)
        finally:
            path.unlink(missing_ok=True)
            self.logger.close()
