"""Evaluate a trained model on a data set: the ELBO with its terms, IWAE-k NLL, bits/dim.

Every figure is a mean over examples with its standard error (std / √N), in nats per
example unless the name says bits/dim. The ELBO's terms follow ``latentkit.elbo``::

    ELBO = reconstruction − prior_matching − Σ_l layer_kl[l]        (β = 1)

``layer_kl[l-1]`` is the term of latent z_l, 1 ≤ l < L (a DDPM's per-timestep KL
L_{t-1}, t = l + 1); ``prior_matching`` is the term of z_L. The IWAE-k bound is tighter
(ELBO ≤ IWAE_k ≤ log p(x)), so ``nll = −IWAE_k`` is the best likelihood estimate here.
Bits/dim = nll / (D · ln 2) is reported only when both the data and p(x | z_1) are
discrete (binary data with a Bernoulli likelihood, 8-bit data with the discretized
Normal); a density of continuous data is not a probability and has no honest bits/dim.

Evaluation draws its noise inside ``torch.random.fork_rng`` from its own seed, so it is
reproducible and leaves the caller's random stream (e.g. a training run) untouched.

The report and its table live in :mod:`latentkit.eval_report`, the :class:`Estimate` in
:mod:`latentkit.estimates`; both are importable from here as before.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import attrs
import torch
from torch import Tensor

from latentkit.arguments import check_count, check_seed
from latentkit.bounds import elbo, iwae
from latentkit.chains import LatentModel
from latentkit.conditions import check_condition, restrict
from latentkit.errors import ConfigError, InputError
from latentkit.estimates import Estimate, paired_difference
from latentkit.eval_report import EvalReport, ode_warning, report_table
from latentkit.validation import (
    check_dataset,
    check_likelihood_support,
    check_positive_int,
    check_tensor_kind,
    likelihood_family,
    likelihood_is_discrete,
)
from latentkit.validation import check_finite_rows as check_finite_rows  # its old home

__all__ = [
    "Estimate",
    "EvalReport",
    "check_likelihood_support",
    "default_iwae_k",
    "evaluate",
    "likelihood_family",
    "likelihood_is_discrete",
    "ode_warning",
    "paired_difference",
    "report_table",
]

LONG_CHAIN = 16
"""Chains longer than this (a DDPM's T) get no IWAE by default: its bottom-up Monte Carlo
weights over T layers have so much variance that IWAE-k with any affordable k is no
tighter than the analytic-KL ELBO, at T network calls per sample."""


def default_iwae_k(model: LatentModel) -> int:
    """k for IWAE by default: 100 for short chains, 0 (none) beyond :data:`LONG_CHAIN` layers."""
    return 100 if model.num_layers <= LONG_CHAIN else 0


@contextmanager
def seeded_eval(model: LatentModel, seed: int) -> Iterator[None]:
    """``model`` in ``eval()`` mode under torch's random stream forked and seeded with
    ``seed`` (on the CPU and the model's CUDA device); both restored on exit."""
    ref = model.reference()
    devices = [ref.device.index or 0] if ref.device.type == "cuda" else []
    was_training = model.training
    model.eval()
    try:
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            yield
    finally:
        model.train(was_training)


def _iwae_batch(model: LatentModel, x: Tensor, k: int, draws_per_call: int) -> Tensor:
    """IWAE-k of each row of ``x``, ``[len(x)]``, at most ``draws_per_call`` rows a call:
    for k ≤ draws_per_call whole examples, draws_per_call // k per call (the draws of earlier
    versions); beyond, the whole batch to iwae, which draws every example's samples in chunks.

    One result tensor per batch: many tiny live tensors between large short-lived ones
    fragment glibc's heap (RSS grew without bound with a result per example)."""
    per_call = draws_per_call // k if k <= draws_per_call else x.shape[0]
    out = x.new_empty(x.shape[0])
    for j in range(0, x.shape[0], per_call):
        rows = slice(j, j + per_call)
        out[rows] = iwae(restrict(model, rows), x[rows], k, validate=False, chunk=draws_per_call)
    return out


class _Pass:
    """One pass of :func:`evaluate` over the data: each batch's figures per example, on the
    CPU, the ELBO's summed layer KLs, and the time spent on IWAE."""

    def __init__(self, model: LatentModel, k: int, draws_per_call: int, estimator: str):
        self.model, self.k, self.draws_per_call = model, k, draws_per_call
        self.asked, self.estimator = estimator, estimator  # the name given; the one used
        self.layer_sum, self.iwae_seconds = None, 0.0
        self.monte_carlo: tuple[str, ...] = ()
        self.totals, self.recons, self.priors, self.bounds = [], [], [], []  # [b] per batch

    def add(self, x: Tensor, num_samples: int, c: Tensor | None = None) -> None:
        """One batch (conditions ``c``): its ELBO with the terms, its IWAE-k unless k = 0."""
        model = self.model if c is None else self.model.given(c, validate=False)
        r = elbo(model, x, num_samples=num_samples, estimator=self.asked, validate=False)
        if not self.totals and r.estimator == "analytic":
            self.monte_carlo = _monte_carlo_prior_term(model, x)
        self.estimator = r.estimator
        self.totals.append(r.total.float().cpu())
        self.recons.append(r.reconstruction.float().cpu())
        self.priors.append(r.prior_matching.float().cpu())
        s = r.layer_kl.double().sum(0).cpu()
        self.layer_sum = s if self.layer_sum is None else self.layer_sum + s
        if self.k:
            iwae_start = time.perf_counter()
            out = _iwae_batch(model, x, self.k, self.draws_per_call)
            self.bounds.append(out.float().cpu())  # .cpu() waits for the device
            self.iwae_seconds += time.perf_counter() - iwae_start

    def run(
        self,
        data: Tensor,
        batch_size: int,
        num_samples: int,
        on_batch: Callable[[int], None] | None,
        conditions: Tensor | None = None,
    ) -> None:
        """Every batch of ``data`` (and its ``conditions``), moved to the model's device and
        dtype in turn."""
        ref, n = self.model.reference(), data.shape[0]
        for i in range(0, n, batch_size):
            x = data[i : i + batch_size].to(device=ref.device, dtype=ref.dtype)
            c = None if conditions is None else conditions[i : i + batch_size].to(ref.device)
            self.add(x, num_samples, c)
            if on_batch is not None:
                on_batch(min(i + batch_size, n))

    def report(
        self, n: int, num_samples: int, discrete: bool | None, seed: int, start: float
    ) -> EvalReport:
        """The :class:`EvalReport` of the ``n`` examples; ``seconds`` counted from ``start``."""
        total, recon = torch.cat(self.totals), torch.cat(self.recons)
        layer_kl = (self.layer_sum / n).tolist() if self.layer_sum is not None else []
        is_discrete = likelihood_is_discrete(self.model)
        is_discrete = is_discrete if discrete is None else (discrete and is_discrete)
        return EvalReport(
            num_examples=n,
            data_dims=self.model.data_dims,
            elbo=Estimate.of(total),
            reconstruction=Estimate.of(recon),
            prior_matching=Estimate.of(torch.cat(self.priors)),
            kl=Estimate.of(recon - total),
            layer_kl=layer_kl,
            estimator=self.estimator,
            num_samples=num_samples,
            iwae_k=self.k,
            iwae=Estimate.of(torch.cat(self.bounds)) if self.k else None,
            discrete=is_discrete,
            seed=seed,
            seconds=time.perf_counter() - start,
            iwae_seconds=self.iwae_seconds,
            monte_carlo_terms=self.monte_carlo,
            per_example={"elbo": total, **({"iwae": torch.cat(self.bounds)} if self.k else {})},
        )


def _monte_carlo_prior_term(model: LatentModel, x: Tensor) -> tuple[str, ...]:
    """``("prior_matching",)`` when torch has no closed-form KL(q(z_L|x) ‖ p(z_L)) for this
    model, so the ``analytic`` estimator took the log-ratio at a draw; else ``()``."""
    from torch.distributions import kl_divergence

    q = model.posterior
    try:
        kl_divergence(q.top(q.encode(x[:1])), model.generative.prior(1))
    except NotImplementedError:
        return ("prior_matching",)
    except Exception:  # a chain that cannot be probed this way: say nothing
        return ()
    return ()


@torch.no_grad()
def evaluate(
    model: LatentModel,
    data: Tensor,
    *,
    batch_size: int = 500,
    iwae_k: int | None = None,
    num_samples: int = 1,
    estimator: str = "auto",
    discrete: bool | None = None,
    seed: int = 0,
    draws_per_call: int = 8192,
    on_batch: Callable[[int], None] | None = None,
    ode_examples: int = 0,
    ode_margin: float | None = None,
    ode_options: dict[str, Any] | None = None,
    conditions: Any = None,
) -> EvalReport:
    """The ELBO (with its terms and per-layer KLs) and IWAE-k over ``data``, per example
    (given ``conditions``, one per example, for a conditional model: bounds on log p(x | c)).

    Args:
        model: the model; put in ``eval()`` mode for the call and restored after.
        data: ``[N, *model.data_shape]``; moved to the model's device and dtype batch by batch.
        batch_size: examples per ELBO batch.
        iwae_k: importance samples for the NLL; ``None`` → :func:`default_iwae_k`; 0 → skip.
        num_samples: draws of z per example for the ELBO.
        estimator: ELBO estimator name (``auto`` picks the best the model allows).
        discrete: whether the data are discrete (binary or 8-bit); bits/dim needs it and a
            discrete likelihood. ``None`` trusts the likelihood alone.
        seed: seed of the evaluation's own random stream.
        draws_per_call: the most IWAE rows (examples × importance samples) per network call,
            whatever ``iwae_k`` and ``batch_size``: memory is bounded by it. With
            ``iwae_k ≤ draws_per_call`` whole examples are grouped, ``draws_per_call // k``
            per call; beyond, each batch's samples are drawn in chunks of at most
            ``draws_per_call`` rows and folded in by a streaming logsumexp
            (``iwae(x, k, chunk=draws_per_call)``).
        on_batch: called with the number of examples done after each batch (progress).
        ode_examples: the first this many examples also get the probability-flow ODE
            figure (``report.ode``; models offering the contract of ``latentkit.ode``
            only), one adaptive solve per batch; 0 (default): none, it is slow.
        ode_margin: bits/dim by which an example's ODE figure may exceed its own
            −IWAE_k (or −ELBO) before it is flagged; ``None``:
            ``latentkit.ode.ODE_FLAG_MARGIN`` (1 bit/dim).
        ode_options: passed to :func:`latentkit.ode_log_prob` (``rtol``, ``atol``,
            ``method``, ``divergence``, ...).
        conditions: a conditional model's, one per example: the bounds are of log p(x | c),
            and the ODE figure is the flow of the model given each example's condition.

    The report's ``seconds`` is the whole call; ``iwae_seconds`` its IWAE part.
    """
    k = _check_request(
        model,
        data,
        iwae_k,
        draws_per_call,
        ode_examples,
        ode_margin,
        ode_options,
        batch_size=batch_size,
        num_samples=num_samples,
        seed=seed,
    )
    conditions = _check_conditions(model, conditions, data)
    gathered = _Pass(model, k, draws_per_call, estimator)
    start = time.perf_counter()
    with seeded_eval(model, seed):
        gathered.run(data, batch_size, num_samples, on_batch, conditions)
    report = gathered.report(data.shape[0], num_samples, discrete, seed, start)
    if not ode_examples:
        return report
    return _with_ode(
        report, model, data, ode_examples, ode_margin, ode_options, batch_size, conditions
    )


def _check_request(
    model: LatentModel,
    data: Any,
    iwae_k: int | None,
    draws_per_call: int,
    ode_examples: int,
    ode_margin: float | None,
    ode_options: dict[str, Any] | None,
    *,
    batch_size: int,
    num_samples: int,
    seed: int,
) -> int:
    """Every argument of :func:`evaluate` checked before any work, the data set by the one
    check of training, evaluation and diagnostics (every example); returns IWAE's k."""
    check_tensor_kind(data, "data")
    check_positive_int(batch_size, "batch_size")
    check_positive_int(num_samples, "num_samples")
    check_seed(seed, "seed")
    k = default_iwae_k(model) if iwae_k is None else check_count(iwae_k, "iwae_k", low=0)
    check_positive_int(draws_per_call, "draws_per_call")
    if ode_examples:
        _check_ode_request(model, ode_examples, ode_margin, ode_options, model.reference().dtype)
    else:
        _check_no_ode(ode_examples, ode_margin, ode_options)
    check_dataset(model, data, name="data")
    return k


def _check_conditions(model: LatentModel, conditions: Any, data: Tensor) -> Tensor | None:
    """The conditions of a conditional model's ``data``, checked once (on the CPU), or
    ``None`` for an unconditional model (which refuses them)."""
    spec = model.condition_spec
    if spec is None:
        if conditions is not None:
            raise InputError("conditions given, but the model takes no condition")
        return None
    if conditions is None:
        raise InputError(
            f"the model is conditional on {spec.describe()}: pass conditions= (one per example)"
        )
    like = torch.empty(0, dtype=model.reference().dtype)
    if isinstance(conditions, Tensor):
        conditions = conditions.cpu()
    return check_condition(spec, conditions, data.shape[0], like=like, name="conditions")


def _check_no_ode(examples: Any, margin: Any, options: Any) -> None:
    """No ODE figure asked for (``ode_examples`` 0): its settings are still checked, and
    options for it refused, not ignored."""
    from latentkit.ode import check_margin

    if isinstance(examples, bool) or not isinstance(examples, int):
        raise ConfigError(f"ode_examples must be an int ≥ 0, got {examples!r}")
    if margin is not None:
        check_margin(margin)
    if options is not None:
        raise ConfigError(
            f"ode_options {options!r} given, but ode_examples = 0 asks for no ODE figure"
        )


def _check_ode_request(
    model: LatentModel, examples: Any, margin: Any, options: Any, dtype: torch.dtype
) -> None:
    """The ODE figure's settings, refused before any work."""
    from latentkit.ode import check_margin, check_solver, probability_flow_contract

    if isinstance(examples, bool) or not isinstance(examples, int) or examples < 0:
        raise ConfigError(f"ode_examples must be an int ≥ 0, got {examples!r}")
    reason = probability_flow_contract(model)
    if reason is not None:
        raise InputError(f"ode_examples = {examples}: {reason}")
    if margin is not None:
        check_margin(margin)
    if options is not None and not isinstance(options, dict):
        raise ConfigError(f"ode_options must be a dict, got {type(options).__name__}")
    opts = options or {}
    taken = sorted(set(opts) & {"dequantize", "bin_width", "generator", "validate"})
    if taken:
        raise ConfigError(
            f"ode_options: {taken} are set by the evaluation (the data's bins, its seed)"
        )
    solver = {k: opts[k] for k in ("method", "rtol", "atol", "options") if k in opts}
    check_solver(
        solver.get("method", "dopri5"),
        solver.get("rtol", 1e-5),
        solver.get("atol", 1e-5),
        solver.get("options"),
        dtype,
    )


def _with_ode(
    report: EvalReport,
    model: LatentModel,
    data: Tensor,
    examples: int,
    margin: float | None,
    options: dict[str, Any] | None,
    batch_size: int,
    conditions: Tensor | None,
) -> EvalReport:
    """``report`` with its ODE figure on the first ``examples`` examples (a conditional
    model's: the flow given each example's condition), each compared with its own −IWAE_k
    (the tighter bound) or −ELBO; the time spent is added to ``seconds``."""
    from latentkit.ode import ODE_FLAG_MARGIN, ode_figure

    start = time.perf_counter()
    m = min(examples, report.num_examples)
    name = "iwae" if "iwae" in report.per_example else "elbo"
    bound = -report.per_example[name][:m].double()
    reference = f"−IWAE_{report.iwae_k}" if name == "iwae" else "−ELBO"
    with seeded_eval(model, report.seed):
        figure = ode_figure(
            model,
            data[:m],
            bound,
            discrete=report.discrete,
            batch_size=batch_size,
            seed=report.seed,
            margin=ODE_FLAG_MARGIN if margin is None else margin,
            reference=reference,
            conditions=None if conditions is None else conditions[:m],
            **(options or {}),
        )
    seconds = report.seconds + time.perf_counter() - start
    return attrs.evolve(report, ode=figure, seconds=seconds)
