"""Hand-written, minimal PyTorch versions of latentkit's VAE, hierarchical VAE and DDPM.

What a person would write without a framework: plain ``nn.Linear`` stacks, the loss as a
few tensor lines, no ``torch.distributions``, no validation. Each class builds the same
network as the latentkit model and ``from_latentkit`` copies its weights in, so under one
seed the two give the same loss to float tolerance (``tests/test_bench_baselines.py``).

Every loss is per example, ``[batch]`` (the trainer averages), in nats:

* VAE: −ELBO = BCE(logits, x) + KL(N(μ, σ²) ‖ N(0, I)), σ = softplus(raw) + min_scale.
* HVAE (ladder posterior, top-down analytic KLs): −[log p(x|z_1) − KL(q(z_L|x) ‖ p(z_L))
  − Σ_l KL(q(z_{l-1}|z_l, x) ‖ p(z_{l-1}|z_l))].
* DDPM: the one-timestep −ELBO (reconstruction at t = 1, prior KL, one uniform t in 2..T
  scaled by T − 1), and the full-T −ELBO with every (example, t) pair in batched chunks.

latentkit draws no normal it does not use (an analytic KL needs no sample), so the
baselines draw in the same order and one seed gives both the same noise.
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "DDPM",
    "HVAE",
    "VAE",
    "discretized_gaussian_log_likelihood",
    "gaussian_kl",
    "linear_schedule",
    "mlp",
]


def mlp(sizes: list[int]) -> nn.Sequential:
    """Linear layers with SiLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.SiLU())
    return nn.Sequential(*layers)


def gaussian_kl(mu_q: Tensor, std_q: Tensor, mu_p: Tensor, std_p: Tensor) -> Tensor:
    """KL(N(μ_q, σ_q²) ‖ N(μ_p, σ_p²)) summed over the last dimension, ``[batch]``."""
    var_ratio = (std_q / std_p).pow(2)
    t1 = ((mu_q - mu_p) / std_p).pow(2)
    return 0.5 * (var_ratio + t1 - 1 - var_ratio.log()).sum(-1)


def _std(raw: Tensor, min_scale: float) -> Tensor:
    return F.softplus(raw) + min_scale


class VAE(nn.Module):
    """q(z|x) = N(μ(x), σ²(x)), p(z) = N(0, I), p(x|z) = Bernoulli(logits = dec(z))."""

    def __init__(
        self,
        data_dim: int,
        latent_dim: int,
        hidden: tuple[int, ...],
        *,
        beta: float = 1.0,
        min_scale: float = 1e-4,
    ):
        super().__init__()
        self.enc = mlp([data_dim, *hidden, 2 * latent_dim])
        self.dec = mlp([latent_dim, *hidden, data_dim])
        self.beta, self.min_scale = beta, min_scale

    @classmethod
    def from_latentkit(cls, model) -> VAE:
        cfg = model.config
        out = cls(
            math.prod(cfg.data_shape),
            cfg.latent_dim,
            cfg.hidden,
            beta=model.default_objective[1].get("beta", 1.0),
            min_scale=cfg.min_scale,
        )
        out.enc.load_state_dict(model.posterior.net.state_dict())
        out.dec.load_state_dict(model.generative.decoder.state_dict())
        return out

    def loss(self, x: Tensor) -> Tensor:
        """−ELBO_β per example; x ``[batch, D]`` in {0, 1}."""
        mu, raw = self.enc(x).chunk(2, dim=-1)
        std = _std(raw, self.min_scale)
        z = mu + std * torch.randn_like(std)
        nll = F.binary_cross_entropy_with_logits(self.dec(z), x, reduction="none").sum(-1)
        kl = (0.5 * (mu.pow(2) + std.pow(2) - 1) - std.log()).sum(-1)
        return nll + self.beta * kl


