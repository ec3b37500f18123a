"""Every setting ``latentkit train`` takes is applied, or refused before anything is written.

Part (a): each field of the run's tables (``[train]``, ``[data]``, ``[evaluate]``:
``latentkit.cli.tables.SECTIONS``), of the core objectives' configs (``elbo``, ``iwae``) and
a sample of each registered model's config is given a value other than its default (from
``test_cli_flags.other_value`` where that one is accepted, else a value chosen below), once
through ``--set`` and once through a ``--config`` file, in a few tiny runs on digits (1-2
steps). Each value is then read back three ways: from ``config.toml`` (the run's record),
from the newest checkpoint (what ``--resume`` and ``report`` read), and from what the run
did or built — the trainer built by the same command line, the metrics, the checkpoints
kept, the report. Fields whose effect a tiny CPU run cannot show are only read back from
the records: :data:`RECORDED_ONLY` says which, and why. ``test_every_field_is_covered``
fails when a field is added to a table without a probe here.

Part (b): the refusals of docs/training.md ("Settings that name the same thing"), each one
``error:`` line, the run folder unchanged (its digest before and after).

Mutants these tests kill (each tried by hand): the model's declared objective options
merged under ``[objective_config]`` unchecked (the β-VAE's β silently 4,
``test_beta_given_twice_is_refused``); ``--objective`` applied after a resumed run's record
(the old objective's options handed to the new one, ``test_resume_objective_...``);
``refuse_changed_model`` skipped (``test_resume_refuses_a_changed_model_field``); the
``select_k`` refusal dropped (``test_select_k_without_validation_is_refused``); the
evaluations' tries removed (``test_unusable_estimators_are_refused_before_the_old_run_
moves``); the data protocol left out of the checkpoint's record (``data.binarization`` and
``data.validation`` probes, and ``test_resume_keeps_the_data_protocol``).
"""

from __future__ import annotations

import io
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
import tomli_w
import tomllib
import torch
from cli_runner import digest, error_line, run_cli
from rich.console import Console
from test_cli_flags import _accepted, toml_text

import latentkit as lk
from latentkit.checkpoint import latest_checkpoint, read_checkpoint
from latentkit.cli import build_parser
from latentkit.cli.build import build_run
from latentkit.cli.tables import SECTIONS
from latentkit.cli.train import _resolve
from latentkit.objectives import ElboConfig, IWAEConfig
from latentkit.training import resolve_device

TINY_VAE = {"model.hidden": [16], "model.latent_dim": 2, "data.name": "digits"}


# -- one run, read back -------------------------------------------------------------------


@attrs.define
class Outcome:
    """A finished run and what the same command line builds, for the probes to read."""

    run: Path
    toml: dict[str, Any]
    config_json: dict[str, Any]
    info: dict[str, Any]
    metrics: list[dict[str, Any]]
    trainer: Any
    model: Any
    err: str
    settings: dict[str, Any]

    def lines(self, split: str) -> list[dict[str, Any]]:
        return [m for m in self.metrics if m["split"] == split]

    @property
    def report(self) -> dict[str, Any]:
        return json.loads((self.run / "report.json").read_text())


def _argv(model: str, settings: dict[str, Any], route: str, folder: Path) -> list[str]:
    """``train``'s arguments giving ``settings`` (``SECTION.FIELD``: value) by ``route``:
    ``set`` (``--set`` each) or ``config`` (one TOML file, its tables)."""
    objective = settings.get("objective")
    values = {k: v for k, v in settings.items() if k != "objective"}
    if route == "set":
        argv = ["--model", model] + (["--objective", objective] if objective else [])
        for key, value in values.items():
            argv += ["--set", f"{key}={toml_text(value)}"]
        return argv
    tables = {"model": "model_config", "objective": "objective_config"}
    doc: dict[str, Any] = {"model": model, **({"objective": objective} if objective else {})}
    for key, value in values.items():
        section, field = key.split(".")
        doc.setdefault(tables.get(section, section), {})[field] = value
    path = folder / "run.toml"
    path.write_text(tomli_w.dumps(doc))
    return ["--config", str(path)]


