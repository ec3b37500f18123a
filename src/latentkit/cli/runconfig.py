"""The run configuration ``train`` reads: a TOML file or recipe, flags and ``--set``,
merged and checked."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import tomllib

from latentkit.checkpoint import (
    read_regular_file,
)
from latentkit.cli.common import (
    MAX_CONFIG_BYTES,
    MAX_DATA_LIMIT,
    MAX_IWAE_K,
    MAX_ROWS,
    MAX_SEED,
    CLIError,
    parse_value,
)
from latentkit.config import one_of, ruled, structure_config, unstructure_config
from latentkit.errors import ConfigError
from latentkit.ode import ODE_FLAG_MARGIN
from latentkit.report import DIAGNOSE_EXAMPLES
from latentkit.training.config import _int_in, _nonneg_float

__all__ = ["DataConfig", "EvalConfig", "RunConfig", "RunSpec", "write_run_config"]


@attrs.define
class RunSpec:
    """Everything ``train`` was asked for, merged from the TOML file, flags and --set."""

    model: str | None = None
    model_config: dict[str, Any] = attrs.Factory(dict)
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
        "objective",
        "objective_config",
        "train",
        "data",
        "evaluate",
        "recipe",  # a shipped recipe's description: read by `latentkit recipes`, not by train
    }
    unknown = sorted(set(doc) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown top-level key(s) {unknown}; known: {sorted(known)}")
    for key in ("model", "objective"):
        if key in doc and not isinstance(doc[key], str):
            raise ConfigError(f"{path}: {key} must be a name (a string), got {doc[key]!r}")
    spec = RunSpec(model=doc.get("model"), objective=doc.get("objective"))
    for key in ("model_config", "objective_config", "train", "data", "evaluate"):
        table = doc.get(key, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: [{key}] must be a table, got {type(table).__name__}")
        setattr(spec, key, dict(table))
    return spec


def _train_field_names() -> list[str]:
    from latentkit.training import TrainConfig

    return [f.name for f in attrs.fields(TrainConfig)]


def _apply_set(spec: RunSpec, items: Sequence[str], model_fields: Sequence[str]) -> None:
    for item in items:
        if not isinstance(item, str):  # argparse reads `--set=--` as an empty list
            raise CLIError(f"--set {item!r}: expected FIELD=VALUE")
        key, eq, text = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise CLIError(f"--set {item!r}: expected FIELD=VALUE")
        value = parse_value(text.strip())
        section, dot, field = key.partition(".")
        if dot and section in ("train", "data", "evaluate", "model", "objective"):
            target = {
                "train": spec.train,
                "data": spec.data,
                "evaluate": spec.evaluate,
                "model": spec.model_config,
                "objective": spec.objective_config,
            }[section]
            target[field] = value
        elif key in model_fields:
            spec.model_config[key] = value
        elif key in _train_field_names():
            spec.train[key] = value
        else:
            raise ConfigError(
                f"--set {key}: no such field; model {spec.model!r} has fields "
                f"{list(model_fields)}, training has {_train_field_names()} "
                "(or use objective.FIELD, train.FIELD, data.FIELD, evaluate.FIELD)"
            )


def _check_keys(values: dict[str, Any], known: Sequence[str], where: str) -> None:
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {unknown}; known fields: {list(known)}")


@ruled("a non-empty name")
def _name(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None and (not isinstance(value, str) or not value):
        raise ConfigError(f"{attribute.name!r} must be a non-empty name, got {value!r}")


def _optional(low: int, high: int) -> Any:
    inner = _int_in(low, high)

    @ruled(inner.rule + ", or unset")
    def check(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        if value is not None:
            inner(instance, attribute, value)

    return check


@attrs.frozen(kw_only=True)
class DataConfig:
    """The ``[data]`` table: which data set, and the training protocol.

    Attributes:
        name: digits, mnist, mnist-sample, fashion-mnist, file:PATH or folder:PATH (unset:
            mnist, falling back to the MNIST sample, then digits).
        variant: unit, binarized, threshold, 8bit or real (unset: what the model's
            likelihood fits).
        seed: seed of the binarization of the fixed splits (not the training seed).
        limit: use at most this many examples of each split (unset: all).
        binarization: ``fixed`` (one draw, made once) or ``dynamic`` (a fresh draw of each
            training image at each use; binarized data only).
        validation: hold out the last N training examples for the periodic evaluations and
            the choice of the best checkpoint (0: none; the test split is then used).
    """

    name: str | None = attrs.field(default=None, validator=_name)
    variant: str | None = attrs.field(default=None, validator=_name)
    seed: int = attrs.field(default=0, validator=_int_in(0, MAX_SEED))
    limit: int | None = attrs.field(default=None, validator=_optional(1, MAX_DATA_LIMIT))
    binarization: str = attrs.field(default="fixed", validator=one_of("fixed", "dynamic"))
    validation: int = attrs.field(default=0, validator=_int_in(0, 10**9))


@attrs.frozen(kw_only=True)
class EvalConfig:
    """The ``[evaluate]`` table: how ``--report`` and ``evaluate`` score a model.

    Attributes:
        iwae_k: importance samples of the IWAE NLL (0: skip; unset: 100, none for chains
            longer than 16 layers).
        examples: test examples evaluated (0: all, fewer for long chains).
        batch_size: examples per evaluation batch.
        num_samples: draws of z per example for the ELBO.
        estimator: the ELBO estimator (auto, analytic, bottom-up, layer-batched, …).
        seed: seed of the evaluation's noise.
        diagnose: mutual information, aggregate KL and active units on this many examples
            (0: skip).
        ode_examples: the probability-flow ODE figure on this many of the evaluated examples
            (the first), for models offering it (0: skip; slow: one adaptive solve a batch).
        ode_margin: bits/dim by which an example's ODE figure may exceed its own −IWAE_k
            (or −ELBO) before it is flagged and listed (docs/continuous.md).
    """

    iwae_k: int | None = attrs.field(default=None, validator=_optional(0, MAX_IWAE_K))
    examples: int = attrs.field(default=0, validator=_int_in(0, 10**9))
    batch_size: int = attrs.field(default=500, validator=_int_in(1, MAX_ROWS))
    num_samples: int = attrs.field(default=1, validator=_int_in(1, MAX_ROWS))
    estimator: str = attrs.field(default="auto", validator=_name)
    seed: int = attrs.field(default=0, validator=_int_in(0, MAX_SEED))
    diagnose: int = attrs.field(default=DIAGNOSE_EXAMPLES, validator=_int_in(0, 10**6))
    ode_examples: int = attrs.field(default=0, validator=_int_in(0, 10**9))
    ode_margin: float = attrs.field(default=ODE_FLAG_MARGIN, validator=_nonneg_float)


_TABLES = {"[data]": DataConfig, "[evaluate]": EvalConfig}


def _check_options(values: dict[str, Any], known: Sequence[str], where: str) -> None:
    """The [data] / [evaluate] values: known fields, each of the right type and range,
    checked by structuring them into their typed class (:class:`DataConfig`,
    :class:`EvalConfig`) with the strict converter every config goes through."""
    _check_keys(values, known, where)
    cls = _TABLES[where]
    # TOML has no null: an unset optional field is absent, never None
    structure_config(cls, {k: v for k, v in values.items() if v is not None}, where=where)


def _merge_flags(spec: RunSpec, args: argparse.Namespace) -> None:
    for flag, field in (
        ("steps", "steps"),
        ("batch_size", "batch_size"),
        ("lr", "lr"),
        ("seed", "seed"),
        ("eval_every", "eval_every"),
        ("checkpoint_every", "checkpoint_every"),
        ("device", "device"),
        ("amp", "amp"),
        ("compile", "compile"),
        ("progress", "progress"),
        ("on_nonfinite", "on_nonfinite"),
    ):
        value = getattr(args, flag, None)
        if value is not None:
            spec.train[field] = value
    for flag, field in (("data", "name"), ("variant", "variant"), ("limit", "limit")):
        value = getattr(args, flag, None)
        if value is not None:
            spec.data[field] = value
    _merge_eval_flags(spec.evaluate, args)


def _merge_eval_flags(target: dict[str, Any], args: argparse.Namespace) -> None:
    renamed = {"eval_examples": "examples", "ode": "ode_examples"}
    for flag in (
        "iwae_k",
        "eval_examples",
        "num_samples",
        "estimator",
        "diagnose",
        "ode",
        "ode_margin",
    ):
        value = getattr(args, flag, None)
        if value is not None:
            target[renamed.get(flag, flag)] = value


@attrs.frozen(kw_only=True)
class RunConfig:
    """The whole run, typed: what ``RUN/config.toml`` records, and what ``latentkit train
    --config RUN/config.toml`` reads back to train the same run again.

    Attributes:
        model: the model's registry name.
        objective: the training objective's registry name.
        model_config: the model's config, every field (the data shape included).
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

    def to_toml(self) -> str:
        """The ``--config`` file of this run (TOML has no null: unset fields are absent)."""
        import tomli_w

        from latentkit.checkpoint import json_safe

        def table(values: dict[str, Any]) -> dict[str, Any]:
            return {k: v for k, v in json_safe(values).items() if v is not None}

        doc = {
            "model": self.model,
            "objective": self.objective,
            "model_config": table(self.model_config),
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
            "objective": {"name": run.objective, "config": run.objective_config},
            "train": unstructure_config(run.train),
            "data": data_info,
            "evaluate": unstructure_config(run.evaluate),
        },
    )
