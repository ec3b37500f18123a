"""Deliberately broken models: the kit's checks are tested on them, and the table in
``docs/checks.md`` ("fault → the check that catches it → its power") is generated from them.

Each :class:`Mutant` takes a correct built-in model (``vae`` or ``hvae``, linear-Gaussian
configs so the exact oracle applies) and breaks one thing: a density off by a constant or
by a function of x or z, a sign flip, draws that do not follow ``log_prob``, a mixture
without its normaliser, a wrong closed-form KL, a statistic across the batch, a training
objective with a wrong β. The exact oracle (``linear_gaussian``) keeps describing the
correct model, as an oracle for the true model would. :func:`registered` registers them
as models named ``mutant-KEY`` for the length of a ``with`` block;
:mod:`latentkit.testing.mutation_table` measures which check catches each.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import ClassVar

import attrs
import torch
from hypothesis import strategies as st
from torch import Tensor
from torch.distributions import Distribution, Normal, constraints, register_kl

from latentkit.chains import GenerativeChain, LatentModel, PosteriorChain
from latentkit.hookspecs import hookimpl
from latentkit.registry import (
    ModelSpec,
    get_model_spec,
    list_models,
    register_plugin,
    unregister_plugin,
)
from latentkit.testing.strategies import linear_vae_configs

__all__ = [
    "CONTROLS",
    "MUTANTS",
    "ForgetfulNormal",
    "Mutant",
    "Mutated",
    "MutatedGenerative",
    "MutatedPosterior",
    "TwoBumps",
    "base_configs",
    "registered",
]


class Mutated(Distribution):
    """``base`` with ``log_prob(z) = sign · base.log_prob(z) + offset(z)`` and draws
    ``move(z)`` of the base's draws; otherwise the base (shapes, support, mean)."""

    arg_constraints: ClassVar[dict] = {}

    def __init__(self, base: Distribution, *, sign: float = 1.0, offset=None, move=None):
        self.base, self.sign, self.offset, self.move = base, sign, offset, move
        super().__init__(base.batch_shape, base.event_shape, validate_args=False)

    @property
    def support(self):
        return self.base.support

    @property
    def has_rsample(self) -> bool:
        return self.base.has_rsample

    @property
    def mean(self) -> Tensor:
        return self.base.mean

    def rsample(self, sample_shape=()) -> Tensor:
        z = self.base.rsample(sample_shape)
        return z if self.move is None else self.move(z, self.base)

    def sample(self, sample_shape=()) -> Tensor:
        with torch.no_grad():
            z = self.base.sample(sample_shape)
            return z if self.move is None else self.move(z, self.base)

    def log_prob(self, value: Tensor) -> Tensor:
        lp = self.sign * self.base.log_prob(value)
        return lp if self.offset is None else lp + self.offset(value)


def _sum_event(t: Tensor, d: Distribution) -> Tensor:
    return t.flatten(t.ndim - len(d.event_shape)).sum(-1) if d.event_shape else t


class TwoBumps(Distribution):
    """½ base(z − δ) + ½ base(z + δ), δ = 0.75 in every coordinate — with a ``log_prob``
    that forgets the mixture's log 2 when ``normalised`` is False."""

    arg_constraints: ClassVar[dict] = {}
    support = constraints.real_vector
    has_rsample = True
    shift = 0.75

    def __init__(self, base: Distribution, normalised: bool):
        self.base, self.normalised = base, normalised
        super().__init__(base.batch_shape, base.event_shape, validate_args=False)

    def rsample(self, sample_shape=()) -> Tensor:
        z = self.base.rsample(sample_shape)
        side = torch.randint(0, 2, z.shape[: z.ndim - len(self.event_shape)], device=z.device)
        side = (2 * side - 1).to(z.dtype).reshape(side.shape + (1,) * len(self.event_shape))
        return z + self.shift * side

    def sample(self, sample_shape=()) -> Tensor:
        with torch.no_grad():
            return self.rsample(sample_shape)

    def log_prob(self, value: Tensor) -> Tensor:
        both = torch.stack(
            [self.base.log_prob(value - self.shift), self.base.log_prob(value + self.shift)]
        )
        return torch.logsumexp(both, 0) - (math.log(2) if self.normalised else 0.0)


class ForgetfulNormal(Normal):
    """A Normal whose registered closed-form KL forgets the log(σ_p/σ_q) term."""


@register_kl(ForgetfulNormal, Normal)
def _forgetful_kl(q: Normal, p: Normal) -> Tensor:
    return (q.scale**2 + (q.loc - p.loc) ** 2) / (2 * p.scale**2) - 0.5


def _forgetful(d: Distribution) -> Distribution:
    """d = Independent(Normal) rebuilt with :class:`ForgetfulNormal` inside."""
    normal = d.base_dist
    inner = ForgetfulNormal(normal.loc, normal.scale, validate_args=False)
    return torch.distributions.Independent(inner, d.reinterpreted_batch_ndims)


