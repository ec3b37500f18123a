"""The non-finite policy: each step's health on the device, read back only when needed.

``stop`` (the default) keeps each step's flags (tensors the step computed anyway) and reads
them in one read where the loop reads the device already — each log step, before every
evaluation and checkpoint, at the end, and at least every :data:`CHECK_EVERY` steps — so a
fault stops training naming the first faulty step and its culprit, and no checkpoint is
written after it. ``skip`` reads the flag every step (one host sync, the price of deciding
the update before it happens) and skips faulty updates, up to ``max_skips`` in a row.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import torch
import torch.distributed as dist
from rich.console import Console
from torch import Tensor, nn

from latentkit.errors import NonFiniteTrainingError
from latentkit.training.config import TrainConfig
from latentkit.training.runtime import DistInfo, Runtime

__all__ = ["CHECK_EVERY", "HealthWatch"]

CHECK_EVERY = 1000
"""In ``stop`` mode, the longest run of steps whose health is not yet read back (the log,
evaluation and checkpoint steps usually read it sooner)."""


def _name_list(names: list[str]) -> str:
    if len(names) <= 3:
        return ", ".join(names)
    return f"{', '.join(names[:3])} and {len(names) - 3} more"


class HealthWatch:
    """Watches each step for NaN/inf, clips the gradient, and applies the non-finite policy.

    Args:
        params: the named trainable parameters (a fault names those whose gradient is not
            finite).
        policy: ``stop`` or ``skip`` (``TrainConfig.on_nonfinite``).
        max_skips: with ``skip``, more than this many faulty steps in a row stop the run.
        grad_clip: clip the gradient's global norm to this (0: no clipping).
        dist: this process's place (every rank takes the same decision).
        device: where the flags are computed.
        console: where a skipped step is announced (rank 0).
        last_good: the last checkpoint written, which a stopping fault names.
    """

    def __init__(
        self,
        params: list[tuple[str, nn.Parameter]],
        *,
        policy: str = "stop",
        max_skips: int = 10,
        grad_clip: float = 0.0,
        dist: DistInfo | None = None,
        device: torch.device | None = None,
        console: Console | None = None,
        last_good: Callable[[], Path | None] = lambda: None,
    ):
        self.params, self.policy, self.max_skips, self.grad_clip = (
            params,
            policy,
            max_skips,
            grad_clip,
        )
        self.dist = dist or DistInfo()
        self.device = device or torch.device("cpu")
        self.console = console or Console(stderr=True)
        self.last_good = last_good
        self._no_grad = torch.zeros((), device=self.device)
        # stop mode: (step, finite, loss, grad norms, total norm) of each step since the last
        # check, as device tensors the step computed anyway; read at the next check.
        self._pending: list[tuple[int, Tensor, Tensor, Tensor, Tensor]] = []
        self._last: tuple[Tensor, Tensor, Tensor] | None = None
        self.skipped_steps = 0
        self.skips_in_a_row = 0

    @classmethod
    def from_config(
        cls,
        config: TrainConfig,
        model: nn.Module,
        runtime: Runtime,
        *,
        console: Console | None = None,
        last_good: Callable[[], Path | None] = lambda: None,
    ) -> HealthWatch:
        """The watch a :class:`~latentkit.training.TrainConfig` asks for (``on_nonfinite``,
        ``max_skips``, ``grad_clip``) over ``model``'s trainable parameters."""
        return cls(
            [(n, p) for n, p in model.named_parameters() if p.requires_grad],
            policy=config.on_nonfinite,
            max_skips=config.max_skips,
            grad_clip=config.grad_clip,
            dist=runtime.dist,
            device=runtime.device,
            console=console,
            last_good=last_good,
        )

    def observe(self, loss: Tensor, step: int) -> Tensor:
        """Whether optimizer step ``step``'s loss and total gradient norm are finite: a
        device bool, no host read. Clips the gradients when ``grad_clip`` is set (the same
        norm serves). In ``stop`` mode the step's tensors are kept for :meth:`check` (no
        extra device work); at most :data:`CHECK_EVERY` steps go unchecked."""
        grads = [p.grad if p.grad is not None else self._no_grad for _, p in self.params]
        if grads:
            norms = torch.stack(torch._foreach_norm(grads)).float()  # clip_grad_norm_'s norms
            total = torch.linalg.vector_norm(norms)
        else:
            norms, total = torch.zeros(0, device=self.device), self._no_grad
        present = [p.grad for _, p in self.params if p.grad is not None]
        if self.grad_clip and present:  # as clip_grad_norm_ does, with the norm in hand
            coef = torch.clamp(self.grad_clip / (total + 1e-6), max=1.0)
            torch._foreach_mul_(present, coef.to(present[0].dtype))
        finite = torch.isfinite(loss) & torch.isfinite(total)
        self._last = (loss, norms, total)
        if self.policy == "stop":
            self._pending.append((step + 1, finite, loss, norms, total))
            if len(self._pending) >= CHECK_EVERY:
                self.check(step)
        return finite

    def _fault_words(self, step: int, loss: Tensor, norms: Tensor, total: Tensor) -> str:
        bad = (~torch.isfinite(norms)).tolist()
        names = [n for (n, _), b in zip(self.params, bad) if b]
        loss_value, total_value = float(loss), float(total)
        if not math.isfinite(loss_value):
            what = f"the training loss is {loss_value}"
            if names:
                what += f" and the gradient of {_name_list(names)} is not finite"
        elif names:
            what = (
                f"the gradient of {_name_list(names)} is not finite (the loss was {loss_value:.6g})"
            )
        else:
            what = f"the total gradient norm is {total_value} (the loss was {loss_value:.6g})"
        return f"step {step}: {what}"

    def _last_good_words(self) -> str:
        return str(self.last_good() or "none written")

    def decide(self, finite: Tensor, step: int) -> bool:
        """``skip`` mode: read optimizer step ``step``'s health (one host sync) and say
        whether to make its update."""
        flag = finite.to(torch.int32)
        if self.dist.active:  # every rank must take the same decision
            dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        if bool(flag):
            self.skips_in_a_row = 0
            return True
        assert self._last is not None
        words = self._fault_words(step + 1, *self._last)
        self.skipped_steps += 1
        self.skips_in_a_row += 1
        if self.skips_in_a_row > self.max_skips:
            raise NonFiniteTrainingError(
                f"{words}; {self.skips_in_a_row} steps in a row had to be skipped (max_skips "
                f"{self.max_skips}), so training stopped; the last good checkpoint is "
                f"{self._last_good_words()} (lower lr, or set grad_clip)"
            )
        if self.dist.is_main:
            self.console.print(f"skipped {words}", highlight=False, markup=False)
        return False

    def check(self, step: int) -> None:
        """Raise :class:`NonFiniteTrainingError` if a step since the last check was faulty
        (``stop`` mode), the run being at step ``step``; reads one number from the device.
        Called before every log line, evaluation and checkpoint, so none is written after a
        fault."""
        if self.policy != "stop" or not self._pending:
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
        words = self._fault_words(k, loss, norms, total)
        when = f" (detected by step {step})" if step != k else ""
        raise NonFiniteTrainingError(
            f"{words}{when}; training stopped, the last good checkpoint is "
            f"{self._last_good_words()} (--on-nonfinite skip skips such steps; "
            "or lower lr, or set grad_clip)"
        )

    def counts(self) -> dict[str, int]:
        """The ``skip`` policy's counts, as checkpoints record them."""
        return {"skipped_steps": self.skipped_steps, "skips_in_a_row": self.skips_in_a_row}
