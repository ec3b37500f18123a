"""A trained model back from its checkpoint: rebuilt by name through the registry, then
loaded with the checkpoint's (checked) weights — the raw ones, or their average."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from latentkit.arguments import checked
from latentkit.chains import LatentModel
from latentkit.checkpoint import (
    CheckpointError,
    _one_line,
    check_weights,
    read_checkpoint,
    resolve_checkpoint,
    subset,
)
from latentkit.errors import LatentkitError
from latentkit.registry import load_model
from latentkit.training.averaging import EMA
from latentkit.training.runtime import resolve_device

__all__ = ["load_trained_model"]


@checked
def load_trained_model(
    path: str | os.PathLike, *, device: str | torch.device = "cpu", averaged: bool = True
) -> tuple[LatentModel, dict[str, Any]]:
    """Rebuild the model a checkpoint names (``load_model(name, **config)``) with its weights.

    ``path``: a run folder (its newest checkpoint), a checkpoint's JSON or tensor file.
    ``averaged``: when the run kept a weight average (``train.ema_decay`` > 0), load the
    averaged weights (the default: what evaluation and sampling use), else the raw ones.
    Returns ``(model, info)``, the model in eval mode on ``device``; ``info`` is the JSON,
    with ``info["weights"]`` saying which were loaded (``"ema"`` or ``"raw"``). ``device``
    (``cpu``, ``cuda``, ``cuda:N``, ``auto``) is checked before the checkpoint is read.
    """
    device = resolve_device(str(device))
    tensors, info = read_checkpoint(path)
    where = resolve_checkpoint(path)
    name, config = info.get("model"), info.get("model_config")
    if not name or config is None:
        raise CheckpointError(
            f"{where} does not name its model (written for a model built "
            "without latentkit.load_model); rebuild the model yourself and load the weights "
            "with Trainer.resume"
        )
    if not isinstance(name, str) or not isinstance(config, dict):
        raise CheckpointError(
            f"{where}: 'model' must be a name and 'model_config' an object, got "
            f"{type(name).__name__} and {type(config).__name__}"
        )
    weights = subset(tensors, "model")
    average = subset(tensors, "ema")
    average.pop(EMA.NUM_UPDATES_KEY, None)
    info = dict(info, weights="raw")
    if averaged and average:  # parameters averaged, buffers copied; anything else as trained
        # The average also copies non-persistent buffers (a DDPM's schedule tables), which
        # are not part of a state dict: only the names the raw weights carry are taken.
        weights = {**weights, **{k: v for k, v in average.items() if k in weights}}
        info["weights"] = "ema"
    # Built on the meta device first: a config edited to ask for a huge network costs no
    # memory, and is refused below because its shapes differ from the stored weights.
    try:
        with torch.device("meta"):
            skeleton = _build(name, config, where)
    except CheckpointError:
        raise
    except Exception:  # a model that computes values as it builds (a DDPM's schedule)
        skeleton = None
    if skeleton is not None:
        check_weights(skeleton, weights, where=f"{where} (model {name!r})")
    model = _build(name, config, where)
    check_weights(model, weights, where=f"{where} (model {name!r})")
    model.load_state_dict(weights)
    return model.to(device).eval(), info


def _build(name: str, config: dict[str, Any], where: Path) -> LatentModel:
    try:
        return load_model(name, **config)
    except LatentkitError as exc:  # unknown model, or values its validators refuse
        raise CheckpointError(f"{where}: cannot rebuild its model: {_one_line(exc)}") from None
    except TypeError as exc:  # e.g. a config key that clashes with load_model's arguments
        raise CheckpointError(f"{where}: malformed model_config: {_one_line(exc)}") from None
