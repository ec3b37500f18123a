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
from latentkit.arguments import check_number, describe_value
from latentkit.blocks import DecoderChain, EncoderDecoderConfig, GaussianEncoder
from latentkit.config import class_count

__all__ = ["GaussianEncoder", "VAEConfig", "VAEGenerative", "build_vae"]


@attrs.frozen(kw_only=True)
class VAEConfig(EncoderDecoderConfig):
    # The fields, and their documentation, are EncoderDecoderConfig's (and ``classes``);
    # ``--help`` reads a config class's own docstring, so this one is that docstring under
    # the model's title.
    __doc__ = (
        "Configuration of the ``vae`` model.\n"
        + EncoderDecoderConfig.__doc__.partition("\n")[2].rstrip()
        + "\n        classes: 0 (default) for a VAE; K ≥ 2 for a conditional VAE on class"
        "\n            labels 0..K−1: p(z | c), p(x | z, c), q(z | x, c) (docs/conditional.md).\n"
    )

    classes: int = attrs.field(default=0, validator=class_count)


VAEGenerative = DecoderChain
"""p(z) = N(0, I); p(x | z) = likelihood(decoder(z)) (``latentkit.blocks.DecoderChain``)."""


def build_vae(cfg: VAEConfig, *, beta: float = 1.0) -> lk.LatentModel:
    """The VAE described by ``cfg`` (the factory registered as ``vae``), trained by default
    with the ``elbo`` objective at KL weight ``beta``."""
    if not isinstance(cfg, VAEConfig):
        raise lk.ConfigError(f"build_vae: cfg must be a VAEConfig, got {describe_value(cfg)}")
    check_number(beta, "build_vae: beta", above=0.0, error=lk.ConfigError)
    objective_config = {"beta": beta} if beta != 1.0 else {}
    condition = lk.ConditionSpec.of_classes(cfg.classes)
    return lk.LatentModel(
        DecoderChain(cfg, condition=condition),
        GaussianEncoder.from_config(cfg, condition=condition),
        objective="elbo",
        objective_config=objective_config,
    )
