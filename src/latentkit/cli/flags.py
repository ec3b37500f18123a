"""The commands' flags, generated from the config classes' fields (as jsonargparse and tyro
generate theirs from typed signatures).

A field marked ``metadata=shortcut(...)`` (:class:`~latentkit.training.config.Shortcut`)
becomes a flag: ``TrainConfig.batch_size`` is ``--batch-size``, an int, with the field's
description and default as its ``--help`` line (and its validator's choices, if it has
any, as the flag's). The value lands in the namespace under ``SECTION.FIELD`` and
:func:`merge_shortcuts` copies the flags given into that table, so adding a field with a
shortcut needs no edit here nor in the parser.
"""

from __future__ import annotations

import argparse
import typing
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from latentkit.config import describe_fields
from latentkit.errors import ConfigError
from latentkit.training.config import SHORTCUT, Shortcut

__all__ = ["add_shortcuts", "flag_name", "merge_shortcuts", "shortcut_fields"]

_PARSE: dict[str, Callable[[str], Any]] = {"int": int, "float": float, "str": str}
"""How a flag's text becomes the field's value, by the field's type; :func:`merge_shortcuts`
then checks it by the field's validator (a bad one is one error line naming the flag and
the field's rule, exit status 2, as from TOML or ``--set``)."""


def shortcut_fields(
    config_class: type, command: str | None = None
) -> list[tuple[attrs.Attribute, Shortcut]]:
    """The fields of ``config_class`` that are flags (of ``command``, when given)."""
    out = []
    for f in attrs.fields(config_class):
        mark = f.metadata.get(SHORTCUT)
        if mark is None or (command is not None and mark.commands and command not in mark.commands):
            continue
        out.append((f, mark))
    return out


def _kind(field: attrs.Attribute) -> str:
    """The field's type by name: ``int``, ``float``, ``str`` or ``bool`` (``str | None``:
    ``str``), from its annotation as written or as resolved (cattrs resolves them)."""
    t = field.type
    if isinstance(t, str):
        return t.split("|")[0].strip()
    inner = [a for a in typing.get_args(t) if a is not type(None)] or [t]
    return getattr(inner[0], "__name__", str(inner[0]))


def _is_switch(field: attrs.Attribute) -> bool:
    return _kind(field) == "bool"


def flag_name(field: attrs.Attribute, mark: Shortcut) -> str:
    """``--batch-size`` for ``batch_size``; ``--no-progress`` for a switch on by default."""
    name = mark.flag or field.name.replace("_", "-")
    if not mark.flag and _is_switch(field) and field.default is True:
        name = "no-" + name
    return "--" + name


def _help(field: attrs.Attribute, mark: Shortcut, doc: str, note: str | None) -> str:
    """The flag's ``--help`` line: its own, or the field's description and default."""
    if mark.help:
        text = mark.help.replace("{default}", str(field.default))
    else:
        text = doc.rstrip(".")
        if field.default is not None:  # inside the description's own last parentheses
            default = f"default {field.default!r}"
            text = text[:-1] + f"; {default})" if text.endswith(")") else f"{text} ({default})"
    if note:
        text += f" ({note})"
    return text.replace("%", "%%")  # argparse formats help with %


def add_shortcuts(
    group: Any,
    config_class: type,
    *,
    section: str,
    command: str,
    notes: Mapping[str, str] | None = None,
) -> None:
    """Add the flags of ``config_class``'s fields to ``group`` (a parser or argument group),
    each storing under ``SECTION.FIELD``, unset (``None``) unless given. ``notes``: a few
    words by field name, added to its help in parentheses (what ``command`` does when the
    flag is not given, where that differs between commands)."""
    docs = {d["name"]: d["doc"] for d in describe_fields(config_class)}
    for field, mark in shortcut_fields(config_class, command):
        flag = flag_name(field, mark)
        dest = f"{section}.{field.name}"
        text = _help(field, mark, docs.get(field.name, ""), (notes or {}).get(field.name))
        if _is_switch(field):
            # on by default: the flag turns it off; off by default: the flag turns it on
            action = "store_false" if field.default is True else "store_true"
            group.add_argument(flag, dest=dest, action=action, default=None, help=text)
            continue
        choices = getattr(field.validator, "choices", None)
        group.add_argument(
            flag,
            dest=dest,
            type=_PARSE[_kind(field)],
            metavar=None if choices else (mark.metavar or flag[2:].upper().replace("-", "_")),
            choices=choices,
            help=text,
        )


def merge_shortcuts(
    target: dict[str, Any], args: argparse.Namespace, config_class: type, section: str
) -> None:
    """Copy the flags of ``config_class`` given on the command line into ``target`` (the
    table's values by field name), each checked by its field's validator, a bad one a
    :class:`~latentkit.errors.ConfigError` naming the flag; a flag not given leaves the
    table's value as it is."""
    for field, mark in shortcut_fields(config_class):
        value = getattr(args, f"{section}.{field.name}", None)
        if value is None:
            continue
        if field.validator is not None:  # a flag's field is checked on its value alone
            try:
                field.validator(None, field, value)
            except ConfigError as exc:
                raise ConfigError(f"{flag_name(field, mark)}: {exc}") from None
        target[field.name] = value