def _built(argv: list[str], folder: Path) -> tuple[Any, Any]:
    """The model and trainer ``train`` builds for ``argv`` (nothing written)."""
    args = build_parser().parse_args(["train", *argv, "--run-dir", str(folder / "built")])
    spec, run_dir, _, train_cfg, fields = _resolve(args)
    _, model, trainer = build_run(spec, train_cfg, fields, run_dir, Console(file=io.StringIO()))
    return model, trainer


def train(model: str, settings: dict[str, Any], route: str, folder: Path, *extra: str) -> Outcome:
    folder.mkdir(parents=True, exist_ok=True)
    argv = _argv(model, settings, route, folder)
    run = folder / "run"
    code, _, err = run_cli(["train", *argv, *extra, "--run-dir", str(run)])
    assert code == 0, err
    return read_outcome(argv, folder, settings, err)


def read_outcome(argv: list[str], folder: Path, settings: dict[str, Any], err: str) -> Outcome:
    """What the run ``train argv`` wrote in ``folder/run``, and what ``argv`` builds."""
    run = folder / "run"
    built_model, trainer = _built(argv, folder)
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return Outcome(
        run=run,
        toml=tomllib.loads((run / "config.toml").read_text()),
        config_json=json.loads((run / "config.json").read_text()),
        info=read_checkpoint(latest_checkpoint(run))[1],
        metrics=[json.loads(line) for line in lines],
        trainer=trainer,
        model=built_model,
        err=err,
        settings=settings,
    )


def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def recorded(o: Outcome, key: str) -> tuple[Any, Any]:
    """``key``'s value in config.toml and in the newest checkpoint (or config.json, for
    ``[evaluate]``, which checkpoints do not hold)."""
    section, field = key.split(".")
    if section == "model":
        return o.toml["model_config"][field], o.info["model_config"][field]
    if section == "objective":
        return o.toml["objective_config"][field], o.info["objective"]["config"][field]
    if section == "train":
        return o.toml["train"][field], o.info["train_config"][field]
    if section == "data":
        return o.toml["data"][field], o.info["data"][field]
    return o.toml["evaluate"][field], o.config_json["evaluate"][field]


def assert_applied(o: Outcome, settings: dict[str, Any], route: str) -> None:
    """Every setting recorded as given, its probe true, and the objective trained the one
    the model's config declares wherever no other was named."""
    for key, value in settings.items():
        if key == "objective":
            assert o.toml["objective"] == o.info["objective"]["name"] == value, route
            continue
        in_toml, in_checkpoint = recorded(o, key)
        assert _plain(in_toml) == _plain(in_checkpoint) == _plain(value), (route, key)
        probe = PROBES.get(key)
        if probe is not None:
            assert probe(o, value), (route, key, value)
    own, declared = o.model.objective_choice
    if settings.get("objective") in (None, own):
        saved = o.info["objective"]
        assert saved["name"] == own, route
        assert {k: _plain(saved["config"][k]) for k in declared} == _plain(declared), route
        assert o.trainer.loss_objective.config == lk.get_objective_spec(own).config_class(
            **saved["config"]
        )


# -- what each field does, read from the run --------------------------------------------


def _lr(o: Outcome) -> Any:
    return o.trainer.lr_schedule


def _steps_of(lines: list[dict[str, Any]]) -> list[int]:
    return [m["step"] for m in lines]


def _checkpoint_steps(o: Outcome) -> list[int]:
    return sorted(int(p.stem.split("-")[1]) for p in (o.run / "checkpoints").glob("*.json"))


def _trains_on(o: Outcome, variant: str, seed: int = 0) -> bool:
    """The training examples are digits' first ones in ``variant`` (binarized with
    ``seed``)."""
    train = o.trainer.train_data
    limit = o.settings["data.limit"]
    ds = lk.load_dataset("digits", variant=variant, seed=seed, limit=limit)
    return torch.equal(train, ds.train[: train.shape[0]].to(train.dtype))


