"""The IAF: the VAE's generative chain, and q(z|x) an inverse autoregressive flow.

Notation (``docs/iaf.md``; Kingma et al. 2016, "Improved variational inference with inverse
autoregressive flow", §4 and Algorithm 1): the encoder gives μ(x), σ(x) and a context h(x);

    z_0 = μ + σ ⊙ ε,  ε ~ N(0, I)
    z_t = g_t ⊙ z_{t-1} + (1 − g_t) ⊙ m_t,  (m_t, s_t) = MADE_t(z_{t-1}, h),  g_t = sigmoid(s_t + b)

for t = 1..T, each MADE autoregressive (m_{t,i}, s_{t,i} depend on the z_{t-1,j} before i
in step t's order: z_1..z_D for odd t, reversed for even t) and b = ``GATE_BIAS`` (gates
start near 1, q near its Gaussian base). The Jacobian of each step is triangular with
diagonal g_t, so

    log q(z_T | x) = log N(z_0; μ, diag σ²) − Σ_t Σ_i log g_{t,i}.

The flow is computed forward from a draw (``rsample_and_log_prob``: the engine's
draw-with-log-density path, no inverse); ``log_prob`` at any other point inverts each step
coordinate by coordinate (D network calls per step), for the checks and diagnostics.
``num_steps = 0`` is the VAE itself (q the diagonal Gaussian, closed-form KL).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Distribution, constraints

import latentkit as lk
from latentkit.arguments import check_count, describe_value
from latentkit.blocks import DecoderChain, EncoderDecoderConfig, GaussianEncoder
from latentkit.config import positive_ints, ruled
from latentkit.distributions import diag_normal
from latentkit.networks import MADE

__all__ = ["GATE_BIAS", "IAFConfig", "IAFPosterior", "InverseAutoregressiveFlow", "build_iaf"]

GATE_BIAS = 2.0
"""b in g_t = sigmoid(s_t + b): with s_t ≈ 0 at initialisation each step starts close to
the identity (g ≈ 0.88), the paper's "forget gate bias" of 1–2 (Kingma et al. 2016, §4)."""


MAX_STEPS = 10_000
"""The most IAF steps (and context features) a config may ask for: each step is a network,
so a count beyond this is a typo, refused at validation rather than met by the allocator."""


@ruled(f"int in 0..{MAX_STEPS}")
def _count(instance, attribute, value) -> None:
    check_count(value, repr(attribute.name), low=0, high=MAX_STEPS, error=lk.ConfigError)


@attrs.frozen(kw_only=True)
class IAFConfig(EncoderDecoderConfig):
    """``vae``'s fields (``latentkit.blocks.EncoderDecoderConfig``: the generative chain and
    the encoder of μ, σ) plus the flow's.

    Attributes:
        num_steps: T, the number of IAF steps (≥ 0; 0 is the VAE's Gaussian q).
        made_hidden: hidden widths of each step's MADE (may be empty).
        context_dim: width of the context h(x) the encoder hands every step (≥ 0).
    """

    num_steps: int = attrs.field(default=2, validator=_count)
    made_hidden: tuple[int, ...] = attrs.field(
        default=(32,), converter=tuple, validator=positive_ints(0)
    )
    context_dim: int = attrs.field(default=8, validator=_count)


def _check_flow(loc: object, scale: object, context: object, steps: object) -> None:
    """:class:`InverseAutoregressiveFlow`'s arguments: loc and scale float tensors ``[n, d]``
    of one shape, context None or ``[n, c]``, steps a non-empty sequence of MADEs (isinstance
    tests and shape comparisons: it is built at every draw)."""
    where = "InverseAutoregressiveFlow"
    for name, value in (("loc", loc), ("scale", scale)):
        if not isinstance(value, Tensor) or value.ndim < 1:
            raise lk.InputError(
                f"{where}: {name} must be a tensor [n, d], got {describe_value(value)}"
            )
    if scale.shape != loc.shape:
        raise lk.ShapeError(
            f"{where}: scale has shape {tuple(scale.shape)}, loc {tuple(loc.shape)}"
        )
    if context is not None and (
        not isinstance(context, Tensor) or context.shape[:-1] != loc.shape[:-1]
    ):
        raise lk.ShapeError(
            f"{where}: context must be None or a tensor [n, c] with n = loc's, "
            f"got {describe_value(context)}"
        )
    if not isinstance(steps, (list, tuple, nn.ModuleList)) or not steps:
        raise lk.InputError(
            f"{where}: steps must be a non-empty sequence of MADEs (T ≥ 1), "
            f"got {describe_value(steps)}"
        )
    if not all(isinstance(step, MADE) for step in steps):
        raise lk.InputError(f"{where}: every step must be a latentkit.networks.MADE")


