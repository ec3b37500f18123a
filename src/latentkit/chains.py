"""The model: a generative chain p and a posterior chain q over the same latents z_1..z_L.

Generative chain (top-down), always this shape::

    p(x, z_1..z_L) = p(z_L) · Π_{l=2..L} p(z_{l-1} | z_l) · p(x | z_1)
                     prior    transitions                   likelihood

Posterior chain q(z_1..z_L | x): the only part in which the built-in families differ.
It declares which factorizations it offers and the ELBO engine (``latentkit.estimators``)
picks the best estimator the declaration allows:

* ``top_down``  — q(z_L | x) and q(z_{l-1} | z_l, x), aligned with p: per-layer KLs,
  analytic where torch knows them.
* ``bottom_up`` — q(z_1 | x) and q(z_l | z_{l-1}, x), a Markov forward chain: the plain
  Monte Carlo log-ratio log p(x, z) − log q(z | x).
* ``layer_batched`` — the chain also gives the marginals q(z_l | x) for a tensor of layer
  indices, and both chains accept a ``LongTensor`` of layers; then every layer's term is
  computed in batched network calls (a DDPM's T = 1000 timesteps), not a Python loop.

Layer indices follow the docs: z_1 is next to the data, z_L next to the prior. A layer
argument ``l`` is a Python ``int`` on the sequential path; on the layer-batched path it
is a ``LongTensor`` of shape ``[batch]`` (one layer per example).
"""

from __future__ import annotations

import copy
import math
import operator
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import attrs
import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from latentkit.conditions import ConditionSpec, check_condition, check_guidance, tiled, view
from latentkit.errors import InputError, InputTypeError

__all__ = [
    "ConditionSpec",
    "GenerativeChain",
    "LatentModel",
    "LinearGaussianSpec",
    "ObjectiveChoice",
    "PosteriorChain",
    "SharedModule",
    "SingleLayerPosterior",
]


@attrs.frozen(eq=False)
class LinearGaussianSpec:
    """A generative chain as linear-Gaussian conditionals (all vectors flat): what
    :meth:`GenerativeChain.linear_gaussian` returns, and the exact oracles
    (:mod:`latentkit.oracles`) read.

    ``transitions[i] = (A, b, v)`` is p(z_{i+1} | z_{i+2}) = N(A z_{i+2} + b, diag v), for
    i = 0..L-2; ``weight``, ``bias``, ``noise_var`` give p(x | z_1) on the flattened x.
    """

    prior_mean: Tensor
    prior_var: Tensor
    transitions: tuple[tuple[Tensor, Tensor, Tensor], ...]
    weight: Tensor
    bias: Tensor
    noise_var: Tensor

    def __attrs_post_init__(self) -> None:
        for name in ("prior_mean", "prior_var", "weight", "bias", "noise_var"):
            if not isinstance(getattr(self, name), Tensor):
                got = type(getattr(self, name)).__name__
                raise InputTypeError(f"LinearGaussianSpec: {name} must be a Tensor, got {got}")
        for i, t in enumerate(self.transitions):
            if not (isinstance(t, tuple) and len(t) == 3 and all(isinstance(a, Tensor) for a in t)):
                raise InputTypeError(
                    f"LinearGaussianSpec: transitions[{i}] must be a tuple (A, b, v) of Tensors"
                )

    def messages(self) -> list[tuple[Tensor, Tensor, Tensor]]:
        """(C_l, d_l, Σ_l) for l = 1..L: x | z_l ~ N(C_l z_l + d_l, Σ_l)."""
        C, d, S = self.weight, self.bias, torch.diag(self.noise_var)
        out = [(C, d, S)]
        for A, b, v in self.transitions:
            C, d, S = C @ A, C @ b + d, (C * v) @ C.T + S
            out.append((C, d, S))
        return out


class _Choice(NamedTuple):
    name: str
    options: dict[str, Any]


class ObjectiveChoice(_Choice):
    """The objective a model trains with unless told otherwise: its registry ``name``
    (``latentkit.list_objectives()``) and the ``options`` of its config, e.g.
    ``ObjectiveChoice("elbo", {"beta": 4.0})``. A tuple: equal to ``(name, options)``."""

    __slots__ = ()

    def __new__(cls, name: str, options: Mapping[str, Any]) -> ObjectiveChoice:
        if not isinstance(name, str) or not name:
            raise InputTypeError(f"an objective's name must be a non-empty str, got {name!r}")
        if not isinstance(options, Mapping) or not all(isinstance(k, str) for k in options):
            raise InputTypeError(
                f"an objective's options must be a mapping of str keys, got {options!r}"
            )
        return super().__new__(cls, name, dict(options))


