"""U-Net training throughput: latentkit's training step against a hand-written one.

The diffusion models' image network (the DDPM plugin's ``EpsUNet``, the one the ``vdm``
model wraps) trained on 28×28 8-bit images, in images per second, side by side:

* **latentkit**: the step of :class:`latentkit.Trainer` — its objective module (the model's
  default objective, as the trainer builds it; ``torch.compile``-d by the trainer itself
  with ``TrainConfig(compile=True)``) and its Adam: ``objective(x, step).mean()``,
  ``zero_grad``, ``backward``, ``step``;
* **hand-written**: the same network (a copy of the same module, weights included) and the
  same loss written plainly in a few tensor lines (:class:`HandVDM`, :class:`HandDDPM`),
  compiled with ``torch.compile`` of the loss module as the trainer compiles its own, and
  the same Adam step.

Legs: ``vdm`` (the continuous-time −ELBO_∞, objective ``continuous``), ``ddpm`` (the
one-timestep −ELBO, objective ``elbo``) and, on request, ``ddpm-simple`` (L_simple). Each
(leg, batch size) is one interleaved group (``bench/timing.py``): every contender — eager
and compiled, latentkit and hand-written — runs a block of steps per round, the order
reversed every other round; images/s is the batch over the median per-step wall time, with
a distribution-free 95% CI of that median; the ratio is the median of the paired per-round
ratios of step times. Compile time is what the first step of a compiled contender costs
beyond the first step of its eager twin (building the trainer included on both sides), from
an empty inductor cache (a temporary folder per run), as a first training run pays it.

Before timing, each leg's hand-written loss is checked against latentkit's on the same
weights (perturbed so the U-Net's zero-initialised last layer does not hide the network)
and the same draws, in float64, value and gradient (``check_leg``;
``tests/test_bench_unet.py`` runs the same check).

    python -m bench.unet_throughput           # docs/benchmarks_unet.md, bench/unet_results.json
    python -m bench.unet_throughput --quick   # seconds; a scratch folder
    python -m bench.unet_throughput --compile off --legs vdm --batches 32

On a 2-core CPU a cold compile of one U-Net training step takes minutes, and each (leg,
batch size) compiles two afresh (latentkit's and the hand-written, a forward and a backward
graph each), so the default run is long; ``--compile off`` measures the eager steps alone.
"""

from __future__ import annotations

import os

# Idle OpenMP threads sleep instead of spinning (see bench/run.py); before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import copy
import itertools
import json
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import attrs
import torch
from rich.console import Console
from rich.table import Table
from torch import Tensor, nn

import latentkit as lk
from bench.baselines import discretized_gaussian_log_likelihood, gaussian_kl, linear_schedule
from bench.timing import Timing, device_string, interleaved, load_average, median_ci, ratio

__all__ = [
    "LEGS",
    "QUICK",
    "HandDDPM",
    "HandVDM",
    "UNetSize",
    "check_leg",
    "main",
    "markdown",
    "run",
]

ROOT = Path(__file__).resolve().parents[1]
MNIST_TRAIN = 60_000  # images in MNIST's training set: what an hour buys, in epochs

LEGS: dict[str, tuple[str, dict, str]] = {
    "vdm": ("vdm", {}, "continuous-time −ELBO_∞ (objective `continuous`)"),
    "ddpm": (
        "ddpm",
        {},
        "one-timestep −ELBO (objective `elbo`: two U-Net calls per image, the decoder term "
        "at t = 1 and one KL term)",
    ),
    "ddpm-simple": ("ddpm", {"loss": "simple"}, "L_simple (objective `simple`)"),
}
"""Leg name → (model, fields beyond the U-Net's, the loss the trainer minimises)."""


@attrs.frozen
class UNetSize:
    """What one run measures. ``rounds`` ≥ 6 makes the order-statistics CI a 95% one."""

    image: tuple[int, int, int] = (1, 28, 28)
    channels: int = 32
    channel_mult: tuple[int, ...] = (1, 2)
    batches: tuple[int, ...] = (32, 128)
    legs: tuple[str, ...] = ("vdm", "ddpm")
    compile: bool = True
    rounds: int = 7
    block_seconds: float = 1.0  # each contender's block of steps per round lasts about this
    examples: int = 512  # the trainer's data set (synthetic 8-bit images)
    check_batch: int = 4


QUICK = UNetSize(
    image=(1, 8, 8),
    channels=8,
    batches=(4,),
    compile=False,
    rounds=3,
    block_seconds=0.01,
    examples=16,
    check_batch=2,
)


# -- the hand-written steps ----------------------------------------------------------------


def _refuse(model_name: str, field: str, value, supported) -> None:
    if value != supported:
        raise lk.ConfigError(
            f"the hand-written {model_name} step is written for {field}={supported!r}; "
            f"the model has {field}={value!r}"
        )


