"""Property checks that run on any registered latent model, driven by Hypothesis.

A check is a function of one :class:`ModelCase`: a model built from a config its plugin
declares (``ModelSpec.test_configs``) and a seed, its parameters moved off their
initialisation, a data batch it accepts, β ≥ 1 and importance sample counts k ≤ k'. It
raises :class:`CheckFailure` when the property fails, :class:`NotApplicable` when the model
does not admit it (e.g. no exact log p). :func:`run_checks` lets Hypothesis search for a
failing case and shrink it; ``latentkit verify NAME`` and the pytest fixture
``latentkit_check`` are thin layers over it. What each check proves: ``docs/checks.md``.

Numbers: everything runs in float64. Exact checks allow float64 round-off,
``EXACT_RTOL · (1 + |value|)``. Statistical checks compare means over ``REPLICATES``
independent replicates with a z-test at ``Z_CRITICAL`` = 4.5 standard errors (plus the same
round-off allowance): a false alarm has probability 3.4e-6 per one-sided comparison under
the normal approximation, ≤ 1.5e-5 with the variance estimated from 64 replicates
(Student t, 63 degrees of freedom); two-sided comparisons double these. Every draw comes
from the case's seed, so a run — and a false alarm, were one to happen — is reproducible.
"""

from __future__ import annotations

import copy
import math
import pathlib
import traceback
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import attrs
import torch
from einops import rearrange, repeat
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Flaky, HypothesisException
from hypothesis.internal.conjecture import engine as hypothesis_engine
from torch import Tensor
from torch.distributions import Distribution, kl_divergence

from latentkit.bounds import elbo, iwae
from latentkit.chains import LatentModel
from latentkit.errors import NotTractableError
from latentkit.estimators import resolve_estimator
from latentkit.objectives import training_loss
from latentkit.oracles import exact_log_prob
from latentkit.registry import get_model_spec, load_model
from latentkit.sampling import sample
from latentkit.testing.strategies import (
    model_configs,
    model_data,
    perturb_parameters,
    seeded,
    seeds,
)

__all__ = [
    "CHECKS",
    "EXACT_RTOL",
    "REPLICATES",
    "SHRINK_SECONDS",
    "Z_CRITICAL",
    "CaseError",
    "Check",
    "CheckFailure",
    "CheckResult",
    "ModelCase",
    "NotApplicable",
    "build_model",
    "check_model",
    "format_report",
    "model_cases",
    "run_check",
    "run_checks",
]

Z_CRITICAL = 4.5
REPLICATES = 64
SHRINK_SECONDS = 30.0
EXACT_RTOL = 1e-8
"""float64 round-off allowance, relative to 1 + |value|: ~10⁷ ulps, far below any real error."""


class CheckFailure(AssertionError):
    """A property check found a violation; the message says which values, by how much."""


class CaseError(CheckFailure):
    """No case could be made: the model failed to build, or to give finite samples.

    ``drawn`` is what was drawn before it failed, as a call that rebuilds the model.
    """

    def __init__(self, message: str, drawn: str = ""):
        super().__init__(message)
        self.drawn = drawn


class NotApplicable(Exception):
    """The model does not admit this check (the message says why)."""


# ---- the case a check runs on ------------------------------------------------------------


def build_model(
    name: str, config: dict, seed: int, *, device: str | torch.device = "cpu"
) -> LatentModel:
    """``load_model(name, **config)`` initialised under ``seed``, parameters perturbed by
    ``perturb_parameters(model, seed)``, in float64 on ``device``: a case's model, rebuilt."""
    with seeded(seed):
        model = load_model(name, **config)
    perturb_parameters(model, seed)
    return model.to(device=device, dtype=torch.float64)


@attrs.frozen(eq=False, repr=False)
class ModelCase:
    """One example for the checks; its repr is what a failure report prints.

    ``x`` is ``[b, *data_shape]``; ``x_swap`` one more example ``[1, *data_shape]`` that the
    batch-independence check puts at position ``swap_index % b``; ``seed`` built the model
    and seeds every draw a check makes.
    """

    name: str
    config: dict
    seed: int
    model: LatentModel
    x: Tensor
    x_swap: Tensor
    swap_index: int
    beta: float
    k: int
    k_max: int

    @property
    def device(self) -> torch.device:
        return self.x.device

    def draws(self, stream: int = 0):
        """Context in which torch's draws come from this case's seed (``stream`` separates
        independent sets of draws within one check)."""
        return seeded(self.seed + 7919 * stream, self.device)

    def _repr_pretty_(self, printer, cycle: bool) -> None:  # how Hypothesis prints a case
        printer.text(repr(self))

    def __repr__(self) -> str:
        return (
            f"ModelCase(name={self.name!r}, config={self.config!r}, seed={self.seed}, "
            f"x={self.x.tolist()!r}, x_swap={self.x_swap.tolist()!r}, "
            f"swap_index={self.swap_index}, beta={self.beta!r}, k={self.k}, "
            f"k_max={self.k_max}, device={str(self.device)!r})  # model: "
            f"latentkit.testing.build_model({self.name!r}, {self.config!r}, {self.seed})"
        )


