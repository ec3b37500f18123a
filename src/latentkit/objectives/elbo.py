"""The ``elbo`` objective: −ELBO_β with KL warm-up, free bits and importance-sampled layers."""

from __future__ import annotations

import math
from typing import Any

import attrs
import torch
from einops import rearrange, repeat
from torch import Tensor

from latentkit.chains import LatentModel
from latentkit.config import int_at_least as _int_at_least
from latentkit.config import one_of as _one_of
from latentkit.errors import ConfigError
from latentkit.estimators import (
    ESTIMATORS,
    Draw,
    SingleLayer,
    end_terms,
    layer_term,
    training_estimator,
)
from latentkit.objectives.base import Objective


def warmup_factor(step: int | Tensor | None, steps: int, shape: str) -> float | Tensor:
    """The fraction r ∈ [0, 1] of a warm-up done after ``step`` of ``steps`` optimizer steps:
    ``linear`` r = u, ``cosine`` r = (1 − cos πu)/2, with u = min(step/steps, 1). ``None``
    or ``steps = 0``: 1 (the schedule has ended). A tensor ``step`` gives a tensor."""
    if step is None or steps == 0:
        return 1.0
    if isinstance(step, Tensor):
        u = (step.double() / steps).clamp(0.0, 1.0)
        return u if shape == "linear" else (1 - torch.cos(math.pi * u)) / 2
    u = min(max(step / steps, 0.0), 1.0)
    return u if shape == "linear" else (1 - math.cos(math.pi * u)) / 2


