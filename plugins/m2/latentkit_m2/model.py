"""M2 (Kingma et al. 2014, "Semi-supervised learning with deep generative models", §2.2):
a class label y and a continuous latent z generate x.

    p(y) = Cat(1/K),   p(z) = N(0, I),   p(x | y, z) = likelihood(decoder([z, e_y]))
    q(z | x, y) = N(μ(x, y), diag σ²(x, y)),   q(y | x) = Cat(softmax(classifier(x)))

e_y is the one-hot of y. As a latentkit conditional model (``docs/conditional.md``) the
condition is y (``ConditionSpec(num_classes=K)``): ``model.given(y)`` is the labelled model
p(x, z | y) with q(z | x, y), so ``lk.elbo(model, x, condition=y)`` is ELBO(x | y), the
paper's labelled bound −L(x, y) less log p(y). The classifier q(y | x) is
``model.posterior.classify(x)``; the generative chain's ``label_log_prior()`` is log p(y),
which ``lk.marginal_log_prob`` sums the label out with.

``architecture="linear"`` with a Gaussian likelihood of learned or fixed scale makes each
member p(x, z | y) linear-Gaussian (x = W z + V e_y + b + noise), so the exact oracles
apply one label at a time (``lk.exact_log_prob(model, x, condition=y)``).
"""

from __future__ import annotations

import math

import attrs
import torch
from torch import Tensor
from torch.distributions import Categorical

import latentkit as lk
from latentkit.arguments import describe_value
from latentkit.blocks import EncoderDecoderConfig, GaussianEncoder
from latentkit.config import int_at_least, one_of, positive_ints, ruled
from latentkit.distributions import standard_normal
from latentkit.networks import ACTIVATIONS, mlp

__all__ = ["M2Config", "M2Generative", "M2Posterior", "build_m2"]

PAPER_N = 50_000
"""N of the paper's α = 0.1·N: its MNIST training set (50,000 images; 10,000 validation)."""


