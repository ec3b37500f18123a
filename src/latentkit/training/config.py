"""The training configuration: one attrs class, validated field by field.

The validators raise :class:`~latentkit.errors.ConfigError` naming the field, the rule and
the value, whether the config is built directly or structured from TOML
(``latentkit.structure_config``). ``latentkit train --help`` lists these fields with their
types, defaults and ranges, read from the classes (``latentkit.config.describe_fields``).
A field marked ``metadata=shortcut()`` is also a flag of the command (``--steps``), generated
from the field by :mod:`latentkit.cli.flags`: one declaration is the TOML key, the ``--set``
name, the flag and its ``--help`` line.
"""

from __future__ import annotations

from typing import Any

import attrs
import torch

from latentkit.config import one_of as _one_of
from latentkit.config import ruled
from latentkit.errors import ConfigError
from latentkit.estimators import ESTIMATORS
from latentkit.training.lr_schedules import LR_KINDS

__all__ = [
    "EXACT_RESUME_FIELDS",
    "LOGGERS",
    "ON_NONFINITE",
    "SHORTCUT",
    "Shortcut",
    "TrainConfig",
    "shortcut",
]

LOGGERS = ("jsonl", "tensorboard", "mlflow")
"""Where metrics go besides ``metrics.jsonl`` (always written: ``report`` and resume read it):
``jsonl`` alone, or also TensorBoard event files or an MLflow file store in the run folder."""

ON_NONFINITE = ("stop", "skip")
"""What a step with a NaN/inf loss or gradient does: stop the run, or skip the update."""

SHORTCUT = "latentkit.shortcut"
"""The key of a field's :class:`Shortcut` in its attrs ``metadata``."""


@attrs.frozen
class Shortcut:
    """A config field's command-line flag: ``latentkit train --steps N`` sets ``train.steps``.

    Everything else about the flag is read from the field: its type (an int, a number, text,
    or a switch for a boolean), the values it takes (its validator, run on the flag's value;
    a :func:`~latentkit.config.one_of` field's choices), its default and its description
    (the class docstring's ``Attributes:`` entry).

    Attributes:
        flag: the flag without its dashes (default: the field's name with ``-`` for ``_``;
            ``no-`` before it for a boolean whose default is true, which the flag turns off).
        help: the flag's ``--help`` line where it is not the field's description followed
            by its default; ``{default}`` in it is replaced by the default.
        metavar: the value's name in the usage line (default: the flag's, in capitals).
        commands: the commands that take the flag (default: every command reading the table).
    """

    flag: str = ""
    help: str = ""
    metavar: str = ""
    commands: tuple[str, ...] = ()


def shortcut(
    flag: str = "", *, help: str = "", metavar: str = "", commands: tuple[str, ...] = ()
) -> dict[str, Shortcut]:
    """A field's ``metadata`` giving it a flag: ``attrs.field(..., metadata=shortcut())``."""
    return {SHORTCUT: Shortcut(flag=flag, help=help, metavar=metavar, commands=commands)}


# The validators raise ConfigError (a ValueError) naming the field, the rule and the value,
# whether the config is built directly or structured from TOML (latentkit.structure_config).


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


MAX_COUNT = 10**9
"""The largest step count, batch size or interval a :class:`TrainConfig` accepts: 10^9 steps
of a tiny model take weeks, and larger values only ever come from a typo."""
MAX_SEED = 2**32 - 1
"""The largest seed: the trainer derives further seeds as ``seed + c·step``, all of which
must stay below torch's 2^64 limit."""
MAX_SELECT_K = 10**6
"""The most importance samples of the validation bound (``select_k``), as ``--iwae-k``."""
MAX_FLOAT = float(torch.finfo(torch.float32).max)
"""Rates and norms are used in float32 arithmetic: beyond this they are inf there."""


def _choice(*choices: str) -> Any:
    """:func:`~latentkit.config.one_of`, its choices kept on it for a flag's ``choices``."""
    check = _one_of(*choices)
    check.choices = choices
    return check


