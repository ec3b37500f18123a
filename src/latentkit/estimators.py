"""ELBO estimators: small objects over one model interface (STYLE §4).

Each estimator draws latents from the posterior chain and returns the bound's named
terms for every example, all ``[n]`` tensors except ``layer_kl`` (``[n, L-1]``)::

    ELBO_β = reconstruction − β · (prior_matching + Σ_l layer_kl[:, l])

* ``reconstruction``   E_q[log p(x | z_1)]
* ``prior_matching``   KL(q(z_L | ·) ‖ p(z_L))
* ``layer_kl[:, l-1]`` the term of latent z_l (1 ≤ l < L): top-down it is
  KL(q(z_l | z_{l+1}, x) ‖ p(z_l | z_{l+1})) (denoising / consistency matching);
  bottom-up it is the Monte Carlo log-ratio log q(z_l | z_{l-1}, x) − log p(z_l | z_{l+1}).

Both directions pair each latent's q-factor with its p-factor, so a term means the same
thing whichever estimator produced it, and the totals agree in expectation.

| name            | needs                       | KL terms                                        |
|-----------------|-----------------------------|-------------------------------------------------|
| ``analytic``    | top-down                    | closed form where torch has it, else log-ratio  |
| ``top-down-mc`` | top-down                    | log-ratio at the drawn sample                   |
| ``bottom-up``   | bottom-up                   | log-ratio (seed 003's last ELBO)                |
| ``layer-batched`` | top-down + layer_batched  | closed form, all layers in chunked batched calls |
| ``single-layer``| top-down + layer_batched    | one uniform layer per example, scaled by L − 1  |
| ``enumerated``  | top-down, L = 1, discrete q | exact sums over the support of q(z|x), no draws |

``auto`` picks ``layer-batched``, else ``analytic``, else ``bottom-up``. Adding an
estimator is one subclass registered in ``ESTIMATORS``. The terms they assemble
(:class:`Draw`, :func:`kl_or_log_ratio`, :func:`layer_term`, ...) are computed in
:mod:`latentkit.bound_terms` and importable from here.
"""

from __future__ import annotations

import weakref
from typing import ClassVar

import torch
from torch import Tensor

from latentkit.arguments import check_model

# ``_check`` is imported from here by the bounds (latentkit.bounds).
from latentkit.bound_terms import (
    Draw,
    _check,
    draw_with_log_prob,
    end_terms,
    kl_or_log_ratio,
    layer_term,
    per_dimension_kl,
)
from latentkit.chains import LatentModel
from latentkit.errors import EstimatorError

__all__ = [
    "ESTIMATORS",
    "Draw",
    "Estimator",
    "draw_with_log_prob",
    "end_terms",
    "kl_or_log_ratio",
    "layer_term",
    "list_estimators",
    "monte_carlo_estimator",
    "per_dimension_kl",
    "resolve_estimator",
    "training_estimator",
]


class Estimator:
    """Base class: ``__call__(model, x) -> Draw``; subclasses say what they need."""

    name: ClassVar[str]
    needs_top_down: ClassVar[bool] = False
    needs_bottom_up: ClassVar[bool] = False
    needs_layer_batched: ClassVar[bool] = False
    per_sample_exact: ClassVar[bool] = False
    """Whether each draw's total is the log-ratio log p(x,z) − log q(z|x) (IWAE needs this)."""

    def __init__(self, **options):
        if options:
            name = getattr(self, "name", type(self).__name__)  # the base class has none
            raise EstimatorError(f"estimator {name!r} takes no options, got {sorted(options)}")

    @classmethod
    def supports(cls, model: LatentModel) -> str | None:
        """``None`` if the model can use this estimator, else the reason it cannot."""
        q = model.posterior
        if cls.needs_top_down and not q.top_down:
            return f"its posterior chain {type(q).__name__} is not top-down"
        if cls.needs_bottom_up and not q.bottom_up:
            return f"its posterior chain {type(q).__name__} is not bottom-up"
        if cls.needs_layer_batched and not (q.layer_batched and model.generative.layer_batched):
            return "its chains are not layer-batched"
        return None

    supports_per_dimension: ClassVar[bool] = False
    """Whether ``__call__(..., per_dimension=True)`` fills :attr:`Draw.per_dimension`."""

    def __call__(self, model: LatentModel, x: Tensor, *, per_dimension: bool = False) -> Draw:
        raise NotImplementedError

    def _refuse_per_dimension(self, per_dimension: bool) -> None:
        if per_dimension:
            raise EstimatorError(
                f"estimator {self.name!r} gives no per-dimension KL terms; use 'analytic', "
                "'top-down-mc' or 'bottom-up'"
            )


