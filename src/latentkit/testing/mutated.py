"""Distributions and chains with one thing changed: the pieces :mod:`latentkit.testing.mutants`
builds its broken models from, and the builders that apply them to a model.

A *wrap* ``wrap(d, context) -> d'`` changes one factor of a chain (:data:`Wrap`);
:func:`mutate_q` and :func:`mutate_p` pass every factor of a model's q, or chosen factors of
its p, through one. The exact oracle keeps describing the unbroken chain, as an oracle for
the true model would.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import ClassVar

import torch
from torch import Tensor
from torch.distributions import Distribution, Normal, constraints, register_kl

from latentkit.chains import GenerativeChain, LatentModel, PosteriorChain

__all__ = [
    "ForgetfulNormal",
    "Mutated",
    "MutatedGenerative",
    "MutatedPosterior",
    "TwoBumps",
    "Wrap",
    "constant_offset",
    "forgetful",
    "mutate_p",
    "mutate_q",
    "sum_event",
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


def sum_event(t: Tensor, d: Distribution) -> Tensor:
    """``t`` (one value per element of a value of ``d``) summed over ``d``'s event dims."""
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


def forgetful(d: Distribution) -> Distribution:
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

    def _encoded(self, x):
        """``x`` encoded when a factor is called with the data itself rather than with what
        :meth:`encode` gave (the transform must reach a direct call too)."""
        return self.encode(x) if self.transform is not None and isinstance(x, Tensor) else x

    def top(self, x):
        x = self._encoded(x)
        return self._w(self.inner.top(x), x)

    def down(self, l, z, x):
        return self._w(self.inner.down(l, z, x), x)

    def first(self, x):
        x = self._encoded(x)
        return self._w(self.inner.first(x), x)

    def up(self, l, z, x):
        return self._w(self.inner.up(l, z, x), x)

    def marginal(self, l, x):
        return self._w(self.inner.marginal(l, x), x)


def constant_offset(c: float) -> Wrap:
    """The wrap adding the constant ``c`` to a factor's log density."""
    return lambda d, ctx: Mutated(d, offset=lambda z: torch.full_like(sum_event(z, d), c))


def mutate_q(wrap: Wrap | None = None, transform=None) -> Callable[[LatentModel], LatentModel]:
    """The model with every factor of q passed through ``wrap`` and x through ``transform``
    before q encodes it (:class:`MutatedPosterior`)."""
    return lambda m: m.with_posterior(MutatedPosterior(m.posterior, wrap, transform))


def mutate_p(exact: bool = True, **wraps) -> Callable[[LatentModel], LatentModel]:
    """The model with p's ``prior``, ``transition`` and ``likelihood`` passed through the
    wraps given (:class:`MutatedGenerative`); ``exact=False`` withdraws the exact oracle."""

    def mutate(m: LatentModel) -> LatentModel:
        other = m.with_posterior(m.posterior)
        other._modules["generative"] = MutatedGenerative(m.generative, exact=exact, **wraps)
        return other

    return mutate