def _int_in(low: int, high: int) -> Any:
    @ruled(f"int in [{low}, {high:,}]")
    def check(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        if not _is_int(value) or not low <= value <= high:
            raise ConfigError(
                f"{attribute.name!r} must be an int ≥ {low} and at most {high:,}, got {value!r}"
            )

    return check


_nonneg_int = _int_in(0, MAX_COUNT)
_pos_int = _int_in(1, MAX_COUNT)


@ruled("> 0")
def _pos_float(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= MAX_FLOAT:
        raise ConfigError(
            f"{attribute.name!r} must be a number > 0 and at most float32's largest, "
            f"{MAX_FLOAT:.4g}, got {value!r}"
        )


@ruled("≥ 0")
def _nonneg_float(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not 0 <= value <= MAX_FLOAT
    ):
        raise ConfigError(
            f"{attribute.name!r} must be a number ≥ 0 and at most float32's largest, "
            f"{MAX_FLOAT:.4g}, got {value!r}"
        )


@ruled("in [0, 1]")
def _unit_float(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ConfigError(f"{attribute.name!r} must be a number in [0, 1], got {value!r}")


@ruled("in [0, 1)")
def _decay(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ConfigError(f"{attribute.name!r} must be a number in [0, 1), got {value!r}")


@ruled("true or false")
def _boolean(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"{attribute.name!r} must be true or false, got {value!r}")


@ruled("text")
def _text(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not isinstance(value, str):
        raise ConfigError(f"{attribute.name!r} must be a string, got {value!r}")


@attrs.frozen(kw_only=True)
class TrainConfig:
    """How to train (the model's own configuration is separate).

    Attributes:
        steps: optimizer steps in all (a resumed run continues up to this number).
        batch_size: examples per step, over all processes (the global batch).
        lr: Adam's base learning rate.
        lr_schedule: how the rate moves with the step
            (``latentkit.training.lr_schedules``): ``constant``,
            ``cosine`` (to ``lr_min_factor`` · lr at the last step) or ``step`` (× ``lr_gamma``
            every ``lr_step_every`` steps); a pure function of the step, so resume is exact.
        lr_warmup_steps: linear warm-up of the rate over this many steps (0: none).
        lr_min_factor: the cosine schedule's floor, a fraction of ``lr``.
        lr_step_every: steps between two decays of the ``step`` schedule.
        lr_gamma: the ``step`` schedule's factor per decay.
        weight_decay: Adam's L2 weight decay (≥ 0).
        grad_clip: clip the gradient's global norm to this (0: no clipping).
        seed: seeds the data order and the model's noise.
        log_every: steps between metric lines (and live-display updates).
        eval_every: steps between test-set ELBO evaluations (0: only at the end).
        eval_examples: test examples in each periodic evaluation (0: all).
        select_k: the bound the validation evaluations keep the best checkpoint by: IWAE
            with this many importance samples (1: the ELBO; 0, the default: the training
            objective's own, k of an ``iwae`` objective, the ELBO for any other). With k > 1
            each validation line also carries ``iwae`` and ``iwae_k``.
        eval_estimator: ELBO estimator for the periodic evaluations; ``auto`` is the one the
            logged training terms use (``single-layer`` for layer-batched chains such as a
            DDPM: unbiased, and one network call per example instead of T).
        checkpoint_every: steps between checkpoints (0: only at the end).
        keep_checkpoints: how many checkpoints to keep (older ones are deleted).
        device: ``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (CUDA when present).
        amp: bf16 autocast on CUDA (ignored, with a warning, on CPU).
        compile: ``torch.compile`` the training objective.
        progress: show a live progress bar (or, off a terminal, periodic lines).
        on_nonfinite: a step whose loss or gradient is NaN/inf ``stop``s the run (the
            default; no checkpoint is written after it) or is ``skip``ped (no update).
        max_skips: with ``skip``, more than this many faulty steps in a row stop the run.
        diagnose_examples: with each periodic evaluation, also measure the latents'
            mutual information, aggregate KL and active units on this many of its examples
            (``latentkit.diagnose``; a ``diagnostics`` line in ``metrics.jsonl``); 0: off.
        ema_decay: keep an exponential moving average of the weights with this decay
            (``latentkit.training.averaging.EMA``; 0: off). When on, the periodic evaluations, the
            best checkpoint, ``evaluate``, ``sample`` and ``report`` use the averaged weights.
        ema_warmup: the average's decay ramps up as min(d, (1 + k)/(10 + k)) at update k.
        logger: where metrics also go (:data:`LOGGERS`): ``jsonl`` (``metrics.jsonl``
            only, always written), ``tensorboard`` (event files in ``RUN/tensorboard``) or
            ``mlflow`` (a local file store in ``RUN/mlruns``; nothing leaves the machine).
    """

    steps: int = attrs.field(default=2000, validator=_pos_int, metadata=shortcut())
    batch_size: int = attrs.field(default=128, validator=_pos_int, metadata=shortcut())
    lr: float = attrs.field(default=1e-3, validator=_pos_float, metadata=shortcut())
    lr_schedule: str = attrs.field(default="constant", validator=_choice(*LR_KINDS))
    lr_warmup_steps: int = attrs.field(default=0, validator=_nonneg_int)
    lr_min_factor: float = attrs.field(default=0.0, validator=_unit_float)
    lr_step_every: int = attrs.field(default=1000, validator=_pos_int)
    lr_gamma: float = attrs.field(default=0.5, validator=_unit_float)
    weight_decay: float = attrs.field(default=0.0, validator=_nonneg_float)
    grad_clip: float = attrs.field(default=0.0, validator=_nonneg_float)
    seed: int = attrs.field(default=0, validator=_int_in(0, MAX_SEED), metadata=shortcut())
    log_every: int = attrs.field(default=25, validator=_pos_int)
    eval_every: int = attrs.field(default=0, validator=_nonneg_int, metadata=shortcut())
    eval_examples: int = attrs.field(default=1000, validator=_nonneg_int)
    eval_estimator: str = attrs.field(default="auto", validator=_choice("auto", *ESTIMATORS))
    select_k: int = attrs.field(default=0, validator=_int_in(0, MAX_SELECT_K))
    checkpoint_every: int = attrs.field(default=500, validator=_nonneg_int, metadata=shortcut())
    keep_checkpoints: int = attrs.field(default=2, validator=_pos_int)
    device: str = attrs.field(
        default="cpu", validator=_text, metadata=shortcut(help="cpu, cuda, cuda:N or auto")
    )
    amp: bool = attrs.field(
        default=False, validator=_boolean, metadata=shortcut(help="bf16 autocast on CUDA")
    )
    compile: bool = attrs.field(
        default=False, validator=_boolean, metadata=shortcut(help="torch.compile the loss")
    )
    progress: bool = attrs.field(
        default=True, validator=_boolean, metadata=shortcut(help="no progress bar")
    )
    on_nonfinite: str = attrs.field(
        default="stop",
        validator=_choice(*ON_NONFINITE),
        metadata=shortcut(
            help="a step with a NaN/inf loss or gradient: stop the run (default) or skip the "
            "update (train.max_skips in a row at most)"
        ),
    )
    max_skips: int = attrs.field(default=10, validator=_pos_int)
    diagnose_examples: int = attrs.field(default=0, validator=_nonneg_int)
    ema_decay: float = attrs.field(default=0.0, validator=_decay)
    ema_warmup: bool = attrs.field(default=False, validator=_boolean)
    logger: str = attrs.field(default="jsonl", validator=_choice(*LOGGERS))


EXACT_RESUME_FIELDS = (
    "batch_size",
    "lr",
    "lr_schedule",
    "lr_warmup_steps",
    "lr_min_factor",
    "lr_step_every",
    "lr_gamma",
    "weight_decay",
    "grad_clip",
    "seed",
    "ema_decay",
    "ema_warmup",
)
"""Fields that must not change on resume for the continuation to be exact."""