class _TopDown(Estimator):
    needs_top_down = True
    supports_per_dimension = True
    analytic: ClassVar[bool]

    def __call__(self, model: LatentModel, x: Tensor, *, per_dimension: bool = False) -> Draw:
        p, q, n = model.generative, model.posterior, x.shape[0]
        h = q.encode(x)
        q_top, prior_L = q.top(h), p.prior(n)
        z, log_q = draw_with_log_prob(q_top)
        prior = _check(
            kl_or_log_ratio(q_top, prior_L, z, analytic=self.analytic, log_q=log_q),
            n,
            "KL(q(z_L|x)‖p(z_L))",
        )
        dims = (
            [per_dimension_kl(q_top, prior_L, z, analytic=self.analytic)] if per_dimension else []
        )
        kls = []
        for l in range(p.num_layers, 1, -1):
            q_l, p_l = q.down(l, z, h), p.transition(l, z)
            z, log_q = draw_with_log_prob(q_l)
            kl = kl_or_log_ratio(q_l, p_l, z, analytic=self.analytic, log_q=log_q)
            kls.append(_check(kl, n, f"KL term of z_{l - 1}"))
            if per_dimension:
                dims.append(per_dimension_kl(q_l, p_l, z, analytic=self.analytic))
        recon = _check(p.likelihood(z).log_prob(x), n, "log p(x|z_1)")
        layer_kl = torch.stack(kls[::-1], dim=-1) if kls else x.new_zeros(n, 0)
        return Draw(recon, prior, layer_kl, tuple(dims[::-1]) if per_dimension else None)


class Analytic(_TopDown):
    name = "analytic"
    analytic = True


class TopDownMonteCarlo(_TopDown):
    name = "top-down-mc"
    analytic = False
    per_sample_exact = True


class BottomUp(Estimator):
    name = "bottom-up"
    needs_bottom_up = True
    per_sample_exact = True

    supports_per_dimension = True

    def __call__(self, model: LatentModel, x: Tensor, *, per_dimension: bool = False) -> Draw:
        p, q, n, L = model.generative, model.posterior, x.shape[0], model.num_layers
        h = q.encode(x)
        qs = [q.first(h)]
        z, log_q = draw_with_log_prob(qs[0])
        zs, log_qs = [z], [log_q]
        for l in range(2, L + 1):
            qs.append(q.up(l, zs[-1], h))
            z, log_q = draw_with_log_prob(qs[-1])
            zs.append(z)
            log_qs.append(log_q)
        # p's factor of each latent: p(z_l | z_{l+1}) for l < L, the prior for z_L.
        ps = [p.transition(l + 1, zs[l]) for l in range(1, L)] + [p.prior(n)]
        recon = _check(p.likelihood(zs[0]).log_prob(x), n, "log p(x|z_1)")
        terms = [
            _check(
                kl_or_log_ratio(q_l, p_l, z, analytic=False, log_q=log_q),
                n,
                f"log q − log p of z_{l}",
            )
            for l, (q_l, p_l, z, log_q) in enumerate(zip(qs, ps, zs, log_qs), start=1)
        ]
        layer_kl = torch.stack(terms[:-1], dim=-1) if L > 1 else x.new_zeros(n, 0)
        dims = None
        if per_dimension:
            dims = tuple(
                per_dimension_kl(q_l, p_l, z, analytic=False) for q_l, p_l, z in zip(qs, ps, zs)
            )
        return Draw(recon, terms[-1], layer_kl, dims)


class _LayerBatched(Estimator):
    needs_top_down = True
    needs_layer_batched = True

    def __init__(self, *, pairs_per_call: int = 8192):
        if pairs_per_call < 1:
            raise EstimatorError(f"pairs_per_call must be ≥ 1, got {pairs_per_call}")
        self.pairs_per_call = int(pairs_per_call)


