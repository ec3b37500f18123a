"""The hierarchical VAE: L ≥ 2 Gaussian latent layers, one chain per direction.

Generative chain (``docs/hvae.md``)::

    p(z_L) = N(0, I),   p(z_{l-1} | z_l) = N(μ_l(z_l), diag σ_l²(z_l)),   p(x | z_1)

``architecture="linear"``: μ_l(z) = A_l z + b_l with a learned diagonal variance that
does not depend on z, and a linear decoder. With a Gaussian likelihood of fixed or
learned scale the whole chain is linear-Gaussian, so ``linear_gaussian()`` hands the
exact oracles (``latentkit.exact_log_prob``, ``latentkit.exact_posterior``) a
:class:`~latentkit.LinearGaussianSpec` at any depth. ``architecture="mlp"``: each mean
and scale is predicted by an MLP.

Posterior chain, chosen by ``posterior``:

* ``top-down`` (ladder style, the default): a deterministic bottom-up pass
  h_1 = f_1(x), h_l = f_l(h_{l-1}); then q(z_L | x) from h_L and q(z_{l-1} | z_l, x)
  from (z_l, h_{l-1}). It is aligned with p, so the engine's ``analytic`` estimator
  takes every per-layer KL in closed form.
* ``bottom-up``: the Markov chain q(z_1 | x), q(z_l | z_{l-1}); the engine uses the
  Monte Carlo log-ratio (``bottom-up`` estimator).

Conditional (``classes`` = K ≥ 2, class labels c ∈ 0..K−1, f(c) their one-hot features):
every factor reads f(c) beside its other inputs: p(z_L | c) = N(A f(c), diag exp(2 B f(c)))
(A = B = 0 at the start), p(z_{l-1} | z_l, c) and p(x | z_1, c) from [z_l, f(c)] and
[z_1, f(c)], the ladder's bottom-up pass from [x, f(c)] (so every q factor sees c through
its features), the Markov chain's q(z_1 | x, c) from [x, f(c)] and q(z_l | z_{l-1}, c) from
[z_{l-1}, f(c)]. A linear chain stays linear-Gaussian for each value of c.

The bound itself is the engine's (``latentkit.elbo``); nothing here computes one.
"""

from __future__ import annotations

import math

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Independent

import latentkit as lk
from latentkit.arguments import MAX_COUNT, check_count, check_number, describe_value
from latentkit.config import class_count, one_of, positive_ints, ruled
from latentkit.distributions import diag_normal, standard_normal
from latentkit.networks import ACTIVATIONS, GaussianHead, mlp
from latentkit_hvae.posterior import LadderFeatures, LadderPosterior, MarkovPosterior, beside

__all__ = [
    "HVAEConfig",
    "HVAEGenerative",
    "LadderFeatures",
    "LadderPosterior",
    "LinearGaussianTransition",
    "MarkovPosterior",
    "build_hvae",
]


_latent_dims = positive_ints(
    2, hint=", one latent dimension per layer z_1..z_L (L ≥ 2; use the 'vae' model for L = 1)"
)


def _stage_tuples(value):
    # TOML and JSON give lists of lists; anything else is left for the validator to name.
    if not isinstance(value, (list, tuple)):
        return value
    return tuple(tuple(s) if isinstance(s, (list, tuple)) else s for s in value)


def _width(d: object) -> bool:
    return isinstance(d, int) and not isinstance(d, bool) and 0 < d <= MAX_COUNT


@ruled("finite float > 0")
def _positive(instance, attribute, value) -> None:
    check_number(value, repr(attribute.name), above=0.0, error=lk.ConfigError)


def _stage_widths(instance, attribute, value) -> None:
    L = len(instance.latent_dims)
    ok = isinstance(value, tuple) and all(
        isinstance(s, tuple) and s and all(_width(d) for d in s) for s in value
    )
    if not ok or (value and len(value) != L):
        raise lk.ConfigError(
            f"{attribute.name!r} must be empty (every MLP uses 'hidden') or one non-empty "
            f"list of widths (ints > 0) per latent layer, {L} here, got {value!r}"
        )


