"""The overhead sweep: latentkit ÷ hand-written eager PyTorch across models, batches and widths.

For every model (vae, hvae, ddpm), network width (a small one, where the fixed cost per
call shows, and the benchmark's) and batch size, two tasks:

* **train step**: ``latentkit.training_loss(model, x).mean()``, ``zero_grad``, ``backward``,
  ``Adam.step`` against the same step of ``bench/baselines.py``'s hand-written model;
* **ELBO eval**: ``latentkit.elbo(model, x).total`` under ``no_grad`` (input checks on, as a
  user calls it) against the hand-written bound (for the DDPM: the full-T bound, every
  timestep, layer-batched, at the sweep's ``ddpm_eval_T``).

Each (model, width, batch, task) cell is one interleaved group (``bench/timing.py``): the
ratio is the median of the paired per-round ratios with its 95% CI, and the **overhead** is
the median paired difference latentkit − hand-written in µs per call, comparable across
sizes. Beside them:

* the **compiled path**: ``torch.compile`` of the objective's forward (its backward through
  AOTAutograd) and of ``latentkit.elbo(..., validate=False)`` — the checks read a value back
  to the host, which a traced graph cannot — timed in the same rounds, ÷ hand-written eager,
  with its compile time (the first call at that batch size, minus one eager call);
* **peak memory** of one call above what was live before it, for latentkit and the
  hand-written code: on CUDA torch's allocator statistics (``max_memory_allocated``); on CPU
  the running sum of the bytes torch's CPU allocator hands out and takes back during the
  call, from ``torch.profiler``'s memory events (``peak_bytes``);
* the DDPM's full-T bound throughput against the ε-network's plain forward on the same
  (image, t) rows (``bench/full_bound.py``);
* for each (model, task, width) with a ratio over its goal, the cProfile groups and the
  costliest Python functions of the latentkit call at batch 1, where the fixed cost is
  nearly all of the gap (``bench/hotspots.py``).

``python -m bench.run --sweep`` runs it; ``--sweep --quick`` is the seconds-long form CI runs;
``--device cuda`` runs the same sweep on a GPU.
"""

from __future__ import annotations

import copy
import itertools
import statistics
import time
from collections.abc import Callable

import attrs
import torch
from torch import Tensor, nn

import latentkit as lk
from bench import baselines, full_bound, hotspots
from bench.timing import Timing, cpu_clock, difference, interleaved, ratio
from latentkit.registry import training_objective

__all__ = [
    "GOALS",
    "SweepSize",
    "peak_bytes",
    "run",
]

GOALS = {"train step": 1.05, "ELBO eval": 1.10}
"""Goal of latentkit ÷ hand-written eager per task; the compiled path's goal is < 1."""
MEMORY_GOAL = 1.10
FULL_T_GOAL = 0.90


@attrs.frozen
class SweepSize:
    """Sizes of one sweep (the default is the documented one; ``QUICK`` the CI one)."""

    models: tuple[str, ...] = ("vae", "hvae", "ddpm")
    batches: tuple[int, ...] = (1, 32, 128, 512)
    widths: tuple[tuple[str, tuple[int, ...]], ...] = (
        ("small", (64,)),
        ("bench", (256, 256)),
    )
    data_dim: int = 784  # binary data of MNIST's size (vae, hvae)
    latent_dim: int = 16
    hvae_latents: tuple[int, ...] = (32, 16, 8)
    ddpm_dim: int = 64  # 8-bit data of the digits' size
    ddpm_T: int = 1000  # training: one timestep per example, so T only sets the schedule
    ddpm_eval_T: int = 100  # the full-T bound: batch × T network rows per evaluation
    rounds: int = 15
    block_seconds: float = 0.05
    warmup: int = 2
    compile: bool = True
    compile_widths: tuple[str, ...] = ("small", "bench")
    memory: bool = True
    profile: bool = True
    full_t: tuple[tuple[int, int], ...] = ((1000, 4), (1000, 16), (1000, 64))  # (T, batch)
    full_t_rounds: int = 11  # the forward alone varies up to 30% from round to round


QUICK = SweepSize(
    batches=(1, 8),
    widths=(("small", (16,)), ("bench", (32,))),
    data_dim=20,
    latent_dim=3,
    hvae_latents=(4, 2),
    ddpm_dim=12,
    ddpm_T=20,
    ddpm_eval_T=5,
    rounds=3,
    block_seconds=0.005,
    warmup=1,
    compile=False,
    profile=False,
    full_t=((10, 2),),
    full_t_rounds=2,
)


# -- data, models, contenders -------------------------------------------------------------