Wrap = Callable[[Distribution, object], Distribution]
"""``wrap(d, context) -> d'``: how a fault changes one factor; ``context`` is x for q's
factors, the conditioning z for p's transitions, z_1 for the likelihood, None for the prior."""


class MutatedGenerative(GenerativeChain):
    """``inner`` with its prior, transitions and likelihood passed through ``wrap``s; the
    exact oracle describes ``inner`` (or nothing, when ``exact`` is False)."""

    def __init__(
        self,
        inner: GenerativeChain,
        *,
        prior=None,
        transition=None,
        likelihood=None,
        exact: bool = True,
    ):
        super().__init__(inner.data_shape, inner.latent_shapes)
        self.inner, self.exact = inner, exact
        self.wraps = {"prior": prior, "transition": transition, "likelihood": likelihood}

    def _wrap(self, part: str, d: Distribution, context) -> Distribution:
        wrap = self.wraps[part]
        return d if wrap is None else wrap(d, context)

    def prior(self, n: int) -> Distribution:
        return self._wrap("prior", self.inner.prior(n), None)

    def transition(self, l, z: Tensor) -> Distribution:
        return self._wrap("transition", self.inner.transition(l, z), z)

    def likelihood(self, z1: Tensor) -> Distribution:
        return self._wrap("likelihood", self.inner.likelihood(z1), z1)

    def linear_gaussian(self):
        return self.inner.linear_gaussian() if self.exact else None

    def log_marginal(self, x: Tensor):
        return self.inner.log_marginal(x) if self.exact else None


class MutatedPosterior(PosteriorChain):
    """``inner`` with every factor passed through ``wrap`` (context: what the factor
    conditions on, x or its encoding) and x through ``transform`` before encoding."""

    def __init__(self, inner: PosteriorChain, wrap: Wrap | None = None, transform=None):
        super().__init__()
        self.inner, self.wrap, self.transform = inner, wrap, transform
        self.top_down, self.bottom_up = inner.top_down, inner.bottom_up
        self.layer_batched = inner.layer_batched

    def _w(self, d: Distribution, x) -> Distribution:
        return d if self.wrap is None else self.wrap(d, x)

    def encode(self, x: Tensor):
        return self.inner.encode(x if self.transform is None else self.transform(x))

    def top(self, x):
        if self.transform is not None and isinstance(x, Tensor):
            x = self.encode(x)
        return self._w(self.inner.top(x), x)

    def down(self, l, z, x):
        return self._w(self.inner.down(l, z, x), x)

    def first(self, x):
        if self.transform is not None and isinstance(x, Tensor):
            x = self.encode(x)
        return self._w(self.inner.first(x), x)

    def up(self, l, z, x):
        return self._w(self.inner.up(l, z, x), x)

    def marginal(self, l, x):
        return self._w(self.inner.marginal(l, x), x)


@attrs.frozen
class Mutant:
    """One deliberate fault: ``key`` (the model is ``mutant-KEY``), what it breaks, the base
    model and configs, how it changes a built model, and the check expected to catch it
    (``None``: no check can, and ``why`` says why)."""

    key: str
    fault: str
    base: str
    mutate: Callable[[LatentModel], LatentModel]
    catches: str | None
    why: str = ""


def _offset(c: float) -> Wrap:
    return lambda d, ctx: Mutated(d, offset=lambda z: torch.full_like(_sum_event(z, d), c))


def _q(wrap: Wrap | None = None, transform=None) -> Callable[[LatentModel], LatentModel]:
    return lambda m: m.with_posterior(MutatedPosterior(m.posterior, wrap, transform))


def _p(exact: bool = True, **wraps) -> Callable[[LatentModel], LatentModel]:
    def mutate(m: LatentModel) -> LatentModel:
        other = m.with_posterior(m.posterior)
        other._modules["generative"] = MutatedGenerative(m.generative, exact=exact, **wraps)
        return other

    return mutate


def _x_offset(d: Distribution, x) -> Distribution:
    return Mutated(d, offset=lambda z: 0.3 * x.flatten(1).sum(1).expand(z.shape[:-1]))


def _objective_beta(m: LatentModel) -> LatentModel:
    m.default_objective = ("elbo", {"beta": 0.5})
    return m


