"""ELBO estimators: small objects over one model interface (STYLE §4).

Each estimator draws latents from the posterior chain and returns the bound's named
terms for every example, all ``[n]`` tensors except ``layer_kl`` (``[n, L-1]``)::

    ELBO_β = reconstruction − β · (prior_matching + Σ_l layer_kl[:, l])

* ``reconstruction``   E_q[log p(x | z_1)]
* ``prior_matching``   KL(q(z_L | ·) ‖ p(z_L))
* ``layer_kl[:, l-1]`` the term of latent z_l (1 ≤ l < L): top-down it is
  KL(q(z_l | z_{l+1}, x) ‖ p(z_l | z_{l+1})) (denoising / consistency matching);
  bottom-up it is the Monte Carlo log-ratio log q(z_l | z_{l-1}, x) − log p(z_l | z_{l+1}).

Both directions pair each latent's q-factor with its p-factor, so a term means the same
thing whichever estimator produced it, and the totals agree in expectation.

| name            | needs                       | KL terms                                        |
|-----------------|-----------------------------|-------------------------------------------------|
| ``analytic``    | top-down                    | closed form where torch has it, else log-ratio  |
| ``top-down-mc`` | top-down                    | log-ratio at the drawn sample                   |
| ``bottom-up``   | bottom-up                   | log-ratio (seed 003's last ELBO)                |
| ``layer-batched`` | top-down + layer_batched  | closed form, all layers in chunked batched calls |
| ``single-layer``| top-down + layer_batched    | one uniform layer per example, scaled by L − 1  |
| ``enumerated``  | top-down, L = 1, discrete q | exact sums over the support of q(z|x), no draws |

``auto`` picks ``layer-batched``, else ``analytic``, else ``bottom-up``. Adding an
estimator is one subclass registered in ``ESTIMATORS``.
"""

from __future__ import annotations

from typing import ClassVar, NamedTuple

import torch
from einops import rearrange, repeat
from torch import Tensor
from torch.distributions import Distribution, kl_divergence

from latentkit.chains import LatentModel
from latentkit.errors import EstimatorError

__all__ = [
    "ESTIMATORS",
    "Draw",
    "Estimator",
    "kl_or_log_ratio",
    "resolve_estimator",
]


class Draw(NamedTuple):
    """One estimator pass over n examples: the bound's terms before β is applied.

    A NamedTuple rather than an attrs class: torch.compile traces it without a graph break.
    """

    reconstruction: Tensor  # [n]
    prior_matching: Tensor  # [n]
    layer_kl: Tensor  # [n, L-1]


def _draw(d: Distribution) -> Tensor:
    # Reparameterized where the distribution allows it; discrete latents fall back to sample().
    return d.rsample() if d.has_rsample else d.sample()


def _check(value: Tensor, n: int, what: str) -> Tensor:
    if value.shape != (n,):
        raise EstimatorError(
            f"{what} has shape {tuple(value.shape)}, expected ({n},): per-example distributions "
            "must put every non-batch dimension in event_shape (wrap them in "
            "torch.distributions.Independent)"
        )
    return value


def kl_or_log_ratio(q: Distribution, p: Distribution, z: Tensor, *, analytic: bool) -> Tensor:
    """KL(q ‖ p) in closed form when ``analytic`` and torch knows it; else log q(z) − log p(z).

    The log-ratio at a draw z ~ q is an unbiased estimate of the KL (DESIGN §7, identity 10).
    """
    if analytic:
        try:
            return kl_divergence(q, p)
        except NotImplementedError:
            pass
    return q.log_prob(z) - p.log_prob(z)


class Estimator:
    """Base class: ``__call__(model, x) -> Draw``; subclasses say what they need."""

    name: ClassVar[str]
    needs_top_down: ClassVar[bool] = False
    needs_bottom_up: ClassVar[bool] = False
    needs_layer_batched: ClassVar[bool] = False
    per_sample_exact: ClassVar[bool] = False
    """Whether each draw's total is the log-ratio log p(x,z) − log q(z|x) (IWAE needs this)."""

    def __init__(self, **options):
        if options:
            raise EstimatorError(f"estimator {self.name!r} takes no options, got {sorted(options)}")

    @classmethod
    def supports(cls, model: LatentModel) -> str | None:
        """``None`` if the model can use this estimator, else the reason it cannot."""
        q = model.posterior
        if cls.needs_top_down and not q.top_down:
            return f"its posterior chain {type(q).__name__} is not top-down"
        if cls.needs_bottom_up and not q.bottom_up:
            return f"its posterior chain {type(q).__name__} is not bottom-up"
        if cls.needs_layer_batched and not (q.layer_batched and model.generative.layer_batched):
            return "its chains are not layer-batched"
        return None

    def __call__(self, model: LatentModel, x: Tensor) -> Draw:
        raise NotImplementedError

    def total(self, model: LatentModel, x: Tensor, beta: float = 1.0) -> Tensor:
        """ELBO_β per example, ``[n]``, without keeping the named terms (the training path)."""
        d = self(model, x)
        kl = d.prior_matching + d.layer_kl.sum(-1) if d.layer_kl.shape[-1] else d.prior_matching
        return d.reconstruction - beta * kl if beta != 1.0 else d.reconstruction - kl


