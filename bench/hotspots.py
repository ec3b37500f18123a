"""Where latentkit's extra time goes, measured four ways for a pair that misses its target.

* the gap at batch 1 against the gap at the benchmark's batch (interleaved): a gap that
  does not grow with the batch is a fixed per-call cost — Python and small operators —
  not extra work per example;
* the aten operators one call dispatches (torch.profiler), and what one trivial operator
  costs on this machine;
* cProfile self-time per call grouped by where it is spent. cProfile times every Python
  call, so pure-Python layers (torch.distributions, latentkit, einops) look several times
  dearer under it than they are: the groups locate the overhead, the interleaved timings
  size it;
* for the VAE, one ELBO evaluation built up step by step from plain tensors to latentkit.
"""

from __future__ import annotations

import cProfile
import pstats
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[1]) + "/"

__all__ = ["GROUPS", "dispatch_cost_us", "group_of", "op_count", "profile_calls", "vae_ladder"]

GROUPS = (
    "latentkit core",
    "latentkit plugin",
    "torch.distributions",
    "einops",
    "attrs",
    "torch.nn / optim (Python)",
    "bench (hand-written)",
    "torch ops and autograd (C++)",
    "other Python",
)


def group_of(filename: str, funcname: str) -> str:
    f = filename.replace("\\", "/")
    if f == "~" or f.startswith("<"):
        return "torch ops and autograd (C++)"
    if "/src/latentkit/" in f:
        return "latentkit core"
    if "/plugins/" in f or "/latentkit_" in f:
        return "latentkit plugin"
    if "/torch/distributions/" in f:
        return "torch.distributions"
    if "/einops/" in f:
        return "einops"
    if "/attr/" in f or "/attrs/" in f or f.startswith("<attrs generated"):
        return "attrs"
    if "/torch/nn/" in f or "/torch/optim/" in f or "/torch/autograd/" in f or "/torch/_" in f:
        return "torch.nn / optim (Python)"
    if "/bench/" in f:
        return "bench (hand-written)"
    return "other Python"


def profile_calls(
    fn: Callable[[], object], calls: int, timer: Callable[[], float] | None = None
) -> dict:
    """Self time per call by group (µs), and the costliest Python functions (µs per call).
    ``timer``: cProfile's clock in seconds (default: its own wall clock)."""
    fn()  # warm
    prof = cProfile.Profile() if timer is None else cProfile.Profile(timer)
    prof.enable()
    for _ in range(calls):
        fn()
    prof.disable()
    stats = pstats.Stats(prof).stats  # (file, line, func) -> (cc, nc, tt, ct, callers)
    groups: dict[str, float] = defaultdict(float)
    funcs = []
    total = 0.0
    for (file, line, func), (_cc, nc, tt, ct, _callers) in stats.items():
        g = group_of(file, func)
        groups[g] += tt
        total += tt
        if g not in ("torch ops and autograd (C++)",):
            where = file.split("/site-packages/")[-1].replace(ROOT, "")
            funcs.append((tt, ct, nc, f"{where}:{line}({func})", g))
    funcs.sort(reverse=True)
    return {
        "calls": calls,
        "total_us": total / calls * 1e6,
        "groups_us": {g: groups.get(g, 0.0) / calls * 1e6 for g in GROUPS},
        "top_python": [
            {
                "self_us": tt / calls * 1e6,
                "cum_us": ct / calls * 1e6,
                "ncalls": nc / calls,
                "where": name,
                "group": g,
            }
            for tt, ct, nc, name, g in funcs[:40]
        ],
    }


def op_count(fn: Callable[[], object]) -> int:
    """aten operators one call dispatches (nested ones included), by torch.profiler."""
    from torch.profiler import ProfilerActivity, profile

    fn()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return int(sum(e.count for e in prof.key_averages() if e.key.startswith("aten::")))


def dispatch_cost_us(calls: int = 20_000) -> float:
    """Microseconds one trivial operator costs here (an in-place add on a 1-element tensor):
    the unit in which a framework's extra operators are paid for."""
    import time

    import torch

    t = torch.zeros(1)
    for _ in range(1000):
        t.add_(1.0)
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(calls // 5):
            t.add_(1.0)
        best = min(best, (time.perf_counter() - t0) / (calls // 5))
    return best * 1e6


def vae_ladder(model, hand, x, *, rounds: int, block_seconds: float) -> dict:
    """One VAE ELBO evaluation built up from plain tensors to latentkit, interleaved:
    plain tensors (the baseline) → the same with torch.distributions objects and
    ``kl_divergence`` → ``latentkit.elbo(validate=False)`` (the training path) →
    ``latentkit.elbo()`` (input checks on). Each step's extra time is what it adds."""
    import torch
    import torch.nn.functional as F
    from torch.distributions import Bernoulli, Independent, Normal, kl_divergence

    import latentkit as lk
    from bench.steps import calibrate
    from bench.timing import interleaved

    d = model.config.latent_dim

    def with_distributions(x):
        mu, raw = hand.enc(x).chunk(2, dim=-1)
        q = Independent(Normal(mu, F.softplus(raw) + 1e-4, validate_args=False), 1)
        z = q.rsample()
        prior = Independent(Normal(x.new_zeros(d), x.new_ones(d), validate_args=False), 1)
        lik = Independent(Bernoulli(logits=hand.dec(z), validate_args=False), 1)
        return lik.log_prob(x) - kl_divergence(q, prior.expand(x.shape[:1]))

    steps = {
        "plain tensors (hand-written)": lambda: -hand.loss(x),
        "+ torch.distributions": lambda: with_distributions(x),
        "latentkit.elbo(validate=False)": lambda: lk.elbo(model, x, validate=False).total,
        "latentkit.elbo() (checks x)": lambda: lk.elbo(model, x).total,
    }
    with torch.no_grad():
        inner = calibrate(steps, block_seconds, 3)
        t = interleaved(steps, rounds=rounds, inner=inner, warmup=1)
        ops = {k: op_count(f) for k, f in steps.items()}
    return {k: {"us": v.median * 1e6, "ops": ops[k]} for k, v in t.items()}
