"""The bound's terms, as every estimator and objective computes them: :class:`Draw` (one pass's
terms before β), a draw with its density, and each layer's KL term in closed form where
torch has it, else the log-ratio at the draw (DESIGN §7, identity 10). The estimators that
assemble them are in :mod:`latentkit.estimators`."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor
from torch.distributions import Distribution, Independent

from latentkit.arguments import check_flag, check_model
from latentkit.chains import LatentModel
from latentkit.distributions import closed_form_kl
from latentkit.errors import EstimatorError, InputError

__all__ = [
    "Draw",
    "draw_with_log_prob",
    "end_terms",
    "kl_or_log_ratio",
    "layer_term",
    "per_dimension_kl",
]


class Draw(NamedTuple):
    """One estimator pass over n examples: the bound's terms before β is applied.

    A NamedTuple rather than an attrs class: torch.compile traces it without a graph break.
    :meth:`total` is the one place where a bound is assembled from its terms
    (``latentkit.elbo``, ``latentkit.iwae``, the evaluation and every objective use it).
    """

    reconstruction: Tensor  # [n]
    prior_matching: Tensor  # [n]
    layer_kl: Tensor  # [n, L-1]
    per_dimension: tuple[Tensor, ...] | None = None
    """With ``per_dimension=True``: the KL term of each scalar of z_1..z_L, one ``[n, d_l]``
    tensor per layer (z_L last), each summing over its last axis to that layer's term."""

    def kl(self) -> Tensor:
        """Σ of every KL term (prior matching and all layers), ``[n]``."""
        if self.layer_kl.shape[-1] == 0:
            return self.prior_matching
        return self.prior_matching + self.layer_kl.sum(-1)

    def total(self, beta: float | Tensor = 1.0) -> Tensor:
        """ELBO_β = reconstruction − β · (prior_matching + Σ_l layer_kl[:, l]), ``[n]``."""
        if not isinstance(beta, Tensor) and beta == 1.0:  # one multiply fewer, forward and back
            return self.reconstruction - self.kl()
        return self.reconstruction - beta * self.kl()


def _draw(d: Distribution) -> Tensor:
    """z ~ d, reparameterized where d allows it (discrete latents fall back to sample())."""
    return d.rsample() if d.has_rsample else d.sample()


_DISTRIBUTIONS = ("q", "p", "d", "transition")
_OPTIONAL = ("log_q", "z", "transition")


def _kinds(where: str, **given: object) -> None:
    """Each argument of a building block of the bounds is of its kind (a Distribution for
    ``q``, ``p``, ``d``, ``transition``; else a Tensor; ``None`` allowed where optional),
    else an InputError naming it: ``isinstance`` only, these run on every step."""
    for name, value in given.items():
        if value is None and name in _OPTIONAL:
            continue
        kind = Distribution if name in _DISTRIBUTIONS else Tensor
        if not isinstance(value, kind):
            what = "torch.distributions.Distribution" if kind is Distribution else "torch.Tensor"
            raise InputError(f"{where}: {name} must be a {what}, got {type(value).__name__}")


def draw_with_log_prob(d: Distribution) -> tuple[Tensor, Tensor | None]:
    """A draw z ~ d and, when ``d`` defines ``rsample_and_log_prob()``, log d(z) computed with
    the draw (a flow's density without its inverse); else ``(z, None)``: the caller then
    evaluates ``d.log_prob(z)`` if it needs it."""
    _kinds("draw_with_log_prob", d=d)
    both = getattr(d, "rsample_and_log_prob", None)
    if both is not None:
        return both()
    return _draw(d), None


def _log_ratio_at_draw(q: Distribution, p: Distribution) -> Tensor:
    """log q(z) − log p(z) at one z ~ q: an unbiased estimate of KL(q ‖ p)."""
    z, log_q = draw_with_log_prob(q)
    return kl_or_log_ratio(q, p, z, analytic=False, log_q=log_q)


def _check(value: Tensor, n: int, what: str) -> Tensor:
    """``value`` when it is ``[n]``, one term per example; else an EstimatorError naming it."""
    if value.shape != (n,):
        raise EstimatorError(
            f"{what} has shape {tuple(value.shape)}, expected ({n},): per-example distributions "
            "must put every non-batch dimension in event_shape (wrap them in "
            "torch.distributions.Independent)"
        )
    return value


def kl_or_log_ratio(
    q: Distribution, p: Distribution, z: Tensor, *, analytic: bool, log_q: Tensor | None = None
) -> Tensor:
    """KL(q ‖ p) in closed form when ``analytic`` and torch knows it; else log q(z) − log p(z).

    The log-ratio at a draw z ~ q is an unbiased estimate of the KL (DESIGN §7, identity 10).
    ``log_q``: log q(z) when the draw came with it (:func:`draw_with_log_prob`); then
    ``q.log_prob`` is not called.
    """
    _kinds("kl_or_log_ratio", q=q, p=p, z=z, log_q=log_q)
    if check_flag(analytic, "kl_or_log_ratio: analytic"):
        try:
            return closed_form_kl(q, p)
        except NotImplementedError:
            pass
    return (q.log_prob(z) if log_q is None else log_q) - p.log_prob(z)


