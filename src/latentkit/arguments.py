"""Checks of a public callable's arguments, each a typed latentkit error in one line that
names the argument, the rule and the value given; both layers run once at a public entry
point, before any work:

* **Rules** a type cannot state (:func:`check_count`, :func:`check_seed`, :func:`check_number`,
  :func:`check_choice`, :func:`check_flag`, :func:`check_shape`, :func:`check_path`): ranges,
  finiteness, no bool for an int, bounded counts and seeds, known names, existing paths.
* **Annotations** (:func:`checked`): each argument against its annotation (plain classes
  by one ``isinstance``, generics such as ``Sequence[int]`` by typeguard, every item; no
  bool for ``int``/``float``); a mismatch, an unknown keyword or a missing argument is an
  :class:`~latentkit.errors.InputError` naming the callable and the argument. Its cost is
  measured by ``bench/typecheck_cost.py``; it decorates entry points users call directly,
  never a per-step path (``elbo``, ``iwae``, the estimators, the networks' ``forward``).
"""

from __future__ import annotations

import functools
import inspect
import math
import os
import re
import types
import typing
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from latentkit.chains import LatentModel
from latentkit.errors import InputError

__all__ = [
    "MAX_COUNT",
    "MAX_SEED",
    "check_choice",
    "check_count",
    "check_flag",
    "check_model",
    "check_number",
    "check_path",
    "check_seed",
    "check_shape",
    "checked",
    "describe_value",
]

MAX_COUNT = 10**9
"""The largest count (examples, draws, samples, steps, a batch) an argument may give: beyond
it no run on one machine is meant (10⁹ examples of one float are 4 GB), and a huge int
(2**70) would overflow torch's sizes and seeds. The same bound as ``TrainConfig``'s counts."""

MAX_SEED = 2**32 - 1
"""The largest seed (seeds are ints in [0, 2³² − 1], as ``TrainConfig.seed`` and ``--seed``)."""

F = TypeVar("F", bound=Callable[..., Any])


def describe_value(value: Any) -> str:
    """A value in an error line: a tensor by its dtype, shape and device; else its repr if
    short and on one line; else its type."""
    shape = getattr(value, "shape", None)
    if shape is not None and hasattr(value, "dtype") and hasattr(value, "device"):
        return f"a {value.dtype} tensor of shape {tuple(shape)} on {value.device}"
    try:
        text = repr(value)
    except Exception:  # a repr that fails is no reason to lose the real error
        text = "\n"
    if isinstance(value, bool):
        return f"{text} (a bool)"
    return text if len(text) <= 60 and "\n" not in text else f"a {type(value).__name__}"


def _got(value: Any) -> str:
    """A value of the wrong type in an error line: its type, and its repr if short."""
    shown = describe_value(value)
    if shown.startswith("a "):  # a tensor, or a value too long to show
        return shown
    kind = type(value).__name__
    return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind} ({shown.removesuffix(' (a bool)')})"


def check_count(
    value: Any,
    name: str,
    *,
    low: int = 1,
    high: int = MAX_COUNT,
    error: type[Exception] = InputError,
) -> int:
    """An int in [low, high] (a bool refused: ``True`` is no count), else ``error`` naming it."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise error(f"{name} must be an int ≥ {low}, got {describe_value(value)}")
    if value > high:
        raise error(f"{name} must be an int ≤ {high:,}, got {value:,}")
    return value


def check_seed(value: Any, name: str = "seed", *, error: type[Exception] = InputError) -> int:
    """A seed: an int in [0, :data:`MAX_SEED`] (bools refused), else ``error`` naming it."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
        raise error(f"{name} must be an int in [0, 2**32 - 1], got {describe_value(value)}")
    return value


def check_shape(
    value: Any, name: str, *, min_len: int = 1, error: type[Exception] = InputError
) -> tuple[int, ...]:
    """A shape: a tuple or list of at least ``min_len`` ints in [1, :data:`MAX_COUNT`]
    (bools refused), returned as a tuple; else ``error`` naming it."""
    if (
        not isinstance(value, (tuple, list))
        or len(value) < min_len
        or not all(
            isinstance(d, int) and not isinstance(d, bool) and 1 <= d <= MAX_COUNT for d in value
        )
    ):
        raise error(
            f"{name} must be a tuple of at least {min_len} int(s) in [1, {MAX_COUNT:,}], "
            f"got {describe_value(value)}"
        )
    return tuple(value)


def check_number(
    value: Any,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    above: float | None = None,
    error: type[Exception] = InputError,
) -> float:
    """A finite real number (int or float, not a bool), ≥ ``low``, ≤ ``high`` and > ``above``
    where given; returned as a float, else ``error`` naming the rule."""
    rule = " and ".join(
        f"{op} {bound:g}"
        for op, bound in ((">", above), ("≥", low), ("≤", high))
        if bound is not None
    )
    want = f"a finite number {rule}".rstrip()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise error(f"{name} must be a number ({want}), got {describe_value(value)}")
    try:
        number = float(value)
    except OverflowError:  # an int beyond float's range
        number = math.inf
    if not (
        math.isfinite(number)
        and (low is None or number >= low)
        and (high is None or number <= high)
        and (above is None or number > above)
    ):
        raise error(f"{name} must be {want}, got {value!r}")
    return number


