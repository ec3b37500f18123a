"""A Gaussian mixture model as a one-layer latent-variable model.

    z ~ Categorical(π),    x | z = k ~ N(μ_k, diag σ_k²)

The latent is discrete and small, so everything is exact by enumeration over k:

    log p(x)   = logsumexp_k [log π_k + log N(x; μ_k, σ_k²)]
    p(z=k | x) = softmax_k [log π_k + log N(x; μ_k, σ_k²)]     (the responsibilities)

Two posterior chains (``posterior`` in the config):

* ``exact``: q(z|x) = p(z|x), the responsibilities under the current parameters. Then
  ELBO = log p(x) (seed 001, eq. 10: the KL(q ‖ p(z|x)) gap is zero), and maximizing the
  ELBO over (π, μ, σ) with q held fixed is the M-step of EM (``latentkit_gmm.em``).
* ``amortized``: q(z|x) = Categorical(softmax(f(x))) from a small network f, trained with
  the generative part on the ELBO; ``exact_log_prob`` still gives log p(x) to compare with.

Training uses the ``enumerated`` estimator (Σ_k q(k|x) log p(x|k): exact, and its gradient
reaches f through q's probabilities; a sampled k would give f no gradient from the
reconstruction term).
"""

from __future__ import annotations

import attrs
import torch
from torch import Tensor
from torch.distributions import Categorical

import latentkit as lk
from latentkit.arguments import check_count, check_number, describe_value
from latentkit.config import one_of, positive_ints
from latentkit.distributions import diag_normal
from latentkit.networks import mlp


def _count(instance, attribute, value) -> None:
    check_count(value, repr(attribute.name), error=lk.ConfigError)


def _positive(instance, attribute, value) -> None:
    check_number(value, repr(attribute.name), above=0.0, error=lk.ConfigError)


def _tuple(value):
    # TOML and JSON give lists; anything else is left for the validator to name.
    return tuple(value) if isinstance(value, (list, tuple)) else value


@attrs.frozen(kw_only=True)
class GMMConfig:
    """Configuration of the ``gmm`` model.

    Attributes:
        data_dim: D, the dimension of one example (> 0).
        components: K, the number of mixture components (> 0).
        posterior: ``exact`` (the responsibilities) or ``amortized`` (a learned q(z|x)).
        hidden: hidden widths of the amortized encoder; ``()`` is softmax regression.
        min_scale: the floor EM keeps every component scale σ_k above (> 0).
    """

    data_dim: int = attrs.field(default=2, validator=_count)
    components: int = attrs.field(default=3, validator=_count)
    posterior: str = attrs.field(default="exact", validator=one_of("exact", "amortized"))
    hidden: tuple[int, ...] = attrs.field(default=(), converter=_tuple, validator=positive_ints(0))
    min_scale: float = attrs.field(default=1e-3, validator=_positive)


def _check_config(cfg: object, where: str) -> None:
    if not isinstance(cfg, GMMConfig):
        raise lk.ConfigError(f"{where}: cfg must be a GMMConfig, got {describe_value(cfg)}")


class GMMGenerative(lk.GenerativeChain):
    """p(z) = Categorical(softmax(logits)); p(x | z=k) = N(means[k], diag exp(2·log_scales[k]))."""

    def __init__(self, cfg: GMMConfig):
        _check_config(cfg, "GMMGenerative")
        super().__init__((cfg.data_dim,), [()])  # one scalar (integer-valued) latent
        K, D = cfg.components, cfg.data_dim
        self.min_scale = cfg.min_scale
        self.logits = torch.nn.Parameter(torch.zeros(K))
        self.means = torch.nn.Parameter(torch.randn(K, D))
        self.log_scales = torch.nn.Parameter(torch.zeros(K, D))

    def prior(self, n: int) -> Categorical:
        return Categorical(logits=self.logits.expand(n, -1))

    def likelihood(self, z1: Tensor):
        return diag_normal(self.means[z1], self.log_scales[z1].exp())

    def log_joint_table(self, x: Tensor) -> Tensor:
        """log p(x, z=k) for every example and component, ``[batch, K]``."""
        log_lik = diag_normal(self.means, self.log_scales.exp()).log_prob(x[:, None, :])
        return torch.log_softmax(self.logits, -1) + log_lik

    def log_marginal(self, x: Tensor) -> Tensor:
        """log p(x) = logsumexp_k log p(x, z=k), ``[batch]`` (the exact oracle)."""
        return torch.logsumexp(self.log_joint_table(x), dim=-1)


class ExactPosterior(lk.SingleLayerPosterior):
    """q(z | x) = p(z | x): the responsibilities, recomputed from the current parameters."""

    def __init__(self, generative: GMMGenerative):
        super().__init__()
        # Shared, not a submodule: the parameters belong to the generative chain alone.
        object.__setattr__(self, "_generative", generative)

    def forward(self, x: Tensor) -> Categorical:
        return Categorical(logits=self._generative.log_joint_table(x))


class AmortizedPosterior(lk.SingleLayerPosterior):
    """q(z | x) = Categorical(softmax(f(x))), f an MLP (or linear map) from D to K."""

    def __init__(self, cfg: GMMConfig):
        super().__init__()
        self.net = mlp([cfg.data_dim, *cfg.hidden, cfg.components])

    def forward(self, x: Tensor) -> Categorical:
        return Categorical(logits=self.net(x))


def build_gmm(cfg: GMMConfig) -> lk.LatentModel:
    """The factory registered as ``gmm``."""
    _check_config(cfg, "build_gmm")
    generative = GMMGenerative(cfg)
    posterior = ExactPosterior(generative) if cfg.posterior == "exact" else AmortizedPosterior(cfg)
    return lk.LatentModel(generative, posterior, objective_config={"estimator": "enumerated"})
