"""Models compose: any model as the prior of another, by joining their chains (DESIGN §11).

A model A with latents z_1..z_La and a model B whose data are A's top latent z = z_La, with
latents h_1..h_Lb, give one model over z_1..z_La, h_1..h_Lb::

    p(x, z, h)  = p_A(x | z_1) Π p_A(z_{l-1} | z_l) · p_B(z_La | h_1) Π p_B(h_{l-1} | h_l) p_B(h_Lb)
    q(z, h | x) = q_A(z_1 | x) Π q_A(z_l | z_{l-1}) · q_B(h_1 | z_La) Π q_B(h_l | h_{l-1})

A's prior p_A(z_La) is replaced by B's whole generative chain. The composed posterior is
bottom-up (Markov between the parts), so the engine's ``bottom-up`` estimator gives every
draw's log p(x, z, h) − log q(z, h | x): the ELBO, and IWAE with the *joint* importance weight
p_A(x|z) p_B(z, h) / (q_A(z|x) q_B(h|z)). Nothing here computes a bound: the composed model is
an ordinary :class:`~latentkit.LatentModel` and every estimator, oracle and check applies.

Training may replace the inner part by B's own objective (a continuous-time diffusion's
ELBO_∞, a VAE's analytic KL): :class:`ComposedObjective`, whose loss is
−E_q[log p_A(x | z) − log q_A(z | x) + ELBO_B(z)] — an unbiased estimate of a lower bound on
log p(x), but its per-draw value is NOT an importance log weight (exp ELBO_B(z) is not an
unbiased estimate of p_B(z)); IWAE always uses the joint chain. Notation: ``docs/compose.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import attrs
from attrs import validators as v
from torch import Tensor
from torch.distributions import Distribution

from latentkit.chains import GenerativeChain, LatentModel, LinearGaussianSpec, PosteriorChain
from latentkit.config import structure_config
from latentkit.errors import ConfigError, DeviceError, DTypeError, EstimatorError, ShapeError
from latentkit.estimators import monte_carlo_estimator
from latentkit.hookspecs import hookimpl
from latentkit.objectives import Objective, ObjectiveSpec
from latentkit.validation import likelihood_is_discrete

__all__ = [
    "ComposedConfig",
    "ComposedEncoding",
    "ComposedGenerative",
    "ComposedModel",
    "ComposedObjective",
    "ComposedObjectiveConfig",
    "ComposedPosterior",
    "build_composed",
    "compose",
    "compose_by_name",
    "composed_objective",
    "composed_test_configs",
    "latentkit_models",
    "latentkit_objectives",
]


# --- the generative chain ---------------------------------------------------------------------


class ComposedGenerative(GenerativeChain):
    """p_A(x | z) with p_B(z, h) as its prior: layers z_1..z_La (A's), then h_1..h_Lb (B's).

    Submodules ``outer`` (A's generative chain) and ``inner`` (B's). Layer La + 1 is h_1, and
    its transition p(z_La | h_1) is B's likelihood.
    """

    def __init__(self, outer: GenerativeChain, inner: GenerativeChain):
        super().__init__(outer.data_shape, outer.latent_shapes + inner.latent_shapes)
        self.outer = outer
        self.inner = inner
        self.outer_layers = outer.num_layers

    def prior(self, n: int) -> Distribution:
        """p_B(h_Lb)."""
        return self.inner.prior(n)

    def transition(self, l: int, z: Tensor) -> Distribution:
        """p(z_{l-1} | z_l): A's for l ≤ La, B's likelihood p_B(z_La | h_1) at l = La + 1, B's
        transitions above."""
        La = self.outer_layers
        if l <= La:
            return self.outer.transition(l, z)
        if l == La + 1:
            return self.inner.likelihood(z)
        return self.inner.transition(l - La, z)

    def likelihood(self, z1: Tensor) -> Distribution:
        """p_A(x | z_1)."""
        return self.outer.likelihood(z1)

    def linear_gaussian(self) -> LinearGaussianSpec | None:
        """Both parts linear-Gaussian: the joined spec, B's likelihood becoming the transition
        p(z_La | h_1); else None. Then p(x) = N(W_A μ_B + b_A, W_A Σ_B W_Aᵀ + Ψ_A) for one-layer A,
        with N(μ_B, Σ_B) B's marginal, and the exact oracles apply."""
        a, b = self.outer.linear_gaussian(), self.inner.linear_gaussian()
        if a is None or b is None:
            return None
        return LinearGaussianSpec(
            prior_mean=b.prior_mean,
            prior_var=b.prior_var,
            transitions=(*a.transitions, (b.weight, b.bias, b.noise_var), *b.transitions),
            weight=a.weight,
            bias=a.bias,
            noise_var=a.noise_var,
        )


