"""The ``latentkit`` command: list, train, evaluate, sample, report, verify.

Configuration comes from a TOML file and/or flags, later ones winning::

    model = "vae"              # top level: the model's registry name
    objective = "iwae"         # top level: the training objective (default: the model's own)
    [model_config]             # fields of the model's attrs config class
    latent_dim = 16
    [objective_config]         # fields of the objective's config (docs/objectives.md)
    k = 5
    [train]                    # fields of latentkit.training.TrainConfig
    steps = 3000
    [data]                     # name, variant, seed, limit
    name = "mnist"
    variant = "binarized"
    [evaluate]                 # iwae_k, examples, batch_size, num_samples, estimator
    iwae_k = 100

``--set field=value`` sets one value: ``latent_dim=16`` (a model field), ``train.lr=3e-4``,
``objective.k=50``, ``data.limit=1000``, ``evaluate.iwae_k=50``. Values are read as TOML
(``hidden=[512,512]``, ``amp=true``), else taken as text (``likelihood=bernoulli``). A bad
field or value is an error that names it. Under
``torchrun --nproc_per_node=N -m latentkit.cli train ...`` the same command trains with
DistributedDataParallel (docs/training.md).

``train`` holds an OS lock on the run folder (``RUN/.latentkit.lock``) while it writes, and
checks and builds everything (data, model, trainer) before it touches an existing run;
``--overwrite`` moves the old run aside and deletes it only once the new run has written a
checkpoint (docs/reliability.md, "Hostile runs").

Every refusal — a bad flag, file, field, value, data set or checkpoint, a NaN in training —
is one line on stderr starting ``error:`` and a non-zero exit status (2 for the command line
and configuration, 1 for the rest), never a Python traceback (docs/reliability.md). The
TOML file is parsed with ``tomllib``, never evaluated.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import attrs
import tomllib
import torch
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from latentkit.checkpoint import (
    CheckpointError,
    atomic_write_bytes,
    atomic_write_json,
    latest_checkpoint,
    load_trained_model,
    memory_bytes,
    read_checkpoint,
    read_regular_file,
    resolve_checkpoint,
    writable_path,
)
from latentkit.config import config_fields, structure_config, unstructure_config
from latentkit.diagnostics import diagnostics_plot, diagnostics_table, training_diagnostics_plot
from latentkit.errors import ConfigError, LatentkitError, NonFiniteError
from latentkit.registry import (
    get_model_spec,
    get_objective_spec,
    load_model,
    model_specs,
    objective_specs,
    plugin_faults,
)

__all__ = ["build_parser", "main"]

DATA_KEYS = ("name", "variant", "seed", "limit", "binarization", "validation")
EVAL_KEYS = ("iwae_k", "examples", "batch_size", "num_samples", "estimator", "seed", "diagnose")
DIAGNOSE_EXAMPLES = 1000
"""Examples the diagnostics (mutual information, aggregate KL, active units) use by default:
their mixture over the data costs N² density evaluations (docs/diagnostics.md)."""
DEFAULT_DATA = "mnist"
EVAL_PAIRS = 20000
"""Default evaluation budget in (example, layer) pairs: every test example for short chains,
fewer for long ones (a 1000-step DDPM gets 64), since the ELBO of an example costs L calls."""


MAX_SEED = 2**32 - 1
"""The largest seed a command takes (``TrainConfig``'s limit too)."""
MAX_SAMPLES = 10_000
"""``sample -n``: the most samples in one grid."""
MAX_IWAE_K = 10**6
"""``--iwae-k``: the most importance samples per example."""
MAX_ROWS = 2**22
"""``--num-samples`` × ``--batch-size``: the most rows of one ELBO batch (memory)."""
MAX_CONFIG_BYTES = 2**20
"""A ``--config`` TOML file larger than this is refused before it is read."""
MAX_METRICS_BYTES = 2**28
"""A ``metrics.jsonl`` larger than this is not plotted."""
LOCK_NAME = ".latentkit.lock"
"""The lock file in a run folder: one ``train`` process writes a run folder at a time."""
RUN_FILES = (
    "checkpoints",
    "best",
    "metrics.jsonl",
    "config.json",
    "report.json",
    "samples.png",
    "curves.png",
    "layer_kl.png",
)
"""What ``train`` writes into a run folder; ``--overwrite`` moves these aside."""
REPLACED_PREFIX = ".replaced-"


class CLIError(LatentkitError):
    """A problem with the command line itself (exit status 2)."""


def _int_type(low: int, high: int, what: str = "an int"):
    """An argparse ``type``: an int in [low, high], else one usage line naming the range."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"{what} must be ≥ {low} and at most {high:,}, got {value:,}"
                if abs(value) < 10**30
                else f"{what} must be ≥ {low} and at most {high:,}, got {text[:40]}…"
            )
        return value

    return parse


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error as one line (the usage itself is one --help away)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {self.prog}: {message} (see `{self.prog} --help`)\n")


# ------------------------------------------------------------------------------ parsing


def _add_common_train_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("training (shortcuts for train.FIELD)")
    g.add_argument("--steps", type=int, help="optimizer steps in all (default 2000)")
    g.add_argument("--batch-size", type=int, help="global batch size (default 128)")
    g.add_argument("--lr", type=float, help="Adam learning rate (default 1e-3)")
    g.add_argument("--seed", type=int, help="seed of the data order and the model's noise")
    g.add_argument("--eval-every", type=int, help="steps between test-set ELBOs (0: at the end)")
    g.add_argument("--checkpoint-every", type=int, help="steps between checkpoints (0: at the end)")
    g.add_argument("--device", help="cpu, cuda, cuda:N or auto")
    g.add_argument("--amp", action="store_true", default=None, help="bf16 autocast on CUDA")
    g.add_argument("--compile", action="store_true", default=None, help="torch.compile the loss")
    g.add_argument(
        "--no-progress", dest="progress", action="store_false", default=None, help="no progress bar"
    )
    g.add_argument(
        "--on-nonfinite",
        choices=("stop", "skip"),
        help="a step with a NaN/inf loss or gradient: stop the run (default) or skip the update "
        "(train.max_skips in a row at most)",
    )


def _add_data_flags(p: argparse.ArgumentParser, *, default_hint: str) -> None:
    g = p.add_argument_group("data")
    g.add_argument(
        "--data",
        help=f"data set: digits, mnist, mnist-sample, fashion-mnist, "
        f"file:PATH, folder:PATH ({default_hint})",
    )
    g.add_argument(
        "--variant",
        help="unit, binarized, threshold, 8bit or real (default: what the model's likelihood fits)",
    )
    g.add_argument("--limit", type=int, help="use at most this many examples of each split")


def _add_eval_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("evaluation")
    g.add_argument(
        "--iwae-k",
        type=_int_type(0, MAX_IWAE_K),
        help="importance samples for the IWAE NLL (0: skip; "
        "default 100, none for chains longer than 16)",
    )
    g.add_argument(
        "--eval-limit",
        type=_int_type(0, 10**9),
        dest="eval_examples",
        metavar="N",
        help="test examples to evaluate (default: all, fewer for long chains)",
    )
    g.add_argument(
        "--num-samples", type=_int_type(1, MAX_ROWS), help="draws of z per example for the ELBO"
    )
    g.add_argument("--estimator", help="ELBO estimator (auto, analytic, bottom-up, ...)")
    g.add_argument(
        "--diagnose",
        type=_int_type(0, 10**6),
        metavar="N",
        help=f"mutual information, aggregate KL and active units on the first N examples "
        f"(default {DIAGNOSE_EXAMPLES}; 0: skip; docs/diagnostics.md)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``latentkit`` (every subcommand has ``--help``)."""
    parser = _Parser(
        prog="latentkit",
        description="Latent-variable models (VAE, β-VAE, hierarchical VAE, DDPM) under one ELBO.",
        epilog="`latentkit COMMAND --help` for each command; docs/cli.md for examples.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser(
        "list",
        help="the registered models, their plugins and config fields",
        description="List the registered models (with their plugin distribution, "
        "description and config fields), the data sets, and any plugin faults.",
    )
    p.set_defaults(func=cmd_list)

    p = sub.add_parser(
        "train",
        help="train a model by name on a data set",
        description="Train a model by name. Writes metrics.jsonl and checkpoints/ into the run "
        "folder; --report also evaluates on the test split and writes report.json and PNGs.",
        epilog="example: latentkit train --model vae --data mnist --steps 3000 --report "
        "--set latent_dim=16",
    )
    p.add_argument("--model", help="registry name (see `latentkit list`)")
    p.add_argument(
        "--recipe",
        help="a shipped recipe by name (see `latentkit recipes`): its model, objective, data "
        "protocol and schedule; flags and --set override any of it (docs/reproduction.md)",
    )
    p.add_argument(
        "--objective",
        help="training objective by name (elbo, iwae, and plugins' own; see `latentkit list`); "
        "default: the model's own (elbo, with a β-VAE's β, or a DDPM's loss); its options "
        "with --set objective.FIELD=VALUE (docs/objectives.md)",
    )
    p.add_argument(
        "--config",
        type=Path,
        help="TOML file: model = NAME, objective = NAME, [model_config], [objective_config], "
        "[train], [data], [evaluate] (docs/cli.md)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="set one value: FIELD (model), objective.FIELD, train.FIELD, data.FIELD, "
        "evaluate.FIELD",
    )
    p.add_argument("--run-dir", type=Path, help="output folder (default runs/MODEL)")
    p.add_argument("--resume", action="store_true", help="continue from the run's last checkpoint")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="start over even if the run folder holds checkpoints",
    )
    p.add_argument(
        "--report",
        action="store_true",
        help="after training: evaluate, write report.json and the PNGs",
    )
    _add_common_train_flags(p)
    _add_data_flags(p, default_hint="default mnist, falling back to the MNIST sample, then digits")
    _add_eval_flags(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "recipes",
        help="the shipped recipes that reproduce published results",
        description="List the shipped recipes (latentkit train --recipe NAME): their sources, "
        "published figures and budgets (docs/reproduction.md).",
    )
    p.set_defaults(func=cmd_recipes)

    p = sub.add_parser(
        "evaluate",
        help="ELBO, its terms, IWAE-k NLL and bits/dim of a trained model",
        description="Evaluate a checkpoint on its data set's test split (or --data/--split).",
    )
    p.add_argument(
        "run",
        type=Path,
        help="a run folder (the best checkpoint on validation if the run kept one, else its "
        "newest) or a checkpoint",
    )
    p.add_argument("--split", choices=("test", "train"), default="test")
    p.add_argument("--json", dest="json_out", help="write the report as JSON here ('-': stdout)")
    p.add_argument(
        "--batch-size", type=_int_type(1, MAX_ROWS), help="examples per batch (default 500)"
    )
    p.add_argument(
        "--seed", type=_int_type(0, MAX_SEED), default=0, help="seed of the evaluation's noise"
    )
    p.add_argument("--device", default="cpu")
    _add_data_flags(p, default_hint="default: the data the model was trained on")
    _add_eval_flags(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "sample",
        help="draw samples from a trained model into a PNG grid",
        description="Ancestral sampling from the generative chain.",
    )
    p.add_argument("run", type=Path, help="a run folder (its newest checkpoint) or a checkpoint")
    p.add_argument(
        "-n",
        "--num",
        type=_int_type(1, MAX_SAMPLES),
        default=64,
        help=f"how many samples (default 64, at most {MAX_SAMPLES:,})",
    )
    p.add_argument(
        "--out",
        type=Path,
        help="PNG path (default RUN/samples.png); a folder: samples.png inside it",
    )
    p.add_argument("--tensors", type=Path, help="also save the samples as a .safetensors file")
    p.add_argument(
        "--draw",
        action="store_true",
        help="draw x ~ p(x|z_1) instead of showing its mean (the default)",
    )
    p.add_argument("--seed", type=_int_type(0, MAX_SEED), default=0)
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser(
        "report",
        help="evaluate a run and write report.json with sample, curve and KL PNGs",
        description="Evaluate a run's newest checkpoint on the test split and write "
        "report.json, samples.png, curves.png and layer_kl.png into the run folder.",
    )
    p.add_argument("run", type=Path, help="a run folder, or one of its checkpoints")
    p.add_argument(
        "--seed", type=_int_type(0, MAX_SEED), default=0, help="seed of the evaluation's noise"
    )
    p.add_argument("--device", default="cpu")
    _add_eval_flags(p)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser(
        "verify",
        help="run latentkit's property checks on a model",
        description="Check a registered model against the identities of the "
        "theory (log p ≥ ELBO, IWAE ordering, KL ≥ 0, ...).",
    )
    p.add_argument("name", help="registry name")
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--max-examples",
        type=_int_type(1, 10**6),
        default=25,
        help="Hypothesis examples per check",
    )
    p.set_defaults(func=cmd_verify)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``latentkit`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from latentkit.training import distributed_env

    try:
        quiet = not distributed_env().is_main
    except ConfigError as exc:  # e.g. RANK set without WORLD_SIZE: say so, do not go quiet
        _say_error(Console(stderr=True), exc)
        return 2
    out = Console(quiet=quiet)
    err = Console(stderr=True, quiet=quiet)
    try:
        return int(args.func(args, out, err) or 0)
    except (CLIError, ConfigError) as exc:
        _say_error(err, exc)
        return 2
    except (LatentkitError, OSError) as exc:  # OSError: a folder or file the OS refuses
        _say_error(err, exc)
        return 1
    except MemoryError:  # an allocation no estimate foresaw: still one line
        _say_error(err, MemoryError("out of memory (use a smaller model, batch or count)"))
        return 1
    finally:
        from latentkit.training import shutdown_distributed

        shutdown_distributed()


def _say_error(err: Console, exc: BaseException) -> None:
    """One line, never wrapped: ``error: MESSAGE`` (a message's own line breaks joined)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = " | ".join(lines) or type(exc).__name__
    # A name the file system gave us may not be UTF-8 (surrogate escapes): show it escaped.
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    err.print(f"[bold red]error:[/] {escape(text)}", highlight=False, soft_wrap=True)


# ------------------------------------------------------------------------------ config


def parse_value(text: str) -> Any:
    """A ``--set`` value: TOML if it parses as one value (numbers, booleans, arrays, quoted
    text), else the text itself. Parsed, never evaluated."""
    try:
        doc = tomllib.loads(f"v = {text}")
    except tomllib.TOMLDecodeError:
        return text
    except RecursionError:
        raise CLIError(f"--set value {text[:40]!r}…: nested too deeply") from None
    return doc["v"] if list(doc) == ["v"] else text


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


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_OPTION_RULES: dict[str, tuple[str, Any]] = {
    # field: (what it must be, test)
    "name": ("a data set name (a string)", lambda v: isinstance(v, str) and v != ""),
    "variant": ("a variant name (a string)", lambda v: isinstance(v, str)),
    "seed": ("an int ≥ 0", lambda v: _is_int(v) and v >= 0),
    "limit": ("an int ≥ 1", lambda v: v is None or (_is_int(v) and v >= 1)),
    "binarization": ("'fixed' or 'dynamic'", lambda v: v in ("fixed", "dynamic")),
    "validation": ("an int ≥ 0", lambda v: _is_int(v) and v >= 0),
    "iwae_k": ("an int ≥ 0", lambda v: v is None or (_is_int(v) and v >= 0)),
    "examples": ("an int ≥ 0", lambda v: _is_int(v) and v >= 0),
    "batch_size": ("an int ≥ 1", lambda v: _is_int(v) and v >= 1),
    "num_samples": ("an int ≥ 1", lambda v: _is_int(v) and v >= 1),
    "estimator": ("an estimator name (a string)", lambda v: isinstance(v, str)),
    "diagnose": ("an int ≥ 0", lambda v: _is_int(v) and 0 <= v <= 10**6),
}


def _check_options(values: dict[str, Any], known: Sequence[str], where: str) -> None:
    """The [data] / [evaluate] values: known fields, each of the right type and range."""
    _check_keys(values, known, where)
    for key, value in values.items():
        want, ok = _OPTION_RULES[key]
        if not ok(value):
            raise ConfigError(f"{where}: {key!r} must be {want}, got {value!r}")


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
    for flag in ("iwae_k", "eval_examples", "num_samples", "estimator", "diagnose"):
        value = getattr(args, flag, None)
        if value is not None:
            target["examples" if flag == "eval_examples" else flag] = value


# ------------------------------------------------------------------------------ data


def _likelihood_variant(model_name: str, data_shape: tuple[int, ...]) -> str:
    """The data variant that fits the model's default p(x|z_1) (probed, not looked up by name)."""
    from torch.distributions import Bernoulli

    from latentkit.distributions import DiscretizedNormal
    from latentkit.evaluation import likelihood_family

    try:
        d = likelihood_family(load_model(model_name, data_shape=data_shape))
    except Exception:  # a plugin that cannot build at this shape: let training say why
        return "unit"
    if isinstance(d, Bernoulli):
        return "binarized"
    if isinstance(d, DiscretizedNormal):
        return "8bit"
    return "unit"


def load_data(
    data: dict[str, Any],
    *,
    model_name: str,
    model_fields: Sequence[str],
    err: Console,
) -> tuple[Any, dict[str, Any]]:
    """Load the data set ``data`` asks for; returns ``(dataset, what was loaded)``.

    With no name given, MNIST is tried, then the MNIST sample, then digits — each fallback
    announced. With no variant given: ``binarized`` when the model's config has a
    ``likelihood`` field (it is then set to match), else what its default likelihood fits.
    The binarization seed is ``data.seed`` (default 0), not the training seed, so runs with
    different training seeds are scored on the same binarized test set.
    """
    from latentkit.data import load_dataset

    _check_options(data, DATA_KEYS, "[data]")
    name = data.get("name")
    seed = int(data.get("seed", 0))
    limit = data.get("limit")
    variant = data.get("variant")
    candidates = [name] if name else [DEFAULT_DATA, "mnist-sample", "digits"]
    failures: list[str] = []
    ds = None
    for candidate in candidates:
        probe_shape = (1, 28, 28) if candidate != "digits" else (1, 8, 8)
        v = variant or (
            "binarized"
            if "likelihood" in model_fields
            else _likelihood_variant(model_name, probe_shape)
        )
        try:
            ds = load_dataset(candidate, variant=v, seed=seed, limit=limit)
            break
        except LatentkitError as exc:
            if name:  # asked for by name: no substitute
                raise
            failures.append(f"{candidate}: {exc}")
    if ds is None:
        raise CLIError("no data set could be loaded: " + "; ".join(failures))
    if failures:
        err.print(
            Panel(
                escape("\n".join(failures))
                + f"\n\n[bold]Training on {ds.name!r} instead[/] ({escape(ds.description)}).\n"
                + escape("For the full MNIST: pip install 'latentkit[mnist]'"),
                title="[bold yellow]MNIST is not installed",
                border_style="yellow",
            )
        )
    info = {
        "name": ds.name,
        "variant": ds.variant,
        "seed": seed,
        "limit": limit,
        "kind": ds.kind,
        "data_shape": list(ds.data_shape),
    }
    for key in ("binarization", "validation"):
        if data.get(key) is not None:
            info[key] = data[key]
    return ds, info


def training_splits(ds: Any, data: dict[str, Any]) -> dict[str, Any]:
    """What the trainer gets from a data set under ``[data]``'s protocol keys.

    ``binarization = "dynamic"`` (binarized data only): the training images as pixel
    probabilities, drawn afresh as bits at each use. ``validation = N``: the last N training
    examples are held out (fixed bits under dynamic binarization); the periodic evaluations
    and the choice of the best checkpoint use them, and the test split is left to the final
    evaluation alone.
    """
    from latentkit.data import binarize, load_dataset, split_validation
    from latentkit.data.core import derived_seed

    dynamic = data.get("binarization", "fixed") == "dynamic"
    held_out = int(data.get("validation", 0) or 0)
    train = ds.train
    if dynamic:
        if ds.variant != "binarized":
            raise ConfigError(
                f"[data] binarization='dynamic' draws binary images; the variant is "
                f"{ds.variant!r} (use variant='binarized')"
            )
        seed = int(data.get("seed", 0))
        train = load_dataset(ds.name, variant="unit", seed=seed, limit=data.get("limit")).train
    validation = None
    if held_out:
        if held_out >= train.shape[0]:
            raise ConfigError(
                f"[data] validation={held_out} leaves no training example ({train.shape[0]} in all)"
            )
        train, validation = split_validation(train, held_out)
        if dynamic:  # scored on one fixed draw, like the test split
            validation = binarize(validation, seed=derived_seed(int(data.get("seed", 0)), 2))
    return {
        "train_data": train,
        "validation_data": validation,
        "test_data": None if validation is not None else ds.test,
        "dynamic_binarization": dynamic,
    }


def _load_recorded_data(info: dict[str, Any], overrides: dict[str, Any]) -> Any:
    from latentkit.data import load_dataset

    recorded = dict(info.get("data") or {})
    recorded.update({k: v for k, v in overrides.items() if v is not None})
    if not recorded.get("name"):
        raise CLIError("the checkpoint does not record its data set; pass --data")
    return load_dataset(
        recorded["name"],
        variant=recorded.get("variant") or "unit",
        seed=int(recorded.get("seed") or 0),
        limit=recorded.get("limit"),
    )


# ------------------------------------------------------------------------------ commands


def _spec_table(title: str, columns: Sequence[str], specs: dict[str, Any]) -> Table:
    """One row per registered spec: name, plugin, description, config fields (default)."""
    table = Table(title=title)
    for col in columns:
        table.add_column(col, overflow="fold")
    for name, spec in specs.items():
        fields = ", ".join(f"{f}={d!r}" for f, _, d in config_fields(spec.config_class))
        table.add_row(name, spec.plugin, Text(spec.description), Text(fields))
    return table


def cmd_list(args: argparse.Namespace, out: Console, err: Console) -> int:
    models = ("model", "plugin", "description", "config fields (default)")
    out.print(_spec_table("latentkit models", models, model_specs()))
    title = "training objectives (--objective NAME, --set objective.FIELD=…)"
    out.print(_spec_table(title, ("name", "plugin", "what", "options"), objective_specs()))
    try:
        from latentkit.data import dataset_sources
    except ImportError:
        dataset_sources = None
    if dataset_sources is not None:
        data = Table(title="data sets")
        for col in ("name", "here", "what / why not", "install"):
            data.add_column(col, overflow="fold")
        for s in dataset_sources():
            here = Text("yes") if s.available else Text("no", style="red")
            data.add_row(s.name, here, Text(s.detail), Text(s.install))
        out.print(data)
    faults = plugin_faults()
    if faults:
        ft = Table(title="[bold red]plugin faults", border_style="red")
        for col in ("distribution", "entry point", "problem"):
            ft.add_column(col, overflow="fold")
        for f in faults:
            ft.add_row(Text(f.distribution), Text(f.entry_point), Text(f.problem))
        out.print(ft)
    return 0


def cmd_recipes(args: argparse.Namespace, out: Console, err: Console) -> int:
    from latentkit.recipes import list_recipes, recipe_info

    table = Table(title="recipes (latentkit train --recipe NAME [--set FIELD=VALUE ...])")
    table.add_column("recipe", no_wrap=True)
    for col in ("what", "source", "published NLL", "budget (2 CPU cores)"):
        table.add_column(col, overflow="fold")
    for name in list_recipes():
        info = recipe_info(name)
        published = info.get("published_nll", info.get("published", ""))
        table.add_row(
            name,
            Text(str(info.get("description", ""))),
            Text(str(info.get("source", ""))),
            Text(str(published)),
            Text(str(info.get("budget_cpu", ""))),
        )
    out.print(table)
    return 0


def cmd_train(args: argparse.Namespace, out: Console, err: Console) -> int:
    from latentkit.training import TrainConfig, Trainer, seed_everything

    if args.config and args.recipe:
        raise CLIError("pass --config FILE or --recipe NAME, not both")
    spec = RunSpec()
    if args.config or args.recipe:
        spec = _read_toml(args.config, recipe=args.recipe)
    if args.model:
        spec.model = args.model
    run_dir_arg: Path | None = args.run_dir
    checkpoint = None
    resumed_step = 0
    if args.resume:
        if run_dir_arg is None and spec.model is None:
            raise CLIError("--resume needs --run-dir (or --model, for runs/MODEL)")
        run_dir_arg = run_dir_arg or Path("runs") / str(spec.model)
        checkpoint = latest_checkpoint(run_dir_arg)
        if checkpoint is None:
            raise CLIError(f"--resume: no checkpoint in {run_dir_arg}")
        _, info = read_checkpoint(checkpoint)
        resumed_step = info["step"]
        recorded_model = info.get("model")
        if not isinstance(recorded_model, str) or not all(
            isinstance(info.get(k), dict) for k in ("model_config", "train_config")
        ):
            raise CheckpointError(
                f"--resume: {checkpoint} does not record its model, model_config and "
                "train_config (not written by `latentkit train`)"
            )
        if spec.model and spec.model != recorded_model:
            raise CLIError(
                f"--resume: {checkpoint} is a {recorded_model!r} run, not {spec.model!r}"
            )
        spec.model = recorded_model
        # The checkpoint's settings first; anything given now overrides them.
        spec.model_config = {**info["model_config"], **spec.model_config}
        recorded_objective = info.get("objective")
        if isinstance(recorded_objective, dict) and isinstance(recorded_objective.get("name"), str):
            if spec.objective in (None, recorded_objective["name"]):
                spec.objective = recorded_objective["name"]
                saved = recorded_objective.get("config")
                spec.objective_config = {**(saved or {}), **spec.objective_config}
        spec.train = {**info["train_config"], **spec.train}
        data_record = info.get("data") if isinstance(info.get("data"), dict) else {}
        recorded = {k: data_record.get(k) for k in DATA_KEYS}
        spec.data = {**{k: v for k, v in recorded.items() if v is not None}, **spec.data}
    if args.objective:
        spec.objective = args.objective
    if not spec.model:
        raise CLIError("which model? pass --model NAME (see `latentkit list`)")
    model_spec = get_model_spec(spec.model)
    fields = [f.name for f in attrs.fields(model_spec.config_class)]
    _apply_set(spec, args.set, fields)
    _merge_flags(spec, args)
    _check_keys(spec.model_config, fields, f"model {spec.model!r}")
    # Check the values now, before the data load (data_shape, if not given, is the default).
    structure_config(model_spec.config_class, spec.model_config, model=spec.model)
    _check_options(spec.evaluate, EVAL_KEYS, "[evaluate]")
    _check_options(spec.data, DATA_KEYS, "[data]")
    train_cfg = structure_config(TrainConfig, spec.train)
    if spec.objective is not None:  # the config's values checked now, before the data load
        objective_spec = get_objective_spec(spec.objective)
        structure_config(
            objective_spec.config_class,
            spec.objective_config,
            where=f"objective {spec.objective!r}",
        )
    if checkpoint is not None and train_cfg.steps <= resumed_step:
        raise CLIError(
            f"--resume: {checkpoint} is at step {resumed_step} already; --steps "
            f"{train_cfg.steps} leaves nothing to train (pass --steps above {resumed_step})"
        )
    run_dir = run_dir_arg or Path("runs") / spec.model
    if checkpoint is None and not args.overwrite:  # said now, before the data load; and
        _refuse_existing_run(run_dir)  # again under the lock, below

    # Everything is checked and built before the run folder is touched: a missing data file,
    # a batch larger than the data or a model too large for memory leaves the old run as is.
    ds, data_info = load_data(
        spec.data,
        model_name=spec.model,
        model_fields=fields,
        err=err,
    )
    model_values = dict(spec.model_config)
    model_values.setdefault("data_shape", list(ds.data_shape))
    if "likelihood" in fields and "likelihood" not in model_values:
        model_values["likelihood"] = ds.likelihood
    seed_everything(train_cfg.seed)
    _check_model_memory(spec.model, model_values)
    model = load_model(spec.model, **model_values)
    objective_name = spec.objective
    objective_config = dict(spec.objective_config)
    if objective_name is None:  # the model's own objective, with any objective.FIELD given
        objective_name, declared = model.default_objective
        objective_config = {**declared, **objective_config}
    # Built (and every example checked) before anything is printed: bad data is one line.
    splits = training_splits(ds, spec.data)
    trainer = Trainer(
        model,
        splits.pop("train_data"),
        train_cfg,
        objective=objective_name,
        objective_config=objective_config,
        **splits,
        run_dir=run_dir,
        data_info=data_info,
        console=err,
    )
    with _RunFolder(run_dir, writer=trainer.dist.is_main, err=err) as folder:
        if checkpoint is None:
            if args.overwrite:
                folder.move_aside()
            else:
                _refuse_existing_run(run_dir)
        elif folder.writer and latest_checkpoint(run_dir) != checkpoint:
            raise CLIError(
                f"--resume: the newest checkpoint of {run_dir} changed while this command "
                f"started (was {checkpoint.name}); run it again"
            )
        nparams = sum(p.numel() for p in model.parameters())
        err.print(
            f"[bold]{spec.model}[/] ({nparams:,} parameters) on {escape(ds.description)}; "
            f"objective {escape(_objective_words(trainer.objective_record))}; "
            f"{train_cfg.steps} steps of {train_cfg.batch_size}, lr {train_cfg.lr}, "
            f"seed {train_cfg.seed} → {run_dir}",
            highlight=False,
        )
        if trainer.dist.active:
            err.print(
                f"torchrun: {trainer.dist.world_size} processes "
                f"({'nccl' if trainer.device.type == 'cuda' else 'gloo'}); rank 0 writes"
            )
        return _train_in(folder, trainer, checkpoint, spec, train_cfg, args, ds, model, out, err)


def _train_in(
    folder: _RunFolder,
    trainer: Any,
    checkpoint: Path | None,
    spec: RunSpec,
    train_cfg: Any,
    args: argparse.Namespace,
    ds: Any,
    model: Any,
    out: Console,
    err: Console,
) -> int:
    """The part of ``train`` that writes: resume, config.json, fit, report (under the lock)."""
    run_dir = folder.run_dir
    data_info = trainer.data_info
    if checkpoint is not None:
        step = trainer.resume(checkpoint)
        err.print(f"resumed from {checkpoint} at step {step}", markup=False)
    if trainer.dist.is_main:
        atomic_write_json(
            run_dir / "config.json",
            {
                "model": spec.model,
                "model_config": unstructure_config(model.config),
                "objective": trainer.objective_record,
                "train": unstructure_config(train_cfg),
                "data": data_info,
                "evaluate": spec.evaluate,
            },
        )
    t0 = time.perf_counter()
    try:
        result = trainer.fit()
    finally:  # the old run goes once the new one has a checkpoint; else it comes back
        folder.settle(started=trainer.last_checkpoint is not None)
    seconds = time.perf_counter() - t0
    if result.interrupted:
        err.print(
            f"[yellow]stopped at step {result.step}[/]; checkpoint "
            f"{escape(str(result.checkpoint))}. "
            f"Continue with: latentkit train --resume --run-dir {escape(str(run_dir))}",
            highlight=False,
        )
        return 130
    split = "validation" if "validation" in result.last_metrics else "test"
    last = result.last_metrics.get(split, {})
    err.print(
        f"trained {result.step} steps in {seconds:.0f} s; {split} ELBO "
        f"{last.get('elbo', float('nan')):.2f} nats; checkpoint {result.checkpoint}",
        highlight=False,
        markup=False,
    )
    if args.report and trainer.dist.is_main:
        info = _checkpoint_info(result.checkpoint)
        evaluated = result.checkpoint
        if latest_checkpoint(run_dir / "best") is not None:  # chosen on the validation split
            evaluated = latest_checkpoint(run_dir / "best")
            model, info = load_trained_model(run_dir / "best", device=trainer.device)
            err.print(
                f"evaluating the best checkpoint on validation: step {info.get('step')}, "
                f"validation ELBO {info.get('best_validation_elbo'):.2f}",
                highlight=False,
            )
        write_report(
            run_dir,
            out=out,
            err=err,
            options=spec.evaluate,
            dataset=ds,
            model=model,
            info=info,
            checkpoint=evaluated,
        )
    return 0


def _objective_words(record: dict[str, Any]) -> str:
    """``name(option=value, …)`` with the options that differ from their defaults."""
    config = record.get("config") or {}
    try:
        defaults = unstructure_config(get_objective_spec(record["name"]).config_class())
    except Exception:  # an objective built in Python, not by name: show all
        defaults = {}
    options = ", ".join(f"{k}={v}" for k, v in config.items() if defaults.get(k, ...) != v)
    return f"{record['name']}({options})"


def _checkpoint_info(path: Path | None) -> dict[str, Any]:
    return read_checkpoint(path)[1] if path is not None else {}


def _refuse_existing_run(run_dir: Path) -> None:
    found = latest_checkpoint(run_dir) or latest_checkpoint(run_dir / "best")
    if found is not None:
        raise CLIError(
            f"{run_dir} already holds a run (checkpoint {found}); pass "
            "--resume to continue it, --overwrite to start over, or another --run-dir"
        )


def _check_model_memory(name: str, values: dict[str, Any]) -> None:
    """Refuse a model whose training state (weights, gradients, Adam's two moments: 4× the
    parameters) would not fit this machine's memory, sized on the meta device (no memory)."""
    try:
        with torch.device("meta"):
            skeleton = load_model(name, **values)
    except LatentkitError:
        raise
    except Exception:  # a model that computes values as it builds: built for real below
        return
    count = sum(p.numel() for p in skeleton.parameters())
    size = sum(p.numel() * p.element_size() for p in skeleton.parameters())
    limit = memory_bytes()
    if 4 * size > limit:
        raise ConfigError(
            f"model {name!r}: {count:,} parameters ({_bytes(size)}; training holds 4× that: "
            f"weights, gradients, Adam's moments) is more than this machine's memory, "
            f"{_bytes(limit)}"
        )


def _bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.3g} {unit}"
        n /= 1000
    return f"{n:.3g} TB"


class _RunFolder:
    """The run folder, held by one ``train`` process at a time (an OS lock on
    ``RUN/.latentkit.lock``, released by the OS on any exit, ``kill -9`` included), and the
    previous run's files while ``--overwrite`` replaces them: moved aside into
    ``RUN/.replaced-*/``, deleted once the new run has written a checkpoint, restored if it
    fails before that (and restored by the next ``train`` if a kill left them there)."""

    def __init__(self, run_dir: Path, *, writer: bool, err: Console):
        self.run_dir, self.writer, self.err = run_dir, writer, err
        self.aside: Path | None = None
        self._lock: Any = None

    def __enter__(self) -> _RunFolder:
        if not self.writer:  # ranks other than 0 write nothing
            return self
        from filelock import FileLock, Timeout

        self.run_dir.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.run_dir / LOCK_NAME), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise LatentkitError(
                f"{self.run_dir} is being written by another latentkit process (it holds "
                f"{self.run_dir / LOCK_NAME}); wait for it, or use another --run-dir"
            ) from None
        self._lock = lock
        self._recover()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._lock is not None:
            self._lock.release()

    def _recover(self) -> None:
        """A ``.replaced-*`` folder left by a killed ``--overwrite``: the old run comes back
        if the new one never wrote a checkpoint, else it goes."""
        for aside in sorted(self.run_dir.glob(REPLACED_PREFIX + "*")):
            if not aside.is_dir() or aside.is_symlink():
                continue
            if latest_checkpoint(self.run_dir) is None:
                self._restore(aside)
                self.err.print(
                    f"restored the run an interrupted --overwrite left in {aside}", markup=False
                )
            else:
                shutil.rmtree(aside)

    def move_aside(self) -> None:
        if not self.writer:
            return
        present = [n for n in RUN_FILES if os.path.lexists(self.run_dir / n)]
        if not present:
            return
        self.aside = Path(tempfile.mkdtemp(prefix=REPLACED_PREFIX, dir=self.run_dir))
        for name in present:
            os.replace(self.run_dir / name, self.aside / name)

    def _restore(self, aside: Path) -> None:
        for name in RUN_FILES:  # the new run's files go, the old run's come back
            new = self.run_dir / name
            if new.is_dir() and not new.is_symlink():
                shutil.rmtree(new)
            elif os.path.lexists(new):
                new.unlink()
            if os.path.lexists(aside / name):
                os.replace(aside / name, new)
        shutil.rmtree(aside)

    def settle(self, *, started: bool) -> None:
        """After the new run: delete the old one if the new has a checkpoint, else restore."""
        if self.aside is None:
            return
        aside, self.aside = self.aside, None
        if started:
            shutil.rmtree(aside)
        else:
            self._restore(aside)


def _eval_budget(model: Any, n: int, options: dict[str, Any]) -> int:
    if options.get("examples"):
        return min(n, int(options["examples"]))
    return min(n, max(64, EVAL_PAIRS // max(1, model.num_layers)))


def _run_evaluation(
    model: Any,
    data: torch.Tensor,
    *,
    options: dict[str, Any],
    discrete: bool,
    seed: int,
    err: Console,
    batch_size: int | None = None,
) -> Any:
    from latentkit.evaluation import evaluate

    n = _eval_budget(model, data.shape[0], options)
    _check_finite_rows(data[:n])
    if n < data.shape[0] and not options.get("examples"):
        err.print(
            f"evaluating {n} of {data.shape[0]} examples (a {model.num_layers}-layer chain; "
            "--eval-limit to change)",
            markup=False,
        )
    with Progress(
        TextColumn("[bold]evaluate"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    ) as progress:
        task = progress.add_task("evaluate", total=n)
        return evaluate(
            model,
            data[:n],
            batch_size=batch_size or int(options.get("batch_size", 500)),
            iwae_k=options.get("iwae_k"),
            num_samples=int(options.get("num_samples", 1)),
            estimator=str(options.get("estimator", "auto")),
            discrete=discrete,
            seed=seed,
            on_batch=lambda done: progress.update(task, completed=done),
        )


def _check_finite_rows(data: torch.Tensor) -> None:
    """Every example to be evaluated is finite (a NaN in any row, not only the first)."""
    if not data.is_floating_point():
        return
    finite = torch.isfinite(data)
    if not bool(finite.all()):
        rows = int((~finite).flatten(1).any(1).sum()) if data.ndim > 1 else int((~finite).sum())
        first = int((~finite).flatten(1).any(1).nonzero()[0]) if data.ndim > 1 else 0
        raise NonFiniteError(
            f"data: {rows} of {data.shape[0]} examples hold NaN or inf values (the first, "
            f"example {first})"
        )


def cmd_evaluate(args: argparse.Namespace, out: Console, err: Console) -> int:
    from latentkit.evaluation import report_table

    source = args.run
    if Path(args.run).is_dir() and latest_checkpoint(Path(args.run) / "best") is not None:
        source = Path(args.run) / "best"  # the checkpoint the validation split chose
        err.print(f"evaluating the best checkpoint on validation: {source}", markup=False)
    model, info = load_trained_model(source, device=_device(args.device))
    ds = _load_recorded_data(
        info, {"name": args.data, "variant": args.variant, "limit": args.limit}
    )
    options: dict[str, Any] = {}
    _merge_eval_flags(options, args)
    _check_rows(options, args.batch_size)
    if args.json_out not in (None, "-"):
        writable_path(args.json_out)  # refused now, before the evaluation, if it cannot be
    data = ds.test if args.split == "test" else ds.train
    report = _run_evaluation(
        model,
        data,
        options=options,
        seed=args.seed,
        err=err,
        discrete=ds.kind in ("binary", "symmetric8"),
        batch_size=args.batch_size,
    )
    diag = _diagnose(model, data, options, seed=args.seed, err=err)
    payload = {
        "model": info.get("model"),
        "step": info.get("step"),
        "data": ds.name,
        "variant": ds.variant,
        "split": args.split,
        **report.to_json(),
        "diagnostics": None if diag is None else diag.to_json(),
    }
    if args.json_out == "-":
        print(json.dumps(payload, indent=2))
    else:
        out.print(
            report_table(
                report,
                title=f"{info.get('model')} at step {info.get('step')}, {ds.name} {args.split}",
            )
        )
        if diag is not None:
            out.print(diagnostics_table(diag, title=f"diagnostics ({ds.name} {args.split})"))
        if args.json_out:
            written = atomic_write_json(args.json_out, payload)  # through a link, to its target
            err.print(f"wrote {written}", markup=False)
    return 0


def _diagnose(
    model: Any, data: torch.Tensor, options: dict[str, Any], *, seed: int, err: Console
) -> Any:
    """The diagnostics on the first ``options['diagnose']`` examples, or None (0, or a model
    they do not apply to: said on stderr, the evaluation goes on)."""
    from latentkit.diagnostics import diagnose

    n = options.get("diagnose", DIAGNOSE_EXAMPLES)
    if not n:
        return None
    ref = model.reference()
    subset = data[: min(n, data.shape[0])].to(device=ref.device, dtype=ref.dtype)
    try:
        return diagnose(model, subset, seed=seed)
    except LatentkitError as exc:
        err.print(f"diagnostics skipped: {exc}", markup=False, highlight=False)
        return None


def cmd_sample(args: argparse.Namespace, out: Console, err: Console) -> int:
    from latentkit.plots import sample_grid
    from latentkit.sampling import sample

    model, info = load_trained_model(args.run, device=_device(args.device))
    target = args.out or _run_dir_of(args.run) / "samples.png"
    if target.is_dir():  # a folder: the grid goes inside it
        target = target / "samples.png"
    target = writable_path(target)
    if target.suffix.lower() != ".png":  # matplotlib would pick (or append) another format
        raise CLIError(f"--out {args.out}: the grid is a PNG; name a .png file (or a folder)")
    tensors = None
    if args.tensors:
        tensors = args.tensors / "samples.safetensors" if args.tensors.is_dir() else args.tensors
        tensors = writable_path(tensors)
    per_sample = 8 * max(1, math.prod(model.data_shape)) * 4  # x, its mean and work space
    if args.num * per_sample > memory_bytes() // 4:
        raise CLIError(
            f"--num {args.num:,}: the samples need about {_bytes(args.num * per_sample)}, more "
            f"than a quarter of this machine's memory ({_bytes(memory_bytes())})"
        )
    torch.manual_seed(args.seed)
    x = sample(model, args.num, likelihood_mean=not args.draw)
    display = _to_display(x, info)
    path = sample_grid(
        display,
        target,
        title=f"{info.get('model')}: {args.num} samples at step {info.get('step')}",
    )
    out.print(f"wrote {path}", markup=False)
    if tensors is not None:
        from safetensors.torch import save as save_safetensors

        atomic_write_bytes(tensors, save_safetensors({"samples": x.cpu().contiguous()}))
        out.print(f"wrote {tensors}", markup=False)
    return 0


def cmd_report(args: argparse.Namespace, out: Console, err: Console) -> int:
    options: dict[str, Any] = {}
    _merge_eval_flags(options, args)
    _check_rows(options, None)
    model, info = load_trained_model(args.run, device=_device(args.device))
    ds = _load_recorded_data(info, {})
    write_report(
        _run_dir_of(args.run),
        out=out,
        err=err,
        options=options,
        dataset=ds,
        model=model,
        info=info,
        seed=args.seed,
        checkpoint=resolve_checkpoint(args.run),
    )
    return 0


def cmd_verify(args: argparse.Namespace, out: Console, err: Console) -> int:
    # Checked here, so a refusal is one line on stderr like every other command's.
    try:
        get_model_spec(args.name)
    except LatentkitError as exc:
        raise CLIError(str(exc)) from None
    _device(args.device)
    try:
        from latentkit.testing.verify import verify_command
    except ImportError as exc:
        raise CLIError(
            f"`latentkit verify` is not available in this installation ({exc}); "
            "the property checks can be run with pytest meanwhile"
        ) from None
    return int(
        verify_command(args.name, device=args.device, max_examples=args.max_examples, console=out)
    )


# ------------------------------------------------------------------------------ report


def write_report(
    run_dir: Path,
    *,
    out: Console,
    err: Console,
    options: dict[str, Any],
    dataset: Any,
    model: Any,
    info: dict[str, Any],
    seed: int = 0,
    checkpoint: Path | None = None,
) -> dict[str, Any]:
    """Evaluate on the test split and write report.json, samples.png, curves.png, layer_kl.png.

    ``checkpoint``: the checkpoint evaluated, named in the report (default: the run's newest).
    """
    from latentkit.evaluation import report_table
    from latentkit.plots import layer_kl_plot, sample_grid, training_curves
    from latentkit.sampling import sample

    model.eval()
    report = _run_evaluation(
        model,
        dataset.test,
        options=options,
        seed=seed,
        err=err,
        discrete=dataset.kind in ("binary", "symmetric8"),
    )
    name = info.get("model", getattr(model, "name", "model"))
    step = info.get("step")
    files: dict[str, str] = {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        x = sample(model, 64, likelihood_mean=True)
    files["samples"] = str(
        sample_grid(
            dataset.to_display(x.cpu()),
            writable_path(run_dir / "samples.png"),
            title=f"{name}: samples (mean of p(x|z₁)) at step {step}",
        )
    )
    metrics = run_dir / "metrics.jsonl"
    if metrics.exists():
        records = _metric_records(metrics)
        files["curves"] = str(
            training_curves(
                records, writable_path(run_dir / "curves.png"), title=f"{name} on {dataset.name}"
            )
        )
    files["layer_kl"] = str(
        layer_kl_plot(
            report.layer_kl,
            report.prior_matching.mean,
            writable_path(run_dir / "layer_kl.png"),
            reconstruction=report.reconstruction.mean,
            title=f"{name}: each layer's term of −ELBO on {dataset.name} test "
            f"({report.num_examples} examples)",
        )
    )
    diag = _diagnose(model, dataset.test, options, seed=seed, err=err)
    if diag is not None:
        files["diagnostics"] = str(
            diagnostics_plot(
                diag,
                writable_path(run_dir / "diagnostics.png"),
                title=f"{name}: per-dimension KL and activity on {dataset.name} test",
            )
        )
    if metrics.exists():
        over_training = training_diagnostics_plot(
            [r for r in _diagnostic_records(metrics)],
            writable_path(run_dir / "diagnostics_training.png"),
            title=f"{name}: information in the latents over training",
        )
        if over_training is not None:
            files["diagnostics_training"] = str(over_training)
    payload = {
        "model": name,
        "model_config": info.get("model_config"),
        "step": step,
        "train_config": info.get("train_config"),
        "data": {
            "name": dataset.name,
            "variant": dataset.variant,
            "kind": dataset.kind,
            "description": dataset.description,
            "split": "test",
        },
        "evaluation": report.to_json(),
        "diagnostics": None if diag is None else diag.to_json(),
        "last_train_metrics": (info.get("metrics") or {}).get("train"),
        "files": files,
        "checkpoint": str(checkpoint or latest_checkpoint(run_dir)),
    }
    atomic_write_json(run_dir / "report.json", payload)
    out.print(report_table(report, title=f"{name} at step {step} on {dataset.name} test"))
    if diag is not None:
        out.print(diagnostics_table(diag, title=f"diagnostics ({dataset.name} test)"))
    out.print(
        f"report: {run_dir / 'report.json'}; plots: "
        + ", ".join(Path(p).name for p in files.values()),
        highlight=False,
        markup=False,
    )
    return payload


# ------------------------------------------------------------------------------ helpers


_METRIC_NUMBERS = ("elbo", "reconstruction", "prior_matching", "kl", "loss")


def _diagnostic_records(path: Path) -> list[dict[str, Any]]:
    """The ``diagnostics`` lines of ``metrics.jsonl`` (written with train.diagnose_examples),
    read as ``_metric_records`` reads the others: anything malformed is skipped."""
    raw = read_regular_file(path, limit=MAX_METRICS_BYTES, what="metrics")
    records = []
    for line in raw.decode("utf-8", "replace").splitlines():
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if isinstance(record, dict) and record.get("split") == "diagnostics":
            if _is_int(record.get("step")):
                records.append(record)
    return records


def _metric_records(path: Path) -> list[dict[str, Any]]:
    """The plottable records of ``metrics.jsonl``: objects with an int ``step``, a known
    split and real numbers (or null) for the bound's terms; any other line — cut short by a
    crash, edited, not JSON — is skipped (counted on nothing: the curves are a picture)."""
    raw = read_regular_file(path, limit=MAX_METRICS_BYTES, what="metrics")
    records = []
    for line in raw.decode("utf-8", "replace").splitlines():
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if not isinstance(record, dict) or not _is_int(record.get("step")):
            continue
        if record.get("split") not in ("train", "test", "validation"):
            continue
        values = [record.get(k) for k in _METRIC_NUMBERS]
        if not all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))
                   for v in values):  # fmt: skip
            continue
        if record.get("elbo") is not None and not all(
            record.get(k) is not None for k in ("reconstruction", "kl")
        ):
            continue
        records.append(record)
    return records


def _check_rows(options: dict[str, Any], batch_size: int | None) -> None:
    """``--num-samples`` × the batch size: the rows of one ELBO batch, bounded (memory)."""
    rows = int(options.get("num_samples", 1)) * int(batch_size or options.get("batch_size", 500))
    if rows > MAX_ROWS:
        raise CLIError(
            f"--num-samples × --batch-size = {rows:,} rows per ELBO batch, more than "
            f"{MAX_ROWS:,}; lower one of them"
        )


def _device(name: str) -> torch.device:
    from latentkit.training import resolve_device

    return resolve_device(name)


def _run_dir_of(path: Path) -> Path:
    path = Path(path)
    if path.is_dir():
        return path
    # .../run/checkpoints/step-N.json → .../run
    return path.parent.parent if path.parent.name == "checkpoints" else path.parent


def _to_display(x: torch.Tensor, info: dict[str, Any]) -> torch.Tensor:
    from latentkit.data import to_display

    kind = (info.get("data") or {}).get("kind", "unit")
    x = x.detach().float().cpu()
    if kind == "real":  # standardized data: the scalars are not in the checkpoint; stretch
        return (x - x.min()) / (x.max() - x.min()).clamp_min(1e-12)
    return to_display(x, kind)


if __name__ == "__main__":
    sys.exit(main())
