"""What the bad-input tables of tests/test_public_callables.py are made of: one hostile call
(:class:`Bad`) and the small objects the calls are made on (:class:`Kit`, built lazily, once
per session)."""

from __future__ import annotations

import functools
import importlib
import inspect
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import latentkit as lk

HUGE = 2**70
"""An int beyond every count, seed and size (it overflows int64)."""
NAN, INF = float("nan"), float("inf")


@dataclass(frozen=True)
class Bad:
    """One hostile call: ``call(kit)`` must raise ``error`` (a :class:`lk.LatentkitError`)
    whose message is one line holding every word of ``words`` (the argument's name at
    least). ``what``: the class of hostile input (wrong type, huge int, NaN, ...).
    ``gap``: set while the callable does not refuse this input yet — the file that must
    check it (the case then runs as a strict expected failure, and is reported)."""

    what: str
    call: Callable[[Kit], Any]
    error: type[lk.LatentkitError]
    words: tuple[str, ...] = ()
    gap: str = ""


def bad(
    what: str,
    call: Callable[[Kit], Any],
    error: type[lk.LatentkitError],
    *words: str,
    gap: str = "",
) -> Bad:
    return Bad(what, call, error, words, gap)


class Kit:
    """Valid arguments to combine with one hostile one: small models, batches, folders."""

    @functools.cached_property
    def tmp(self) -> Path:
        return Path(tempfile.mkdtemp(prefix="latentkit-bad-calls-"))

    @functools.cached_property
    def file(self) -> Path:
        """A file, where a folder is wanted."""
        path = self.tmp / "a-file.txt"
        path.write_text("not a folder\n")
        return path

    @functools.cached_property
    def vae(self) -> lk.LatentModel:
        torch.manual_seed(0)
        return lk.load_model("vae", data_shape=(4,), latent_dim=2, architecture="linear")

    @functools.cached_property
    def x(self) -> torch.Tensor:
        return torch.zeros(2, 4)

    @functools.cached_property
    def hvae(self) -> lk.LatentModel:
        torch.manual_seed(0)
        return lk.load_model("hvae", data_shape=(4,), latent_dims=(3, 2), hidden=(8,))

    @functools.cached_property
    def vdm(self) -> lk.LatentModel:
        torch.manual_seed(0)
        return lk.load_model("vdm", data_shape=(2,), hidden=(8,), decoder="gaussian")

    @functools.cached_property
    def x_vdm(self) -> torch.Tensor:
        return torch.zeros(3, 2)

    @functools.cached_property
    def q(self) -> torch.distributions.Distribution:
        return lk.distributions.diag_normal(torch.zeros(2, 3), torch.ones(2, 3))

    @functools.cached_property
    def diagnostics(self) -> lk.Diagnostics:
        return lk.diagnose(self.vae, torch.randn(6, 4, generator=torch.Generator().manual_seed(0)))

    @functools.cached_property
    def metrics(self) -> list[dict[str, Any]]:
        return [{"step": 1, "loss": 1.0}, {"step": 2, "loss": 0.5}]


def one_line(exc: BaseException) -> str:
    msg = str(exc)
    assert msg.strip(), f"{type(exc).__name__} with an empty message"
    assert "\n" not in msg, msg
    return msg


def exported_callables(module_name: str):
    """(dotted name, object) of every callable in ``module_name``'s ``__all__``, less
    modules and exception classes: what the hostile-call tables must cover."""
    module = importlib.import_module(module_name)
    for name in module.__all__:
        obj = getattr(module, name)
        if inspect.ismodule(obj) or not callable(obj):
            continue
        if inspect.isclass(obj) and issubclass(obj, BaseException):
            continue
        yield f"{module_name}.{name}", obj