def _per_example(t: Tensor, like: Tensor) -> Tensor:
    """``[batch]`` → ``[batch, 1, …, 1]``, to broadcast against ``like``."""
    return t.reshape(-1, *([1] * (like.ndim - 1)))


class HandVDM(nn.Module):
    """The continuous-time VDM loss written plainly, per example (nats)::

        t_i = (u + i/n) mod 1,  u ~ U(0, 1)             (low-discrepancy, each t_i ~ U(0, 1))
        ᾱ² = sigmoid(−γ), β̄² = sigmoid(γ)
        −log p(x | z_0),  z_0 = ᾱ_0 x + β̄_0 ε_0,  p(x | z_0) = N(z_0/ᾱ_0, β̄_0²/ᾱ_0²) on 8-bit bins
        + ½ Σ (ᾱ_1² x² + β̄_1² − 1 − log β̄_1²)          (KL(q(z_1 | x) ‖ N(0, I)))
        + ½ γ'(t) ‖ε − ε̂(ᾱ_t x + β̄_t ε, t)‖²

    ``net`` and ``log_snr`` (γ and γ') are copies of the model's own modules, so whatever the
    network is (Fourier-feature inputs, γ-conditioning), it is the same one.
    """

    def __init__(self, net: nn.Module, log_snr: nn.Module):
        super().__init__()
        self.net = net
        self.log_snr = log_snr

    @classmethod
    def from_latentkit(cls, model: lk.LatentModel) -> HandVDM:
        cfg = model.config
        _refuse("vdm", "decoder", cfg.decoder, "discretized")
        _refuse("vdm", "levels", getattr(cfg, "levels", 256), 256)
        _refuse("vdm", "t_sampler", cfg.t_sampler, "low-discrepancy")
        _refuse("vdm", "loss", cfg.loss, "continuous")
        if cfg.schedule == "learned":  # its interior gets another gradient than the bound's
            _refuse("vdm", "schedule", cfg.schedule, "linear")
        core = copy.deepcopy(model.core)  # one copy: the network's reference to γ stays shared
        return cls(core.net, core.log_snr)

    def eps(self, z: Tensor, t: Tensor, gamma: Tensor) -> Tensor:
        if getattr(self.net, "takes_gamma", False):
            return self.net(z, t, gamma)
        return self.net(z, t)

    def forward(self, x: Tensor) -> Tensor:
        n = x.shape[0]
        u = torch.rand((), dtype=x.dtype, device=x.device)
        t = torch.remainder(u + torch.arange(n, dtype=x.dtype, device=x.device) / n, 1.0)
        g0, _ = self.log_snr(x.new_zeros(()))
        g1, _ = self.log_snr(x.new_ones(()))
        alpha0, sigma0 = torch.sigmoid(-g0).sqrt(), torch.sigmoid(g0).sqrt()
        z0 = alpha0 * x + sigma0 * torch.randn_like(x)
        recon = discretized_gaussian_log_likelihood(
            x.flatten(1), (z0 / alpha0).flatten(1), sigma0 / alpha0
        )
        var1 = torch.sigmoid(g1)
        prior = 0.5 * (torch.sigmoid(-g1) * x**2 + var1 - 1 - var1.log()).flatten(1).sum(-1)
        g, dg = self.log_snr(t)
        noise = torch.randn_like(x)
        gx = _per_example(g, x)
        z_t = torch.sigmoid(-gx).sqrt() * x + torch.sigmoid(gx).sqrt() * noise
        diffusion = 0.5 * dg * (noise - self.eps(z_t, t, g)).pow(2).flatten(1).sum(-1)
        return diffusion + prior - recon