def _data_seed(o: Outcome, seed: int) -> bool:
    """Binarized with ``seed``, which is not what seed 0 gives."""
    return _trains_on(o, "binarized", seed) and not _trains_on(o, "binarized", 0)


def _data_variant(o: Outcome, variant: str) -> bool:
    """In ``variant`` (threshold here), which is not the binarized digits."""
    return _trains_on(o, variant) and not _trains_on(o, "binarized")


PROBES: dict[str, Callable[[Outcome, Any], bool]] = {
    "train.steps": lambda o, v: o.info["step"] == v,
    "train.batch_size": lambda o, v: o.trainer.batch(0).shape[0] == v,
    "train.lr": lambda o, v: o.trainer.optimization.lr == v,
    "train.lr_schedule": lambda o, v: _lr(o).kind == v,
    "train.lr_warmup_steps": lambda o, v: _lr(o).warmup_steps == v,
    "train.lr_min_factor": lambda o, v: _lr(o).min_factor == v,
    "train.lr_step_every": lambda o, v: _lr(o).step_every == v,
    "train.lr_gamma": lambda o, v: _lr(o).step_gamma == v,
    "train.weight_decay": lambda o, v: o.trainer.optimizer.param_groups[0]["weight_decay"] == v,
    "train.grad_clip": lambda o, v: o.trainer.health.grad_clip == v,
    "train.seed": lambda o, v: o.trainer.order.seed == v,
    "train.log_every": lambda o, v: _steps_of(o.lines("train")) == [1, 2] and v == 1,
    "train.eval_every": lambda o, v: _steps_of(o.lines("test")) == [1, 2] and v == 1,
    "train.eval_examples": lambda o, v: {m["examples"] for m in o.lines("test")} == {v},
    "train.eval_estimator": lambda o, v: o.trainer.evaluator.estimator == v,
    "train.select_k": lambda o, v: (
        o.trainer.selection_k == v and {m.get("iwae_k") for m in o.lines("validation")} == {v}
    ),
    "train.checkpoint_every": lambda o, v: (
        v == 1 and _checkpoint_steps(o) == [1, 2][-o.settings.get("train.keep_checkpoints", 2) :]
    ),
    "train.keep_checkpoints": lambda o, v: len(_checkpoint_steps(o)) == v,
    "train.device": lambda o, v: o.trainer.device == resolve_device(v),
    "train.on_nonfinite": lambda o, v: o.trainer.health.policy == v,
    "train.max_skips": lambda o, v: o.trainer.health.max_skips == v,
    "train.diagnose_examples": lambda o, v: len(o.lines("diagnostics")) == 2,
    "train.ema_decay": lambda o, v: o.trainer.ema.decay == v and o.info["ema"] is not None,
    "train.ema_warmup": lambda o, v: o.trainer.ema.warmup == v,
    "train.logger": lambda o, v: any((o.run / "tensorboard").iterdir()) and v == "tensorboard",
    "data.name": lambda o, v: o.info["data"]["name"] == v,
    "data.variant": _data_variant,
    "data.seed": _data_seed,
    "data.limit": lambda o, v: o.trainer.train_data.shape[0] - _copies(o) + _held_out(o) == v,
    "data.binarization": lambda o, v: (o.trainer.binarizer is not None) == (v == "dynamic"),
    "data.validation": lambda o, v: o.trainer.validation_data.shape[0] == v,
    "data.labels": lambda o, v: _labelled_rows(o) == v * 10 * _repeats(o),
    "data.repeat_labelled": lambda o, v: (
        o.info["data"]["repeat_labelled"] == v == _repeats(o)
        and _copies(o) == (v - 1) * _labelled_rows(o) // v
    ),
    "evaluate.iwae_k": lambda o, v: o.report["evaluation"]["iwae_k"] == v,
    "evaluate.examples": lambda o, v: o.report["evaluation"]["num_examples"] == v,
    "evaluate.num_samples": lambda o, v: o.report["evaluation"]["num_samples"] == v,
    "evaluate.estimator": lambda o, v: o.report["evaluation"]["estimator"] == v,
    "evaluate.seed": lambda o, v: o.report["evaluation"]["seed"] == v,
    "evaluate.diagnose": lambda o, v: o.report["diagnostics"]["num_examples"] == v,
}


