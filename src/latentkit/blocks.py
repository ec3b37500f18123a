"""Ready-made configurations and chains for plugin authors.

A model with one Gaussian latent layer z:

    p(z) = N(0, I),   p(x | z) = likelihood(decoder(z)),   q(z | x) = N(μ(x), diag σ²(x))

* :class:`EncoderDecoderConfig`: the fields such a model is configured by (shape of x,
  dimension of z, the networks' architecture, the likelihood), validated; a plugin's config
  subclasses it and adds its own fields (the ``vae``, ``vamp`` and ``iaf`` plugins do).
* :class:`DecoderChain`: the generative chain above (linear-Gaussian, so the exact oracles
  apply, for a linear decoder with a Gaussian likelihood of learned or fixed scale).
* :class:`GaussianEncoder`: q(z | x) from an MLP (or one linear map) of the flattened x and a
  :class:`~latentkit.networks.GaussianHead`; optionally with extra context features (an
  inverse autoregressive flow reads them).

A diffusion: :class:`EpsNetworkConfig`, the fields of its ε-network
(``latentkit.networks.EpsMLP`` for vectors, ``EpsUNet`` for images) and the network they
describe (the ``ddpm`` and ``vdm`` plugins' configs subclass it).

Submodule names (``decoder``, ``net``, ``head``) are what the state-dict keys carry.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import attrs
import torch
from torch import Tensor
from torch.distributions import Independent

from latentkit.arguments import MAX_COUNT, check_count, check_shape, checked
from latentkit.chains import GenerativeChain, SingleLayerPosterior
from latentkit.conditions import ConditionSpec
from latentkit.config import one_of, positive_ints, ruled
from latentkit.distributions import diag_normal, standard_normal
from latentkit.errors import ConfigError
from latentkit.likelihoods import make_likelihood
from latentkit.networks import (
    ACTIVATIONS,
    EpsMLP,
    EpsUNet,
    GaussianHead,
    check_unet_shape,
    mlp,
)
from latentkit.oracles import LinearGaussianSpec

__all__ = ["DecoderChain", "EncoderDecoderConfig", "EpsNetworkConfig", "GaussianEncoder"]


def _positive(kind: type) -> Any:
    """An attrs validator: an ``int`` in [1, MAX_COUNT] (bools refused) or a finite ``float``
    > 0 (an int allowed), else a ConfigError naming the field, in attrs' words."""

    @ruled(f"{kind.__name__} > 0")
    def check(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        name = attribute.name
        kinds = (int,) if kind is int else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds):
            raise ConfigError(f"{name!r} must be {kind.__name__} > 0, got {value!r}")
        if not value > 0:  # NaN too
            raise ConfigError(f"{name!r} must be > 0: {value!r}")
        if kind is int and value > MAX_COUNT:
            raise ConfigError(f"{name!r} must be at most {MAX_COUNT:,}: {value!r}")
        if value == math.inf:
            raise ConfigError(f"{name!r} must be finite: {value!r}")

    return check