@ruled("int ≥ 2")
def _classes(instance: object, attribute: attrs.Attribute, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 2 <= value <= 100_000:
        raise lk.ConfigError(f"{attribute.name!r} must be an int in [2, 100000], got {value!r}")


@ruled("finite float ≥ 0")
def _weight(instance: object, attribute: attrs.Attribute, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise lk.ConfigError(f"{attribute.name!r} must be a number ≥ 0, got {value!r}")
    if not (math.isfinite(value) and value >= 0):
        raise lk.ConfigError(f"{attribute.name!r} must be a finite number ≥ 0, got {value!r}")


@attrs.frozen(kw_only=True)
class M2Config(EncoderDecoderConfig):
    """Configuration of the ``m2`` model (Kingma et al. 2014's M2; defaults: the paper's).

    Attributes:
        data_shape: shape of one example, e.g. (784,) or (1, 28, 28); flattened by the nets.
        latent_dim: dimension of z (the paper: 50).
        architecture: ``linear`` (each p(x, z | y) linear-Gaussian when the likelihood is
            Gaussian) or ``mlp``; the classifier's layers are ``classifier_hidden``'s.
        hidden: hidden widths of the MLP encoder q(z | x, y) and decoder p(x | y, z) (the
            paper: one layer of 500).
        activation: one of silu, relu, gelu, tanh, softplus (the paper: softplus), in the
            encoder, the decoder and the classifier.
        likelihood: gaussian, bernoulli (binary data; the paper's) or discretized.
        likelihood_scale: ``learned``, ``predicted`` or ``fixed``; Gaussian and discretized.
        fixed_scale: the scale when ``likelihood_scale="fixed"`` (> 0).
        min_scale: floor added to every posterior scale (> 0), for stability.
        classes: K, the number of labels y ∈ 0..K−1 (≥ 2; the paper: 10).
        classifier_hidden: hidden widths of the classifier q(y | x), an MLP of the flattened
            x (empty: a linear classifier, softmax regression). The paper: one layer of 500.
        alpha: the paper's α, the weight of the classification loss E_labelled[−log q(y|x)]
            against the data set's summed bound (its eq. 9); the paper takes α = 0.1·N,
            N the training set's size: the default is 0.1 × 50,000 (its MNIST split).
        labelled: N_l, the number of labelled training examples. The training loss of one
            labelled example carries −(α / N_l)·log q(y | x), so the loss summed over the
            training set is the paper's J^α (the ``m2`` objective; docs in its module).
            ``latentkit train`` fills it from the data (``[data] labels``) and refuses
            another value.
    """

    latent_dim: int = attrs.field(default=50, validator=int_at_least(1))
    hidden: tuple[int, ...] = attrs.field(
        default=(500,), converter=tuple, validator=positive_ints(0)
    )
    activation: str = attrs.field(default="softplus", validator=one_of(*ACTIVATIONS))
    classes: int = attrs.field(default=10, validator=_classes)
    classifier_hidden: tuple[int, ...] = attrs.field(
        default=(500,), converter=tuple, validator=positive_ints(0)
    )
    alpha: float = attrs.field(default=0.1 * PAPER_N, validator=_weight)
    labelled: int = attrs.field(default=100, validator=int_at_least(1))

    @property
    def classification_weight(self) -> float:
        """α / N_l: the weight of −log q(y | x) in one labelled example's loss."""
        return self.alpha / self.labelled


class M2Generative(lk.GenerativeChain):
    """p(y) = Cat(1/K), p(z) = N(0, I), p(x | y, z) = likelihood(decoder([z, e_y])): the
    condition y is read through the bound view (``self.condition_for``)."""

    def __init__(self, cfg: M2Config):
        _check_config(cfg, "M2Generative")
        super().__init__(cfg.data_shape, [(cfg.latent_dim,)])
        scale = cfg.fixed_scale if cfg.likelihood_scale == "fixed" else cfg.likelihood_scale
        self.lik = lk.make_likelihood(cfg.likelihood, cfg.data_shape, scale)
        self.condition_spec = lk.ConditionSpec(num_classes=cfg.classes)
        widths = [cfg.latent_dim + cfg.classes, *cfg.widths]
        self.decoder = mlp(
            [*widths, math.prod(cfg.data_shape) * self.lik.num_params], cfg.activation
        )
        self.latent_dim, self.linear = cfg.latent_dim, cfg.architecture == "linear"

    def label_log_prior(self) -> Tensor:
        """log p(y) for y = 0..K−1, ``[K]``: uniform, log(1/K) (made in the model's dtype:
        a float32 buffer converted to float64 would keep float32's rounding of it)."""
        k, ref = self.condition_spec.num_classes, self.decoder[0].weight
        return torch.full((k,), -math.log(k), dtype=ref.dtype, device=ref.device)

    def one_hot(self, n: int, like: Tensor) -> Tensor:
        """e_y of the bound labels for a batch of ``n`` rows, ``[n, K]`` in ``like``'s dtype."""
        return self.condition_spec.features(self.condition_for(n), like.dtype)

    def prior(self, n: int):
        return standard_normal(n, (self.latent_dim,), like=self.decoder[0].weight)

    def likelihood(self, z1: Tensor):
        return self.lik.from_flat(self.decoder(torch.cat([z1, self.one_hot(len(z1), z1)], -1)))

    def linear_gaussian(self) -> lk.LinearGaussianSpec | None:
        """x = W z + (b + V e_y) + noise given one label y (``condition_for(1)``), for a
        linear decoder and a Gaussian likelihood of learned or fixed scale; else ``None``."""
        var = self.lik.linear_gaussian_variance()
        if not self.linear or var is None:
            return None
        layer, d = self.decoder[0], self.latent_dim
        e = self.one_hot(1, layer.weight)[0]
        return lk.LinearGaussianSpec(
            prior_mean=var.new_zeros(d),
            prior_var=var.new_ones(d),
            transitions=(),
            weight=layer.weight[:, :d],
            bias=layer.bias + layer.weight[:, d:] @ e,
            noise_var=var,
        )


class M2Posterior(GaussianEncoder):
    """q(z | x, y) = N(μ(x, y), diag σ²(x, y)) (``GaussianEncoder`` reading e_y beside x),
    and the classifier q(y | x) = Cat(softmax(classifier(x))) (:meth:`classify`)."""

    def __init__(self, cfg: M2Config):
        _check_config(cfg, "M2Posterior")
        spec = lk.ConditionSpec(num_classes=cfg.classes)
        super().__init__(
            cfg.data_shape,
            cfg.latent_dim,
            cfg.widths,
            activation=cfg.activation,
            min_scale=cfg.min_scale,
            condition=spec,
        )
        sizes = [math.prod(cfg.data_shape), *cfg.classifier_hidden, cfg.classes]
        self.classifier = mlp(sizes, cfg.activation)

    def class_logits(self, x: Tensor) -> Tensor:
        """The classifier's logits, ``[batch, K]``: log q(y | x) up to a constant per row."""
        return self.classifier(x.flatten(1))

    def classify(self, x: Tensor) -> Categorical:
        """q(y | x), ``batch_shape == [batch]`` (x ``[batch, *data_shape]``, checked)."""
        if not isinstance(x, Tensor) or not x.is_floating_point():
            raise lk.InputError(f"classify: x must be a float tensor, got {describe_value(x)}")
        return Categorical(logits=self.class_logits(x))


def _check_config(cfg: object, where: str) -> None:
    if not isinstance(cfg, M2Config):
        raise lk.ConfigError(f"{where}: cfg must be an M2Config, got {describe_value(cfg)}")


def build_m2(cfg: M2Config) -> lk.LatentModel:
    """The M2 model described by ``cfg`` (the factory registered as ``m2``), trained by
    default with the ``m2`` objective at the config's α / N_l."""
    _check_config(cfg, "build_m2")
    return lk.LatentModel(
        M2Generative(cfg),
        M2Posterior(cfg),
        objective="m2",
        objective_config={"alpha": cfg.alpha, "labelled": cfg.labelled},
    )