class SharedModule:
    """A chain's reference to a module that its :class:`LatentModel` owns in ``model.shared``.

    ``nn.Module`` registers only attributes that are modules; this holder is not one, so a
    module used by both chains (a VampPrior's prior runs q's encoder on its pseudo-inputs)
    is registered once, under ``shared.<name>``: one ``state_dict`` entry per tensor, and
    ``model.to()`` / ``model.double()`` convert it with the rest of the model. Calling the
    reference calls the module; ``ref.module`` is the module itself. A ``LatentModel``
    refuses a chain whose reference points to a module it was not given in ``shared``.
    """

    def __init__(self, module: nn.Module):
        if not isinstance(module, nn.Module):
            raise InputTypeError(f"SharedModule takes an nn.Module, got {type(module).__name__}")
        self.module = module

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.module(*args, **kwargs)

    def __repr__(self) -> str:
        return f"SharedModule({type(self.module).__name__})"


def _check_shared(model: LatentModel) -> None:
    """Every :class:`SharedModule` in the chains points to a module in ``model.shared``, and
    no module of ``model.shared`` is also registered inside a chain (it would be saved and
    loaded twice)."""
    owned = {id(m): name for name, m in model.shared.items()}
    for chain in ("generative", "posterior"):
        for path, module in getattr(model, chain).named_modules(prefix=chain):
            if id(module) in owned:
                raise TypeError(
                    f"the shared module {owned[id(module)]!r} is also registered in the chain "
                    f"at {path!r}; hold it there as latentkit.chains.SharedModule(module)"
                )
            for attr, value in vars(module).items():
                if isinstance(value, SharedModule) and id(value.module) not in owned:
                    raise TypeError(
                        f"{path}.{attr} refers to a {type(value.module).__name__} that the "
                        "LatentModel does not own: pass it as LatentModel(..., "
                        "shared={name: module})"
                    )


def _seq(value: Any) -> Sequence[Any]:
    if isinstance(value, (str, bytes, Tensor)) or not isinstance(value, Sequence):
        raise InputTypeError(f"expected a sequence of shapes, got {value!r}")
    return value


def _sizes(shape: Any, what: str) -> tuple[int, ...]:
    """A shape: a sequence of ints ≥ 1 (bools refused)."""
    try:
        sizes = tuple(operator.index(d) for d in _seq(shape) if not isinstance(d, bool))
    except TypeError:
        sizes = ()
    if len(sizes) != len(shape) or any(d < 1 for d in sizes):
        raise InputError(f"{what} must be a sequence of ints ≥ 1, got {shape!r}")
    return sizes


def _given(self, c: Tensor | None, guidance: float = 0.0):
    """This chain bound to the conditions ``c`` (a shallow view: same parameters)."""
    return view(self, c, guidance)


def _condition_for(self, batch: int) -> Tensor:
    """The bound conditions for a batch of ``batch`` rows (tiled as the engine repeats
    examples); an :class:`~latentkit.errors.InputError` when the chain was not given any."""
    return tiled(self._bound_condition, batch, type(self).__name__)


def _guidance(self) -> float:
    """The classifier-free guidance scale w of the bound view (0: none)."""
    return self._bound_guidance


class GenerativeChain(nn.Module):
    """p(z_L) · Π p(z_{l-1} | z_l) · p(x | z_1). Subclasses set the shapes and the three parts.

    Attributes:
        data_shape: event shape of one example x, e.g. ``(64,)`` or ``(1, 28, 28)``.
        latent_shapes: event shapes of z_1..z_L, in that order (``len`` is L).
        layer_batched: ``transition`` accepts a ``LongTensor`` of layer indices.
    """

    data_shape: tuple[int, ...]
    latent_shapes: tuple[tuple[int, ...], ...]
    layer_batched: bool = False

    def __init__(self, data_shape: Sequence[int], latent_shapes: Sequence[Sequence[int]]):
        super().__init__()
        self.data_shape = _sizes(data_shape, "data_shape")
        self.latent_shapes = tuple(_sizes(s, "a latent shape") for s in _seq(latent_shapes))
        if not self.latent_shapes:
            raise InputError("a generative chain needs at least one latent layer")

    @property
    def num_layers(self) -> int:
        """L, the number of latent layers."""
        return len(self.latent_shapes)

    # Conditioning (latentkit.conditions): a conditional chain sets ``condition_spec``;
    # the engine calls it through a view bound to the examples' conditions (``given``).
    condition_spec: ConditionSpec | None = None
    _bound_condition: Tensor | None = None
    _bound_guidance: float = 0.0

    given = _given
    condition_for = _condition_for
    guidance = property(_guidance)

    def prior(self, n: int) -> Distribution:
        """p(z_L) with ``batch_shape == [n]``."""
        raise NotImplementedError

    def transition(self, l: int | Tensor, z: Tensor) -> Distribution:
        """p(z_{l-1} | z_l = z) for 2 ≤ l ≤ L, ``batch_shape == [batch]``."""
        raise NotImplementedError(f"{type(self).__name__} has one layer; it has no transitions")

    def likelihood(self, z1: Tensor) -> Distribution:
        """p(x | z_1), ``batch_shape == [batch]``, ``event_shape == data_shape``."""
        raise NotImplementedError

    def linear_gaussian(self) -> LinearGaussianSpec | None:
        """The chain as linear-Gaussian conditionals, when it is one; enables the exact oracle."""
        return None

    def log_marginal(self, x: Tensor) -> Tensor | None:
        """Exact log p(x) by a model-specific route (e.g. enumerating a discrete latent).

        Return ``None`` (the default) when there is none; ``latentkit.exact_log_prob``
        then tries the linear-Gaussian oracle.
        """
        return None