@attrs.frozen(kw_only=True)
class EncoderDecoderConfig:
    """Configuration of a model with one Gaussian latent layer, an encoder and a decoder.

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
        default=(64,), converter=tuple, validator=positive_ints()
    )
    latent_dim: int = attrs.field(default=8, validator=_positive(int))
    architecture: str = attrs.field(default="mlp", validator=one_of("linear", "mlp"))
    hidden: tuple[int, ...] = attrs.field(
        default=(256, 256), converter=tuple, validator=positive_ints(0)
    )
    activation: str = attrs.field(default="silu", validator=one_of(*ACTIVATIONS))
    likelihood: str = attrs.field(
        default="gaussian", validator=one_of("gaussian", "bernoulli", "discretized")
    )
    likelihood_scale: str = attrs.field(
        default="learned", validator=one_of("learned", "predicted", "fixed")
    )
    fixed_scale: float = attrs.field(default=1.0, validator=_positive(float))
    min_scale: float = attrs.field(default=1e-4, validator=_positive(float))

    @property
    def widths(self) -> tuple[int, ...]:
        """The hidden widths the networks use: ``hidden`` for ``mlp``, none for ``linear``."""
        return self.hidden if self.architecture == "mlp" else ()


_DECODER_FIELDS = (
    "data_shape",
    "latent_dim",
    "widths",
    "activation",
    "likelihood",
    "likelihood_scale",
    "fixed_scale",
)


class DecoderChain(GenerativeChain):
    """p(z) = N(0, I); p(x | z) = likelihood(decoder(z)), the decoder an MLP (or one linear
    map) from z to the likelihood's parameters, flat. Built from an
    :class:`EncoderDecoderConfig` (or any object with its fields).

    With ``condition`` (a :class:`~latentkit.ConditionSpec`), a conditional chain: the
    prior p(z | c) = N(A f(c), diag exp(2 B f(c))) (A = B = 0 at the start: N(0, I)) and
    p(x | z, c) = likelihood(decoder([z, f(c)])), f(c) the condition's features (one-hot
    for a class; ``ConditionSpec.features``)."""

    def __init__(self, cfg: EncoderDecoderConfig, *, condition: ConditionSpec | None = None):
        missing = [f for f in _DECODER_FIELDS if not hasattr(cfg, f)]
        if missing:
            raise ConfigError(
                f"DecoderChain takes an EncoderDecoderConfig (or an object with its fields); "
                f"{type(cfg).__name__} lacks {missing}"
            )
        super().__init__(cfg.data_shape, [(cfg.latent_dim,)])
        D = math.prod(cfg.data_shape)
        scale = cfg.fixed_scale if cfg.likelihood_scale == "fixed" else cfg.likelihood_scale
        self.lik = make_likelihood(cfg.likelihood, cfg.data_shape, scale)
        self.condition_spec = condition
        f = condition.feature_dim if condition is not None else 0
        widths = [cfg.latent_dim + f, *cfg.widths, D * self.lik.num_params]
        self.decoder = mlp(widths, cfg.activation)
        self.register_buffer("prior_loc", torch.zeros(cfg.latent_dim))
        self.register_buffer("prior_scale", torch.ones(cfg.latent_dim))
        if condition is not None:  # p(z | c): its mean and log-scale linear in f(c)
            self.prior_map = torch.nn.Parameter(torch.zeros(f, 2 * cfg.latent_dim))
        self.linear = cfg.architecture == "linear"

    def _features(self, n: int, like: Tensor) -> Tensor:
        return self.condition_spec.features(self.condition_for(n), like.dtype)

    def _prior_params(self, n: int) -> tuple[Tensor, Tensor]:
        """p(z | c)'s mean and scale, ``[n, d]`` each."""
        loc, log_scale = (self._features(n, self.prior_map) @ self.prior_map).chunk(2, -1)
        return loc, log_scale.exp()

    def prior(self, n: int) -> Independent:
        if self.condition_spec is None:
            return standard_normal(n, (self.prior_loc.shape[0],), like=self.prior_loc)
        return diag_normal(*self._prior_params(n))

    def likelihood(self, z1: Tensor):
        if self.condition_spec is not None:
            z1 = torch.cat([z1, self._features(z1.shape[0], z1)], dim=-1)
        return self.lik.from_flat(self.decoder(z1))

    def linear_gaussian(self) -> LinearGaussianSpec | None:
        """x = W z + c + noise for a linear decoder with a Gaussian likelihood of learned or
        fixed scale; else ``None``."""
        var = self.lik.linear_gaussian_variance()
        if not self.linear or var is None:
            return None
        layer, d = self.decoder[0], self.prior_loc.shape[0]
        if self.condition_spec is None:
            return LinearGaussianSpec(
                prior_mean=self.prior_loc,
                prior_var=self.prior_scale**2,
                transitions=(),
                weight=layer.weight,
                bias=layer.bias,
                noise_var=var,
            )
        # One condition at a time (latentkit.exact_log_prob binds one value per call).
        loc, scale = (t[0] for t in self._prior_params(1))
        f = self._features(1, layer.weight)[0]
        return LinearGaussianSpec(
            prior_mean=loc,
            prior_var=scale**2,
            transitions=(),
            weight=layer.weight[:, :d],
            bias=layer.bias + layer.weight[:, d:] @ f,
            noise_var=var,
        )


class GaussianEncoder(SingleLayerPosterior):
    """q(z | x) = N(μ(x), diag σ²(x)), σ = softplus(raw) + ``min_scale``: an MLP through
    ``hidden`` (empty: one linear map) of the flattened x gives [μ, raw] (and, with
    ``context_dim`` > 0, ``context_dim`` features more, which :meth:`parts` returns). With
    ``condition``, q(z | x, c): the condition's features are read beside x.

    Also a plain module (``encoder(x)`` is the distribution): a model may share it between
    its chains (``latentkit.chains.SharedModule``), as a VampPrior's prior does.
    """

    @checked
    def __init__(
        self,
        data_shape: Sequence[int],
        latent_dim: int,
        hidden: Sequence[int] = (),
        *,
        activation: str = "silu",
        min_scale: float = 1e-4,
        context_dim: int = 0,
        condition: ConditionSpec | None = None,
    ):
        check_count(latent_dim, "GaussianEncoder: latent_dim", error=ConfigError)
        check_count(context_dim, "GaussianEncoder: context_dim", low=0, error=ConfigError)
        check_shape(data_shape, "GaussianEncoder: data_shape", error=ConfigError)
        super().__init__()
        self.latent_dim, self.context_dim = int(latent_dim), int(context_dim)
        self.condition_spec = condition
        f = condition.feature_dim if condition is not None else 0
        sizes = [math.prod(data_shape) + f, *hidden, 2 * self.latent_dim + self.context_dim]
        self.net = mlp(sizes, activation)
        self.head = GaussianHead(min_scale)

    @classmethod
    def from_config(cls, cfg: EncoderDecoderConfig, **options: Any) -> GaussianEncoder:
        """The encoder an :class:`EncoderDecoderConfig` describes (``options``: e.g.
        ``context_dim``)."""
        return cls(
            cfg.data_shape,
            cfg.latent_dim,
            cfg.widths,
            activation=cfg.activation,
            min_scale=cfg.min_scale,
            **options,
        )

    def parts(self, x: Tensor) -> tuple[Independent, Tensor | None]:
        """q(z | x) and the context features (``[batch, context_dim]``; ``None`` without)."""
        flat = x.flatten(1)  # "b ... -> b (...)"
        if self.condition_spec is not None:  # q(z | x, c): the condition's features beside x
            c = self.condition_spec.features(self.condition_for(x.shape[0]), flat.dtype)
            flat = torch.cat([flat, c], dim=-1)
        out = self.net(flat)
        if not self.context_dim:
            return self.head(out), None
        gaussian, context = out.split((2 * self.latent_dim, self.context_dim), -1)
        return self.head(gaussian), context

    def forward(self, x: Tensor) -> Independent:
        return self.parts(x)[0]


