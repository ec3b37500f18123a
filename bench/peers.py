"""The libraries a user would pick instead, wired to latentkit's exact networks.

* pythae (``pip install pythae``): its ``VAE`` and ``BetaVAE`` with custom ``BaseEncoder`` /
  ``BaseDecoder`` wrappers around copies of a latentkit VAE's encoder and decoder MLPs.
  The encoder hands pythae log σ² = 2 log(softplus(raw) + min_scale), so q(z|x) is the same
  Gaussian; the decoder hands it sigmoid(logits), since pythae's ``bce`` loss takes
  probabilities (``F.binary_cross_entropy``, whose log is clamped at −100) where latentkit
  takes logits. pythae's loss is the batch mean of BCE + β·KL, latentkit's ``training_loss``
  the per-example −ELBO_β: the same number once latentkit's is averaged.
* diffusers (``pip install diffusers``): a training step with ``DDPMScheduler.add_noise`` and
  the mean-squared ε error, as diffusers' training examples write it, around a copy of a
  latentkit DDPM's ε-network. Its loss is ``F.mse_loss`` (a mean over every element), the
  same objective as latentkit's ``loss="simple"`` (a sum over the D dimensions per
  example): latentkit's batch mean = D × diffusers' loss. diffusers numbers timesteps
  0..T−1 where latentkit numbers 1..T, so the network is called with ``timesteps + 1``,
  and its schedule is computed in float32 (latentkit's in float64), so the two losses agree
  to float32 round-off of the cumulative product, not bit for bit.

Both imports are optional: :func:`available` says which peers import and why not.
"""

from __future__ import annotations

import copy
import importlib
import importlib.metadata

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["available", "diffusers_step_loss", "pythae_vae", "version"]


def available() -> dict[str, str | None]:
    """``{"pythae": None or why it does not import, "diffusers": ...}``."""
    out: dict[str, str | None] = {}
    for name, modules in {
        "pythae": ("pythae.models", "pythae.models.nn"),
        "diffusers": ("diffusers",),
    }.items():
        try:
            for m in modules:
                importlib.import_module(m)
            out[name] = None
        except Exception as exc:  # an optional dependency: report, never crash the run
            out[name] = f"{type(exc).__name__}: {exc}"
    return out


def version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def pythae_vae(model, *, beta: float | None = None) -> nn.Module:
    """A pythae ``VAE`` (``beta`` None) or ``BetaVAE`` whose encoder and decoder are copies of
    the latentkit VAE ``model``'s networks (same weights, trained separately from here on)."""
    from pythae.models import VAE, BetaVAE, BetaVAEConfig, VAEConfig
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder

    cfg = model.config
    min_scale = cfg.min_scale

    class Encoder(BaseEncoder):
        def __init__(self, net: nn.Module):
            BaseEncoder.__init__(self)
            self.net = net

        def forward(self, x: Tensor):
            mean, raw = self.net(x.reshape(x.shape[0], -1)).chunk(2, dim=-1)
            log_var = 2 * torch.log(F.softplus(raw) + min_scale)
            return ModelOutput(embedding=mean, log_covariance=log_var)

    class Decoder(BaseDecoder):
        def __init__(self, net: nn.Module):
            BaseDecoder.__init__(self)
            self.net = net

        def forward(self, z: Tensor):
            return ModelOutput(reconstruction=torch.sigmoid(self.net(z)))

    common = {
        "input_dim": tuple(cfg.data_shape),
        "latent_dim": cfg.latent_dim,
        "reconstruction_loss": "bce",
    }
    encoder = Encoder(copy.deepcopy(model.posterior.net))
    decoder = Decoder(copy.deepcopy(model.generative.decoder))
    if beta is None:
        return VAE(VAEConfig(**common), encoder=encoder, decoder=decoder)
    return BetaVAE(BetaVAEConfig(beta=beta, **common), encoder=encoder, decoder=decoder)


def diffusers_scheduler(num_timesteps: int):
    """diffusers' DDPMScheduler with DDPM's linear schedule (β 1e-4 → 0.02 at T = 1000)."""
    from diffusers import DDPMScheduler

    s = 1000.0 / num_timesteps
    return DDPMScheduler(
        num_train_timesteps=num_timesteps,
        beta_schedule="linear",
        beta_start=s * 1e-4,
        beta_end=s * 0.02,
    )


def diffusers_step_loss(net: nn.Module, scheduler, x0: Tensor) -> Tensor:
    """diffusers' training loss for one batch: ``F.mse_loss(ε_θ(add_noise(x_0, ε, t), t), ε)``.

    The draws come in latentkit's order (t first, then ε), so under one seed both see the
    same noise; the order costs nothing either way."""
    T = scheduler.config.num_train_timesteps
    timesteps = torch.randint(0, T, (x0.shape[0],), device=x0.device)
    noise = torch.randn_like(x0)
    noisy = scheduler.add_noise(x0, noise, timesteps)
    eps = net(noisy, timesteps + 1).reshape(noise.shape)
    return F.mse_loss(eps, noise)