@attrs.frozen(kw_only=True)
class HVAEConfig:
    """Configuration of the ``hvae`` model.

    Attributes:
        data_shape: shape of one example, e.g. (64,) or (1, 28, 28); flattened by the nets.
        latent_dims: dimensions of z_1..z_L, z_1 next to the data (L = len ≥ 2).
        architecture: ``linear`` (a linear-Gaussian chain: exact oracles apply at any depth
            with a Gaussian likelihood of fixed or learned scale) or ``mlp``.
        hidden: hidden widths of every MLP (transitions, decoder, posterior heads) and of
            each deterministic block of the ladder's bottom-up pass; ignored by ``linear``.
        stage_hidden: widths per stage instead of ``hidden``, one list per latent layer:
            stage 1 is every MLP between x and z_1 (the decoder, q(z_1 | x) or the ladder's
            first block), stage l (2..L) every MLP between z_{l-1} and z_l (p(z_{l-1} | z_l),
            q(z_l | z_{l-1}) or the ladder's l-th block and q(z_{l-1} | z_l, x)). The IWAE
            paper's two-layer model is ``[[200, 200], [100, 100]]``. Empty (the default):
            ``hidden`` everywhere. Ignored by ``linear``.
        activation: one of silu, relu, gelu, tanh, softplus.
        likelihood: gaussian, bernoulli (binary data) or discretized (8-bit data in [-1, 1]).
        likelihood_scale: ``learned`` (one scale per dimension), ``predicted`` (by the
            decoder) or ``fixed`` (``fixed_scale``); Gaussian and discretized only.
        fixed_scale: the scale when ``likelihood_scale="fixed"`` (> 0).
        posterior: ``top-down`` (ladder: q(z_L|x) Π q(z_{l-1}|z_l, x), analytic KLs) or
            ``bottom-up`` (Markov: q(z_1|x) Π q(z_l|z_{l-1}), Monte Carlo log-ratio).
        min_scale: floor added to every learned or predicted latent scale, in p's
            transitions and in q (> 0), for stability.
        classes: 0 (default) for a hierarchical VAE; K ≥ 2 for a conditional one on class
            labels 0..K−1: p(z_L | c), p(z_{l-1} | z_l, c), p(x | z_1, c) and q(· | x, c)
            each read the label's one-hot features (a linear chain stays exact per label).
    """

    data_shape: tuple[int, ...] = attrs.field(
        default=(64,), converter=tuple, validator=positive_ints()
    )
    latent_dims: tuple[int, ...] = attrs.field(
        default=(16, 8), converter=tuple, validator=_latent_dims
    )
    architecture: str = attrs.field(default="mlp", validator=one_of("linear", "mlp"))
    hidden: tuple[int, ...] = attrs.field(
        default=(256, 256), converter=tuple, validator=positive_ints(0)
    )
    stage_hidden: tuple[tuple[int, ...], ...] = attrs.field(
        default=(), converter=_stage_tuples, validator=_stage_widths
    )
    activation: str = attrs.field(default="silu", validator=one_of(*ACTIVATIONS))
    likelihood: str = attrs.field(
        default="gaussian", validator=one_of("gaussian", "bernoulli", "discretized")
    )
    likelihood_scale: str = attrs.field(
        default="learned", validator=one_of("learned", "predicted", "fixed")
    )
    fixed_scale: float = attrs.field(default=1.0, validator=_positive)
    posterior: str = attrs.field(default="top-down", validator=one_of("top-down", "bottom-up"))
    min_scale: float = attrs.field(default=1e-4, validator=_positive)
    classes: int = attrs.field(default=0, validator=class_count)

    @property
    def condition_spec(self) -> lk.ConditionSpec | None:
        """What the model is conditioned on: K class labels (``classes`` = K), or ``None``."""
        return lk.ConditionSpec.of_classes(self.classes)

    @property
    def num_layers(self) -> int:
        """L, the number of latent layers."""
        return len(self.latent_dims)

    def widths(self, stage: int) -> tuple[int, ...]:
        """The hidden widths of stage ``stage`` (1..L): ``stage_hidden``'s, else ``hidden``."""
        check_count(stage, "HVAEConfig.widths: stage", high=len(self.latent_dims))
        return self.stage_hidden[stage - 1] if self.stage_hidden else self.hidden

    def net(self, d_in: int, d_out: int, stage: int) -> nn.Sequential:
        """A map d_in → d_out: one linear layer (``linear``) or an MLP through the widths of
        ``stage`` (:meth:`widths`)."""
        check_count(d_in, "HVAEConfig.net: d_in")
        check_count(d_out, "HVAEConfig.net: d_out")
        check_count(stage, "HVAEConfig.net: stage", high=len(self.latent_dims))
        hidden = () if self.architecture == "linear" else self.widths(stage)
        return mlp([d_in, *hidden, d_out], self.activation)


def _affine_given(layer: nn.Linear, d: int, f: Tensor | None) -> tuple[Tensor, Tensor]:
    """(W, b) of ``layer`` as a map of its first ``d`` inputs, the rest held at ``f`` (the
    condition's features): b + W_f f joins the bias. ``f = None``: the layer's own."""
    if f is None:
        return layer.weight, layer.bias
    return layer.weight[:, :d], layer.bias + layer.weight[:, d:] @ f


class LinearGaussianTransition(nn.Module):
    """p(z_{l-1} | z_l) = N(A z_l + b, diag σ²): mean linear in the parent, σ learned.

    σ = softplus(raw) + min_scale does not depend on z_l, so the conditional is
    linear-Gaussian (the form ``latentkit.LinearGaussianSpec`` describes). A conditional
    chain calls it on [z_l, f(c)]: the condition's features shift the mean linearly.
    """

    def __init__(self, d_in: int, d_out: int, min_scale: float):
        super().__init__()
        self.linear = nn.Linear(d_in, d_out)
        self.min_scale = float(min_scale)
        # softplus⁻¹(1 − min_scale): every transition starts at unit scale.
        raw = math.log(math.expm1(max(1.0 - self.min_scale, 1e-6)))
        self.raw_scale = nn.Parameter(torch.full((d_out,), raw))

    def scale(self) -> Tensor:
        return F.softplus(self.raw_scale) + self.min_scale

    def forward(self, z: Tensor) -> Independent:
        mean = self.linear(z)
        return diag_normal(mean, self.scale().expand_as(mean))


