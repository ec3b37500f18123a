"""``latentkit train``: build everything, check it, then train under the run folder's lock."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import attrs
from rich.console import Console
from rich.markup import escape

from latentkit.checkpoint import (
    CheckpointError,
    latest_checkpoint,
    read_checkpoint,
)
from latentkit.cli.build import build_run
from latentkit.cli.common import CLIError
from latentkit.cli.preflight import (
    check_evaluations,
    check_objective_settings,
    refuse_changed_model,
    refuse_select_k_alone,
)
from latentkit.cli.runconfig import (
    DataConfig,
    EvalConfig,
    RunConfig,
    RunSpec,
    _apply_set,
    _check_keys,
    _check_options,
    _merge_flags,
    _read_toml,
    compose_spec,
    split_composed,
    write_run_config,
)
from latentkit.cli.runfolder import _checkpoint_info, _refuse_existing_run, _RunFolder
from latentkit.cli.tables import field_names
from latentkit.composition import evaluation_model
from latentkit.config import structure_config, unstructure_config
from latentkit.quality.pipeline import check_sample_quality
from latentkit.registry import (
    get_model_spec,
    get_objective_spec,
)
from latentkit.report import write_report
from latentkit.trained import load_trained_model

__all__ = ["cmd_train"]


def cmd_train(args: argparse.Namespace, out: Console, err: Console) -> int:
    """Read and check the whole run, build data, model and trainer, then (only then) take
    the run folder and train: a refusal at any point before leaves an existing run as is."""
    spec, run_dir, checkpoint, train_cfg, fields = _resolve(args)
    # Everything is checked and built before the run folder is touched: a missing data file,
    # a batch larger than the data or a model too large for memory leaves the old run as is.
    ds, model, trainer = build_run(spec, train_cfg, fields, run_dir, err)
    # ... and the settings checked against what was built: two values of one option, the
    # evaluations the run and its report will do (docs/training.md)
    note = check_objective_settings(spec.objective, spec.objective_config, model)
    _record_protocol(trainer, spec.data)
    check_evaluations(model, trainer, spec.evaluate)
    if args.report:  # the report's sample quality reads these data: refused before training
        check_sample_quality(ds, spec.evaluate)
    if note:
        err.print(note, markup=False, highlight=False)
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
        folder.refuse_odd_metrics()
        _announce(spec, model, ds, trainer, train_cfg, run_dir, err)
        return _train_in(folder, trainer, checkpoint, spec, train_cfg, args, ds, model, out, err)


def _resolve(args: argparse.Namespace) -> tuple[RunSpec, Path, Path | None, Any, list[str]]:
    """The run asked for — the file or recipe, a resumed run's record, flags, then --set —
    with every value checked before any data is loaded."""
    from latentkit.training import TrainConfig

    if args.config and args.recipe:
        raise CLIError("pass --config FILE or --recipe NAME, not both")
    if args.resume and args.overwrite:  # one says continue the run, the other start over
        raise CLIError("pass --resume (continue the run) or --overwrite (start over), not both")
    spec = RunSpec()
    if args.config or args.recipe:
        spec = _read_toml(args.config, recipe=args.recipe)
    if args.model:
        spec.model = args.model
    if args.prior:
        spec.prior = args.prior
    if args.objective:  # before a resumed run's record, which it may replace
        spec.objective = args.objective
    run_dir_arg: Path | None = args.run_dir
    checkpoint, resumed_step, record = None, 0, {}
    if args.resume:
        run_dir_arg, checkpoint, record = _merge_resumed(spec, run_dir_arg)
        resumed_step = record["step"]
    if not spec.model:
        raise CLIError("which model? pass --model NAME (see `latentkit list`)")
    model_spec = get_model_spec(spec.model)
    fields = [f.name for f in attrs.fields(model_spec.config_class)]
    _merge_flags(spec, args)  # the file, then flags, then --set (docs/cli.md)
    _apply_set(spec, args.set, fields)
    if checkpoint is not None:  # the model as recorded, whatever was given now
        refuse_changed_model(spec.model_config, spec.prior_config, record, checkpoint)
    _check_keys(spec.model_config, fields, f"model {spec.model!r}")
    # Check the values now, before the data load (data_shape, if not given, is the default).
    structure_config(model_spec.config_class, spec.model_config, model=spec.model)
    if spec.prior is not None:  # its fields and values checked now, as the model's
        prior_spec = get_model_spec(spec.prior)
        prior_fields = [f.name for f in attrs.fields(prior_spec.config_class)]
        _check_keys(spec.prior_config, prior_fields, f"prior {spec.prior!r}")
        # with the values z's continuity fills in (a vdm's gaussian decoder), as the build does
        early = {**prior_spec.continuous_data_values(), **spec.prior_config}
        structure_config(prior_spec.config_class, early, model=spec.prior)
    compose_spec(spec)  # --model A --prior B: the model `composed`
    _check_options(spec.evaluate, "[evaluate]")
    _check_options(spec.data, "[data]")
    train_cfg = structure_config(TrainConfig, spec.train)
    refuse_select_k_alone(train_cfg.select_k, spec.data.get("validation") or 0)
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
        _refuse_existing_run(run_dir)  # again under the lock
    return spec, run_dir, checkpoint, train_cfg, fields


def _merge_resumed(spec: RunSpec, run_dir_arg: Path | None) -> tuple[Path, Path, dict]:
    """``--resume``: the newest checkpoint's recorded settings under what is given now;
    the run folder, the checkpoint and its record."""
    if run_dir_arg is None and spec.model is None:
        raise CLIError("--resume needs --run-dir (or --model, for runs/MODEL)")
    run_dir_arg = run_dir_arg or Path("runs") / str(spec.model)
    checkpoint = latest_checkpoint(run_dir_arg)
    if checkpoint is None:
        raise CLIError(f"--resume: no checkpoint in {run_dir_arg}")
    _, info = read_checkpoint(checkpoint)
    recorded_model = info.get("model")
    if not isinstance(recorded_model, str) or not all(
        isinstance(info.get(k), dict) for k in ("model_config", "train_config")
    ):
        raise CheckpointError(
            f"--resume: {checkpoint} does not record its model, model_config and "
            "train_config (not written by `latentkit train`)"
        )
    # The checkpoint's settings first; anything given now overrides them.
    if not split_composed(spec, recorded_model, info["model_config"], checkpoint):
        if spec.model and spec.model != recorded_model:
            raise CLIError(
                f"--resume: {checkpoint} is a {recorded_model!r} run, not {spec.model!r}"
            )
        spec.model = recorded_model
        spec.model_config = {**info["model_config"], **spec.model_config}
    recorded_objective = info.get("objective")
    if isinstance(recorded_objective, dict) and isinstance(recorded_objective.get("name"), str):
        if spec.objective in (None, recorded_objective["name"]):
            spec.objective = recorded_objective["name"]
            saved = recorded_objective.get("config")
            spec.objective_config = {**(saved or {}), **spec.objective_config}
    spec.train = {**info["train_config"], **spec.train}
    data_record = info.get("data") if isinstance(info.get("data"), dict) else {}
    recorded = {k: data_record.get(k) for k in field_names(DataConfig)}
    spec.data = {**{k: v for k, v in recorded.items() if v is not None}, **spec.data}
    return run_dir_arg, checkpoint, info


def _record_protocol(trainer: Any, data: dict[str, Any]) -> None:
    """The training protocol (binarization, validation split, labels kept) beside the data
    set in the checkpoints' record, which ``--resume`` reads back: a resumed run trains on
    the same protocol unless told otherwise."""
    given = structure_config(DataConfig, {k: v for k, v in data.items() if v is not None})
    if trainer.data_info is not None:
        for key in ("binarization", "validation", "labels", "repeat_labelled"):
            trainer.data_info[key] = getattr(given, key)


def _announce(
    spec: RunSpec, model: Any, ds: Any, trainer: Any, train_cfg: Any, run_dir: Path, err: Console
) -> None:
    nparams = sum(p.numel() for p in model.parameters())
    err.print(
        f"[bold]{spec.model}[/] ({nparams:,} parameters) on {escape(ds.description)}; "
        f"objective {escape(_objective_words(trainer.objective_record))}; "
        f"{train_cfg.steps} steps of {train_cfg.batch_size}, lr {train_cfg.lr}, "
        f"seed {train_cfg.seed} → {run_dir}",
        highlight=False,
    )
    protocol = _protocol_words(trainer, int(spec.data.get("repeat_labelled") or 1))
    if protocol:
        err.print(f"protocol: {protocol}", highlight=False)
    if trainer.dist.active:
        err.print(
            f"torchrun: {trainer.dist.world_size} processes "
            f"({'nccl' if trainer.device.type == 'cuda' else 'gloo'}); rank 0 writes"
        )


def _protocol_words(trainer: Any, repeats: int = 1) -> str:
    """The data protocol in words, when ``[data]`` sets one (dynamic binarization, a
    validation split, labelled examples repeated): the data set's own description names the
    source split sizes only."""
    held_out = trainer.validation_data
    if trainer.binarizer is None and held_out is None and repeats == 1:
        return ""
    rows = trainer.train_data.shape[0]
    labels = trainer.feed.train_labels
    labelled = 0 if labels is None or repeats == 1 else int((labels >= 0).sum()) // repeats
    words = [
        f"{rows - (repeats - 1) * labelled:,} training examples"
        + (", binarized afresh at each use" if trainer.binarizer is not None else "")
        + (
            f", the {labelled:,} labelled ones each {repeats} times ({rows:,} rows)"
            if labelled
            else ""
        )
    ]
    if held_out is not None:
        words.append(
            f"{held_out.shape[0]:,} held out for validation (the best checkpoint is chosen on "
            "them); the test split is left to the final evaluation"
        )
    return "; ".join(words)


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
    if checkpoint is not None:
        step = trainer.resume(checkpoint)
        err.print(f"resumed from {checkpoint} at step {step}", markup=False)
    if trainer.dist.is_main:
        run = _run_config(spec, trainer, model, train_cfg)
        write_run_config(run_dir, run, trainer.data_info)
    t0 = time.perf_counter()
    try:
        result = trainer.fit()
    finally:  # the old run goes once the new one has a checkpoint; else it comes back
        folder.settle(started=trainer.last_checkpoint is not None)
    if result.interrupted:
        err.print(
            f"[yellow]stopped at step {result.step}[/]; checkpoint "
            f"{escape(str(result.checkpoint))}. "
            f"Continue with: latentkit train --resume --run-dir {escape(str(run_dir))}",
            highlight=False,
            soft_wrap=True,  # one line, however long: what follows an interrupt is one line
        )
        return 130
    _say_trained(result, time.perf_counter() - t0, err)
    if args.report and trainer.dist.is_main:
        _report(run_dir, result, trainer, spec, ds, model, out, err)
    return 0


def _say_trained(result: Any, seconds: float, err: Console) -> None:
    """One line: the steps, the time, the last held-out bound and the checkpoint."""
    split = "validation" if "validation" in result.last_metrics else "test"
    last = result.last_metrics.get(split, {})
    iwae = f", IWAE-{last['iwae_k']} {last['iwae']:.2f}" if "iwae" in last else ""
    if "elbo_continuous" in last:  # a composed model's continuous-time prior: its own bound
        iwae += f", ELBO_∞ {last['elbo_continuous']:.2f}"
    err.print(
        f"trained {result.step} steps in {seconds:.0f} s; {split} ELBO "
        f"{last.get('elbo', float('nan')):.2f}{iwae} nats; checkpoint {result.checkpoint}",
        highlight=False,
        markup=False,
    )


def _report(
    run_dir: Path,
    result: Any,
    trainer: Any,
    spec: RunSpec,
    ds: Any,
    model: Any,
    out: Console,
    err: Console,
) -> None:
    """``--report``: the run's best checkpoint on validation if it kept one, else its last,
    evaluated under ``[evaluate]``; report.json and the figures written."""
    info = _checkpoint_info(result.checkpoint)
    evaluated = result.checkpoint
    if latest_checkpoint(run_dir / "best") is not None:  # chosen on the validation split
        evaluated = latest_checkpoint(run_dir / "best")
        model, info = load_trained_model(run_dir / "best", device=trainer.device)
        err.print(
            f"evaluating the best checkpoint on validation: step {info.get('step')}, "
            f"validation {_bound_name(info)} {info.get('best_validation_elbo'):.2f}",
            highlight=False,
        )
    write_report(
        run_dir,
        out=out,
        err=err,
        options={"progress": trainer.config.progress, **spec.evaluate},  # --no-progress too
        dataset=ds,
        model=evaluation_model(model, say=lambda line: err.print(line, markup=False)),
        info=info,
        seed=spec.evaluate.get("seed", EvalConfig().seed),
        checkpoint=evaluated,
    )


def _run_config(spec: RunSpec, trainer: Any, model: Any, train_cfg: Any) -> RunConfig:
    """The run as resolved: every model, objective and training field, and the data set and
    variant actually loaded (a fallback data set included), so the file trains it again."""
    info = trainer.data_info
    data = {k: info.get(k) for k in ("name", "variant", "seed", "limit")}
    protocol = ("binarization", "validation", "labels", "repeat_labelled")  # as given
    data.update({k: spec.data[k] for k in protocol if k in spec.data})
    objective = trainer.objective_record
    names = {"model": str(spec.model), "model_config": unstructure_config(model.config)}
    if spec.prior is not None:  # recorded as given: model, prior and their two tables
        names = {
            "model": model.config.outer,
            "model_config": unstructure_config(model.outer.config),
            "prior": model.config.prior,
            "prior_config": unstructure_config(model.prior.config),
        }
    return RunConfig(
        **names,
        objective=objective["name"],
        objective_config=objective["config"] or {},
        train=train_cfg,
        data=structure_config(DataConfig, {k: v for k, v in data.items() if v is not None}),
        evaluate=structure_config(
            EvalConfig, {k: v for k, v in spec.evaluate.items() if v is not None}
        ),
    )


def _objective_words(record: dict[str, Any]) -> str:
    """``name(option=value, …)`` with the options that differ from their defaults."""
    config = record.get("config") or {}
    try:
        defaults = unstructure_config(get_objective_spec(record["name"]).config_class())
    except Exception:  # an objective built in Python, not by name: show all
        defaults = {}
    options = ", ".join(f"{k}={v}" for k, v in config.items() if defaults.get(k, ...) != v)
    return f"{record['name']}({options})"


def _bound_name(info: dict) -> str:
    """The bound a checkpoint's best validation value is: ``ELBO`` or ``IWAE-k``."""
    k = info.get("best_validation_k", 1)
    return f"IWAE-{k}" if isinstance(k, int) and k > 1 else "ELBO"