class LayerBatched(_LayerBatched):
    """Every layer's KL, computed in chunks of (example, layer) pairs per network call."""

    name = "layer-batched"

    def __call__(self, model: LatentModel, x: Tensor, *, per_dimension: bool = False) -> Draw:
        self._refuse_per_dimension(per_dimension)
        n, L = x.shape[0], model.num_layers
        recon, prior = end_terms(model, x)
        layers = torch.arange(2, L + 1, device=x.device)
        per_call = max(1, self.pairs_per_call // n)
        chunks = []
        # An empty tensor still splits into one (empty) chunk; L = 1 has no layer terms.
        for ls in layers.split(per_call) if L > 1 else ():
            c = ls.shape[0]
            # x tiled c times ("b ... -> (c b) ..."), each layer index n times ("c -> (c b)")
            xs = x.repeat(c, *([1] * (x.ndim - 1)))
            kl = layer_term(model, xs, ls.repeat_interleave(n))
            chunks.append(kl.view(c, n).t())  # "(c b) -> b c"
        layer_kl = torch.cat(chunks, dim=-1) if chunks else x.new_zeros(n, 0)
        return Draw(recon, prior, layer_kl)


class Enumerated(Estimator):
    """A one-layer discrete q(z|x) summed over its support: the ELBO exactly, no sampling.

    reconstruction = Σ_z q(z|x) log p(x|z) and prior matching = Σ_z q(z|x) log(q(z|x)/p(z)),
    with z over ``q.enumerate_support()`` (Categorical, Bernoulli, ...). Zero variance, and
    gradients reach q's parameters through the weights q(z|x), where ``sample()`` gives none.
    With q the exact posterior the total is log p(x) exactly (DESIGN §7.1). Costs one
    likelihood call on |support| × batch rows.
    """

    name = "enumerated"
    needs_top_down = True

    @classmethod
    def supports(cls, model: LatentModel) -> str | None:
        if model.num_layers != 1:
            return f"it has {model.num_layers} latent layers; enumeration covers one"
        return super().supports(model)

    def __call__(self, model: LatentModel, x: Tensor, *, per_dimension: bool = False) -> Draw:
        self._refuse_per_dimension(per_dimension)
        p, n = model.generative, x.shape[0]
        q = model.posterior.top(model.posterior.encode(x))
        if not q.has_enumerate_support:
            raise EstimatorError(
                f"estimator 'enumerated' needs a discrete q(z|x); {type(q).__name__} has no "
                "enumerate_support()"
            )
        z = q.enumerate_support(expand=True)  # [K, n, *event]
        K = z.shape[0]
        log_q = q.log_prob(z)  # [K, n]
        weight = log_q.exp()
        log_lik = p.likelihood(z.flatten(0, 1)).log_prob(  # "k n ... -> (k n) ..."
            x.repeat(K, *([1] * (x.ndim - 1)))  # "n ... -> (k n) ..."
        )
        log_ratio = log_q - p.prior(n).log_prob(z)
        # A support point with q = 0 contributes nothing (0 · log 0 = 0), not NaN.
        recon = torch.where(weight > 0, weight * log_lik.view(K, n), 0.0)
        prior = torch.where(weight > 0, weight * log_ratio, 0.0)
        return Draw(
            _check(recon.sum(0), n, "Σ_z q(z|x) log p(x|z)"),
            _check(prior.sum(0), n, "Σ_z q(z|x) log(q(z|x)/p(z))"),
            x.new_zeros(n, 0),
        )


class SingleLayer(_LayerBatched):
    """Unbiased one-layer estimate: l ~ Uniform{2..L} per example, its KL scaled by L − 1
    (the reciprocal of the probability 1/(L − 1) of drawing it).

    The scaled term sits in ``layer_kl`` at the drawn layer (zeros elsewhere), so every
    per-layer entry is itself an unbiased estimate of that layer's KL. Importance-sampled
    layers (p(l) learned from past terms) are the ``elbo`` objective's ``layer_sampler``.
    """

    name = "single-layer"

    def draw_summed(self, model: LatentModel, x: Tensor) -> tuple[Draw, Tensor | None]:
        """The same estimate with every layer term in one column: ``layer_kl`` is ``[n, 1]``
        (``[n, 0]`` when L = 1), so ``total()`` is the same number without the ``[n, L − 1]``
        tensor that places it at its layer (a training loss needs only the total; at a
        DDPM's T = 1000 that tensor is 999 columns, written, summed and differentiated).
        Also returns the drawn layers l, ``LongTensor[n]`` (``None`` when L = 1)."""
        n, L = x.shape[0], model.num_layers
        h = model.posterior.encode(x)
        recon, prior = end_terms(model, x, h)
        if L < 2:
            return Draw(recon, prior, x.new_zeros(n, 0)), None
        l = torch.randint(2, L + 1, (n,), device=x.device)
        kl = layer_term(model, x, l, h=h) * (L - 1)
        return Draw(recon, prior, kl.unsqueeze(1)), l

    def __call__(self, model: LatentModel, x: Tensor, *, per_dimension: bool = False) -> Draw:
        self._refuse_per_dimension(per_dimension)
        n, L = x.shape[0], model.num_layers
        draw, l = self.draw_summed(model, x)
        layer_kl = x.new_zeros(n, L - 1)
        if l is not None:
            layer_kl = layer_kl.scatter(1, (l - 2).unsqueeze(1), draw.layer_kl)
        return draw._replace(layer_kl=layer_kl)


ESTIMATORS: dict[str, type[Estimator]] = {
    cls.name: cls
    for cls in (Analytic, TopDownMonteCarlo, BottomUp, LayerBatched, SingleLayer, Enumerated)
}


def list_estimators() -> list[str]:
    """Names of the engine's estimators (``auto`` picks among them)."""
    return list(ESTIMATORS)


_resolved: weakref.WeakKeyDictionary[LatentModel, dict[tuple, tuple[tuple, Estimator]]] = (
    weakref.WeakKeyDictionary()
)


def _capabilities(model: LatentModel) -> tuple:
    """Everything :meth:`Estimator.supports` reads: the chains themselves (a chain swapped
    in replaces the key), their capability flags and L."""
    p, q = model.generative, model.posterior
    return (p, q, q.top_down, q.bottom_up, q.layer_batched, p.layer_batched, p.num_layers)


def resolve_estimator(model: LatentModel, name: str, **options) -> Estimator:
    """The estimator called ``name`` (or the best one for ``auto``), checked against the model.

    Resolved once per model, name and options and kept (estimators hold only their options):
    a later call with the same arguments returns the same object, unless the model's chains
    or their capability flags changed since, which resolves it again.
    """
    check_model(model, "resolve_estimator")
    if torch.compiler.is_compiling():
        # Resolved while tracing, not looked up: a guard on the cache (a weak dictionary
        # that grows with every model resolved) would recompile the bound for each new model.
        return _resolve(model, name, **options)
    try:
        key = (name, tuple(sorted(options.items())))
        hash(key)
    except TypeError:  # an unhashable option: resolve without the cache
        return _resolve(model, name, **options)
    caps = _capabilities(model)
    per_model = _resolved.get(model)
    if per_model is None:
        per_model = _resolved.setdefault(model, {})
    hit = per_model.get(key)
    if hit is not None and hit[0] == caps:
        return hit[1]
    est = _resolve(model, name, **options)
    per_model[key] = (caps, est)
    return est


def _resolve(model: LatentModel, name: str, **options) -> Estimator:
    if not isinstance(name, str):
        raise EstimatorError(f"estimator must be a name (a str), got {type(name).__name__}")
    if name == "auto":
        for candidate in ("layer-batched", "analytic", "bottom-up"):
            if ESTIMATORS[candidate].supports(model) is None:
                name = candidate
                break
    if name not in ESTIMATORS:
        raise EstimatorError(f"unknown estimator {name!r}; choose one of {['auto', *ESTIMATORS]}")
    cls = ESTIMATORS[name]
    reason = cls.supports(model)
    if reason is not None:
        raise EstimatorError(f"estimator {name!r} does not apply to this model: {reason}")
    return cls(**options)


def monte_carlo_estimator(model: LatentModel) -> Estimator:
    """The per-sample log-ratio estimator IWAE needs: bottom-up if offered, else top-down-mc."""
    check_model(model, "monte_carlo_estimator")
    return resolve_estimator(model, "bottom-up" if model.posterior.bottom_up else "top-down-mc")


def training_estimator(model: LatentModel, name: str = "auto", **options) -> Estimator:
    """The estimator a training objective uses: like :func:`resolve_estimator`, except that
    ``auto`` prefers the unbiased one-layer ``single-layer`` estimate for layer-batched
    chains (one network call per example instead of L − 1: a DDPM's T = 1000)."""
    check_model(model, "training_estimator")
    if name == "auto" and ESTIMATORS["single-layer"].supports(model) is None:
        name = "single-layer"
    return resolve_estimator(model, name, **options)
