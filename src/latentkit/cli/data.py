"""Which data a command loads, and the training protocol's splits of it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel

from latentkit.cli.common import DEFAULT_DATA, CLIError
from latentkit.cli.runconfig import _check_options
from latentkit.errors import ConfigError, LatentkitError
from latentkit.registry import (
    load_model,
)

__all__ = ["load_data", "training_splits"]


def _likelihood_variant(
    model_name: str, data_shape: tuple[int, ...], model_config: dict[str, Any] | None = None
) -> str:
    """The data variant that fits the model's p(x|z_1) under the config values given (a
    diffusion's ``levels``, say), probed, not looked up by name."""
    from torch.distributions import Bernoulli

    from latentkit.distributions import DiscretizedNormal
    from latentkit.evaluation import likelihood_family
    from latentkit.registry import get_model_spec

    try:
        field = get_model_spec(model_name).data_fields().get("data_shape")
        values = {field: data_shape} if field else {}
        d = likelihood_family(load_model(model_name, **{**values, **(model_config or {})}))
    except Exception:  # a plugin that cannot build at this shape: let training say why
        return "unit"
    if isinstance(d, Bernoulli):
        return "binarized"
    if isinstance(d, DiscretizedNormal):  # a K-level decoder: binary at levels=2, else 8-bit
        return "binarized" if d.binary else "8bit"
    return "unit"


