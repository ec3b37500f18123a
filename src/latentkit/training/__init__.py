"""Training: one small loop for any latent model, over parts each built from what it needs.

* :mod:`~latentkit.training.config` — :class:`TrainConfig`, the validated settings.
* :mod:`~latentkit.training.trainer` — :class:`Trainer`, the coordinator and its loop (its
  docstring tells how a run is made reproducible and resumed exactly).
* :mod:`~latentkit.training.runtime` — device, torchrun process group, seeding, data order,
  stop signals (``Runtime``, ``StopRequest``).
* :mod:`~latentkit.training.feed` — the data splits, checked once, and each step's batch.
* :mod:`~latentkit.training.loss` — the objective and the module each step calls.
* :mod:`~latentkit.training.health` — the non-finite policy (stop or skip), gradient clipping.
* :mod:`~latentkit.training.optimization` — one optimizer step: Adam, schedule, average.
* :mod:`~latentkit.training.lr_schedules` — learning-rate schedules, pure functions of the step.
* :mod:`~latentkit.training.averaging` — the exponential moving average of the weights.
* :mod:`~latentkit.training.reporting` — metric lines, periodic evaluation, the best value.
* :mod:`~latentkit.training.loggers` — where metrics go: JSONL, TensorBoard, MLflow.
* :mod:`~latentkit.training.state` — checkpoints from the parts, and resume into them
  (:mod:`~latentkit.training.restore`: what a resume reads, checked).
"""

from latentkit.errors import NonFiniteTrainingError, TrainingError
from latentkit.training.config import EXACT_RESUME_FIELDS, LOGGERS, ON_NONFINITE, TrainConfig
from latentkit.training.health import CHECK_EVERY
from latentkit.training.loggers import (
    JsonlLogger,
    Logger,
    MLflowLogger,
    TensorBoardLogger,
    make_logger,
)
from latentkit.training.runtime import (
    DataOrder,
    DistInfo,
    distributed_env,
    init_distributed,
    resolve_device,
    seed_everything,
    shutdown_distributed,
)
from latentkit.training.trainer import LOOP_FIELDS, Trainer, TrainResult

__all__ = [
    "CHECK_EVERY",
    "EXACT_RESUME_FIELDS",
    "LOGGERS",
    "LOOP_FIELDS",
    "ON_NONFINITE",
    "DataOrder",
    "DistInfo",
    "JsonlLogger",
    "Logger",
    "MLflowLogger",
    "NonFiniteTrainingError",
    "TensorBoardLogger",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "TrainingError",
    "distributed_env",
    "init_distributed",
    "make_logger",
    "resolve_device",
    "seed_everything",
    "shutdown_distributed",
]