class _TopDown(Estimator):
    needs_top_down = True
    analytic: ClassVar[bool]

    def __call__(self, model: LatentModel, x: Tensor) -> Draw:
        p, q, n = model.generative, model.posterior, x.shape[0]
        q_top = q.top(x)
        z = _draw(q_top)
        prior = _check(
            kl_or_log_ratio(q_top, p.prior(n), z, analytic=self.analytic), n, "KL(q(z_L|x)‖p(z_L))"
        )
        kls = []
        for l in range(p.num_layers, 1, -1):
            q_l, p_l = q.down(l, z, x), p.transition(l, z)
            z = _draw(q_l)
            kl = kl_or_log_ratio(q_l, p_l, z, analytic=self.analytic)
            kls.append(_check(kl, n, f"KL term of z_{l - 1}"))
        recon = _check(p.likelihood(z).log_prob(x), n, "log p(x|z_1)")
        layer_kl = torch.stack(kls[::-1], dim=-1) if kls else x.new_zeros(n, 0)
        return Draw(recon, prior, layer_kl)


class Analytic(_TopDown):
    name = "analytic"
    analytic = True


class TopDownMonteCarlo(_TopDown):
    name = "top-down-mc"
    analytic = False
    per_sample_exact = True


class BottomUp(Estimator):
    name = "bottom-up"
    needs_bottom_up = True
    per_sample_exact = True

    def __call__(self, model: LatentModel, x: Tensor) -> Draw:
        p, q, n, L = model.generative, model.posterior, x.shape[0], model.num_layers
        q_l = q.first(x)
        zs = [_draw(q_l)]
        log_q = [q_l.log_prob(zs[0])]
        for l in range(2, L + 1):
            q_l = q.up(l, zs[-1], x)
            zs.append(_draw(q_l))
            log_q.append(q_l.log_prob(zs[-1]))
        recon = _check(p.likelihood(zs[0]).log_prob(x), n, "log p(x|z_1)")
        prior = _check(log_q[-1] - p.prior(n).log_prob(zs[-1]), n, "log q(z_L|·) − log p(z_L)")
        kls = [
            _check(log_q[l - 1] - p.transition(l + 1, zs[l]).log_prob(zs[l - 1]), n, f"z_{l} term")
            for l in range(1, L)
        ]
        layer_kl = torch.stack(kls, dim=-1) if kls else x.new_zeros(n, 0)
        return Draw(recon, prior, layer_kl)


class _LayerBatched(Estimator):
    needs_top_down = True
    needs_layer_batched = True

    def __init__(self, *, pairs_per_call: int = 8192):
        if pairs_per_call < 1:
            raise EstimatorError(f"pairs_per_call must be ≥ 1, got {pairs_per_call}")
        self.pairs_per_call = int(pairs_per_call)

    @staticmethod
    def _ends(model: LatentModel, x: Tensor) -> tuple[Tensor, Tensor]:
        """Reconstruction (z_1 from its marginal) and analytic prior matching."""
        p, q, n = model.generative, model.posterior, x.shape[0]
        L = model.num_layers
        ones = torch.ones(n, dtype=torch.long, device=x.device)
        z1 = _draw(q.marginal(ones, x))
        recon = _check(p.likelihood(z1).log_prob(x), n, "log p(x|z_1)")
        q_top, prior_L = q.marginal(ones * L, x), p.prior(n)
        try:  # closed form first: no draw of z_L just to be thrown away
            kl = kl_divergence(q_top, prior_L)
        except NotImplementedError:
            kl = kl_or_log_ratio(q_top, prior_L, _draw(q_top), analytic=False)
        prior = _check(kl, n, "prior matching")
        return recon, prior

    @staticmethod
    def layer_terms(model: LatentModel, x: Tensor, l: Tensor) -> Tensor:
        """KL(q(z_{l-1}|z_l,x) ‖ p(z_{l-1}|z_l)) at z_l ~ q(z_l|x), one layer per example."""
        p, q = model.generative, model.posterior
        z = _draw(q.marginal(l, x))
        q_l, p_l = q.down(l, z, x), p.transition(l, z)
        try:  # closed form first: then no draw from q_l is made only to be thrown away
            kl = kl_divergence(q_l, p_l)
        except NotImplementedError:
            kl = kl_or_log_ratio(q_l, p_l, _draw(q_l), analytic=False)
        return _check(kl, x.shape[0], "layer-batched KL term")