def _finite_nonneg(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{attribute.name!r} must be a number, got {value!r}")
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{attribute.name!r} must be a finite number ≥ 0, got {value!r}")


@attrs.frozen(kw_only=True)
class ElboConfig:
    """Options of the ``elbo`` objective (formulas: ``docs/objectives.md``).

    Attributes:
        beta: the KL weight β once any warm-up has ended (1: the ELBO; a β-VAE's β).
        estimator: the engine's estimator (``auto``: ``single-layer`` for layer-batched
            chains such as a DDPM, else the best the chain allows).
        num_samples: draws of the latents per example, averaged.
        warmup_steps: KL warm-up length in optimizer steps (0: none): β goes from
            ``warmup_start`` to ``beta`` along ``warmup_shape``.
        warmup_start: β_0, the KL weight at step 0 of the warm-up.
        warmup_shape: ``linear`` or ``cosine``.
        free_bits: λ in nats (0: off). Each group's KL, averaged over the batch, counts as
            max(λ, KL) in the loss: below λ it gets no gradient (Kingma et al. 2016). The
            reported bound is never clamped.
        free_bits_per: the groups: ``layer`` (one per latent layer) or ``dimension`` (one
            per scalar latent; needs factorized q and p and the ``analytic``,
            ``top-down-mc`` or ``bottom-up`` estimator).
        layer_sampler: for layer-batched chains, the layer of the one-layer estimate:
            ``uniform`` or ``importance`` (p(l) ∝ √E[term_l²] over each layer's last
            ``history`` terms, uniform until every layer has them; improved DDPM §3.3).
        history: terms kept per layer by the ``importance`` sampler.
    """

    beta: float = attrs.field(default=1.0, validator=_finite_nonneg)
    estimator: str = attrs.field(default="auto", validator=_one_of("auto", *ESTIMATORS))
    num_samples: int = attrs.field(default=1, validator=_int_at_least(1))
    warmup_steps: int = attrs.field(default=0, validator=_int_at_least(0))
    warmup_start: float = attrs.field(default=0.0, validator=_finite_nonneg)
    warmup_shape: str = attrs.field(default="linear", validator=_one_of("linear", "cosine"))
    free_bits: float = attrs.field(default=0.0, validator=_finite_nonneg)
    free_bits_per: str = attrs.field(default="layer", validator=_one_of("layer", "dimension"))
    layer_sampler: str = attrs.field(default="uniform", validator=_one_of("uniform", "importance"))
    history: int = attrs.field(default=10, validator=_int_at_least(1))


class ElboObjective(Objective):
    """−ELBO_β(step) by the engine's estimators, with warm-up, free bits and layer sampling.

    The loss per example is −(reconstruction − β(step) · Σ_g K_g), where K_g is group g's
    KL term — or, with free bits λ, K_g where the batch mean of group g's term is above λ
    and the constant λ where it is not (so the batch mean of the loss counts max(λ, E[K_g])
    and a group below λ gets no gradient).
    """

    name = "elbo"

    def __init__(self, config: ElboConfig, model: LatentModel):
        super().__init__(config, model)
        c = config
        self.estimator = training_estimator(model, c.estimator)
        self.per_dimension = c.free_bits > 0 and c.free_bits_per == "dimension"
        if self.per_dimension and not self.estimator.supports_per_dimension:
            raise ConfigError(
                f"objective 'elbo': free_bits_per='dimension' needs per-dimension KL terms, "
                f"which estimator {self.estimator.name!r} does not give; set estimator to "
                "'analytic', 'top-down-mc' or 'bottom-up', or free_bits_per='layer'"
            )
        if c.free_bits > 0 and self.estimator.name == "single-layer":
            raise ConfigError(
                "objective 'elbo': free bits clamp each layer's KL, but the 'single-layer' "
                "estimator sees one layer per example; use estimator='layer-batched' or "
                "set free_bits=0"
            )
        self.importance = c.layer_sampler == "importance"
        # The one-layer estimate's total without its per-layer placement (free bits, which
        # clamp per layer, are refused with it above).
        self.summed = isinstance(self.estimator, SingleLayer) and c.free_bits == 0
        if self.importance:
            if self.estimator.name != "single-layer":
                raise ConfigError(
                    "objective 'elbo': layer_sampler='importance' draws one layer per "
                    "example, so it needs a layer-batched chain and estimator 'auto' or "
                    f"'single-layer' (the estimator is {self.estimator.name!r})"
                )
            if c.num_samples != 1 or c.free_bits > 0:
                raise ConfigError(
                    "objective 'elbo': layer_sampler='importance' takes num_samples=1 and "
                    "no free bits"
                )
            layers = max(model.num_layers - 1, 1)
            ref = model.reference()
            self.register_buffer("layer_history", ref.new_zeros(layers, c.history + 1))
            self.register_buffer(
                "layer_count", torch.zeros(layers, dtype=torch.long, device=ref.device)
            )

    def beta_at(self, step: int | Tensor | None) -> float | Tensor:
        """β(step) = β_0 + (β − β_0) · r(step), r the warm-up fraction (:func:`warmup_factor`)."""
        c = self.config
        if c.warmup_steps == 0:
            return c.beta
        r = warmup_factor(step, c.warmup_steps, c.warmup_shape)
        return c.warmup_start + (c.beta - c.warmup_start) * r

    def forward(self, model: LatentModel, x: Tensor, step: int | Tensor | None = None) -> Tensor:
        beta = self.beta_at(step)
        if isinstance(beta, Tensor):
            beta = beta.to(x.dtype)
        s = self.config.num_samples
        if self.importance:
            draw = self._importance_draw(model, x)
        else:
            xs = repeat(x, "b ... -> (s b) ...", s=s) if s > 1 else x
            if self.summed:  # the loss needs only the total: no [n, L − 1] placement
                draw = self.estimator.draw_summed(model, xs)[0]
            else:
                draw = self.estimator(model, xs, per_dimension=self.per_dimension)
            if self.config.free_bits > 0:
                draw = self._free_bits(draw)
        loss = -draw.total(beta)
        return rearrange(loss, "(s b) -> s b", s=s).mean(0) if s > 1 else loss

    # -- free bits ----------------------------------------------------------------------

    def _free_bits(self, draw: Draw) -> Draw:
        lam = self.config.free_bits

        def clamp(term: Tensor) -> Tensor:
            # Per group (the trailing axis, if any): below λ on average over the batch, the
            # group counts as the constant λ (no gradient); above, as itself.
            return torch.where(term.mean(0) > lam, term, torch.full_like(term, lam))

        if self.per_dimension:
            assert draw.per_dimension is not None
            layers = [clamp(d).sum(-1) for d in draw.per_dimension]  # z_1..z_L
            prior = layers[-1]
            layer_kl = torch.stack(layers[:-1], -1) if len(layers) > 1 else draw.layer_kl
            return Draw(draw.reconstruction, prior, layer_kl)
        return Draw(draw.reconstruction, clamp(draw.prior_matching), clamp(draw.layer_kl))

    # -- importance-sampled layers ------------------------------------------------------

    def layer_weights(self) -> Tensor:
        """p(l) for l = 2..L: uniform until every layer has ``history`` terms, then
        ∝ √E[term_l²] mixed with 0.1% uniform mass (improved DDPM §3.3). No host read."""
        h = self.config.history
        past = self.layer_history[:, :h]
        uniform = torch.full_like(past[:, 0], 1.0 / past.shape[0])
        rms = past.pow(2).mean(-1).sqrt()
        learned = 0.999 * rms / rms.sum().clamp_min(torch.finfo(rms.dtype).tiny)
        learned = learned + 0.001 * uniform
        ready = (self.layer_count >= h).all()
        w = torch.where(ready, learned, uniform)
        return w / w.sum()

    def _importance_draw(self, model: LatentModel, x: Tensor) -> Draw:
        """recon − prior − Σ_l term_l estimated by term_l / p(l) at one l ~ p(l) per example:
        unbiased for any p(l) > 0. Only the loss reads it, so ``layer_kl`` holds the one
        scaled term per example as a single column (``[n, 1]``; the total is the same)."""
        n, L = x.shape[0], model.num_layers
        h = model.posterior.encode(x)
        recon, prior = end_terms(model, x, h)
        if L < 2:
            return Draw(recon, prior, x.new_zeros(n, 0))
        w = self.layer_weights().to(x.dtype)
        l = torch.multinomial(w, n, replacement=True) + 2
        term = layer_term(model, x, l, h=h)
        if self.training and torch.is_grad_enabled():
            self._record(l - 2, term.detach())
        scaled = term / w[l - 2]
        return Draw(recon, prior, scaled.unsqueeze(1))

    @torch.no_grad()
    def _record(self, idx: Tensor, term: Tensor) -> None:
        """Push each example's term into its layer's ring of ``history`` slots, in batch
        order, all on the device: of m terms for one layer in a batch the last
        min(m, history) land (as one at a time would leave them); the rest go to a spare
        column that is never read."""
        h = self.config.history
        n = idx.shape[0]
        order = torch.argsort(idx, stable=True)
        sorted_idx = idx[order]
        first = torch.searchsorted(sorted_idx, sorted_idx)  # first row of each layer's run
        rank = torch.arange(n, device=idx.device) - first  # position within the run
        per_layer = torch.bincount(idx, minlength=self.layer_count.shape[0])
        keep = rank >= per_layer[sorted_idx] - h
        slot = torch.where(keep, (self.layer_count[sorted_idx] + rank) % h, h)
        flat = self.layer_history.view(-1)
        flat.index_put_((sorted_idx * (h + 1) + slot,), term[order].to(flat.dtype))
        self.layer_count += per_layer
