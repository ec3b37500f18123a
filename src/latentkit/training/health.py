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

import torch
import torch.distributed as dist
from torch import Tensor

from latentkit.errors import NonFiniteTrainingError

__all__ = ["CHECK_EVERY", "StepHealth"]

CHECK_EVERY = 1000
"""In ``stop`` mode, the longest run of steps whose health is not yet read back (the log,
evaluation and checkpoint steps usually read it sooner)."""


def _name_list(names: list[str]) -> str:
    if len(names) <= 3:
        return ", ".join(names)
    return f"{', '.join(names[:3])} and {len(names) - 3} more"


class StepHealth:
    """The trainer's part that watches for NaN/inf (a mixin of :class:`Trainer`).

    Uses the trainer's ``config``, ``dist``, ``device``, ``step``, ``console``,
    ``last_checkpoint`` and ``_params`` (the named trainable parameters)."""

    def _init_health(self) -> None:
        self._no_grad = torch.zeros((), device=self.device)
        # stop mode: (step, finite, loss, grad norms, total norm) of each step since the last
        # check, as device tensors the step computed anyway; read at the next check.
        self._pending: list[tuple[int, Tensor, Tensor, Tensor, Tensor]] = []
        self.skipped_steps = 0
        self._skips_in_a_row = 0

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