@st.composite
def model_cases(
    draw,
    name: str,
    *,
    device: str | torch.device = "cpu",
    configs: st.SearchStrategy[dict] | None = None,
    max_batch: int = 4,
) -> ModelCase:
    """Cases for model ``name``: a config (from ``configs``, by default the plugin's
    ``test_configs``), a seed, a batch from the model (``model_data``), β ∈ [1, 10] and
    1 ≤ k ≤ 4, k ≤ k' ≤ 8."""
    config = draw(configs if configs is not None else model_configs(name))
    seed = draw(seeds())
    try:  # Hypothesis prints no example when drawing it fails: say what was drawn
        model = build_model(name, config, seed, device=device)
        data = model_data(model, max_batch=max_batch)
        x = draw(data)
        x_swap = draw(data)[:1]
    except HypothesisException:
        raise
    except Exception as exc:
        raise CaseError(
            f"building model {name!r} or sampling data from it failed for "
            f"config={config!r}, seed={seed}: {type(exc).__name__}: {exc}",
            drawn=f"latentkit.testing.build_model({name!r}, {config!r}, {seed})",
        ) from exc
    k = draw(st.integers(1, 4))
    return ModelCase(
        name=name,
        config=config,
        seed=seed,
        model=model,
        x=x,
        x_swap=x_swap,
        swap_index=draw(st.integers(0, max_batch)),
        beta=draw(st.floats(1.0, 10.0)),
        k=k,
        k_max=draw(st.integers(k, 8)),
    )


# ---- comparisons -------------------------------------------------------------------------


def _allowance(*values: Tensor) -> Tensor:
    return EXACT_RTOL * (1 + sum(v.abs() for v in values))


def _replicated(x: Tensor) -> Tensor:
    return repeat(x, "b ... -> (r b) ...", r=REPLICATES)


def _per_replicate(t: Tensor) -> Tensor:
    return rearrange(t, "(r b) ... -> r b ...", r=REPLICATES)


def _worst(excess: Tensor) -> int | None:
    """Index of the largest positive excess over a flattened tensor, or None."""
    if bool((excess > 0).any()):
        return int(excess.reshape(-1).argmax())
    return None


def assert_close(a: Tensor, b: Tensor, what: str) -> None:
    """a = b up to float64 round-off, elementwise; else a CheckFailure naming the worst entry."""
    excess = (a - b).abs() - _allowance(a, b)
    i = _worst(excess)
    if i is not None:
        av, bv = a.reshape(-1)[i].item(), b.reshape(-1)[i].item()
        raise CheckFailure(
            f"{what}: entry {i} differs, {av!r} vs {bv!r} (|Δ| = {abs(av - bv):.3g})"
        )


