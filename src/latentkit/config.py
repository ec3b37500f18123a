"""Model configurations: attrs frozen classes, structured from dicts/TOML with cattrs.

A bad value raises :class:`~latentkit.errors.ConfigError` naming the model, the field,
the value given and (through the class's validators) what is allowed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import cattrs
from cattrs.v import format_exception

from latentkit.arguments import MAX_COUNT, check_count, describe_value
from latentkit.errors import ConfigError

__all__ = [
    "MAX_CLASSES",
    "MAX_DATA_LEVELS",
    "class_count",
    "config_fields",
    "data_levels",
    "describe_fields",
    "drop_rate",
    "int_at_least",
    "one_of",
    "positive_ints",
    "ruled",
    "structure_config",
    "unstructure_config",
]

_converter = cattrs.Converter(forbid_extra_keys=True)


def _strict(kind: str, accept: Any, cast: Any) -> Any:
    """A structure hook that refuses a value of the wrong type instead of coercing it
    (cattrs alone would make ``"false"`` True, ``3.7`` 3 and ``"12"`` the tuple (1, 2))."""

    def hook(value: Any, _type: Any) -> Any:
        if not accept(value):
            raise ValueError(f"expected {kind}, got {value!r}")
        return cast(value)

    return hook


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


_converter.register_structure_hook(
    int, _strict("an int", lambda v: isinstance(v, int) and not isinstance(v, bool), int)
)
_converter.register_structure_hook(float, _strict("a number", _number, float))
_converter.register_structure_hook(
    bool, _strict("true or false", lambda v: isinstance(v, bool), bool)
)
_converter.register_structure_hook(str, _strict("a string", lambda v: isinstance(v, str), str))
_converter.register_structure_hook(  # a word or a count ([data] labels = "all" | N)
    str | int,
    _strict(
        "a string or an int",
        lambda v: isinstance(v, (str, int)) and not isinstance(v, bool),
        lambda v: v,
    ),
)


def _attrs_class(config_class: Any, where: str) -> None:
    if not (isinstance(config_class, type) and attrs.has(config_class)):
        raise ConfigError(
            f"{where} takes an attrs config class, got {describe_value(config_class)}"
        )


def _strings(function: str, **given: Any) -> None:
    for name, value in given.items():
        if not isinstance(value, str):
            raise ConfigError(f"{function}: {name} must be a str, got {describe_value(value)}")


def config_fields(config_class: type) -> list[tuple[str, str, Any]]:
    """(name, type, default) of each field, for tables and ``--help``."""
    _attrs_class(config_class, "config_fields")
    out = []
    for f in attrs.fields(config_class):
        default = f.default
        if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
            default = default.factory()
        tname = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        out.append((f.name, str(tname), default))
    return out


def ruled(rule: str) -> Any:
    """Decorate an attrs validator with the rule it enforces, as ``--help`` shows it."""
    _strings("ruled", rule=rule)

    def mark(check: Any) -> Any:
        check.rule = rule
        return check

    return mark


def _field_docs(config_class: type) -> dict[str, str]:
    """Each field's text from the class docstring's ``Attributes:`` section (Google style)."""
    docs: dict[str, str] = {}
    lines = (config_class.__doc__ or "").splitlines()
    inside, current, indent = False, None, None
    for line in lines:
        stripped = line.strip()
        if stripped in ("Attributes:", "Args:"):
            inside, current, indent = True, None, None
            continue
        if not inside:
            continue
        if not stripped:
            current = None
            continue
        lead = len(line) - len(line.lstrip())
        if indent is None:
            indent = lead
        if lead == indent and ":" in stripped:
            name, _, text = stripped.partition(":")
            current = name.strip()
            docs[current] = text.strip()
        elif lead > (indent or 0) and current:
            docs[current] += " " + stripped
        elif lead < (indent or 0):
            inside = False
    return docs


def describe_fields(config_class: type) -> list[dict[str, Any]]:
    """Name, type, default, allowed values (the validator's ``rule``) and description of each
    field of an attrs config class: what ``latentkit train --help`` prints. A field a base
    class declares takes the base's description unless the class describes it again."""
    _attrs_class(config_class, "describe_fields")
    docs: dict[str, str] = {}
    for klass in reversed(config_class.__mro__):
        docs.update(_field_docs(klass))
    out = []
    for (name, tname, default), f in zip(config_fields(config_class), attrs.fields(config_class)):
        out.append(
            {
                "name": name,
                "type": tname,
                "default": default,
                "rule": getattr(f.validator, "rule", ""),
                "doc": docs.get(name, ""),
            }
        )
    return out


def structure_config(
    config_class: type, values: Mapping[str, Any], *, model: str = "", where: str = ""
) -> Any:
    """Build ``config_class`` from plain values (e.g. parsed TOML), with clear errors that
    start with ``where`` (default: ``model 'NAME'``, or the class's name)."""
    _attrs_class(config_class, "structure_config")
    _strings("structure_config", model=model, where=where)
    if not isinstance(values, Mapping):
        raise ConfigError(
            f"structure_config: values must be a mapping of field names to values, got "
            f"{type(values).__name__}"
        )
    where = where or (f"model {model!r}" if model else config_class.__name__)
    names = [f.name for f in attrs.fields(config_class)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ConfigError(f"{where}: unknown config field(s) {unknown}; known fields: {names}")
    try:
        return _converter.structure(dict(values), config_class)
    except cattrs.ClassValidationError as exc:
        messages = [
            m.removesuffix(" @ $") for m in cattrs.transform_error(exc, format_exception=_say)
        ]
        raise ConfigError(f"{where}: " + "; ".join(messages)) from None
    except (ValueError, TypeError) as exc:  # attrs validators run inside the constructor
        raise ConfigError(f"{where}: {_say(exc, config_class)}") from None


def _say(exc: BaseException, type_: Any) -> str:
    # attrs validators already name the field and the allowed range: keep their words.
    # attrs' in_() raises ValueError(message, attribute, options, value): keep the message.
    if isinstance(exc, ValueError) and exc.args and isinstance(exc.args[0], str):
        return exc.args[0]
    return format_exception(exc, type_)


def unstructure_config(config: Any) -> dict[str, Any]:
    """The config as plain JSON/TOML-ready values; ``structure_config`` inverts it."""
    if not attrs.has(type(config)):
        raise ConfigError(
            f"unstructure_config takes an attrs config instance, got {type(config).__name__}"
        )
    return _converter.unstructure(config)


# Validators shared by the configs (training, objectives, schedules): each raises ConfigError
# (a ValueError) naming the field, the rule and the value given.


def one_of(*choices: str) -> Any:
    """An attrs validator: the value is one of ``choices`` (at least one string)."""
    if not choices or not all(isinstance(c, str) for c in choices):
        raise ConfigError(f"one_of takes one or more strings, got {describe_value(choices)}")

    @ruled("one of " + ", ".join(choices))
    def check(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        if not isinstance(value, str) or value not in choices:
            raise ConfigError(f"{attribute.name!r} must be one of {list(choices)}, got {value!r}")

    return check


MAX_CLASSES = 100_000
"""The most class labels a conditional model's ``classes`` field takes."""


@ruled(f"0 (no condition), or an int in 2..{MAX_CLASSES}")
def class_count(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    """An attrs validator of a conditional plugin's ``classes`` field: 0 (the unconditional
    model) or K ≥ 2 class labels (1 would condition on a label with one value)."""
    check_count(value, repr(attribute.name), low=0, high=MAX_CLASSES, error=ConfigError)
    if value == 1:
        raise ConfigError(f"{attribute.name!r} = 1 conditions on a label with one value: use 0")


@ruled("a float in [0, 1)")
def drop_rate(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    """An attrs validator of a classifier-free guidance drop rate: a probability < 1."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ConfigError(
            f"{attribute.name!r} must be in [0, 1) (a probability of dropping c), got {value!r}"
        )


def int_at_least(low: int) -> Any:
    """An attrs validator: the value is an int (not a bool) ≥ ``low``."""
    if isinstance(low, bool) or not isinstance(low, int):
        raise ConfigError(f"int_at_least: low must be an int, got {describe_value(low)}")

    @ruled(f"int ≥ {low}")
    def check(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"{attribute.name!r} must be an int ≥ {low}, got {value!r}")

    return check


def positive_ints(min_len: int = 1, *, hint: str = "") -> Any:
    """An attrs validator: a tuple of at least ``min_len`` ints > 0 (bools refused), e.g. a
    data shape (``min_len=1``) or hidden widths that may be empty (``min_len=0``). ``hint``
    follows the rule in the message, saying what the ints are."""
    check_count(min_len, "positive_ints: min_len", low=0, error=ConfigError)
    _strings("positive_ints", hint=hint)
    if min_len <= 0:
        rule = "a tuple of ints > 0"
    elif min_len == 1:
        rule = "a non-empty tuple of ints > 0"
    else:
        rule = f"a tuple of at least {min_len} ints > 0"

    @ruled(rule.removeprefix("a "))
    def check(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        whole = isinstance(value, tuple) and all(
            isinstance(d, int) and not isinstance(d, bool) and 0 < d <= MAX_COUNT for d in value
        )
        if not whole or len(value) < min_len:
            raise ConfigError(
                f"{attribute.name!r} must be {rule}{hint} (each at most {MAX_COUNT:,}), "
                f"got {describe_value(value)}"
            )

    return check


MAX_DATA_LEVELS = 256
"""The most levels K a discretized likelihood takes (8-bit data)."""


def data_levels(decoder_field: str = "decoder", reads: str = "discretized") -> Any:
    """An attrs validator of ``levels``, K, the data's levels: an int in 2..256, read by the
    decoder ``reads`` alone, so with another value of ``decoder_field`` it must keep its
    default, 256 (a K given for a decoder that ignores it is a mistake, refused)."""
    _strings("data_levels", decoder_field=decoder_field, reads=reads)

    @ruled(f"int in 2..{MAX_DATA_LEVELS}")
    def check(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        whole = isinstance(value, int) and not isinstance(value, bool)
        if not whole or not 2 <= value <= MAX_DATA_LEVELS:
            raise ConfigError(
                f"{attribute.name!r} must be an int K in 2..{MAX_DATA_LEVELS} (the data's "
                f"levels: 2 for binary data {{0, 1}}, 256 for 8-bit data), got {value!r}"
            )
        decoder = getattr(instance, decoder_field)
        if value != MAX_DATA_LEVELS and decoder != reads:
            raise ConfigError(
                f"{attribute.name!r} is only read with {decoder_field}={reads!r} "
                f"({decoder_field} is {decoder!r}); got {attribute.name}={value}"
            )

    return check
