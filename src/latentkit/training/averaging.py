"""An exponential moving average (EMA) of a model's weights.

:class:`EMA` keeps a shadow copy θ̄ of a module's floating-point parameters, updated after
each optimizer step as θ̄ ← d·θ̄ + (1 − d)·θ (Polyak averaging with exponential weights),
with two ``torch._foreach`` kernels over all parameters and no host synchronisation. The
module's buffers (e.g. batch-norm statistics) are copied, not averaged, so the EMA weights
are paired with the buffers of the last update. With ``warmup=True`` the decay of the
(k+1)-th update is min(d, (1 + k)/(10 + k)), as in TensorFlow's
``tf.train.ExponentialMovingAverage(num_updates=…)``, so early shadows are not dominated
by the random initialisation.

Mutations tried (each made by hand here; the tests of ``tests/test_schedules.py`` it fails)
----------------------------------------------------------------------------------------
* EMA with ``d`` and ``1 − d`` swapped: both closed-form tests;
* the EMA warm-up decay with the count after the update, (2 + k)/(11 + k):
  ``test_ema_warmup_uses_the_tensorflow_decay``;
* ``load_state_dict`` ignoring the stored update count: the round trip with warm-up;
* ``swapped`` restoring outside a ``finally``: the exception case of ``test_swapped…``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from latentkit.errors import CheckpointError, ConfigError, InputError

__all__ = ["EMA"]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class EMA:
    """An exponential moving average of a module's floating-point parameters.

    θ̄ ← d·θ̄ + (1 − d)·θ at each :meth:`update`, starting from θ̄ = θ at construction; the
    module's buffers are copied, not averaged. The shadow tensors take the device and dtype
    of the module's (also when the module is moved or cast later).

    Args:
        module: the module whose weights are averaged; its parameter and buffer names are
            fixed here, and every later call must be given a module with the same names and
            shapes (the same module, or a copy, e.g. a fresh model a checkpoint restores).
        decay: d, in [0, 1) (0 copies the weights).
        warmup: use min(d, (1 + k)/(10 + k)) for the (k+1)-th update (off by default).
    """

    NUM_UPDATES_KEY: ClassVar[str] = "@num_updates"
    """The key of the update count in :meth:`state_dict` (no parameter can be named so)."""

    def __init__(self, module: nn.Module, decay: float = 0.999, *, warmup: bool = False) -> None:
        if not _is_number(decay) or not 0.0 <= decay < 1.0:
            raise ConfigError(f"'decay' must be a number in [0, 1), got {decay!r}")
        if not isinstance(warmup, bool):
            raise ConfigError(f"'warmup' must be true or false, got {warmup!r}")
        self.decay = float(decay)
        self.warmup = warmup
        self.num_updates = 0
        params = [(name, p) for name, p in module.named_parameters() if p.is_floating_point()]
        buffers = list(module.named_buffers())
        self._param_names = tuple(name for name, _ in params)
        self._buffer_names = tuple(name for name, _ in buffers)
        if self.NUM_UPDATES_KEY in self._param_names + self._buffer_names:
            raise InputError(f"EMA: the module has a tensor named {self.NUM_UPDATES_KEY!r}")
        with torch.no_grad():
            self._params = [p.detach().clone() for _, p in params]
            self._buffers = [b.detach().clone() for _, b in buffers]

    def current_decay(self) -> float:
        """The decay the next :meth:`update` uses."""
        if self.warmup:
            k = self.num_updates
            return min(self.decay, (1 + k) / (10 + k))
        return self.decay

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        """θ̄ ← d·θ̄ + (1 − d)·θ for every parameter θ of ``module``; copy its buffers."""
        params, buffers = self._live(module)
        decay = self.current_decay()
        if params:
            torch._foreach_mul_(self._params, decay)
            torch._foreach_add_(self._params, params, alpha=1.0 - decay)
        if buffers:
            torch._foreach_copy_(self._buffers, buffers)
        self.num_updates += 1

    @torch.no_grad()
    def copy_to(self, module: nn.Module) -> None:
        """Overwrite ``module``'s parameters with θ̄ and its buffers with the stored copies."""
        params, buffers = self._live(module)
        if params:
            torch._foreach_copy_(params, self._params)
        if buffers:
            torch._foreach_copy_(buffers, self._buffers)

    @contextlib.contextmanager
    def swapped(self, module: nn.Module) -> Iterator[nn.Module]:
        """Run the ``with`` body on ``module`` holding the EMA weights; restore its own after.

        The original values are written back into the same tensors on exit, also when the
        body raises; changes the body makes to the weights are discarded.
        """
        params, buffers = self._live(module)
        with torch.no_grad():
            saved_params = [p.detach().clone() for p in params]
            saved_buffers = [b.detach().clone() for b in buffers]
        self.copy_to(module)
        try:
            yield module
        finally:
            with torch.no_grad():
                if params:
                    torch._foreach_copy_(params, saved_params)
                if buffers:
                    torch._foreach_copy_(buffers, saved_buffers)

    def state_dict(self) -> dict[str, Tensor]:
        """θ̄ and the buffer copies under the module's names, and the update count (an int64
        scalar) under :attr:`NUM_UPDATES_KEY`. Tensors only (safetensors can hold them);
        the shadow tensors themselves, not copies, as ``nn.Module.state_dict``. The decay
        and ``warmup`` are configuration: the caller records them."""
        state = dict(zip(self._param_names, self._params))
        state.update(zip(self._buffer_names, self._buffers))
        state[self.NUM_UPDATES_KEY] = torch.tensor(self.num_updates, dtype=torch.int64)
        return state

    def load_state_dict(self, state: Mapping[str, Tensor]) -> None:
        """Restore θ̄, the buffer copies and the update count from :meth:`state_dict`'s form.

        Everything is checked before anything is changed: names and shapes must be this
        EMA's exactly and values finite, or :class:`~latentkit.errors.CheckpointError`
        names the first difference. Values are cast to the shadows' dtype and device.
        """
        names = self._param_names + self._buffer_names
        missing = [name for name in (*names, self.NUM_UPDATES_KEY) if name not in state]
        extra = sorted(set(state) - {*names, self.NUM_UPDATES_KEY})
        if missing or extra:
            raise CheckpointError(
                f"EMA state does not fit the module: missing {missing[:3]}"
                f"{' …' if len(missing) > 3 else ''}, unexpected {extra[:3]}"
                f"{' …' if len(extra) > 3 else ''}"
            )
        for name, want in zip(names, self._params + self._buffers):
            got = state[name]
            if not isinstance(got, Tensor):
                raise CheckpointError(f"EMA state {name!r} is not a tensor: {type(got).__name__}")
            if got.shape != want.shape:
                raise CheckpointError(
                    f"EMA state {name!r} has shape {tuple(got.shape)}, the module's is "
                    f"{tuple(want.shape)}"
                )
            if got.is_floating_point() and not bool(torch.isfinite(got).all()):
                raise CheckpointError(f"EMA state {name!r} holds NaN or inf values")
        count = state[self.NUM_UPDATES_KEY]
        if (
            not isinstance(count, Tensor)
            or count.dim() != 0
            or count.is_floating_point()
            or count.is_complex()
            or count.dtype == torch.bool
            or int(count) < 0
        ):
            raise CheckpointError(
                f"EMA state {self.NUM_UPDATES_KEY!r} must be an integer scalar tensor ≥ 0, "
                f"got {count!r}"
            )
        with torch.no_grad():
            for shadow, name in zip(self._params + self._buffers, names):
                shadow.copy_(state[name])
        self.num_updates = int(count)

    def _live(self, module: nn.Module) -> tuple[list[Tensor], list[Tensor]]:
        """The module's parameters and buffers in this EMA's order, after checking their
        names and shapes and moving the shadows to their device and dtype."""
        params = {name: p for name, p in module.named_parameters() if p.is_floating_point()}
        buffers = dict(module.named_buffers())
        for kind, want, have in (
            ("parameters", self._param_names, params),
            ("buffers", self._buffer_names, buffers),
        ):
            if set(have) != set(want):
                missing = [name for name in want if name not in have]
                extra = [name for name in have if name not in set(want)]
                raise InputError(
                    f"EMA: the module's {kind} are not the ones it tracks: missing {missing[:3]}, "
                    f"unexpected {extra[:3]}"
                )
        live_params = [params[name] for name in self._param_names]
        live_buffers = [buffers[name] for name in self._buffer_names]
        for names, shadows, live in (
            (self._param_names, self._params, live_params),
            (self._buffer_names, self._buffers, live_buffers),
        ):
            for i, (name, shadow, tensor) in enumerate(zip(names, shadows, live)):
                if shadow.shape != tensor.shape:
                    raise InputError(
                        f"EMA: {name!r} has shape {tuple(tensor.shape)}, the EMA's is "
                        f"{tuple(shadow.shape)}"
                    )
                if shadow.dtype != tensor.dtype or shadow.device != tensor.device:
                    shadows[i] = shadow.to(device=tensor.device, dtype=tensor.dtype)
        return live_params, live_buffers