def _mean_se(t: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and standard error over replicates ``[R, batch]``; an exact ``[batch]`` has se 0."""
    if t.ndim == 1:
        return t, torch.zeros_like(t)
    return t.mean(0), t.std(0) / math.sqrt(t.shape[0])


def assert_le_in_expectation(a: Tensor, b: Tensor, what: str, *, paired: bool = False) -> None:
    """E[a] ≤ E[b] per example; each side is replicates ``[R, batch]`` or an exact value
    ``[batch]``. Fails when mean(a) − mean(b) > Z_CRITICAL · se + round-off allowance.

    ``paired``: a and b are replicates from the same draws; se is then that of a − b.
    """
    if paired:
        diff, se = _mean_se(a - b)
        scale = (a.mean(0), b.mean(0))
    else:
        (ma, sa), (mb, sb) = _mean_se(a), _mean_se(b)
        diff, se, scale = ma - mb, (sa**2 + sb**2).sqrt(), (ma, mb)
    excess = diff - Z_CRITICAL * se - _allowance(*scale)
    i = _worst(excess)
    if i is not None:
        d, e = diff[i].item(), se[i].item()
        spread = (
            f"{d / e:.3g} standard errors (threshold {Z_CRITICAL}, {REPLICATES} replicates)"
            if e > 0
            else "with no spread across replicates"
        )
        raise CheckFailure(f"{what} fails for example {i}: the difference is {d:.6g}, {spread}")


def assert_equal_in_expectation(
    a: Tensor, b: Tensor, what: str, names: tuple[str, str], *, paired: bool
) -> None:
    """E[a] = E[b] per entry: the two one-sided comparisons at Z_CRITICAL each; ``names``
    name a and b in the message, e.g. ``E[ELBO]: CUDA ≤ CPU fails ...``."""
    assert_le_in_expectation(a, b, f"{what}: {names[0]} ≤ {names[1]}", paired=paired)
    assert_le_in_expectation(b, a, f"{what}: {names[1]} ≤ {names[0]}", paired=paired)


def enumerable(model: LatentModel, x: Tensor) -> bool:
    """Whether expectations over q can be taken exactly: one latent layer, q(z|x) discrete.

    The z-tests assume replicate means are near normal. A discrete q with a rare but
    influential outcome breaks that (64 replicates that all miss an outcome of probability
    1e-4 show no spread at all), so there the checks sum over q's support instead.
    """
    q = model.posterior
    return model.num_layers == 1 and q.top_down and bool(q.top(x).has_enumerate_support)


def expected_elbo(model: LatentModel, x: Tensor, case: ModelCase, stream: int) -> Tensor:
    """E_q[ELBO] per example: exact ``[batch]`` (the ``enumerated`` estimator) when
    :func:`enumerable`, else ``REPLICATES`` independent estimates ``[R, batch]``."""
    if enumerable(model, x):
        return elbo(model, x, estimator="enumerated").total
    with case.draws(stream):
        return _per_replicate(elbo(model, _replicated(x)).total)


def expected_iwae(model: LatentModel, x: Tensor, k: int, case: ModelCase, stream: int) -> Tensor:
    """IWAE_k per example: exact for k = 1 when :func:`enumerable` (IWAE_1 is the ELBO's
    Monte Carlo estimate), else ``[R, batch]`` replicates."""
    if k == 1 and enumerable(model, x):
        return expected_elbo(model, x, case, stream)
    with case.draws(stream):
        return _per_replicate(iwae(model, _replicated(x), k))


# ---- a latent path, walked independently of the estimators ------------------------------


def _draw(d: Distribution) -> Tensor:
    return d.rsample() if d.has_rsample else d.sample()


def _closed_form_kl(q: Distribution, p: Distribution) -> Tensor | None:
    try:
        return kl_divergence(q, p)
    except NotImplementedError:
        return None


@attrs.frozen
class _Path:
    latents: tuple[Tensor, ...]  # z_1..z_L
    log_densities: dict[str, Tensor]  # every factor of q and of p at the path, [batch]
    closed_form_kls: dict[str, Tensor | None] | None  # top-down chains: term → KL or None


def walk(model: LatentModel, x: Tensor, latents: Sequence[Tensor] | None = None) -> _Path:
    """One latent path z_1..z_L from q (top-down when q offers it, else bottom-up), or the
    given ``latents``; every factor's log density at it, and for top-down chains each KL
    term in closed form where torch has one (``None`` where it has not).

    A second implementation of the chain walk, kept apart from ``latentkit.estimators`` so
    the checks do not trust the code they check.
    """
    p, q, n, L = model.generative, model.posterior, x.shape[0], model.num_layers
    zs: list[Tensor | None] = list(latents) if latents is not None else [None] * L

    def at(l: int, d: Distribution) -> Tensor:
        if zs[l - 1] is None:
            zs[l - 1] = _draw(d)
        return zs[l - 1]

    logs: dict[str, Tensor] = {}
    kls: dict[str, Tensor | None] | None = None
    if q.top_down:
        kls = {}
        d = q.top(x)
        logs[f"log q(z_{L}|x)"] = d.log_prob(at(L, d))
        kls["prior_matching"] = _closed_form_kl(d, p.prior(n))
        for l in range(L, 1, -1):
            d = q.down(l, zs[l - 1], x)
            logs[f"log q(z_{l - 1}|z_{l},x)"] = d.log_prob(at(l - 1, d))
            kls[f"kl_{l - 1}"] = _closed_form_kl(d, p.transition(l, zs[l - 1]))
    else:
        d = q.first(x)
        logs["log q(z_1|x)"] = d.log_prob(at(1, d))
        for l in range(2, L + 1):
            d = q.up(l, zs[l - 2], x)
            logs[f"log q(z_{l}|z_{l - 1},x)"] = d.log_prob(at(l, d))
    logs[f"log p(z_{L})"] = p.prior(n).log_prob(zs[L - 1])
    for l in range(L, 1, -1):
        logs[f"log p(z_{l - 1}|z_{l})"] = p.transition(l, zs[l - 1]).log_prob(zs[l - 2])
    logs["log p(x|z_1)"] = p.likelihood(zs[0]).log_prob(x)
    return _Path(tuple(zs), logs, kls)


def _kl_terms(result) -> dict[str, Tensor]:
    terms = dict(result.terms)
    del terms["reconstruction"]
    return terms


# ---- the checks --------------------------------------------------------------------------


@torch.no_grad()
def samples(case: ModelCase) -> None:
    """The model builds and samples.

    Proves: for every drawn config and seed the model builds, and ancestral sampling
    (``latentkit.sample``) gives finite data of shape ``[n, *data_shape]`` and finite
    latents of the declared shapes. (Drawing the case already built the model and sampled
    from it; a failure there is reported here, and the later checks are then skipped.)
    """
    model, n = case.model, case.x.shape[0]
    with case.draws():
        x, latents = sample(model, n, return_latents=True)
    if tuple(x.shape) != (n, *model.data_shape):
        raise CheckFailure(
            f"samples have shape {tuple(x.shape)}, expected {(n, *model.data_shape)}"
        )
    for l, (z, shape) in enumerate(zip(latents, model.generative.latent_shapes), start=1):
        if tuple(z.shape) != (n, *shape):
            raise CheckFailure(f"z_{l} has shape {tuple(z.shape)}, expected {(n, *shape)}")
    for what, value in (("x", x), *((f"z_{l}", z) for l, z in enumerate(latents, start=1))):
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise CheckFailure(f"sampled {what} is not finite: {value.tolist()}")


def finite_values_and_gradients(case: ModelCase) -> None:
    """Finite values and finite gradients.

    Proves: on the drawn config, parameters and data, every term of ELBO_β, IWAE_k', the
    model's training loss and the gradient of (training loss − IWAE_k') with respect to
    every parameter are finite — no log 0, overflowing exp or 0/0 anywhere on that path.
    """
    model, x = case.model, case.x
    with case.draws():
        result = elbo(model, x, beta=case.beta)
        bound = iwae(model, x, case.k_max)
        loss = training_loss(model, x).sum() - bound.sum()
    values = {**result.terms, "ELBO_β": result.total, f"IWAE_{case.k_max}": bound, "loss": loss}
    for what, value in values.items():
        bad = ~torch.isfinite(value.detach())
        if bool(bad.any()):
            raise CheckFailure(
                f"{what} is not finite at entries {bad.nonzero().flatten().tolist()}"
            )
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        return
    grads = torch.autograd.grad(loss, [p for _, p in named], allow_unused=True)
    for (pname, _), g in zip(named, grads):
        if g is not None and not bool(torch.isfinite(g).all()):
            raise CheckFailure(f"the gradient of the loss for parameter {pname!r} is not finite")


@torch.no_grad()
def beta_ordering(case: ModelCase) -> None:
    """ELBO_β ≤ ELBO for β ≥ 1 (DESIGN §7.2).

    Proves: at one seed the draws do not depend on β (every term agrees between β = 1 and
    β); ELBO_β = reconstruction − β · Σ KL exactly; and ELBO_β ≤ ELBO — exactly, per draw,
    when every KL term is in closed form (each is then ≥ 0), otherwise in expectation
    (one-sided paired z-test on the ELBO − ELBO_β over replicates).
    """
    model, x, beta = case.model, case.x, case.beta
    with case.draws():
        one = elbo(model, x)
    with case.draws():
        weighted = elbo(model, x, beta=beta)
    for term, value in one.terms.items():
        assert_close(weighted.terms[term], value, f"{term} at β = {beta} vs β = 1, same seed")
    assert_close(
        weighted.total,
        weighted.reconstruction - beta * weighted.kl,
        "ELBO_β vs reconstruction − β · KL",
    )
    estimator = resolve_estimator(model, "auto")
    with case.draws(1):
        kls = walk(model, x).closed_form_kls
    if not estimator.per_sample_exact and kls and all(v is not None for v in kls.values()):
        i = _worst(weighted.total - one.total - _allowance(one.total, weighted.total))
        if i is not None:
            raise CheckFailure(
                f"ELBO_β > ELBO at β = {beta} for example {i} with closed-form KL terms: "
                f"{weighted.total[i].item()!r} > {one.total[i].item()!r}"
            )
        return
    xr = _replicated(x)
    with case.draws(2):
        one = elbo(model, xr)
    with case.draws(2):
        weighted = elbo(model, xr, beta=beta)
    assert_le_in_expectation(
        _per_replicate(weighted.total),
        _per_replicate(one.total),
        f"E[ELBO_β] ≤ E[ELBO] at β = {beta}",
        paired=True,
    )


@torch.no_grad()
def kl_nonnegative(case: ModelCase) -> None:
    """KL terms ≥ 0 (DESIGN §7.10).

    Proves: every KL term torch computes in closed form along a path drawn from q is ≥ 0
    for every example (exact, up to round-off); and the model's ELBO estimator reports KL
    terms that are ≥ 0 in expectation (one-sided z-test over replicates) — each term for a
    top-down estimator, whose terms are KLs of aligned conditionals, and their sum for a
    bottom-up one, whose sum alone is a KL (of q(z|x) from p(z)).
    """
    model, x = case.model, case.x
    with case.draws():
        kls = walk(model, x).closed_form_kls or {}
    for term, kl in kls.items():
        if kl is not None:
            i = _worst(-kl - _allowance(kl))
            if i is not None:
                raise CheckFailure(
                    f"closed-form KL term {term} is negative for example {i}: {kl[i].item()!r}"
                )
    estimator = resolve_estimator(model, "auto")
    with case.draws(1):
        result = elbo(model, _replicated(x))
    zero = x.new_zeros(x.shape[0])
    if estimator.needs_top_down:
        for term, value in _kl_terms(result).items():
            assert_le_in_expectation(
                zero.expand(REPLICATES, -1), _per_replicate(value), f"E[{term}] ≥ 0", paired=True
            )
    else:
        assert_le_in_expectation(
            zero.expand(REPLICATES, -1), _per_replicate(result.kl), "E[Σ KL terms] ≥ 0", paired=True
        )


@torch.no_grad()
def iwae_ordering(case: ModelCase) -> None:
    """ELBO ≤ IWAE_k ≤ IWAE_k' for k ≤ k' in expectation (DESIGN §7.3).

    Proves: the mean of the model's ELBO estimate does not exceed that of IWAE_k, nor IWAE_k
    that of IWAE_k', by more than 4.5 standard errors (independent replicates, one-sided).
    Catches a q whose draws do not follow its own log_prob, or weights that are not
    p(x, z)/q(z|x).
    """
    model, x = case.model, case.x
    bound = expected_elbo(model, x, case, 1)
    low = expected_iwae(model, x, case.k, case, 2)
    high = expected_iwae(model, x, case.k_max, case, 3)
    assert_le_in_expectation(bound, low, f"E[ELBO] ≤ E[IWAE_{case.k}]")
    assert_le_in_expectation(low, high, f"E[IWAE_{case.k}] ≤ E[IWAE_{case.k_max}]")


@torch.no_grad()
def batch_independence(case: ModelCase) -> None:
    """Batch independence: example i's bound does not depend on example j.

    Proves: replacing one example of a batch (at the drawn position) by another, with the
    same seed — hence the same draws — leaves every other example's ELBO terms and IWAE_k
    unchanged up to round-off. Catches statistics taken across the batch (batch norm in
    training mode, a mean over dim 0, a reshape that mixes examples).
    """
    model, x = case.model, case.x
    base = x if x.shape[0] >= 2 else torch.cat([x, x])
    j = case.swap_index % base.shape[0]
    changed = base.clone()
    changed[j] = case.x_swap[0]
    keep = torch.arange(base.shape[0], device=base.device) != j
    outputs = []
    for batch in (base, changed):
        with case.draws():
            result = elbo(model, batch)
            outputs.append(
                {**result.terms, "ELBO": result.total, "IWAE": iwae(model, batch, case.k)}
            )
    for term, value in outputs[0].items():
        assert_close(
            outputs[1][term][keep],
            value[keep],
            f"{term} of the other examples after replacing example {j} (same seed)",
        )


@torch.no_grad()
def exact_log_p_bounds(case: ModelCase) -> None:
    """log p(x) ≥ ELBO and ≥ IWAE_k', where log p is exact (DESIGN §7.1, §7.3).

    Proves: against the exact log p(x) (``latentkit.exact_log_prob``: the model's
    ``log_marginal`` or the linear-Gaussian oracle), the mean ELBO and the mean IWAE_k' do
    not exceed it by more than 4.5 standard errors (one-sided z-test). When q is the exact
    posterior both equal log p, and the round-off allowance alone applies.
    Not applicable when exact log p is intractable (``NotTractableError``).
    """
    model, x = case.model, case.x
    try:
        log_p = exact_log_prob(model, x)
    except NotTractableError as exc:
        raise NotApplicable(str(exc)) from None
    if not bool(torch.isfinite(log_p).all()):
        raise CheckFailure(f"exact log p(x) is not finite: {log_p.tolist()}")
    bound = expected_elbo(model, x, case, 1)
    tight = expected_iwae(model, x, case.k_max, case, 2)
    assert_le_in_expectation(bound, log_p, "E[ELBO] ≤ log p(x)")
    assert_le_in_expectation(tight, log_p, f"E[IWAE_{case.k_max}] ≤ log p(x)")


@torch.no_grad()
def kl_analytic_vs_monte_carlo(case: ModelCase) -> None:
    """Analytic KL = Monte Carlo KL in expectation (DESIGN §7.10).

    Proves: for a top-down chain, each KL term from the ``analytic`` estimator and the
    log-ratio log q(z) − log p(z) from ``top-down-mc`` at the same draws agree in
    expectation (two-sided paired z-test); for a one-layer discrete q, the closed form
    equals Σ_z q(z|x) log(q(z|x)/p(z)) over q's support exactly. Catches a registered closed
    form that is wrong, or a ``log_prob`` that disagrees with it. Not applicable when q is
    not top-down or torch has no closed form for any of its terms.
    """
    model, x = case.model, case.x
    if not model.posterior.top_down:
        raise NotApplicable("the posterior chain is not top-down: its KL terms are log-ratios")
    with case.draws():
        kls = walk(model, x).closed_form_kls
    if not any(v is not None for v in kls.values()):
        raise NotApplicable("torch has no closed-form KL for any term of this model")
    if enumerable(model, x):
        summed = elbo(model, x, estimator="enumerated").prior_matching
        assert_close(kls["prior_matching"], summed, "closed-form KL vs Σ_z q log(q/p)")
        return
    xr = _replicated(x)
    with case.draws(1):
        analytic = elbo(model, xr, estimator="analytic")
    with case.draws(1):
        sampled = elbo(model, xr, estimator="top-down-mc")
    mc_terms = _kl_terms(sampled)
    for term, value in _kl_terms(analytic).items():
        if kls.get(term) is not None:
            assert_equal_in_expectation(
                _per_replicate(value),
                _per_replicate(mc_terms[term]),
                f"E[{term}]",
                ("analytic", "Monte Carlo"),
                paired=True,
            )


@torch.no_grad()
def estimator_agreement(case: ModelCase) -> None:
    """Top-down and bottom-up descriptions of q agree (DESIGN §1, §7.7).

    Proves: for a posterior chain that offers both factorizations, the ELBO from the
    top-down ``analytic`` estimator and from the ``bottom-up`` Monte Carlo estimator have
    the same mean (two-sided z-test, independent replicates). With one latent layer both
    describe the single factor q(z_1|x), so the check is exact: ``top(x)`` and ``first(x)``
    give the same log density at draws from each (and at every support point of a
    discrete q). Not applicable unless q is both top-down and bottom-up.
    """
    model, x = case.model, case.x
    q = model.posterior
    if not (q.top_down and q.bottom_up):
        raise NotApplicable("the posterior chain does not offer both top-down and bottom-up")
    if model.num_layers == 1:
        down, up = q.top(x), q.first(x)
        with case.draws():
            points = [_draw(down), _draw(up)]
        if down.has_enumerate_support:
            points.append(down.enumerate_support(expand=True))
        for z in points:
            assert_close(down.log_prob(z), up.log_prob(z), "log q(z_1|x): top(x) vs first(x)")
        return
    xr = _replicated(x)
    with case.draws(1):
        down = _per_replicate(elbo(model, xr, estimator="analytic").total)
    with case.draws(2):
        up = _per_replicate(elbo(model, xr, estimator="bottom-up").total)
    assert_equal_in_expectation(down, up, "E[ELBO]", ("top-down", "bottom-up"), paired=False)


@torch.no_grad()
def device_agreement(case: ModelCase) -> None:
    """CPU and CUDA agree under one seed.

    Proves: the same parameters on CPU and on CUDA give, along one latent path drawn on
    CPU, the same log density for every factor of q and of p (round-off allowance), the
    same exact log p(x) where it is tractable, and ELBOs of the same mean (two-sided
    z-test; the devices' generators draw differently; exact sums for a one-layer discrete
    q). Skipped without CUDA.
    """
    cpu = copy.deepcopy(case.model).to("cpu")
    gpu = copy.deepcopy(case.model).to("cuda")
    x_cpu, x_gpu = case.x.to("cpu"), case.x.to("cuda")
    with seeded(case.seed, "cpu"):
        path = walk(cpu, x_cpu)
    on_gpu = walk(gpu, x_gpu, [z.to("cuda") for z in path.latents])
    for factor, value in path.log_densities.items():
        assert_close(on_gpu.log_densities[factor].cpu(), value, f"{factor}: CUDA vs CPU")
    try:
        log_p = exact_log_prob(cpu, x_cpu)
    except NotTractableError:
        pass
    else:
        assert_close(exact_log_prob(gpu, x_gpu).cpu(), log_p, "exact log p(x): CUDA vs CPU")
    on_cpu = expected_elbo(cpu, x_cpu, attrs.evolve(case, model=cpu, x=x_cpu), 1)
    on_cuda = expected_elbo(gpu, x_gpu, attrs.evolve(case, model=gpu, x=x_gpu), 1).cpu()
    assert_equal_in_expectation(on_cuda, on_cpu, "E[ELBO]", ("CUDA", "CPU"), paired=False)


# ---- running them ------------------------------------------------------------------------


@attrs.frozen
class Check:
    """A named property check. ``skip_reason()`` is None when it can run on this machine."""

    key: str
    title: str
    run: Callable[[ModelCase], None]
    skip_reason: Callable[[], str | None] = lambda: None

    @property
    def proves(self) -> str:
        """The check's docstring: what it proves."""
        return " ".join((self.run.__doc__ or "").split())