class HandDDPM(nn.Module):
    """The DDPM's training loss on images written plainly, per example (nats), in the
    notation q(x_t | x_{t−1}) = N(α_t x_{t−1}, β_t² I), σ_t² = β_t²:

    * ``elbo``: −[log p(x_0 | x_1) − KL(q(x_T | x_0) ‖ N(0, I)) − (T − 1) KL(q(x_{t−1} | x_t,
      x_0) ‖ p(x_{t−1} | x_t))], t ~ U{2..T} (``bench/baselines.py``'s DDPM on images);
    * ``simple``: ‖ε − ε_θ(ᾱ_t x_0 + β̄_t ε, t)‖², t ~ U{1..T}.

    ``net`` is a copy of the model's U-Net; the schedule's rows are built in float64 and
    cast once to the network's dtype.
    """

    def __init__(self, net: nn.Module, T: int, objective: str):
        super().__init__()
        self.net, self.T, self.objective = net, T, objective
        dtype = next(net.parameters()).dtype
        for name, value in linear_schedule(T).items():
            self.register_buffer(name, value.to(dtype), persistent=False)

    @classmethod
    def from_latentkit(cls, model: lk.LatentModel) -> HandDDPM:
        cfg = model.config
        _refuse("ddpm", "schedule", cfg.schedule, "linear")
        _refuse("ddpm", "reverse_variance", cfg.reverse_variance, "beta")
        _refuse("ddpm", "decoder", cfg.decoder, "discretized")
        _refuse("ddpm", "timestep_sampler", cfg.timestep_sampler, "uniform")
        if cfg.loss not in ("elbo", "simple"):
            _refuse("ddpm", "loss", cfg.loss, "elbo")
        if cfg.num_timesteps < 2:
            raise lk.ConfigError("the hand-written ddpm step needs num_timesteps ≥ 2")
        return cls(copy.deepcopy(model.generative.net), cfg.num_timesteps, cfg.loss)

    def _c(self, name: str, t: Tensor, like: Tensor) -> Tensor:
        return _per_example(getattr(self, name)[t], like)

    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        return self._c("alpha_bar", t, x0) * x0 + self._c("beta_bar", t, x0) * noise

    def eps(self, x_t: Tensor, t: Tensor) -> Tensor:
        return self.net(x_t, t)[:, 0]

    def p_mean(self, x_t: Tensor, t: Tensor) -> Tensor:
        """μ_θ(x_t, t) = (x_t − β_t²/β̄_t · ε_θ(x_t, t)) / α_t."""
        coef = self._c("beta_sq", t, x_t) / self._c("beta_bar", t, x_t)
        return (x_t - coef * self.eps(x_t, t)) / self._c("alpha", t, x_t)

    def forward(self, x0: Tensor) -> Tensor:
        return self.elbo_loss(x0) if self.objective == "elbo" else self.simple_loss(x0)

    def simple_loss(self, x0: Tensor) -> Tensor:
        t = torch.randint(1, self.T + 1, (x0.shape[0],), device=x0.device)
        noise = torch.randn_like(x0)
        return (noise - self.eps(self.q_sample(x0, t, noise), t)).pow(2).flatten(1).sum(-1)

    def elbo_loss(self, x0: Tensor) -> Tensor:
        n = x0.shape[0]
        one = torch.ones(n, dtype=torch.long, device=x0.device)
        x1 = self.q_sample(x0, one, torch.randn_like(x0))
        recon = discretized_gaussian_log_likelihood(
            x0.flatten(1), self.p_mean(x1, one).flatten(1), self.beta_sq[1].sqrt()
        )
        mu_T, std_T = self.alpha_bar[self.T] * x0, self.beta_bar[self.T]
        prior = (0.5 * (mu_T**2 + std_T**2 - 1) - std_T.log()).flatten(1).sum(-1)
        t = torch.randint(2, self.T + 1, (n,), device=x0.device)
        x_t = self.q_sample(x0, t, torch.randn_like(x0))
        mu_q = self._c("coef_x0", t, x0) * x0 + self._c("coef_xt", t, x0) * x_t
        std_q = self._c("beta_tilde", t, x0).expand_as(x0)
        std_p = self._c("beta_sq", t, x0).sqrt().expand_as(x0)
        kl = gaussian_kl(
            mu_q.flatten(1), std_q.flatten(1), self.p_mean(x_t, t).flatten(1), std_p.flatten(1)
        )
        return -(recon - prior - (self.T - 1) * kl)


# -- models, data, contenders --------------------------------------------------------------


def build_model(leg: str, size: UNetSize) -> lk.LatentModel:
    """The leg's latentkit model: its U-Net at ``size``, every other field at its default."""
    name, extra, _ = LEGS[leg]
    return lk.load_model(
        name,
        data_shape=size.image,
        network="unet",
        channels=size.channels,
        channel_mult=size.channel_mult,
        **extra,
    )


def hand_written(model: lk.LatentModel) -> HandVDM | HandDDPM:
    """The hand-written loss module of ``model``'s family, on a copy of its network."""
    return (
        HandVDM.from_latentkit(model) if hasattr(model, "core") else HandDDPM.from_latentkit(model)
    )


