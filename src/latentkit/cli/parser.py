"""The argument parser: one sub-parser per command, each pointing at its function."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from latentkit.cli.commands import cmd_list, cmd_recipes, cmd_report, cmd_sample, cmd_verify
from latentkit.cli.common import (
    DIAGNOSE_EXAMPLES,
    MAX_DATA_LIMIT,
    MAX_IWAE_K,
    MAX_ROWS,
    MAX_SAMPLES,
    MAX_SEED,
    _int_type,
    _Parser,
)
from latentkit.cli.compare import cmd_compare
from latentkit.cli.evaluate import cmd_evaluate
from latentkit.cli.train import cmd_train

__all__ = ["build_parser", "fields_help"]


def _field_line(f: dict) -> str:
    default = "unset" if f["default"] is None else repr(f["default"])
    rule = f"; {f['rule']}" if f["rule"] else ""
    return f"  {f['name']} ({f['type']}, default {default}{rule})\n      {f['doc']}"


def fields_help(title: str, prefix: str, config_class: type) -> str:
    """One block of ``train --help``: every field of ``config_class`` with its type, default,
    allowed values and description, read from the class (its validators and docstring)."""
    from latentkit.config import describe_fields

    lines = [f"{title} (--set {prefix}FIELD=VALUE, or the TOML table):"]
    lines += [_field_line(f) for f in describe_fields(config_class)]
    return "\n".join(lines)


def _short(config_class: type, name: str) -> str:
    """A flag's help: the field's own description and default, read from the class."""
    from latentkit.config import describe_fields

    f = next(f for f in describe_fields(config_class) if f["name"] == name)
    return f"{f['doc']} (default {f['default']!r})".replace("%", "%%")


def _train_epilog() -> str:
    from latentkit.cli.runconfig import DataConfig, EvalConfig
    from latentkit.training import TrainConfig

    return "\n\n".join(
        [
            "example: latentkit train --model vae --data mnist --steps 3000 --report "
            "--set latent_dim=16",
            fields_help("[train] training", "train.", TrainConfig),
            fields_help("[data] data", "data.", DataConfig),
            fields_help("[evaluate] evaluation", "evaluate.", EvalConfig),
            "[model_config] and [objective_config]: the fields of the model and objective "
            "chosen; put --model NAME (and --objective NAME) before --help to list them, "
            "or see `latentkit list`.",
        ]
    )


class _TrainHelp(argparse.Action):
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


def _add_common_train_flags(p: argparse.ArgumentParser) -> None:
    from latentkit.training import TrainConfig

    g = p.add_argument_group("training (shortcuts for train.FIELD)")
    g.add_argument("--steps", type=int, help=_short(TrainConfig, "steps"))
    g.add_argument("--batch-size", type=int, help=_short(TrainConfig, "batch_size"))
    g.add_argument("--lr", type=float, help=_short(TrainConfig, "lr"))
    g.add_argument("--seed", type=int, help=_short(TrainConfig, "seed"))
    g.add_argument("--eval-every", type=int, help=_short(TrainConfig, "eval_every"))
    g.add_argument("--checkpoint-every", type=int, help=_short(TrainConfig, "checkpoint_every"))
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
    g.add_argument(
        "--limit",
        type=_int_type(1, MAX_DATA_LIMIT),
        help="use at most this many examples of each split",
    )


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
    from latentkit.cli.runconfig import EvalConfig

    g.add_argument(
        "--ode",
        type=_int_type(0, 10**9),
        metavar="N",
        help=_short(EvalConfig, "ode_examples"),
    )
    g.add_argument(
        "--ode-margin", type=float, metavar="BITS", help=_short(EvalConfig, "ode_margin")
    )


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
        epilog=_train_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        add_help=False,
    )
    p.add_argument("-h", "--help", action=_TrainHelp, help="show this help (every field) and exit")
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
        "--per-example",
        type=Path,
        help="also write each example's ELBO and IWAE bound (nats) as a .safetensors file, "
        "to compare two models on the same examples (scripts/paired_difference.py)",
    )
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
    p.add_argument("--seed", type=_int_type(0, MAX_SEED), default=0)
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=cmd_sample)


def _add_report(sub: Any) -> None:
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
        help="the figure compared: best (−IWAE_k where computed, else −ELBO), elbo, iwae, or a "
        "model's own (continuous, ode, ode_direct, ...); default best",
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
