"""Conditions: a conditional model is one latent model per value of a condition c.

A conditional model p(x, z | c), q(z | x, c) declares what it is conditioned on with a
:class:`ConditionSpec` (``GenerativeChain.condition``): class labels 0..K−1 or a float
vector. ``model.given(c)`` is the member of the family for the conditions ``c`` (one per
example): an ordinary :class:`~latentkit.LatentModel` sharing the parameters, so every
bound, estimator, sampler and check of the engine applies to it unchanged. The chains of
the view read the condition with ``self.condition_for(batch)``, which tiles it when the
engine repeats the batch (k importance samples are ``x.repeat(k, ...)``, so the conditions
are ``c.repeat(k)``, in the same order).

The public functions take ``condition=`` and bind it with :func:`bind`, which validates it
like the data: its dtype, shape, range (a class outside 0..K−1) and device, and refuses a
condition given to an unconditional model or missing for a conditional one.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import attrs
import torch
from torch import Tensor

from latentkit.errors import InputError, ShapeError

# A LatentModel is written ``Any`` here: latentkit.chains imports this module.
LatentModel = Any
__all__ = [
    "MISSING_LABEL",
    "ConditionSpec",
    "base_chain",
    "bind",
    "check_condition",
    "check_guidance",
]

MISSING_LABEL = -1
"""The label of an unlabelled example in a semi-supervised data set (``[data] labels = N``)."""


def _classes(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(
            f"ConditionSpec: {attribute.name} must be an int ≥ 1 or None, got {value!r}"
        )


def check_guidance(w: Any) -> float:
    """A classifier-free guidance scale: a finite number ≥ 0."""
    if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0 <= w < math.inf:
        raise InputError(f"guidance must be a finite number ≥ 0, got {w!r}")
    return float(w)


@attrs.frozen
class ConditionSpec:
    """What a conditional chain is conditioned on.

    Attributes:
        num_classes: K for class labels 0..K−1 (a ``LongTensor`` ``[batch]``); ``None`` for
            a float vector condition of ``shape``.
        shape: the event shape of a vector condition (``[batch, *shape]``); ``()`` for classes.
        guidance: the chains also accept the null condition (:attr:`null_class`, the class
            K; a zero vector for vector conditions) and a guidance scale: classifier-free
            guidance. Training drops the condition at ``drop_rate``.
        drop_rate: the probability with which training replaces an example's condition by
            the null condition (classifier-free guidance), in [0, 1).
    """

    num_classes: int | None = attrs.field(default=None, validator=_classes)
    shape: tuple[int, ...] = attrs.field(default=(), converter=tuple)
    guidance: bool = False
    drop_rate: float = 0.0

    # (validated here, not by latentkit.config's rules: the chains import this module)
    def __attrs_post_init__(self) -> None:
        if self.num_classes is None and not self.shape:
            raise InputError("ConditionSpec: give num_classes (labels) or a vector shape")
        if self.num_classes is not None and self.shape:
            raise InputError("ConditionSpec: num_classes and shape exclude each other")
        if not 0.0 <= self.drop_rate < 1.0:
            raise InputError(f"ConditionSpec: drop_rate must be in [0, 1), got {self.drop_rate!r}")
        if self.drop_rate and not self.guidance:
            raise InputError("ConditionSpec: drop_rate needs guidance=True (the null condition)")

    @classmethod
    def of_classes(
        cls, classes: int, *, guidance: bool = False, drop_rate: float = 0.0
    ) -> ConditionSpec | None:
        """The spec of a plugin's ``classes`` field: ``None`` for 0 (unconditional), else K
        class labels (with classifier-free guidance when ``guidance``)."""
        if not classes:
            return None
        return cls(num_classes=classes, guidance=guidance, drop_rate=drop_rate)

    @property
    def is_class(self) -> bool:
        return self.num_classes is not None

    @property
    def null_class(self) -> int:
        """The class index of the null condition (guidance only): K."""
        if not (self.is_class and self.guidance):
            raise InputError("this condition has no null class (not class labels with guidance)")
        return int(self.num_classes)

    @property
    def feature_dim(self) -> int:
        """Width of :meth:`features`: K for classes, prod(shape) for vectors."""
        return int(self.num_classes) if self.is_class else math.prod(self.shape)

    def features(self, c: Tensor, dtype: torch.dtype) -> Tensor:
        """``[batch, feature_dim]`` floats a network reads: one-hot of a class (all zeros
        for the null class K), or the flattened vector."""
        if self.is_class:
            k = int(self.num_classes)
            return torch.nn.functional.one_hot(c, k + 1)[:, :k].to(dtype)
        return c.flatten(1).to(dtype)

    def describe(self) -> str:
        if self.is_class:
            return f"class labels 0..{self.num_classes - 1}"
        return f"a float vector of shape {self.shape}"


def check_condition(
    spec: ConditionSpec,
    c: Any,
    batch: int,
    *,
    like: Tensor,
    name: str = "condition",
    allow_missing: bool = False,
    allow_null: bool = False,
) -> Tensor:
    """``c`` checked against ``spec`` for a batch of ``batch`` examples, on ``like``'s
    device: class labels as ``int64`` ``[batch]`` (an ``int`` or a 0-dim tensor is every
    example's), vectors as ``[batch, *shape]`` of ``like``'s dtype. Raises
    :class:`~latentkit.errors.InputError` (or ``ShapeError``) naming what is wrong."""
    if spec.is_class:
        return _check_labels(spec, c, batch, like, name, allow_missing, allow_null)
    return _check_vector(spec, c, batch, like, name)


def _check_labels(spec, c, batch, like, name, allow_missing, allow_null) -> Tensor:
    k = int(spec.num_classes)
    if isinstance(c, bool) or not isinstance(c, (int, Tensor)):
        raise InputError(
            f"{name} must be class labels (an int or an integer tensor), got {type(c).__name__}"
        )
    if isinstance(c, int):
        c = torch.full((batch,), c, dtype=torch.long, device=like.device)
    if c.dtype.is_floating_point or c.dtype.is_complex or c.dtype == torch.bool:
        raise InputError(f"{name} must be integer class labels 0..{k - 1}, got dtype {c.dtype}")
    if c.device != like.device:
        raise InputError(f"{name} is on {c.device}, the model on {like.device}")
    if c.ndim == 0:
        c = c.expand(batch)
    if tuple(c.shape) != (batch,):
        raise ShapeError(
            f"{name} must have shape [{batch}] (one label per example), got {list(c.shape)}"
        )
    low = MISSING_LABEL if allow_missing else 0
    high = k + 1 if (allow_null and spec.guidance) else k
    if batch and (bool((c < low).any()) or bool((c >= high).any())):
        bad = c[(c < low) | (c >= high)][0].item()
        raise InputError(f"{name} {bad} is outside the label set 0..{k - 1}")
    return c.long()


def _check_vector(spec, c, batch, like, name) -> Tensor:
    if not isinstance(c, Tensor):
        raise InputError(
            f"{name} must be a float tensor [batch, *{spec.shape}], got {type(c).__name__}"
        )
    if not c.dtype.is_floating_point:
        raise InputError(f"{name} must be a float tensor, got dtype {c.dtype}")
    if c.device != like.device:
        raise InputError(f"{name} is on {c.device}, the model on {like.device}")
    if tuple(c.shape) != (batch, *spec.shape):
        raise ShapeError(f"{name} must have shape {[batch, *spec.shape]}, got {list(c.shape)}")
    if c.dtype != like.dtype:
        raise InputError(f"{name} has dtype {c.dtype}, the model {like.dtype}")
    if batch and not bool(torch.isfinite(c).all()):
        raise InputError(f"{name} has a NaN or infinite entry")
    return c


def bind(
    model: LatentModel,
    condition: Any,
    batch: int,
    *,
    guidance: float | None = None,
    sampling: bool = False,
) -> LatentModel:
    """``model`` given ``condition`` for a batch of ``batch`` examples (checked), or
    ``model`` itself when it takes no condition and none is given, or is given already.
    Only a sampler (``sampling``) takes a guided view: guidance changes the samples, and no
    bound is of the guided chain."""
    spec = model.condition_spec
    name = model.name or type(model.generative).__name__
    if model.condition is not None:  # a view already: its condition must fit the batch
        if condition is not None:
            raise InputError(f"{name} was already given a condition; pass condition= once")
        if model.generative.guidance and not sampling:
            raise InputError(
                f"{name} was given a guidance scale: guidance changes sampling only, and no "
                "bound is of the guided chain; evaluate the model given the condition alone"
            )
        n = model.condition.shape[0]
        if n and batch % n:
            raise ShapeError(f"the batch has {batch} examples, the model's condition {n}")
        return model
    if spec is None:
        if condition is not None:
            raise InputError(f"{name} takes no condition (it is not a conditional model)")
        if guidance is not None:
            raise InputError(f"{name} takes no guidance scale (it is not a conditional model)")
        return model
    if condition is None:
        raise InputError(
            f"{name} is conditional on {spec.describe()}: pass condition= (one per example)"
        )
    if guidance is not None and not sampling:
        raise InputError("guidance changes sampling only: the bounds take no guidance scale")
    c = check_condition(spec, condition, batch, like=model.reference(), allow_null=True)
    return model.given(c, guidance=guidance)


def view(module: Any, c: Tensor | None, guidance: float) -> Any:
    """A shallow copy of a chain bound to ``c``: the same submodules and parameters."""
    out = copy.copy(module)
    object.__setattr__(out, "_view_of", base_chain(module))
    object.__setattr__(out, "_bound_condition", c)
    object.__setattr__(out, "_bound_guidance", guidance)
    return out


def base_chain(chain: Any) -> Any:
    """The chain a view was made from (the chain itself when it is not a view): what caches
    keyed by chain use, so every view of a chain shares its entry."""
    if not isinstance(chain, torch.nn.Module):
        raise InputError(
            f"base_chain: expected a chain (a torch module), got {type(chain).__name__}"
        )
    return chain.__dict__.get("_view_of") or chain


def probe(model: LatentModel) -> LatentModel:
    """``model`` given some valid condition (class 0, or a zero vector) when it is an
    unbound conditional model: for code that asks the chains about shapes or families."""
    spec = model.condition_spec
    if spec is None or model.condition is not None:
        return model
    ref = model.reference()
    if spec.is_class:
        c = torch.zeros(1, dtype=torch.long, device=ref.device)
    else:
        c = torch.zeros(1, *spec.shape, dtype=ref.dtype, device=ref.device)
    return model.given(c, validate=False)


def tiled(c: Tensor | None, batch: int, owner: str) -> Tensor:
    """The bound condition ``c`` for a batch of ``batch`` rows: ``c`` repeated as the engine
    repeats the examples (``x.repeat(k, ...)``)."""
    if c is None:
        raise InputError(
            f"{owner} is conditional and was called without a condition: call it through "
            "model.given(condition) (latentkit's bounds and samplers also take condition=)"
        )
    n = c.shape[0]
    if batch == n:
        return c
    if n == 0 or batch % n:
        raise ShapeError(f"{owner}: a batch of {batch} rows for {n} conditions")
    return c.repeat(batch // n, *([1] * (c.ndim - 1)))


def restrict(model: LatentModel, rows: slice) -> LatentModel:
    """A bound view restricted to the examples ``rows`` (``model`` itself when unbound):
    for code that slices a batch, e.g. IWAE's chunks."""
    c = model.condition
    if c is None:
        return model
    other = copy.copy(model)
    other._modules = dict(model._modules)
    w = model.generative.guidance
    other._modules["generative"] = model.generative.given(c[rows], w)
    other._modules["posterior"] = model.posterior.given(c[rows], w)
    return other
