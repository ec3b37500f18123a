"""Each field declared once: the attrs field is the TOML key, the ``--set`` name, and (when
marked ``metadata=shortcut(...)``) the flag with its ``--help`` line.

Everything here is read from the classes (``latentkit.cli.tables.SECTIONS``), so a field
added with a shortcut is covered without editing this file or the parser.

Mutants these tests kill: a shortcut mark dropped from a field (the flag set differs from
today's), a flag stored under another field's name or not merged into its table (the
merged value differs), a flag given a default of its own (an unset flag overrides the
TOML), a bare ``--set`` name not routed to ``[train]``, a TOML table not read for one of
the tables, a switch generated with the wrong direction (``--no-progress`` turning the bar
on), a field's default missing from its ``--help`` line.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import attrs
import pytest
import tomli_w

from latentkit.cli import build_parser
from latentkit.cli.flags import add_shortcuts, flag_name, merge_shortcuts, shortcut_fields
from latentkit.cli.parser import TABLE_FLAGS
from latentkit.cli.runconfig import RunSpec, _apply_set, _merge_flags, _read_toml, table_flags
from latentkit.cli.tables import SECTIONS
from latentkit.config import structure_config
from latentkit.errors import ConfigError
from latentkit.training.config import _int_in, shortcut

# The flags of today's command line, by command: the shortcuts the classes must generate.
TODAY = {
    "train": {
        "--steps", "--batch-size", "--lr", "--seed", "--eval-every", "--checkpoint-every",
        "--device", "--amp", "--compile", "--no-progress", "--on-nonfinite",
        "--data", "--variant", "--limit",
        "--iwae-k", "--eval-limit", "--num-samples", "--estimator", "--diagnose", "--ode",
        "--ode-margin", "--sample-quality",
    },
    "evaluate": {
        "--data", "--variant", "--limit",
        "--iwae-k", "--eval-limit", "--batch-size", "--num-samples", "--estimator", "--seed",
        "--diagnose", "--ode", "--ode-margin", "--sample-quality", "--no-progress",
    },
    "report": {
        "--iwae-k", "--eval-limit", "--num-samples", "--estimator", "--seed", "--diagnose",
        "--ode", "--ode-margin", "--sample-quality", "--no-progress",
    },
}  # fmt: skip
POSITIONAL = {"train": [], "evaluate": ["RUN"], "report": ["RUN"]}


def _kind(field: attrs.Attribute) -> str:
    return str(field.type).split("|")[0].strip().removeprefix("<class '").removesuffix("'>")


def _accepted(field: attrs.Attribute, value: Any) -> bool:
    try:
        field.validator(None, field, value)
    except ConfigError:
        return False
    return True


def other_value(field: attrs.Attribute) -> Any:
    """A value the field accepts that is not its default, from its type and validator."""
    default, kind = field.default, _kind(field)
    choices = getattr(field.validator, "choices", None)
    if kind == "bool":
        candidates: list[Any] = [not default]
    elif choices:
        candidates = [c for c in choices if c != default]
    elif kind == "int":
        candidates = [1, 2] if default is None else [default + 1, default - 1]
    elif kind == "float":
        candidates = [default / 2, 0.5, 0.25]
    else:
        candidates = ["abc" if default is None else default + "x"]
        if "int" in str(field.type):  # a word or a count ([data] labels = "all" | N)
            candidates.append(5)
    good = [v for v in candidates if v != default and _accepted(field, v)]
    assert good, f"no other value for {field.name} among {candidates}"
    return good[0]


def toml_text(value: Any) -> str:
    return tomli_w.dumps({"v": value}).strip().removeprefix("v = ")


ALL_FIELDS = [(section, f) for section, cls in SECTIONS.items() for f in attrs.fields(cls)]


@pytest.mark.parametrize(
    ("section", "field"), ALL_FIELDS, ids=[f"{s}.{f.name}" for s, f in ALL_FIELDS]
)
def test_every_field_is_reachable_by_set_and_toml(section, field, tmp_path):
    """``--set SECTION.FIELD=VALUE`` and ``[SECTION] FIELD = VALUE`` both reach the field;
    a bare ``--set FIELD=VALUE`` reaches a training field (no model field of that name)."""
    cls = SECTIONS[section]
    value = other_value(field)
    spec = RunSpec()
    _apply_set(spec, [f"{section}.{field.name}={toml_text(value)}"], model_fields=[])
    assert getattr(structure_config(cls, getattr(spec, section)), field.name) == value
    path = tmp_path / "run.toml"
    path.write_text(tomli_w.dumps({section: {field.name: value}}))
    from_file = getattr(_read_toml(path), section)
    assert getattr(structure_config(cls, from_file), field.name) == value
    if section == "train":
        bare = RunSpec()
        _apply_set(bare, [f"{field.name}={toml_text(value)}"], model_fields=["latent_dim"])
        assert bare.train == {field.name: value}


def _flags(command: str) -> dict[str, argparse.Action]:
    """The command's generated flags (those storing under ``SECTION.FIELD``), by flag."""
    sub = build_parser()._subparsers._group_actions[0].choices[command]
    return {a.option_strings[0]: a for a in sub._actions if "." in a.dest}


