"""One small trainer for any latent model: minimise ``objective(model, x, step).mean()`` with Adam.

It knows nothing of a model's family: what it minimises is an objective
(``latentkit.objectives``: −ELBO_β with warm-up or free bits, −IWAE_k, a DDPM's one-timestep
or hybrid loss), the model's default one unless given another. The bound's terms shown
live and logged come from :func:`latentkit.elbo` on the current batch: the true bound,
never the training surrogate.

Reproducibility, and exact resume
---------------------------------
* The examples of step s are fixed by (seed, s): epoch e = s // (N // B) takes a permutation
  seeded by (seed, e), step s its slice (:class:`DataOrder`): no loader state to resume.
* The model's own noise (reparameterized draws, a DDPM's timesteps) comes from torch's
  global generator, seeded with ``seed + rank`` at the start and saved in each checkpoint.
* Evaluation and the logged terms run under ``fork_rng`` with their own seed: how often you
  log or evaluate does not change the training trajectory.
* A checkpoint (``latentkit.checkpoint``) holds the weights, the weight average (when
  ``ema_decay`` > 0), Adam's state, every rank's RNG state and the step. Resuming from step k
  and training to n gives bit-for-bit the parameters of an uninterrupted run to n on CPU
  (``tests/test_training.py``; after a ``kill -9`` too, ``tests/test_kill.py``). The
  learning-rate schedule is a pure function of the step
  (``latentkit.training.lr_schedules``).

Bad data and numerical faults
-----------------------------
* Every example (and label) is checked once, when the trainer is built (``DataFeed``):
  shape, finiteness in the model's dtype, p(x | z_1)'s support; else a one-line error.
* Each step's health is computed on the device (:class:`~latentkit.training.health.
  HealthWatch`): with ``on_nonfinite="stop"`` (the default) a fault, read back where the
  loop reads the device already, stops training with ``NonFiniteTrainingError`` naming the
  first faulty step and its culprit, before any later checkpoint; with ``"skip"`` a faulty
  update is skipped, and more than ``max_skips`` in a row stop the run.

Several processes
-----------------
Launched by ``torchrun``, the trainer joins the process group and each rank trains on its
share of every global batch (:mod:`latentkit.training.runtime`); rank 0 alone writes.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import attrs
from rich.console import Console
from torch import Tensor

from latentkit.chains import LatentModel
from latentkit.config import unstructure_config
from latentkit.errors import ConfigError, InputTypeError
from latentkit.estimators import training_estimator
from latentkit.objectives import Objective
from latentkit.training.config import TrainConfig
from latentkit.training.feed import DataFeed
from latentkit.training.health import HealthWatch
from latentkit.training.loggers import make_logger
from latentkit.training.loss import TrainingLoss, build_objective, refuse_missing_labels
from latentkit.training.optimization import Optimization, lr_schedule_of
from latentkit.training.reporting import Display, Evaluator, LossWindow, Metrics, TrainLine
from latentkit.training.runtime import Runtime, StopRequest, model_dtype, seed_everything
from latentkit.training.state import RunState

__all__ = ["LOOP_FIELDS", "TrainResult", "Trainer"]

LOOP_FIELDS = (
    "steps",
    "log_every",
    "eval_every",
    "checkpoint_every",
    "keep_checkpoints",
    "progress",
)
"""The fields of :class:`TrainConfig` a trainer reads as it runs, which may change between fits
(the others are built into its parts)."""


@attrs.frozen
class TrainResult:
    """How :meth:`Trainer.fit` ended."""

    step: int
    interrupted: bool
    checkpoint: Path | None
    last_metrics: dict[str, Any]


def _part(path: str, doc: str) -> Any:
    """A read-only attribute of the trainer that is one of its parts' (``path``: dotted)."""
    return property(lambda self: functools.reduce(getattr, path.split("."), self), doc=doc)


