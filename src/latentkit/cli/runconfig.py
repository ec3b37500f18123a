"""The run configuration ``train`` reads: a TOML file or recipe, flags and ``--set``,
merged and checked."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import tomllib

from latentkit.checkpoint import (
    read_regular_file,
)
from latentkit.cli.common import MAX_CONFIG_BYTES, CLIError, _run_dir_of, parse_value
from latentkit.cli.flags import merge_shortcuts
from latentkit.cli.tables import SECTIONS, DataConfig, EvalConfig, field_names
from latentkit.config import structure_config, unstructure_config
from latentkit.errors import ConfigError

__all__ = [
    "DataConfig",
    "EvalConfig",
    "RunConfig",
    "RunSpec",
    "compose_spec",
    "run_table_options",
    "split_composed",
    "table_flags",
    "write_run_config",
]


@attrs.define
class RunSpec:
    """Everything ``train`` was asked for, merged from the TOML file, flags and --set."""

    model: str | None = None
    model_config: dict[str, Any] = attrs.Factory(dict)
    prior: str | None = None
    prior_config: dict[str, Any] = attrs.Factory(dict)
    objective: str | None = None
    objective_config: dict[str, Any] = attrs.Factory(dict)
    train: dict[str, Any] = attrs.Factory(dict)
    data: dict[str, Any] = attrs.Factory(dict)
    evaluate: dict[str, Any] = attrs.Factory(dict)


def _read_toml(path: Path | None, *, recipe: str | None = None) -> RunSpec:
    """The run a TOML file (``--config``) or a shipped recipe (``--recipe``) describes."""
    try:
        if recipe is not None:
            from latentkit.recipes import recipe_text

            path = Path(f"recipe {recipe}")
            doc = tomllib.loads(recipe_text(recipe))
        else:
            assert path is not None
            raw = read_regular_file(path, limit=MAX_CONFIG_BYTES, what="TOML file")
            doc = tomllib.loads(raw.decode("utf-8"))
    except OSError as exc:
        raise CLIError(f"--config {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise CLIError(
            f"--config {path}: not UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise CLIError(f"--config {path}: not valid TOML: {exc}") from None
    except RecursionError:
        raise CLIError(f"--config {path}: not valid TOML: nested too deeply") from None
    known = {
        "model",
        "model_config",
        "prior",
        "prior_config",
        "objective",
        "objective_config",
        *SECTIONS,
        "recipe",  # a shipped recipe's description: read by `latentkit recipes`, not by train
    }
    unknown = sorted(set(doc) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown top-level key(s) {unknown}; known: {sorted(known)}")
    for key in ("model", "prior", "objective"):
        if key in doc and not isinstance(doc[key], str):
            raise ConfigError(f"{path}: {key} must be a name (a string), got {doc[key]!r}")
    spec = RunSpec(model=doc.get("model"), prior=doc.get("prior"), objective=doc.get("objective"))
    for key in ("model_config", "prior_config", "objective_config", *SECTIONS):
        table = doc.get(key, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: [{key}] must be a table, got {type(table).__name__}")
        setattr(spec, key, dict(table))
    return spec


def _train_field_names() -> list[str]:
    return list(field_names(SECTIONS["train"]))


def _apply_set(spec: RunSpec, items: Sequence[str], model_fields: Sequence[str]) -> None:
    tables = {name: getattr(spec, name) for name in SECTIONS}
    tables.update(model=spec.model_config, prior=spec.prior_config, objective=spec.objective_config)
    for item in items:
        if not isinstance(item, str):  # argparse reads `--set=--` as an empty list
            raise CLIError(f"--set {item!r}: expected FIELD=VALUE")
        key, eq, text = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise CLIError(f"--set {item!r}: expected FIELD=VALUE")
        value = parse_value(text.strip())
        section, dot, field = key.partition(".")
        if dot and section in tables:
            tables[section][field] = value
        elif key in model_fields:
            spec.model_config[key] = value
        elif key in _train_field_names():
            spec.train[key] = value
        else:
            raise ConfigError(
                f"--set {key}: no such field; model {spec.model!r} has fields "
                f"{list(model_fields)}, training has {_train_field_names()} "
                "(or use prior.FIELD, objective.FIELD, train.FIELD, data.FIELD, evaluate.FIELD)"
            )


def _check_keys(values: dict[str, Any], known: Sequence[str], where: str) -> None:
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {unknown}; known fields: {list(known)}")


def _check_options(values: dict[str, Any], where: str) -> None:
    """The values of table ``where`` (``[data]``, ``[evaluate]``): known fields, each of the
    right type and range, checked by structuring them into the table's typed class
    (:data:`~latentkit.cli.tables.SECTIONS`) with the strict converter every config goes
    through."""
    cls = SECTIONS[where.strip("[]")]
    _check_keys(values, field_names(cls), where)
    # TOML has no null: an unset optional field is absent, never None
    structure_config(cls, {k: v for k, v in values.items() if v is not None}, where=where)


COMPOSED = "composed"
"""The registry name of a model with another as its prior (``latentkit.composition``):
what ``--model A --prior B`` trains."""


def compose_spec(spec: RunSpec) -> None:
    """``--model A --prior B`` as the one model it is: ``composed``, its config
    ``{outer: A, outer_config: [model_config], prior: B, prior_config: [prior_config]}``;
    ``spec.prior`` is kept (the run's record names both). A ``[prior_config]`` or
    ``prior.FIELD`` without a prior is refused."""
    if spec.prior is None:
        if spec.prior_config:
            raise ConfigError(
                f"prior field(s) {sorted(spec.prior_config)} given ([prior_config] or "
                "--set prior.FIELD) but no prior model: pass --prior NAME"
            )
        return
    spec.model_config = {
        "outer": spec.model,
        "outer_config": dict(spec.model_config),
        "prior": spec.prior,
        "prior_config": dict(spec.prior_config),
    }
    spec.model = COMPOSED


def split_composed(spec: RunSpec, model: str, config: dict[str, Any], where: Any) -> bool:
    """A resumed ``composed`` run's record (``model``, ``config``) back into ``spec`` as
    ``--model A --prior B`` with its two tables, under the values given now (the record
    first); False, spec untouched, for any other model. A different model or prior given
    now is refused."""
    parts = (config.get("outer"), config.get("prior"))
    if model != COMPOSED or not all(isinstance(p, str) for p in parts):
        return False
    for given, recorded, what in ((spec.model, parts[0], "model"), (spec.prior, parts[1], "prior")):
        if given not in (None, recorded, COMPOSED):
            raise ConfigError(f"--resume: {where} has {what} {recorded!r}, not {given!r}")
    spec.model, spec.prior = parts
    spec.model_config = {**dict(config.get("outer_config") or {}), **spec.model_config}
    spec.prior_config = {**dict(config.get("prior_config") or {}), **spec.prior_config}
    return True


def _merge_flags(spec: RunSpec, args: argparse.Namespace) -> None:
    """The flags given (each a shortcut for one field of a table) into the run's tables."""
    for section, cls in SECTIONS.items():
        merge_shortcuts(getattr(spec, section), args, cls, section)


def table_flags(args: argparse.Namespace, section: str) -> dict[str, Any]:
    """The values of table ``section`` given as flags (``evaluate``'s ``--iwae-k``, ...),
    checked by its class; unset ones absent, so each is its default where it is read."""
    values: dict[str, Any] = {}
    merge_shortcuts(values, args, SECTIONS[section], section)
    _check_options(values, f"[{section}]")
    return values


_DISPLAY = frozenset({"progress"})
"""Recorded fields a later command does not inherit: how a run was watched, not scored."""


def run_table_options(
    args: argparse.Namespace, section: str, run: Path, say: Any = None
) -> dict[str, Any]:
    """Table ``section``'s values for a command on the run ``run`` (a run folder, its
    ``checkpoints/`` or ``best/``, or a checkpoint in one): the table the run recorded in
    ``RUN/config.json`` (what ``train --report`` scored it with: a recipe's ``[evaluate]``),
    each value overridden by its flag; unset ones absent. A checkpoint outside a run folder
    (no ``config.json`` beside it) has no recorded table: the flags alone. Display settings
    (``progress``) and fields this version does not know are not taken from the record.
    ``say(line)``, when given, hears the recorded values used that differ from the defaults."""
    flags = table_flags(args, section)
    path = _run_dir_of(Path(run)) / "config.json"
    if not path.is_file():
        return flags
    try:
        doc = json.loads(read_regular_file(path, limit=MAX_CONFIG_BYTES, what="run record"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CLIError(f"{path}: the run's record cannot be read: {exc}") from None
    table = doc.get(section) if isinstance(doc, dict) else None
    if table is None:
        return flags  # a run recorded before the table existed
    if not isinstance(table, dict):
        raise CLIError(f"{path}: [{section}] must be a table, got {type(table).__name__}")
    known = field_names(SECTIONS[section])
    recorded = {
        k: v for k, v in table.items() if k in known and k not in _DISPLAY and v is not None
    }
    try:
        _check_options(recorded, f"[{section}]")
    except ConfigError as exc:
        raise CLIError(f"{path}: the run's recorded {exc}") from None
    defaults = unstructure_config(SECTIONS[section]())
    used = {k: v for k, v in recorded.items() if k not in flags and v != defaults.get(k)}
    if used and say is not None:
        listed = ", ".join(f"{k} = {v!r}" for k, v in sorted(used.items()))
        say(f"[{section}] as the run recorded it: {listed} (a flag overrides each)")
    return {**recorded, **flags}


@attrs.frozen(kw_only=True)
class RunConfig:
    """The whole run, typed: what ``RUN/config.toml`` records, and what ``latentkit train
    --config RUN/config.toml`` reads back to train the same run again.

    Attributes:
        model: the model's registry name (with ``prior``: the outer model's).
        objective: the training objective's registry name.
        model_config: the model's config, every field (the data shape included).
        prior: the registry name of the model that is ``model``'s prior (``--prior``), or
            None.
        prior_config: its config, every field (its data shape: the model's top latent's).
        objective_config: the objective's config, every field.
        train: the :class:`~latentkit.training.TrainConfig`.
        data: the :class:`DataConfig`, with the data set and variant as resolved.
        evaluate: the :class:`EvalConfig`.
    """

    model: str
    objective: str
    model_config: dict[str, Any]
    objective_config: dict[str, Any]
    train: Any  # TrainConfig
    data: DataConfig
    evaluate: EvalConfig
    prior: str | None = None
    prior_config: dict[str, Any] = attrs.field(factory=dict)

    def to_toml(self) -> str:
        """The ``--config`` file of this run (TOML has no null: unset fields are absent)."""
        import tomli_w

        from latentkit.checkpoint import json_safe

        def table(values: dict[str, Any]) -> dict[str, Any]:
            return {k: v for k, v in json_safe(values).items() if v is not None}

        doc = {
            "model": self.model,
            **({} if self.prior is None else {"prior": self.prior}),
            "objective": self.objective,
            "model_config": table(self.model_config),
            **({} if self.prior is None else {"prior_config": table(self.prior_config)}),
            "objective_config": table(self.objective_config),
            "train": table(unstructure_config(self.train)),
            "data": table(unstructure_config(self.data)),
            "evaluate": table(unstructure_config(self.evaluate)),
        }
        header = (
            "# The whole configuration of this run, as `latentkit train` resolved it.\n"
            "# Train it again: latentkit train --config THIS_FILE --run-dir OTHER_FOLDER\n"
        )
        return header + tomli_w.dumps(doc)


def write_run_config(run_dir: Path, run: RunConfig, data_info: dict[str, Any]) -> None:
    """``RUN/config.toml`` (the ``--config`` form) and ``RUN/config.json`` (the same, with
    the data's recorded details), each written atomically."""
    from latentkit.checkpoint import atomic_write_bytes, atomic_write_json

    atomic_write_bytes(run_dir / "config.toml", run.to_toml().encode())
    atomic_write_json(
        run_dir / "config.json",
        {
            "model": run.model,
            "model_config": run.model_config,
            **({} if run.prior is None else {"prior": run.prior, "prior_config": run.prior_config}),
            "objective": {"name": run.objective, "config": run.objective_config},
            "train": unstructure_config(run.train),
            "data": data_info,
            "evaluate": unstructure_config(run.evaluate),
        },
    )