@pytest.mark.parametrize("command", sorted(TODAY))
def test_the_parser_flags_are_the_fields_marked_as_shortcuts(command):
    """The flags are exactly the marked fields' (no hand-written one beside them), and they
    are today's command line."""
    derived = {
        flag_name(f, mark): f"{section}.{f.name}"
        for section in TABLE_FLAGS[command]
        for f, mark in shortcut_fields(SECTIONS[section], command)
    }
    flags = _flags(command)
    assert {flag: a.dest for flag, a in flags.items()} == derived
    assert set(flags) == TODAY[command]


SHORTCUTS = [(command, flag) for command in sorted(TODAY) for flag in sorted(TODAY[command])]


@pytest.mark.parametrize(("command", "flag"), SHORTCUTS)
def test_each_flag_sets_its_field_and_an_unset_flag_leaves_the_default(command, flag):
    action = _flags(command)[flag]
    section, name = action.dest.split(".")
    field = attrs.fields_dict(SECTIONS[section])[name]
    parser = build_parser()
    unset = parser.parse_args([command, *POSITIONAL[command]])
    spec = RunSpec()
    _merge_flags(spec, unset)
    assert getattr(spec, section) == {}  # so the TOML's value, or the default, stands
    assert getattr(structure_config(SECTIONS[section], {}), name) == field.default
    value = other_value(field)
    given = [flag] if _kind(field) == "bool" else [flag, toml_text(value).strip('"')]
    args = parser.parse_args([command, *given, *POSITIONAL[command]])
    _merge_flags(spec, args)
    tables = {s: getattr(spec, s) for s in SECTIONS}
    assert tables == {**{s: {} for s in SECTIONS}, section: {name: value}}
    if section != "train":
        assert table_flags(args, section) == {name: value}
    if not field.metadata["latentkit.shortcut"].help and field.default is not None:
        assert f"default {field.default!r}" in action.help


@attrs.frozen(kw_only=True)
class _Settings:
    """A table with fields of every kind, as a plugin or a later version might add.

    Attributes:
        width: how wide.
        tint: the tint.
        fast: go fast.
        quiet: speak.
        hidden: not a flag.
    """

    width: int = attrs.field(default=3, validator=_int_in(1, 9), metadata=shortcut())
    tint: str = attrs.field(default="red", metadata=shortcut("colour", metavar="C"))
    fast: bool = attrs.field(default=False, metadata=shortcut())
    quiet: bool = attrs.field(default=True, metadata=shortcut(commands=("other",)))
    hidden: int = 0


