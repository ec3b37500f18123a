"""A composed model by name (what a run configuration declares), and its registry entries."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
from attrs import validators as v

from latentkit.composition.model import ComposedModel, compose
from latentkit.composition.objective import ComposedObjective, ComposedObjectiveConfig
from latentkit.config import structure_config
from latentkit.hookspecs import hookimpl
from latentkit.objectives import ObjectiveSpec
from latentkit.specs import ModelSpec

__all__ = [
    "ComposedConfig",
    "build_composed",
    "compose_by_name",
    "composed_test_configs",
    "latentkit_models",
    "latentkit_objectives",
]


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
    prior_spec = get_model_spec(cfg.prior)
    fields = prior_spec.data_fields()
    if "data_shape" in fields:
        prior_values.setdefault(fields["data_shape"], list(outer.generative.latent_shapes[-1]))
    for field, value in prior_spec.continuous_data_values().items():  # z is continuous
        prior_values.setdefault(field, value)
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


# --- the registry entries (for the core to register, as it registers the ``elbo`` objective) ---


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
def latentkit_models() -> list[ModelSpec]:
    """The ``composed`` model (a ``latentkit_models`` hook implementation)."""
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
