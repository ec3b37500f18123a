"""What the loop reports: the live display, metric lines, periodic evaluations, the best
checkpoint."""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import Tensor

from latentkit.bounds import elbo
from latentkit.checkpoint import write_checkpoint
from latentkit.errors import LatentkitError, TrainingError
from latentkit.evaluation import evaluate

__all__ = ["Reporting"]


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


class _LossWindow:
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


class Reporting:
    """The trainer's part that logs, evaluates and keeps the best checkpoint (a mixin of
    :class:`Trainer`)."""

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
            with self._averaged():  # evaluated, kept as best and diagnosed with the average
                record = self._evaluate_on(data, split)
        if self.dist.active:
            dist.barrier()
        return record

    def _evaluate_on(self, data: Tensor, split: str) -> dict[str, Any]:
        n = self.config.eval_examples or data.shape[0]
        estimator = self.config.eval_estimator
        k = self.selection_k if split == "validation" else 1
        report = evaluate(
            self.model,
            data[:n],
            iwae_k=k if k > 1 else 0,
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
        }
        if report.iwae is not None:
            record |= {"iwae": report.iwae.mean, "iwae_k": k}
        record["time"] = round(time.time(), 3)
        self._write_metrics(record)
        if split == "validation":
            self._keep_best(record["iwae"] if k > 1 else record["elbo"])
        if self._diagnose_examples:
            self._write_diagnostics(data[: self._diagnose_examples])
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
    def selection_k(self) -> int:
        """The importance samples of the bound that picks the best checkpoint on validation
        (``TrainConfig.select_k``; 0 resolves to the training objective's own k, 1 — the
        ELBO — for any objective but ``iwae``)."""
        if self.config.select_k:
            return self.config.select_k
        o = self.loss_objective
        return int(o.config.k) if o.name == "iwae" else 1

    @property
    def _eval_data(self) -> Tensor | None:
        return self.validation_data if self.validation_data is not None else self.test_data

    def _keep_best(self, value: float) -> None:
        """Keep the checkpoint of the best validation bound so far (the ELBO, or IWAE with
        :attr:`selection_k` samples) in ``run_dir/best/``."""
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
        if self.dist.is_main:
            self.logger.log_metrics(record)

    def _averaged(self) -> contextlib.AbstractContextManager:
        """The model holds the weight average inside the ``with`` body (when one is kept)."""
        if self.ema is None:
            return contextlib.nullcontext()
        return self.ema.swapped(self.model)

    @property
    def metrics_path(self) -> Path:
        assert self.run_dir is not None
        return self.run_dir / "metrics.jsonl"

    # -----------------------------------------------------------