def images(n: int, shape: tuple[int, ...], seed: int, dtype=torch.float32) -> Tensor:
    """Synthetic 8-bit images on the grid 2k/255 − 1 (timing does not depend on the values)."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 256, (n, *shape), generator=g).to(dtype) * 2 / 255 - 1).contiguous()


def trainer_of(model: lk.LatentModel, data: Tensor, batch: int, compile: bool) -> lk.Trainer:
    """The trainer whose objective and optimizer the latentkit contender steps."""
    cfg = lk.TrainConfig(batch_size=batch, compile=compile, progress=False)
    with warnings.catch_warnings():
        # A model Dynamo cannot trace: the trainer warns and trains eagerly (reported below).
        warnings.simplefilter("ignore")
        return lk.Trainer(model, data, cfg, console=Console(quiet=True))


def _step(
    loss_fn: Callable[[Tensor], Tensor], opt: torch.optim.Optimizer, batches: list[Tensor]
) -> Callable[[], None]:
    it = itertools.cycle(batches)

    def step() -> None:
        loss = loss_fn(next(it)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def latentkit_step(
    model: lk.LatentModel, data: Tensor, batches: list[Tensor], compile: bool
) -> tuple[Callable[[], None], bool]:
    """The trainer's step on ``batches`` (and whether its objective is compiled)."""
    trainer = trainer_of(model, data, batches[0].shape[0], compile)
    step_t = torch.zeros((), dtype=torch.long)
    objective = trainer.objective
    compiled = isinstance(objective, torch._dynamo.eval_frame.OptimizedModule)
    return _step(lambda x: objective(x, step_t), trainer.optimizer, batches), compiled


