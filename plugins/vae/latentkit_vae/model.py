"""The VAE: p(z) = N(0, I), p(x|z) from a decoder, q(z|x) = N(μ(x), diag σ²(x)).

Both chains are latentkit's ready-made one-latent-layer blocks (``latentkit.blocks``):
``DecoderChain`` and ``GaussianEncoder``, configured by the fields of
``EncoderDecoderConfig``. ``architecture="linear"`` with a Gaussian likelihood is
probabilistic PCA / factor analysis (x = Wz + c + noise): its chain is linear-Gaussian, so
the exact oracles (``latentkit.exact_log_prob``, ``latentkit.exact_posterior``) apply.
"""

from __future__ import annotations

import attrs

import latentkit as lk
from latentkit.blocks import DecoderChain, EncoderDecoderConfig, GaussianEncoder

__all__ = ["GaussianEncoder", "VAEConfig", "VAEGenerative", "build_vae"]


@attrs.frozen(kw_only=True)
class VAEConfig(EncoderDecoderConfig):
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


VAEGenerative = DecoderChain
"""p(z) = N(0, I); p(x | z) = likelihood(decoder(z)) (``latentkit.blocks.DecoderChain``)."""


def build_vae(cfg: VAEConfig, *, beta: float = 1.0) -> lk.LatentModel:
    """The VAE described by ``cfg`` (the factory registered as ``vae``), trained by default
    with the ``elbo`` objective at KL weight ``beta``."""
    objective_config = {"beta": beta} if beta != 1.0 else {}
    return lk.LatentModel(
        DecoderChain(cfg),
        GaussianEncoder.from_config(cfg),
        objective="elbo",
        objective_config=objective_config,
    )