class PosteriorChain(nn.Module):
    """q(z_1..z_L | x). Set the capability flags of the factorizations you implement.

    The engine calls :meth:`encode` once per pass over a batch and hands what it returns to
    every other method in place of ``x`` (the argument still named ``x`` below). The default
    returns ``x`` itself; a chain whose factors share a deterministic pass over the data (a
    ladder's bottom-up features) computes it there once. Methods called directly with the
    data tensor should accept it too (``hvae``'s ladder does: it encodes when given a tensor).
    """

    top_down: bool = False
    bottom_up: bool = False
    layer_batched: bool = False

    # Conditioning (latentkit.conditions): a conditional chain sets ``condition``; the
    # engine calls it through a view bound to the examples' conditions (``given``).
    _bound_condition: Tensor | None = None
    _bound_guidance: float = 0.0

    given = _given
    condition_for = _condition_for
    guidance = property(_guidance)

    def encode(self, x: Tensor) -> Any:
        """What every factor of this pass conditions on: ``x`` itself by default."""
        return x

    def top(self, x: Tensor) -> Distribution:
        """q(z_L | x) (top-down)."""
        raise NotImplementedError

    def down(self, l: int | Tensor, z: Tensor, x: Tensor) -> Distribution:
        """q(z_{l-1} | z_l = z, x) for 2 ≤ l ≤ L (top-down)."""
        raise NotImplementedError

    def first(self, x: Tensor) -> Distribution:
        """q(z_1 | x) (bottom-up)."""
        raise NotImplementedError

    def up(self, l: int | Tensor, z: Tensor, x: Tensor) -> Distribution:
        """q(z_l | z_{l-1} = z, x) for 2 ≤ l ≤ L (bottom-up)."""
        raise NotImplementedError

    def marginal(self, l: Tensor, x: Tensor) -> Distribution:
        """q(z_l | x) for a ``LongTensor`` of layers, one per example (layer-batched)."""
        raise NotImplementedError


class SingleLayerPosterior(PosteriorChain):
    """A one-layer q(z | x): top-down and bottom-up coincide. Implement ``forward(x)``."""

    top_down = True
    bottom_up = True

    def top(self, x: Tensor) -> Distribution:
        return self(x)

    def first(self, x: Tensor) -> Distribution:
        return self(x)