def _data(model: str, size: SweepSize, n: int, device: torch.device, seed: int) -> Tensor:
    """Synthetic data of the benchmark's kinds: binary pixels (vae, hvae) or 8-bit values
    mapped to [-1, 1] (ddpm). Timing does not depend on the values."""
    g = torch.Generator().manual_seed(seed)
    if model == "ddpm":
        x = torch.randint(0, 256, (n, size.ddpm_dim), generator=g).float() * 2 / 255 - 1
    else:
        x = (torch.rand(n, size.data_dim, generator=g) < 0.3).float()
    return x.to(device)


def _batches(data: Tensor, batch: int, count: int = 4) -> list[Tensor]:
    g = torch.Generator().manual_seed(1234)
    return [data[torch.randperm(data.shape[0], generator=g)[:batch]] for _ in range(count)]


def build_pair(
    model: str, hidden: tuple[int, ...], size: SweepSize, *, T: int | None = None
) -> tuple[lk.LatentModel, nn.Module]:
    """A latentkit model and the hand-written one with the same weights (``baselines``)."""
    if model == "vae":
        m = lk.load_model(
            "vae",
            data_shape=(size.data_dim,),
            latent_dim=size.latent_dim,
            hidden=hidden,
            likelihood="bernoulli",
        )
        return m, baselines.VAE.from_latentkit(m)
    if model == "hvae":
        m = lk.load_model(
            "hvae",
            data_shape=(size.data_dim,),
            latent_dims=size.hvae_latents,
            hidden=hidden,
            likelihood="bernoulli",
        )
        return m, baselines.HVAE.from_latentkit(m)
    if model == "ddpm":
        m = lk.load_model(
            "ddpm",
            data_shape=(size.ddpm_dim,),
            num_timesteps=T or size.ddpm_T,
            network="mlp",
            hidden=hidden,
        )
        # The output layer starts at zero (ε̂ = 0); give it weights so the network matters.
        nn.init.normal_(m.generative.net.out.weight, std=0.02)
        return m, baselines.DDPM.from_latentkit(m)
    raise ValueError(f"unknown sweep model {model!r}")


def _train_step(params, loss_fn: Callable[[Tensor], Tensor], batches) -> Callable[[], None]:
    opt = torch.optim.Adam(params, lr=1e-3)
    it = itertools.cycle(batches)

    def step() -> None:
        loss = loss_fn(next(it))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def _eval(fn: Callable[[Tensor], Tensor], batches) -> Callable[[], None]:
    it = itertools.cycle(batches)

    def run() -> None:
        with torch.no_grad():
            fn(next(it))

    return run


def _hand_elbo(model: str, hand: nn.Module) -> Callable[[Tensor], Tensor]:
    return hand.elbo if model == "ddpm" else (lambda x: -hand.loss(x))


def contenders(
    model: str, task: str, lk_model: lk.LatentModel, hand: nn.Module, batches: list[Tensor]
) -> dict[str, Callable[[], None]]:
    """Eager latentkit and hand-written callables of one cell, each on its own weights."""
    m, h = copy.deepcopy(lk_model), copy.deepcopy(hand)
    if task == "train step":
        return {
            "latentkit": _train_step(
                m.parameters(), lambda x: lk.training_loss(m, x).mean(), batches
            ),
            "hand-written": _train_step(h.parameters(), lambda x: h.loss(x).mean(), batches),
        }
    m.eval()
    return {
        "latentkit": _eval(lambda x: lk.elbo(m, x).total, batches),
        "hand-written": _eval(_hand_elbo(model, h), batches),
        # The engine alone: what the public entry's input checks (every value finite and
        # inside the likelihood's support, one read-back) add is the difference.
        "unchecked": _eval(lambda x: lk.elbo(m, x, validate=False).total, batches),
    }


class CompiledPath:
    """The compiled path of one (model, width, task): ``torch.compile`` of the objective's
    forward (its backward compiled with it by AOTAutograd; Adam stays eager, as in the eager
    contenders) or of ``latentkit.elbo(..., validate=False)``, on its own copy of the weights.
    ``dynamic=True``: one graph serves every batch size ≥ 2 (torch specializes size 1), so a
    sweep compiles about twice per path, not once per batch size."""

    def __init__(self, task: str, lk_model: lk.LatentModel, example: Tensor):
        # Every path's function is the same lambda (one code object): without a reset, the
        # earlier models' graphs count against dynamo's recompile limit (8), after which it
        # runs later models eagerly behind its guards (slower than eager, "0 s to compile").
        torch._dynamo.reset()
        self.task = task
        self.model = m = copy.deepcopy(lk_model)
        if task == "train step":
            objective = training_objective(m)
            objective(m, example)  # eager once: fills torch's KL dispatch cache before tracing
            self.fn = torch.compile(lambda x: objective(m, x).mean(), dynamic=True)
        else:
            m.eval()
            with torch.no_grad():
                lk.elbo(m, example)
            self.fn = torch.compile(lambda x: lk.elbo(m, x, validate=False).total, dynamic=True)

    def contender(self, batches: list[Tensor]) -> Callable[[], None]:
        if self.task == "train step":
            return _train_step(self.model.parameters(), self.fn, batches)
        return _eval(self.fn, batches)


