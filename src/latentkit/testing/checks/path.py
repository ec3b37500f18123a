"""A latent path through both chains, walked independently of ``latentkit.estimators`` so
the checks do not trust the code they check.

Draws use a distribution's ``rsample_and_log_prob(sample_shape)`` when it defines one (a
flow whose density comes with its draw, without an inverse); then its ``log_prob`` is
never called at that draw, and :attr:`Path.own_density_only` names the factor, so a check
that would evaluate it at another point skips that part.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import torch
from torch import Tensor
from torch.distributions import Distribution, kl_divergence

from latentkit.chains import LatentModel

__all__ = ["Path", "draw_with_log_prob", "draws_own_density", "kl_terms", "walk"]


def draws_own_density(d: Distribution) -> bool:
    """Whether ``d`` hands out its log density with its draws (``rsample_and_log_prob``)."""
    return getattr(d, "rsample_and_log_prob", None) is not None


def draw_with_log_prob(
    d: Distribution, sample_shape: torch.Size | Sequence[int] = ()
) -> tuple[Tensor, Tensor]:
    """Draws z ~ d of ``sample_shape`` and log d(z): from ``rsample_and_log_prob`` when
    ``d`` defines it, else a (reparameterized where possible) draw and ``d.log_prob``."""
    shape = torch.Size(sample_shape)
    both = getattr(d, "rsample_and_log_prob", None)
    if both is not None:
        return both(shape)
    z = d.rsample(shape) if d.has_rsample else d.sample(shape)
    return z, d.log_prob(z)


def closed_form_kl(q: Distribution, p: Distribution) -> Tensor | None:
    """KL(q ‖ p) where torch has a closed form, else None."""
    try:
        return kl_divergence(q, p)
    except NotImplementedError:
        return None


@attrs.frozen
class Path:
    latents: tuple[Tensor, ...]  # z_1..z_L
    log_densities: dict[str, Tensor]  # every factor of q and of p at the path, [batch]
    closed_form_kls: dict[str, Tensor | None] | None  # top-down chains: term → KL or None
    distributions: dict[str, Distribution]  # every factor, keyed like log_densities
    own_density_only: frozenset[str]  # q's factors with rsample_and_log_prob

    def log_q(self) -> Tensor:
        """log q(z_1..z_L | x) at the path, ``[batch]``."""
        return sum(v for k, v in self.log_densities.items() if k.startswith("log q"))

    def log_joint(self) -> Tensor:
        """log p(x, z_1..z_L) at the path, ``[batch]``."""
        return sum(v for k, v in self.log_densities.items() if k.startswith("log p"))


def walk(model: LatentModel, x: Tensor, latents: Sequence[Tensor] | None = None) -> Path:
    """One latent path z_1..z_L from q (top-down when q offers it, else bottom-up), or the
    given ``latents``; every factor's log density at it, and for top-down chains each KL
    term in closed form where torch has one (``None`` where it has not).

    At given ``latents``, a factor of q that hands out its density with its draws is not
    evaluated: its key is missing from ``log_densities`` (it is in ``own_density_only``).
    """
    p, q, n, L = model.generative, model.posterior, x.shape[0], model.num_layers
    zs: list[Tensor | None] = list(latents) if latents is not None else [None] * L
    logs: dict[str, Tensor] = {}
    dists: dict[str, Distribution] = {}
    own: set[str] = set()

    def factor(name: str, l: int, d: Distribution) -> None:
        dists[name] = d
        if draws_own_density(d):
            own.add(name)
        if zs[l - 1] is None:
            zs[l - 1], logs[name] = draw_with_log_prob(d)
        elif name not in own:
            logs[name] = d.log_prob(zs[l - 1])

    kls: dict[str, Tensor | None] | None = None
    if q.top_down:
        kls = {}
        d = q.top(x)
        factor(f"log q(z_{L}|x)", L, d)
        kls["prior_matching"] = closed_form_kl(d, p.prior(n))
        for l in range(L, 1, -1):
            d = q.down(l, zs[l - 1], x)
            factor(f"log q(z_{l - 1}|z_{l},x)", l - 1, d)
            kls[f"kl_{l - 1}"] = closed_form_kl(d, p.transition(l, zs[l - 1]))
    else:
        factor("log q(z_1|x)", 1, q.first(x))
        for l in range(2, L + 1):
            factor(f"log q(z_{l}|z_{l - 1},x)", l, q.up(l, zs[l - 2], x))
    dists[f"log p(z_{L})"] = d = p.prior(n)
    logs[f"log p(z_{L})"] = d.log_prob(zs[L - 1])
    for l in range(L, 1, -1):
        dists[f"log p(z_{l - 1}|z_{l})"] = d = p.transition(l, zs[l - 1])
        logs[f"log p(z_{l - 1}|z_{l})"] = d.log_prob(zs[l - 2])
    dists["log p(x|z_1)"] = d = p.likelihood(zs[0])
    logs["log p(x|z_1)"] = d.log_prob(x)
    return Path(tuple(zs), logs, kls, dists, frozenset(own))


def kl_terms(result) -> dict[str, Tensor]:
    """A bound's terms without the reconstruction: its KL terms by name."""
    terms = dict(result.terms)
    del terms["reconstruction"]
    return terms