def check_choice(
    value: Any, name: str, choices: Iterable[str], *, error: type[Exception] = InputError
) -> str:
    """One of ``choices`` (a str), else ``error`` listing them."""
    choices = tuple(choices)
    if not isinstance(value, str) or value not in choices:
        raise error(
            f"{name} must be one of {', '.join(map(repr, choices))}, got {describe_value(value)}"
        )
    return value


def check_flag(value: Any, name: str, *, error: type[Exception] = InputError) -> bool:
    """``True`` or ``False`` (not 1, not "yes"), else ``error`` naming it."""
    if not isinstance(value, bool):
        raise error(f"{name} must be True or False, got {describe_value(value)}")
    return value


def check_path(value: Any, name: str, *, exists: str = "", error: type = InputError) -> Path:
    """A non-empty str or os.PathLike as a Path; an existing file (folder) if ``exists`` says."""
    text = os.fspath(value) if isinstance(value, (str, os.PathLike)) else None
    if not isinstance(text, str) or not text or "\0" in text:
        raise error(f"{name} must be a path (a str or os.PathLike), got {describe_value(value)}")
    path = Path(text)
    if exists and not (path.is_dir() if exists == "folder" else path.is_file()):
        raise error(f"{name}: no such {exists}: {text!r}")
    return path


def check_model(model: Any, where: str = "") -> Any:
    """A :class:`~latentkit.LatentModel`, else an InputError naming what was given (one
    ``isinstance``: cheap enough for paths that run once per bound, such as the estimators')."""
    if not isinstance(model, LatentModel):
        prefix = f"{where}: " if where else ""
        raise InputError(
            f"{prefix}model must be a latentkit.LatentModel, got {type(model).__name__}"
        )
    return model


# ---- annotations, checked by typeguard ---------------------------------------------------


def _dotted(match: re.Match) -> str:
    """A dotted class path as users import it: ``torch.nn.Module``, ``latentkit.LatentModel``,
    ``Sequence``; builtins bare."""
    parts = match.group(0).split(".")
    if parts[0] in ("builtins", "typing", "collections"):
        return parts[-1]
    if parts[0] == "torch":
        inner = [p for p in parts[1:-1] if not p.startswith("_")]
        return ".".join(["torch", *inner[:1], parts[-1]])
    if parts[0] == "latentkit":
        return f"latentkit.{parts[-1]}"
    return match.group(0)


def _hint_words(hint: Any) -> str:
    """An annotation as a reader writes it: ``torch.Tensor | None``, ``Sequence[int]``."""
    text = f"{hint.__module__}.{hint.__qualname__}" if isinstance(hint, type) else str(hint)
    text = text.replace("NoneType", "None")
    return re.sub(r"\b[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+", _dotted, text)


def _members(hint: Any) -> tuple[Any, ...]:
    """The members of a union annotation, or the annotation alone."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return typing.get_args(hint)
    return (hint,)


_WIDER = {float: (float, int), complex: (complex, float, int)}  # PEP 484's numeric tower


def _plain_classes(hint: Any) -> tuple[type, ...] | None:
    """The classes an ``isinstance`` decides ``hint`` by, when every member of it is a plain
    class (or None); ``None`` when typeguard must look (a generic, a protocol, a literal)."""
    out: list[type] = []
    for member in _members(hint):
        if member is None or member is type(None):
            out.append(type(None))
        elif isinstance(member, type) and typing.get_origin(member) is None:
            if getattr(member, "_is_protocol", False):
                return None
            out.extend(_WIDER.get(member, (member,)))
        else:
            return None
    return tuple(out)


class _Rule:
    """One parameter's annotation, ready to check a value against it."""

    def __init__(self, name: str, hint: Any, kind: Any, memo: Any) -> None:
        self.name, self.hint, self.kind, self.memo = name, hint, kind, memo
        members = _members(hint)
        self.classes = _plain_classes(hint)
        self.no_bool = bool not in members and any(m in (int, float) for m in members)

    def check_bound(self, where: str, given: Any) -> None:
        """Check a bound argument: one value, or each of ``*args``/``**kwargs``."""
        if self.kind is inspect.Parameter.VAR_POSITIONAL:
            for i, value in enumerate(given):
                self.check(where, f"{self.name}[{i}]", value)
        elif self.kind is inspect.Parameter.VAR_KEYWORD:
            for name, value in given.items():
                self.check(where, name, value)
        else:
            self.check(where, self.name, given)

    def check(self, where: str, name: str, value: Any) -> None:
        if self.classes is not None:
            fits = isinstance(value, self.classes)
        else:
            from typeguard import TypeCheckError, check_type_internal

            try:
                check_type_internal(value, self.hint, self.memo)
                fits = True
            except TypeCheckError:
                fits = False
        if not fits or (self.no_bool and isinstance(value, bool)):
            raise InputError(f"{where}: {name} must be {_hint_words(self.hint)}, got {_got(value)}")