def _objective_option(name: str) -> Callable[[Outcome, Any], bool]:
    """The built objective (what each step calls) holds the option."""
    return lambda o, v: _plain(getattr(o.trainer.loss_objective.config, name)) == _plain(v)


PROBES.update(
    {
        f"objective.{f.name}": _objective_option(f.name)
        for cls in (ElboConfig, IWAEConfig)
        for f in attrs.fields(cls)
    }
)


def _labelled_rows(o: Outcome) -> int:
    labels = o.trainer.feed.train_labels
    return 0 if labels is None else int((labels >= 0).sum())


def _repeats(o: Outcome) -> int:
    """R of ``[data] repeat_labelled``, read from the training rows: each labelled image
    appears R times (a label-free run: 1)."""
    labels = o.trainer.feed.train_labels
    if labels is None or not bool((labels >= 0).any()):
        return 1
    rows = o.trainer.train_data[labels >= 0].flatten(1)
    return rows.shape[0] // torch.unique(rows, dim=0).shape[0]


def _copies(o: Outcome) -> int:
    """The rows ``[data] repeat_labelled`` appended: (R − 1) of each labelled image."""
    return _labelled_rows(o) - _labelled_rows(o) // _repeats(o)


def _held_out(o: Outcome) -> int:
    v = o.trainer.validation_data
    return 0 if v is None else v.shape[0]


RECORDED_ONLY = {
    "train.amp": "bf16 autocast is CUDA only: on CPU it is dropped with a warning",
    "train.compile": "torch.compile takes tens of seconds on CPU: the slow test runs it",
    "train.progress": "the bar or its lines change stderr only",
    "evaluate.batch_size": "examples per evaluation batch: the figures do not depend on it",
    "evaluate.ode_examples": "a vdm's ODE figure (slow): the slow test runs it",
    "evaluate.ode_margin": "read with the ODE figure only: the slow test runs it",
    "evaluate.sample_quality": "draws and scores samples (slow): the slow test runs it",
    "evaluate.progress": "the bars change stderr only",
}
"""Fields a tiny CPU run can only record (config.toml and the checkpoint or config.json are
still read back), with the reason."""


# -- the runs ---------------------------------------------------------------------------

ELBO_OPTIONS = {
    "objective.beta": 0.5,
    "objective.estimator": "bottom-up",
    "objective.num_samples": 2,
    "objective.warmup_steps": 1,
    "objective.warmup_start": 0.5,
    "objective.warmup_shape": "cosine",
    "objective.free_bits": 0.5,
    "objective.free_bits_per": "dimension",
    "objective.history": 11,
}

RUNS: dict[str, tuple[str, dict[str, Any], tuple[str, ...]]] = {
    # training, most of [train], [data] name/variant/limit and the elbo options
    "train": (
        "vae",
        {
            **TINY_VAE,
            "train.steps": 2,
            "train.batch_size": 8,
            "train.lr": 0.0005,
            "train.lr_schedule": "cosine",
            "train.lr_warmup_steps": 1,
            "train.lr_min_factor": 0.5,
            "train.weight_decay": 0.5,
            "train.grad_clip": 0.5,
            "train.seed": 1,
            "train.log_every": 1,
            "train.eval_every": 1,
            "train.eval_examples": 32,
            "train.eval_estimator": "bottom-up",
            "train.checkpoint_every": 1,
            "train.device": "auto",
            "train.amp": True,
            "train.progress": False,
            "train.on_nonfinite": "skip",
            "train.max_skips": 11,
            "train.diagnose_examples": 16,
            "train.ema_decay": 0.5,
            "train.ema_warmup": True,
            "train.logger": "tensorboard",
            "data.seed": 1,
            "data.limit": 64,
            **ELBO_OPTIONS,
        },
        (),
    ),
    # the step schedule, validation with its own bound, the data protocol, the report
    "report": (
        "vae",
        {
            **TINY_VAE,
            "train.steps": 2,
            "train.batch_size": 8,
            "train.lr_schedule": "step",
            "train.lr_step_every": 1,
            "train.lr_gamma": 0.25,
            "train.select_k": 3,
            "train.checkpoint_every": 1,
            "train.keep_checkpoints": 1,
            "data.limit": 64,
            "data.binarization": "dynamic",
            "data.validation": 16,
            "evaluate.iwae_k": 3,
            "evaluate.examples": 20,
            "evaluate.batch_size": 7,
            "evaluate.num_samples": 2,
            "evaluate.estimator": "bottom-up",
            "evaluate.seed": 1,
            "evaluate.diagnose": 10,
            "evaluate.ode_margin": 0.5,
            "evaluate.progress": False,
        },
        ("--report",),
    ),
    # the iwae objective's options
    "iwae": (
        "vae",
        {
            **TINY_VAE,
            "objective": "iwae",
            "train.steps": 1,
            "train.batch_size": 8,
            "data.limit": 32,
            "data.variant": "threshold",
            "objective.k": 3,
            "objective.gradient": "dreg",
        },
        (),
    ),
}