MUTANTS: tuple[Mutant, ...] = (
    Mutant("q-offset", "log q(z|x) + 1 (a constant)", "vae", _q(_offset(1.0)), "normalised"),
    Mutant(
        "q-x-offset", "log q(z|x) + 0.3·Σx (a function of x)", "vae", _q(_x_offset), "normalised"
    ),
    Mutant(
        "q-sign",
        "log q(z|x) → −log q(z|x)",
        "vae",
        _q(lambda d, x: Mutated(d, sign=-1.0)),
        "normalised",
    ),
    Mutant(
        "q-draws-shifted",
        "q's draws + 0.5, its log_prob unchanged",
        "vae",
        _q(lambda d, x: Mutated(d, move=lambda z, b: z + 0.5)),
        "normalised",
    ),
    Mutant(
        "q-draws-spread",
        "q's draws 1.5× as far from the mean, log_prob unchanged",
        "vae",
        _q(lambda d, x: Mutated(d, move=lambda z, b: b.mean + 1.5 * (z - b.mean))),
        "normalised",
    ),
    Mutant(
        "q-closed-form-kl",
        "a registered closed-form KL(q ‖ p) without log(σ_p/σ_q)",
        "vae",
        _q(lambda d, x: _forgetful(d)),
        "kl-nonnegative",
    ),
    Mutant(
        "q-batch-coupled",
        "q(z|x) sees x minus the batch mean",
        "vae",
        _q(transform=lambda x: x - x.mean(0, keepdim=True)),
        "batch-independence",
    ),
    Mutant("prior-offset", "log p(z) + 1", "vae", _p(prior=_offset(1.0)), "normalised"),
    Mutant(
        "prior-z-offset",
        "log p(z) + 0.3·Σz (a function of z)",
        "vae",
        _p(prior=lambda d, c: Mutated(d, offset=lambda z: 0.3 * _sum_event(z, d))),
        "normalised",
    ),
    Mutant(
        "prior-mixture-normaliser",
        "a two-component mixture prior without its −log 2",
        "vae",
        _p(exact=False, prior=lambda d, c: TwoBumps(d, normalised=False)),
        "normalised",
    ),
    Mutant(
        "transition-offset",
        "log p(z_{l−1}|z_l) + 1",
        "hvae",
        _p(transition=_offset(1.0)),
        "normalised",
    ),
    Mutant(
        "likelihood-offset-up", "log p(x|z) + 1", "vae", _p(likelihood=_offset(1.0)), "normalised"
    ),
    Mutant(
        "likelihood-offset-down",
        "log p(x|z) − 1: every bound still holds",
        "vae",
        _p(likelihood=_offset(-1.0)),
        "exact-log-p",
    ),
    Mutant(
        "likelihood-x-offset",
        "log p(x|z) − 0.1·Σx² (a function of x)",
        "vae",
        _p(likelihood=lambda d, c: Mutated(d, offset=lambda x: -0.1 * _sum_event(x**2, d))),
        "normalised",
    ),
    Mutant(
        "objective-beta",
        "the model's training objective weighs the KL by β = 0.5",
        "vae",
        _objective_beta,
        None,
        "the checks test the model's densities and the bounds computed from them; a "
        "training objective's weights are the objective's (tests/test_objectives.py)",
    ),
)
"""Every fault the kit is tested against (``docs/checks.md``, "What each fault is caught by")."""

CONTROLS: tuple[Mutant, ...] = (
    Mutant(
        "control-q",
        "every factor of q wrapped, nothing changed",
        "vae",
        _q(lambda d, x: Mutated(d)),
        None,
    ),
    Mutant(
        "control-p",
        "every factor of p wrapped, nothing changed",
        "hvae",
        _p(
            prior=lambda d, c: Mutated(d),
            transition=lambda d, c: Mutated(d),
            likelihood=lambda d, c: Mutated(d),
        ),
        None,
    ),
    Mutant(
        "control-mixture",
        "the two-component mixture prior with its −log 2",
        "vae",
        _p(exact=False, prior=lambda d, c: TwoBumps(d, normalised=True)),
        None,
    ),
)
"""The same wrappers with no fault: every check passes on them (no false alarm from the
wrapping itself)."""


@st.composite
def _hvae_linear_configs(draw) -> dict:
    depth = draw(st.integers(2, 3))
    return {
        "data_shape": (draw(st.integers(1, 4)),),
        "latent_dims": tuple(draw(st.integers(1, 3)) for _ in range(depth)),
        "architecture": "linear",
        "likelihood": "gaussian",
        "posterior": draw(st.sampled_from(["top-down", "bottom-up"])),
    }


def base_configs(base: str) -> st.SearchStrategy[dict]:
    """Linear-Gaussian configs of the base model (the exact oracle applies to every one)."""
    return (
        linear_vae_configs(max_data_dim=4, max_latent_dim=3)
        if base == "vae"
        else (_hvae_linear_configs())
    )


def _spec(mutant: Mutant) -> ModelSpec:
    base = get_model_spec(mutant.base)
    return ModelSpec(
        f"mutant-{mutant.key}",
        base.config_class,
        lambda cfg: mutant.mutate(base.factory(cfg)),
        description=mutant.fault,
        test_configs=lambda: base_configs(mutant.base),
    )


@contextlib.contextmanager
def registered(mutants=MUTANTS + CONTROLS) -> Iterator[list[Mutant]]:
    """Register each mutant whose base model is installed as ``mutant-KEY``; yields those."""
    available = [m for m in mutants if m.base in list_models()]

    class Plugin:
        @staticmethod
        @hookimpl
        def latentkit_models():
            return [_spec(m) for m in available]

    register_plugin(Plugin, name="latentkit-mutants")
    try:
        yield available
    finally:
        unregister_plugin(Plugin)
