"""Training a composed model with the prior model's own objective in place of −ELBO_B(z)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import attrs
from attrs import validators as v
from torch import Tensor
from torch.distributions import Distribution

from latentkit.chains import GenerativeChain, LatentModel
from latentkit.composition.model import ComposedModel
from latentkit.errors import ConfigError, EstimatorError
from latentkit.estimators import monte_carlo_estimator
from latentkit.objectives import Objective
from latentkit.objectives.elbo import warmup_factor

__all__ = ["ComposedObjective", "ComposedObjectiveConfig", "composed_objective"]


class _PriorBound(Distribution):
    """Stands where p_A(z_La) stood: ``log_prob(z)`` is ELBO_B(z), the prior model's bound on
    log p_B(z), estimated by its objective (−loss). Not a density: no draws."""

    arg_constraints: ClassVar[dict] = {}

    def __init__(
        self,
        bound: Callable[[Tensor, int | Tensor | None], Tensor],
        n: int,
        event_shape: tuple[int, ...],
        step: int | Tensor | None,
    ):
        self.bound, self.step = bound, step
        super().__init__((n,), event_shape, validate_args=False)

    def log_prob(self, value: Tensor) -> Tensor:
        return self.bound(value, self.step)


class _BoundedOuter(GenerativeChain):
    """A's generative chain with :class:`_PriorBound` as its prior; ``step`` the training
    step the prior's objective is called with, set by each call of the objective."""

    def __init__(self, outer: GenerativeChain, bound: Callable[..., Tensor]):
        super().__init__(outer.data_shape, outer.latent_shapes)
        self.outer = outer
        self.bound = bound
        self.step: int | Tensor | None = None

    def prior(self, n: int) -> Distribution:
        return _PriorBound(self.bound, n, self.latent_shapes[-1], self.step)

    def transition(self, l: int, z: Tensor) -> Distribution:
        return self.outer.transition(l, z)

    def likelihood(self, z1: Tensor) -> Distribution:
        return self.outer.likelihood(z1)


@attrs.frozen(kw_only=True)
class ComposedObjectiveConfig:
    """Options of :class:`ComposedObjective`.

    Attributes:
        prior_objective: the objective whose loss stands for −ELBO_B(z) (``None``: the prior
            model's default, e.g. ``continuous`` for ``vdm``). Only an objective that is a
            bound (``elbo``, ``iwae``, ``continuous``) keeps the total a bound.
        prior_objective_config: its options.
        encoder_warmup: ``None`` (the bound's gradient everywhere), or training steps
            ``[start, end]``, 0 ≤ start < end, over which the encoder's gradient through the
            prior's term moves from N(0, I)'s to the prior's: w · ∇_z ELBO_B(z) + (1 − w) ·
            ∇_z log N(z; 0, I), w rising linearly from 0 at ``start`` to 1 at ``end``. The
            loss's value and every other parameter's gradient (the prior's, the decoder's)
            are the bound's at every step; before ``end`` the encoder's is not (a warm-up,
            like the ``elbo`` objective's KL warm-up). It keeps the encoder from following a
            prior that is still fitting its codes, which costs more than the prior gains
            (docs/compose.md, "Training a diffusion prior").
    """

    prior_objective: str | None = attrs.field(
        default=None, validator=v.optional(v.instance_of(str))
    )
    prior_objective_config: dict[str, Any] = attrs.field(factory=dict, converter=dict)
    encoder_warmup: tuple[int, int] | None = attrs.field(
        default=None,
        converter=lambda value: tuple(value) if isinstance(value, list | tuple) else value,
        validator=v.optional(lambda _i, a, value: _check_warmup(value)),
    )


def _check_warmup(value: Any) -> None:
    pair = isinstance(value, tuple) and len(value) == 2
    ints = pair and all(isinstance(s, int) and not isinstance(s, bool) for s in value)
    if not ints or not 0 <= value[0] < value[1]:
        shown = list(value) if isinstance(value, tuple) else value
        raise ConfigError(
            f"encoder_warmup must be two training steps [start, end] with 0 <= start < end, "
            f"got {shown!r}"
        )


def _encoder_weight(step: int | Tensor | None, warmup: tuple[int, int]) -> float | Tensor:
    """w of ``encoder_warmup`` at ``step``: 0 before ``start``, 1 from ``end`` (and with no
    step: evaluation), linear between; a tensor step gives a tensor (no recompilation)."""
    start, end = warmup
    return warmup_factor(None if step is None else step - start, end - start, "linear")