class HVAEGenerative(lk.GenerativeChain):
    """p(z_L) = N(0, I); p(z_{l-1} | z_l) per layer; p(x | z_1) = likelihood(decoder(z_1)).

    Conditional (``cfg.classes`` = K): p(z_L | c) = N(A f(c), diag exp(2 B f(c))) with
    [A B] = ``prior_map``, and each transition and the decoder read [z, f(c)]."""

    def __init__(self, cfg: HVAEConfig):
        dims = cfg.latent_dims
        super().__init__(cfg.data_shape, [(d,) for d in dims])
        D = math.prod(cfg.data_shape)
        self.linear = cfg.architecture == "linear"
        self.condition_spec = spec = cfg.condition_spec
        f = spec.feature_dim if spec is not None else 0
        scale = cfg.fixed_scale if cfg.likelihood_scale == "fixed" else cfg.likelihood_scale
        self.lik = lk.make_likelihood(cfg.likelihood, cfg.data_shape, scale)
        self.decoder = cfg.net(dims[0] + f, D * self.lik.num_params, stage=1)
        # transitions[l - 2] is p(z_{l-1} | z_l), l = 2..L.
        if self.linear:
            steps = [
                LinearGaussianTransition(dims[l - 1] + f, dims[l - 2], cfg.min_scale)
                for l in range(2, len(dims) + 1)
            ]
        else:
            steps = [
                nn.Sequential(
                    cfg.net(dims[l - 1] + f, 2 * dims[l - 2], stage=l),
                    GaussianHead(cfg.min_scale),
                )
                for l in range(2, len(dims) + 1)
            ]
        self.transitions = nn.ModuleList(steps)
        self.register_buffer("prior_loc", torch.zeros(dims[-1]))
        self.register_buffer("prior_scale", torch.ones(dims[-1]))
        if spec is not None:  # p(z_L | c): its mean and log-scale linear in f(c)
            self.prior_map = nn.Parameter(torch.zeros(f, 2 * dims[-1]))

    def _features(self, n: int) -> Tensor:
        """f(c) of the bound conditions for ``n`` rows, ``[n, K]``."""
        return self.condition_spec.features(self.condition_for(n), self.prior_map.dtype)

    def _prior_params(self, n: int) -> tuple[Tensor, Tensor]:
        """p(z_L | c)'s mean and scale, ``[n, d_L]`` each."""
        loc, log_scale = (self._features(n) @ self.prior_map).chunk(2, -1)
        return loc, log_scale.exp()

    def prior(self, n: int) -> Independent:
        if self.condition_spec is None:
            return standard_normal(n, (self.prior_loc.shape[0],), like=self.prior_loc)
        return diag_normal(*self._prior_params(n))

    def transition(self, l: int, z: Tensor) -> Independent:
        return self.transitions[l - 2](beside(self, z))

    def likelihood(self, z1: Tensor):
        return self.lik.from_flat(self.decoder(beside(self, z1)))

    def linear_gaussian(self) -> lk.LinearGaussianSpec | None:
        """The linear chain with a Gaussian likelihood of fixed or learned scale; a
        conditional one for one condition value at a time (``condition_for(1)``: what
        ``latentkit.exact_log_prob`` binds), its features folded into the biases."""
        noise_var = self.lik.linear_gaussian_variance()
        if not self.linear or noise_var is None:
            return None
        f, prior = None, (self.prior_loc, self.prior_scale)
        if self.condition_spec is not None:
            f = self._features(1)[0]
            prior = tuple(t[0] for t in self._prior_params(1))
        parents = [shape[0] for shape in self.latent_shapes[1:]]  # z_l of transitions[l - 2]
        weight, bias = _affine_given(self.decoder[0], self.latent_shapes[0][0], f)
        return lk.LinearGaussianSpec(
            prior_mean=prior[0],
            prior_var=prior[1] ** 2,
            transitions=tuple(
                (*_affine_given(t.linear, d, f), t.scale() ** 2)
                for t, d in zip(self.transitions, parents, strict=True)
            ),
            weight=weight,
            bias=bias,
            noise_var=noise_var,
        )


def build_hvae(cfg: HVAEConfig) -> lk.LatentModel:
    """The hierarchical VAE described by ``cfg`` (the factory registered as ``hvae``)."""
    if not isinstance(cfg, HVAEConfig):
        raise lk.ConfigError(f"build_hvae: cfg must be an HVAEConfig, got {describe_value(cfg)}")
    posterior = LadderPosterior(cfg) if cfg.posterior == "top-down" else MarkovPosterior(cfg)
    return lk.LatentModel(HVAEGenerative(cfg), posterior)