class HVAE(nn.Module):
    """The ladder HVAE: bottom-up features h_l, then top-down q(z_L|x), q(z_{l-1}|z_l, h_{l-1})."""

    def __init__(
        self,
        data_dim: int,
        latent_dims: tuple[int, ...],
        hidden: tuple[int, ...],
        *,
        min_scale: float = 1e-4,
    ):
        super().__init__()
        width = hidden[-1]
        dims = latent_dims
        self.blocks = nn.ModuleList(
            nn.Sequential(*mlp([data_dim if l == 0 else width, *hidden]), nn.SiLU())
            for l in range(len(dims))
        )
        self.top = nn.Linear(width, 2 * dims[-1])
        # index l - 2 for the step z_l -> z_{l-1}, l = 2..L (as latentkit numbers them)
        self.q_down = nn.ModuleList(
            mlp([dims[l - 1] + width, *hidden, 2 * dims[l - 2]]) for l in range(2, len(dims) + 1)
        )
        self.p_down = nn.ModuleList(
            mlp([dims[l - 1], *hidden, 2 * dims[l - 2]]) for l in range(2, len(dims) + 1)
        )
        self.dec = mlp([dims[0], *hidden, data_dim])
        self.min_scale = min_scale

    @classmethod
    def from_latentkit(cls, model) -> HVAE:
        cfg, q, p = model.config, model.posterior, model.generative
        out = cls(math.prod(cfg.data_shape), cfg.latent_dims, cfg.hidden, min_scale=cfg.min_scale)
        out.blocks.load_state_dict(q.blocks.state_dict())
        out.top.load_state_dict(q.top_head[0][0].state_dict())
        for mine, theirs in zip(out.q_down, q.down_heads):
            mine.load_state_dict(theirs[0].state_dict())
        for mine, theirs in zip(out.p_down, p.transitions):
            mine.load_state_dict(theirs[0].state_dict())
        out.dec.load_state_dict(p.decoder.state_dict())
        return out

    def loss(self, x: Tensor) -> Tensor:
        """−ELBO per example with analytic KLs; x ``[batch, D]`` in {0, 1}."""
        h, feats = x, []
        for block in self.blocks:
            h = block(h)
            feats.append(h)
        mu, raw = self.top(feats[-1]).chunk(2, dim=-1)
        std = _std(raw, self.min_scale)
        z = mu + std * torch.randn_like(std)
        kl = (0.5 * (mu.pow(2) + std.pow(2) - 1) - std.log()).sum(-1)
        for l in range(len(self.blocks), 1, -1):
            mu_q, raw_q = self.q_down[l - 2](torch.cat([z, feats[l - 2]], -1)).chunk(2, -1)
            mu_p, raw_p = self.p_down[l - 2](z).chunk(2, -1)
            std_q = _std(raw_q, self.min_scale)
            z = mu_q + std_q * torch.randn_like(std_q)
            kl = kl + gaussian_kl(mu_q, std_q, mu_p, _std(raw_p, self.min_scale))
        nll = F.binary_cross_entropy_with_logits(self.dec(z), x, reduction="none").sum(-1)
        return nll + kl


# -- DDPM ---------------------------------------------------------------------------------


def linear_schedule(T: int) -> dict[str, Tensor]:
    """DDPM's linear schedule (paper β from 1e-4 to 0.02, scaled by 1000/T), in the notation
    q(x_t|x_{t-1}) = N(α_t x_{t-1}, β_t² I): rows t = 0..T, computed in float64."""
    s = 1000.0 / T
    beta_sq = torch.linspace(s * 1e-4, s * 0.02, T, dtype=torch.float64).clamp(max=0.999)
    beta_sq = torch.cat([beta_sq.new_zeros(1), beta_sq])
    alpha_bar_sq = torch.cumprod(1 - beta_sq, 0)
    beta_bar_sq = 1 - alpha_bar_sq
    prev = beta_bar_sq.roll(1)
    safe = torch.where(beta_bar_sq > 0, beta_bar_sq, torch.ones_like(beta_bar_sq))
    return {
        "alpha": (1 - beta_sq).sqrt(),
        "beta_sq": beta_sq,
        "alpha_bar": alpha_bar_sq.sqrt(),
        "beta_bar": beta_bar_sq.sqrt(),
        "coef_x0": alpha_bar_sq.roll(1).sqrt() * beta_sq / safe,
        "coef_xt": (1 - beta_sq).sqrt() * prev / safe,
        "beta_tilde": (prev * beta_sq / safe).sqrt(),
    }


def discretized_gaussian_log_likelihood(x: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """log P(bin of x) under N(mean, std²) for 8-bit data in [-1, 1] (bins of width 2/255,
    the outer two open: their missing edge is ∓∞), summed over the last dimension. Bins
    right of the mean are mirrored so the two CDFs stay small and their difference keeps
    its float32 digits. Two log-CDF calls per value, as latentkit's DiscretizedNormal."""
    edge = 1 - 1 / 255
    upper = torch.where(x > edge, math.inf, (x + 1 / 255 - mean) / std)
    lower = torch.where(x < -edge, -math.inf, (x - 1 / 255 - mean) / std)
    mirror = lower > 0
    log_hi = torch.special.log_ndtr(torch.where(mirror, -lower, upper))
    log_lo = torch.special.log_ndtr(torch.where(mirror, -upper, lower))
    d = (log_lo - log_hi).clamp(max=0.0)
    log1mexp = torch.where(d > -math.log(2), torch.log(-torch.expm1(d)), torch.log1p(-d.exp()))
    return (log_hi + log1mexp).sum(-1)


class EpsMLP(nn.Module):
    """ε_θ(x_t, t): sinusoidal t-embedding → Linear → SiLU → Linear, added at every layer."""

    def __init__(self, data_dim: int, hidden: tuple[int, ...]):
        super().__init__()
        e = hidden[0]
        self.emb_dim = e
        self.time = mlp([e, e, e])
        self.layers = nn.ModuleList(
            nn.Linear(a, b) for a, b in itertools.pairwise([data_dim, *hidden])
        )
        self.time_proj = nn.ModuleList(nn.Linear(e, b) for b in hidden)
        self.out = nn.Linear(hidden[-1], data_dim)
        half = e // 2
        freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, dtype=torch.float64) / half)
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        angles = t.to(torch.float64)[:, None] * self.freqs[None]
        emb = self.time(torch.cat([angles.cos(), angles.sin()], -1).to(x.dtype))
        h = x
        for layer, proj in zip(self.layers, self.time_proj):
            h = F.silu(layer(h) + proj(emb))
        return self.out(h)


