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
* A checkpoint (``latentkit.checkpoint``) holds the weights, Adam's state, every rank's RNG
  state and the step. Resuming from step k and training to n gives bit-for-bit the
  parameters of an uninterrupted run to n on CPU (``tests/test_training.py``; after a
  ``kill -9`` too, ``tests/test_kill.py``). The learning rate is constant, so ``steps`` can
  be raised when resuming.

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
import json
import math
import os
import signal
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch
import torch.distributed as dist
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import Tensor, nn

from latentkit.bounds import elbo
from latentkit.chains import LatentModel
from latentkit.checkpoint import (
    CheckpointError,
    atomic_write_bytes,
    check_weights,
    flatten_optimizer_state,
    json_safe,
    list_checkpoints,
    read_checkpoint,
    resolve_checkpoint,
    restore_rng,
    rng_tensors,
    subset,
    unflatten_optimizer_state,
    write_checkpoint,
)
from latentkit.config import one_of as _one_of
from latentkit.config import unstructure_config
from latentkit.errors import (
    ConfigError,
    InputError,
    LatentkitError,
    NonFiniteTrainingError,
    TrainingError,
)
from latentkit.estimators import ESTIMATORS, training_estimator
from latentkit.evaluation import check_likelihood_support, evaluate
from latentkit.objectives import Objective
from latentkit.registry import make_objective
from latentkit.schedules import LR_KINDS, LRSchedule, apply_lr, lr_factor
from latentkit.validation import check_data

__all__ = [
    "ON_NONFINITE",
    "DataOrder",
    "DistInfo",
    "NonFiniteTrainingError",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "TrainingError",
    "distributed_env",
    "init_distributed",
    "resolve_device",
    "seed_everything",
    "shutdown_distributed",
]


ON_NONFINITE = ("stop", "skip")
"""What a step with a NaN/inf loss or gradient does: stop the run, or skip the update."""

# The validators raise ConfigError (a ValueError) naming the field, the rule and the value,
# whether the config is built directly or structured from TOML (latentkit.structure_config).


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


MAX_COUNT = 10**9
"""The largest step count, batch size or interval a :class:`TrainConfig` accepts: 10^9 steps
of a tiny model take weeks, and larger values only ever come from a typo."""
MAX_SEED = 2**32 - 1
"""The largest seed: the trainer derives further seeds as ``seed + c·step``, all of which
must stay below torch's 2^64 limit."""
MAX_FLOAT = float(torch.finfo(torch.float32).max)
"""Rates and norms are used in float32 arithmetic: beyond this they are inf there."""