# --- the posterior chain ----------------------------------------------------------------------


class ComposedEncoding:
    """One pass's encoding: A's (``outer``), and B's of the z_La drawn in this pass (``inner``,
    set when q(h_1 | z_La) is built)."""

    __slots__ = ("inner", "outer")

    def __init__(self, outer: Any):
        self.outer = outer
        self.inner: Any = None


def _bottom_up_capable(q: PosteriorChain, layers: int) -> bool:
    # A one-layer chain's top factor is its first: q(z_L | x) = q(z_1 | x) when L = 1.
    return q.bottom_up or (layers == 1 and q.top_down)


def _first(q: PosteriorChain, h: Any) -> Distribution:
    return q.first(h) if q.bottom_up else q.top(h)


class ComposedPosterior(PosteriorChain):
    """q_A(z_1..z_La | x) then q_B(h_1..h_Lb | z_La), bottom-up (Markov between the parts).

    Each part must be bottom-up, or one layer (whose top factor is its first). Submodules
    ``outer`` and ``inner``. The engine's pass encodes x once (:class:`ComposedEncoding`);
    called directly with the data, the layers above h_1 use B's encoding of the z_La that the
    last call of ``up(La + 1, ...)`` with that same tensor saw.
    """

    bottom_up = True

    def __init__(self, outer: PosteriorChain, inner: PosteriorChain, outer_layers: int):
        super().__init__()
        self.outer = outer
        self.inner = inner
        self.outer_layers = int(outer_layers)
        self.__dict__["_direct"] = (None, None)  # (data tensor, B's encoding): direct calls

    def encode(self, x: Tensor) -> ComposedEncoding:
        return ComposedEncoding(self.outer.encode(x))

    @staticmethod
    def _outer(x: Any) -> Any:
        return x.outer if isinstance(x, ComposedEncoding) else x

    def first(self, x: Any) -> Distribution:
        """q_A(z_1 | x)."""
        return _first(self.outer, self._outer(x))

    def up(self, l: int, z: Tensor, x: Any) -> Distribution:
        """q_A(z_l | z_{l-1}, x) for l ≤ La; q_B(h_1 | z_La) at l = La + 1; above, B's
        q_B(h_{l'} | h_{l'-1}) with l' = l − La."""
        La = self.outer_layers
        if l <= La:
            return self.outer.up(l, z, self._outer(x))
        if l == La + 1:
            h = self.inner.encode(z)
            if isinstance(x, ComposedEncoding):
                x.inner = h
            else:
                self.__dict__["_direct"] = (x, h)
            return _first(self.inner, h)
        if isinstance(x, ComposedEncoding):
            h = x.inner
        else:
            seen, h = self.__dict__["_direct"]
            h = h if seen is x else None
        if h is None:
            raise EstimatorError(
                f"q(h_{l - La} | h_{l - La - 1}) of a composed model needs the prior model's "
                f"encoding of z_{La}: build q(h_1 | z_{La}) first, up({La + 1}, z_{La}, x), "
                "with the same x (or the pass's encode(x))"
            )
        return self.inner.up(l - La, z, h)


# --- the composed model -----------------------------------------------------------------------