def _factors(d: Distribution) -> Distribution:
    """The factorized base of an ``Independent`` (its ``log_prob`` is per scalar), or ``d``
    itself when it is already per scalar (no event dimensions)."""
    while isinstance(d, Independent):
        d = d.base_dist
    if d.event_shape != ():
        raise EstimatorError(
            f"per-dimension KL terms need factorized distributions (an Independent over a "
            f"per-scalar base); {type(d).__name__} has event_shape {tuple(d.event_shape)}"
        )
    return d


def per_dimension_kl(q: Distribution, p: Distribution, z: Tensor, *, analytic: bool) -> Tensor:
    """The KL of each scalar of a factorized layer, ``[n, d]`` (d = the event's size): the
    closed form per scalar when ``analytic`` and torch knows it, else the per-scalar
    log-ratio at the draw ``z``. Sums over its last axis to :func:`kl_or_log_ratio`."""
    _kinds("per_dimension_kl", q=q, p=p, z=z)
    check_flag(analytic, "per_dimension_kl: analytic")
    qb, pb = _factors(q), _factors(p)
    n = z.shape[0]
    if analytic:
        try:
            return closed_form_kl(qb, pb).expand(z.shape).reshape(n, -1)
        except NotImplementedError:
            pass
    return (qb.log_prob(z) - pb.log_prob(z)).reshape(n, -1)


def _closed_form_first(q: Distribution, p: Distribution) -> Tensor:
    """KL(q ‖ p) in closed form where torch has it, else the log-ratio at one draw from q:
    no draw is made only to be thrown away."""
    try:
        return closed_form_kl(q, p)
    except NotImplementedError:
        return _log_ratio_at_draw(q, p)


def _layer_batched(model: LatentModel, x: Tensor, where: str, **tensors: Tensor) -> None:
    """A model whose posterior chain is layer-batched, and tensors, else a typed error."""
    check_model(model, where)
    _kinds(where, x=x, **tensors)
    if not model.posterior.layer_batched:
        raise EstimatorError(
            f"{where} needs a layer-batched posterior chain (q.marginal, q.down by layer "
            f"index); {type(model.posterior).__name__} is not"
        )


def end_terms(model: LatentModel, x: Tensor, h: object = None) -> tuple[Tensor, Tensor]:
    """The ends of a layer-batched bound, ``[n]`` each: the reconstruction log p(x | z_1) at
    z_1 ~ q(z_1 | x), and the prior matching KL(q(z_L | x) ‖ p(z_L)) (closed form where torch
    has it, else a log-ratio at one draw). ``h``: ``q.encode(x)`` if already computed."""
    _layer_batched(model, x, "end_terms")
    p, q, n = model.generative, model.posterior, x.shape[0]
    h = q.encode(x) if h is None else h
    L = model.num_layers
    ones = torch.ones(n, dtype=torch.long, device=x.device)
    z1 = _draw(q.marginal(ones, h))
    recon = _check(p.likelihood(z1).log_prob(x), n, "log p(x|z_1)")
    q_top, prior_L = q.marginal(ones * L, h), p.prior(n)
    return recon, _check(_closed_form_first(q_top, prior_L), n, "prior matching")


def layer_term(
    model: LatentModel,
    x: Tensor,
    l: Tensor,
    *,
    h: object = None,
    z: Tensor | None = None,
    transition: Distribution | None = None,
) -> Tensor:
    """The term of latent z_{l-1}, one layer per example (``l``: ``LongTensor[n]`` in 2..L):
    KL(q(z_{l-1} | z_l, x) ‖ p(z_{l-1} | z_l)) at z_l ~ q(z_l | x), ``[n]``.

    Objectives that need the network's output for more than this term pass their own draw
    ``z`` of z_l and the ``transition`` p(z_{l-1} | z_l) they built from it (a DDPM's hybrid
    loss stops the mean's gradient there); ``h`` is ``q.encode(x)`` if already computed.
    """
    _layer_batched(model, x, "layer_term", l=l)
    _kinds("layer_term", z=z, transition=transition)
    p, q = model.generative, model.posterior
    h = q.encode(x) if h is None else h
    z = _draw(q.marginal(l, h)) if z is None else z
    q_l = q.down(l, z, h)
    p_l = p.transition(l, z) if transition is None else transition
    return _check(_closed_form_first(q_l, p_l), x.shape[0], "layer-batched KL term")