def _no_cuda() -> str | None:
    return None if torch.cuda.is_available() else "no CUDA device on this machine"


CHECKS: tuple[Check, ...] = (
    Check("samples", "builds and samples", samples),
    Check("finite", "finite values and gradients", finite_values_and_gradients),
    Check("beta-ordering", "ELBO_β ≤ ELBO (β ≥ 1)", beta_ordering),
    Check("kl-nonnegative", "KL terms ≥ 0", kl_nonnegative),
    Check("iwae-ordering", "ELBO ≤ IWAE_k ≤ IWAE_k'", iwae_ordering),
    Check("batch-independence", "batch independence", batch_independence),
    Check("exact-log-p", "log p ≥ ELBO, IWAE (exact oracle)", exact_log_p_bounds),
    Check("kl-analytic-vs-mc", "analytic KL = Monte Carlo KL", kl_analytic_vs_monte_carlo),
    Check("estimator-agreement", "top-down = bottom-up ELBO", estimator_agreement),
    Check("device-agreement", "CPU/CUDA agreement", device_agreement, _no_cuda),
)


@attrs.frozen
class CheckResult:
    """The outcome of one check on one model.

    ``status`` is ``passed``, ``failed``, ``not applicable`` or ``skipped``; ``examples`` the
    number of examples the check ran on before passing or first failing (of which
    ``not_applicable`` did not admit it); ``detail`` the failure message or the reason;
    ``counterexample`` Hypothesis's shrunk failing case.
    """

    check: Check
    status: str
    examples: int = 0
    not_applicable: int = 0
    detail: str = ""
    counterexample: str = ""
    no_case: bool = False
    """The failure came from drawing the case (see :class:`CaseError`), not the check."""

    @property
    def failed(self) -> bool:
        return self.status == "failed"


