"""What the loop reports: the live display, metric lines, periodic evaluations.

* :class:`Metrics` — where each record goes (the logger, on rank 0) and the last of each
  split; ``metrics.jsonl`` cut back to a checkpoint's step on resume.
* :class:`TrainLine` — the ``train`` line: the mean training loss since the last line and
  the bound's terms on the current batch (with noise of their own).
* :class:`Evaluator` — the periodic evaluation on the held-out split, the best value so far
  by the bound that picks the best checkpoint, and the latents' diagnostics.
* :class:`Display` and :class:`LossWindow` — the progress bar, and the loss summed on the
  device between two lines.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import Tensor

from latentkit.bounds import elbo
from latentkit.chains import LatentModel
from latentkit.checkpoint import atomic_write_bytes, memory_bytes, read_regular_file
from latentkit.errors import LatentkitError, TrainingError
from latentkit.evaluation import evaluate
from latentkit.training.config import TrainConfig
from latentkit.training.feed import DataFeed
from latentkit.training.loggers import JsonlLogger, Logger
from latentkit.training.loss import TrainingLoss, importance_samples
from latentkit.training.runtime import Runtime

__all__ = ["Display", "Evaluator", "LossWindow", "Metrics", "TrainLine"]


class Display:
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


class LossWindow:
    """The training loss summed on the device over the steps since the last metric line (no
    host read per step), and the examples per second over them."""

    def __init__(self, device: torch.device):
        self.total = torch.zeros((), device=device, dtype=torch.float64)
        self.steps, self.updates, self.start = 0, 0, time.perf_counter()

    def add(self, loss: Tensor | None) -> None:
        """One step; ``loss`` is None for a step whose update was skipped."""
        self.steps += 1
        if loss is not None:
            self.total += loss.double()
            self.updates += 1

    def close(self, batch_size: int) -> tuple[Tensor | None, float]:
        """(mean loss over the updates made, or None if every step was skipped; examples per
        second) of the window, and a new window from now."""
        now = time.perf_counter()
        rate = self.steps * batch_size / max(now - self.start, 1e-9)
        mean = self.total / self.updates if self.updates else None
        self.total = torch.zeros_like(self.total)
        self.steps, self.updates, self.start = 0, 0, now
        return mean, rate


class Metrics:
    """Where the loop's records go: the logger (rank 0 alone writes), and the last record of
    each split (``train``, ``validation``, ``test``, ``diagnostics``), which checkpoints keep.

    Args:
        logger: the backend (:func:`~latentkit.training.loggers.make_logger`).
        is_main: whether this process writes (rank 0).
        run_dir: the run folder holding ``metrics.jsonl`` (None: nothing is written).
    """

    def __init__(self, logger: Logger, *, is_main: bool = True, run_dir: Path | None = None):
        self.logger, self.is_main, self.run_dir = logger, is_main, run_dir
        self.last: dict[str, Any] = {}

    def write(self, record: dict[str, Any]) -> None:
        self.last[record["split"]] = record
        if self.is_main:
            self.logger.log_metrics(record)

    @property
    def path(self) -> Path:
        assert self.run_dir is not None
        return self.run_dir / "metrics.jsonl"

    def truncate(self, step: int) -> None:
        """Drop metric lines past ``step`` (written after the checkpoint, before a crash)."""
        if self.run_dir is None or not self.is_main or not self.path.exists():
            return
        try:  # a FIFO or a link to /dev/zero is refused, never read (it would block, or not end)
            raw = read_regular_file(self.path, limit=memory_bytes(), what="metrics")
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
        atomic_write_bytes(self.path, ("\n".join(kept) + "\n" if kept else "").encode())

    def finish(self, step: int) -> None:
        """Hand the training curves to a logger that keeps figures (not the JSONL one), and
        close the logger."""
        if type(self.logger) in (Logger, JsonlLogger) or not self.is_main:
            self.logger.close()
            return
        from latentkit.plots import training_curves

        path = training_curves(self.path, self.path.parent / ".curves-for-logger.png")
        try:
            self.logger.log_figure("curves", path, step)
        finally:
            path.unlink(missing_ok=True)
            self.logger.close()


class TrainLine:
    """The ``train`` metrics line: the mean training loss over the steps since the last line
    (over every rank) and the bound's terms (:func:`latentkit.elbo`) on the current batch,
    drawn with noise of their own so the trajectory is unchanged.

    Args:
        model, runtime, metrics: what is measured, where, and where the line goes.
        seed: the run's seed (the terms' noise is derived from it and the step).
        estimator: the ELBO estimator of the terms.
        count_skips: add ``skipped_steps`` to each line (the ``skip`` policy).
        last_good: the last checkpoint written, which a non-finite loss names.
    """

    def __init__(
        self,
        model: LatentModel,
        runtime: Runtime,
        metrics: Metrics,
        *,
        seed: int,
        estimator: str,
        count_skips: bool = False,
        last_good: Callable[[], Path | None] = lambda: None,
    ):
        self.model, self.runtime, self.metrics = model, runtime, metrics
        self.seed, self.estimator, self.count_skips = seed, estimator, count_skips
        self.last_good = last_good

    def _mean_loss(self, mean_loss: Tensor | None, step: int) -> float:
        if mean_loss is None:  # every step since the last line was skipped
            return math.nan
        if self.runtime.dist.active:
            dist.all_reduce(mean_loss)
            mean_loss = mean_loss / self.runtime.dist.world_size
        loss = float(mean_loss)
        if not math.isfinite(loss):
            raise TrainingError(
                f"the training loss became {loss} by step {step}; the last good "
                f"checkpoint is {self.last_good() or 'none'} (lower lr, or set grad_clip)"
            )
        return loss

    def write(
        self,
        step: int,
        x: Tensor,
        mean_loss: Tensor | None,
        rate: float,
        *,
        lr: float,
        skipped: int,
        condition: Tensor | None = None,
    ) -> str:
        """Write step ``step``'s line (batch ``x``, the window's mean loss and examples per
        second, the current rate and skip count); returns it in words for the display. A
        conditional model's terms are those of the batch's labelled examples (``condition``;
        a semi-supervised batch's unlabelled ones are left out of them, not of the loss)."""
        loss = self._mean_loss(mean_loss, step)
        if condition is not None and condition.ndim == 1 and not bool((condition >= 0).all()):
            x, condition = x[condition >= 0], condition[condition >= 0]
        terms: dict[str, float] = {}  # none for a semi-supervised batch with no label
        if x.shape[0]:
            with torch.no_grad(), self.runtime.fork_rng(self.seed + 7919 * step + 1):
                r = elbo(
                    self.model, x, estimator=self.estimator, validate=False, condition=condition
                )
                terms = {
                    "elbo": float(r.total.mean()),
                    "reconstruction": float(r.reconstruction.mean()),
                    "prior_matching": float(r.prior_matching.mean()),
                    "kl": float(r.kl.mean()),
                }
        record = {"step": step, "split": "train", "loss": loss, **terms, "lr": lr}
        record |= {"examples_per_s": round(rate, 1), "time": round(time.time(), 3)}
        if self.count_skips:
            record["skipped_steps"] = skipped
        self.metrics.write(record)
        if not terms:
            return f"loss {loss:.2f} │ (no labelled example in this batch: no ELBO terms)"
        return (
            f"loss {loss:.2f} │ ELBO {terms['elbo']:.2f} = rec {terms['reconstruction']:.2f}"
            f" − KL {terms['kl']:.2f}"
        )


class Evaluator:
    """The periodic evaluation on the held-out split, and the best value so far.

    Args:
        model, runtime, metrics: what is evaluated, where, and where the lines go.
        data: the held-out examples (None: no periodic evaluation).
        split: their name, ``validation`` (the best checkpoint is chosen on them) or ``test``.
        examples: how many of them each evaluation uses (0: all).
        estimator: the ELBO estimator.
        seed: the evaluations' seed (each evaluation draws the same noise).
        selection_k: the importance samples of the bound that picks the best checkpoint on
            validation (1: the ELBO).
        diagnose_examples: also measure the latents' diagnostics on this many (0: off).
    """

    def __init__(
        self,
        model: LatentModel,
        runtime: Runtime,
        metrics: Metrics,
        data: Tensor | None,
        split: str = "test",
        *,
        examples: int = 0,
        estimator: str = "auto",
        seed: int = 0,
        selection_k: int = 1,
        diagnose_examples: int = 0,
    ):
        self.model, self.runtime, self.metrics = model, runtime, metrics
        self.data, self.split, self.examples = data, split, examples
        self.estimator, self.seed, self.selection_k = estimator, seed, selection_k
        self.diagnose_examples = diagnose_examples
        self.best: float | None = None

    @classmethod
    def from_config(
        cls,
        config: TrainConfig,
        model: LatentModel,
        runtime: Runtime,
        metrics: Metrics,
        feed: DataFeed,
        loss: TrainingLoss,
        estimator: str,
    ) -> Evaluator:
        """The evaluation a :class:`~latentkit.training.TrainConfig` asks for, on the feed's
        held-out split; ``estimator`` serves for ``eval_estimator="auto"``, and the best
        checkpoint is picked by ``select_k`` or, when 0, the bound the objective trains."""
        data, split = feed.eval_split
        auto = config.eval_estimator == "auto"
        evaluator = cls(
            model,
            runtime,
            metrics,
            data,
            split,
            examples=config.eval_examples,
            estimator=estimator if auto else config.eval_estimator,
            seed=config.seed,
            selection_k=config.select_k or importance_samples(loss.objective),
            diagnose_examples=config.diagnose_examples,
        )
        evaluator.labels = feed.eval_labels
        return evaluator

    labels: Tensor | None = None
    """The conditions of :attr:`data`'s examples (a conditional model), else ``None``."""

    def evaluate(self, step: int) -> dict[str, Any]:
        """The bound and its terms on the split at step ``step``, written as its line."""
        from latentkit.composition import evaluation_model
        from latentkit.composition.figures import continuous_bound

        assert self.data is not None
        n = self.examples or self.data.shape[0]
        k = self.selection_k if self.split == "validation" else 1
        report = evaluate(
            # a composed model with a continuous-time prior: scored as `latentkit evaluate`
            # scores it (its prior at a few steps), not walked through the trained T's layers
            evaluation_model(self.model),
            self.data[:n],
            conditions=None if self.labels is None else self.labels[:n],
            iwae_k=k if k > 1 else 0,
            estimator=self.estimator,
            seed=self.seed + 1,
        )
        record = {"step": step, "split": self.split, "examples": report.num_examples}
        record |= {
            "elbo": report.elbo.mean,
            "reconstruction": report.reconstruction.mean,
            "prior_matching": report.prior_matching.mean,
            "kl": report.kl.mean,
        }
        if report.iwae is not None:
            record |= {"iwae": report.iwae.mean, "iwae_k": k}
        # a continuous-time prior: the bound training minimises too (docs/compose.md)
        cont = continuous_bound(self.model, self.data[:n], seed=self.seed + 1)
        if cont is not None:
            record["elbo_continuous"] = cont
        self.model.train()
        record["time"] = round(time.time(), 3)
        self.metrics.write(record)
        return record

    def improves(self, record: dict[str, Any]) -> bool:
        """Whether a validation ``record`` beats the best so far by the selection bound (the
        ELBO, or IWAE with :attr:`selection_k` samples); it is then the best."""
        if record["split"] != "validation":
            return False
        # the ELBO, IWAE-k, or a continuous-time prior's ELBO_∞ (the T = 12 chain's ELBO is
        # hundreds of nats looser, whatever the networks: docs/compose.md)
        value = record["iwae"] if self.selection_k > 1 else record.get("elbo_continuous")
        value = record["elbo"] if value is None else value
        if not math.isfinite(value) or (self.best is not None and value <= self.best):
            return False
        self.best = value
        return True

    def diagnose(self, step: int) -> None:
        """A ``diagnostics`` line: I_q(x; z), KL(q(z) ‖ p(z)), active units at this step."""
        if not self.diagnose_examples or self.data is None:
            return
        from latentkit.diagnostics import diagnose

        ref = self.model.reference()
        n = self.diagnose_examples
        data = self.data[:n].to(ref.device, ref.dtype)
        given = {} if self.labels is None else {"conditions": self.labels[:n].to(ref.device)}
        try:
            d = diagnose(self.model, data, seed=self.seed + 2, num_draws=2, **given)
        except LatentkitError as exc:  # a model the diagnostics do not cover: say it once
            warnings.warn(f"diagnostics skipped: {exc}", stacklevel=2)
            self.diagnose_examples = 0
            return
        finally:
            self.model.train()
        self.metrics.write({"step": step, "split": "diagnostics", **d.metrics()})
