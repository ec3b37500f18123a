"""Interleaved timing: contenders run in alternating blocks, so machine noise hits all alike.

Each round runs every contender's block of ``inner`` calls, in an order that reverses
every other round (A B C, C B A, ...), so neither position nor a slow drift of the
machine favours one side. A contender's time is the median over rounds of its per-call
time; a ratio is the median over rounds of the *paired* per-round ratio (each round's
two blocks ran seconds apart), with a distribution-free 95% confidence interval of that
median from the order statistics.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import time
from collections.abc import Callable

import attrs
import torch

__all__ = [
    "Timing",
    "cpu_clock",
    "device_string",
    "difference",
    "eager_against_compiled",
    "interleaved",
    "ratio",
]


@attrs.frozen
class Timing:
    """Per-call seconds of one contender, one entry per round."""

    name: str
    per_call: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.per_call)


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def interleaved(
    contenders: dict[str, Callable[[], object]],
    *,
    rounds: int,
    inner: int,
    warmup: int = 3,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, Timing]:
    """Time each zero-argument callable: ``warmup`` untimed calls each, then ``rounds``
    alternating rounds of ``inner`` calls per contender. Returns per-call seconds, read
    from ``clock`` (wall time by default; see :func:`cpu_clock`)."""
    names = list(contenders)
    for name in names:
        for _ in range(warmup):
            contenders[name]()
    _sync()
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            fn = contenders[name]
            t0 = clock()
            for _ in range(inner):
                fn()
            _sync()
            times[name].append((clock() - t0) / inner)
    return {n: Timing(n, tuple(t)) for n, t in times.items()}


def cpu_clock(device: torch.device | str = "cpu") -> tuple[Callable[[], float], str]:
    """The clock to time ``device`` by, and its name for the report.

    On CPU with torch on one thread, the CPU time of the calling thread: every operator and
    the backward pass run on it, and the time the machine gives other jobs is not counted
    (on a shared machine wall time mostly measures them). With more threads, the process's
    CPU time. On CUDA, wall time (the device works while the host waits; the harness
    synchronizes before reading the clock)."""
    if torch.device(device).type != "cpu":
        return time.perf_counter, "wall time, CUDA synchronized"
    if torch.get_num_threads() == 1:
        return time.thread_time, "CPU time of the calling thread (torch on one thread)"
    return time.process_time, f"CPU time of the process ({torch.get_num_threads()} threads)"


def median_ci(values: list[float], level: float = 0.95) -> tuple[float, float]:
    """Distribution-free confidence interval of the median: the k-th smallest and k-th
    largest values, k the largest rank with P(Binomial(n, ½) < k) ≤ (1 − level)/2."""
    xs, n = sorted(values), len(values)
    tail, k = 0.0, 0
    for j in range(n + 1):
        p = math.comb(n, j) / 2**n
        if tail + p > (1 - level) / 2:
            break
        tail, k = tail + p, j + 1
    return (xs[0], xs[-1]) if k == 0 else (xs[k - 1], xs[n - k])


def ratio(a: Timing, b: Timing) -> tuple[float, float, float]:
    """a / b as (median, 95% CI low, high) of the paired per-round ratios."""
    rs = [x / y for x, y in zip(a.per_call, b.per_call)]
    lo, hi = median_ci(rs)
    return statistics.median(rs), lo, hi


def difference(a: Timing, b: Timing) -> float:
    """a − b in seconds per call: the median of the paired per-round differences."""
    return statistics.median(x - y for x, y in zip(a.per_call, b.per_call))


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_string() -> str:
    """What the absolute times were measured on: CPU model, cores, torch threads, versions."""
    cores = os.cpu_count()
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = cores
    return (
        f"{cpu_model()}, {usable} usable of {cores} logical cores, "
        f"torch {torch.__version__} with {torch.get_num_threads()} threads, "
        f"Python {platform.python_version()}, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}"
    )


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def eager_against_compiled(found: dict[str, Timing], title: str) -> None:
    """Print ``title`` (with the thread count and the CPU), each contender's median per step
    with its 95% interval, and eager / compiled with its interval: the table of a
    ``{"eager": ..., "compiled": ...}`` comparison from :func:`interleaved`."""
    print(f"{title}, {torch.get_num_threads()} thread(s), {cpu_model()}")
    for name, timing in found.items():
        lo, hi = median_ci(list(timing.per_call))
        print(f"  {name:9s} median {1e3 * timing.median:7.2f} ms/step  (95% {1e3 * lo:.2f}–"
              f"{1e3 * hi:.2f})")  # fmt: skip
    r, lo, hi = ratio(found["eager"], found["compiled"])
    print(f"  eager / compiled = {r:.2f} (95% {lo:.2f}–{hi:.2f})")
