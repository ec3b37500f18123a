"""How the checks compare numbers: exactly up to round-off, or in expectation by a
sequential z-test that redraws before it declares a failure.

A statistical comparison "E[a] ≤ E[b]" (or "=") is made at ``STAGES`` = 64, 512 and 4,096
independent replicates, each stage from fresh draws. A stage fails an example when the
mean difference exceeds ``Z_CRITICAL`` = 4.5 of its estimated standard errors (plus the
round-off allowance); the comparison fails only when the same example fails at every
stage, and stops at the first stage it passes. So a correct model pays the 64 replicates
alone, and a false alarm needs three independent flukes: under the normal approximation
(3.4e-6 per one-sided stage) that is ~4e-17, and however heavy the tails make the early,
small stages, the chance is at most that of the 4,096-replicate stage alone. A real
violation fails every stage, the later ones more surely, so the power is that of the
64-replicate stage (0.56 standard deviations of one estimate, paired).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from einops import rearrange, repeat
from torch import Tensor

from latentkit.arguments import check_choice, check_count, check_flag, describe_value
from latentkit.bounds import elbo, iwae
from latentkit.chains import LatentModel
from latentkit.errors import InputError
from latentkit.testing.checks.case import CheckFailure, ModelCase

__all__ = [
    "EXACT_RTOL",
    "REPLICATES",
    "STAGES",
    "Z_CRITICAL",
    "assert_close",
    "assert_equal_in_expectation",
    "assert_in_expectation",
    "assert_le_in_expectation",
    "enumerable",
    "expected_elbo",
    "expected_iwae",
]

Z_CRITICAL = 4.5
REPLICATES = 64
STAGES = (REPLICATES, 8 * REPLICATES, 64 * REPLICATES)
"""Replicates per stage of a sequential comparison: fresh draws each, 8× the last."""
EXACT_RTOL = 1e-8
"""float64 round-off allowance, relative to 1 + |value|: ~10⁷ ulps, far below any real error."""

Draw = Callable[[int, int], tuple[Tensor, Tensor]]
"""``draw(replicates, stage) -> (a, b)``: each ``[replicates, *batch]`` or exact ``[*batch]``."""


def allowance(*values: Tensor) -> Tensor:
    """The round-off allowance of an exact identity between these values: EXACT_RTOL (1 + Σ|v|)."""
    return EXACT_RTOL * (1 + sum(v.abs() for v in values))


def replicated(x: Tensor, replicates: int = REPLICATES) -> Tensor:
    """``[b, ...]`` → ``[(r b), ...]``: the batch repeated, one copy per replicate."""
    return repeat(x, "b ... -> (r b) ...", r=replicates)


def per_replicate(t: Tensor, replicates: int = REPLICATES) -> Tensor:
    """``[(r b), ...]`` → ``[r, b, ...]``."""
    return rearrange(t, "(r b) ... -> r b ...", r=replicates)


def worst(excess: Tensor) -> int | None:
    """Index of the largest positive excess over a flattened tensor, or None."""
    if bool((excess > 0).any()):
        return int(excess.reshape(-1).argmax())
    return None


def assert_close(a: Tensor, b: Tensor, what: str) -> None:
    """a = b up to float64 round-off, elementwise; else a CheckFailure naming the worst entry."""
    excess = (a - b).abs() - allowance(a, b)
    i = worst(excess)
    if i is not None:
        av, bv = a.reshape(-1)[i].item(), b.reshape(-1)[i].item()
        raise CheckFailure(
            f"{what}: entry {i} differs, {av!r} vs {bv!r} (|Δ| = {abs(av - bv):.3g})"
        )


def mean_se(t: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and standard error over replicates ``[R, batch]``; an exact ``[batch]`` has se 0."""
    if t.ndim <= 1:
        return t, torch.zeros_like(t)
    return t.mean(0), t.std(0) / math.sqrt(t.shape[0])