@pytest.fixture(scope="module", params=["set", "config"])
def outcomes(request, tmp_path_factory) -> dict[str, tuple[Outcome, dict[str, Any]]]:
    folder = tmp_path_factory.mktemp(f"settings-{request.param}")
    return {
        name: (train(model, settings, request.param, folder / name, *extra), settings)
        for name, (model, settings, extra) in RUNS.items()
    }


@pytest.mark.parametrize("name", list(RUNS))
def test_each_setting_is_applied(outcomes, name):
    """Every value given is in config.toml and the checkpoint, and does what it says."""
    outcome, settings = outcomes[name]
    assert_applied(outcome, settings, name)
    # a plain elbo set aside by --objective is no news: no note
    assert ("note:" in outcome.err) is False


def test_every_field_is_covered():
    """Each field of the run's tables and of the core objectives is set by one of the runs
    (:data:`RUNS`, :data:`PER_MODEL`, the slow test's :data:`SLOW`) and either probed or
    recorded-only for a stated reason; the values differ from the defaults (so a field left
    at its default cannot pass for one applied)."""
    runs = [settings for _, settings, _ in RUNS.values()] + [SLOW, *PER_MODEL.values()]
    given = {k: v for settings in runs for k, v in settings.items()}
    fields = [(s, f) for s, cls in SECTIONS.items() for f in attrs.fields(cls)]
    fields += [("objective", f) for cls in (ElboConfig, IWAEConfig) for f in attrs.fields(cls)]
    for section, field in fields:
        key = f"{section}.{field.name}"
        assert key in given, f"{key}: set by no run here"
        assert given[key] != field.default and _accepted(field, given[key]), key
        assert (key in PROBES) != (key in RECORDED_ONLY), key


# -- each model's fields: a sample here, all of them in the slow test -----------------------

PER_MODEL: dict[str, dict[str, Any]] = {
    "vae": {**TINY_VAE, "model.activation": "relu", "model.likelihood_scale": "fixed"},
    "beta-vae": {**TINY_VAE, "model.beta": 8.0},
    "hvae": {
        "model.latent_dims": [4, 2],
        "model.hidden": [16],
        "model.posterior": "bottom-up",
        "data.name": "digits",
    },
    "iaf": {**TINY_VAE, "model.num_steps": 1, "model.made_hidden": [8], "model.context_dim": 4},
    "vamp": {**TINY_VAE, "model.num_pseudo_inputs": 4},
    "m2": {
        **TINY_VAE,
        "model.classifier_hidden": [16],
        "model.alpha": 10.0,
        "model.labelled": 60,
        "data.labels": 2,
        "data.repeat_labelled": 3,
        "data.limit": 200,
    },
    "ddpm": {
        "model.network": "mlp",
        "model.hidden": [16],
        "model.num_timesteps": 4,
        "model.loss": "hybrid",
        "model.hybrid_weight": 0.01,
        "data.name": "digits",
    },
    "ddpm-importance": {
        "model.network": "mlp",
        "model.hidden": [16],
        "model.num_timesteps": 4,
        "model.timestep_sampler": "importance",
        "objective.layer_sampler": "importance",  # the same value through both: accepted
        "objective.history": 11,
        "data.name": "digits",
    },
    "vdm": {
        "model.network": "mlp",
        "model.hidden": [16],
        "model.num_timesteps": 8,
        "model.t_sampler": "uniform",
        "model.fourier_exponents": [],
        "data.name": "digits",
    },
}