def hand_step(hand: nn.Module, batches: list[Tensor], compile: bool) -> Callable[[], None]:
    """The hand-written step: its loss module (compiled as the trainer compiles its own) and
    Adam with the trainer's defaults."""
    cfg = lk.TrainConfig()
    opt = torch.optim.Adam(hand.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    return _step(torch.compile(hand) if compile else hand, opt, batches)


# -- the check: the same loss on the same draws ---------------------------------------------


def _perturbed(model: lk.LatentModel, seed: int) -> lk.LatentModel:
    """A float64 copy with every weight moved by N(0, 0.1²) noise: the U-Net's last layer
    starts at zero (ε̂ = 0 whatever its input), which would hide the network from the check."""
    m = copy.deepcopy(model).double()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return m


def check_leg(leg: str, size: UNetSize, seed: int = 0) -> dict:
    """latentkit's training loss (the trainer's objective) against the hand-written one on
    the same perturbed float64 weights and the same seed: per-example values and the
    gradient of the batch mean, max |Δ| relative to the largest |value|."""
    torch.manual_seed(seed)
    model = _perturbed(build_model(leg, size), seed + 1)
    hand = hand_written(model)
    x = images(size.check_batch, size.image, seed + 2, torch.float64)
    objective = trainer_of(model, x, size.check_batch, compile=False).objective
    step_t = torch.zeros((), dtype=torch.long)
    torch.manual_seed(seed + 3)
    mine = objective(x, step_t)
    torch.manual_seed(seed + 3)
    theirs = hand(x)
    params = [p for p in model.parameters() if p.requires_grad]
    g_mine = torch.autograd.grad(mine.mean(), params)
    g_theirs = torch.autograd.grad(theirs.mean(), list(hand.parameters()))
    if len(g_mine) != len(g_theirs) or any(a.shape != b.shape for a, b in zip(g_mine, g_theirs)):
        raise AssertionError(f"{leg}: the hand-written module's parameters are not the model's")
    mine, theirs = mine.detach(), theirs.detach()
    g_scale = max(float(a.abs().max()) for a in g_mine)
    g_diff = max(float((a - b).abs().max()) for a, b in zip(g_mine, g_theirs))
    scale = float(mine.abs().max())
    diff = float((mine - theirs).abs().max())
    return {
        "leg": leg,
        "latentkit": mine.tolist(),
        "hand": theirs.tolist(),
        "max_abs_diff": diff,
        "max_rel_diff": diff / scale,
        "grad_rel_diff": g_diff / g_scale,
        "ok": diff <= CHECK_RTOL * scale and g_diff <= CHECK_RTOL * g_scale,
    }


CHECK_RTOL = 1e-11
"""float64 round-off (ε = 2.2e-16) of two orders of the same sums: the DDPM's sampled KL is
multiplied by T − 1 = 999 and is a log-ratio of nearly equal variances (a few digits lost),
its schedule rows come from two float64 derivations; seen ≤ 7e-14 of the largest loss over
seeds and sizes (1×8×8, 1×28×28), the VDM's and L_simple's ≤ 4e-16."""


# -- timing ----------------------------------------------------------------------------------


def _with_cpu_time(fn: Callable[[], None], log: list[float]) -> Callable[[], None]:
    """``fn``, appending the process CPU seconds each call takes to ``log``."""

    def call() -> None:
        c0 = time.process_time()
        fn()
        log.append(time.process_time() - c0)

    return call


def _first_step(build: Callable[[], Callable[[], None]]) -> tuple[Callable[[], None], float]:
    """Build a contender and take its first step: the contender and the seconds both took."""
    t0 = time.perf_counter()
    fn = build()
    fn()
    return fn, time.perf_counter() - t0


def _inductor_counts() -> dict[str, int]:
    from torch._dynamo.utils import counters

    c = counters["inductor"]
    return {"cache_hits": int(c["fxgraph_cache_hit"]), "cache_misses": int(c["fxgraph_cache_miss"])}


def measure(leg: str, batch: int, size: UNetSize, log: Callable[[str], None]) -> dict:
    """One (leg, batch size) group: every contender on its own copy of the same initial
    weights and the same 8 batches, timed in interleaved rounds."""
    torch.manual_seed(0)
    model = build_model(leg, size)
    data = images(max(size.examples, batch), size.image, seed=1)
    g = torch.Generator().manual_seed(1234)
    batches = [data[torch.randperm(data.shape[0], generator=g)[:batch]] for _ in range(8)]
    fns: dict[str, Callable[[], None]] = {}
    first: dict[str, float] = {}
    fns["latentkit eager"], first["latentkit eager"] = _first_step(
        lambda: latentkit_step(copy.deepcopy(model), data, batches, False)[0]
    )
    fns["hand-written eager"], first["hand-written eager"] = _first_step(
        lambda: hand_step(hand_written(model), batches, False)
    )
    out: dict = {"leg": leg, "batch": batch}
    if size.compile:
        torch._dynamo.reset()  # a fresh compile, as in a new training process
        before = _inductor_counts()
        traced: list[bool] = []

        def lk_compiled() -> Callable[[], None]:
            fn, ok = latentkit_step(copy.deepcopy(model), data, batches, True)
            traced.append(ok)
            return fn

        fns["latentkit compiled"], first["latentkit compiled"] = _first_step(lk_compiled)
        fns["hand-written compiled"], first["hand-written compiled"] = _first_step(
            lambda: hand_step(hand_written(model), batches, True)
        )
        after = _inductor_counts()
        out["compile_s"] = {
            side: max(first[f"{side} compiled"] - first[f"{side} eager"], 0.0)
            for side in ("latentkit", "hand-written")
        }
        out["inductor"] = {k: after[k] - before[k] for k in after}
        if not traced[0]:
            out["compile_error"] = "the trainer could not compile the objective: it ran eagerly"
    worst = 0.0
    for fn in fns.values():  # second step: warm; it sets the calls per block
        t0 = time.perf_counter()
        fn()
        worst = max(worst, time.perf_counter() - t0)
    inner = max(1, round(size.block_seconds / max(worst, 1e-6)))
    cpu: dict[str, list[float]] = {n: [] for n in fns}
    timed = {n: _with_cpu_time(fn, cpu[n]) for n, fn in fns.items()}
    t = interleaved(timed, rounds=size.rounds, inner=inner, warmup=0)
    out.update(summarise(t, cpu, batch, inner))
    out["first_step_s"] = first
    meds = ", ".join(f"{n} {c['images_per_s']:.1f}" for n, c in out["contenders"].items())
    log(f"  {leg} batch {batch}: images/s {meds} ({size.rounds} rounds × {inner} steps)")
    return out


def summarise(t: dict[str, Timing], cpu: dict[str, list[float]], batch: int, inner: int) -> dict:
    """Images/s (median over rounds, 95% CI), CPU use, and the paired ratios."""
    contenders = {}
    for name, timing in t.items():
        ips = [batch / s for s in timing.per_call]
        per_round = [sum(cpu[name][i : i + inner]) / inner for i in range(0, len(cpu[name]), inner)]
        contenders[name] = {
            "images_per_s": statistics.median(ips),
            "ci": median_ci(ips),
            "step_s": timing.median,
            "per_call_s": list(timing.per_call),
            "cpu_per_call_s": per_round,
            "cores_used": statistics.median(c / w for c, w in zip(per_round, timing.per_call)),
        }
    ratios = {}
    for mode in ("eager", "compiled"):
        a, b = f"latentkit {mode}", f"hand-written {mode}"
        if a in t and b in t:
            ratios[mode] = ratio(t[a], t[b])
    return {
        "rounds": len(next(iter(t.values())).per_call),
        "steps_per_round": inner,
        "contenders": contenders,
        "ratio": ratios,
    }


def warm_compiler() -> None:
    """Compile a two-operator function and its backward, untimed: a process's first compile
    also pays inductor's own start-up (its imports, the C++ toolchain probe, the worker
    pool), which would otherwise land on whichever contender compiles first."""
    v = torch.ones(4, requires_grad=True)
    torch.compile(lambda a: (a.sin() * a).sum())(v).backward()


def run(size: UNetSize, log: Callable[[str], None]) -> dict:
    """The loss checks, then every (leg, batch) group; a JSON-ready dict."""
    if size.compile:
        warm_compiler()
    checks = []
    for leg in size.legs:
        c = check_leg(leg, size)
        checks.append(c)
        log(
            f"  {'ok ' if c['ok'] else 'BAD'} {leg}: loss max |Δ|/max |loss| "
            f"{c['max_rel_diff']:.1e}, gradient {c['grad_rel_diff']:.1e}"
        )
    cells = [measure(leg, b, size, log) for leg in size.legs for b in size.batches]
    return {"checks": checks, "cells": cells, "size": attrs.asdict(size)}


# -- the report --------------------------------------------------------------------------------


def _ips(c: dict) -> str:
    return f"{c['images_per_s']:.1f} ({c['ci'][0]:.1f}–{c['ci'][1]:.1f})"


def rows(result: dict) -> list[dict]:
    """One row per (leg, batch, mode)."""
    out = []
    for cell in result["cells"]:
        for mode in ("eager", "compiled"):
            a = cell["contenders"].get(f"latentkit {mode}")
            b = cell["contenders"].get(f"hand-written {mode}")
            if a is None or b is None:
                continue
            r, lo, hi = cell["ratio"][mode]
            compile_s = cell.get("compile_s", {}) if mode == "compiled" else {}
            out.append(
                {
                    "leg": cell["leg"],
                    "batch": cell["batch"],
                    "mode": mode,
                    "latentkit": _ips(a),
                    "hand": _ips(b),
                    "ratio": f"{r:.3f} ({lo:.2f}–{hi:.2f})",
                    "lk_hour": f"{a['images_per_s'] * 3600:,.0f}",
                    "hand_hour": f"{b['images_per_s'] * 3600:,.0f}",
                    "compile": " / ".join(
                        f"{compile_s[s]:.0f}" for s in ("latentkit", "hand-written")
                    )
                    if compile_s
                    else "—",
                    "cores": f"{a['cores_used']:.2f} / {b['cores_used']:.2f}",
                    "rounds": f"{cell['rounds']} × {cell['steps_per_round']}",
                }
            )
    return out


COLUMNS = (
    ("leg", "leg", "leg"),
    ("batch", "batch", "batch"),
    ("mode", "mode", "mode"),
    ("latentkit", "latentkit images/s (95% CI)", "latentkit img/s"),
    ("hand", "hand-written images/s (95% CI)", "hand img/s"),
    ("ratio", "step time latentkit ÷ hand-written (95% CI)", "lk ÷ hand time"),
    ("lk_hour", "latentkit images/hour", "lk img/hour"),
    ("hand_hour", "hand-written images/hour", "hand img/hour"),
    ("compile", "compile s latentkit / hand", "compile s"),
    ("cores", "cores used latentkit / hand", "cores"),
    ("rounds", "rounds × steps", "rounds"),
)
"""(key, Markdown title, terminal title) of the throughput table."""


def budget_lines(result: dict) -> list[str]:
    """What an hour of this machine buys: images/s × 3600 for latentkit's fastest mode."""
    lines = []
    for cell in result["cells"]:
        best = max(
            (n for n in cell["contenders"] if n.startswith("latentkit")),
            key=lambda n: cell["contenders"][n]["images_per_s"],
        )
        ips = cell["contenders"][best]["images_per_s"]
        lines.append(
            f"{cell['leg']}, batch {cell['batch']}: {ips:.1f} images/s × 3600 = "
            f"{ips * 3600:,.0f} images per hour ({ips * 3600 / MNIST_TRAIN:.1f} epochs of "
            f"MNIST's {MNIST_TRAIN:,} training images), latentkit {best.split()[1]}"
        )
    return lines


def print_table(console: Console, result: dict) -> None:
    t = Table(title="U-Net training throughput: latentkit vs hand-written (median of rounds)")
    for key, _, short in COLUMNS:
        t.add_column(short, justify="left" if key in ("leg", "mode") else "right")
    for r in rows(result):
        t.add_row(*(str(r[k]) for k, _, _ in COLUMNS))
    console.print(t)
    console.print("[bold]What an hour of this CPU buys[/] (images/s × 3600):")
    for line in budget_lines(result):
        console.print(f"  {line}")


def markdown(result: dict) -> str:
    """``docs/benchmarks_unet.md`` from a run's result."""
    size = result["size"]
    C, H, W = size["image"]
    L: list[str] = []
    w = L.append
    w("# Benchmarks: U-Net training throughput\n")
    w(
        "latentkit's training step of the diffusion models' U-Net against a hand-written "
        "minimal PyTorch step of the same network and loss (`bench/unet_throughput.py`). "
        "Generated by the command below; do not edit by hand. The other benchmarks are in "
        "[benchmarks.md](benchmarks.md).\n"
    )
    w("```")
    w(result["command"])
    w("```\n")
    w(f"- **Device:** {result['device']}")
    w(
        f"- **Load average** (1, 5, 15 min) at start: {result['load_start']}; at end: "
        f"{result['load_end']}. The machine may have been shared: the *cores used* column "
        "says how much CPU the process got per step (process CPU time ÷ wall time; at most "
        "the torch thread count). Ratios are interleaved to cancel noise; absolute rates are "
        "for this machine at this load."
    )
    w(f"- **Versions:** {result['versions']}")
    w(f"- **Wall time of the whole command:** {result['wall_s'] / 60:.1f} min.")
    w(
        f"- **Network:** `EpsUNet`, {C}×{H}×{W} 8-bit images (synthetic, on the grid "
        f"2k/255 − 1), channels {size['channels']}, channel_mult "
        f"{tuple(size['channel_mult'])}; every other model field at its default "
        f"({result['model_fields']}).\n"
    )
    w("## Method\n")
    w(
        "Each (model, batch size) is one group of contenders timed in the same run: after "
        "two untimed steps each, rounds in which every contender runs a block of steps back "
        "to back, the order reversed every other round. A contender is a full training "
        "step: loss of one batch, `.mean()`, `zero_grad`, `backward`, `Adam.step` (the "
        "trainer's defaults, lr 1e-3). **latentkit** steps the objective module that "
        "`latentkit.Trainer` builds (the model's default objective; with "
        "`TrainConfig(compile=True)` the trainer's own `torch.compile` of it) and the "
        "trainer's Adam; the trainer's loop adds a per-step health flag and the learning-"
        "rate schedule, not timed here. **hand-written** is a copy of the same U-Net module "
        "(same weights) with the loss written in a few tensor lines (`HandVDM`, `HandDDPM`), "
        "compiled the same way (`torch.compile` of the loss module, `.mean()` outside). "
        "Images/s is the batch ÷ the median per-step wall time over rounds, with a "
        "distribution-free 95% CI of the median (order statistics); the ratio is the median "
        "of the paired per-round ratios of step times (> 1: latentkit slower). Compile time "
        "is the first compiled step (trainer construction included) minus the first eager "
        "one, with an empty inductor cache (the compiler's own start-up paid beforehand, "
        "untimed)."
    )
    inductor = [c["inductor"] for c in result["cells"] if "inductor" in c]
    if inductor:
        hits = sum(i["cache_hits"] for i in inductor)
        misses = sum(i["cache_misses"] for i in inductor)
        w(f" Inductor's graph cache in this run: {misses} misses, {hits} hits.")
    w("")
    w("## Same loss on the same draws\n")
    w(
        "Before timing: latentkit's loss (the trainer's objective) and the hand-written one "
        f"on the same float64 weights (perturbed by N(0, 0.1²), so the U-Net's zero-"
        f"initialised last layer does not hide the network), the same seed, a batch of "
        f"{size['check_batch']}; per-example values and the gradient of the batch mean must "
        f"agree to float64 round-off (max |Δ| ≤ {CHECK_RTOL:g} × max |value|). "
        "`tests/test_bench_unet.py` runs the same check.\n"
    )
    w(
        "| leg | loss | max \\|Δ\\| ÷ max \\|loss\\| "
        "| gradient max \\|Δ\\| ÷ max \\|grad\\| | agrees |"
    )
    w("|---|---|---:|---:|:-:|")
    for c in result["checks"]:
        w(
            f"| {c['leg']} | {LEGS[c['leg']][2]} | {c['max_rel_diff']:.1e} | "
            f"{c['grad_rel_diff']:.1e} | {'✓' if c['ok'] else '✗'} |"
        )
    w("")
    w("## Throughput\n")
    w("| " + " | ".join(title for _, title, _ in COLUMNS) + " |")
    w("|" + "|".join(":-" if k in ("leg", "mode") else "-:" for k, _, _ in COLUMNS) + "|")
    for r in rows(result):
        w("| " + " | ".join(str(r[k]) for k, _, _ in COLUMNS) + " |")
    errors = [
        f"{c['leg']} batch {c['batch']}: {c['compile_error']}"
        for c in result["cells"]
        if "compile_error" in c
    ]
    for e in errors:
        w(f"\n**{e}.**")
    if not size["compile"]:
        w(
            "\nCompiled steps were not measured in this run (`--compile off`); on a 2-core CPU "
            "each cold compile of a training graph takes minutes."
        )
    w("\n## What an hour of this CPU buys\n")
    w(
        "latentkit's training images per hour on this machine (images/s × 3600"
        + (", the faster of its eager and compiled steps" if size["compile"] else "")
        + "), with the threads and load above:\n"
    )
    for line in budget_lines(result):
        w(f"- {line}")
    w("")
    return "\n".join(L)


# -- the command --------------------------------------------------------------------------------


def _model_fields(size: UNetSize) -> str:
    out = []
    for leg in size.legs:
        cfg = build_model(leg, size).config
        skip = {"data_shape", "network", "channels", "channel_mult", "hidden", "activation"}
        fields = ", ".join(
            f"{a.name}={getattr(cfg, a.name)!r}"
            for a in attrs.fields(type(cfg))
            if a.name not in skip
        )
        out.append(f"{leg}: {fields}")
    return "; ".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a tiny network (seconds; CI)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    ap.add_argument("--legs", default=None, help=f"comma-separated, of {', '.join(LEGS)}")
    ap.add_argument("--batches", default=None, help="comma-separated batch sizes (default 32,128)")
    ap.add_argument(
        "--compile",
        choices=("auto", "on", "off"),
        default="auto",
        help="time the compiled steps too (auto: on, off with --quick)",
    )
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 7)")
    ap.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder for benchmarks_unet.md (default: docs/, or a scratch folder with --quick)",
    )
    ap.add_argument("--json", type=Path, default=None, help="raw results (default: beside it)")
    ap.add_argument(
        "--render",
        type=Path,
        default=None,
        metavar="JSON",
        help="measure nothing: print the table and write OUT/benchmarks_unet.md from a results "
        "JSON this command wrote",
    )
    args = ap.parse_args(argv)
    if args.render:
        result = json.loads(args.render.read_text(encoding="utf-8"))
        out = args.out or ROOT / "docs"
        print_table(Console(), result)
        out.mkdir(parents=True, exist_ok=True)
        (out / "benchmarks_unet.md").write_text(markdown(result), encoding="utf-8")
        return 0 if all(c["ok"] for c in result["checks"]) else 1
    size = QUICK if args.quick else UNetSize()
    try:
        if args.legs:
            legs = tuple(args.legs.split(","))
            unknown = [leg for leg in legs if leg not in LEGS]
            if unknown:
                raise lk.ConfigError(f"--legs: unknown {unknown}; choose from {list(LEGS)}")
            size = attrs.evolve(size, legs=legs)
        if args.batches:
            size = attrs.evolve(size, batches=tuple(int(b) for b in args.batches.split(",")))
        if args.compile != "auto":
            size = attrs.evolve(size, compile=args.compile == "on")
        if args.rounds:
            size = attrs.evolve(size, rounds=args.rounds)
        if args.threads < 1 or min(size.batches) < 1 or size.rounds < 1:
            raise lk.ConfigError("--threads, --batches and --rounds must be ≥ 1")
    except (ValueError, lk.ConfigError) as exc:
        ap.error(str(exc))
    torch.set_num_threads(args.threads)
    out = args.out or (Path("/tmp/latentkit-bench-quick") if args.quick else ROOT / "docs")
    json_path = args.json or (
        ROOT / "bench" / "unet_results.json" if out == ROOT / "docs" else out / "unet.json"
    )
    console = Console()
    log = console.print
    t0, load_start = time.perf_counter(), load_average()
    dev = device_string()
    log(f"[bold]U-Net training throughput[/] on {dev}; load average {load_start}")
    previous = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    with tempfile.TemporaryDirectory(prefix="latentkit-inductor-") as cache:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache  # an empty cache: a cold compile
        try:
            result = run(size, log)
        finally:
            if previous is None:
                del os.environ["TORCHINDUCTOR_CACHE_DIR"]
            else:
                os.environ["TORCHINDUCTOR_CACHE_DIR"] = previous
    result.update(
        command="python -m bench.unet_throughput"
        + "".join(
            f" {a}"
            for a in (
                *(["--quick"] if args.quick else []),
                f"--threads {args.threads}",
                *([f"--legs {args.legs}"] if args.legs else []),
                *([f"--batches {args.batches}"] if args.batches else []),
                *([f"--compile {args.compile}"] if args.compile != "auto" else []),
                *([f"--rounds {args.rounds}"] if args.rounds else []),
            )
        ),
        when=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        device=dev,
        load_start=load_start,
        load_end=load_average(),
        versions=f"latentkit {lk.__version__}, torch {torch.__version__}, "
        f"Python {platform.python_version()}",
        model_fields=_model_fields(size),
        wall_s=time.perf_counter() - t0,
    )
    print_table(console, result)
    out.mkdir(parents=True, exist_ok=True)
    (out / "benchmarks_unet.md").write_text(markdown(result), encoding="utf-8")
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(result, indent=1, default=str), encoding="utf-8")
    log(f"wrote {out / 'benchmarks_unet.md'} and {json_path} in {result['wall_s'] / 60:.1f} min")
    return 0 if all(c["ok"] for c in result["checks"]) else 1


if __name__ == "__main__":
    sys.exit(main())
