"""Where training runs: the device, torchrun's process group, the seed and the data order.

:class:`Runtime` gathers what every part of the trainer needs to know of it (this
process's place, its device and dtype, autocast); :class:`StopRequest` turns SIGINT and
SIGTERM into a stop after the step in flight, taken by every rank at the same step.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import warnings
from collections.abc import Iterator
from typing import Any

import attrs
import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor

from latentkit.arguments import check_count, check_seed, checked, describe_value
from latentkit.errors import ConfigError, TrainingError

__all__ = [
    "DataOrder",
    "DistInfo",
    "Runtime",
    "StopRequest",
    "distributed_env",
    "init_distributed",
    "model_dtype",
    "resolve_device",
    "seed_everything",
    "shutdown_distributed",
]


def model_dtype(model: torch.nn.Module) -> torch.dtype:
    """The floating dtype of ``model``'s reference tensor (its parameters'), or torch's
    default for a model whose reference is not floating."""
    ref = model.reference()
    return ref.dtype if ref.is_floating_point() else torch.get_default_dtype()


def seed_everything(seed: int) -> None:
    """Seed torch's generators (CPU and every CUDA device); latentkit draws from no other.
    ``seed``: an int in [0, 2**32 - 1], else an InputError."""
    torch.manual_seed(check_seed(seed, "seed_everything: seed"))


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when present, else CPU; a clear error for an unavailable device."""
    if not isinstance(name, str):
        raise ConfigError(
            f"device must be a str (cpu, cuda, cuda:N, auto), got {describe_value(name)}"
        )
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


def _place(low: int, high: int) -> Any:
    """A validator: an int in [low, high], else a ConfigError naming the field."""

    def check(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        check_count(value, f"DistInfo: {attribute.name}", low=low, high=high, error=ConfigError)

    return check


@attrs.frozen
class DistInfo:
    """This process's place in a torchrun job (rank 0 of 1 when run alone): ints with
    0 ≤ rank < world_size ≤ 65536 and 0 ≤ local_rank ≤ 65535, else a ConfigError."""

    rank: int = attrs.field(default=0, validator=_place(0, 65535))
    world_size: int = attrs.field(default=1, validator=_place(1, 65536))
    local_rank: int = attrs.field(default=0, validator=_place(0, 65535))

    def __attrs_post_init__(self) -> None:
        if self.rank >= self.world_size:
            raise ConfigError(
                f"DistInfo: rank must be < world_size ({self.world_size}), got {self.rank}"
            )

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


def _check_resolvable(addr: str) -> None:
    """Refuse a MASTER_ADDR that does not resolve: torch's rendezvous would retry it
    without end instead of failing."""
    try:
        socket.getaddrinfo(addr, None)
    except (OSError, UnicodeError) as exc:
        raise ConfigError(
            f"environment variable MASTER_ADDR={addr!r} does not resolve to an address ({exc})"
        ) from None


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
        _check_resolvable(addr)
    return DistInfo(rank, world, local)


@checked
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
    (seed, e); step s takes slice s mod (N // B) of epoch s // (N // B). Drop-last epochs.
    Counts and the seed as ``TrainConfig``'s, else a ConfigError."""

    def __init__(self, num_examples: int, batch_size: int, seed: int):
        check_count(num_examples, "DataOrder: num_examples", low=0, error=ConfigError)
        check_count(batch_size, "batch_size", error=ConfigError)
        check_seed(seed, "DataOrder: seed", error=ConfigError)
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


@attrs.frozen
class Runtime:
    """Where the trainer's parts compute: this process's place in the job, its device, the
    model's floating dtype, and whether CUDA steps run under bf16 autocast."""

    dist: DistInfo
    device: torch.device
    dtype: torch.dtype = torch.float32
    amp: bool = False

    @classmethod
    def start(
        cls, device: str, dtype: torch.dtype, *, amp: bool = False, batch_size: int = 1
    ) -> Runtime:
        """Resolve ``device`` (``TrainConfig.device``) and join torchrun's process group if
        there is one; a global batch of ``batch_size`` must split evenly over its processes.
        ``amp`` off CUDA is warned about and dropped."""
        dist_info, where = init_distributed(resolve_device(device))
        if batch_size % dist_info.world_size:
            raise ConfigError(
                f"batch_size: {batch_size} does not split evenly over "
                f"{dist_info.world_size} processes"
            )
        if amp and where.type != "cuda":
            warnings.warn(
                "amp: bf16 autocast is used on CUDA only; training in float32", stacklevel=3
            )
        return cls(dist_info, where, dtype, amp and where.type == "cuda")

    def share(self, batch_size: int) -> slice:
        """This rank's rows of a global batch of ``batch_size`` (a contiguous slice)."""
        n = batch_size // self.dist.world_size
        return slice(self.dist.rank * n, (self.dist.rank + 1) * n)

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast on CUDA when ``amp`` is on; nothing otherwise."""
        if self.amp and self.device.type == "cuda":
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @contextlib.contextmanager
    def fork_rng(self, seed: int) -> Iterator[None]:
        """Run the ``with`` body on torch's generators seeded with ``seed``; the training
        noise continues after it as if the body had drawn nothing."""
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            yield

    def any_rank(self, flag: bool) -> bool:
        """Whether ``flag`` is set on any rank (every rank must call it)."""
        if not self.dist.active:
            return flag
        value = torch.tensor([1 if flag else 0], device=self.device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def barrier(self) -> None:
        """Wait for every rank (nothing when alone)."""
        if self.dist.active:
            dist.barrier()


class StopRequest:
    """SIGINT and SIGTERM, caught while the ``with`` body runs: the first asks the loop to
    stop after the step in flight, a second aborts at once (``KeyboardInterrupt``). Off the
    main thread (where Python cannot install handlers) nothing is caught."""

    def __init__(self) -> None:
        self.signum = 0
        self._old: dict[int, Any] = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
        self._old.clear()

    def _handler(self, signum: int, frame: Any) -> None:
        if self.signum:
            raise KeyboardInterrupt
        self.signum = signum

    def agreed(self, runtime: Runtime) -> bool:
        """Whether to stop now: every rank must stop after the same step, or the others wait
        forever in all-reduce (a collective under torchrun)."""
        return runtime.any_rank(bool(self.signum))
