"""The VampPrior VAE (Tomczak & Welling 2018, "VAE with a VampPrior", eq. 9):

    p(z) = (1/K) Σ_{k=1..K} q(z | u_k),   p(x | z) the VAE's decoder,   q(z | x) = N(μ, diag σ²)

with u_1..u_K learned pseudo-inputs in data space. The prior runs q's encoder on the
pseudo-inputs, so the encoder is a module both chains use: the model owns it in
``model.shared["encoder"]`` and each chain holds a ``latentkit.chains.SharedModule``
reference (saved once, converted by ``.to()``/``.double()`` with the model, kept by
``with_posterior``: replacing q does not change p).

With ``architecture="linear"`` and a Gaussian likelihood of learned or fixed scale,
x = W z + c + noise, so p(x) = (1/K) Σ_k N(x; W μ_k + c, W diag σ_k² Wᵀ + diag s²), a
Gaussian mixture: ``log_marginal`` gives log p(x) exactly (``latentkit.exact_log_prob``).
"""

from __future__ import annotations

import math

import attrs
import torch
from einops import rearrange
from torch import Tensor, nn
from torch.distributions import (
    Categorical,
    Distribution,
    Independent,
    MixtureSameFamily,
    MultivariateNormal,
    Normal,
)

import latentkit as lk
from latentkit.arguments import check_count, describe_value
from latentkit.blocks import DecoderChain, EncoderDecoderConfig, GaussianEncoder
from latentkit.chains import SharedModule
from latentkit.config import ruled

__all__ = ["VampConfig", "VampGenerative", "VampPosterior", "build_vamp"]


@ruled("int > 0")
def _count(instance, attribute, value) -> None:
    check_count(value, repr(attribute.name), error=lk.ConfigError)


def _check_parts(where: str, encoder: object, cfg: object = None, *, with_cfg: bool = False):
    """A chain's constructor arguments: the model's shared encoder (a ``SharedModule``
    reference) and, for the generative chain, a :class:`VampConfig`."""
    if with_cfg and not isinstance(cfg, VampConfig):
        raise lk.ConfigError(f"{where}: cfg must be a VampConfig, got {describe_value(cfg)}")
    if not isinstance(encoder, SharedModule):
        raise lk.InputError(
            f"{where}: encoder must be a latentkit.chains.SharedModule (the model's shared "
            f"encoder, referenced), got {describe_value(encoder)}"
        )


@attrs.frozen(kw_only=True)
class VampConfig(EncoderDecoderConfig):
    """``vae``'s fields (``latentkit.blocks.EncoderDecoderConfig``) plus the prior's size.

    The pseudo-inputs are free parameters of shape ``[K, *data_shape]``, initialised N(0, 1).

    Attributes:
        num_pseudo_inputs: K, the number of mixture components of the VampPrior (≥ 1).
    """

    num_pseudo_inputs: int = attrs.field(default=16, validator=_count)


VampEncoder = GaussianEncoder.from_config  # the old name: x ↦ N(μ(x), diag σ²(x)) of a config


class VampPosterior(lk.SingleLayerPosterior):
    """q(z | x) = the shared encoder at x."""

    def __init__(self, encoder: SharedModule):
        _check_parts("VampPosterior", encoder)
        super().__init__()
        self.encoder = encoder

    def forward(self, x: Tensor) -> Independent:
        return self.encoder(x)


class VampGenerative(DecoderChain):
    """p(z) = (1/K) Σ_k q(z | u_k); p(x | z) as in ``vae``."""

    def __init__(self, cfg: VampConfig, encoder: SharedModule):
        _check_parts("VampGenerative", encoder, cfg, with_cfg=True)
        super().__init__(cfg)
        del self.prior_loc, self.prior_scale  # the VAE's N(0, I) prior is not used
        self.encoder = encoder
        self.pseudo_inputs = nn.Parameter(torch.randn(cfg.num_pseudo_inputs, *cfg.data_shape))

    def components(self) -> Normal:
        """q(z | u_k) for k = 1..K, per dimension: ``Normal`` with loc, scale ``[K, d]``."""
        return self.encoder(self.pseudo_inputs).base_dist

    def prior(self, n: int) -> Distribution:
        q_u = self.components()
        K, d = q_u.loc.shape
        weights = Categorical(logits=q_u.loc.new_zeros(n, K), validate_args=False)
        parts = Normal(q_u.loc.expand(n, K, d), q_u.scale.expand(n, K, d), validate_args=False)
        return MixtureSameFamily(weights, Independent(parts, 1), validate_args=False)

    def linear_gaussian(self) -> None:
        """Not linear-Gaussian: the prior is a mixture (see :meth:`log_marginal`)."""
        return None

    def log_marginal(self, x: Tensor) -> Tensor | None:
        """log p(x) = logsumexp_k log N(x; W μ_k + c, W diag σ_k² Wᵀ + diag s²) − log K, for a
        linear decoder with a Gaussian likelihood of learned or fixed scale; else ``None``."""
        noise_var = self.lik.linear_gaussian_variance()
        if not self.linear or noise_var is None:
            return None
        layer = self.decoder[0]
        W, c = layer.weight, layer.bias  # [D, d], [D]
        q_u = self.components()
        mean = q_u.loc @ W.T + c  # [K, D]
        cov = torch.einsum("ia,ka,ja->kij", W, q_u.scale**2, W) + torch.diag_embed(noise_var)
        flat = rearrange(x, "b ... -> b 1 (...)")
        log_parts = MultivariateNormal(mean, cov, validate_args=False).log_prob(flat)  # [n, K]
        return torch.logsumexp(log_parts, dim=-1) - math.log(mean.shape[0])


def build_vamp(cfg: VampConfig) -> lk.LatentModel:
    """The VampPrior VAE described by ``cfg`` (the factory registered as ``vamp``)."""
    if not isinstance(cfg, VampConfig):
        raise lk.ConfigError(f"build_vamp: cfg must be a VampConfig, got {describe_value(cfg)}")
    encoder = GaussianEncoder.from_config(cfg)
    shared = SharedModule(encoder)
    return lk.LatentModel(
        VampGenerative(cfg, shared), VampPosterior(shared), shared={"encoder": encoder}
    )