# -- memory -------------------------------------------------------------------------------


def peak_bytes(fn: Callable[[], object], device: torch.device, calls: int = 5) -> int:
    """Peak bytes allocated by one call of ``fn`` above what was live before it: the median
    over ``calls`` calls.

    CUDA: ``torch.cuda.max_memory_allocated`` after resetting the peak. CPU: torch's CPU
    allocator has no peak statistic, so the allocations and frees ``torch.profiler`` records
    (``profile_memory=True``: each operator's own bytes at its start, frees outside
    operators at their time) are summed in time order and the maximum of the running sum is
    taken. An operator's own temporaries that it frees before returning are netted out, so
    this is the peak of the tensors operators hand each other, not of their scratch space.
    The same training step read this way varies from call to call (a VAE's step was seen at
    7, 238 and 407 KiB): hence the median of several.
    """
    fn()  # warm: optimizer state and caches exist before the measured call
    return int(statistics.median(_peak_once(fn, device) for _ in range(calls)))


def _peak_once(fn: Callable[[], object], device: torch.device) -> int:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return int(torch.cuda.max_memory_allocated(device) - base)
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    points = []
    for e in prof.events():
        if e.name == "[memory]":
            points.append((e.time_range.start, e.cpu_memory_usage))
        elif e.self_cpu_memory_usage:
            points.append((e.time_range.start, e.self_cpu_memory_usage))
    run = peak = 0
    for _, b in sorted(points, key=lambda p: p[0]):
        run += b
        peak = max(peak, run)
    return int(peak)


# -- the sweep ----------------------------------------------------------------------------


