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
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import torch
import torch.distributed as dist
from rich.console import Console
from torch import Tensor, nn

from latentkit.chains import LatentModel
from latentkit.config import unstructure_config
from latentkit.errors import ConfigError, InputError
from latentkit.estimators import training_estimator
from latentkit.evaluation import check_likelihood_support
from latentkit.objectives import Objective
from latentkit.registry import make_objective
from latentkit.schedules import EMA, LRSchedule, apply_lr, lr_factor
from latentkit.training.config import TrainConfig
from latentkit.training.health import StepHealth
from latentkit.training.loggers import JsonlLogger, Logger, make_logger
from latentkit.training.reporting import Reporting, _Display
from latentkit.training.runtime import DataOrder, init_distributed, resolve_device, seed_everything
from latentkit.training.state import CheckpointState
from latentkit.validation import check_data

__all__ = ["TrainResult", "Trainer"]


class _Loss(nn.Module):
    """The model and its objective as one module, so DDP and torch.compile can wrap them."""

    def __init__(self, model: LatentModel, objective: Objective):
        super().__init__()
        self.model = model
        self.objective = objective

    def forward(self, x: Tensor, step: Tensor) -> Tensor:
        # forward() directly: the objective is not hooked, and this is the hot path.
        return self.objective.forward(self.model, x, step)


@attrs.frozen
class TrainResult:
    """How :meth:`Trainer.fit` ended."""

    step: int
    interrupted: bool
    checkpoint: Path | None
    last_metrics: dict[str, Any]


class _ShapeOnly:
    """Stands for a model in :func:`check_data` when only the data's own properties are
    checked (type, float, shape, emptiness, finiteness), wherever the data live."""

    def __init__(self, data_shape: tuple[int, ...]):
        self.data_shape = data_shape

    @staticmethod
    def reference() -> Tensor:
        return torch.empty(0)  # no parameters: check_data skips the device and dtype checks


class Trainer(StepHealth, CheckpointState, Reporting):
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

    The parts: the non-finite policy (:class:`~latentkit.training.health.StepHealth`),
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
        self.best_validation: float | None = None
        self._diagnose_examples = config.diagnose_examples
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
        self.order = DataOrder(train_data.shape[0], config.batch_size, config.seed)
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.model_name = model_name or getattr(model, "name", None)
        cfg = model_config if model_config is not None else getattr(model, "config", None)
        self.model_config = unstructure_config(cfg) if cfg is not None else None
        self.data_info = dict(data_info or {})
        self.optimizer = torch.optim.Adam(
            self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        self.loss_objective = self._build_objective(objective, objective_config)
        self._step_t = torch.zeros((), dtype=torch.long, device=self.device)
        objective: nn.Module = _Loss(self.model, self.loss_objective)
        if config.compile:
            objective = self._compiled(objective)
        if self.dist.active:
            ids = [self.device.index] if self.device.type == "cuda" else None
            objective = nn.parallel.DistributedDataParallel(
                objective, device_ids=ids, find_unused_parameters=self._has_unused_parameters()
            )
        self.objective = objective
        if config.amp and self.device.type != "cuda":
            warnings.warn(
                "amp: bf16 autocast is used on CUDA only; training in float32", stacklevel=2
            )
        self.step = 0
        self.resumed_from: Path | None = None
        self.last_checkpoint: Path | None = None
        self.last_metrics: dict[str, Any] = {}
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
                # One eager call first: torch.distributions memoizes each KL pair's function
                # on first use, and Dynamo traces the memo lookup but not the dispatch.
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

    # -- data ---------------------------------------------------------------------------

    def _checked(self, data: Any, name: str) -> Tensor:
        """``data`` in the model's dtype, every example checked once: a float tensor
        ``[N, *data_shape]`` with N ≥ 1, finite after the cast, inside p(x|z_1)'s support."""
        if not isinstance(data, Tensor):
            raise InputError(
                f"{name} must be a torch.Tensor of shape [N, "
                f"{', '.join(map(str, self.model.data_shape))}], got {type(data).__name__}"
            )
        if data.is_floating_point():  # float16/64 are cast; an overflow shows up as inf below
            data = data.to(dtype=self.dtype)
        check_data(_ShapeOnly(self.model.data_shape), data, name=name)
        check_likelihood_support(self.model, data, name=name)
        return data

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

    # -- the loop -----------------------------------------------------------------------

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
        window = torch.zeros((), device=self.device, dtype=torch.float64)
        window_steps, window_updates, t_window = 0, 0, time.perf_counter()
        interrupted = False
        skip = cfg.on_nonfinite == "skip"
        try:
            while self.step < end:
                x = self.batch(self.step)
                self._step_t.fill_(self.step)  # a device tensor: no recompile, no host sync
                with self._autocast():
                    loss = self.objective(x, self._step_t).mean()
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                finite = self._step_health(loss.detach())
                if not skip or self._update_or_skip(finite):
                    apply_lr(
                        self.optimizer,
                        cfg.lr,
                        lr_factor(self.lr_schedule, self.step, cfg.steps),
                    )
                    self.optimizer.step()
                    if self.ema is not None:
                        self.ema.update(self.model)
                    window += loss.detach().double()
                    window_updates += 1
                self.step += 1
                window_steps += 1
                stats = None
                if self.step % cfg.log_every == 0 or self.step == end:
                    now = time.perf_counter()
                    rate = window_steps * cfg.batch_size / max(now - t_window, 1e-9)
                    mean = window / window_updates if window_updates else None
                    stats = self._log_train(x, mean, rate)
                    window.zero_()
                    window_steps, window_updates, t_window = 0, 0, now
                if cfg.eval_every and self.step % cfg.eval_every == 0 and self.step != end:
                    self.evaluate_now()
                if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                    self.save_checkpoint()
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
            display.stop()
            self._restore_signals(handlers)
        self._log_curves()
        return TrainResult(self.step, interrupted, self.last_checkpoint, dict(self.last_metrics))

    def _autocast(self) -> contextlib.AbstractContextManager:
        return self._autocast_for(self.device)

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
