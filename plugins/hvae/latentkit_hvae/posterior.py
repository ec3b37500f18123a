"""The hierarchical VAE's posterior chains (``docs/hvae.md``): the ladder (top-down) and the
Markov chain (bottom-up), and :func:`beside`, how every factor of a conditional hvae reads
the condition."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn
from torch.distributions import Independent

import latentkit as lk
from latentkit.networks import ACTIVATIONS, GaussianHead, mlp

if TYPE_CHECKING:
    from latentkit_hvae.model import HVAEConfig

__all__ = ["LadderFeatures", "LadderPosterior", "MarkovPosterior", "beside", "flat"]


def flat(x: Tensor) -> Tensor:
    """x with each example flattened: ``[batch, D]``."""
    return x.flatten(1)  # "b ... -> b (...)": no pattern parsed per call


def beside(chain: nn.Module, t: Tensor) -> Tensor:
    """[t, f(c)]: the rows of ``t`` with the features of the chain's bound conditions beside
    them (tiled as the engine repeats a batch); ``t`` itself for an unconditional chain."""
    spec = chain.condition_spec
    if spec is None:
        return t
    return torch.cat([t, spec.features(chain.condition_for(t.shape[0]), t.dtype)], dim=-1)


class LadderFeatures(tuple):
    """The ladder's features (h_1, ..., h_L) of one batch: what its ``encode`` returns."""


class LadderPosterior(lk.PosteriorChain):
    """q(z_L | x) Π q(z_{l-1} | z_l, x), fed by a deterministic bottom-up pass over x.

    Features h_1 = f_1(x), h_l = f_l(h_{l-1}); q(z_L | x) = N(head_L(h_L)) and
    q(z_{l-1} | z_l, x) = N(head_{l-1}([z_l, h_{l-1}])). For ``linear`` every f_l is the
    identity (h_l = x: a stack of linear maps adds nothing a linear head cannot express),
    so each q-mean is linear in (z_l, x).

    Conditional (``cfg.classes`` = K): the pass starts from [x, f(c)] (h_1 = f_1([x, f(c)]);
    for ``linear`` h_l = [x, f(c)]), so q(z_L | x, c) and every q(z_{l-1} | z_l, x, c) read c.

    The features are the chain's :meth:`encode`: the engine computes them once per pass
    and hands them to ``top`` and every ``down``. Called directly with the data tensor,
    ``top`` and ``down`` compute them themselves.
    """

    top_down = True

    def __init__(self, cfg: HVAEConfig):
        super().__init__()
        self.condition_spec = spec = cfg.condition_spec
        dims, L = cfg.latent_dims, len(cfg.latent_dims)
        # D: the width of the pass's input [x, f(c)] (x alone when unconditional).
        D = math.prod(cfg.data_shape) + (spec.feature_dim if spec is not None else 0)
        stages = range(1, L + 1)
        deep = cfg.architecture == "mlp" and all(cfg.widths(l) for l in stages)
        # width[l - 1]: the size of h_l (the identity keeps the input's).
        width = [cfg.widths(l)[-1] if deep else D for l in stages]
        blocks = []
        for l in stages:
            if deep:
                d_in = D if l == 1 else width[l - 2]
                block = mlp([d_in, *cfg.widths(l)], cfg.activation)
                blocks.append(nn.Sequential(*block, ACTIVATIONS[cfg.activation]()))
            else:
                blocks.append(nn.Identity())
        self.blocks = nn.ModuleList(blocks)
        self.top_head = nn.Sequential(mlp([width[-1], 2 * dims[-1]]), GaussianHead(cfg.min_scale))
        # down_heads[l - 2] gives q(z_{l-1} | z_l, x) from (z_l, h_{l-1}), l = 2..L.
        self.down_heads = nn.ModuleList(
            nn.Sequential(
                cfg.net(dims[l - 1] + width[l - 2], 2 * dims[l - 2], stage=l),
                GaussianHead(cfg.min_scale),
            )
            for l in range(2, L + 1)
        )

    def encode(self, x: Tensor) -> LadderFeatures:
        """(h_1, ..., h_L) for the batch x (the ladder's deterministic bottom-up pass, from
        [x, f(c)] when conditional)."""
        h, out = beside(self, flat(x)), []
        for block in self.blocks:
            h = block(h)
            out.append(h)
        return LadderFeatures(out)

    def _features(self, x: Tensor | LadderFeatures) -> LadderFeatures:
        return x if isinstance(x, LadderFeatures) else self.encode(x)

    def top(self, x: Tensor | LadderFeatures) -> Independent:
        return self.top_head(self._features(x)[-1])

    def down(self, l: int, z: Tensor, x: Tensor | LadderFeatures) -> Independent:
        h = self._features(x)
        return self.down_heads[l - 2](torch.cat([z, h[l - 2]], dim=-1))


class MarkovPosterior(lk.PosteriorChain):
    """q(z_1 | x) Π q(z_l | z_{l-1}): a Markov forward chain, each step a Gaussian head.

    Conditional (``cfg.classes`` = K): q(z_1 | x, c) from [x, f(c)] and q(z_l | z_{l-1}, c)
    from [z_{l-1}, f(c)] (the exact posterior of a Markov p has this form: given z_{l-1},
    z_l no longer depends on x, but it does on c)."""

    bottom_up = True

    def __init__(self, cfg: HVAEConfig):
        super().__init__()
        self.condition_spec = spec = cfg.condition_spec
        f = spec.feature_dim if spec is not None else 0
        dims, D = cfg.latent_dims, math.prod(cfg.data_shape)
        self.first_head = nn.Sequential(
            cfg.net(D + f, 2 * dims[0], stage=1), GaussianHead(cfg.min_scale)
        )
        # up_heads[l - 2] gives q(z_l | z_{l-1}), l = 2..L.
        self.up_heads = nn.ModuleList(
            nn.Sequential(
                cfg.net(dims[l - 2] + f, 2 * dims[l - 1], stage=l), GaussianHead(cfg.min_scale)
            )
            for l in range(2, len(dims) + 1)
        )

    def first(self, x: Tensor) -> Independent:
        return self.first_head(beside(self, flat(x)))

    def up(self, l: int, z: Tensor, x: Tensor) -> Independent:
        return self.up_heads[l - 2](beside(self, z))
