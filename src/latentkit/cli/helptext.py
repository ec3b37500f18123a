"""``latentkit train --help``: every field of the run's tables, read from their classes,
with the chosen model's and objective's when ``--model``/``--objective`` come first."""

from __future__ import annotations

import argparse
import sys

from latentkit.cli.tables import SECTION_TITLES, SECTIONS
from latentkit.config import describe_fields

__all__ = ["TrainHelp", "fields_help", "train_epilog"]


def _field_line(f: dict) -> str:
    default = "unset" if f["default"] is None else repr(f["default"])
    rule = f"; {f['rule']}" if f["rule"] else ""
    return f"  {f['name']} ({f['type']}, default {default}{rule})\n      {f['doc']}"


def fields_help(title: str, prefix: str, config_class: type) -> str:
    """One block of ``train --help``: every field of ``config_class`` with its type, default,
    allowed values and description, read from the class (its validators and docstring)."""
    lines = [f"{title} (--set {prefix}FIELD=VALUE, or the TOML table):"]
    lines += [_field_line(f) for f in describe_fields(config_class)]
    return "\n".join(lines)


def train_epilog() -> str:
    """What ``train --help`` shows below the flags: an example and every table's fields."""
    return "\n\n".join(
        [
            "example: latentkit train --model vae --data mnist --steps 3000 --report "
            "--set latent_dim=16",
            *(
                fields_help(f"[{name}] {SECTION_TITLES[name]}", f"{name}.", cls)
                for name, cls in SECTIONS.items()
            ),
            "[model_config] and [objective_config]: the fields of the model and objective "
            "chosen; put --model NAME (and --objective NAME) before --help to list them, "
            "or see `latentkit list`.",
        ]
    )


class TrainHelp(argparse.Action):
    """``--help`` of ``train``: the run configuration's fields, with the chosen model's and
    objective's when ``--model``/``--objective`` come before it."""

    def __init__(
        self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None
    ):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        from latentkit.errors import LatentkitError
        from latentkit.registry import get_model_spec, get_objective_spec

        text = parser.format_help()
        for flag, lookup in (("model", get_model_spec), ("objective", get_objective_spec)):
            name = getattr(namespace, flag, None)
            if name:
                try:
                    cls = lookup(name).config_class
                except LatentkitError as exc:
                    text += f"\n{flag} {name!r}: {exc}\n"
                    continue
                prefix = "" if flag == "model" else "objective."
                title = f"[{flag}_config] {flag} {name!r}"
                text += "\n" + fields_help(title, prefix, cls) + "\n"
        parser._print_message(text, sys.stdout)
        parser.exit()