def _calibrate(
    fns: dict[str, Callable[[], None]], seconds: float, warmup: int, device: torch.device
) -> int:
    """Calls per block so that the slowest contender's block lasts about ``seconds``."""
    worst = 0.0
    for fn in fns.values():
        for _ in range(warmup):
            fn()
        worst = max(worst, _time_once(fn, device))
    return max(1, round(seconds / max(worst, 1e-6)))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_cell(
    model: str,
    task: str,
    width: str,
    lk_model: lk.LatentModel,
    hand: nn.Module,
    batches: list[Tensor],
    size: SweepSize,
    device: torch.device,
    compiled: CompiledPath | None = None,
) -> dict:
    """One (model, task, width, batch) cell: eager ratio and overhead, compiled, memory."""
    fns = contenders(model, task, lk_model, hand, batches)
    cell: dict = {
        "model": model,
        "task": task,
        "width": width,
        "batch": batches[0].shape[0],
        "goal": GOALS[task],
    }
    if compiled is not None:
        try:
            cfn = compiled.contender(batches)
            eager_s = _time_once(fns["latentkit"], device)
            t0 = time.perf_counter()
            cfn()
            _sync(device)
            cell["compile_s"] = max(time.perf_counter() - t0 - eager_s, 0.0)
            fns["compiled"] = cfn
        except Exception as exc:  # a model that does not trace is reported, not fatal
            cell["compile_error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    inner = _calibrate(fns, size.block_seconds, size.warmup, device)
    t = interleaved(fns, rounds=size.rounds, inner=inner, warmup=1, clock=cpu_clock(device)[0])
    cell.update(_summary(t, inner))
    if size.memory:
        # On CPU the compiled graph's buffers are allocated by inductor's C++ wrapper, outside
        # the profiler's operator records: its peak would read as near zero, so it is left out.
        names = [n for n in fns if device.type == "cuda" or n != "compiled"]
        cell["memory"] = {name: peak_bytes(fns[name], device) for name in names}
    return cell


def _time_once(fn: Callable[[], None], device: torch.device) -> float:
    fn()
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


def _summary(t: dict[str, Timing], inner: int) -> dict:
    lk_, hand = t["latentkit"], t["hand-written"]
    out = {
        "rounds": len(lk_.per_call),
        "calls_per_round": inner,
        "latentkit_ms": lk_.median * 1e3,
        "hand_ms": hand.median * 1e3,
        "ratio": ratio(lk_, hand),
        "overhead_us": difference(lk_, hand) * 1e6,
        "per_call_s": {k: list(v.per_call) for k, v in t.items()},
    }
    if "unchecked" in t:
        out["unchecked_ms"] = t["unchecked"].median * 1e3
        out["unchecked_ratio"] = ratio(t["unchecked"], hand)
    if "compiled" in t:
        out["compiled_ms"] = t["compiled"].median * 1e3
        out["compiled_ratio"] = ratio(t["compiled"], hand)
    return out


def _explain(model: str, task: str, width: str, hidden, size: SweepSize, device) -> dict:
    """cProfile of the latentkit and hand-written calls at batch 1: where the fixed cost goes."""
    T = size.ddpm_eval_T if (model == "ddpm" and task == "ELBO eval") else None
    torch.manual_seed(0)
    m, h = build_pair(model, hidden, size, T=T)
    m, h = m.to(device), h.to(device)
    batches = _batches(_data(model, size, 64, device, seed=3), 1)
    fns = contenders(model, task, m, h, batches)
    calls = 200 if device.type == "cpu" else 100
    clock = cpu_clock(device)[0]
    mine = hotspots.profile_calls(fns["latentkit"], calls, clock)
    theirs = hotspots.profile_calls(fns["hand-written"], calls, clock)
    ops = [hotspots.op_count(fns[k]) for k in ("latentkit", "hand-written")]
    delta = {g: mine["groups_us"][g] - theirs["groups_us"][g] for g in hotspots.GROUPS}
    top = [
        f
        for f in mine["top_python"]
        if f["group"] in ("latentkit core", "latentkit plugin", "torch.distributions", "einops")
    ][:4]
    return {
        "model": model,
        "task": task,
        "width": width,
        "delta_us": delta,
        "top": top,
        "ops": ops,
    }


def run(size: SweepSize, log: Callable[[str], None], *, device: str = "cpu") -> dict:
    """Measure every cell of the sweep; return a JSON-ready dict (``report`` renders it)."""
    dev = torch.device(device)
    cells, explained, compile_total = [], [], 0.0
    for model in size.models:
        for width, hidden in size.widths:
            for task in ("train step", "ELBO eval"):
                T = size.ddpm_eval_T if (model == "ddpm" and task == "ELBO eval") else None
                torch.manual_seed(0)
                lk_model, hand = build_pair(model, hidden, size, T=T)
                lk_model, hand = lk_model.to(dev), hand.to(dev)
                data = _data(model, size, max(size.batches) * 2, dev, seed=1)
                compiled = None
                if size.compile and width in size.compile_widths:
                    compiled = CompiledPath(task, lk_model, data[:2])
                for b in size.batches:
                    cell = measure_cell(
                        model, task, width, lk_model, hand, _batches(data, b), size, dev, compiled
                    )
                    compile_total += cell.get("compile_s", 0.0)
                    cells.append(cell)
                    r = cell["ratio"]
                    msg = (
                        f"  {model:>4} {task:<10} {width:<5} batch {b:>3}: "
                        f"{r[0]:.3f} ({r[1]:.2f}–{r[2]:.2f}), {cell['overhead_us']:+.0f} µs"
                    )
                    if "compiled_ratio" in cell:
                        msg += (
                            f"; compiled {cell['compiled_ratio'][0]:.3f}"
                            f" ({cell['compile_s']:.1f} s to compile)"
                        )
                    if "compile_error" in cell:
                        msg += f"; compile failed: {cell['compile_error']}"
                    log(msg)
                missed = [
                    c
                    for c in cells
                    if (c["model"], c["task"], c["width"]) == (model, task, width)
                    and c["ratio"][2] > GOALS[task]
                ]
                if missed and size.profile:
                    explained.append(_explain(model, task, width, hidden, size, dev))
    full = []
    for T, B in size.full_t:
        torch.manual_seed(0)
        m = lk.load_model(
            "ddpm",
            data_shape=(size.ddpm_dim,),
            num_timesteps=T,
            network="mlp",
            hidden=size.widths[-1][1],
        ).to(dev)
        m.eval()
        x = _data("ddpm", size, B, dev, seed=2)
        p = full_bound.measure_point(
            m, x, pairs_per_call=8192, rounds=size.full_t_rounds, clock=cpu_clock(dev)[0]
        )
        full.append(p)
        log(f"  ddpm full-T T={T} batch {B}: efficiency {p['efficiency']:.2f}")
    return {
        "size": attrs.asdict(size),
        "device": device,
        "clock": cpu_clock(dev)[1],
        "cells": cells,
        "explained": explained,
        "full_t": full,
        "compile_total_s": compile_total,
    }
