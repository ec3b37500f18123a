"""What a plugin contributes, one spec per thing: the base every spec shares and
:class:`ModelSpec` (``latentkit_models``); :class:`~latentkit.ObjectiveSpec`
(``latentkit_objectives``) is the same base with the objective's factory.

Each rule on a spec's fields is one validator here, used by both kinds of spec; a value
that breaks one is a :class:`~latentkit.ConfigError` naming the spec's class and the field.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import attrs
from attrs import validators as v

from latentkit.errors import ConfigError

__all__ = ["ModelSpec", "Spec"]

_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")


def _refuse(instance: Any, attribute: attrs.Attribute, rule: str, value: Any) -> None:
    shown = repr(value)
    if len(shown) > 60 or "\n" in shown:
        shown = f"a {type(value).__name__}"
    raise ConfigError(f"{type(instance).__name__}: {attribute.name!r} must be {rule}; got {shown}")


def _registry_name(instance: Any, attribute: attrs.Attribute, value: str) -> None:
    if not isinstance(value, str) or not _NAME.match(value):
        _refuse(
            instance,
            attribute,
            "lower case letters, digits, '-' or '_', starting with a letter",
            value,
        )


def _attrs_class(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not (isinstance(value, type) and attrs.has(value)):
        _refuse(instance, attribute, "an attrs class", value)


def _callable(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not callable(value):
        _refuse(instance, attribute, "callable", value)


def _of(kind: type, words: str) -> Callable[[Any, attrs.Attribute, Any], None]:
    def check(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        if not isinstance(value, kind):
            _refuse(instance, attribute, words, value)

    return check


_optional_callable = v.optional(_callable)
_optional_str = v.optional(_of(str, "a str or None"))


@attrs.frozen
class Spec:
    """The fields every spec has.

    Attributes:
        name: registry name (lower case letters, digits, ``-`` and ``_``, starting with a
            letter), e.g. ``"vae"`` or ``"iwae"``.
        config_class: attrs (frozen) class of the configuration; its validators reject bad
            values naming the field.
        factory: builds the thing from a config instance (the kind of spec says with what).
        description: one line for ``latentkit list`` and the docs.
        plugin: the distribution that registered it (filled in by the registry).
    """

    name: str = attrs.field(validator=_registry_name)
    config_class: type = attrs.field(validator=_attrs_class)
    factory: Callable[..., Any] = attrs.field(validator=_callable)
    description: str = attrs.field(default="", validator=_of(str, "a str"))
    plugin: str = attrs.field(default="", validator=_of(str, "a str"))


@attrs.frozen
class ModelSpec(Spec):
    """What a plugin contributes for one model (returned from ``latentkit_models``).

    Attributes:
        name, config_class, description, plugin: as every :class:`Spec`.
        factory: ``factory(config) -> LatentModel`` (a :class:`~latentkit.LatentModel`).
        test_configs: (keyword only, optional) a zero-argument callable returning a
            Hypothesis strategy of config dicts (keyword arguments of ``load_model``) for
            ``latentkit.testing``'s checks and ``latentkit verify``: small configs that
            build and run in milliseconds and together cover the model's options. ``None``
            (the default): the checks use the default config. Test data need not be
            declared: the checks draw it from the model itself (see ``docs/checks.md``).
        data_shape_field: (keyword only) the config field that ``latentkit train`` fills
            with the shape of one example of the data set (a list, e.g. ``[1, 28, 28]``)
            unless it is given; ``None``: the command fills none. Ignored when the config
            class has no such field. Default ``"data_shape"``.
        likelihood_field: (keyword only) the config field that ``latentkit train`` fills
            with the likelihood the data's variant fits (``bernoulli`` for binarized data,
            ``discretized`` for 8-bit, ``gaussian`` otherwise) unless it is given; when the
            config has it, binarized data are loaded by default. ``None``: none. Default
            ``"likelihood"``. (The model ↔ command-line contract: docs/tutorial.md.)
        labelled_field: (keyword only, optional) the config field that ``latentkit train``
            fills with the number of labelled training examples the data give (after
            ``[data] labels`` and ``validation``), for a model whose loss weighs labelled
            examples by their count (M2's α / N_l). Given and different from the data's
            count, the run is refused, naming both. ``None`` (the default): none.
        checks: (keyword only, optional) a zero-argument callable returning the model's own
            checks (``latentkit.testing.Check`` objects: identities only this family has),
            which ``latentkit verify`` and ``latentkit.testing.run_checks`` run after the
            generic ones, on the same drawn cases. Their keys must not clash with the
            generic checks'.
        mutants: (keyword only, optional) a zero-argument callable returning this model
            with deliberate faults (``latentkit.testing.mutants.Mutant`` objects, usually
            ``latentkit.testing.mutants.on_model(...)``): the broken models the checks
            themselves are tested on (``docs/checks.md``, "What each fault is caught by").
        continuous_data: (keyword only, optional) the config values that make the model a
            density of continuous data, e.g. ``{"decoder": "gaussian"}``: what
            ``latentkit.composition`` sets (unless given) when the model is another
            model's prior, over that model's continuous latent. ``None`` (the default):
            ``likelihood_field`` set to ``"gaussian"``, when the config has it.
    """

    test_configs: Callable[[], Any] | None = attrs.field(
        default=None, kw_only=True, validator=_optional_callable
    )
    data_shape_field: str | None = attrs.field(
        default="data_shape", kw_only=True, validator=_optional_str
    )
    likelihood_field: str | None = attrs.field(
        default="likelihood", kw_only=True, validator=_optional_str
    )
    labelled_field: str | None = attrs.field(default=None, kw_only=True, validator=_optional_str)
    checks: Callable[[], Any] | None = attrs.field(
        default=None, kw_only=True, validator=_optional_callable
    )
    mutants: Callable[[], Any] | None = attrs.field(
        default=None, kw_only=True, validator=_optional_callable
    )
    continuous_data: Mapping[str, Any] | None = attrs.field(
        default=None, kw_only=True, validator=v.optional(_of(Mapping, "a mapping or None"))
    )

    def data_fields(self) -> dict[str, str]:
        """``{"data_shape": FIELD, "likelihood": FIELD, "labelled": FIELD}`` for the declared
        fields that the config class has: what ``latentkit train`` fills from the data."""
        names = {f.name for f in attrs.fields(self.config_class)}
        declared = {
            "data_shape": self.data_shape_field,
            "likelihood": self.likelihood_field,
            "labelled": self.labelled_field,
        }
        return {key: f for key, f in declared.items() if f is not None and f in names}

    def continuous_data_values(self) -> dict[str, Any]:
        """The config values that make the model a density of continuous data
        (``continuous_data``, else ``{likelihood_field: "gaussian"}`` when declared)."""
        if self.continuous_data is not None:
            return dict(self.continuous_data)
        field = self.data_fields().get("likelihood")
        return {field: "gaussian"} if field else {}
