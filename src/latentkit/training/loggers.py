"""Experiment tracking: what the training loop tells a logger, and three places it can go.

The loop calls a :class:`Logger` with the run configuration once (:meth:`Logger.log_config`),
with each metrics record (:meth:`Logger.log_metrics`: a ``train``, ``validation``, ``test``
or ``diagnostics`` line of ``metrics.jsonl``) and with figures it draws
(:meth:`Logger.log_figure`: the training curves at the end of a run). Backends, chosen by
``TrainConfig.logger``:

* ``jsonl`` — ``RUN/metrics.jsonl``, one JSON object per line: always written, since
  ``latentkit report`` and resume read it. (``latentkit train`` records the run
  configuration itself, as ``RUN/config.toml`` and ``RUN/config.json``.)
* ``tensorboard`` — also event files in ``RUN/tensorboard/`` (``tensorboard --logdir RUN``):
  each number of a record as the scalar ``split/name`` at its step, the configuration as
  text, figures as images. Needs the ``tensorboard`` package (extra ``tracking``).
* ``mlflow`` — also a local MLflow file store in ``RUN/mlruns/`` (experiment ``latentkit``,
  one MLflow run per training run, resumed runs continue it): metrics ``split/name`` by
  step, the flattened configuration as parameters, figures as artifacts. Nothing leaves the
  machine unless you point MLflow elsewhere yourself. Needs ``mlflow-skinny`` (extra
  ``tracking``).
"""

from __future__ import annotations

import functools
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from latentkit.arguments import check_choice, check_path
from latentkit.checkpoint import json_safe
from latentkit.errors import ConfigError, InputError

__all__ = ["JsonlLogger", "Logger", "MLflowLogger", "TensorBoardLogger", "make_logger"]

_NOT_METRICS = ("step", "split", "time")


def _numbers(record: dict[str, Any]) -> Iterator[tuple[str, float]]:
    """``(split/name, value)`` for every finite number of a metrics record."""
    split = record.get("split", "train")
    for key, value in record.items():
        if key in _NOT_METRICS or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if math.isfinite(value):
            yield f"{split}/{key}", float(value)


def _flatten(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"train.lr": "0.001", ...}``: nested tables as dotted names, values as text."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value if isinstance(value, str) else json.dumps(json_safe(value))
    return flat


class Logger:
    """Where the training loop's metrics, configuration and figures go (the base is silent)."""

    def log_config(self, config: dict[str, Any]) -> None:
        """The whole run configuration, once per run (again on resume)."""

    def log_metrics(self, record: dict[str, Any]) -> None:
        """One metrics record: ``step``, ``split`` and named numbers."""

    def log_figure(self, name: str, path: Path, step: int) -> None:
        """A figure the loop drew, as the PNG file at ``path``."""

    def close(self) -> None:
        """Flush and release whatever the backend holds."""


class JsonlLogger(Logger):
    """``RUN/metrics.jsonl``: the run's own record of its metrics. ``run_dir``: a folder, or
    a path where none exists yet (a str or os.PathLike), else an InputError."""

    def __init__(self, run_dir: str | os.PathLike):
        where = f"{type(self).__name__}: run_dir"
        self.run_dir = check_path(run_dir, where)
        if self.run_dir.exists() and not self.run_dir.is_dir():
            raise InputError(f"{where} must be a folder, but {str(self.run_dir)!r} is a file")

    @property
    def metrics_path(self) -> Path:
        return self.run_dir / "metrics.jsonl"

    def log_metrics(self, record: dict[str, Any]) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(json_safe(record)) + "\n")


