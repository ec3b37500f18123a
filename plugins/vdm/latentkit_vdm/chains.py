"""The discrete-T chains of the continuous-time model: layer l at time t_l = (l − 1)/T, the
posterior q fixed given γ (``VDMPosterior``) and the generative p that denoises with the
shared ε-network (``VDMGenerative``). Notation: the package's ``model`` module.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import Distribution, Independent

import latentkit as lk
from latentkit.arguments import check_count, describe_value
from latentkit.diffusion import MAX_TIMESTEPS, beta_bar_sq, step_variance_fraction
from latentkit.distributions import diag_normal
from latentkit_vdm.continuous import ContinuousDiffusion

__all__ = ["VDMGenerative", "VDMPosterior"]


def _check_parts(core: object, num_timesteps: object, where: str) -> None:
    """A chain's constructor arguments: the shared core and T in 1..MAX_TIMESTEPS."""
    if not isinstance(core, ContinuousDiffusion):
        raise lk.InputError(
            f"{where}: core must be a ContinuousDiffusion, got {describe_value(core)}"
        )
    check_count(num_timesteps, f"{where}: num_timesteps", high=MAX_TIMESTEPS, error=lk.ConfigError)


def _times(l: int | Tensor, T: int, like: Tensor) -> tuple[Tensor, Tensor]:
    """(t_{l−1}, t_l) = ((l − 2)/T, (l − 1)/T) as float tensors (0-d for an int ``l``)."""
    t = torch.as_tensor(l, device=like.device).to(like.dtype)
    return (t - 2) / T, (t - 1) / T


class VDMPosterior(lk.PosteriorChain):
    """q(z_{t_1..t_L} | x) at times t_l = (l − 1)/T: fixed given γ, offered every way."""

    top_down = True
    bottom_up = True
    layer_batched = True

    def __init__(self, core: ContinuousDiffusion, num_timesteps: int):
        _check_parts(core, num_timesteps, "VDMPosterior")
        super().__init__()
        # A reference, not a submodule: the generative chain owns the shared parameters.
        self.__dict__["core"] = core
        self.num_timesteps = num_timesteps

    def marginal(self, l: int | Tensor, x: Tensor) -> Independent:
        """q(z_{t_l} | x)."""
        return self.core.marginal(_times(l, self.num_timesteps, x)[1], x)

    def top(self, x: Tensor) -> Independent:
        """q(z_1 | x), t = 1."""
        return self.marginal(self.num_timesteps + 1, x)

    def first(self, x: Tensor) -> Independent:
        """q(z_0 | x), t = 0."""
        return self.marginal(1, x)

    def down(self, l: int | Tensor, z: Tensor, x: Tensor) -> Independent:
        """q(z_s | z_t = z, x), s = t_{l−1}, t = t_l."""
        c = self.core
        s, t = _times(l, self.num_timesteps, z)
        _, cz, cx, var = c.step_constants(c._bc(s, z), c._bc(t, z))
        loc = cz * z + cx * c.on_grid(x)
        return diag_normal(loc, var.sqrt().expand_as(loc), c.event_dims)

    def up(self, l: int | Tensor, z: Tensor, x: Tensor) -> Independent:
        """q(z_t | z_s = z) = N(α_{t|s} z_s, β̄_t² f I) (Markov: x unused)."""
        c = self.core
        s, t = _times(l, self.num_timesteps, z)
        s, t = c._bc(s, z), c._bc(t, z)
        alpha_ts, _, _, _ = c.step_constants(s, t)
        gs, _ = c.gamma(s)
        gt, _ = c.gamma(t)
        var = beta_bar_sq(gt) * step_variance_fraction(gs, gt)
        loc = alpha_ts * z
        return diag_normal(loc, var.sqrt().expand_as(loc), c.event_dims)


class VDMGenerative(lk.GenerativeChain):
    """p(z_1) = N(0, I) · Π p(z_s | z_t) · p(x | z_0), one ε-network for every t.

    Also the probability-flow contract of :func:`latentkit.ode_log_prob`:
    :meth:`probability_flow` and :attr:`ode_time_span`.

    A conditional model's chain (``VDMConfig.classes``) reads the bound view's conditions
    (``condition_for``) wherever it calls the network; a view with a guidance scale w > 0
    (sampling only) steps with classifier-free guidance's ε̃ (``ContinuousDiffusion.eps``).
    """

    layer_batched = True
    ode_time_span = (0.0, 1.0)

    def __init__(self, core: ContinuousDiffusion, num_timesteps: int):
        _check_parts(core, num_timesteps, "VDMGenerative")
        super().__init__(core.data_shape, [core.data_shape] * (num_timesteps + 1))
        self.core = core
        self.num_timesteps = num_timesteps
        self.condition_spec = core.condition_spec

    def _network_keywords(self, n: int) -> dict:
        """What ``core.eps`` takes besides (z, t) for n rows: the bound conditions and the
        guidance scale of a conditional chain, nothing for an unconditional one."""
        if self.condition_spec is None:
            return {}
        return {"condition": self.condition_for(n), "guidance": self.guidance}

    def prior(self, n: int) -> Independent:
        return self.core.prior(n)

    def transition(self, l: int | Tensor, z: Tensor) -> Independent:
        """p(z_s | z_t = z) = q(z_s | z_t, x = x̂_θ(z_t)), x̂_θ = (z_t − β̄_t ε̂_θ)/ᾱ_t."""
        c = self.core
        s, t = _times(l, self.num_timesteps, z)
        alpha_t, sigma_t = c.scales(c._bc(t, z))
        x_hat = (z - sigma_t * c.eps(z, t, **self._network_keywords(z.shape[0]))) / alpha_t
        _, cz, cx, var = c.step_constants(c._bc(s, z), c._bc(t, z))
        loc = cz * z + cx * x_hat
        return diag_normal(loc, var.sqrt().expand_as(loc), c.event_dims)

    def likelihood(self, z1: Tensor) -> Distribution:
        return self.core.decoder(z1)

    def probability_flow(self, t: Tensor, z: Tensor) -> Tensor:
        """dz/dt of the probability-flow ODE at time ``t`` (0-d); see ``latentkit.ode``."""
        return self.core.probability_flow(t, z, **self._network_keywords(z.shape[0]))

    def linear_gaussian(self) -> lk.LinearGaussianSpec | None:
        """The chain as linear-Gaussian conditionals when ε̂ is linear in z (the network offers
        ``coefficients``) and the decoder is Gaussian; else None."""
        c = self.core
        if not hasattr(c.net, "coefficients") or c.decoder_kind != "gaussian":
            return None
        ref = c._ref
        eye = ref.new_ones(math.prod(self.data_shape))
        transitions = []
        for l in range(2, self.num_layers + 1):
            s, t = _times(l, self.num_timesteps, ref)
            alpha_t, sigma_t = c.scales(t)
            a, b = c.linear_coefficients(t.reshape(1))
            _, cz, cx, var = c.step_constants(s, t)
            # loc = cz z + cx (z − σ_t (a z + b))/ᾱ_t
            A = cz + cx * (1 - sigma_t * a[0]) / alpha_t
            transitions.append((torch.diag(A), -cx * sigma_t * b[0] / alpha_t, var * eye))
        alpha_0, sigma_0 = c.scales(ref.new_zeros(()))
        return lk.LinearGaussianSpec(
            prior_mean=0 * eye,
            prior_var=eye,
            transitions=tuple(transitions),
            weight=torch.diag(eye / alpha_0),
            bias=0 * eye,
            noise_var=eye * (sigma_0 / alpha_0) ** 2,
        )