def _int_in(low: int, high: int) -> Any:
    def check(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        if not _is_int(value) or not low <= value <= high:
            raise ConfigError(
                f"{attribute.name!r} must be an int ≥ {low} and at most {high:,}, got {value!r}"
            )

    return check


_nonneg_int = _int_in(0, MAX_COUNT)
_pos_int = _int_in(1, MAX_COUNT)


def _pos_float(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= MAX_FLOAT:
        raise ConfigError(
            f"{attribute.name!r} must be a number > 0 and at most float32's largest, "
            f"{MAX_FLOAT:.4g}, got {value!r}"
        )


def _nonneg_float(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not 0 <= value <= MAX_FLOAT
    ):
        raise ConfigError(
            f"{attribute.name!r} must be a number ≥ 0 and at most float32's largest, "
            f"{MAX_FLOAT:.4g}, got {value!r}"
        )


def _unit_float(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ConfigError(f"{attribute.name!r} must be a number in [0, 1], got {value!r}")


def _boolean(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"{attribute.name!r} must be true or false, got {value!r}")


def _text(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not isinstance(value, str):
        raise ConfigError(f"{attribute.name!r} must be a string, got {value!r}")


@attrs.frozen(kw_only=True)
class TrainConfig:
    """How to train (the model's own configuration is separate).

    Attributes:
        steps: optimizer steps in all (a resumed run continues up to this number).
        batch_size: examples per step, over all processes (the global batch).
        lr: Adam's base learning rate.
        lr_schedule: how the rate moves with the step (``latentkit.schedules``): ``constant``,
            ``cosine`` (to ``lr_min_factor`` · lr at the last step) or ``step`` (× ``lr_gamma``
            every ``lr_step_every`` steps); a pure function of the step, so resume is exact.
        lr_warmup_steps: linear warm-up of the rate over this many steps (0: none).
        lr_min_factor: the cosine schedule's floor, a fraction of ``lr``.
        lr_step_every: steps between two decays of the ``step`` schedule.
        lr_gamma: the ``step`` schedule's factor per decay.
        weight_decay: Adam's L2 weight decay (≥ 0).
        grad_clip: clip the gradient's global norm to this (0: no clipping).
        seed: seeds the data order and the model's noise.
        log_every: steps between metric lines (and live-display updates).
        eval_every: steps between test-set ELBO evaluations (0: only at the end).
        eval_examples: test examples in each periodic evaluation (0: all).
        eval_estimator: ELBO estimator for the periodic evaluations; ``auto`` is the one the
            logged training terms use (``single-layer`` for layer-batched chains such as a
            DDPM: unbiased, and one network call per example instead of T).
        checkpoint_every: steps between checkpoints (0: only at the end).
        keep_checkpoints: how many checkpoints to keep (older ones are deleted).
        device: ``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (CUDA when present).
        amp: bf16 autocast on CUDA (ignored, with a warning, on CPU).
        compile: ``torch.compile`` the training objective.
        progress: show a live progress bar (or, off a terminal, periodic lines).
        on_nonfinite: a step whose loss or gradient is NaN/inf ``stop``s the run (the
            default; no checkpoint is written after it) or is ``skip``ped (no update).
        max_skips: with ``skip``, more than this many faulty steps in a row stop the run.
        diagnose_examples: with each periodic evaluation, also measure the latents'
            mutual information, aggregate KL and active units on this many of its examples
            (``latentkit.diagnose``; a ``diagnostics`` line in ``metrics.jsonl``); 0: off.
    """

    steps: int = attrs.field(default=2000, validator=_pos_int)
    batch_size: int = attrs.field(default=128, validator=_pos_int)
    lr: float = attrs.field(default=1e-3, validator=_pos_float)
    lr_schedule: str = attrs.field(default="constant", validator=_one_of(*LR_KINDS))
    lr_warmup_steps: int = attrs.field(default=0, validator=_nonneg_int)
    lr_min_factor: float = attrs.field(default=0.0, validator=_unit_float)
    lr_step_every: int = attrs.field(default=1000, validator=_pos_int)
    lr_gamma: float = attrs.field(default=0.5, validator=_unit_float)
    weight_decay: float = attrs.field(default=0.0, validator=_nonneg_float)
    grad_clip: float = attrs.field(default=0.0, validator=_nonneg_float)
    seed: int = attrs.field(default=0, validator=_int_in(0, MAX_SEED))
    log_every: int = attrs.field(default=25, validator=_pos_int)
    eval_every: int = attrs.field(default=0, validator=_nonneg_int)
    eval_examples: int = attrs.field(default=1000, validator=_nonneg_int)
    eval_estimator: str = attrs.field(default="auto", validator=_one_of("auto", *ESTIMATORS))
    checkpoint_every: int = attrs.field(default=500, validator=_nonneg_int)
    keep_checkpoints: int = attrs.field(default=2, validator=_pos_int)
    device: str = attrs.field(default="cpu", validator=_text)
    amp: bool = attrs.field(default=False, validator=_boolean)
    compile: bool = attrs.field(default=False, validator=_boolean)
    progress: bool = attrs.field(default=True, validator=_boolean)
    on_nonfinite: str = attrs.field(default="stop", validator=_one_of(*ON_NONFINITE))
    max_skips: int = attrs.field(default=10, validator=_pos_int)
    diagnose_examples: int = attrs.field(default=0, validator=_nonneg_int)


CHECK_EVERY = 1000
"""In ``stop`` mode, the longest run of steps whose health is not yet read back (the log,
evaluation and checkpoint steps usually read it sooner)."""

EXACT_RESUME_FIELDS = (
    "batch_size",
    "lr",
    "lr_schedule",
    "lr_warmup_steps",
    "lr_min_factor",
    "lr_step_every",
    "lr_gamma",
    "weight_decay",
    "grad_clip",
    "seed",
)
"""Fields that must not change on resume for the continuation to be exact."""


def seed_everything(seed: int) -> None:
    """Seed torch's generators (CPU and every CUDA device); latentkit draws from no other."""
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when present, else CPU; a clear error for an unavailable device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(
            f"device: {name!r} is not a torch device (cpu, cuda, cuda:N, auto)"
        ) from None
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"device: {name!r} is not one the trainer runs on (cpu, cuda, cuda:N)")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device: {name!r} asked for, but this machine has no CUDA device")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ConfigError(
            f"device: {name!r} asked for, but this machine has {torch.cuda.device_count()} "
            "CUDA device(s)"
        )
    return device


@attrs.frozen
class DistInfo:
    """This process's place in a torchrun job (rank 0 of 1 when run alone)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


DIST_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
"""The environment variables torchrun sets for each process, read by :func:`distributed_env`."""


def _env_int(name: str, low: int, high: int) -> int:
    text = os.environ[name]
    try:
        value = int(text.strip())
    except ValueError:
        raise ConfigError(f"environment variable {name}={text!r} is not an int") from None
    if not low <= value <= high:
        raise ConfigError(
            f"environment variable {name}={value} must be in [{low}, {high}] ({_dist_words()})"
        )
    return value


def _dist_words() -> str:
    shown = [f"{k}={os.environ[k]!r}" for k in DIST_VARIABLES if k in os.environ]
    return "torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT together; " + (
        "found " + ", ".join(shown) if shown else "none is set"
    )


def distributed_env() -> DistInfo:
    """Read RANK / WORLD_SIZE / LOCAL_RANK as torchrun sets them, checked.

    None of them set: one process (rank 0 of 1). Otherwise RANK and WORLD_SIZE must both be
    set, ints with 0 ≤ RANK < WORLD_SIZE (≤ 65536), LOCAL_RANK (default 0) an int ≥ 0, and,
    with more than one process, MASTER_ADDR and MASTER_PORT (1–65535) set as well; anything
    else is a :class:`~latentkit.errors.ConfigError` naming the variable, so a stray
    ``RANK=1`` cannot silence a command (ranks other than 0 print nothing).
    """
    env = os.environ
    if not any(k in env for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK")):
        return DistInfo()
    for name in ("RANK", "WORLD_SIZE"):
        if name not in env:
            raise ConfigError(f"environment variable {name} is not set ({_dist_words()})")
    world = _env_int("WORLD_SIZE", 1, 65536)
    rank = _env_int("RANK", 0, world - 1)
    local = _env_int("LOCAL_RANK", 0, 65535) if "LOCAL_RANK" in env else 0
    if world > 1:
        for name in ("MASTER_ADDR", "MASTER_PORT"):
            if not env.get(name, "").strip():
                raise ConfigError(f"environment variable {name} is not set ({_dist_words()})")
        _env_int("MASTER_PORT", 1, 65535)
        addr = env["MASTER_ADDR"]
        if len(addr) > 253 or not addr.isprintable() or any(c.isspace() for c in addr):
            raise ConfigError(f"environment variable MASTER_ADDR={addr!r} is not a host name")
    return DistInfo(rank, world, local)


def init_distributed(device: torch.device) -> tuple[DistInfo, torch.device]:
    """Join torchrun's process group if there is one (gloo on CPU, NCCL on CUDA).

    Returns the rank information and the device this process uses (``cuda:LOCAL_RANK``).
    """
    info = distributed_env()
    if not info.active:
        return info, device
    if device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        try:
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        except (RuntimeError, ValueError) as exc:  # DistNetworkError, a bad address, a timeout
            text = str(exc).strip().splitlines()
            raise TrainingError(
                f"cannot join the torchrun process group ({_dist_words()}): "
                f"{text[0] if text else type(exc).__name__}"
            ) from None
    return info, device


def shutdown_distributed() -> None:
    """Leave the process group (no-op when not in one)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


class DataOrder:
    """The global batch of each step: epoch e's permutation comes from a generator seeded by
    (seed, e); step s takes slice s mod (N // B) of epoch s // (N // B). Drop-last epochs."""

    def __init__(self, num_examples: int, batch_size: int, seed: int):
        if batch_size > num_examples:
            raise ConfigError(
                f"batch_size: {batch_size} is larger than the training set "
                f"({num_examples} examples)"
            )
        self.num_examples, self.batch_size, self.seed = num_examples, batch_size, seed
        self.steps_per_epoch = num_examples // batch_size
        self._epoch, self._perm = -1, torch.empty(0, dtype=torch.long)

    def position(self, step: int) -> dict[str, int]:
        """Where step ``step`` sits: its epoch and its batch within the epoch."""
        return {"epoch": step // self.steps_per_epoch, "batch": step % self.steps_per_epoch}

    def indices(self, step: int) -> Tensor:
        """Example indices of step ``step``'s global batch, ``[batch_size]``."""
        pos = self.position(step)
        if pos["epoch"] != self._epoch:
            seed = int(np.random.SeedSequence([self.seed, pos["epoch"]]).generate_state(1)[0])
            g = torch.Generator().manual_seed(seed)
            self._epoch, self._perm = pos["epoch"], torch.randperm(self.num_examples, generator=g)
        start = pos["batch"] * self.batch_size
        return self._perm[start : start + self.batch_size]


def _checkpoint_step(json_path: Path) -> int:
    return int(json_path.stem.split("-")[1])


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


def _name_list(names: list[str]) -> str:
    if len(names) <= 3:
        return ", ".join(names)
    return f"{', '.join(names[:3])} and {len(names) - 3} more"


class _Display:
    """A rich progress bar on a terminal; elsewhere a line every ~5% of the run."""

    def __init__(self, console: Console, enabled: bool, total: int, start: int):
        self.console, self.total = console, total
        self.live = enabled and console.is_terminal
        self.plain = enabled and not self.live
        self.every = max(1, total // 20)
        self.printed = start
        self.progress: Progress | None = None
        if self.live:
            self.progress = Progress(
                TextColumn("[bold]train"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[stats]}"),
                console=console,
                transient=False,
            )
            self.task = self.progress.add_task("train", total=total, completed=start, stats="")
            self.progress.start()

    def update(self, step: int, stats: str | None) -> None:
        if self.progress is not None:
            kw = {"stats": stats} if stats is not None else {}
            self.progress.update(self.task, completed=step, **kw)
        elif self.plain and stats is not None and step // self.every > self.printed // self.every:
            # Metrics land on log steps: print the first one at or past each 5% mark.
            self.printed = step
            self.console.print(f"step {step}/{self.total}  {stats}", highlight=False, markup=False)

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()


class Trainer:
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
        # Step health, kept on the device (see the module docstring).
        self._params = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        self._no_grad = torch.zeros((), device=self.device)
        # stop mode: (step, finite, loss, grad norms, total norm) of each step since the last
        # check, as device tensors the step computed anyway; read at the next check.
        self._pending: list[tuple[int, Tensor, Tensor, Tensor, Tensor]] = []
        self.skipped_steps = 0
        self._skips_in_a_row = 0

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
        return TrainResult(self.step, interrupted, self.last_checkpoint, dict(self.last_metrics))

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

    # -- step health --------------------------------------------------------------------

    def _step_health(self, loss: Tensor) -> Tensor:
        """Whether this step's loss and total gradient norm are finite: a device bool, no
        host read. Clips the gradients when ``grad_clip`` is set (the same norm serves). In
        ``stop`` mode the step's tensors are kept for :meth:`raise_on_fault` (no extra device
        work); at most :data:`CHECK_EVERY` steps go unchecked."""
        grads = [p.grad if p.grad is not None else self._no_grad for _, p in self._params]
        if grads:
            norms = torch.stack(torch._foreach_norm(grads)).float()  # clip_grad_norm_'s norms
            total = torch.linalg.vector_norm(norms)
        else:
            norms, total = torch.zeros(0, device=self.device), self._no_grad
        present = [p.grad for _, p in self._params if p.grad is not None]
        if self.config.grad_clip and present:  # as clip_grad_norm_ does, with the norm in hand
            coef = torch.clamp(self.config.grad_clip / (total + 1e-6), max=1.0)
            torch._foreach_mul_(present, coef.to(present[0].dtype))
        finite = torch.isfinite(loss) & torch.isfinite(total)
        self._last = (loss, norms, total)
        if self.config.on_nonfinite == "stop":
            self._pending.append((self.step + 1, finite, loss, norms, total))
            if len(self._pending) >= CHECK_EVERY:
                self.raise_on_fault()
        return finite

    def _fault_words(self, step: int, loss: float, bad: list[bool], total: float) -> str:
        names = [n for (n, _), b in zip(self._params, bad) if b]
        if not math.isfinite(loss):
            what = f"the training loss is {loss}"
            if names:
                what += f" and the gradient of {_name_list(names)} is not finite"
        elif names:
            what = f"the gradient of {_name_list(names)} is not finite (the loss was {loss:.6g})"
        else:
            what = f"the total gradient norm is {total} (the loss was {loss:.6g})"
        return f"step {step}: {what}"

    def _update_or_skip(self, finite: Tensor) -> bool:
        """``skip`` mode: read the step's health (one host sync) and decide the update."""
        flag = finite.to(torch.int32)
        if self.dist.active:  # every rank must take the same decision
            dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        if bool(flag):
            self._skips_in_a_row = 0
            return True
        loss, norms, total = self._last
        words = self._fault_words(
            self.step + 1, float(loss), (~torch.isfinite(norms)).tolist(), float(total)
        )
        self.skipped_steps += 1
        self._skips_in_a_row += 1
        if self._skips_in_a_row > self.config.max_skips:
            raise NonFiniteTrainingError(
                f"{words}; {self._skips_in_a_row} steps in a row had to be skipped (max_skips "
                f"{self.config.max_skips}), so training stopped; the last good checkpoint is "
                f"{self.last_checkpoint or 'none written'} (lower lr, or set grad_clip)"
            )
        if self.dist.is_main:
            self.console.print(f"skipped {words}", highlight=False, markup=False)
        return False

    def raise_on_fault(self) -> None:
        """Raise :class:`NonFiniteTrainingError` if a step since the last check was faulty
        (``stop`` mode); reads one number from the device. Called before every log line,
        evaluation and checkpoint, so none is written after a fault."""
        if self.config.on_nonfinite != "stop" or not self._pending:
            return  # every rank steps in lockstep: all have pending steps, or none has
        bad = ~torch.stack([entry[1] for entry in self._pending])
        if self.dist.active:  # a fault on any rank stops every rank at the same step
            bad = bad.to(torch.int32)
            dist.all_reduce(bad, op=dist.ReduceOp.MAX)
            bad = bad.bool()
        first = int(torch.where(bad.any(), bad.to(torch.int32).argmax(), -1))  # the one read
        if first < 0:
            self._pending.clear()
            return
        k, _, loss, norms, total = self._pending[first]
        words = self._fault_words(k, float(loss), (~torch.isfinite(norms)).tolist(), float(total))
        when = f" (detected by step {self.step})" if self.step != k else ""
        raise NonFiniteTrainingError(
            f"{words}{when}; training stopped, the last good checkpoint is "
            f"{self.last_checkpoint or 'none written'} (--on-nonfinite skip skips such steps; "
            "or lower lr, or set grad_clip)"
        )

    def _log_train(self, x: Tensor, mean_loss: Tensor | None, rate: float) -> str:
        self.raise_on_fault()
        loss = math.nan
        if mean_loss is not None:  # None: every step since the last line was skipped
            if self.dist.active:
                dist.all_reduce(mean_loss)
                mean_loss = mean_loss / self.dist.world_size
            loss = float(mean_loss)
            if not math.isfinite(loss):
                raise TrainingError(
                    f"the training loss became {loss} by step {self.step}; the last good "
                    f"checkpoint is {self.last_checkpoint or 'none'} (lower lr, or set grad_clip)"
                )
        # The bound's terms on this batch, with noise of their own (the trajectory is unchanged).
        with torch.no_grad(), self._fork_rng(self.config.seed + 7919 * self.step + 1):
            r = elbo(self.model, x, estimator=self._term_estimator, validate=False)
            terms = {
                "elbo": float(r.total.mean()),
                "reconstruction": float(r.reconstruction.mean()),
                "prior_matching": float(r.prior_matching.mean()),
                "kl": float(r.kl.mean()),
            }
        record = {
            "step": self.step,
            "split": "train",
            "loss": loss,
            **terms,
            "lr": self.optimizer.param_groups[0]["lr"],
            "examples_per_s": round(rate, 1),
            "time": round(time.time(), 3),
        }
        if self.config.on_nonfinite == "skip":
            record["skipped_steps"] = self.skipped_steps
        self._write_metrics(record)
        return (
            f"loss {loss:.2f} │ ELBO {terms['elbo']:.2f} = rec {terms['reconstruction']:.2f}"
            f" − KL {terms['kl']:.2f}"
        )

    def evaluate_now(self) -> dict[str, Any] | None:
        """Test-set ELBO and terms at the current step (rank 0), logged as a ``test`` line."""
        self.raise_on_fault()
        record = None
        data, split = self._eval_data, "validation" if self.validation_data is not None else "test"
        if self.dist.is_main and data is not None:
            n = self.config.eval_examples or data.shape[0]
            estimator = self.config.eval_estimator
            report = evaluate(
                self.model,
                data[:n],
                iwae_k=0,
                estimator=self._term_estimator if estimator == "auto" else estimator,
                seed=self.config.seed + 1,
            )
            self.model.train()
            record = {
                "step": self.step,
                "split": split,
                "examples": report.num_examples,
                "elbo": report.elbo.mean,
                "reconstruction": report.reconstruction.mean,
                "prior_matching": report.prior_matching.mean,
                "kl": report.kl.mean,
                "time": round(time.time(), 3),
            }
            self._write_metrics(record)
            if split == "validation":
                self._keep_best(record["elbo"])
            if self._diagnose_examples:
                self._write_diagnostics(data[: self._diagnose_examples])
        if self.dist.active:
            dist.barrier()
        return record

    def _write_diagnostics(self, data: Tensor) -> None:
        """A ``diagnostics`` line: I_q(x; z), KL(q(z) ‖ p(z)), active units at this step."""
        from latentkit.diagnostics import diagnose

        ref = self.model.reference()
        try:
            d = diagnose(
                self.model, data.to(ref.device, ref.dtype), seed=self.config.seed + 2, num_draws=2
            )
        except LatentkitError as exc:  # a model the diagnostics do not cover: say it once
            warnings.warn(f"diagnostics skipped: {exc}", stacklevel=2)
            self._diagnose_examples = 0
            return
        finally:
            self.model.train()
        self._write_metrics({"step": self.step, "split": "diagnostics", **d.metrics()})

    @property
    def _eval_data(self) -> Tensor | None:
        return self.validation_data if self.validation_data is not None else self.test_data

    def _keep_best(self, value: float) -> None:
        """Keep the checkpoint of the best validation ELBO so far in ``run_dir/best/``."""
        if not math.isfinite(value) or (
            self.best_validation is not None and value <= self.best_validation
        ):
            return
        self.best_validation = value
        if self.run_dir is not None:  # rank 0 alone: weights for evaluation, not a resume point
            tensors = {f"model/{k}": t for k, t in self.model.state_dict().items()}
            write_checkpoint(
                self.run_dir / "best", self.step, tensors, self._checkpoint_info(), keep_last=1
            )

    def _write_metrics(self, record: dict[str, Any]) -> None:
        self.last_metrics[record["split"]] = record
        if self.run_dir is None or not self.dist.is_main:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(json_safe(record)) + "\n")

    @property
    def metrics_path(self) -> Path:
        assert self.run_dir is not None
        return self.run_dir / "metrics.jsonl"

    # -- stopping on a signal -----------------------------------------------------------

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

    # -- checkpoints --------------------------------------------------------------------

    def state_tensors(self) -> dict[str, Tensor]:
        """Weights, optimizer state and RNG states, named for the safetensors file."""
        tensors = {f"model/{k}": t for k, t in self.model.state_dict().items()}
        tensors.update({f"objective/{k}": t for k, t in self.loss_objective.state_dict().items()})
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
            "metrics": json_safe(self.last_metrics),
            "best_validation_elbo": self.best_validation,
            "torch": torch.__version__,
        }

    def resume(self, path: str | os.PathLike) -> int:
        """Load weights, optimizer, RNG and step from a checkpoint; return the step.

        The training configuration's data-order and optimizer fields should match the
        checkpoint's (:data:`EXACT_RESUME_FIELDS`); a change is warned about, since the
        continuation is then no longer the uninterrupted run.
        """
        tensors, info = read_checkpoint(path)
        where = resolve_checkpoint(path)
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
                stacklevel=2,
            )
        order = info.get("data_order") or {}
        n = order.get("num_examples") if isinstance(order, dict) else None
        if n is not None and n != self.order.num_examples:
            raise CheckpointError(
                f"the checkpoint was trained on {n} examples, this data set has "
                f"{self.order.num_examples}; load the same data to resume"
            )
        weights = subset(tensors, "model")
        check_weights(self.model, weights, where=str(where))
        self.model.load_state_dict(weights)
        self._load_objective_state(subset(tensors, "objective"), info, where)
        self.optimizer.load_state_dict(self._optimizer_state(tensors, info, where))
        self.step = self._saved_step = info["step"]
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
                stacklevel=2,
            )
            seed_everything((self.config.seed + 104729 * self.step + self.dist.rank) % 2**63)
        self._rng_ready = True
        self.last_checkpoint = self.resumed_from = where
        metrics = info.get("metrics")
        self.last_metrics = dict(metrics) if isinstance(metrics, dict) else {}
        best = info.get("best_validation_elbo")
        if best is not None and not (isinstance(best, (int, float)) and math.isfinite(best)):
            raise CheckpointError(f"{where}: 'best_validation_elbo' must be a finite number")
        self.best_validation = None if best is None else float(best)
        if self.run_dir is not None and self.dist.is_main:
            self._truncate_metrics(self.step)
        return self.step

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
        kept = []
        for line in self.metrics_path.read_bytes().decode("utf-8", "replace").splitlines():
            try:
                record = json.loads(line)
            except (ValueError, RecursionError):
                continue  # a line cut short by the crash, or not a metrics line at all
            if isinstance(record, dict) and isinstance(record.get("step", 0), int):
                if record.get("step", 0) <= step:
                    kept.append(line)
        atomic_write_bytes(self.metrics_path, ("\n".join(kept) + "\n" if kept else "").encode())