class LayerBatched(_LayerBatched):
    """Every layer's KL, computed in chunks of (example, layer) pairs per network call."""

    name = "layer-batched"

    def __call__(self, model: LatentModel, x: Tensor) -> Draw:
        n, L = x.shape[0], model.num_layers
        recon, prior = self._ends(model, x)
        layers = torch.arange(2, L + 1, device=x.device)
        per_call = max(1, self.pairs_per_call // n)
        chunks = []
        # An empty tensor still splits into one (empty) chunk; L = 1 has no layer terms.
        for ls in layers.split(per_call) if L > 1 else ():
            c = ls.shape[0]
            kl = self.layer_terms(
                model, repeat(x, "b ... -> (c b) ...", c=c), repeat(ls, "c -> (c b)", b=n)
            )
            chunks.append(rearrange(kl, "(c b) -> b c", c=c))
        layer_kl = torch.cat(chunks, dim=-1) if chunks else x.new_zeros(n, 0)
        return Draw(recon, prior, layer_kl)


class Enumerated(Estimator):
    """A one-layer discrete q(z|x) summed over its support: the ELBO exactly, no sampling.

    reconstruction = Σ_z q(z|x) log p(x|z) and prior matching = Σ_z q(z|x) log(q(z|x)/p(z)),
    with z over ``q.enumerate_support()`` (Categorical, Bernoulli, ...). Zero variance, and
    gradients reach q's parameters through the weights q(z|x), where ``sample()`` gives none.
    With q the exact posterior the total is log p(x) exactly (DESIGN §7.1). Costs one
    likelihood call on |support| × batch rows.
    """

    name = "enumerated"
    needs_top_down = True

    @classmethod
    def supports(cls, model: LatentModel) -> str | None:
        if model.num_layers != 1:
            return f"it has {model.num_layers} latent layers; enumeration covers one"
        return super().supports(model)

    def __call__(self, model: LatentModel, x: Tensor) -> Draw:
        p, n = model.generative, x.shape[0]
        q = model.posterior.top(x)
        if not q.has_enumerate_support:
            raise EstimatorError(
                f"estimator 'enumerated' needs a discrete q(z|x); {type(q).__name__} has no "
                "enumerate_support()"
            )
        z = q.enumerate_support(expand=True)  # [K, n, *event]
        K = z.shape[0]
        log_q = q.log_prob(z)  # [K, n]
        weight = log_q.exp()
        log_lik = p.likelihood(rearrange(z, "k n ... -> (k n) ...")).log_prob(
            repeat(x, "n ... -> (k n) ...", k=K)
        )
        log_ratio = log_q - p.prior(n).log_prob(z)
        # A support point with q = 0 contributes nothing (0 · log 0 = 0), not NaN.
        recon = torch.where(weight > 0, weight * rearrange(log_lik, "(k n) -> k n", k=K), 0.0)
        prior = torch.where(weight > 0, weight * log_ratio, 0.0)
        return Draw(
            _check(recon.sum(0), n, "Σ_z q(z|x) log p(x|z)"),
            _check(prior.sum(0), n, "Σ_z q(z|x) log(q(z|x)/p(z))"),
            x.new_zeros(n, 0),
        )


class SingleLayer(_LayerBatched):
    """Unbiased one-layer estimate: l ~ Uniform{2..L} per example, its KL scaled by L − 1.

    The scaled term sits in ``layer_kl`` at the drawn layer (zeros elsewhere), so every
    per-layer entry is itself an unbiased estimate of that layer's KL.
    """

    name = "single-layer"

    def __call__(self, model: LatentModel, x: Tensor) -> Draw:
        n, L = x.shape[0], model.num_layers
        recon, prior = self._ends(model, x)
        layer_kl = x.new_zeros(n, L - 1)
        if L > 1:
            l = torch.randint(2, L + 1, (n,), device=x.device)
            kl = self.layer_terms(model, x, l) * (L - 1)
            layer_kl = layer_kl.scatter(1, (l - 2).unsqueeze(1), kl.unsqueeze(1))
        return Draw(recon, prior, layer_kl)

    def total(self, model: LatentModel, x: Tensor, beta: float = 1.0) -> Tensor:
        n, L = x.shape[0], model.num_layers
        recon, prior = self._ends(model, x)
        if L == 1:
            return recon - beta * prior
        l = torch.randint(2, L + 1, (n,), device=x.device)
        return recon - beta * (prior + self.layer_terms(model, x, l) * (L - 1))


ESTIMATORS: dict[str, type[Estimator]] = {
    cls.name: cls
    for cls in (Analytic, TopDownMonteCarlo, BottomUp, LayerBatched, SingleLayer, Enumerated)
}


def resolve_estimator(model: LatentModel, name: str, **options) -> Estimator:
    """The estimator called ``name`` (or the best one for ``auto``), checked against the model."""
    if name == "auto":
        for candidate in ("layer-batched", "analytic", "bottom-up"):
            if ESTIMATORS[candidate].supports(model) is None:
                name = candidate
                break
    if name not in ESTIMATORS:
        raise EstimatorError(f"unknown estimator {name!r}; choose one of {['auto', *ESTIMATORS]}")
    cls = ESTIMATORS[name]
    reason = cls.supports(model)
    if reason is not None:
        raise EstimatorError(f"estimator {name!r} does not apply to this model: {reason}")
    return cls(**options)


def monte_carlo_estimator(model: LatentModel) -> Estimator:
    """The per-sample log-ratio estimator IWAE needs: bottom-up if offered, else top-down-mc."""
    return resolve_estimator(model, "bottom-up" if model.posterior.bottom_up else "top-down-mc")
