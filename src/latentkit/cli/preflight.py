"""What ``train`` checks once everything is built and before anything is written: settings
that say the same thing twice, settings a resumed run cannot apply, a setting that needs
another, and every evaluation the run will do (the periodic one, ``--report``'s).

The rules (docs/training.md, "Settings that name the same thing"):

* the model's own objective (``model.objective_choice``: a β-VAE's ``elbo`` with its
  ``beta``, a DDPM's with its ``timestep_sampler`` as ``layer_sampler``) and
  ``[objective_config]`` / ``objective.FIELD`` may both set an option of that objective;
  where they disagree the run is refused, naming both;
* another objective given by name (``--objective``, ``objective = ...``) replaces the
  model's own; when the model's own is anything but the plain ``elbo``, a note says which
  objective is set aside;
* a resumed run keeps its model: a model (or prior) field given with another value than the
  checkpoint's is refused, naming the field and both values;
* ``train.select_k`` picks the best checkpoint on the validation split: refused without one.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from latentkit.cli.common import _check_rows
from latentkit.cli.runconfig import COMPOSED
from latentkit.errors import ConfigError, LatentkitError

__all__ = [
    "check_evaluations",
    "check_objective_settings",
    "refuse_changed_model",
    "refuse_select_k_alone",
]


def _plain(value: Any) -> Any:
    """A value as TOML and the checkpoints write it: tuples as lists, throughout."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _same(a: Any, b: Any) -> bool:
    return _plain(a) == _plain(b)


def refuse_changed_model(
    model_config: Mapping[str, Any],
    prior_config: Mapping[str, Any],
    info: Mapping[str, Any],
    checkpoint: Path,
) -> None:
    """``--resume`` keeps the checkpoint's model: a field of the model (or of its prior)
    that the run's tables, merged (the record under what was given now), hold with another
    value than the checkpoint's record is refused in one line."""
    recorded = info["model_config"]
    if info.get("model") == COMPOSED and isinstance(recorded.get("outer_config"), Mapping):
        _refuse_changed(prior_config, recorded.get("prior_config") or {}, checkpoint, "prior")
        recorded = recorded["outer_config"]
    _refuse_changed(model_config, recorded, checkpoint, "model")


def _refuse_changed(
    given: Mapping[str, Any], recorded: Mapping[str, Any], checkpoint: Path, what: str
) -> None:
    for field, value in given.items():
        if field in recorded and not _same(value, recorded[field]):
            raise ConfigError(
                f"--resume: {what} field {field} is {recorded[field]!r} in {checkpoint}, "
                f"given {value!r}; a resumed run keeps its {what} (train a new run for another "
                "one; the objective may change: --objective, objective.FIELD)"
            )


def refuse_select_k_alone(select_k: int, validation: int) -> None:
    """``train.select_k`` chooses the best checkpoint on the validation split: without one
    (``data.validation`` = 0) it would do nothing, so it is refused."""
    if select_k and not validation:
        raise ConfigError(
            f"train.select_k = {select_k} picks the best checkpoint on the validation split, "
            "but data.validation = 0 holds none out: set data.validation = N (examples held "
            "out of training), or leave train.select_k at 0"
        )


def _model_field(model: Any, option: str) -> str:
    """How the refusal names the model's side of an option: its config field of that name."""
    fields = getattr(getattr(model, "config", None), "__attrs_attrs__", ())
    if any(f.name == option for f in fields):
        return f"model field {option} (--set {option}=…)"
    return f"model {getattr(model, 'name', '')!r}'s config"


def check_objective_settings(
    objective: str | None, objective_config: Mapping[str, Any], model: Any
) -> str | None:
    """Refuse an option that the model's own objective takes from the model's config and
    ``objective_config`` gives with another value; return a note (None: none) when another
    objective is named and the model's own is anything but the plain ``elbo``."""
    from latentkit.config import unstructure_config
    from latentkit.registry import get_objective_spec

    own, declared = model.objective_choice
    name = getattr(model, "name", None) or "the model"
    if objective is None or objective == own:
        for option, value in declared.items():
            if option in objective_config and not _same(objective_config[option], value):
                raise ConfigError(
                    f"objective.{option} = {objective_config[option]!r} and "
                    f"{_model_field(model, option)} = {value!r} set the same option of "
                    f"{name}'s objective {own!r}: give it once, or the same value to both "
                    "(docs/training.md)"
                )
        return None
    defaults = unstructure_config(get_objective_spec(own).config_class())
    if own == "elbo" and all(_same(defaults.get(k, ...), v) for k, v in declared.items()):
        return None
    options = ", ".join(f"{k}={v}" for k, v in declared.items())
    return (
        f"note: objective {objective!r} is given, so {name}'s own objective {own}({options}) "
        "is not trained (its options in the model's config have no effect)"
    )


def check_evaluations(model: Any, trainer: Any, options: Mapping[str, Any]) -> None:
    """Every evaluation the run will do, tried on one example before the first step: the
    periodic one's estimator and selection bound (``[train]``), and the ``[evaluate]``
    table's estimator, IWAE and ODE figures (``--report``, and ``report`` and ``evaluate``
    later, read them from the run's record). The example is the first of step 0's batch
    (never a held-out one); the tries run without gradients, in eval mode and on a forked
    random stream, so training starts as it would have."""
    from latentkit.composition import evaluation_model
    from latentkit.evaluation import default_iwae_k

    _check_rows(dict(options), None)
    x = trainer.batch(0)[:1]
    evaluator = trainer.evaluator
    if evaluator.data is not None:
        _try(model, "train.eval_estimator", "elbo", x, estimator=evaluator.estimator)
        if evaluator.split == "validation" and evaluator.selection_k > 1:
            _try(model, "train.select_k", "iwae", x, k=2)
    scored = evaluation_model(model)
    _try(scored, "evaluate.estimator", "elbo", x, estimator=str(options.get("estimator", "auto")))
    k = options.get("iwae_k")
    if (default_iwae_k(scored) if k is None else k) > 0:
        _try(scored, "evaluate.iwae_k", "iwae", x, k=2)
    if options.get("ode_examples"):
        from latentkit.ode import probability_flow_contract

        reason = probability_flow_contract(scored)
        if reason is not None:
            raise ConfigError(f"evaluate.ode_examples = {options['ode_examples']}: {reason}")


def _try(model: Any, setting: str, bound: str, x: Any, **how: Any) -> None:
    """``bound`` (``elbo`` or ``iwae``) of ``x`` as ``setting`` asks for it, or its refusal
    as a ConfigError naming the setting."""
    import torch

    from latentkit.bounds import elbo, iwae

    view = model if model.condition_spec is None else model.given(0)  # a class's member
    devices = [x.device] if x.device.type == "cuda" else []
    was_training = model.training
    try:
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            model.eval()
            if bound == "elbo":
                elbo(view, x, validate=False, **how)
            else:
                iwae(view, x, how["k"], validate=False)
    except LatentkitError as exc:
        raise ConfigError(f"{setting}: {exc}") from None
    finally:
        model.train(was_training)
