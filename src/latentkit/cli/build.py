"""What ``train`` builds before it touches the run folder: the data, the model (its memory
checked first, its data-decided fields filled in) and the trainer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from latentkit.checkpoint import memory_bytes
from latentkit.cli.common import CLIError, _bytes
from latentkit.cli.data import load_data, training_splits
from latentkit.cli.runconfig import RunSpec
from latentkit.composition.objective import refuse_a_long_joined_chain
from latentkit.errors import ConfigError, LatentkitError
from latentkit.registry import get_model_spec, load_model

__all__ = ["build_run", "fill_data_fields"]


def build_run(
    spec: RunSpec, train_cfg: Any, fields: list[str], run_dir: Path, err: Console
) -> tuple[Any, Any, Any]:
    """The data, the model (its memory checked first) and the trainer (every example
    checked), before anything is printed: bad data is one line."""
    from latentkit.training import Trainer, seed_everything

    model_spec = get_model_spec(spec.model)
    # the data's variant fits the model that reads x: with --prior, the outer one
    reader, reader_config = spec.model, spec.model_config
    if spec.prior is not None:
        reader, reader_config = spec.model_config["outer"], spec.model_config["outer_config"]
    ds, data_info = load_data(
        spec.data,
        model_name=reader,
        model_fields=["likelihood"] if "likelihood" in get_model_spec(reader).data_fields() else [],
        err=err,
        model_config=reader_config,
    )
    model_values = fill_data_fields(model_spec, spec.model_config, ds)
    seed_everything(train_cfg.seed)
    _check_model_memory(spec.model, model_values)
    model = load_model(spec.model, **model_values)
    if "data_shape" not in model_spec.data_fields():
        _check_fixed_shape(spec.model, tuple(model.data_shape), ds)
    splits = training_splits(ds, spec.data, condition=model.condition_spec)
    labelled = _labelled_value(spec, model_spec, splits.get("train_labels"))
    if labelled is not None and labelled[1] != model_values.get(labelled[0]):
        model_values[labelled[0]] = labelled[1]  # the data's count: rebuilt, seeded alike
        seed_everything(train_cfg.seed)
        model = load_model(spec.model, **model_values)
    objective_name = spec.objective
    objective_config = dict(spec.objective_config)
    if objective_name is None:  # the model's own objective, with any objective.FIELD given
        objective_name, declared = model.objective_choice
        objective_config = {**declared, **objective_config}
    refuse_a_long_joined_chain(model, objective_name)
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
    return ds, model, trainer


def _labelled_value(spec: RunSpec, model_spec: Any, labels: Any) -> tuple[str, int] | None:
    """(FIELD, the number of labelled training examples) for a model whose spec declares a
    ``labelled_field``; a ConfigError when the run gives that field another value."""
    field = model_spec.data_fields().get("labelled")
    if field is None or labels is None:
        return None
    count = int((labels >= 0).sum())
    given = spec.model_config.get(field)
    if given is not None and given != count:
        raise ConfigError(
            f"model.{field}={given!r}, but the training data have {count} labelled examples "
            f"([data] labels={spec.data.get('labels', 'all')!r}, repeat_labelled="
            f"{spec.data.get('repeat_labelled', 1)!r}); leave model.{field} unset "
            "(filled in from the data) or give the data's count"
        )
    return field, count


def _check_fixed_shape(name: str, shape: tuple[int, ...], ds: Any) -> None:
    """A model whose config has no field for the data's shape (``ModelSpec.data_shape_field``)
    trains only on data of its own shape: say so, and how, rather than a bare shape error."""
    if tuple(ds.data_shape) == shape:
        return
    raise CLIError(
        f"model {name!r} takes examples of shape {list(shape)} (set by its own config, not by "
        f"the data: its plugin declares no data_shape_field), but {ds.name} has "
        f"{list(ds.data_shape)}; give data of that shape (--data file:PATH holding an "
        f"[N, {', '.join(map(str, shape))}] array) or change the model's config"
    )


def fill_data_fields(model_spec: Any, values: dict[str, Any], ds: Any) -> dict[str, Any]:
    """The model's config values with what the data decide filled in, as its spec declares
    (``ModelSpec.data_shape_field``, ``ModelSpec.likelihood_field``): the shape of one
    example, and the likelihood the data's variant fits, unless given."""
    values = dict(values)
    fields = model_spec.data_fields()
    if "data_shape" in fields:
        values.setdefault(fields["data_shape"], list(ds.data_shape))
    if "likelihood" in fields:
        values.setdefault(fields["likelihood"], ds.likelihood)
    return values


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
