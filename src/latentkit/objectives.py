"""Training objectives: what the trainer minimises, kept apart from the model (DESIGN §8).

A model is its two chains; an :class:`Objective` is a per-example loss ``[batch]`` built
for a model from a registered name and an attrs config, as Pyro keeps ``SVI(model, guide,
optim, loss)`` apart. Plugins add objectives through the ``latentkit_objectives`` hook.
Evaluation (``latentkit.elbo``, ``latentkit.iwae``, ``latentkit evaluate``) always reports
the true bound, never a training surrogate. Formulas, estimators and when to use each:
``docs/objectives.md``.

Built in:

* ``elbo`` — −ELBO_β by the engine's estimators, with KL warm-up (β from ``warmup_start``
  to ``beta`` over ``warmup_steps``), free bits (Kingma et al. 2016) and, for layer-batched
  chains, importance-sampled layers (improved DDPM §3.3).
* ``iwae`` — −IWAE_k, with the ``standard``, ``stl`` (sticking the landing, Roeder et al.
  2017) or ``dreg`` (doubly reparameterized, Tucker et al. 2019) gradient.

>>> import torch, latentkit as lk
>>> model = lk.load_model("vae", data_shape=(4,), latent_dim=2)
>>> loss = lk.make_objective("iwae", model, k=8, gradient="dreg")
>>> loss(model, torch.randn(3, 4)).shape
torch.Size([3])
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable
from typing import Any, ClassVar

import attrs
import torch
from attrs import validators as v
from einops import rearrange, repeat
from torch import Tensor, nn

from latentkit.chains import LatentModel
from latentkit.config import int_at_least as _int_at_least
from latentkit.config import one_of as _one_of
from latentkit.errors import ConfigError, EstimatorError
from latentkit.estimators import (
    ESTIMATORS,
    Draw,
    SingleLayer,
    end_terms,
    layer_term,
    monte_carlo_estimator,
    training_estimator,
)
from latentkit.hookspecs import hookimpl

__all__ = [
    "ElboConfig",
    "ElboObjective",
    "FunctionObjective",
    "IWAEConfig",
    "IWAEObjective",
    "Objective",
    "ObjectiveSpec",
    "path_log_weights",
    "warmup_factor",
]


class Objective(nn.Module):
    """What the trainer minimises, per example: ``objective(model, x, step) -> [batch]``.

    Built once for a model by :func:`latentkit.make_objective` (so it can resolve estimators
    and size its state for that model), then called with the model on each batch. An
    ``nn.Module``: state it keeps (buffers, e.g. the importance sampler's history) is saved
    in checkpoints beside the model's weights and restored on resume.

    Subclasses set ``name`` and implement :meth:`forward`; :meth:`supports` says which
    models they apply to. ``step`` is the number of optimizer steps taken so far (a Python
    int or a 0-dim tensor on the model's device: a tensor lets ``torch.compile`` trace one
    graph for every step); ``None`` means "after any schedule has ended".
    """

    name: ClassVar[str] = ""

    def __init__(self, config: Any, model: LatentModel):
        super().__init__()
        self.config = config

    @classmethod
    def supports(cls, model: LatentModel) -> str | None:
        """``None`` if the objective applies to ``model``, else the reason it does not."""
        return None

    def forward(self, model: LatentModel, x: Tensor, step: int | Tensor | None = None) -> Tensor:
        raise NotImplementedError


class FunctionObjective(Objective):
    """An objective from a plain function ``fn(model, x, step) -> [batch]``: for a quick
    experiment, or a test that injects a fault, without registering anything.

    >>> import torch, latentkit as lk
    >>> model = lk.load_model("vae", data_shape=(4,), latent_dim=2)
    >>> mean_only = lk.FunctionObjective(lambda m, x, step: -lk.elbo(m, x).reconstruction)
    >>> trainer = lk.Trainer(model, torch.rand(8, 4), lk.TrainConfig(steps=1, batch_size=4,
    ...                      progress=False), objective=mean_only)
    """

    name = "function"

    def __init__(self, fn: Callable[[LatentModel, Tensor, Any], Tensor]):
        super().__init__(None, None)  # type: ignore[arg-type]
        if not callable(fn):
            raise ConfigError(f"FunctionObjective needs a callable, got {type(fn).__name__}")
        self.fn = fn

    def forward(self, model: LatentModel, x: Tensor, step: int | Tensor | None = None) -> Tensor:
        return self.fn(model, x, step)


def _valid_name(instance: Any, attribute: attrs.Attribute, value: str) -> None:
    import re

    if not isinstance(value, str) or not re.match(r"^[a-z][a-z0-9_-]*$", value):
        raise ValueError(
            f"{attribute.name!r} must be lower case letters, digits, '-' or '_', "
            f"starting with a letter; got {value!r}"
        )


@attrs.frozen
class ObjectiveSpec:
    """What a plugin contributes for one objective (returned from ``latentkit_objectives``).

    Attributes:
        name: registry name, e.g. ``"iwae"``.
        config_class: attrs (frozen) class of the objective's options; its validators name
            the field and the allowed range.
        factory: ``factory(config, model) -> Objective`` (an :class:`Objective` subclass
            itself qualifies).
        description: one line for ``latentkit list`` and the docs.
        plugin: the distribution that registered it (filled in by the registry).
    """

    name: str = attrs.field(validator=_valid_name)
    config_class: type = attrs.field()
    factory: Callable[[Any, LatentModel], Objective] = attrs.field(validator=v.is_callable())
    description: str = ""
    plugin: str = ""

    @config_class.validator
    def _attrs_class(self, attribute: attrs.Attribute, value: Any) -> None:
        if not (isinstance(value, type) and attrs.has(value)):
            raise ValueError(f"{attribute.name!r} must be an attrs class, got {value!r}")


# -- schedules shared by ELBO-type objectives ---------------------------------------------


def warmup_factor(step: int | Tensor | None, steps: int, shape: str) -> float | Tensor:
    """The fraction r ∈ [0, 1] of a warm-up done after ``step`` of ``steps`` optimizer steps:
    ``linear`` r = u, ``cosine`` r = (1 − cos πu)/2, with u = min(step/steps, 1). ``None``
    or ``steps = 0``: 1 (the schedule has ended). A tensor ``step`` gives a tensor."""
    if step is None or steps == 0:
        return 1.0
    if isinstance(step, Tensor):
        u = (step.double() / steps).clamp(0.0, 1.0)
        return u if shape == "linear" else (1 - torch.cos(math.pi * u)) / 2
    u = min(max(step / steps, 0.0), 1.0)
    return u if shape == "linear" else (1 - math.cos(math.pi * u)) / 2


def _finite_nonneg(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{attribute.name!r} must be a number, got {value!r}")
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{attribute.name!r} must be a finite number ≥ 0, got {value!r}")


@attrs.frozen(kw_only=True)
class ElboConfig:
    """Options of the ``elbo`` objective (formulas: ``docs/objectives.md``).

    Attributes:
        beta: the KL weight β once any warm-up has ended (1: the ELBO; a β-VAE's β).
        estimator: the engine's estimator (``auto``: ``single-layer`` for layer-batched
            chains such as a DDPM, else the best the chain allows).
        num_samples: draws of the latents per example, averaged.
        warmup_steps: KL warm-up length in optimizer steps (0: none): β goes from
            ``warmup_start`` to ``beta`` along ``warmup_shape``.
        warmup_start: β_0, the KL weight at step 0 of the warm-up.
        warmup_shape: ``linear`` or ``cosine``.
        free_bits: λ in nats (0: off). Each group's KL, averaged over the batch, counts as
            max(λ, KL) in the loss: below λ it gets no gradient (Kingma et al. 2016). The
            reported bound is never clamped.
        free_bits_per: the groups: ``layer`` (one per latent layer) or ``dimension`` (one
            per scalar latent; needs factorized q and p and the ``analytic``,
            ``top-down-mc`` or ``bottom-up`` estimator).
        layer_sampler: for layer-batched chains, the layer of the one-layer estimate:
            ``uniform`` or ``importance`` (p(l) ∝ √E[term_l²] over each layer's last
            ``history`` terms, uniform until every layer has them; improved DDPM §3.3).
        history: terms kept per layer by the ``importance`` sampler.
    """

    beta: float = attrs.field(default=1.0, validator=_finite_nonneg)
    estimator: str = attrs.field(default="auto", validator=_one_of("auto", *ESTIMATORS))
    num_samples: int = attrs.field(default=1, validator=_int_at_least(1))
    warmup_steps: int = attrs.field(default=0, validator=_int_at_least(0))
    warmup_start: float = attrs.field(default=0.0, validator=_finite_nonneg)
    warmup_shape: str = attrs.field(default="linear", validator=_one_of("linear", "cosine"))
    free_bits: float = attrs.field(default=0.0, validator=_finite_nonneg)
    free_bits_per: str = attrs.field(default="layer", validator=_one_of("layer", "dimension"))
    layer_sampler: str = attrs.field(default="uniform", validator=_one_of("uniform", "importance"))
    history: int = attrs.field(default=10, validator=_int_at_least(1))


class ElboObjective(Objective):
    """−ELBO_β(step) by the engine's estimators, with warm-up, free bits and layer sampling.

    The loss per example is −(reconstruction − β(step) · Σ_g K_g), where K_g is group g's
    KL term — or, with free bits λ, K_g where the batch mean of group g's term is above λ
    and the constant λ where it is not (so the batch mean of the loss counts max(λ, E[K_g])
    and a group below λ gets no gradient).
    """

    name = "elbo"

    def __init__(self, config: ElboConfig, model: LatentModel):
        super().__init__(config, model)
        c = config
        self.estimator = training_estimator(model, c.estimator)
        self.per_dimension = c.free_bits > 0 and c.free_bits_per == "dimension"
        if self.per_dimension and not self.estimator.supports_per_dimension:
            raise ConfigError(
                f"objective 'elbo': free_bits_per='dimension' needs per-dimension KL terms, "
                f"which estimator {self.estimator.name!r} does not give; set estimator to "
                "'analytic', 'top-down-mc' or 'bottom-up', or free_bits_per='layer'"
            )
        if c.free_bits > 0 and self.estimator.name == "single-layer":
            raise ConfigError(
                "objective 'elbo': free bits clamp each layer's KL, but the 'single-layer' "
                "estimator sees one layer per example; use estimator='layer-batched' or "
                "set free_bits=0"
            )
        self.importance = c.layer_sampler == "importance"
        # The one-layer estimate's total without its per-layer placement (free bits, which
        # clamp per layer, are refused with it above).
        self.summed = isinstance(self.estimator, SingleLayer) and c.free_bits == 0
        if self.importance:
            if self.estimator.name != "single-layer":
                raise ConfigError(
                    "objective 'elbo': layer_sampler='importance' draws one layer per "
                    "example, so it needs a layer-batched chain and estimator 'auto' or "
                    f"'single-layer' (the estimator is {self.estimator.name!r})"
                )
            if c.num_samples != 1 or c.free_bits > 0:
                raise ConfigError(
                    "objective 'elbo': layer_sampler='importance' takes num_samples=1 and "
                    "no free bits"
                )
            layers = max(model.num_layers - 1, 1)
            ref = model.reference()
            self.register_buffer("layer_history", ref.new_zeros(layers, c.history + 1))
            self.register_buffer(
                "layer_count", torch.zeros(layers, dtype=torch.long, device=ref.device)
            )

    def beta_at(self, step: int | Tensor | None) -> float | Tensor:
        """β(step) = β_0 + (β − β_0) · r(step), r the warm-up fraction (:func:`warmup_factor`)."""
        c = self.config
        if c.warmup_steps == 0:
            return c.beta
        r = warmup_factor(step, c.warmup_steps, c.warmup_shape)
        return c.warmup_start + (c.beta - c.warmup_start) * r

    def forward(self, model: LatentModel, x: Tensor, step: int | Tensor | None = None) -> Tensor:
        beta = self.beta_at(step)
        if isinstance(beta, Tensor):
            beta = beta.to(x.dtype)
        s = self.config.num_samples
        if self.importance:
            draw = self._importance_draw(model, x)
        else:
            xs = repeat(x, "b ... -> (s b) ...", s=s) if s > 1 else x
            if self.summed:  # the loss needs only the total: no [n, L − 1] placement
                draw = self.estimator.draw_summed(model, xs)[0]
            else:
                draw = self.estimator(model, xs, per_dimension=self.per_dimension)
            if self.config.free_bits > 0:
                draw = self._free_bits(draw)
        loss = -draw.total(beta)
        return rearrange(loss, "(s b) -> s b", s=s).mean(0) if s > 1 else loss

    # -- free bits ----------------------------------------------------------------------

    def _free_bits(self, draw: Draw) -> Draw:
        lam = self.config.free_bits

        def clamp(term: Tensor) -> Tensor:
            # Per group (the trailing axis, if any): below λ on average over the batch, the
            # group counts as the constant λ (no gradient); above, as itself.
            return torch.where(term.mean(0) > lam, term, torch.full_like(term, lam))

        if self.per_dimension:
            assert draw.per_dimension is not None
            layers = [clamp(d).sum(-1) for d in draw.per_dimension]  # z_1..z_L
            prior = layers[-1]
            layer_kl = torch.stack(layers[:-1], -1) if len(layers) > 1 else draw.layer_kl
            return Draw(draw.reconstruction, prior, layer_kl)
        return Draw(draw.reconstruction, clamp(draw.prior_matching), clamp(draw.layer_kl))

    # -- importance-sampled layers ------------------------------------------------------

    def layer_weights(self) -> Tensor:
        """p(l) for l = 2..L: uniform until every layer has ``history`` terms, then
        ∝ √E[term_l²] mixed with 0.1% uniform mass (improved DDPM §3.3). No host read."""
        h = self.config.history
        past = self.layer_history[:, :h]
        uniform = torch.full_like(past[:, 0], 1.0 / past.shape[0])
        rms = past.pow(2).mean(-1).sqrt()
        learned = 0.999 * rms / rms.sum().clamp_min(torch.finfo(rms.dtype).tiny)
        learned = learned + 0.001 * uniform
        ready = (self.layer_count >= h).all()
        w = torch.where(ready, learned, uniform)
        return w / w.sum()

    def _importance_draw(self, model: LatentModel, x: Tensor) -> Draw:
        """recon − prior − Σ_l term_l estimated by term_l / p(l) at one l ~ p(l) per example:
        unbiased for any p(l) > 0. Only the loss reads it, so ``layer_kl`` holds the one
        scaled term per example as a single column (``[n, 1]``; the total is the same)."""
        n, L = x.shape[0], model.num_layers
        h = model.posterior.encode(x)
        recon, prior = end_terms(model, x, h)
        if L < 2:
            return Draw(recon, prior, x.new_zeros(n, 0))
        w = self.layer_weights().to(x.dtype)
        l = torch.multinomial(w, n, replacement=True) + 2
        term = layer_term(model, x, l, h=h)
        if self.training and torch.is_grad_enabled():
            self._record(l - 2, term.detach())
        scaled = term / w[l - 2]
        return Draw(recon, prior, scaled.unsqueeze(1))

    @torch.no_grad()
    def _record(self, idx: Tensor, term: Tensor) -> None:
        """Push each example's term into its layer's ring of ``history`` slots, in batch
        order, all on the device: of m terms for one layer in a batch the last
        min(m, history) land (as one at a time would leave them); the rest go to a spare
        column that is never read."""
        h = self.config.history
        n = idx.shape[0]
        order = torch.argsort(idx, stable=True)
        sorted_idx = idx[order]
        first = torch.searchsorted(sorted_idx, sorted_idx)  # first row of each layer's run
        rank = torch.arange(n, device=idx.device) - first  # position within the run
        per_layer = torch.bincount(idx, minlength=self.layer_count.shape[0])
        keep = rank >= per_layer[sorted_idx] - h
        slot = torch.where(keep, (self.layer_count[sorted_idx] + rank) % h, h)
        flat = self.layer_history.view(-1)
        flat.index_put_((sorted_idx * (h + 1) + slot,), term[order].to(flat.dtype))
        self.layer_count += per_layer


# -- IWAE -----------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class IWAEConfig:
    """Options of the ``iwae`` objective.

    Attributes:
        k: importance samples per example (k = 1 is a one-sample ELBO).
        gradient: ``standard`` (the reparameterized gradient of IWAE_k), ``stl`` (sticking
            the landing: q's score term dropped; unbiased for q only at k = 1) or ``dreg``
            (doubly reparameterized: unbiased for every k, lower variance for q as k grows).
            ``stl`` and ``dreg`` need a reparameterizable q.
    """

    k: int = attrs.field(default=5, validator=_int_at_least(1))
    gradient: str = attrs.field(default="standard", validator=_one_of("standard", "stl", "dreg"))


class _ScaleGrad(torch.autograd.Function):
    """Identity forward; backward multiplies each row's gradient by a weight that is set
    after the forward pass (``holder[0]``, ``[rows]``): DReG's w̃ is known only once log w is."""

    @staticmethod
    def forward(ctx: Any, z: Tensor, holder: list) -> Tensor:
        ctx.holder = holder
        return z.view_as(z)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        w = ctx.holder[0]
        return grad * w.reshape(-1, *([1] * (grad.ndim - 1))).to(grad.dtype), None


class _Scoped(nn.Module):
    """Calls ``fn(q, *args)`` so that ``torch.func.functional_call`` can run it with q's
    parameters swapped for detached copies (φ stopped, the latents' paths kept). The model's
    ``shared`` modules are registered here too: q may use them through ``SharedModule``."""

    def __init__(self, q: nn.Module, shared: nn.Module):
        super().__init__()
        self.q = q
        self.shared = shared

    def forward(self, fn: Callable[..., Tensor], *args: Any) -> Tensor:
        return fn(self.q, *args)


def _log_q(q: Any, x: Tensor, zs: list[Tensor]) -> Tensor:
    """log q(z_1..z_L | x) at given latents, by the chain's own factorization."""
    h = q.encode(x)
    L = len(zs)
    if q.bottom_up:
        out = q.first(h).log_prob(zs[0])
        for l in range(2, L + 1):
            out = out + q.up(l, zs[l - 2], h).log_prob(zs[l - 1])
        return out
    out = q.top(h).log_prob(zs[-1])
    for l in range(L, 1, -1):
        out = out + q.down(l, zs[l - 1], h).log_prob(zs[l - 2])
    return out


def _rsample(d: Any) -> Tensor:
    if not d.has_rsample:
        raise EstimatorError(
            f"the 'stl' and 'dreg' gradients need a reparameterizable q; {type(d).__name__} "
            "has no rsample() (use gradient='standard')"
        )
    return d.rsample()


def _draw_latents(model: LatentModel, x: Tensor) -> list[Tensor]:
    """z_1..z_L ~ q(· | x), reparameterized, by the chain's factorization (bottom-up first,
    as :func:`latentkit.iwae` draws them)."""
    q, L = model.posterior, model.num_layers
    h = q.encode(x)
    if q.bottom_up:
        zs = [_rsample(q.first(h))]
        for l in range(2, L + 1):
            zs.append(_rsample(q.up(l, zs[-1], h)))
        return zs
    zs = [_rsample(q.top(h))]
    for l in range(L, 1, -1):
        zs.insert(0, _rsample(q.down(l, zs[0], h)))
    return zs


def path_log_weights(model: LatentModel, x: Tensor, k: int, *, dreg: bool = False) -> Tensor:
    """log w = log p(x, z) − log q(z | x) for k draws per example, ``[k, batch]``, with q's
    parameters stopped in log q (the latents keep their reparameterization path): the
    values of :func:`latentkit.bounds.log_weights`, the gradients of the path estimators.

    With ``dreg``, each draw's path gradient is scaled by its normalized weight w̃ (so
    −logsumexp(log w) gives q the gradient Σ w̃² ∂log w/∂z ∂z/∂φ, Tucker et al. 2019 eq. 5).
    """
    p, q = model.generative, model.posterior
    xs = repeat(x, "b ... -> (k b) ...", k=k)
    n = xs.shape[0]
    zs = _draw_latents(model, xs)
    holder: list[Tensor] = []
    used = [_ScaleGrad.apply(z, holder) for z in zs] if dreg else zs
    stopped = {
        f"{prefix}.{name}": t.detach()
        for prefix, owner in (("q", q), ("shared", model.shared))
        for name, t in owner.named_parameters()
    }
    try:
        log_q = torch.func.functional_call(
            _Scoped(q, model.shared), stopped, (_log_q, xs, used), strict=False
        )
    except NotImplementedError as exc:
        # A draw-only q (rsample_and_log_prob, no log_prob): its density at the latents
        # with φ stopped needs the inverse it does not offer.
        raise EstimatorError(
            "the 'stl' and 'dreg' gradients evaluate log q at given latents with q's "
            f"parameters stopped; the posterior chain {type(q).__name__} has no log_prob "
            f"there ({exc or 'NotImplementedError'}); use gradient='standard'"
        ) from exc
    log_p = p.likelihood(used[0]).log_prob(xs) + p.prior(n).log_prob(used[-1])
    for l in range(2, model.num_layers + 1):
        log_p = log_p + p.transition(l, used[l - 1]).log_prob(used[l - 2])
    log_w = rearrange(log_p - log_q, "(k b) -> k b", k=k)
    if dreg:
        holder.append(torch.softmax(log_w.detach(), dim=0).reshape(-1))
    return log_w


class IWAEObjective(Objective):
    """−IWAE_k = −(logsumexp_i log w_i − log k) per example, with the gradient estimator
    ``config.gradient``. Its value equals :func:`latentkit.iwae` on the same draws."""

    name = "iwae"

    def __init__(self, config: IWAEConfig, model: LatentModel):
        super().__init__(config, model)
        monte_carlo_estimator(model)  # refuses a chain with no per-sample log-ratio

    def forward(self, model: LatentModel, x: Tensor, step: int | Tensor | None = None) -> Tensor:
        from latentkit.bounds import log_weights

        k, how = self.config.k, self.config.gradient
        log_w = log_weights(model, x, k) if how == "standard" else None
        if log_w is None:
            log_w = path_log_weights(model, x, k, dreg=how == "dreg")
        return -(torch.logsumexp(log_w, dim=0) - math.log(k))


# -- the built-in plugin and the model's default objective --------------------------------


@hookimpl
def latentkit_objectives() -> list[ObjectiveSpec]:
    return [
        ObjectiveSpec(
            "elbo",
            ElboConfig,
            ElboObjective,
            "−ELBO_β by the engine's estimators; KL warm-up, free bits, importance-sampled layers",
        ),
        ObjectiveSpec(
            "iwae",
            IWAEConfig,
            IWAEObjective,
            "−IWAE_k with the standard, STL or DReG gradient",
        ),
    ]


_defaults: weakref.WeakKeyDictionary[LatentModel, tuple[tuple[str, dict], Objective]] = (
    weakref.WeakKeyDictionary()
)


def default_objective(model: LatentModel) -> Objective:
    """The objective ``model.default_objective`` names, built once per model and kept (its
    state, e.g. an importance sampler's history, carries over from call to call); built
    again if ``model.default_objective`` is changed."""
    from latentkit.registry import make_objective

    declared = model.default_objective
    cached = _defaults.get(model)
    if cached is not None and cached[0] == declared:
        return cached[1]
    name, options = declared
    built = make_objective(name, model, **options)
    _defaults[model] = ((name, dict(options)), built)
    return built


def training_loss(model: LatentModel, x: Tensor, step: int | Tensor | None = None) -> Tensor:
    """The loss of the model's default objective (``model.default_objective``), ``[batch]``."""
    if not isinstance(model, LatentModel):
        raise EstimatorError(f"model must be a latentkit.LatentModel, got {type(model).__name__}")
    return default_objective(model).forward(model, x, step)
