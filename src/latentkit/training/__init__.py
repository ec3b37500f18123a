"""Training: one small loop for any latent model, in parts.

* :mod:`~latentkit.training.config` — :class:`TrainConfig`, the validated settings.
* :mod:`~latentkit.training.trainer` — :class:`Trainer`, the loop (its docstring tells how a
  run is made reproducible and resumed exactly, and how faults and processes are handled).
* :mod:`~latentkit.training.health` — the non-finite policy (stop or skip).
* :mod:`~latentkit.training.state` — checkpoints and exact resume.
* :mod:`~latentkit.training.reporting` — metric lines, periodic evaluation, best checkpoint.
* :mod:`~latentkit.training.loggers` — where metrics go: JSONL, TensorBoard, MLflow.
* :mod:`~latentkit.training.runtime` — device, torchrun process group, seeding, data order.
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
from latentkit.training.trainer import Trainer, TrainResult

__all__ = [
    "CHECK_EVERY",
    "EXACT_RESUME_FIELDS",
    "LOGGERS",
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