class DDPM(nn.Module):
    """The DDPM on vectors: ε-network, linear schedule, σ_t² = β_t², discretized decoder."""

    def __init__(self, data_dim: int, T: int, hidden: tuple[int, ...]):
        super().__init__()
        self.net = EpsMLP(data_dim, hidden)
        self.T = T
        for name, value in linear_schedule(T).items():
            self.register_buffer(name, value.float(), persistent=False)

    @classmethod
    def from_latentkit(cls, model) -> DDPM:
        cfg = model.config
        out = cls(math.prod(cfg.data_shape), cfg.num_timesteps, cfg.hidden)
        theirs = model.generative.net
        out.net.time.load_state_dict(theirs.time.net.state_dict())
        out.net.layers.load_state_dict(theirs.layers.state_dict())
        out.net.time_proj.load_state_dict(theirs.time_proj.state_dict())
        out.net.out.load_state_dict(theirs.out.state_dict())
        return out

    def _c(self, name: str, t: Tensor) -> Tensor:
        return getattr(self, name)[t][:, None]

    def q_sample(self, x0: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        return self._c("alpha_bar", t) * x0 + self._c("beta_bar", t) * eps

    def p_mean(self, x_t: Tensor, t: Tensor) -> Tensor:
        """μ_θ(x_t, t) = (x_t − β_t²/β̄_t · ε_θ(x_t, t)) / α_t."""
        eps = self.net(x_t, t)
        return (x_t - self._c("beta_sq", t) / self._c("beta_bar", t) * eps) / self._c("alpha", t)

    def _terms(self, x0: Tensor) -> tuple[Tensor, Tensor]:
        """log p(x_0|x_1) at x_1 ~ q(x_1|x_0), and KL(q(x_T|x_0) ‖ N(0, I))."""
        one = torch.ones(x0.shape[0], dtype=torch.long, device=x0.device)
        x1 = self.q_sample(x0, one, torch.randn_like(x0))
        recon = discretized_gaussian_log_likelihood(
            x0, self.p_mean(x1, one), self._c("beta_sq", one).sqrt()
        )
        T = torch.full_like(one, self.T)
        mu = self._c("alpha_bar", T) * x0
        std = self._c("beta_bar", T).expand_as(x0)
        prior = (0.5 * (mu.pow(2) + std.pow(2) - 1) - std.log()).sum(-1)
        return recon, prior

    def _layer_kl(self, x0: Tensor, t: Tensor) -> Tensor:
        """KL(q(x_{t-1}|x_t, x_0) ‖ p(x_{t-1}|x_t)) at x_t ~ q(x_t|x_0), one t per row."""
        x_t = self.q_sample(x0, t, torch.randn_like(x0))
        mu_q = self._c("coef_x0", t) * x0 + self._c("coef_xt", t) * x_t
        std_q = self._c("beta_tilde", t).expand_as(x0)
        std_p = self._c("beta_sq", t).sqrt().expand_as(x0)
        return gaussian_kl(mu_q, std_q, self.p_mean(x_t, t), std_p)

    def loss(self, x0: Tensor) -> Tensor:
        """The one-timestep −ELBO per example (t ~ U{2..T}, its KL × (T − 1))."""
        recon, prior = self._terms(x0)
        t = torch.randint(2, self.T + 1, (x0.shape[0],), device=x0.device)
        kl = self._layer_kl(x0, t)
        return -(recon - prior - (self.T - 1) * kl)

    def elbo(self, x0: Tensor, *, pairs_per_call: int = 8192) -> Tensor:
        """The full-T ELBO per example: every t in 2..T, in chunks of ``pairs_per_call``
        (example, t) rows per network call."""
        n = x0.shape[0]
        recon, prior = self._terms(x0)
        kl = torch.zeros(n, dtype=x0.dtype, device=x0.device)
        ts = torch.arange(2, self.T + 1, device=x0.device)
        for chunk in ts.split(max(1, pairs_per_call // n)):
            c = chunk.shape[0]
            t = chunk.repeat_interleave(n)
            kl = kl + self._layer_kl(x0.repeat(c, 1), t).view(c, n).sum(0)
        return recon - prior - kl
