"""The continuous-time diffusion itself, shared by both chains: γ(t), the ε-network and the
decoder (``ContinuousDiffusion``), the T → ∞ bound ELBO_∞ and its three terms
(``ContinuousElbo``), the SDE view, and the times the bound is estimated at
(``sample_times``). Notation and the formulas: the package's ``model`` module and
``docs/continuous.md``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Independent

import latentkit as lk
from latentkit.arguments import check_count, describe_value
from latentkit.diffusion import alpha_bar_sq, beta_bar_sq, step_variance_fraction
from latentkit.distributions import (
    DiscretizedNormal,
    closed_form_kl,
    diag_normal,
    standard_normal,
)
from latentkit_vdm.config import SCHEDULE_GRADIENTS, T_SAMPLERS, VDMConfig
from latentkit_vdm.networks import build_network
from latentkit_vdm.schedule import make_log_snr

__all__ = ["ContinuousDiffusion", "ContinuousElbo", "sample_times"]


def sample_times(n: int, kind: str, *, like: Tensor) -> Tensor:
    """n times in [0, 1), each marginally U(0, 1) (so every per-example term is unbiased).

    ``low-discrepancy``: t_i = (u + i/n) mod 1 with one u ~ U(0, 1) (VDM §3.4);
    ``antithetic``: t and 1 − t for the two halves (an odd n's last one alone);
    ``uniform``: i.i.d.
    """
    check_count(n, "sample_times: n")
    if not isinstance(like, Tensor) or not like.is_floating_point():
        raise lk.InputError(
            f"sample_times: like must be a float tensor, got {describe_value(like)}"
        )
    opts = {"dtype": like.dtype, "device": like.device}
    if kind == "low-discrepancy":
        return torch.remainder(torch.rand((), **opts) + torch.arange(n, **opts) / n, 1.0)
    if kind == "antithetic":
        half = torch.rand(n // 2, **opts)
        return torch.cat([half, 1.0 - half, torch.rand(n % 2, **opts)])
    if kind == "uniform":
        return torch.rand(n, **opts)
    raise lk.ConfigError(f"t_sampler must be one of {T_SAMPLERS}, got {kind!r}")


class ContinuousElbo(NamedTuple):
    """ELBO_∞ and its named terms, each ``[batch]`` nats: total = reconstruction −
    prior_matching − diffusion; ``t`` the times the diffusion term was estimated at."""

    total: Tensor
    reconstruction: Tensor
    prior_matching: Tensor
    diffusion: Tensor
    t: Tensor


class ContinuousDiffusion(nn.Module):
    """γ(t), the ε-network and the decoder: everything both chains and the bound share.

    ``t`` arguments are float tensors: 0-d (one time) or ``[batch]`` (one per example). A
    conditional model's (``condition_spec``, from ``VDMConfig.classes``) methods that reach
    the network take ``condition``, the conditions of the rows (``[batch]`` labels, the
    null class allowed), and the samplers' ``guidance`` w ≥ 0 (:meth:`eps`).
    """

    def __init__(self, cfg: VDMConfig, net: nn.Module | None = None):
        if not isinstance(cfg, VDMConfig):
            raise lk.ConfigError(
                f"ContinuousDiffusion: cfg must be a VDMConfig, got {describe_value(cfg)}"
            )
        if net is not None and not isinstance(net, nn.Module):
            raise lk.InputError(
                f"ContinuousDiffusion: net must be a torch.nn.Module or None, "
                f"got {describe_value(net)}"
            )
        super().__init__()
        self.data_shape = tuple(cfg.data_shape)
        self.event_dims = len(self.data_shape)
        self.decoder_kind = cfg.decoder
        self.levels = cfg.levels
        self.binary = cfg.decoder == "discretized" and cfg.levels == 2
        self.prediction = cfg.prediction
        self.eps_skip = cfg.eps_skip
        self.exact_normal_part = cfg.normal_part == "exact"
        self.condition_spec = cfg.condition_spec
        self.log_snr = make_log_snr(cfg.schedule, cfg.gamma_min, cfg.gamma_max)
        self.net = build_network(cfg, self.log_snr) if net is None else net
        self.register_buffer("_ref", torch.zeros(()), persistent=False)

    # -- the schedule -----------------------------------------------------------------------

    def _bc(self, t: Tensor, like: Tensor) -> Tensor:
        """``t`` shaped to broadcast against ``like`` (``[batch, *event]``)."""
        return t.reshape(-1, *([1] * (like.ndim - 1))) if t.ndim == 1 else t

    def gamma(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """γ(t) and γ'(t), elementwise."""
        return self.log_snr(t)

    def scales(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """ᾱ_t and β̄_t (VDM's α_t, σ_t), elementwise."""
        g, _ = self.gamma(t)
        return alpha_bar_sq(g).sqrt(), beta_bar_sq(g).sqrt()

    def eps(
        self,
        z: Tensor,
        t: Tensor,
        gamma: Tensor | None = None,
        *,
        condition: Tensor | None = None,
        guidance: float = 0.0,
    ) -> Tensor:
        """ε̂_θ(z_t, t), or ε̂_θ(z_t, t, c) given the rows' ``condition`` (a conditional
        model's, which needs it); ``t`` 0-d or ``[batch]``. A network with ``takes_gamma``
        is also given γ(t): ``gamma`` if the caller has it (the same tensor its other terms
        use), else computed here. With ``eps_skip``, ε̂ = β̄_t z_t + the network's output
        (``VDMConfig.eps_skip``). With ``prediction="x"`` the network's output is x̂_θ and
        ε̂ = (z_t − ᾱ_t x̂_θ)/β̄_t (the same γ(t) gives ᾱ_t, β̄_t). With ``guidance`` w > 0
        (sampling), classifier-free guidance: ε̃ = (1 + w) ε̂_θ(z_t, t, c) − w ε̂_θ(z_t, t, ∅),
        from one network call on 2·batch rows."""
        n = z.shape[0]
        t = t.expand(n) if t.ndim == 0 else t
        takes_gamma = getattr(self.net, "takes_gamma", False)
        if gamma is None and (takes_gamma or self.prediction == "x" or self.eps_skip):
            gamma, _ = self.gamma(t)
        if gamma is not None:
            gamma = gamma.expand(n) if gamma.ndim == 0 else gamma
        spec = self.condition_spec
        if spec is None and (condition is not None or guidance):
            raise lk.InputError(
                "ContinuousDiffusion.eps: an unconditional model takes no condition or guidance"
            )
        if spec is not None and condition is None:
            raise lk.InputError(
                f"ContinuousDiffusion.eps: the model is conditional on {spec.describe()}; "
                "give the rows' condition (model.given(c), or condition= to the function)"
            )
        if guidance:
            # c's rows, then the null class's: "(two b) ..." with two = 2
            c = torch.cat([condition, torch.full_like(condition, spec.null_class)])
            twice = (None if v is None else torch.cat([v, v]) for v in (z, t, gamma))
            given, null = self._predict(*twice, c).chunk(2)
            return (1 + guidance) * given - guidance * null
        return self._predict(z, t, gamma, condition)

    def _predict(self, z: Tensor, t: Tensor, gamma: Tensor | None, c: Tensor | None) -> Tensor:
        """ε̂ from one network call on these rows (``eps``'s body)."""
        args = (z, t, gamma) if getattr(self.net, "takes_gamma", False) else (z, t)
        extra = {} if c is None else {"condition": self.condition_spec.features(c, z.dtype)}
        out = self.net(*args, **extra)
        if self.prediction == "eps":  # with eps_skip, β̄_t z_t + the network's output
            return out + beta_bar_sq(self._bc(gamma, z)).sqrt() * z if self.eps_skip else out
        g = self._bc(gamma, z)
        return (z - alpha_bar_sq(g).sqrt() * out) / beta_bar_sq(g).sqrt()

    def linear_coefficients(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """(a, b) of ε̂ = a ⊙ z + b at the times ``t`` (``[n]``), each ``[n, D]``, for a network
        linear in z (one with ``coefficients``): its own, a + β̄_t with ``eps_skip``."""
        a, b = self.net.coefficients(t)
        if self.eps_skip:
            a = a + self.scales(t.unsqueeze(-1))[1]
        return a, b

    @property
    def bin_width(self) -> float:
        """2/(K − 1): the width of a level's bin on the grid the diffusion sees."""
        return 2.0 / (self.levels - 1)

    def on_grid(self, x: Tensor) -> Tensor:
        """The data as the diffusion reads them: binary x ∈ {0, 1} → 2x − 1 ∈ {−1, 1} at
        ``levels = 2`` (``DiscretizedNormal.from_binary``, a bijection of the two grids, so
        no probability changes); else x itself."""
        return DiscretizedNormal.from_binary(x) if self.binary else x

    def q_sample(self, x: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """z_t = ᾱ_t x + β̄_t ε: a draw from q(z_t | x) with the noise given."""
        alpha, sigma = self.scales(self._bc(t, x))
        return alpha * self.on_grid(x) + sigma * noise

    # -- the bound's three terms --------------------------------------------------------------

    def marginal(self, t: Tensor, x: Tensor) -> Independent:
        """q(z_t | x) = N(ᾱ_t x, β̄_t² I)."""
        alpha, sigma = self.scales(self._bc(t, x))
        return diag_normal(alpha * self.on_grid(x), sigma.expand_as(x), self.event_dims)

    def decoder(self, z0: Tensor) -> Distribution:
        """p(x | z_0) = N(z_0/ᾱ_0, β̄_0²/ᾱ_0²), discretized over the K = ``levels`` bins (on
        binary data {0, 1} at K = 2) or not."""
        alpha, sigma = self.scales(z0.new_zeros(()))
        loc, scale = z0 / alpha, (sigma / alpha).expand_as(z0)
        if self.decoder_kind == "discretized":
            dist = DiscretizedNormal(loc, scale, self.levels, binary=self.binary)
            return Independent(dist, self.event_dims)
        return diag_normal(loc, scale, self.event_dims)

    def prior(self, n: int) -> Independent:
        """p(z_1) = N(0, I)."""
        return standard_normal(n, self.data_shape, like=self._ref, event_dims=self.event_dims)

    def prior_matching(self, x: Tensor) -> Tensor:
        """KL(q(z_1 | x) ‖ N(0, I)) = ½ Σ (ᾱ_1² x² + β̄_1² − 1 − log β̄_1²), ``[batch]``: the
        closed form latentkit registers for a diagonal Gaussian against N(0, I)."""
        return closed_form_kl(self.marginal(x.new_ones(()), x), self.prior(x.shape[0]))

    def reconstruction(self, x: Tensor) -> Tensor:
        """log p(x | z_0) at one draw z_0 ~ q(z_0 | x), ``[batch]``."""
        z0 = self.marginal(x.new_zeros(()), x).rsample()
        return self.decoder(z0).log_prob(x)

    def diffusion_integrand(
        self,
        x: Tensor,
        t: Tensor,
        noise: Tensor,
        *,
        schedule_gradient: str = "elbo",
        condition: Tensor | None = None,
        minus_normal: bool = False,
    ) -> Tensor:
        """L_i = ½ γ'(t) ‖ε − ε̂_θ(ᾱ_t x + β̄_t ε, t)‖², ``[batch]``: its mean over t ~ U(0, 1)
        and ε is the diffusion term (VDM eq. 17). ``minus_normal``: L_i less the same term of
        the network-free ``eps_skip`` model (ε̂ = β̄_t z_t at the same z_t), the residual's
        term of ``normal_part = "exact"``.

        ``schedule_gradient`` is what a schedule written γ = γ_min + span · h(t; η) (the
        ``learned`` one) receives through its profile h and h' (so η, the interior):
        ``elbo``, the gradient of L_i; ``variance``, 2 L_i (a constant) times it, per example,
        i.e. the gradient of L_i² — whose batch mean is the gradient of the estimator's
        variance, E[L] being free of η when ε̂ sees γ rather than t (VDM §5). The value, the
        network's gradient and the ends' gradient are the same either way. ``condition``: the
        rows' conditions (ε̂_θ(z_t, t, c)) of a conditional model.
        """
        if schedule_gradient not in SCHEDULE_GRADIENTS:
            raise lk.ConfigError(
                f"schedule_gradient must be one of {SCHEDULE_GRADIENTS}, got {schedule_gradient!r}"
            )
        n = x.shape[0]
        t = t.expand(n) if t.ndim == 0 else t
        profile = None
        if (
            schedule_gradient == "variance"
            and hasattr(self.log_snr, "profile")
            and torch.is_grad_enabled()
        ):
            profile = self.log_snr.profile(t)
            g, dg = self.log_snr.from_profile(*profile)
        else:
            g, dg = self.gamma(t)
        g_x = self._bc(g, x)
        z_t = alpha_bar_sq(g_x).sqrt() * self.on_grid(x) + beta_bar_sq(g_x).sqrt() * noise
        err = (noise - self.eps(z_t, t, g, condition=condition)).pow(2).flatten(1).sum(-1)
        if minus_normal:  # the network-free model's error at the same z_t: ε̂ = β̄_t z_t
            err = err - (noise - beta_bar_sq(g_x).sqrt() * z_t).pow(2).flatten(1).sum(-1)
        term = 0.5 * dg * err
        if profile is not None:
            weight = 2 * term.detach()  # d(L²)/dη = 2 L dL/dη, L known only now
            for part in profile:
                if part.requires_grad:
                    part.register_hook(lambda grad: grad * weight)
        return term

    def elbo(
        self,
        x: Tensor,
        t: Tensor | None = None,
        t_sampler: str = "low-discrepancy",
        *,
        schedule_gradient: str = "elbo",
        condition: Tensor | None = None,
    ) -> ContinuousElbo:
        """ELBO_∞(x) by one draw of z_0, of t (``t_sampler``, or the ``t`` given) and of ε;
        ``schedule_gradient`` as :meth:`diffusion_integrand`'s (``elbo``: the plain bound's
        gradient everywhere); ``condition`` the examples' conditions (a conditional model:
        ELBO_∞(x | c), only the diffusion term reads c). With ``normal_part = "exact"`` the
        same bound, its ``reconstruction`` the closed-form :meth:`normal_part`, its
        ``prior_matching`` 0 and its ``diffusion`` the residual's term (``minus_normal``)."""
        t = sample_times(x.shape[0], t_sampler, like=x) if t is None else t
        exact = self.exact_normal_part
        recon = self.normal_part(x) if exact else self.reconstruction(x)
        prior = torch.zeros_like(recon) if exact else self.prior_matching(x)
        diffusion = self.diffusion_integrand(
            x,
            t,
            torch.randn_like(x),
            schedule_gradient=schedule_gradient,
            condition=condition,
            minus_normal=exact,
        )
        return ContinuousElbo(recon - prior - diffusion, recon, prior, diffusion, t)

    def normal_part(self, x: Tensor) -> Tensor:
        """ELBO_∞(x) of the network-free ``eps_skip`` model (ε̂ = β̄_t z_t, E[ε | z_t] of
        N(0, I) data) with the Gaussian decoder, ``[batch]``, in closed form: its path is the
        forward process of N(0, I) data, so the bound is log N(x; 0, I) less the decoder
        end's mismatch, + Σ_d [½ log ᾱ_0² + ½ β̄_0² (x_d² − 1)] (``VDMConfig.normal_part``)."""
        g0, _ = self.gamma(x.new_zeros(()))
        a0_sq, s0_sq = alpha_bar_sq(g0), beta_bar_sq(g0)
        flat = x.flatten(1)
        log_normal = -0.5 * (flat.pow(2) + math.log(2 * math.pi)).sum(-1)
        return log_normal + (0.5 * torch.log(a0_sq) + 0.5 * s0_sq * (flat.pow(2) - 1)).sum(-1)

    # -- the SDE view ----------------------------------------------------------------------------

    def sde_coefficients(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """f(t) = −½ γ' β̄_t² and g(t)² = γ' β̄_t² of the forward VP SDE dz = f z dt + g dw."""
        g, dg = self.gamma(t)
        g_sq = dg * beta_bar_sq(g)
        return -0.5 * g_sq, g_sq

    def score(
        self, z: Tensor, t: Tensor, *, condition: Tensor | None = None, guidance: float = 0.0
    ) -> Tensor:
        """s_θ(z, t) = −ε̂_θ(z, t)/β̄_t (seed 001: the score of q(z_t) the network implies);
        ``condition`` and ``guidance`` as :meth:`eps`'s."""
        _, sigma = self.scales(self._bc(t, z))
        return -self.eps(z, t, condition=condition, guidance=guidance) / sigma

    def score_matching_loss(
        self,
        x: Tensor,
        t: Tensor,
        noise: Tensor,
        weighting: str = "likelihood",
        *,
        condition: Tensor | None = None,
    ) -> Tensor:
        """½ λ(t) ‖s_θ(z_t, t) − ∇_z log q(z_t | x)‖², z_t = ᾱ_t x + β̄_t ε, ``[batch]``: denoising
        score matching with ∇_z log q(z_t | x) = −ε/β̄_t and λ = g² (``likelihood``, Song et al.
        2021 eq. 34; equal to :meth:`diffusion_integrand`) or λ = β̄_t² (``simple``)."""
        g, _ = self.gamma(t)
        _, g_sq = self.sde_coefficients(t)
        lam = g_sq if weighting == "likelihood" else beta_bar_sq(g)
        _, sigma = self.scales(self._bc(t, x))
        z_t = self.q_sample(x, t, noise)
        err = (self.score(z_t, t, condition=condition) + noise / sigma).pow(2).flatten(1).sum(-1)
        return 0.5 * lam.expand(x.shape[0]) * err

    def probability_flow(
        self, t: Tensor, z: Tensor, *, condition: Tensor | None = None, guidance: float = 0.0
    ) -> Tensor:
        """dz/dt = f z − ½ g² s_θ = ½ γ'(t) β̄_t (ε̂_θ − β̄_t z) (Song et al. 2021, eq. 13);
        ``condition`` and ``guidance`` as :meth:`eps`'s (guided: ε̃ in place of ε̂_θ)."""
        g, dg = self.gamma(self._bc(t, z))
        sigma = beta_bar_sq(g).sqrt()
        eps = self.eps(z, t, condition=condition, guidance=guidance)
        return 0.5 * dg * sigma * (eps - sigma * z)

    def reverse_drift(
        self, t: Tensor, z: Tensor, *, condition: Tensor | None = None, guidance: float = 0.0
    ) -> Tensor:
        """f z − g² s_θ = γ'(t) β̄_t (ε̂_θ − ½ β̄_t z): the reverse SDE's drift (time running
        backwards: dz = [f z − g² s_θ] dt + g dw̄, Anderson 1982); ``condition`` and
        ``guidance`` as :meth:`eps`'s (guided: ε̃ in place of ε̂_θ)."""
        g, dg = self.gamma(self._bc(t, z))
        sigma = beta_bar_sq(g).sqrt()
        eps = self.eps(z, t, condition=condition, guidance=guidance)
        return dg * sigma * (eps - 0.5 * sigma * z)

    # -- the discrete-T chain's transitions -----------------------------------------------------

    def step_constants(self, s: Tensor, t: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """For s < t: (α_{t|s}, coefficient of z_t, coefficient of x, variance) of
        q(z_s | z_t, x) = N(α_{t|s} β̄_s²/β̄_t² z_t + ᾱ_s f x, β̄_s² f I), f = −expm1(γ_s − γ_t)."""
        gs, _ = self.gamma(s)
        gt, _ = self.gamma(t)
        frac = step_variance_fraction(gs, gt)
        alpha_s, alpha_t = alpha_bar_sq(gs).sqrt(), alpha_bar_sq(gt).sqrt()
        var_s, var_t = beta_bar_sq(gs), beta_bar_sq(gt)
        alpha_ts = alpha_t / alpha_s
        return alpha_ts, alpha_ts * var_s / var_t, alpha_s * frac, var_s * frac