def test_a_field_added_with_a_shortcut_needs_no_parser_edit(monkeypatch):
    """A marked field of any table is a flag of ``train``, merged into its table, with no
    other edit; a switch on by default is turned off by ``--no-NAME``."""
    parser = argparse.ArgumentParser()
    add_shortcuts(parser, _Settings, section="extra", command="other")
    args = parser.parse_args(["--width", "5", "--colour", "blue", "--fast", "--no-quiet"])
    values: dict[str, Any] = {}
    merge_shortcuts(values, args, _Settings, "extra")
    assert values == {"width": 5, "tint": "blue", "fast": True, "quiet": False}
    assert "how wide (default 3)" in parser.format_help() and "--colour C" in parser.format_help()
    other = argparse.ArgumentParser()
    add_shortcuts(other, _Settings, section="extra", command="train")
    assert "--no-quiet" not in other.format_help()  # another command's flag only

    @attrs.frozen(kw_only=True)
    class Extended(SECTIONS["train"]):
        """Training, and one more field.

        Attributes:
            warmup_bits: a later field.
        """

        warmup_bits: int = attrs.field(default=4, validator=_int_in(0, 9), metadata=shortcut())

    monkeypatch.setitem(SECTIONS, "train", Extended)
    args = build_parser().parse_args(["train", "--warmup-bits", "7"])
    spec = RunSpec()
    _merge_flags(spec, args)
    assert spec.train == {"warmup_bits": 7}
    assert _flags("train")["--warmup-bits"].help == "a later field (default 4)"


def test_an_unset_flag_does_not_override_the_file(tmp_path: Path):
    """A flag not given leaves the TOML's value (flags default to unset, not the field's
    default): the file's steps and progress stand, the flag's seed wins."""
    path = tmp_path / "run.toml"
    path.write_text("[train]\nsteps = 7\nprogress = false\nseed = 1\n")
    spec = _read_toml(path)
    _merge_flags(spec, build_parser().parse_args(["train", "--seed", "5"]))
    assert spec.train == {"steps": 7, "progress": False, "seed": 5}


@pytest.mark.parametrize("command", sorted(TODAY))
def test_a_flag_takes_its_fields_choices(command):
    """A field whose validator names its choices (``one_of``) gives them to its flag."""
    for flag, action in _flags(command).items():
        section, name = action.dest.split(".")
        choices = getattr(attrs.fields_dict(SECTIONS[section])[name].validator, "choices", None)
        assert action.choices == choices, flag
    if command == "train":
        assert _flags(command)["--on-nonfinite"].choices == ("stop", "skip")


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["evaluate", "RUN", "--iwae-k", "-1"], "--iwae-k: 'iwae_k' must be an int ≥ 0"),
        (
            ["report", "RUN", "--num-samples", "0"],
            "--num-samples: 'num_samples' must be an int ≥ 1",
        ),
        (["evaluate", "RUN", "--limit", "0"], "--limit: 'limit' must be an int ≥ 1"),
        (
            ["evaluate", "RUN", "--ode-margin", "-0.5"],
            "--ode-margin: 'ode_margin' must be a number",
        ),
        (["evaluate", "RUN", "--eval-limit", "-3"], "--eval-limit: 'examples' must be an int ≥ 0"),
    ],
)
def test_a_flags_value_is_checked_by_its_fields_validator(argv, words, capsys):
    """A bad value is refused by the field's own validator, before any work, as one error
    line naming the flag and the field's rule (exit status 2), as from ``--set``."""
    section = "data" if "--limit" in argv else "evaluate"
    with pytest.raises(ConfigError, match=words):
        table_flags(build_parser().parse_args(argv), section)
    from latentkit.cli import main

    assert main(argv) == 2  # refused before the (missing) run is looked at
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and words in err[0]


def test_train_report_evaluates_with_the_tables_seed(tmp_path, monkeypatch):
    """``[evaluate] seed`` is the evaluation's seed under ``train --report`` too, as under
    ``evaluate`` and ``report`` (it was read by those two only)."""
    from latentkit.cli import main
    from latentkit.cli import train as train_command

    asked: dict[str, Any] = {}
    monkeypatch.setattr(train_command, "write_report", lambda *a, **kw: asked.update(kw))
    argv = ["train", "--model", "vae", "--data", "digits", "--limit", "64", "--steps", "1"]
    argv += ["--batch-size", "16", "--no-progress", "--report", "--set", "evaluate.seed=3"]
    assert main([*argv, "--run-dir", str(tmp_path / "run")]) == 0
    assert asked["seed"] == 3 and asked["options"] == {"seed": 3, "progress": False}  # and
    # train's --no-progress reaches the report's bars