class ComposedObjective(Objective):
    """−E_q[log p_A(x | z) − log q_A(z | x) + ELBO_B(z)], per example, with ELBO_B(z) the prior
    model's own objective (its negative loss) at A's draw z: one draw of q_A by the engine's
    per-sample estimator on A's chain, the gradient reaching q_A through z. The objective's state
    (the prior objective's, e.g. an importance sampler) is a submodule, saved in checkpoints."""

    name = "composed"

    def __init__(self, config: ComposedObjectiveConfig, model: LatentModel):
        super().__init__(config, model)
        reason = self.supports(model)
        if reason is not None:
            raise EstimatorError(f"objective 'composed' does not apply: {reason}")
        _refuse_a_long_diffusion_outer(model.outer)
        from latentkit.registry import make_objective

        prior = model.prior
        name, options = prior.objective_choice
        if config.prior_objective is not None:
            name, options = config.prior_objective, config.prior_objective_config
        self.prior_objective = make_objective(name, prior, **options)
        self._reduced_for(model)  # built here, outside any traced call

    @classmethod
    def supports(cls, model: LatentModel) -> str | None:
        if isinstance(model, ComposedModel):
            return None
        return f"it needs a composed model (latentkit.compose), got {type(model).__name__}"

    def forward(self, model: LatentModel, x: Tensor, step: int | Tensor | None = None) -> Tensor:
        reduced = self._reduced_for(model)
        reduced.generative.step = step
        return -monte_carlo_estimator(reduced)(reduced, x).total()

    def _reduced_for(self, model: LatentModel) -> LatentModel:
        """A's chain with the prior's bound in place of its prior, built once per model (a
        module built inside a traced call would break torch.compile's graph)."""
        cached = self.__dict__.get("_reduced")
        if cached is not None and cached[0] is model:
            return cached[1]
        prior, outer = model.prior, model.outer
        warmup = self.config.encoder_warmup

        def bound(z: Tensor, step: int | Tensor | None) -> Tensor:
            if warmup is None:
                return -self.prior_objective(prior, z, step)
            w = _encoder_weight(step, warmup)
            fixed = z.detach()
            value = -self.prior_objective(prior, fixed + w * (z - fixed), step)
            normal = -0.5 * z.pow(2).flatten(1).sum(-1)  # log N(z; 0, I) up to a constant
            return value + (1 - w) * (normal - normal.detach())

        reduced = LatentModel(
            _BoundedOuter(outer.generative, bound), outer.posterior, shared=outer.shared
        )
        self.__dict__["_reduced"] = (model, reduced)  # not a submodule: no state of its own
        return reduced


def _refuse_a_long_diffusion_outer(outer: LatentModel) -> None:
    """A diffusion (a layer-batched posterior) as the outer model: its own objective takes one
    layer a step, but this one walks all of its layers, one network call each, at every step;
    beyond ``latentkit.evaluation.LONG_CHAIN`` layers (a DDPM's default T = 1000 runs a
    thousand times slower than the DDPM alone) that is refused, not started."""
    from latentkit.evaluation import LONG_CHAIN

    layers = outer.num_layers
    if outer.posterior.layer_batched and layers > LONG_CHAIN:
        raise ConfigError(
            f"objective 'composed': the outer model {outer.name or type(outer).__name__!r} is a "
            f"diffusion of {layers} layers, which this objective walks one network call each "
            f"at every step; give it at most {LONG_CHAIN} (num_timesteps), or make the "
            "diffusion the prior (--prior)"
        )


def refuse_a_long_joined_chain(model: Any, objective: str) -> None:
    """A composed model trained by an objective other than ``composed`` (the engine's
    ``elbo``, ``iwae``, …: a recipe's ``objective = "elbo"`` under ``--prior``) walks the
    joined chain one network call per layer at every step; beyond
    ``latentkit.evaluation.LONG_CHAIN`` layers (a ``vdm`` prior at T = 1000: 1,001 of them)
    that is refused, naming the objective that puts the prior's own bound in its place."""
    from latentkit.evaluation import LONG_CHAIN

    if not isinstance(model, ComposedModel) or objective == model.objective_choice.name:
        return  # not composed, or its own objective (the composed one)
    layers = model.num_layers
    if layers > LONG_CHAIN:
        raise ConfigError(
            f"objective {objective!r} trains the composed model on its joined chain, walking "
            f"its {layers:,} layers one network call each at every step; train it with "
            "objective 'composed' (--objective composed, its default), which puts the prior's "
            f"own bound in the prior's place, or give the chain at most {LONG_CHAIN} layers"
        )


def composed_objective(model: ComposedModel, **options: Any) -> ComposedObjective:
    """:class:`ComposedObjective` for ``model`` (options: :class:`ComposedObjectiveConfig`'s)."""
    return ComposedObjective(ComposedObjectiveConfig(**options), model)