def _check_parts(outer: LatentModel, prior: LatentModel) -> None:
    for role, m in (("outer", outer), ("prior", prior)):
        if not isinstance(m, LatentModel):
            raise TypeError(f"compose: {role} must be a latentkit.LatentModel, got {type(m)!r}")
    top = outer.generative.latent_shapes[-1]
    if tuple(prior.data_shape) != tuple(top):
        raise ShapeError(
            f"compose: the prior's data shape {list(prior.data_shape)} must equal the outer "
            f"model's top latent shape {list(top)} (z_{outer.num_layers} of "
            f"{_called(outer)}; the prior {_called(prior)} models it)"
        )
    for role, m in (("outer", outer), ("prior", prior)):
        if not _bottom_up_capable(m.posterior, m.num_layers):
            raise ConfigError(
                f"compose: the {role} model {_called(m)} has a top-down-only posterior chain "
                f"({type(m.posterior).__name__}) over {m.num_layers} layers; a composed posterior "
                "is bottom-up, so each part needs q(z_1|x), q(z_l|z_{l-1}) (hvae: "
                "posterior='bottom-up')"
            )
    if likelihood_is_discrete(prior):
        raise ConfigError(
            f"compose: the prior {_called(prior)} has a discrete likelihood p(z | h_1), but the "
            f"outer model's z_{outer.num_layers} is continuous; give it a continuous one "
            "(vae/hvae: likelihood='gaussian'; ddpm/vdm: decoder='gaussian')"
        )
    a, b = outer.reference(), prior.reference()
    if a.dtype != b.dtype:
        raise DTypeError(f"compose: the outer model is {a.dtype}, the prior {b.dtype}")
    if a.device != b.device:
        raise DeviceError(f"compose: the outer model is on {a.device}, the prior on {b.device}")


def _called(m: LatentModel) -> str:
    return repr(m.name) if m.name else type(m).__name__


class ComposedModel(LatentModel):
    """A :class:`LatentModel` whose chains are ``outer``'s joined with ``prior``'s at z_La.

    ``model.outer`` and ``model.prior`` are the two models composed (their chains are this
    model's ``generative.outer``/``generative.inner`` and ``posterior.outer``/``posterior.inner``;
    their shared modules this model's ``shared.outer_*``/``shared.prior_*``). Trained by default
    with the ``elbo`` objective on the joined chain; :class:`ComposedObjective` puts the prior's
    own objective in its place.
    """

    def __init__(
        self,
        outer: LatentModel,
        prior: LatentModel,
        *,
        name: str | None = None,
        config: Any = None,
    ):
        _check_parts(outer, prior)
        shared = {f"outer_{k}": m for k, m in outer.shared.items()}
        shared.update({f"prior_{k}": m for k, m in prior.shared.items()})
        super().__init__(
            ComposedGenerative(outer.generative, prior.generative),
            ComposedPosterior(outer.posterior, prior.posterior, outer.num_layers),
            name=name,
            config=config,
            shared=shared,
        )
        self.__dict__["parts"] = (outer, prior)  # references: the modules are registered above

    @property
    def outer(self) -> LatentModel:
        """The model A whose prior was replaced."""
        return self.__dict__["parts"][0]

    @property
    def prior(self) -> LatentModel:
        """The model B over A's top latent."""
        return self.__dict__["parts"][1]

    @property
    def outer_layers(self) -> int:
        """La: layers 1..La are A's latents, La + 1..L B's."""
        return self.outer.num_layers


def compose(
    outer: LatentModel, *, prior: LatentModel, name: str | None = None, config: Any = None
) -> ComposedModel:
    """``outer`` with the model ``prior`` as the prior of its top latent: a :class:`ComposedModel`.

    ``prior.data_shape`` must equal ``outer``'s top latent shape (else :class:`ShapeError`
    naming both); each posterior chain must be bottom-up or one layer, and the prior's
    likelihood continuous (else :class:`ConfigError`). Both are held, not copied: the
    composed model trains their parameters together.
    """
    return ComposedModel(outer, prior, name=name, config=config)


