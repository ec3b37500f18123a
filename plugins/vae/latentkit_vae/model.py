"""The VAE: p(z) = N(0, I), p(x|z) from a decoder, q(z|x) = N(μ(x), diag σ²(x)).

``architecture="linear"`` with a Gaussian likelihood is probabilistic PCA / factor
analysis (x = Wz + c + noise): its chain is linear-Gaussian, so the exact oracles
(``latentkit.exact_log_prob``, ``latentkit.exact_posterior``) apply.
"""

from __future__ import annotations

import math

import attrs
import torch
from attrs import validators as v
from torch import Tensor

import latentkit as lk
from latentkit.distributions import standard_normal
from latentkit.networks import ACTIVATIONS, GaussianHead, mlp


def _positive_ints(instance, attribute, value) -> None:
    if not value or not all(isinstance(d, int) and d > 0 for d in value):
        raise ValueError(f"{attribute.name!r} must be a non-empty tuple of ints > 0, got {value!r}")


def _ints_ge0(instance, attribute, value) -> None:
    if not all(isinstance(d, int) and d > 0 for d in value):
        raise ValueError(f"{attribute.name!r} must be a tuple of ints > 0, got {value!r}")


@attrs.frozen(kw_only=True)
class VAEConfig:
    """Configuration of the ``vae`` model.

    Attributes:
        data_shape: shape of one example, e.g. (64,) or (1, 28, 28); flattened by the nets.
        latent_dim: dimension of z (> 0).
        architecture: ``linear`` (probabilistic PCA when Gaussian) or ``mlp``.
        hidden: hidden layer widths of the MLP encoder and decoder.
        activation: one of silu, relu, gelu, tanh, softplus.
        likelihood: gaussian, bernoulli (binary data) or discretized (8-bit data in [-1, 1]).
        likelihood_scale: ``learned`` (one scale per dimension), ``predicted`` (by the
            decoder) or ``fixed`` (``fixed_scale``); Gaussian and discretized only.
        fixed_scale: the scale when ``likelihood_scale="fixed"`` (> 0).
        min_scale: floor added to every posterior scale (> 0), for stability.
    """

    data_shape: tuple[int, ...] = attrs.field(
        default=(64,), converter=tuple, validator=_positive_ints
    )
    latent_dim: int = attrs.field(default=8, validator=[v.instance_of(int), v.gt(0)])
    architecture: str = attrs.field(default="mlp", validator=v.in_(("linear", "mlp")))
    hidden: tuple[int, ...] = attrs.field(default=(256, 256), converter=tuple, validator=_ints_ge0)
    activation: str = attrs.field(default="silu", validator=v.in_(tuple(ACTIVATIONS)))
    likelihood: str = attrs.field(
        default="gaussian", validator=v.in_(("gaussian", "bernoulli", "discretized"))
    )
    likelihood_scale: str = attrs.field(
        default="learned", validator=v.in_(("learned", "predicted", "fixed"))
    )
    fixed_scale: float = attrs.field(default=1.0, validator=v.gt(0.0))
    min_scale: float = attrs.field(default=1e-4, validator=v.gt(0.0))


class VAEGenerative(lk.GenerativeChain):
    """p(z) = N(0, I); p(x | z) = likelihood(decoder(z))."""

    def __init__(self, cfg: VAEConfig):
        super().__init__(cfg.data_shape, [(cfg.latent_dim,)])
        D = math.prod(cfg.data_shape)
        scale = cfg.fixed_scale if cfg.likelihood_scale == "fixed" else cfg.likelihood_scale
        self.lik = lk.make_likelihood(cfg.likelihood, cfg.data_shape, scale)
        sizes = [cfg.latent_dim, D * self.lik.num_params]
        if cfg.architecture == "mlp":
            sizes[1:1] = cfg.hidden
        self.decoder = mlp(sizes, cfg.activation)
        self.register_buffer("prior_loc", torch.zeros(cfg.latent_dim))
        self.register_buffer("prior_scale", torch.ones(cfg.latent_dim))
        self.linear = cfg.architecture == "linear"

    def prior(self, n: int):
        return standard_normal(n, (self.prior_loc.shape[0],), like=self.prior_loc)

    def likelihood(self, z1: Tensor):
        return self.lik.from_flat(self.decoder(z1))

    def linear_gaussian(self) -> lk.LinearGaussianSpec | None:
        var = self.lik.linear_gaussian_variance()
        if not self.linear or var is None:
            return None
        layer = self.decoder[0]
        return lk.LinearGaussianSpec(
            prior_mean=self.prior_loc,
            prior_var=self.prior_scale**2,
            transitions=(),
            weight=layer.weight,
            bias=layer.bias,
            noise_var=var,
        )


class GaussianEncoder(lk.SingleLayerPosterior):
    """q(z | x) = N(μ(x), diag σ²(x)) from a linear map or an MLP of the flattened x."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        D = math.prod(cfg.data_shape)
        sizes = [D, 2 * cfg.latent_dim]
        if cfg.architecture == "mlp":
            sizes[1:1] = cfg.hidden
        self.net = mlp(sizes, cfg.activation)
        self.head = GaussianHead(cfg.min_scale)

    def forward(self, x: Tensor):
        return self.head(self.net(x.flatten(1)))  # "b ... -> b (...)"


def build_vae(cfg: VAEConfig, *, beta: float = 1.0) -> lk.LatentModel:
    """The VAE described by ``cfg`` (the factory registered as ``vae``), trained by default
    with the ``elbo`` objective at KL weight ``beta``."""
    objective_config = {"beta": beta} if beta != 1.0 else {}
    return lk.LatentModel(
        VAEGenerative(cfg),
        GaussianEncoder(cfg),
        objective="elbo",
        objective_config=objective_config,
    )