def _annotated(annotation: str) -> Callable[..., None]:
    """A function whose one parameter carries ``annotation``, for ``typing.get_type_hints``
    to resolve (the standard reader of postponed annotations)."""

    def holder(value):  # type: ignore[no-untyped-def]
        return None

    holder.__annotations__ = {"value": annotation}
    return holder


class _Contract:
    """A callable's signature and the rules of its annotated parameters, resolved at the
    first call (when every module the annotations name is imported)."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn, self.signature = fn, inspect.signature(fn)
        owner, _, leaf = fn.__qualname__.rpartition(".")
        self.where = owner if leaf == "__init__" else fn.__name__
        self.init = leaf == "__init__"  # the message names the class being built
        self._rules: dict[str, _Rule] | None = None
        self.unresolved: list[str] = []
        # For checking a plain call without Signature.bind: the positional parameters in order
        # (none with *args or **kwargs: those calls are bound), the index of each parameter a
        # keyword may name (keyword-only: past every position), the required counts/names.
        params = list(self.signature.parameters.values())
        plain = all(p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params)
        by_position = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        self._positional = tuple(p.name for p in by_position) if plain else ()
        self._least = sum(p.default is p.empty for p in by_position) if plain else 1 << 30
        self._index = {
            p.name: i for i, p in enumerate(by_position) if p.kind is not p.POSITIONAL_ONLY
        }
        self._index.update({p.name: len(params) for p in params if p.kind is p.KEYWORD_ONLY})
        self._required_keywords = {
            p.name for p in params if p.kind is p.KEYWORD_ONLY and p.default is p.empty
        }

    def rules(self) -> dict[str, _Rule]:
        if self._rules is None:
            from typeguard import CollectionCheckStrategy, TypeCheckConfiguration, TypeCheckMemo

            config = TypeCheckConfiguration(
                collection_check_strategy=CollectionCheckStrategy.ALL_ITEMS
            )
            memo = TypeCheckMemo(self.fn.__globals__, {}, config=config)
            self._rules = {}
            for p in self.signature.parameters.values():
                hint = self._resolve(p.annotation)
                if hint is not None:
                    self._rules[p.name] = _Rule(p.name, hint, p.kind, memo)
                elif p.annotation not in (inspect.Parameter.empty, "Any", Any):
                    self.unresolved.append(p.name)
        return self._rules

    def _resolve(self, annotation: Any) -> Any:
        """The annotation as an object, ``None`` when it says nothing (absent, ``Any``,
        ``object``) or names what cannot be found."""
        if annotation is inspect.Parameter.empty:
            return None
        if isinstance(annotation, str):  # postponed (``from __future__ import annotations``)
            holder = _annotated(annotation)
            try:
                hints = typing.get_type_hints(holder, self.fn.__globals__)  # its module's names
            except Exception:
                return None
            annotation = hints["value"]
        return None if annotation in (Any, object) else annotation

    def check(self, args: tuple, kwargs: dict) -> None:
        rules = self._rules if self._rules is not None else self.rules()
        n, where = len(args), self.where
        if self.init and args:
            where = type(args[0]).__name__
        if (
            self._least <= n <= len(self._positional)
            and all(self._index.get(k, -1) >= n for k in kwargs)
            and self._required_keywords <= kwargs.keys()
        ):  # a plain call: each argument found by position or name, no Signature.bind
            for name, value in zip(self._positional, args):
                rule = rules.get(name)
                if rule is not None:
                    rule.check(where, name, value)
            for name, value in kwargs.items():
                rule = rules.get(name)
                if rule is not None:
                    rule.check(where, name, value)
            return
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as e:  # an unknown keyword, a missing argument, too many
            raise InputError(f"{where}: {e}") from None
        for name, value in bound.arguments.items():
            rule = rules.get(name)
            if rule is not None:
                rule.check_bound(where, value)


def checked(fn: F) -> F:
    """``fn`` with its arguments checked against its annotations at every call.

    A value that does not fit its parameter's annotation, a bool where the annotation says
    ``int``/``float``, an unknown keyword or a missing argument: an
    :class:`~latentkit.errors.InputError` naming the callable and the argument, in one line,
    before ``fn`` runs. Unannotated parameters and ``Any`` are not checked; rules beyond the
    type (ranges, finiteness, shapes) stay ``fn``'s own. On a class's ``__init__`` the
    message names the class. ``fn.__contract__`` holds the resolved rules (the tests read
    ``__contract__.unresolved``: the annotations that name nothing findable).
    """
    contract = _Contract(fn)

    @functools.wraps(fn)
    def call_checked(*args: Any, **kwargs: Any) -> Any:
        contract.check(args, kwargs)
        return fn(*args, **kwargs)

    call_checked.__contract__ = contract  # type: ignore[attr-defined]
    return typing.cast(F, call_checked)