def _network_kind(instance: EpsNetworkConfig, attribute: attrs.Attribute, value: Any) -> None:
    kinds = type(instance).NETWORKS
    if value not in kinds:  # attrs' ``in_`` words, for a tuple that a subclass may widen
        raise ConfigError(f"{attribute.name!r} must be in {kinds!r} (got {value!r})")
    if instance.resolved_network == "unet":
        check_unet_shape(instance.data_shape, instance.channel_mult)


@attrs.frozen(kw_only=True)
class EpsNetworkConfig:
    """The fields of a diffusion's ε-network and :meth:`eps_network`, the network they
    describe: ``latentkit.networks.EpsMLP`` for vectors, ``EpsUNet`` for images. A diffusion
    plugin's config subclasses it and adds its own fields; ``NETWORKS`` holds the kinds
    ``network`` takes (a subclass may add kinds of its own, and build those itself).

    Attributes:
        data_shape: one example: ``(D,)`` vectors or ``(C, H, W)`` images.
        network: ε_θ: ``mlp``, ``unet`` (needs ``(C, H, W)``, H and W divisible by
            2^(len(channel_mult) − 1)) or ``auto`` (unet for images, else mlp).
        hidden: MLP hidden widths.
        activation: MLP activation (silu, relu, gelu, tanh, softplus).
        channels: U-Net base width.
        channel_mult: U-Net width multipliers, one per resolution level.
    """

    NETWORKS: ClassVar[tuple[str, ...]] = ("auto", "mlp", "unet")

    data_shape: tuple[int, ...] = attrs.field(
        default=(64,), converter=tuple, validator=positive_ints()
    )
    network: str = attrs.field(default="auto", validator=_network_kind)
    hidden: tuple[int, ...] = attrs.field(
        default=(256, 256), converter=tuple, validator=positive_ints()
    )
    activation: str = attrs.field(default="silu", validator=one_of(*ACTIVATIONS))
    channels: int = attrs.field(default=32, validator=_positive(int))
    channel_mult: tuple[int, ...] = attrs.field(
        default=(1, 2), converter=tuple, validator=positive_ints()
    )

    @property
    def resolved_network(self) -> str:
        """``network``, with ``auto`` resolved by ``data_shape``: ``unet`` for images
        ``(C, H, W)``, else ``mlp``."""
        if self.network == "auto":
            return "unet" if len(self.data_shape) == 3 else "mlp"
        return self.network

    def eps_network(
        self, *, out_groups: int = 1, input_copies: int = 1, condition_dim: int = 0
    ) -> EpsMLP | EpsUNet:
        """The ε-network of :attr:`resolved_network` (``mlp`` or ``unet``) with
        ``out_groups`` output groups, its input ``input_copies`` times as wide as x_t (x_t and
        features of it, joined along axis 1); with ``condition_dim`` > 0 a conditional one,
        ε_θ(x_t, t, c) reading ``condition_dim`` features of c (``ConditionSpec.feature_dim``;
        0: unconditional, the network and its state-dict keys as they always were)."""
        kind = self.resolved_network
        if kind == "unet":
            in_channels = input_copies * self.data_shape[0]
            return EpsUNet(
                self.data_shape,
                self.channels,
                self.channel_mult,
                out_groups=out_groups,
                in_channels=in_channels,
                condition_dim=condition_dim,
            )
        if kind == "mlp":
            return EpsMLP(
                self.data_shape,
                self.hidden,
                out_groups=out_groups,
                activation=self.activation,
                in_features=input_copies * math.prod(self.data_shape),
                condition_dim=condition_dim,
            )
        raise ConfigError(f"latentkit has no ε-network of kind {kind!r}")
