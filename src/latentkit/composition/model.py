"""The composed model: two models' chains joined at the outer model's top latent."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from latentkit.chains import LatentModel
from latentkit.composition.chains import ComposedGenerative, ComposedPosterior, bottom_up_capable
from latentkit.errors import ConfigError, DeviceError, DTypeError, InputError, ShapeError
from latentkit.validation import likelihood_is_discrete

__all__ = ["EVALUATION_TIMESTEPS", "ComposedModel", "compose", "evaluation_model"]


def _check_parts(outer: LatentModel, prior: LatentModel) -> None:
    for role, m in (("outer", outer), ("prior", prior)):
        if not isinstance(m, LatentModel):
            raise InputError(f"compose: {role} must be a latentkit.LatentModel, got {type(m)!r}")
    top = outer.generative.latent_shapes[-1]
    if tuple(prior.data_shape) != tuple(top):
        raise ShapeError(
            f"compose: the prior's data shape {list(prior.data_shape)} must equal the outer "
            f"model's top latent shape {list(top)} (z_{outer.num_layers} of "
            f"{_called(outer)}; the prior {_called(prior)} models it)"
        )
    for role, m in (("outer", outer), ("prior", prior)):
        spec = m.condition_spec or getattr(m.posterior, "condition_spec", None)
        if spec is not None:
            raise ConfigError(
                f"compose: the {role} model {_called(m)} is conditional on {spec.describe()}; "
                "a composed model takes no condition: compose unconditional models"
            )
        if not bottom_up_capable(m.posterior, m.num_layers):
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
            "(the values its plugin declares as ModelSpec.continuous_data)"
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
    with :class:`ComposedObjective` (objective ``composed``: the prior's own objective in the
    place of −ELBO_B(z), e.g. a continuous-time prior's bound, no walk down its T layers);
    ``elbo`` trains on the joined chain. ``with_posterior(q)`` replaces the joined posterior
    only: ``outer``, ``prior`` (and so the composed objective) keep the parts' own posteriors.
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
            objective="composed",
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

    def likelihood_figures(
        self,
        data: Any,
        *,
        discrete: bool | None = None,
        seed: int = 0,
        ode_examples: int = 0,
        ode_margin: float | None = None,
    ) -> dict[str, Any] | None:
        """With a continuous-time prior, ``{"continuous": −ELBO_∞}`` over ``data``, the
        bound training minimises (``latentkit.composition.figures``), which ``evaluate`` and
        ``report`` show beside the T = 12 chain's bounds; ``None`` for any other prior.
        ``discrete``: bits/dim for discrete data (``None``: the outer likelihood says). The
        ODE options belong to a diffusion's own figures: a composed model has none."""
        from latentkit.composition.figures import continuous_figures, has_continuous_prior

        del ode_examples, ode_margin  # no ODE figure of the composed model (docstring)
        if not has_continuous_prior(self):
            return None
        is_discrete = likelihood_is_discrete(self.outer) if discrete is None else bool(discrete)
        return continuous_figures(self, data, discrete=is_discrete, seed=seed)


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


EVALUATION_TIMESTEPS = 12
"""T at which ``latentkit evaluate``/``report`` score a composed model's continuous-time
prior (one that offers ``with_timesteps``): its chain is then La + T + 1 layers, short enough
for the IWAE default (docs/compose.md)."""


def evaluation_model(
    model: Any,
    num_timesteps: int = EVALUATION_TIMESTEPS,
    *,
    say: Callable[[str], Any] | None = None,
) -> Any:
    """The model the evaluation commands score: a composed model whose prior is a
    continuous-time model (``prior.with_timesteps(T)``: the same network and schedule at T
    steps, shared, not copied) with more than ``num_timesteps`` + 1 layers, with that prior at
    ``num_timesteps`` steps — an ordinary discrete chain whose ELBO and IWAE are bounds on its
    own log p(x), walked in La + T + 1 steps, not the trained T's; any other model as is.
    ``say``: told in one line when the prior is replaced."""
    if not isinstance(model, ComposedModel):
        return model
    at = getattr(model.prior, "with_timesteps", None)
    if not callable(at) or model.prior.num_layers <= num_timesteps + 1:
        return model
    view = ComposedModel(model.outer, at(num_timesteps), name=model.name, config=model.config)
    view.train(model.training)
    if say is not None:
        say(
            f"scoring the composed model with its prior {_called(model.prior)} at "
            f"T = {num_timesteps} steps (a {model.prior.num_layers}-layer chain as trained; the "
            "same networks): bounds on that chain's log p(x), far below the continuous-time "
            "bound training minimises, shown as the '−ELBO_∞' figure (docs/compose.md)"
        )
    return view