def load_data(
    data: dict[str, Any],
    *,
    model_name: str,
    model_fields: Sequence[str],
    err: Console,
    model_config: dict[str, Any] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Load the data set ``data`` asks for; returns ``(dataset, what was loaded)``.

    With no name given, MNIST is tried, then the MNIST sample, then digits — each fallback
    announced. With no variant given: ``binarized`` when the model's config has a
    ``likelihood`` field (it is then set to match), else what its likelihood fits under the
    ``model_config`` values given (a diffusion with ``levels = 2``: binarized).
    The binarization seed is ``data.seed`` (default 0), not the training seed, so runs with
    different training seeds are scored on the same binarized test set.
    """
    _check_options(data, "[data]")
    name, variant = data.get("name"), data.get("variant")
    seed, limit = int(data.get("seed", 0)), data.get("limit")

    def variant_for(candidate: str) -> str:
        probe_shape = (1, 28, 28) if candidate != "digits" else (1, 8, 8)
        return variant or (
            "binarized"
            if "likelihood" in model_fields
            else _likelihood_variant(model_name, probe_shape, model_config)
        )

    candidates = [name] if name else [DEFAULT_DATA, "mnist-sample", "digits"]
    ds, failures = _first_loadable(
        candidates, variant_for, seed=seed, limit=limit, named=bool(name)
    )
    if failures:
        _announce_fallback(ds, failures, err)
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


def _first_loadable(
    candidates: Sequence[str],
    variant_for: Any,
    *,
    seed: int,
    limit: int | None,
    named: bool,
) -> tuple[Any, list[str]]:
    """The first data set of ``candidates`` that loads, and why each before it did not; a
    set asked for by name (``named``) has no substitute: its failure is the error."""
    from latentkit.data import load_dataset

    failures: list[str] = []
    for candidate in candidates:
        variant = variant_for(candidate)
        try:
            ds = load_dataset(candidate, variant=variant, seed=seed, limit=limit)
        except LatentkitError as exc:
            if named:
                raise
            failures.append(f"{candidate}: {exc}")
            continue
        return ds, failures
    raise CLIError("no data set could be loaded: " + "; ".join(failures))


def _announce_fallback(ds: Any, failures: list[str], err: Console) -> None:
    """The yellow panel saying MNIST is not installed and what is trained on instead."""
    err.print(
        Panel(
            escape("\n".join(failures))
            + f"\n\n[bold]Training on {ds.name!r} instead[/] ({escape(ds.description)}).\n"
            + escape("For the full MNIST: pip install 'latentkit[mnist]'"),
            title="[bold yellow]MNIST is not installed",
            border_style="yellow",
        )
    )


def training_splits(ds: Any, data: dict[str, Any], *, condition: Any = None) -> dict[str, Any]:
    """What the trainer gets from a data set under ``[data]``'s protocol keys.

    ``condition`` (the model's ``ConditionSpec``, for a conditional model): each split's
    labels too; ``labels = N`` keeps N training labels per class, the rest unlabelled.

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
    splits = {
        "train_data": train,
        "validation_data": validation,
        "test_data": None if validation is not None else ds.test,
        "dynamic_binarization": dynamic,
    }
    if condition is not None:
        splits |= _label_splits(ds, data, condition, held_out)
        return _repeat_labelled(splits, int(data.get("repeat_labelled", 1)), data)
    for key, unset in (("labels", "all"), ("repeat_labelled", 1)):
        if data.get(key, unset) != unset:
            raise ConfigError(f"[data] {key} is for a conditional model; this one takes no labels")
    return splits


MAX_REPEAT_BYTES = 4 * 2**30
"""The most memory ``[data] repeat_labelled``'s copies may take (4 GiB): beyond, refused in
one line rather than left to exhaust the machine's memory."""


def _repeat_labelled(splits: dict[str, Any], r: int, data: dict[str, Any]) -> dict[str, Any]:
    """The training split with each labelled example ``r`` times (``[data]
    repeat_labelled``): the copies appended after the originals, labels and images alike."""
    if r == 1:
        return splits
    if data.get("labels", "all") == "all":
        raise ConfigError(
            f"[data] repeat_labelled={r} repeats the labelled examples among unlabelled ones; "
            "with labels = 'all' every example is labelled (set labels = N, N per class)"
        )
    import torch

    x, y = splits["train_data"], splits["train_labels"]
    known = y >= 0
    extra = (r - 1) * int(known.sum()) * x[:1].nelement() * x.element_size()
    if extra > MAX_REPEAT_BYTES:
        raise ConfigError(
            f"[data] repeat_labelled={r} would add {(r - 1) * int(known.sum()):,} rows "
            f"({extra / 2**30:.1f} GiB) to the training set; at most "
            f"{MAX_REPEAT_BYTES / 2**30:.0f} GiB of copies (use a smaller R)"
        )
    copies = (r - 1,) + (1,) * (x.ndim - 1)
    return splits | {
        "train_data": torch.cat([x, x[known].repeat(*copies)]),
        "train_labels": torch.cat([y, y[known].repeat(r - 1)]),
    }


def _label_splits(ds: Any, data: dict[str, Any], condition: Any, held_out: int) -> dict:
    """The labels of each split, for a model conditioned on ``condition``."""
    from latentkit.data import keep_labels, split_validation

    if not condition.is_class:
        raise ConfigError("the CLI feeds class labels; this model takes vector conditions")
    if ds.train_labels is None or ds.test_labels is None:
        raise ConfigError(f"the model is conditional, but data set {ds.name!r} has no labels")
    train, test, validation = ds.train_labels, ds.test_labels, None
    if held_out:
        train, validation = split_validation(train, held_out)
    k = int(condition.num_classes)
    for split, labels in (("train", train), ("test", test), ("validation", validation)):
        if labels is not None and labels.numel() and int(labels.max()) >= k:
            raise ConfigError(
                f"the {split} labels go up to {int(labels.max())}; the model has {k} classes "
                "(set its classes field to at least the data's label count)"
            )
    per_class = data.get("labels", "all")
    if per_class != "all":
        train = keep_labels(train, int(per_class), seed=int(data.get("seed", 0)))
    absent = sorted(set(range(k)) - set(train[train >= 0].unique().tolist()))
    if absent:
        raise ConfigError(
            f"classes {absent} have no labelled training example (of {k}); use more data "
            "(--limit) or fewer classes"
        )
    return {
        "train_labels": train,
        "test_labels": None if validation is not None else test,
        "validation_labels": validation,
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