def _difference(
    a: Tensor, b: Tensor, paired: bool, sd: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """(mean a − mean b, its standard error, the round-off allowance)."""
    if sd is not None:  # one side replicates of known spread under the hypothesis
        reps = a if a.ndim >= 2 else b
        ma, mb = mean_se(a)[0], mean_se(b)[0]
        return ma - mb, sd / math.sqrt(reps.shape[0]), allowance(ma, mb)
    if paired and a.ndim == b.ndim and a.ndim >= 2:
        diff, se = mean_se(a - b)
        return diff, se, allowance(a.mean(0), b.mean(0))
    (ma, sa), (mb, sb) = mean_se(a), mean_se(b)
    return ma - mb, (sa**2 + sb**2).sqrt(), allowance(ma, mb)


def _exact(a: Tensor, b: Tensor) -> bool:
    """Whether the two sides are exact values (no replicate axis), compared without a z-test."""
    return a.ndim <= 1 and b.ndim <= 1


def _check_comparison(
    draw: Any, what: Any, relation: Any, names: Any, paired: Any, stages: Any, sd: Any
) -> None:
    """The arguments of :func:`assert_in_expectation`, each checked (an InputError)."""
    where = "assert_in_expectation"
    if not callable(draw):
        raise InputError(
            f"{where}: draw must be a callable (r, stage) -> (a, b), got {describe_value(draw)}"
        )
    if not isinstance(what, str):
        raise InputError(f"{where}: what must be a str, got {describe_value(what)}")
    check_choice(relation, f"{where}: relation", ("≤", "="))
    if not (
        isinstance(names, tuple) and len(names) == 2 and all(isinstance(n, str) for n in names)
    ):
        raise InputError(f"{where}: names must be two str, got {describe_value(names)}")
    check_flag(paired, f"{where}: paired")
    if isinstance(stages, str) or not isinstance(stages, Sequence) or not stages:
        raise InputError(
            f"{where}: stages must be a non-empty sequence of replicate counts, "
            f"got {describe_value(stages)}"
        )
    for i, r in enumerate(stages):
        check_count(r, f"{where}: stages[{i}]")
    if sd is not None and not isinstance(sd, Tensor):
        raise InputError(f"{where}: sd must be a tensor or None, got {describe_value(sd)}")


def assert_in_expectation(
    draw: Draw,
    what: str,
    *,
    relation: str = "≤",
    names: tuple[str, str] = ("a", "b"),
    paired: bool = False,
    stages: Sequence[int] | None = None,
    sd: Tensor | None = None,
) -> None:
    """E[a] ≤ E[b] (``relation="≤"``) or E[a] = E[b] (``"="``) per entry, by the sequential
    z-test of this module: ``draw(r, stage)`` gives fresh replicates at each stage
    (``stages``: replicates per stage, :data:`STAGES` by default).

    An entry fails a stage when mean(a) − mean(b) > Z_CRITICAL · se + round-off (for "=",
    also with a and b swapped); the comparison fails when some entry fails every stage
    (exact sides, se = 0, are decided at once). ``paired``: a and b come from the same
    draws, se is then that of a − b. ``sd``: the standard deviation of one replicate under
    the hypothesis, when it is known (a frequency's √(p(1 − p))); se is then sd/√r, not the
    sample's, which an outcome too rare to be seen would make 0. Raises
    :class:`CheckFailure` naming the entry and its z-score at each stage. A bad argument is
    an InputError naming it.
    """
    stages = STAGES if stages is None else stages
    _check_comparison(draw, what, relation, names, paired, stages, sd)
    directions = [(False, f"{names[0]} ≤ {names[1]}")]
    if relation == "=":
        directions.append((True, f"{names[1]} ≤ {names[0]}"))
    alive: list[Tensor | None] = [None] * len(directions)
    history: list[list[tuple[int, float, float]]] = [[] for _ in directions]
    for stage, r in enumerate(stages):
        a, b = draw(r, stage)
        exact = _exact(a, b)
        any_alive = False
        for j, (swap, _) in enumerate(directions):
            lo, hi = (b, a) if swap else (a, b)
            diff, se, tol = _difference(lo, hi, paired, sd)
            failing = diff - Z_CRITICAL * se - tol > 0
            alive[j] = failing if alive[j] is None else alive[j] & failing
            zs = torch.where(se > 0, diff / se, torch.full_like(diff, math.inf))
            history[j].append((r, zs, diff))
            any_alive = any_alive or bool(alive[j].any())
        if not any_alive:
            return
        if exact:
            break
    j = next(j for j, m in enumerate(alive) if m is not None and bool(m.any()))
    i = int(alive[j].reshape(-1).float().argmax())
    stages_text = ", ".join(f"{z.reshape(-1)[i].item():.3g} at {r}" for r, z, _ in history[j])
    d = history[j][-1][2].reshape(-1)[i].item()
    label = f"{what}: {directions[j][1]}" if relation == "=" else what
    if exact:
        raise CheckFailure(f"{label} fails for example {i}: the difference is {d:.6g} (exact)")
    raise CheckFailure(
        f"{label} fails for example {i}: the difference is {d:.6g}, "
        f"standard errors at each number of replicates: {stages_text} "
        f"(threshold {Z_CRITICAL} at every one)"
    )


def _fixed(a: Tensor, b: Tensor) -> Draw:
    """A draw function that returns the same two sides at every replicate and stage."""

    def draw(r: int, stage: int) -> tuple[Tensor, Tensor]:
        return a, b

    return draw


def assert_le_in_expectation(a: Tensor, b: Tensor, what: str, *, paired: bool = False) -> None:
    """E[a] ≤ E[b] per example from given replicates ``[R, batch]`` (or exact ``[batch]``):
    one stage of :func:`assert_in_expectation`, no redraw. Prefer that function, which
    redraws before it fails, wherever the replicates can be drawn again."""
    r = a.shape[0] if a.ndim >= 2 else b.shape[0] if b.ndim >= 2 else 1
    assert_in_expectation(_fixed(a, b), what, paired=paired, stages=(r,))


def assert_equal_in_expectation(
    a: Tensor, b: Tensor, what: str, names: tuple[str, str], *, paired: bool
) -> None:
    """E[a] = E[b] per entry from given replicates: the two one-sided comparisons at
    Z_CRITICAL each, no redraw (see :func:`assert_in_expectation`)."""
    r = a.shape[0] if a.ndim >= 2 else b.shape[0] if b.ndim >= 2 else 1
    assert_in_expectation(_fixed(a, b), what, relation="=", names=names, paired=paired, stages=(r,))


def enumerable(model: LatentModel, x: Tensor) -> bool:
    """Whether expectations over q can be taken exactly: one latent layer, q(z|x) discrete.

    The z-tests assume replicate means are near normal. A discrete q with a rare but
    influential outcome breaks that (64 replicates that all miss an outcome of probability
    1e-4 show no spread at all), so there the checks sum over q's support instead.
    """
    q = model.posterior
    return model.num_layers == 1 and q.top_down and bool(q.top(x).has_enumerate_support)


def expected_elbo(
    model: LatentModel, x: Tensor, case: ModelCase, stream: int, replicates: int = REPLICATES
) -> Tensor:
    """E_q[ELBO] per example: exact ``[batch]`` (the ``enumerated`` estimator) when
    :func:`enumerable`, else ``replicates`` independent estimates ``[R, batch]``."""
    if enumerable(model, x):
        return elbo(model, x, estimator="enumerated").total
    with case.draws(stream):
        return per_replicate(elbo(model, replicated(x, replicates)).total, replicates)


def expected_iwae(
    model: LatentModel,
    x: Tensor,
    k: int,
    case: ModelCase,
    stream: int,
    replicates: int = REPLICATES,
) -> Tensor:
    """IWAE_k per example: exact for k = 1 when :func:`enumerable` (IWAE_1 is the ELBO's
    Monte Carlo estimate), else ``[R, batch]`` replicates."""
    if k == 1 and enumerable(model, x):
        return expected_elbo(model, x, case, stream)
    with case.draws(stream):
        return per_replicate(iwae(model, replicated(x, replicates), k), replicates)
