"""Distributions the bounds are built from: torch.distributions, plus what torch lacks.

Everything here returns per-example distributions: ``batch_shape == [batch]`` and the
data or latent dimensions in ``event_shape``, so ``log_prob`` and ``kl_divergence``
give ``[batch]`` tensors (STYLE §2).

Added to torch's KL table with ``register_kl`` and to latentkit's own
(:func:`register_closed_form`, which :func:`closed_form_kl` dispatches on while
``torch.compile`` traces a bound):

* ``KL(MultivariateNormal ‖ Independent(Normal, 1))`` and the reverse, used when the
  exact linear-Gaussian posterior (full covariance) is compared with a model's
  diagonal transitions.
* ``KL(DiagNormal ‖ DiagNormal)`` and ``KL(DiagNormal ‖ StandardNormal)``: the closed
  forms of torch's ``Independent``/``Normal`` pair, summed over the event in one call
  instead of three dispatches, and against N(0, I) without the terms that are constants
  (``½(μ² + σ² − 1) − log σ``). ``diag_normal`` and ``standard_normal`` build them; they
  are ``Independent(Normal)`` in every other respect.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.distributions import (
    Distribution,
    Independent,
    MultivariateNormal,
    Normal,
    kl_divergence,
    register_kl,
)

from latentkit.arguments import check_count
from latentkit.discretized import DiscretizedNormal, LevelGrid, log1mexp
from latentkit.errors import InputError

__all__ = [
    "DiagNormal",
    "DiscretizedNormal",
    "LevelGrid",
    "StandardNormal",
    "closed_form_kl",
    "diag_normal",
    "log1mexp",
    "register_closed_form",
    "standard_normal",
    "to_multivariate",
]


class DiagNormal(Independent):
    """``Independent(Normal(loc, scale), event_dims)``, as :func:`diag_normal` builds it.

    The same distribution as torch's pair; its type lets ``kl_divergence`` take the one-call
    closed forms registered below. One draw (``rsample()``) makes the operator calls torch's
    makes, with fewer Python frames around them."""

    def rsample(self, sample_shape: torch.Size | tuple = ()) -> Tensor:
        base = self.base_dist
        loc, scale = base.loc, base.scale
        if sample_shape or loc.shape != scale.shape:
            return super().rsample(sample_shape)
        # empty().normal_() as torch draws, not torch.randn: the same numbers eagerly, but
        # inductor lowers randn to its own generator, which made a compiled DDPM bound 2.6×
        # slower on CPU (normal_ stays a call to torch's kernel).
        eps = torch.empty(loc.shape, dtype=loc.dtype, device=loc.device).normal_()
        return loc + eps * scale


class StandardNormal(DiagNormal):
    """N(0, I) over ``event_shape``, batched: what :func:`standard_normal` builds.

    Its ``loc`` and ``scale`` (expanded scalars 0 and 1) are made only when something reads
    ``base_dist``: ``KL(q ‖ N(0, I))`` never does, so a prior used only in that closed form
    costs no tensor at all."""

    @property
    def base_dist(self) -> Normal:
        base = self.__dict__.get("_base")
        if base is None:
            like = self._like
            shape = self._batch_shape + self._event_shape
            zero, one = like.new_zeros(()), like.new_ones(())
            base = self._base = _normal(zero.expand(shape), one.expand(shape))
        return base

    @base_dist.setter
    def base_dist(self, value: Normal) -> None:  # Independent.expand sets it
        self.__dict__["_base"] = value


def diag_normal(loc: Tensor, scale: Tensor, event_dims: int = 1) -> DiagNormal:
    """N(loc, diag(scale²)) with the trailing ``event_dims`` dimensions as the event.

    Built without argument validation (inputs are checked once at the public entry points,
    ``latentkit.validation``) and, when ``loc`` and ``scale`` already share a shape, without
    ``broadcast_all``: the same ``Normal`` and ``Independent`` objects, less per-call work.
    Its own arguments' kinds are checked (``isinstance``, no read-back: it runs per step).
    """
    _tensors("diag_normal", loc=loc)
    if isinstance(scale, bool) or not isinstance(scale, (Tensor, int, float)):
        raise InputError(f"diag_normal: scale must be a torch.Tensor or a number, got {scale!r}")
    ndim = max(loc.ndim, scale.ndim if isinstance(scale, Tensor) else 0)
    if isinstance(event_dims, bool) or not isinstance(event_dims, int):
        raise InputError(f"diag_normal: event_dims must be an int, got {event_dims!r}")
    if not 0 <= event_dims <= ndim:
        raise InputError(
            f"diag_normal: event_dims (Independent's reinterpreted_batch_ndims) must be in "
            f"[0, {ndim}] (the dimensions of loc and scale), got {event_dims}"
        )
    return _diag(DiagNormal, loc, scale, event_dims)


def standard_normal(
    n: int, event_shape: tuple[int, ...], *, like: Tensor, event_dims: int | None = None
) -> StandardNormal:
    """N(0, I) over ``event_shape`` for a batch of ``n``, in ``like``'s dtype and device.

    ``loc`` and ``scale`` are expanded scalars (no ``[n, *event_shape]`` tensor is made);
    ``event_dims`` defaults to all of ``event_shape``."""
    check_count(n, "standard_normal: n")
    _tensors("standard_normal", like=like)
    shape = torch.Size((n, *event_shape))
    dims = len(event_shape) if event_dims is None else event_dims
    out = StandardNormal.__new__(StandardNormal)
    out._like, out.reinterpreted_batch_ndims = like, dims
    cut = len(shape) - dims
    Distribution.__init__(out, shape[:cut], shape[cut:], validate_args=False)
    return out


def _tensors(where: str, **given: object) -> None:
    for name, value in given.items():
        if not isinstance(value, Tensor):
            raise InputError(f"{where}: {name} must be a torch.Tensor, got {type(value).__name__}")


def _normal(loc: Tensor, scale: Tensor) -> Normal:
    """``Normal(loc, scale)`` of two same-shaped tensors, without validation or broadcasting."""
    base = Normal.__new__(Normal)
    base.loc, base.scale = loc, scale
    Distribution.__init__(base, loc.shape, validate_args=False)
    return base


def _diag(cls: type[DiagNormal], loc: Tensor, scale: Tensor, event_dims: int) -> DiagNormal:
    if not (isinstance(scale, Tensor) and loc.shape == scale.shape and 0 <= event_dims <= loc.ndim):
        return cls(Normal(loc, scale, validate_args=False), event_dims, validate_args=False)
    base = _normal(loc, scale)
    # What Independent.__init__ sets, without its shape arithmetic on torch.Size objects.
    out = cls.__new__(cls)
    out.base_dist, out.reinterpreted_batch_ndims = base, event_dims
    cut = loc.ndim - event_dims
    Distribution.__init__(out, loc.shape[:cut], loc.shape[cut:], validate_args=False)
    return out


_CLOSED_FORMS: dict[tuple[type, type], Callable[[Any, Any], Tensor]] = {}
"""latentkit's own closed-form KLs by (type of q, type of p); each is in torch's table too."""


def register_closed_form(type_q: type, type_p: type) -> Callable:
    """Decorator: ``fn(q, p)`` is KL(q ‖ p) in closed form for q of ``type_q`` and p of
    ``type_p`` (subclasses included). Registered with torch (``register_kl``, so
    ``torch.distributions.kl_divergence`` finds it) and in latentkit's own table, which a
    bound being compiled dispatches on (:func:`closed_form_kl`)."""
    for name, value in (("type_q", type_q), ("type_p", type_p)):
        if not (isinstance(value, type) and issubclass(value, Distribution)):
            raise InputError(
                f"register_closed_form: {name} must be a subclass of "
                f"torch.distributions.Distribution, got {value!r}"
            )

    def register(fn: Callable[[Any, Any], Tensor]) -> Callable[[Any, Any], Tensor]:
        _CLOSED_FORMS[type_q, type_p] = fn
        return register_kl(type_q, type_p)(fn)

    return register


def to_multivariate(p: Independent) -> MultivariateNormal:
    """Independent(Normal, 1) as the equivalent MultivariateNormal (diagonal covariance);
    ``NotImplementedError`` for another ``Independent`` (a KL's dispatch falls back then)."""
    if not isinstance(p, Independent):
        raise InputError(
            f"to_multivariate: p must be an Independent(Normal, 1), got {type(p).__name__}"
        )
    if not (isinstance(p.base_dist, Normal) and p.reinterpreted_batch_ndims == 1):
        raise NotImplementedError("only Independent(Normal, 1) converts to MultivariateNormal")
    return MultivariateNormal(p.base_dist.loc, scale_tril=torch.diag_embed(p.base_dist.scale))


@register_closed_form(MultivariateNormal, Independent)
def _kl_mvn_diag(q: MultivariateNormal, p: Independent) -> Tensor:
    return kl_divergence(q, to_multivariate(p))


@register_closed_form(Independent, MultivariateNormal)
def _kl_diag_mvn(q: Independent, p: MultivariateNormal) -> Tensor:
    return kl_divergence(to_multivariate(q), p)


def _sum_event(kl: Tensor, event_dims: int) -> Tensor:
    if event_dims == 0:
        return kl
    if event_dims == 1:
        return kl.sum(-1)
    return kl.flatten(-event_dims).sum(-1)


def _compact(t: Tensor) -> Tensor:
    """The tensor ``t`` was expanded from: a view of size 1 wherever ``t``'s stride is 0 (a
    broadcast dimension)."""
    return t[tuple(slice(None) if s else slice(0, 1) for s in t.stride())]


@register_closed_form(DiagNormal, DiagNormal)
def _kl_diag_diag(q: DiagNormal, p: DiagNormal) -> Tensor:
    # torch's Normal–Normal closed form, summed over the event: ½(r + t − 1 − log r) with
    # r = σ_q²/σ_p², t = (μ_q − μ_p)²/σ_p².
    event_dims = q.reinterpreted_batch_ndims
    if event_dims != p.reinterpreted_batch_ndims:
        raise NotImplementedError
    qb, pb = q.base_dist, p.base_dist
    q_scale, p_scale = qb.scale, pb.scale
    contiguous = q_scale.is_contiguous() and p_scale.is_contiguous()  # the common case, fast
    if not contiguous and (0 in q_scale.stride() or 0 in p_scale.stride()):
        # Scales expanded from fewer values (a diffusion's one σ per example: stride 0 along
        # the event) give r and log r on those values alone; each stands for ``repeats``
        # event positions: ½Σ(r − 1 − log r) over the event = repeats · ½Σ over the compact
        # event. The event-wide work is then t alone: 4 passes over [N, D] instead of 11.
        q_scale, p_scale = _compact(q_scale), _compact(p_scale)
    var_ratio = (q_scale / p_scale).pow(2)
    t = ((qb.loc - pb.loc) / p_scale).pow(2)
    if var_ratio.shape == qb.loc.shape:  # nothing compact (this form is right either way)
        return _sum_event(0.5 * (var_ratio + t - 1 - var_ratio.log()), event_dims)
    # (a base Normal's loc and scale share one shape, as diag_normal builds it)
    full = torch.broadcast_shapes(qb.loc.shape, pb.loc.shape)
    ratio_event = var_ratio.shape[var_ratio.ndim - event_dims :] if event_dims else ()
    repeats = math.prod(full[len(full) - event_dims :]) // math.prod(ratio_event)
    spread = _sum_event(var_ratio - 1 - var_ratio.log(), event_dims)
    return 0.5 * (_sum_event(t, event_dims) + repeats * spread)


@register_closed_form(DiagNormal, StandardNormal)
def _kl_diag_standard(q: DiagNormal, p: StandardNormal) -> Tensor:
    # KL(N(μ, σ²) ‖ N(0, 1)) = ½(μ² + σ² − 1) − log σ per scalar.
    if q.reinterpreted_batch_ndims != p.reinterpreted_batch_ndims:
        raise NotImplementedError
    loc, scale = q.base_dist.loc, q.base_dist.scale
    if loc.shape != p.batch_shape + p.event_shape:  # they broadcast: the general form does that
        return _kl_diag_diag(q, p)
    kl = 0.5 * (loc.pow(2) + scale.pow(2) - 1) - scale.log()
    return _sum_event(kl, q.reinterpreted_batch_ndims)


def closed_form_kl(q: Distribution, p: Distribution) -> Tensor:
    """KL(q ‖ p) in closed form: ``torch.distributions.kl_divergence(q, p)``, through a
    dispatch that ``torch.compile`` traces. Raises ``NotImplementedError`` where no closed
    form is registered.

    Eagerly it is ``kl_divergence`` itself (torch's dispatch and its cache). While a bound
    is traced, latentkit's own closed forms (:func:`register_closed_form`) are found by
    walking the two MROs over latentkit's table (the pair most specific in q, then in p:
    torch's choice under single inheritance), without torch's cache: torch's first call for
    a pair of types takes ``min`` over a generator, which Dynamo cannot trace, and the graph
    would guard on a cache that eager calls fill. A pair only torch knows (a plugin's
    ``Categorical`` ‖ ``Categorical``) goes to ``kl_divergence``: traced through torch's own
    dispatch and cache, so that graph is compiled again when torch's cache gains a pair;
    registering the closed form with :func:`register_closed_form` avoids it.
    """
    if not (isinstance(q, Distribution) and isinstance(p, Distribution)):
        raise InputError(
            f"closed_form_kl takes two torch Distributions, got {type(q).__name__} and "
            f"{type(p).__name__}"
        )
    if torch.compiler.is_compiling():
        fn = _own_closed_form(type(q), type(p))
        if fn is not None:
            return fn(q, p)
    return kl_divergence(q, p)


def _own_closed_form(type_q: type, type_p: type) -> Callable[[Any, Any], Tensor] | None:
    """latentkit's closed form for the pair of types (:func:`register_closed_form`): the
    registered pair most specific in q, then in p; None when it has none."""
    for a in type_q.__mro__:
        for b in type_p.__mro__:
            fn = _CLOSED_FORMS.get((a, b))
            if fn is not None:
                return fn
    return None