@pytest.mark.parametrize("route", ["set", "config"])
def test_each_models_fields_are_applied(route, tmp_path):
    """A sample of each registered model's fields (its objective-routing ones included:
    β, loss, hybrid_weight, timestep_sampler, t_sampler, alpha, labelled) trained for one
    step: recorded as given, in the model built, and the objective trained is the one the
    model's config declares, with its options."""
    for name, settings in PER_MODEL.items():
        model = name.split("-importance")[0]
        settings = {"train.steps": 1, "train.batch_size": 8, "data.limit": 64, **settings}
        o = train(model, settings, route, tmp_path / name)
        assert_applied(o, settings, name)
        for key, value in settings.items():
            if key.startswith("model."):
                assert _plain(getattr(o.model.config, key[6:])) == _plain(value), key


def test_per_model_sample_covers_every_model():
    """Each registered model that trains on digits is in :data:`PER_MODEL` (gmm takes flat
    two-dimensional points; composed is two models, trained by tests/test_compose_cli.py)."""
    covered = {name.split("-importance")[0] for name in PER_MODEL}
    assert set(lk.list_models()) - covered == {"gmm", "composed"}


@pytest.mark.slow
def test_every_model_field_alone(tmp_path):
    """Every field of every model trained on digits, alone at another value (``other_value``):
    the run trains with it recorded and built, or is refused in one line before writing.
    Runs with LATENTKIT_SLOW_BUDGET set."""
    if not float(os.environ.get("LATENTKIT_SLOW_BUDGET", "0") or 0):
        pytest.skip("every model field: set LATENTKIT_SLOW_BUDGET=SECONDS to run it")
    for name, base in PER_MODEL.items():
        model = name.split("-importance")[0]
        spec = lk.get_model_spec(model)
        for field in attrs.fields(spec.config_class):
            key = f"model.{field.name}"
            if key in base or field.name in spec.data_fields().values():
                continue
            value = _model_value(spec.config_class, field)
            if value is None:
                continue  # no other value to guess (an empty tuple): the sample covers it
            settings = {"train.steps": 1, "train.batch_size": 8, "data.limit": 64, **base}
            settings[key] = value
            folder = tmp_path / f"{name}-{field.name}"
            folder.mkdir()
            argv = _argv(model, settings, "set", folder)
            code, _, err = run_cli(["train", *argv, "--run-dir", str(folder / "run")])
            if code != 0:  # a value this model refuses with the others: one line, nothing
                error_line(err)
                assert not (folder / "run").exists() or not digest(folder / "run"), key
                continue
            assert_applied(read_outcome(argv, folder, settings, err), settings, key)


def _model_value(cls: type, field: attrs.Attribute) -> Any:
    """A value other than the default that the config class takes for ``field`` (built
    whole, so validators that read other fields apply): a choice, a count ± 1, half a
    number, a tuple's first item alone or doubled; None when there is none to guess."""
    default = field.default
    if isinstance(default, bool):
        candidates: list[Any] = [not default]
    elif getattr(field.validator, "choices", None):
        candidates = [c for c in field.validator.choices if c != default]
    elif isinstance(default, int):
        candidates = [default + 1, default - 1]
    elif isinstance(default, float):
        candidates = [default / 2, 0.5]
    elif isinstance(default, tuple):
        candidates = [list(default[:1]), list(default) * 2] if default else []
    else:
        candidates = []
    for value in candidates:
        try:
            attrs.evolve(cls(), **{field.alias: value})
        except (lk.ConfigError, TypeError, ValueError):
            continue
        return value
    return None


