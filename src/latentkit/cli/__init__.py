"""The ``latentkit`` command: list, train, evaluate, sample, report, compare, verify.

Configuration comes from a TOML file and/or flags, later ones winning::

    model = "vae"              # top level: the model's registry name
    objective = "iwae"         # top level: the training objective (default: the model's own)
    [model_config]             # fields of the model's attrs config class
    latent_dim = 16
    [objective_config]         # fields of the objective's config (docs/objectives.md)
    k = 5
    [train]                    # fields of latentkit.training.TrainConfig
    steps = 3000
    [data]                     # fields of latentkit.cli.tables.DataConfig
    name = "mnist"
    variant = "binarized"
    [evaluate]                 # fields of latentkit.cli.tables.EvalConfig
    iwae_k = 100

``--set field=value`` sets one value: ``latent_dim=16`` (a model field), ``train.lr=3e-4``,
``objective.k=50``, ``data.limit=1000``, ``evaluate.iwae_k=50``. Values are read as TOML
(``hidden=[512,512]``, ``amp=true``), else taken as text (``likelihood=bernoulli``). A bad
field or value is an error that names it. Under
``torchrun --nproc_per_node=N -m latentkit.cli train ...`` the same command trains with
DistributedDataParallel (docs/training.md).

``train`` holds an OS lock on the run folder (``RUN/.latentkit.lock``) while it writes
(``report``, and ``evaluate``/``sample`` whose output lands in a run folder, hold it too), and
checks and builds everything (data, model, trainer) before it touches an existing run;
``--overwrite`` moves the old run aside and deletes it only once the new run has written a
checkpoint (docs/reliability.md, "Hostile runs").

Every refusal — a bad flag, file, field, value, data set or checkpoint, a NaN in training —
is one line on stderr starting ``error:`` and a non-zero exit status (2 for the command line
and configuration, 1 for the rest), never a Python traceback (docs/reliability.md). The
TOML file is parsed with ``tomllib``, never evaluated.
"""

from __future__ import annotations

import re
import sys
import warnings
from collections.abc import Sequence

from rich.console import Console

from latentkit.cli.common import CLIError, _say_error, _say_interrupted, parse_value
from latentkit.cli.data import load_data, training_splits
from latentkit.cli.parser import build_parser
from latentkit.cli.runfolder import LOCK_NAME, REPLACED_PREFIX, RUN_FILES
from latentkit.errors import ConfigError, LatentkitError

__all__ = [
    "LOCK_NAME",
    "REPLACED_PREFIX",
    "RUN_FILES",
    "CLIError",
    "build_parser",
    "load_data",
    "main",
    "parse_value",
    "training_splits",
]


_ALLOCATION = re.compile(r"tried to allocate (\d+) bytes")


def _out_of_memory_words(exc: RuntimeError) -> str | None:
    """What a torch allocator's failure (a RuntimeError, on the CPU; ``OutOfMemoryError`` on
    CUDA) says, in a few words; ``None`` for any other RuntimeError."""
    import torch

    text = str(exc)
    if isinstance(exc, torch.OutOfMemoryError):
        return "the device has no room for an allocation"
    if "DefaultCPUAllocator" not in text or "can't allocate memory" not in text:
        return None
    size = _ALLOCATION.search(text)
    return (
        f"an allocation of {int(size.group(1)):,} bytes failed" if size else "an allocation failed"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``latentkit`` console script; returns the exit status (130 after
    Ctrl-C, with one line on stderr: docs/reliability.md, "Ctrl-C")."""
    try:
        with warnings.catch_warnings():  # restored on return: main() may run in a process
            warnings.showwarning = _warning_line
            return _main(argv)
    except KeyboardInterrupt:
        return _say_interrupted(argv)


def _warning_line(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning as one ``warning: …`` line on stderr (not Python's file:line and source)."""
    text = " ".join(str(message).split())
    print(f"warning: {text}", file=sys.stderr if file is None else file)


def _main(argv: Sequence[str] | None) -> int:
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
    except RuntimeError as exc:  # torch's allocators: the same, one line; anything else is a bug
        words = _out_of_memory_words(exc)
        if words is None:
            raise
        _say_error(
            err, MemoryError(f"out of memory: {words} (use a smaller model, batch or count)")
        )
        return 1
    finally:
        from latentkit.training import shutdown_distributed

        shutdown_distributed()


if __name__ == "__main__":
    sys.exit(main())