def _settings(max_examples: int | None, derandomize: bool | None) -> settings:
    base = settings.default
    return settings(
        base,
        # The explain phase annotates Hypothesis's own print of the case, which we replace
        # with ModelCase's repr; it costs more than the shrinking itself.
        phases=[p for p in base.phases if p != Phase.explain],
        max_examples=max_examples if max_examples is not None else base.max_examples,
        derandomize=derandomize if derandomize is not None else base.derandomize,
        deadline=None,
        database=None,
        report_multiple_bugs=False,
        print_blob=False,
        suppress_health_check=list(HealthCheck),
    )


def run_check(
    check: Check,
    name: str,
    *,
    device: str = "cpu",
    max_examples: int | None = None,
    derandomize: bool | None = None,
    configs: st.SearchStrategy[dict] | None = None,
    shrink_seconds: float = SHRINK_SECONDS,
) -> CheckResult:
    """Run one check on model ``name`` over up to ``max_examples`` Hypothesis examples.

    ``max_examples``/``derandomize`` default to the active Hypothesis profile's;
    ``configs`` overrides the plugin's ``test_configs``; ``shrink_seconds`` bounds the
    time Hypothesis spends shrinking a failure (the case is then partly shrunk).
    """
    reason = check.skip_reason()
    if reason is not None:
        return CheckResult(check, "skipped", detail=reason)
    seen: dict[str, Any] = {"examples": 0, "not_applicable": 0, "first_failure": None}
    reasons: list[str] = []

    def prop(case: ModelCase) -> None:
        seen["examples"] += 1
        try:
            check.run(case)
        except NotApplicable as exc:
            seen["not_applicable"] += 1
            reasons.append(str(exc))
        except BaseException:
            if seen["first_failure"] is None:
                seen["first_failure"] = seen["examples"]
            seen["case"] = case  # the last failure Hypothesis replays is the shrunk one
            raise

    @st.composite
    def cases(draw) -> ModelCase:
        try:
            return draw(model_cases(name, device=device, configs=configs))
        except CaseError:
            if seen["first_failure"] is None:
                seen["first_failure"] = seen["examples"]
            raise

    prop.__name__ = prop.__qualname__ = check.run.__name__
    test = _settings(max_examples, derandomize)(given(case=cases())(prop))
    shrink_limit = hypothesis_engine.MAX_SHRINKING_SECONDS
    # Hypothesis documents this constant as monkeypatchable; its default is 300 s.
    hypothesis_engine.MAX_SHRINKING_SECONDS = shrink_seconds
    try:
        test()
    except (Exception, Flaky) as exc:  # the property's failure, after shrinking
        notes = "\n".join(getattr(exc, "__notes__", ()))
        if "case" in seen:  # Hypothesis's own print of it varies with its version and phase
            notes = f"Falsifying example: {seen['case']!r}"
        elif isinstance(exc, CaseError) and exc.drawn:
            notes = f"Falsifying example: {exc.drawn}"
        return CheckResult(
            check,
            "failed",
            examples=seen["examples"] if seen["first_failure"] is None else seen["first_failure"],
            not_applicable=seen["not_applicable"],
            detail=_describe(exc),
            counterexample=notes,
            no_case=isinstance(exc, CaseError),
        )
    finally:
        hypothesis_engine.MAX_SHRINKING_SECONDS = shrink_limit
    if seen["examples"] and seen["not_applicable"] == seen["examples"]:
        return CheckResult(
            check, "not applicable", seen["examples"], seen["not_applicable"], reasons[-1]
        )
    return CheckResult(check, "passed", seen["examples"], seen["not_applicable"])


