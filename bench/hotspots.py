"""Where latentkit's extra time goes: cProfile self-time per call, grouped by where it is spent.

cProfile times every Python call, so pure-Python layers (torch.distributions, latentkit,
einops) look several times dearer under it than they are; the groups locate the overhead,
the interleaved timings (not these) size it. Run for a pair whose ratio misses the target.
"""

from __future__ import annotations

import cProfile
import pstats
from collections import defaultdict
from collections.abc import Callable

__all__ = ["GROUPS", "group_of", "profile_calls"]

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


def profile_calls(fn: Callable[[], object], calls: int) -> dict:
    """Self time per call by group (µs), and the costliest Python functions (µs per call)."""
    fn()  # warm
    prof = cProfile.Profile()
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
            funcs.append((tt, ct, nc, f"{file.split('/site-packages/')[-1]}:{line}({func})", g))
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
            for tt, ct, nc, name, g in funcs[:12]
        ],
    }