# --- training with the prior's own objective -------------------------------------------------


class _PriorBound(Distribution):
    """Stands where p_A(z_La) stood: ``log_prob(z)`` is ELBO_B(z), the prior model's bound on
    log p_B(z), estimated by its objective (−loss). Not a density: no draws."""

    arg_constraints: ClassVar[dict] = {}

    def __init__(self, bound: Callable[[Tensor], Tensor], n: int, event_shape: tuple[int, ...]):
        self.bound = bound
        super().__init__((n,), event_shape, validate_args=False)

    def log_prob(self, value: Tensor) -> Tensor:
        return self.bound(value)


class _BoundedOuter(GenerativeChain):
    """A's generative chain with :class:`_PriorBound` as its prior."""

    def __init__(self, outer: GenerativeChain, bound: Callable[[Tensor], Tensor]):
        super().__init__(outer.data_shape, outer.latent_shapes)
        self.outer = outer
        self.bound = bound

    def prior(self, n: int) -> Distribution:
        return _PriorBound(self.bound, n, self.latent_shapes[-1])

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
    """

    prior_objective: str | None = attrs.field(
        default=None, validator=v.optional(v.instance_of(str))
    )
    prior_objective_config: dict[str, Any] = attrs.field(factory=dict, converter=dict)


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
        from latentkit.registry import make_objective

        prior = model.prior
        name, options = prior.default_objective
        if config.prior_objective is not None:
            name, options = config.prior_objective, config.prior_objective_config
        self.prior_objective = make_objective(name, prior, **options)

    @classmethod
    def supports(cls, model: LatentModel) -> str | None:
        if isinstance(model, ComposedModel):
            return None
        return f"it needs a composed model (latentkit.compose), got {type(model).__name__}"

    def forward(self, model: LatentModel, x: Tensor, step: int | Tensor | None = None) -> Tensor:
        prior = model.prior

        def bound(z: Tensor) -> Tensor:
            return -self.prior_objective(prior, z, step)

        outer = model.outer
        reduced = LatentModel(
            _BoundedOuter(outer.generative, bound), outer.posterior, shared=outer.shared
        )
        return -monte_carlo_estimator(reduced)(reduced, x).total()


def composed_objective(model: ComposedModel, **options: Any) -> ComposedObjective:
    """:class:`ComposedObjective` for ``model`` (options: :class:`ComposedObjectiveConfig`'s)."""
    return ComposedObjective(ComposedObjectiveConfig(**options), model)


# --- by name: what a run configuration declares -----------------------------------------------


def _name(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{attribute.name!r} must be a registered model's name, got {value!r}")


@attrs.frozen(kw_only=True)
class ComposedConfig:
    """A composed model by name: ``outer`` with ``prior`` over its top latent.

    Attributes:
        outer: the outer model's registered name (e.g. ``vae``).
        outer_config: its config values.
        prior: the prior model's registered name (e.g. ``vdm``).
        prior_config: its config values; its data shape (the field its plugin declares) is
            the outer model's top latent shape and its likelihood ``gaussian`` unless given.
        data_shape: when set, the outer model's ``data_shape`` unless ``outer_config`` has it
            (so ``latentkit train`` can fill it from the data).
        likelihood: likewise the outer model's ``likelihood``.
    """

    outer: str = attrs.field(validator=_name)
    outer_config: dict[str, Any] = attrs.field(factory=dict, converter=dict)
    prior: str = attrs.field(validator=_name)
    prior_config: dict[str, Any] = attrs.field(factory=dict, converter=dict)
    data_shape: tuple[int, ...] | None = attrs.field(
        default=None, converter=attrs.converters.optional(tuple)
    )
    likelihood: str | None = attrs.field(default=None, validator=v.optional(v.instance_of(str)))


def build_composed(cfg: ComposedConfig) -> ComposedModel:
    """The composed model ``cfg`` names (a registry factory: ``load_model("composed", ...)``
    once registered)."""
    from latentkit.registry import get_model_spec, load_model

    outer_values = dict(cfg.outer_config)
    fields = get_model_spec(cfg.outer).data_fields()
    given = {"data_shape": cfg.data_shape, "likelihood": cfg.likelihood}
    for key, field in fields.items():
        if given[key] is not None:
            outer_values.setdefault(field, list(given[key]) if key == "data_shape" else given[key])
    outer = load_model(cfg.outer, **outer_values)
    prior_values = dict(cfg.prior_config)
    fields = get_model_spec(cfg.prior).data_fields()
    if "data_shape" in fields:
        prior_values.setdefault(fields["data_shape"], list(outer.generative.latent_shapes[-1]))
    if "likelihood" in fields:
        prior_values.setdefault(fields["likelihood"], "gaussian")
    prior = load_model(cfg.prior, **prior_values)
    recorded = attrs.evolve(cfg, outer_config=outer_values, prior_config=prior_values)
    return compose(outer, prior=prior, name="composed", config=recorded)


def compose_by_name(
    outer: str,
    outer_config: Mapping[str, Any] | None = None,
    prior: str = "vae",
    prior_config: Mapping[str, Any] | None = None,
) -> ComposedModel:
    """``compose(load_model(outer, **outer_config), prior=load_model(prior, **prior_config))``,
    the prior's data shape filled from the outer model's top latent and its likelihood
    ``gaussian`` unless given; ``model.config`` is the :class:`ComposedConfig` that rebuilds it
    (with every filled value), ``model.name`` is ``composed``."""
    values = {
        "outer": outer,
        "outer_config": dict(outer_config or {}),
        "prior": prior,
        "prior_config": dict(prior_config or {}),
    }
    return build_composed(structure_config(ComposedConfig, values, model="composed"))


# --- the registry entry (registered by the core, as the ``elbo`` objective is) --------------


def composed_test_configs() -> Any:
    """Small :class:`ComposedConfig` values for the checks: a linear-Gaussian or MLP VAE over
    a VAE, a bottom-up hvae, a DDPM or a ``vdm`` (Gaussian decoders, two to four steps)."""
    from hypothesis import strategies as st

    priors = st.sampled_from(
        [
            ("vae", {"latent_dim": 2, "architecture": "linear"}),
            ("vae", {"latent_dim": 2, "hidden": [8]}),
            ("hvae", {"latent_dims": [2, 2], "posterior": "bottom-up", "hidden": [8]}),
            ("ddpm", {"num_timesteps": 3, "decoder": "gaussian", "hidden": [8]}),
            (
                "vdm",
                {
                    "num_timesteps": 2,
                    "decoder": "gaussian",
                    "network": "linear",
                    "gamma_min": -3.0,
                    "gamma_max": 3.0,
                },
            ),
        ]
    )
    outers = st.sampled_from(
        [
            {"data_shape": [4], "latent_dim": 2, "architecture": "linear"},
            {"data_shape": [4], "latent_dim": 2, "hidden": [8]},
        ]
    )
    return st.builds(
        lambda outer, prior: {
            "outer": "vae",
            "outer_config": outer,
            "prior": prior[0],
            "prior_config": prior[1],
        },
        outers,
        priors,
    )


@hookimpl
def latentkit_models() -> list[Any]:
    """The ``composed`` model (a ``latentkit_models`` hook implementation)."""
    from latentkit.registry import ModelSpec

    return [
        ModelSpec(
            name="composed",
            config_class=ComposedConfig,
            factory=build_composed,
            description="any model as the prior of another's top latent (latentkit.compose)",
            test_configs=composed_test_configs,
        )
    ]


@hookimpl
def latentkit_objectives() -> list[ObjectiveSpec]:
    """The ``composed`` objective (a ``latentkit_objectives`` hook implementation)."""
    return [
        ObjectiveSpec(
            "composed",
            ComposedObjectiveConfig,
            ComposedObjective,
            "composed model: the outer model's terms with the prior model's own objective",
        )
    ]