class TensorBoardLogger(JsonlLogger):
    """Also TensorBoard event files in ``RUN/tensorboard``."""

    def __init__(self, run_dir: str | os.PathLike):
        super().__init__(run_dir)
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError(
                "logger: 'tensorboard' needs the tensorboard package "
                "(pip install 'latentkit[tracking]')"
            ) from None
        self._writer_class = SummaryWriter

    @functools.cached_property
    def writer(self) -> Any:
        """The event-file writer, opened at the first record: building the logger writes
        nothing (``train`` builds it before it takes, or replaces, the run folder)."""
        return self._writer_class(log_dir=str(self.run_dir / "tensorboard"))

    def log_config(self, config: dict[str, Any]) -> None:
        text = json.dumps(json_safe(config), indent=2)
        self.writer.add_text("config", "```\n" + text + "\n```", global_step=0)

    def log_metrics(self, record: dict[str, Any]) -> None:
        super().log_metrics(record)
        for tag, value in _numbers(record):
            self.writer.add_scalar(tag, value, global_step=int(record.get("step", 0)))

    def log_figure(self, name: str, path: Path, step: int) -> None:
        import matplotlib.image

        image = matplotlib.image.imread(str(path))[..., :3]
        self.writer.add_image(name, image, global_step=step, dataformats="HWC")

    def close(self) -> None:
        if "writer" in self.__dict__:
            self.writer.close()


class MLflowLogger(JsonlLogger):
    """Also a local MLflow file store in ``RUN/mlruns`` (one MLflow run per training run)."""

    EXPERIMENT = "latentkit"

    def __init__(self, run_dir: str | os.PathLike):
        super().__init__(run_dir)
        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise ConfigError(
                "logger: 'mlflow' needs the mlflow-skinny package "
                "(pip install 'latentkit[tracking]')"
            ) from None
        self._client_class = MlflowClient
        self._params_logged = False

    @functools.cached_property
    def client(self) -> Any:
        """The store's client, opened (the store and its run made) at the first record:
        building the logger writes nothing."""
        MlflowClient = self._client_class
        # MLflow 3 keeps its file store in maintenance mode behind this switch; the file store
        # is what keeps a run's tracking inside its run folder with no server or database.
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        store = (self.run_dir / "mlruns").resolve()
        store.mkdir(parents=True, exist_ok=True)
        client = MlflowClient(tracking_uri=store.as_uri())
        experiment = client.get_experiment_by_name(self.EXPERIMENT)
        experiment_id = (
            experiment.experiment_id
            if experiment is not None
            else client.create_experiment(self.EXPERIMENT)
        )
        # One MLflow run per run folder: a resumed training run continues it.
        id_file = self.run_dir / "mlruns" / "latentkit_run_id"
        run_id = id_file.read_text().strip() if id_file.exists() else ""
        if not run_id:
            run_id = client.create_run(experiment_id, run_name=self.run_dir.name).info.run_id
            id_file.write_text(run_id + "\n")
        self.__dict__["run_id"] = run_id
        return client

    @functools.cached_property
    def run_id(self) -> str:
        """This training run's MLflow run (made with the client)."""
        self.client  # noqa: B018 (opening the client sets it)
        return self.__dict__["run_id"]

    def log_config(self, config: dict[str, Any]) -> None:
        if self._params_logged:
            return
        params = self.client.get_run(self.run_id).data.params
        for key, value in _flatten(config).items():
            if key not in params:  # MLflow refuses to change a logged parameter
                self.client.log_param(self.run_id, key, value[:6000])
        self._params_logged = True

    def log_metrics(self, record: dict[str, Any]) -> None:
        super().log_metrics(record)
        step = int(record.get("step", 0))
        for tag, value in _numbers(record):
            self.client.log_metric(self.run_id, tag, value, step=step)

    def log_figure(self, name: str, path: Path, step: int) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path="figures")

    def close(self) -> None:
        if "client" in self.__dict__:
            self.client.set_terminated(self.run_id)


def make_logger(kind: str, run_dir: str | os.PathLike | None) -> Logger:
    """The backend named ``kind`` (``TrainConfig.logger``) writing into ``run_dir``; a
    silent :class:`Logger` when there is no run folder."""
    backends = {"jsonl": JsonlLogger, "tensorboard": TensorBoardLogger, "mlflow": MLflowLogger}
    check_choice(kind, "logger", backends, error=ConfigError)
    return Logger() if run_dir is None else backends[kind](run_dir)