def _describe(exc: BaseException) -> str:
    """A check's own failure message; for anything else its type, message and where."""
    if isinstance(exc, CheckFailure):
        return str(exc)
    frames = traceback.extract_tb(exc.__traceback__)[-3:]
    where = "; ".join(f"{pathlib.Path(f.filename).name}:{f.lineno} in {f.name}" for f in frames)
    return f"{type(exc).__name__}: {exc} (at {where})"


def _select(checks: Iterable[str] | None) -> list[Check]:
    if checks is None:
        return list(CHECKS)
    by_key = {c.key: c for c in CHECKS}
    unknown = sorted(set(checks) - set(by_key))
    if unknown:
        raise ValueError(f"unknown check(s) {unknown}; known checks: {list(by_key)}")
    return [by_key[k] for k in checks]


def run_checks(
    name: str,
    *,
    device: str = "cpu",
    max_examples: int | None = None,
    derandomize: bool | None = None,
    checks: Iterable[str] | None = None,
    configs: st.SearchStrategy[dict] | None = None,
    shrink_seconds: float = SHRINK_SECONDS,
    on_result: Callable[[CheckResult], Any] | None = None,
) -> list[CheckResult]:
    """Run the checks (all of :data:`CHECKS`, or those keyed in ``checks``) on model ``name``.

    Raises ``UnknownModelError`` for an unregistered name and ``ValueError`` for an unknown
    check or a CUDA device on a machine without one. ``on_result`` is called as each check
    finishes (progress display). When no case can be drawn at all (the model does not
    build or sample), the checks after the one that found it are skipped.
    """
    get_model_spec(name)
    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but there is no CUDA device")
    results: list[CheckResult] = []
    for check in _select(checks):
        broken = next((r for r in results if r.no_case), None)
        if broken is not None:
            reason = f"no case could be drawn (see {broken.check.key!r})"
            result = CheckResult(check, "skipped", detail=reason)
        else:
            result = run_check(
                check,
                name,
                device=device,
                max_examples=max_examples,
                derandomize=derandomize,
                configs=configs,
                shrink_seconds=shrink_seconds,
            )
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results


def format_report(name: str, results: Sequence[CheckResult]) -> str:
    """Plain-text report: one line per check, then each failure's counterexample."""
    lines = [f"latentkit checks of {name!r}:"]
    for r in results:
        status = r.status if not r.detail or r.failed else f"{r.status}: {r.detail}"
        lines.append(f"  {r.check.key:<20} {r.examples:>4} examples  {status}")
    for r in results:
        if r.failed:
            lines += ["", f"FAILED {r.check.key} ({r.check.title}): {r.detail}", r.counterexample]
    return "\n".join(lines)


def check_model(name: str, **options) -> list[CheckResult]:
    """Run the checks (options as :func:`run_checks`); raise :class:`CheckFailure` with the
    report, counterexamples included, if any fails. Returns the results otherwise."""
    results = run_checks(name, **options)
    if any(r.failed for r in results):
        raise CheckFailure(format_report(name, results))
    return results