class Trainer:
    """Train ``model`` on ``train_data`` with Adam; log, evaluate and checkpoint into ``run_dir``.

    Args:
        model: any :class:`~latentkit.LatentModel`.
        train_data: ``[N, *model.data_shape]`` floats (moved to the model's dtype).
        config: a :class:`TrainConfig`.
        objective: what to minimise: an objective's registered name (built with
            ``objective_config``), a built :class:`~latentkit.Objective`, or ``None`` for
            the model's own (``model.objective_choice``).
        objective_config: options of the objective named by ``objective``.
        validation_data: examples held out of training for the periodic evaluations; when
            given, the test data are never touched by the trainer, and the checkpoint of the
            best validation ELBO is kept in ``run_dir/best/``.
        dynamic_binarization: ``train_data`` are pixel probabilities in [0, 1]; each use of
            an example draws it afresh as Bernoulli bits, a pure function of (seed, step,
            position in the global batch) (:class:`latentkit.data.DynamicBinarizer`), so a
            resumed run sees the bits an uninterrupted one would.
        test_data: examples for the periodic evaluation (optional).
        train_labels, test_labels, validation_labels: a conditional model's conditions per
            example (training labels may be ``MISSING_LABEL`` for a semi-supervised objective).
        run_dir: where ``metrics.jsonl`` and ``checkpoints/`` go (None: write nothing).
        model_name, model_config: recorded in checkpoints so they rebuild the model;
            default to the model's own ``name`` and ``config`` (set by ``load_model``).
        data_info: how the data were loaded (recorded in checkpoints, for ``resume``).
        console: where progress and messages go.

    Its parts, each built from what it needs and testable alone: :attr:`runtime`,
    :attr:`feed` (data, batches, labels), :attr:`loss`, :attr:`health`, :attr:`optimization`
    (Adam, schedule, weight average), :attr:`metrics`, :attr:`train_line`,
    :attr:`evaluator` and :attr:`state` (checkpoints).
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
        train_labels: Tensor | None = None,
        test_labels: Tensor | None = None,
        validation_labels: Tensor | None = None,
    ):
        if not isinstance(model, LatentModel):
            raise InputTypeError(
                f"model must be a latentkit.LatentModel, got {type(model).__name__}"
            )
        self._config = config = config or TrainConfig()
        self.console = console or Console(stderr=True)
        self.runtime = runtime = Runtime.start(
            config.device, model_dtype(model), amp=config.amp, batch_size=config.batch_size
        )
        self.model = model.to(runtime.device)
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.feed = DataFeed(
            self.model,
            runtime,
            train_data,
            batch_size=config.batch_size,
            seed=config.seed,
            test_data=test_data,
            validation_data=validation_data,
            dynamic_binarization=dynamic_binarization,
            train_labels=train_labels,
            test_labels=test_labels,
            validation_labels=validation_labels,
            missing_labels=True,  # refused by refuse_missing_labels unless the objective takes them
        )
        self._build_optimization(config, objective, objective_config)
        self._build_reporting(config)
        cfg = model_config if model_config is not None else getattr(model, "config", None)
        self.state = RunState(
            run_dir=self.run_dir,
            config=config,
            runtime=runtime,
            model=self.model,
            loss=self.loss,
            optimization=self.optimization,
            feed=self.feed,
            metrics=self.metrics,
            evaluator=self.evaluator,
            model_name=model_name or getattr(model, "name", None),
            model_config=unstructure_config(cfg) if cfg is not None else None,
            data_info=data_info,
        )
        self.step = 0
        self._rng_ready = False

    def _build_optimization(
        self, config: TrainConfig, objective: str | Objective | None, options: dict | None
    ) -> None:
        """The loss (the objective built, compiled, wrapped), the health watch, and Adam's
        step with its schedule and weight average."""
        schedule = lr_schedule_of(config)  # checked before anything is compiled
        built = build_objective(self.model, objective, options, self.runtime.device)
        refuse_missing_labels(self.feed.train_labels, built)
        self.loss = TrainingLoss(
            self.model,
            built,
            self.runtime,
            sample=self.feed.batch(0),
            sample_labels=self.feed.labels(0),
            seed=config.seed,
            compile=config.compile,
        )
        self.health = HealthWatch.from_config(
            config, self.model, self.runtime, console=self.console, last_good=self._last_good
        )
        self.optimization = Optimization.from_config(
            config, self.model, self.loss, self.health, schedule=schedule
        )

    def _build_reporting(self, config: TrainConfig) -> None:
        """The metrics' destination, the train line and the periodic evaluation."""
        main = self.runtime.dist.is_main
        logger = make_logger(config.logger, self.run_dir if main else None)
        self.metrics = Metrics(logger, is_main=main, run_dir=self.run_dir)
        estimator = training_estimator(self.model).name  # of the logged terms
        self.train_line = TrainLine(
            self.model,
            self.runtime,
            self.metrics,
            seed=config.seed,
            estimator=estimator,
            count_skips=config.on_nonfinite == "skip",
            last_good=self._last_good,
        )
        self.evaluator = Evaluator.from_config(
            config, self.model, self.runtime, self.metrics, self.feed, self.loss, estimator
        )

    def _last_good(self) -> Path | None:
        """The last checkpoint written or resumed from (named by a stopping fault)."""
        return self.state.last_checkpoint

    @property
    def config(self) -> TrainConfig:
        """The training configuration. Between fits a new one may change the loop's own
        fields (:data:`LOOP_FIELDS`: the run's length and cadences); the others were built
        into the parts, and a change to them is refused (build a new trainer)."""
        return self._config

    @config.setter
    def config(self, config: TrainConfig) -> None:
        fixed = [f for f in attrs.fields_dict(TrainConfig) if f not in LOOP_FIELDS]
        changed = [f for f in fixed if getattr(config, f) != getattr(self._config, f)]
        if changed:
            raise ConfigError(f"a trainer's {changed} are fixed when it is built")
        self._config = self.state.config = config
        self.optimization.total_steps = config.steps

    # --- the loop --------------------------------------------------------------------------

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
            return self._result(False)
        self.state.refuse_a_later_run(self.step)
        if not self._rng_ready:
            seed_everything(cfg.seed + self.runtime.dist.rank)
            self._rng_ready = True
        self.model.train()
        self.loss.objective.train()
        main = self.runtime.dist.is_main
        if main:
            self.metrics.logger.log_config(self.run_config)
        display = Display(self.console, cfg.progress and main, cfg.steps, self.step)
        self.state.budget.start()
        try:
            with StopRequest() as stop:  # a signal now waits for the step in flight
                interrupted = self._loop(end, display, stop)
                self.health.check(self.step)
                if self.evaluator.data is not None and not interrupted:
                    self.evaluate_now()
                if self.state.saved_step != self.step:
                    self.save_checkpoint()
        finally:
            self.state.budget.stop()
            display.stop()
        self.metrics.finish(self.step)
        return self._result(interrupted)

    def _loop(self, end: int, display: Display, stop: StopRequest) -> bool:
        """Steps up to ``end``, with their lines, evaluations and checkpoints; whether the
        run stops short of ``config.steps``."""
        cfg = self.config
        window = LossWindow(self.runtime.device)
        while self.step < end:
            x, c = self.feed.batch(self.step), self.feed.labels(self.step)
            window.add(self.optimization.step(x, self.step, c))
            self.step += 1
            stats = None
            if self.step % cfg.log_every == 0 or self.step == end:
                self.health.check(self.step)
                mean_loss, rate = window.close(cfg.batch_size)
                stats = self.train_line.write(
                    self.step,
                    x,
                    mean_loss,
                    rate,
                    lr=self.optimization.current_lr,
                    skipped=self.health.skipped_steps,
                    condition=c,
                )
            if cfg.eval_every and self.step % cfg.eval_every == 0 and self.step != end:
                self.evaluate_now()
            if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                self.save_checkpoint()
            display.update(self.step, stats)
            if stop.agreed(self.runtime):
                return True
        return self.step < cfg.steps

    def _result(self, interrupted: bool) -> TrainResult:
        return TrainResult(self.step, interrupted, self.last_checkpoint, dict(self.last_metrics))

    # --- what the loop calls, public ---------------------------------------------------------

    def evaluate_now(self) -> dict[str, Any] | None:
        """The held-out bound and terms at the current step (rank 0), logged as a
        ``validation`` or ``test`` line, with the weight average when one is kept; on
        validation, the best so far is kept in ``run_dir/best/``."""
        self.health.check(self.step)
        record = None
        if self.runtime.dist.is_main and self.evaluator.data is not None:
            with self.optimization.averaged():  # evaluated, kept and diagnosed with it
                record = self.evaluator.evaluate(self.step)
                if self.evaluator.improves(record):
                    self.state.save_best(self.step)
                self.evaluator.diagnose(self.step)
        self.runtime.barrier()
        return record

    def save_checkpoint(self) -> Path | None:
        """Write a checkpoint of the current step (rank 0 writes; every rank must call it).

        Refused (:class:`NonFiniteTrainingError`) after a faulty step: a checkpoint never
        holds the weights a NaN/inf update made."""
        self.health.check(self.step)
        return self.state.save(self.step)

    def raise_on_fault(self) -> None:
        """Raise :class:`NonFiniteTrainingError` if a step since the last check was faulty
        (``stop`` mode)."""
        self.health.check(self.step)

    def resume(self, path: str | os.PathLike) -> int:
        """Load weights, optimizer, RNG and step from a checkpoint; return the step.

        The training configuration's data-order and optimizer fields should match the
        checkpoint's (:data:`EXACT_RESUME_FIELDS`); a change is warned about, since the
        continuation is then no longer the uninterrupted run.
        """
        self.step = self.state.resume(path)
        self._rng_ready = True  # restored, or reseeded for another process count
        return self.step

    # --- the parts' attributes, by the names the trainer has always had -----------------------

    batch = _part("feed.batch", "This process's share of a step's global batch (a method).")
    state_tensors = _part("state.tensors", "The checkpoint's tensors (a method).")
    run_config = _part("state.run_config", "What the loggers record as the run's configuration.")
    dist = _part("runtime.dist", "This process's place in the job (DistInfo).")
    device = _part("runtime.device", "The training device.")
    dtype = _part("runtime.dtype", "The model's floating dtype (the data are cast to it).")
    train_data = _part("feed.train_data", "The training examples, checked and placed.")
    test_data = _part("feed.test_data", "The test examples (None: none given).")
    validation_data = _part("feed.validation_data", "The validation examples, or None.")
    binarizer = _part("feed.binarizer", "The dynamic binarizer, or None.")
    order = _part("feed.order", "The data order (DataOrder).")
    objective = _part("loss.module", "The module each step calls (compiled, DDP-wrapped).")
    loss_objective = _part("loss.objective", "The objective minimised.")
    objective_record = _part("loss.record", "The objective's name and options.")
    optimizer = _part("optimization.optimizer", "Adam.")
    lr_schedule = _part("optimization.schedule", "The learning-rate schedule.")
    ema = _part("optimization.ema", "The weight average (None: none is kept).")
    skipped_steps = _part("health.skipped_steps", "Steps the skip policy skipped.")
    logger = _part("metrics.logger", "Where the metrics go.")
    last_metrics = _part("metrics.last", "The last record of each split.")
    metrics_path = _part("metrics.path", "RUN/metrics.jsonl.")
    selection_k = _part("evaluator.selection_k", "The bound that picks the best checkpoint.")
    best_validation = _part("evaluator.best", "The best validation value so far, or None.")
    last_checkpoint = _part("state.last_checkpoint", "The last checkpoint written or read.")
    resumed_from = _part("state.resumed_from", "The checkpoint resumed from, or None.")
    model_name = _part("state.model_name", "The model's registered name (checkpoints).")
    model_config = _part("state.model_config", "The model's configuration (checkpoints).")
    data_info = _part("state.data_info", "How the data were loaded (checkpoints).")
    train_seconds = _part("state.budget.train_seconds", "Training's wall time so far.")
    seconds_since_step = _part("state.budget.since_step", "Where train_seconds counts from.")