class LatentModel(nn.Module):
    """A latent-variable model: ``generative`` (p) and ``posterior`` (q) chains.

    Args:
        generative: the generative chain p.
        posterior: the posterior chain q.
        name: the registry name it was loaded under, if any.
        config: the attrs config that built it, if any.
        objective: the name of the training objective the model trains with unless told
            otherwise (``latentkit.list_objectives()``; ``elbo`` by default).
        objective_config: that objective's config values, e.g. ``{"beta": 4.0}`` for a
            β-VAE or ``{"estimator": "enumerated"}``. Both are kept as
            :attr:`objective_choice`. The model never evaluates its loss itself:
            ``latentkit.training_objective(model)`` builds the objective (DESIGN §8);
            evaluation always reports the true bound.
        shared: modules both chains use, by name: owned here (``model.shared``, an
            ``nn.ModuleDict``) and held by the chains as :class:`SharedModule` references.
    """

    def __init__(
        self,
        generative: GenerativeChain,
        posterior: PosteriorChain,
        *,
        name: str | None = None,
        config: Any = None,
        objective: str = "elbo",
        objective_config: dict[str, Any] | None = None,
        shared: Mapping[str, nn.Module] | None = None,
    ):
        super().__init__()
        if not isinstance(generative, GenerativeChain):
            raise InputTypeError(
                f"generative must be a GenerativeChain, got {type(generative).__name__}"
            )
        if not isinstance(posterior, PosteriorChain):
            raise InputTypeError(
                f"posterior must be a PosteriorChain, got {type(posterior).__name__}"
            )
        if not isinstance(objective, str) or not objective:
            raise InputTypeError(f"objective must be a registered name (str), got {objective!r}")
        if not (posterior.top_down or posterior.bottom_up):
            raise TypeError(
                f"{type(posterior).__name__} declares neither top_down nor bottom_up; "
                "set the flag of the factorization it implements"
            )
        self.generative = generative
        self.posterior = posterior
        self.shared = nn.ModuleDict(dict(shared or {}))
        _check_shared(self)
        self.name = name
        self.config = config
        self.objective_choice = ObjectiveChoice(objective, dict(objective_config or {}))

    @property
    def objective_choice(self) -> ObjectiveChoice:
        """The objective the model trains with unless told otherwise (name and options)."""
        return self._objective_choice

    @objective_choice.setter
    def objective_choice(self, choice: tuple[str, Mapping[str, Any]]) -> None:
        name, options = choice
        self._objective_choice = ObjectiveChoice(name, dict(options))

    # The old name of ``objective_choice`` (deprecated): it held the same (name, options).
    default_objective = objective_choice

    @property
    def data_shape(self) -> tuple[int, ...]:
        return self.generative.data_shape

    @property
    def num_layers(self) -> int:
        return self.generative.num_layers

    @property
    def data_dims(self) -> int:
        """D, the number of scalar dimensions of one example (for bits/dim)."""
        return math.prod(self.data_shape)

    @property
    def condition_spec(self) -> ConditionSpec | None:
        """What the model is conditioned on (``None``: an unconditional model)."""
        return self.generative.condition_spec

    @property
    def condition(self) -> Tensor | None:
        """The conditions this view was given (:meth:`given`); ``None`` when not bound."""
        return self.generative._bound_condition

    def given(
        self,
        condition: Any,
        *,
        guidance: float | None = None,
        validate: bool = True,
        allow_missing: bool = False,
    ) -> LatentModel:
        """The model given ``condition`` (one per example; an ``int`` for all): a view with
        the same parameters whose chains read the conditions, so every latentkit bound and
        sampler applies to it. ``guidance``: a classifier-free guidance scale w ≥ 0 (models
        whose ``condition_spec.guidance`` is set); it changes sampling only, never a bound.
        ``allow_missing``: labels may be ``MISSING_LABEL`` (a semi-supervised objective)."""
        spec, name = self.condition_spec, self.name or type(self.generative).__name__
        if spec is None:
            raise InputError(f"{name} takes no condition (it is not a conditional model)")
        if self.condition is not None:
            raise InputError(f"{name} was already given a condition")
        if guidance is not None:
            if not spec.guidance:
                raise InputError(f"{name} takes no guidance scale (it was not built for guidance)")
            guidance = check_guidance(guidance)
        if validate:
            n = condition.shape[0] if isinstance(condition, Tensor) and condition.ndim else 1
            condition = check_condition(
                spec,
                condition,
                n,
                like=self.reference(),
                allow_null=True,
                allow_missing=allow_missing,
            )
        w = float(guidance or 0.0)
        other = copy.copy(self)
        other._modules = dict(self._modules)
        other._modules["generative"] = self.generative.given(condition, w)
        other._modules["posterior"] = self.posterior.given(condition, w)
        return other

    def with_posterior(self, posterior: PosteriorChain) -> LatentModel:
        """The same generative chain (shared, not copied) with another posterior chain.

        p is unchanged: the modules in ``shared`` stay with the new model, so a prior that
        uses one (a VampPrior's encoder) is the same prior; the new q uses the modules it
        was built with (a :class:`SharedModule` of ``self.shared`` if it should share)."""
        other = copy.copy(self)
        other._modules = dict(self._modules)
        other._modules["posterior"] = posterior
        _check_shared(other)
        return other

    def reference(self) -> Tensor:
        """A parameter or buffer: tells the model's device and dtype.

        The first of ``self.parameters()``, else of ``self.buffers()``, found by a plain
        depth-first walk in the same order: every public bound calls this to check its
        input, and ``parameters()``'s generators over ``named_modules`` cost more than the
        check itself at batch 1."""
        for kind in ("_parameters", "_buffers"):
            stack: list[nn.Module] = [self]
            while stack:
                module = stack.pop()
                for t in getattr(module, kind).values():
                    if t is not None:
                        return t
                stack.extend(m for m in reversed(module._modules.values()) if m is not None)
        return torch.empty(0)