SLOW = {
    "train.steps": 1,
    "train.batch_size": 8,
    "train.compile": True,
    "data.name": "mnist-sample",  # the sample quality's feature network reads 28×28 digits
    "data.limit": 64,
    "evaluate.ode_examples": 2,
    "evaluate.ode_margin": 0.5,
    "evaluate.sample_quality": 16,
    "evaluate.examples": 4,
    "evaluate.iwae_k": 0,
}
"""The slow test's settings (a vdm with --report): compile, the ODE figure, sample quality."""
if "mnist-sample" not in lk.data.list_datasets(available_only=True):  # the MNIST extra
    SLOW["data.name"] = "digits"  # the sample quality is then refused (8×8): the test skips


@pytest.mark.slow
def test_slow_fields(tmp_path):
    """train.compile, and [evaluate]'s ODE figure, its margin and the sample quality on a vdm
    (the fields :data:`RECORDED_ONLY` leaves to this test). Runs with LATENTKIT_SLOW_BUDGET."""
    if not float(os.environ.get("LATENTKIT_SLOW_BUDGET", "0") or 0):
        pytest.skip("slow fields: set LATENTKIT_SLOW_BUDGET=SECONDS to run them")
    if SLOW["data.name"] != "mnist-sample":
        pytest.skip("the sample quality needs 28×28 digits (the embedded MNIST sample)")
    settings = {**PER_MODEL["vdm"], **SLOW}
    o = train("vdm", settings, "config", tmp_path, "--report")
    assert_applied(o, settings, "slow")
    assert type(o.trainer.loss.module).__name__ == "OptimizedModule"
    report = o.report
    assert report["evaluation"]["ode"]["num_examples"] == 2
    assert report["evaluation"]["ode"]["margin_bits_per_dim"] == 0.5
    assert report["sample_quality"]["n_samples"] == 16


# -- (b) the refusals: one line, before anything is written ----------------------------------

BETA_VAE = ["--model", "beta-vae", "--data", "digits", "--limit", "64", "--batch-size", "16",
            "--no-progress", "--set", "hidden=[16]", "--set", "latent_dim=2"]  # fmt: skip


@pytest.fixture(scope="module")
def beta_run(tmp_path_factory) -> Path:
    """A finished 2-step β-VAE run (β = 4, its default, recorded on both sides)."""
    run = tmp_path_factory.mktemp("beta") / "run"
    code, _, err = run_cli(["train", *BETA_VAE, "--steps", "2", "--run-dir", str(run)])
    assert code == 0, err
    return run


def refused(argv: list[str], run: Path) -> str:
    """``train argv`` on the run folder ``run``: refused with one line, the folder as it was."""
    before = digest(run)
    code, _, err = run_cli(["train", *argv, "--run-dir", str(run)])
    assert code != 0 and digest(run) == before, err
    return error_line(err)


def test_beta_given_twice_is_refused(beta_run, tmp_path):
    """The β-VAE's β is its objective's: the model's beta and objective.beta may not
    disagree (the run's config.toml records both), whichever way they are given."""
    config = str(beta_run / "config.toml")
    line = refused(["--config", config, "--set", "beta=8", "--overwrite"], beta_run)
    assert "objective.beta = 4.0" in line and "model field beta" in line and "8" in line
    line = refused([*BETA_VAE, "--set", "objective.beta=2", "--overwrite"], beta_run)
    assert "objective.beta = 2" in line and "model field beta" in line and "4.0" in line
    run = tmp_path / "agreed"  # both given, equal: trained with that β, recorded so
    argv = ["--config", config, "--set", "beta=8", "--set", "objective.beta=8"]
    code, _, err = run_cli(["train", *argv, "--run-dir", str(run)])
    assert code == 0, err
    info = read_checkpoint(latest_checkpoint(run))[1]
    assert info["model_config"]["beta"] == info["objective"]["config"]["beta"] == 8


def test_select_k_without_validation_is_refused(beta_run):
    line = refused([*BETA_VAE, "--set", "train.select_k=5", "--overwrite"], beta_run)
    assert "train.select_k = 5" in line and "data.validation = 0" in line


