"""The argument parser: one sub-parser per command, each pointing at its function."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from latentkit.cli.commands import cmd_list, cmd_recipes, cmd_report, cmd_sample, cmd_verify
from latentkit.cli.common import MAX_SAMPLES, MAX_SEED, _int_type, _Parser
from latentkit.cli.compare import cmd_compare
from latentkit.cli.evaluate import cmd_evaluate
from latentkit.cli.flags import add_shortcuts
from latentkit.cli.helptext import TrainHelp, fields_help, train_epilog
from latentkit.cli.tables import SECTION_TITLES, SECTIONS
from latentkit.cli.train import cmd_train

__all__ = ["build_parser", "fields_help"]

_TRAIN_DATA = {"name": "default mnist, falling back to the MNIST sample, then digits"}
_RECORDED_DATA = {"name": "default: the data the model was trained on"}


TABLE_FLAGS = {
    "train": ("train", "data", "evaluate"),
    "evaluate": ("data", "evaluate"),
    "report": ("evaluate",),
}
"""The tables whose shortcut flags each command takes (``report`` reads the run's data)."""


def _add_table_flags(p: argparse.ArgumentParser, command: str, **notes: dict[str, str]) -> None:
    """The flags of the fields marked as shortcuts in the command's tables, generated from
    their classes, one group a table; ``notes``: a few words by table and field."""
    for section in TABLE_FLAGS[command]:
        g = p.add_argument_group(f"{SECTION_TITLES[section]} (shortcuts for {section}.FIELD)")
        cls = SECTIONS[section]
        add_shortcuts(g, cls, section=section, command=command, notes=notes.get(section))


def _add_list(sub: Any) -> None:
    p = sub.add_parser(
        "list",
        help="the registered models, their plugins and config fields",
        description="List the registered models (with their plugin distribution, "
        "description and config fields), the data sets, and any plugin faults.",
    )
    p.set_defaults(func=cmd_list)


def _add_train(sub: Any) -> None:
    p = sub.add_parser(
        "train",
        help="train a model by name on a data set",
        description="Train a model by name. Writes metrics.jsonl and checkpoints/ into the run "
        "folder; --report also evaluates on the test split and writes report.json and PNGs.",
        epilog=train_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        add_help=False,
    )
    p.add_argument("-h", "--help", action=TrainHelp, help="show this help (every field) and exit")
    p.add_argument("--model", help="registry name (see `latentkit list`)")
    p.add_argument(
        "--prior",
        metavar="MODEL",
        help="another model by name as the prior of --model's top latent (latentkit.compose; "
        "its fields with --set prior.FIELD=VALUE or [prior_config]; docs/compose.md)",
    )
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
        help="TOML file: model = NAME, prior = NAME, objective = NAME, [model_config], "
        "[prior_config], [objective_config], "
        "[train], [data], [evaluate] (docs/cli.md)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="set one value: FIELD (model), prior.FIELD, objective.FIELD, train.FIELD, "
        "data.FIELD, evaluate.FIELD",
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
    _add_table_flags(p, "train", data=_TRAIN_DATA)
    p.set_defaults(func=cmd_train)


def _add_recipes(sub: Any) -> None:
    p = sub.add_parser(
        "recipes",
        help="the shipped recipes that reproduce published results",
        description="List the shipped recipes (latentkit train --recipe NAME): their sources, "
        "published figures and budgets (docs/reproduction.md).",
    )
    p.set_defaults(func=cmd_recipes)


def _add_evaluate(sub: Any) -> None:
    p = sub.add_parser(
        "evaluate",
        help="ELBO, its terms, IWAE-k NLL and bits/dim of a trained model",
        description="Evaluate a checkpoint on its data set's test split (or --data/--split), "
        "scored as the run recorded its [evaluate] table, each value overridden by its flag.",
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
        "--per-example",
        type=Path,
        help="also write each example's ELBO and IWAE bound (nats) as a .safetensors file, "
        "to compare two models on the same examples (scripts/paired_difference.py)",
    )
    p.add_argument("--device", default="cpu")
    _add_table_flags(p, "evaluate", data=_RECORDED_DATA)
    p.set_defaults(func=cmd_evaluate)


def _nonnegative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number ≥ 0, got {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number ≥ 0, got {text!r}")
    return value


def _add_sample(sub: Any) -> None:
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
    p.add_argument(
        "--condition",
        type=_int_type(0, 10**6),
        help="a conditional model: the class to sample (default: a row of samples per class)",
    )
    p.add_argument(
        "--guidance",
        type=_nonnegative_float,
        help="classifier-free guidance scale w ≥ 0 (a model trained for guidance; changes "
        "the samples only: they then follow no model whose bound is reported)",
    )
    p.add_argument("--seed", type=_int_type(0, MAX_SEED), default=0)
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=cmd_sample)


def _add_report(sub: Any) -> None:
    p = sub.add_parser(
        "report",
        help="evaluate a run and write report.json with sample, curve and KL PNGs",
        description="Evaluate a run's newest checkpoint on the test split and write "
        "report.json, samples.png, curves.png and layer_kl.png into the run folder (scored "
        "as the run recorded its [evaluate] table, each value overridden by its flag).",
    )
    p.add_argument("run", type=Path, help="a run folder, or one of its checkpoints")
    p.add_argument("--device", default="cpu")
    _add_table_flags(p, "report")
    p.set_defaults(func=cmd_report)


def _add_compare(sub: Any) -> None:
    p = sub.add_parser(
        "compare",
        help="finished runs' test figures in one table, with paired differences",
        description="One row per finished, reported run (report.json: `latentkit train "
        "--report`, or `latentkit report RUN`): its bound on −log p(x) in nats (and bits/dim), "
        "the paired difference against a reference on the same test examples, the training "
        "budget and the data. Runs of different data sets, variants, binarizations or test "
        "examples are refused unless --allow-mixed (docs/cli.md).",
    )
    p.add_argument("runs", type=Path, nargs="+", metavar="RUN_DIR", help="run folders")
    p.add_argument(
        "--reference",
        metavar="RUN",
        help="the run the paired differences are taken against (its folder name or path; "
        "default: the first)",
    )
    p.add_argument(
        "--figure",
        default="best",
        help="the figure compared: best (−IWAE_k where computed, else −ELBO), elbo, iwae, fld "
        "(sample quality), or any figure a run's report names (a model's own); default best",
    )
    p.add_argument(
        "--allow-mixed",
        action="store_true",
        help="compare runs of different protocols anyway, each row naming what differs",
    )
    p.add_argument("--markdown", type=Path, metavar="PATH", help="also write the table as Markdown")
    p.add_argument(
        "--json", dest="json_out", metavar="PATH", help="also write it as JSON ('-': stdout only)"
    )
    p.set_defaults(func=cmd_compare)


def _add_verify(sub: Any) -> None:
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


COMMANDS = (
    _add_list,
    _add_train,
    _add_recipes,
    _add_evaluate,
    _add_sample,
    _add_report,
    _add_compare,
    _add_verify,
)
"""One function per command: each adds its sub-parser, whose ``func`` runs the command."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``latentkit`` (every subcommand has ``--help``)."""
    parser = _Parser(
        prog="latentkit",
        description="Latent-variable models (VAE, β-VAE, hierarchical VAE, DDPM) under one ELBO.",
        epilog="`latentkit COMMAND --help` for each command; docs/cli.md for examples.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for add in COMMANDS:
        add(sub)
    return parser