class InverseAutoregressiveFlow(Distribution):
    """q(z | x) of the module docstring: ``batch_shape [n]``, ``event_shape [d]``.

    Args:
        loc, scale: μ and σ of the Gaussian base, ``[n, d]``.
        context: h, ``[n, c]``, or ``None`` when the steps take no context.
        steps: MADE_1..MADE_T (T ≥ 1).
    """

    arg_constraints: ClassVar[dict] = {}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, loc: Tensor, scale: Tensor, context: Tensor | None, steps: Sequence[MADE]):
        _check_flow(loc, scale, context, steps)
        self.base = diag_normal(loc, scale)
        self.context = context
        self.steps = list(steps)
        super().__init__(loc.shape[:-1], loc.shape[-1:], validate_args=False)

    def _gate(self, t: int, z: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """m_t, g_t, 1 − g_t and log g_t at z_{t-1} = z, in the natural order of z."""
        flip = t % 2 == 1  # steps 2, 4, ... (t counted from 0 here) run in reversed order
        m, s = self.steps[t](z.flip(-1) if flip else z, self.context)
        if flip:
            m, s = m.flip(-1), s.flip(-1)
        a = s + GATE_BIAS
        return m, torch.sigmoid(a), torch.sigmoid(-a), F.logsigmoid(a)

    def from_base(self, z0: Tensor) -> tuple[Tensor, Tensor]:
        """z_T and Σ_t Σ_i log g_{t,i} (the log-determinant of ∂z_T/∂z_0) from z_0."""
        z, log_det = z0, z0.new_zeros(z0.shape[:-1])
        for t in range(len(self.steps)):
            m, g, one_minus_g, log_g = self._gate(t, z)
            z = g * z + one_minus_g * m
            log_det = log_det + log_g.sum(-1)
        return z, log_det

    def from_noise(self, eps: Tensor) -> tuple[Tensor, Tensor]:
        """z_T and log q(z_T | x) from the base noise ε (``[*sample, n, d]``)."""
        z0 = self.base.base_dist.loc + self.base.base_dist.scale * eps
        z, log_det = self.from_base(z0)
        return z, self.base.log_prob(z0) - log_det

    def rsample_and_log_prob(self, sample_shape: torch.Size | tuple = ()) -> tuple[Tensor, Tensor]:
        """A reparameterized draw z ~ q and log q(z), computed together (no inverse)."""
        loc = self.base.base_dist.loc
        eps = torch.randn(self._extended_shape(sample_shape), dtype=loc.dtype, device=loc.device)
        return self.from_noise(eps)

    def rsample(self, sample_shape: torch.Size | tuple = ()) -> Tensor:
        return self.rsample_and_log_prob(sample_shape)[0]

    def sample(self, sample_shape: torch.Size | tuple = ()) -> Tensor:
        with torch.no_grad():
            return self.rsample(sample_shape)

    def inverse(self, value: Tensor) -> tuple[Tensor, Tensor]:
        """z_0 and Σ_t Σ_i log g_{t,i} from z_T = ``value``: each step inverted coordinate by
        coordinate, z_{t-1,i} = (z_{t,i} − (1 − g_{t,i}) m_{t,i}) / g_{t,i}. After k passes
        the first k coordinates in the step's order are exact (m_i, g_i depend only on the
        ones before), so d passes invert a step, and the last pass's gates are exact."""
        if not isinstance(value, Tensor) or value.shape[-1:] != self.event_shape:
            raise lk.ShapeError(
                f"InverseAutoregressiveFlow.inverse: value must be a tensor [..., "
                f"{self.event_shape[0]}], got {describe_value(value)}"
            )
        z, log_det = value, value.new_zeros(value.shape[:-1])
        d = value.shape[-1]
        for t in reversed(range(len(self.steps))):
            y = z
            for _ in range(d):
                m, g, one_minus_g, log_g = self._gate(t, z)
                z = (y - one_minus_g * m) / g
            log_det = log_det + log_g.sum(-1)
        return z, log_det

    def log_prob(self, value: Tensor) -> Tensor:
        """log q(z | x) at any z: by :meth:`inverse`, d · T network calls."""
        z0, log_det = self.inverse(value)
        return self.base.log_prob(z0) - log_det


def _check_config(cfg: object, where: str) -> None:
    if not isinstance(cfg, IAFConfig):
        raise lk.ConfigError(f"{where}: cfg must be an IAFConfig, got {describe_value(cfg)}")


class IAFPosterior(GaussianEncoder):
    """q(z | x): an encoder of μ, σ and the context h (``latentkit.blocks.GaussianEncoder``
    with ``context_dim`` features more), then ``num_steps`` IAF steps."""

    def __init__(self, cfg: IAFConfig):
        _check_config(cfg, "IAFPosterior")
        super().__init__(
            cfg.data_shape,
            cfg.latent_dim,
            cfg.widths,
            activation=cfg.activation,
            min_scale=cfg.min_scale,
            context_dim=cfg.context_dim,
        )
        self.steps = nn.ModuleList(
            MADE(cfg.latent_dim, cfg.made_hidden, cfg.context_dim, cfg.activation)
            for _ in range(cfg.num_steps)
        )

    def forward(self, x: Tensor) -> Distribution:
        base, context = self.parts(x)
        if not self.steps:
            return base
        gaussian = base.base_dist
        return InverseAutoregressiveFlow(gaussian.loc, gaussian.scale, context, self.steps)


def build_iaf(cfg: IAFConfig) -> lk.LatentModel:
    """The IAF model described by ``cfg`` (the factory registered as ``iaf``)."""
    _check_config(cfg, "build_iaf")
    return lk.LatentModel(DecoderChain(cfg), IAFPosterior(cfg))