@pytest.mark.parametrize(
    ("setting", "words"),
    [
        (["--set", "train.eval_estimator=enumerated"], "train.eval_estimator: "),
        (["--report", "--set", "evaluate.estimator=bogus"], "evaluate.estimator: unknown"),
        (["--set", "evaluate.estimator=layer-batched"], "evaluate.estimator: "),
        (["--set", "evaluate.ode_examples=2"], "evaluate.ode_examples = 2"),
    ],
)
def test_unusable_estimators_are_refused_before_the_old_run_moves(beta_run, setting, words):
    """An evaluation the model cannot do is refused before the first step: with
    ``--overwrite``, the old run stays as it was."""
    line = refused([*BETA_VAE, "--steps", "2", "--overwrite", *setting], beta_run)
    assert words in line


def test_resume_refuses_a_changed_model_field(beta_run):
    """A resumed run keeps its model: a model field given anew is refused with both values."""
    line = refused(["--resume", "--steps", "4", "--set", "beta=8"], beta_run)
    assert "model field beta is 4.0" in line and "given 8" in line
    line = refused(["--resume", "--steps", "4", "--set", "latent_dim=3"], beta_run)
    assert "latent_dim is 2" in line and "given 3" in line


def test_resume_with_another_objective_trains_it(beta_run, tmp_path):
    """``--resume --objective iwae`` trains on with IWAE at its own defaults (the recorded
    elbo options are not handed to it), says that the model's own β-weighted elbo is set
    aside, and records iwae."""
    run = tmp_path / "run"
    shutil.copytree(beta_run, run)
    code, _, err = run_cli(["train", "--resume", "--run-dir", str(run), "--objective", "iwae",
                            "--steps", "3"])  # fmt: skip
    assert code == 0, err
    assert "note: objective 'iwae' is given" in " ".join(err.split())
    toml = tomllib.loads((run / "config.toml").read_text())
    info = read_checkpoint(latest_checkpoint(run))[1]
    assert toml["objective"] == info["objective"]["name"] == "iwae"
    iwae_defaults = {"k": 5, "gradient": "standard"}
    assert toml["objective_config"] == info["objective"]["config"] == iwae_defaults


def test_resume_keeps_the_data_protocol(tmp_path):
    """A run with a validation split, dynamic binarization and 10 labels per class kept, each
    3 times (m2), resumes on the same protocol (its checkpoints record all four), and its
    config.toml says so after the resume."""
    run = tmp_path / "run"
    settings = {**PER_MODEL["m2"], "train.steps": 2, "train.batch_size": 8}
    # 10 of each class labelled: every logged batch holds a labelled example (the train
    # line's bound is taken on those)
    settings |= {"data.validation": 16, "data.binarization": "dynamic", "data.labels": 10}
    settings["model.labelled"] = 300  # the data's labelled rows: 10 × 10 classes × 3 copies
    argv = _argv("m2", settings, "set", tmp_path)
    code, _, err = run_cli(["train", *argv, "--run-dir", str(run)])
    assert code == 0, err
    code, _, err = run_cli(["train", "--resume", "--run-dir", str(run), "--steps", "3"])
    assert code == 0, err
    data = tomllib.loads((run / "config.toml").read_text())["data"]
    recorded = read_checkpoint(latest_checkpoint(run))[1]["data"]
    protocol = {"validation": 16, "binarization": "dynamic", "labels": 10, "repeat_labelled": 3}
    for key, value in protocol.items():
        assert data[key] == recorded[key] == value, key


def test_overwrite_with_a_tracking_logger(beta_run, tmp_path):
    """TensorBoard's files are made at the first record, inside the run folder the new run
    holds: an ``--overwrite`` does not move them aside with the old run's."""
    run = tmp_path / "run"
    shutil.copytree(beta_run, run)
    argv = [*BETA_VAE, "--steps", "2", "--set", "logger=tensorboard", "--run-dir", str(run)]
    for _ in range(2):
        code, _, err = run_cli(["train", *argv, "--overwrite"])
        assert code == 0, err
        assert len(list((run / "tensorboard").iterdir())) == 1
