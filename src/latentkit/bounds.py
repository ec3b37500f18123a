"""The bounds a user asks for: ELBO (and ELBO_β), IWAE-k, bits per dimension.

All return per-example ``[batch]`` tensors in nats (bits/dim excepted); reduce them
yourself. Notation and derivations: ``docs/bounds.md``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import NamedTuple

import torch
from torch import Tensor

from latentkit.arguments import check_count, check_flag, check_model
from latentkit.chains import LatentModel
from latentkit.conditions import bind, restrict
from latentkit.errors import InputError
from latentkit.estimators import Draw, Estimator, monte_carlo_estimator, resolve_estimator
from latentkit.estimators import _check as check_term
from latentkit.validation import check_model_input, check_positive_int

__all__ = ["ElboResult", "bits_per_dim", "elbo", "iwae"]


class ElboResult(NamedTuple):
    """The bound and its named terms, each ``[batch]`` (``layer_kl``: ``[batch, L-1]``).

    ``total = reconstruction − beta · (prior_matching + layer_kl.sum(-1))``, averaged over
    ``num_samples`` draws; ``samples`` keeps each draw's total, ``[num_samples, batch]``.
    (A NamedTuple so that torch.compile traces code returning it without a graph break.)
    """

    total: Tensor
    reconstruction: Tensor
    prior_matching: Tensor
    layer_kl: Tensor
    samples: Tensor
    beta: float
    estimator: str

    @property
    def kl(self) -> Tensor:
        """Σ of every KL term (prior matching and all layers), ``[batch]``."""
        return Draw(self.reconstruction, self.prior_matching, self.layer_kl).kl()

    @property
    def terms(self) -> dict[str, Tensor]:
        """Named ``[batch]`` terms: reconstruction, prior_matching, kl_1 … kl_{L-1}."""
        out = {"reconstruction": self.reconstruction, "prior_matching": self.prior_matching}
        for i in range(self.layer_kl.shape[-1]):
            out[f"kl_{i + 1}"] = self.layer_kl[:, i]
        return out


def elbo(
    model: LatentModel,
    x: Tensor,
    *,
    beta: float = 1.0,
    num_samples: int = 1,
    estimator: str = "auto",
    validate: bool = True,
    condition=None,
    **estimator_options,
) -> ElboResult:
    """ELBO_β(x) = E_q[log p(x|z_1)] − β·Σ KL terms, per example, averaged over draws.

    Args:
        model: a :class:`~latentkit.LatentModel`.
        x: ``[batch, *model.data_shape]``, same dtype and device as the model.
        beta: weight of the KL terms; 1 gives the ELBO, β > 1 a looser bound (β-VAE).
        num_samples: draws of z per example; terms are averaged over them.
        estimator: ``auto`` or a name from :data:`latentkit.estimators.ESTIMATORS`.
        validate: check ``x`` (shape, dtype, device, finiteness, inside p(x|z_1)'s support) first.
        condition: a conditional model's conditions, one per example (an ``int`` for all):
            the bound is then ELBO(x | c) ≤ log p(x | c) (``latentkit.conditions``).
        **estimator_options: passed to the estimator (e.g. ``pairs_per_call``).
    """
    check_model(model)
    if check_flag(validate, "validate"):
        check_model_input(model, x, name="x")
    model = bind(model, condition, x.shape[0])
    check_positive_int(num_samples, "num_samples")
    beta = _check_beta(beta)
    est = resolve_estimator(model, estimator, **estimator_options)
    s, n = num_samples, x.shape[0]
    if s == 1:  # no draws axis to average over: skip the reshapes and means
        draw = est(model, x)
        total = draw.total(beta)
        return ElboResult(
            total=total,
            reconstruction=draw.reconstruction,
            prior_matching=draw.prior_matching,
            layer_kl=draw.layer_kl,
            samples=total.unsqueeze(0),
            beta=beta,
            estimator=est.name,
        )
    draw = est(model, x.repeat(s, *([1] * (x.ndim - 1))))  # "b ... -> (s b) ..."

    def per_sample(t: Tensor) -> Tensor:
        return t.unflatten(0, (s, n))  # "(s b) ... -> s b ..."

    recon, prior, layer = map(per_sample, (draw.reconstruction, draw.prior_matching, draw.layer_kl))
    samples = per_sample(draw.total(beta))
    return ElboResult(
        total=samples.mean(0),
        reconstruction=recon.mean(0),
        prior_matching=prior.mean(0),
        layer_kl=layer.mean(0),
        samples=samples,
        beta=beta,
        estimator=est.name,
    )


def log_weights(model: LatentModel, x: Tensor, k: int) -> Tensor:
    """log w = log p(x, z) − log q(z|x) for k draws z ~ q(·|x): ``[k, batch]``.

    With one latent layer, q(z|x) is built once per example and its k draws are taken from
    it together (``rsample((k,))``: the same random numbers, in the same order, as k·batch
    single draws); deeper chains encode ``x`` once per draw through the engine's estimator.
    """
    est = monte_carlo_estimator(model)
    if model.num_layers == 1:
        log_w = _one_layer_log_weights(model, x, k)
        if log_w is not None:
            return log_w
    return _estimator_log_weights(est, model, x, k)


def _estimator_log_weights(est: Estimator, model: LatentModel, x: Tensor, k: int) -> Tensor:
    # "b ... -> (k b) ..." and back "(k b) -> k b", as plain reshapes: IWAE calls this per chunk.
    draw = est(model, x.repeat(k, *([1] * (x.ndim - 1))))
    return draw.total().view(k, x.shape[0])


def _one_layer_log_weights(model: LatentModel, x: Tensor, k: int) -> Tensor | None:
    """log p(x|z) + log p(z) − log q(z|x) for k draws from one q(z|x) per example, or
    ``None`` when q's distribution cannot draw k at once (its batch is not ``[batch]``, or
    it draws with its density, ``rsample_and_log_prob``): then the estimator path runs."""
    p, q, n = model.generative, model.posterior, x.shape[0]
    h = q.encode(x)
    q_z = q.first(h) if q.bottom_up else q.top(h)
    if q_z.batch_shape != (n,) or getattr(q_z, "rsample_and_log_prob", None) is not None:
        return None
    z = q_z.rsample((k,)) if q_z.has_rsample else q_z.sample((k,))  # [k, n, *event]
    log_q = q_z.log_prob(z).reshape(k * n)
    z = z.reshape(k * n, *z.shape[2:])
    xs = x.repeat(k, *([1] * (x.ndim - 1)))
    recon = check_term(p.likelihood(z).log_prob(xs), k * n, "log p(x|z_1)")
    log_ratio = check_term(log_q - p.prior(k * n).log_prob(z), k * n, "log q − log p of z_1")
    return (recon - log_ratio).view(k, n)


def log_weight_chunks(
    model: LatentModel, x: Tensor, k: int, chunk: int
) -> Iterator[tuple[slice, Tensor]]:
    """The k log-weights of every example of ``x``, at most ``chunk`` (example × sample)
    rows per network call, in the order :func:`iwae` draws them with ``chunk``.

    Yields ``(examples, log_w)``: ``log_w`` is ``[c, group]``, the next c draws of the
    ``group`` examples ``x[examples]`` (a slice). Examples go in the fewest groups of at most
    ``chunk``, split evenly; each group's k draws in the fewest calls of at most
    ``chunk // group`` samples, split evenly, so that ``c · group ≤ chunk`` and a group's
    chunks stack along dim 0 into its ``[k, group]`` log-weights. Draws made this way are
    i.i.d. from q like :func:`log_weights`' but not the same numbers (the random stream is
    consumed in another order), except when ``batch · k ≤ chunk``: one call, the same draws.
    """
    n = x.shape[0]
    group = _balanced(n, chunk)
    for start in range(0, n, group):
        examples = slice(start, min(start + group, n))
        c = _balanced(k, max(1, chunk // (examples.stop - start)))
        for done in range(0, k, c):
            part = restrict(model, examples)
            yield examples, log_weights(part, x[examples], min(c, k - done))


def _balanced(total: int, most: int) -> int:
    """The part size that splits ``total`` into as few parts of ≤ ``most`` as possible,
    as evenly as possible (all parts of this size but the last, which may be smaller)."""
    parts = -(-total // most)
    return -(-total // parts)


class RunningLogSumExp:
    """logsumexp along dim 0 of a stream of ``[c, n]`` chunks, with ``[n]`` memory.

    Keeps the running maximum m and s = Σ exp(log w − m) per column; a chunk with a larger
    maximum rescales s by exp(m_old − m_new) ≤ 1, so no exp ever sees a positive argument
    (except beside a +inf, where the result is +inf anyway). Equal to ``torch.logsumexp``
    of the concatenated chunks up to float round-off, with its conventions: all −inf gives
    −inf, any +inf gives +inf, any NaN gives NaN.
    """

    def __init__(self, n: int, *, dtype: torch.dtype, device: torch.device | str) -> None:
        self.max = torch.full((n,), -math.inf, dtype=dtype, device=device)
        self.sum = torch.zeros(n, dtype=dtype, device=device)

    @staticmethod
    def _shift(m: Tensor) -> Tensor:
        # torch.logsumexp's convention: shift by the max where it is finite, else by 0.
        return torch.where(torch.isfinite(m), m, torch.zeros_like(m))

    def add(self, log_w: Tensor) -> None:
        """Fold in a ``[c, n]`` chunk (c ≥ 1)."""
        old, new = self.max, torch.maximum(self.max, log_w.amax(dim=0))
        shift_old, shift = self._shift(old), self._shift(new)
        # s = 0 exactly when every earlier weight was −inf (else the max term adds exp(0) = 1);
        # the clamp keeps that 0 · exp(·) finite and changes nothing elsewhere that matters.
        rescale = torch.exp(torch.clamp(shift_old - shift, max=0.0))
        self.sum = self.sum * rescale + torch.exp(log_w - shift).sum(dim=0)
        self.max = new

    def result(self) -> Tensor:
        """log Σ exp(log w) over every chunk so far, ``[n]``."""
        return torch.log(self.sum) + self._shift(self.max)


def iwae(
    model: LatentModel,
    x: Tensor,
    k: int,
    *,
    validate: bool = True,
    chunk: int | None = None,
    condition=None,
) -> Tensor:
    """IWAE_k(x) = log (1/k) Σ_i p(x, z_i)/q(z_i|x), z_i ~ q(·|x) i.i.d., ``[batch]``.

    Computed as logsumexp(log w) − log k, never as exp then log. IWAE_1 is a one-sample
    Monte Carlo ELBO; IWAE_k rises towards log p(x) as k grows (Burda et al., 2016).

    Args:
        model: a :class:`~latentkit.LatentModel`.
        x: ``[batch, *model.data_shape]``, same dtype and device as the model.
        k: importance samples per example.
        validate: check ``x`` (shape, dtype, device, finiteness, inside p(x|z_1)'s support) first.
        chunk: ``None`` draws all ``batch · k`` samples in one network call. An int ≥ 1 is
            the most (example × sample) rows per network call, whatever ``k`` and
            ``batch``: examples are split into groups of at most ``chunk`` and each
            group's samples into calls of at most ``chunk // group`` samples
            (:func:`log_weight_chunks`), folded in by a streaming logsumexp
            (:class:`RunningLogSumExp`) that keeps ``[group]`` running sums, so memory is
            bounded by ``chunk`` rows under
            ``torch.no_grad()`` (with gradients, autograd keeps every chunk's graph). Same
            result as ``chunk=None`` on the same draws, to float round-off; the draws
            themselves are the same only when ``batch · k ≤ chunk`` (a single call).
        condition: a conditional model's conditions, one per example (an ``int`` for all):
            the bound is then on log p(x | c).
    """
    check_model(model)
    if check_flag(validate, "validate"):
        check_model_input(model, x, name="x")
    model = bind(model, condition, x.shape[0])
    check_positive_int(k, "k")
    if chunk is not None:
        check_positive_int(chunk, "chunk")
    if chunk is None or x.shape[0] * k <= chunk:
        return torch.logsumexp(log_weights(model, x, k), dim=0) - math.log(k)
    groups: list[Tensor] = []
    acc, current = None, None
    for examples, log_w in log_weight_chunks(model, x, k, chunk):
        if examples != current:  # a new group of examples: the last one is complete
            if acc is not None:
                groups.append(acc.result())
            acc = RunningLogSumExp(log_w.shape[1], dtype=log_w.dtype, device=log_w.device)
            current = examples
        acc.add(log_w)
    groups.append(acc.result())
    return torch.cat(groups) - math.log(k)


def bits_per_dim(nats: Tensor, data_dims: int) -> Tensor:
    """Convert a per-example log-likelihood bound in nats to bits/dim: −nats / (D · ln 2).

    Meaningful as a bound on a discrete likelihood only when the model's p(x|z_1) is
    discrete (Bernoulli, or the discretized Normal for 8-bit data).
    """
    if not isinstance(nats, Tensor):
        raise InputError(f"bits_per_dim: nats must be a torch.Tensor, got {type(nats).__name__}")
    return -nats / (check_count(data_dims, "bits_per_dim: data_dims") * math.log(2.0))


def _check_beta(beta: float) -> float:
    # Comparisons, not math.isfinite: under torch.compile(dynamic=True) a float argument is
    # symbolic, and a comparison becomes a guard where isfinite would break the graph.
    # NaN fails both comparisons of the chain, ±inf one of them.
    if (
        isinstance(beta, bool)
        or not isinstance(beta, (int, float))
        or not -math.inf < beta < math.inf
    ):
        raise InputError(f"beta must be a finite number ≥ 0, got {beta!r}")
    if beta < 0:
        raise InputError(f"beta must be ≥ 0 (it weighs KL terms), got {beta}")
    return float(beta)
