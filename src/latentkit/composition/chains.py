"""The joined chains: p_A(x | z) with p_B(z, h) as its prior, and q_A(z | x) then q_B(h | z)."""

from __future__ import annotations

from typing import Any

from torch import Tensor
from torch.distributions import Distribution

from latentkit.chains import GenerativeChain, LinearGaussianSpec, PosteriorChain
from latentkit.errors import EstimatorError

__all__ = ["ComposedEncoding", "ComposedGenerative", "ComposedPosterior", "bottom_up_capable"]


class ComposedGenerative(GenerativeChain):
    """p_A(x | z) with p_B(z, h) as its prior: layers z_1..z_La (A's), then h_1..h_Lb (B's).

    Submodules ``outer`` (A's generative chain) and ``inner`` (B's). Layer La + 1 is h_1, and
    its transition p(z_La | h_1) is B's likelihood.
    """

    def __init__(self, outer: GenerativeChain, inner: GenerativeChain):
        super().__init__(outer.data_shape, outer.latent_shapes + inner.latent_shapes)
        self.outer = outer
        self.inner = inner
        self.outer_layers = outer.num_layers

    def prior(self, n: int) -> Distribution:
        """p_B(h_Lb)."""
        return self.inner.prior(n)

    def transition(self, l: int, z: Tensor) -> Distribution:
        """p(z_{l-1} | z_l): A's for l ≤ La, B's likelihood p_B(z_La | h_1) at l = La + 1, B's
        transitions above."""
        La = self.outer_layers
        if l <= La:
            return self.outer.transition(l, z)
        if l == La + 1:
            return self.inner.likelihood(z)
        return self.inner.transition(l - La, z)

    def likelihood(self, z1: Tensor) -> Distribution:
        """p_A(x | z_1)."""
        return self.outer.likelihood(z1)

    def linear_gaussian(self) -> LinearGaussianSpec | None:
        """Both parts linear-Gaussian: the joined spec, B's likelihood becoming the transition
        p(z_La | h_1); else None. Then p(x) = N(W_A μ_B + b_A, W_A Σ_B W_Aᵀ + Ψ_A) for one-layer A,
        with N(μ_B, Σ_B) B's marginal, and the exact oracles apply."""
        a, b = self.outer.linear_gaussian(), self.inner.linear_gaussian()
        if a is None or b is None:
            return None
        return LinearGaussianSpec(
            prior_mean=b.prior_mean,
            prior_var=b.prior_var,
            transitions=(*a.transitions, (b.weight, b.bias, b.noise_var), *b.transitions),
            weight=a.weight,
            bias=a.bias,
            noise_var=a.noise_var,
        )


# --- the posterior chain ----------------------------------------------------------------------


class ComposedEncoding:
    """One pass's encoding: A's (``outer``), and B's of the z_La drawn in this pass (``inner``,
    set when q(h_1 | z_La) is built)."""

    __slots__ = ("inner", "outer")

    def __init__(self, outer: Any):
        self.outer = outer
        self.inner: Any = None


def bottom_up_capable(q: PosteriorChain, layers: int) -> bool:
    # A one-layer chain's top factor is its first: q(z_L | x) = q(z_1 | x) when L = 1.
    return q.bottom_up or (layers == 1 and q.top_down)


def _first(q: PosteriorChain, h: Any) -> Distribution:
    return q.first(h) if q.bottom_up else q.top(h)


class ComposedPosterior(PosteriorChain):
    """q_A(z_1..z_La | x) then q_B(h_1..h_Lb | z_La), bottom-up (Markov between the parts).

    Each part must be bottom-up, or one layer (whose top factor is its first). Submodules
    ``outer`` and ``inner``. The engine's pass encodes x once (:class:`ComposedEncoding`);
    called directly with the data, the layers above h_1 use B's encoding of the z_La that the
    last call of ``up(La + 1, ...)`` with that same tensor saw.
    """

    bottom_up = True

    def __init__(self, outer: PosteriorChain, inner: PosteriorChain, outer_layers: int):
        super().__init__()
        self.outer = outer
        self.inner = inner
        self.outer_layers = int(outer_layers)
        self.__dict__["_direct"] = (None, None)  # (data tensor, B's encoding): direct calls

    def encode(self, x: Tensor) -> ComposedEncoding:
        return ComposedEncoding(self.outer.encode(x))

    @staticmethod
    def _outer(x: Any) -> Any:
        return x.outer if isinstance(x, ComposedEncoding) else x

    def first(self, x: Any) -> Distribution:
        """q_A(z_1 | x)."""
        return _first(self.outer, self._outer(x))

    def up(self, l: int, z: Tensor, x: Any) -> Distribution:
        """q_A(z_l | z_{l-1}, x) for l ≤ La; q_B(h_1 | z_La) at l = La + 1; above, B's
        q_B(h_{l'} | h_{l'-1}) with l' = l − La."""
        La = self.outer_layers
        if l <= La:
            return self.outer.up(l, z, self._outer(x))
        if l == La + 1:
            h = self.inner.encode(z)
            if isinstance(x, ComposedEncoding):
                x.inner = h
            else:
                self.__dict__["_direct"] = (x, h)
            return _first(self.inner, h)
        if isinstance(x, ComposedEncoding):
            h = x.inner
        else:
            seen, h = self.__dict__["_direct"]
            h = h if seen is x else None
        if h is None:
            raise EstimatorError(
                f"q(h_{l - La} | h_{l - La - 1}) of a composed model needs the prior model's "
                f"encoding of z_{La}: build q(h_1 | z_{La}) first, up({La + 1}, z_{La}, x), "
                "with the same x (or the pass's encode(x))"
            )
        return self.inner.up(l - La, z, h)
