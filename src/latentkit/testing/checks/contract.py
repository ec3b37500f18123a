"""The chain contract at the plugin boundary: what each chain method returns.

The engine calls a plugin's chain methods and trusts their results' shapes; a method that
returns the wrong thing surfaces later as a broadcasting error (or, worse, a bound summed
over the wrong axis). This check calls every method the chains declare, on the case's
batch, and names the first that breaks the contract (``latentkit.chains``' docstrings):

* it returns a ``torch.distributions.Distribution``;
* with ``batch_shape == [n]`` (one distribution per example) and ``event_shape`` the
  declared shape (the latent's, or the data's for p(x | z_1));
* whose draw has shape ``[n, *event_shape]``, on the model's device, floating in the
  model's dtype (or an integer tensor: a discrete latent), and whose ``log_prob`` of it is
  ``[n]`` on that device.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.distributions import Distribution

from latentkit.testing.checks.case import CheckFailure, ModelCase

__all__ = ["chain_contract"]


def _draw(d: Distribution) -> Tensor:
    return d.rsample() if d.has_rsample else d.sample()


def _check(what: str, d: object, n: int, shape: tuple[int, ...], ref: Tensor) -> Tensor:
    """``d`` against the contract for ``n`` examples of event ``shape``; its draw."""
    if not isinstance(d, Distribution):
        raise CheckFailure(f"{what} returned a {type(d).__name__}, not a torch Distribution")
    if tuple(d.batch_shape) != (n,):
        raise CheckFailure(
            f"{what} has batch_shape {tuple(d.batch_shape)}, expected ({n},): one "
            "distribution per example (wrap per-dimension factors in Independent)"
        )
    if tuple(d.event_shape) != shape:
        raise CheckFailure(f"{what} has event_shape {tuple(d.event_shape)}, expected {shape}")
    z = _draw(d)
    if tuple(z.shape) != (n, *shape):
        raise CheckFailure(f"{what}'s draw has shape {tuple(z.shape)}, expected {(n, *shape)}")
    if z.device != ref.device:
        raise CheckFailure(f"{what}'s draw is on {z.device}, the model on {ref.device}")
    if z.is_floating_point() and z.dtype != ref.dtype:
        raise CheckFailure(f"{what}'s draw has dtype {z.dtype}, the model {ref.dtype}")
    log_p = d.log_prob(z)
    if tuple(log_p.shape) != (n,) or log_p.device != ref.device:
        raise CheckFailure(
            f"{what}.log_prob of its draw has shape {tuple(log_p.shape)} on {log_p.device}, "
            f"expected ({n},) on {ref.device}"
        )
    return z


def _call(name: str, method: Callable, args: tuple, n: int, shape, ref: Tensor) -> Tensor:
    """``method(*args)`` checked against the contract (any error it raises named too)."""
    try:
        d = method(*args)
    except Exception as exc:  # a plugin's failure, whatever its type: named, not re-typed
        raise CheckFailure(f"{name} raised {type(exc).__name__}: {exc}") from exc
    return _check(name, d, n, tuple(shape), ref)


@torch.no_grad()
def chain_contract(case: ModelCase) -> None:
    """The chains keep their contract.

    Proves: every method the chains declare (the prior, each transition, the likelihood;
    q's top and down, or first and up factors) returns a Distribution with one member per
    example (``batch_shape == [n]``), the declared ``event_shape``, draws of shape
    ``[n, *event_shape]`` on the model's device in its dtype (integers for a discrete
    latent), and a ``[n]`` log-density of them — the method that breaks it is named.
    """
    model, x = case.model, case.x
    p, q, n, ref = model.generative, model.posterior, x.shape[0], model.reference()
    shapes, L = p.latent_shapes, p.num_layers
    with case.draws():
        z = _call("generative.prior(n)", p.prior, (n,), n, shapes[-1], ref)
        for l in range(L, 1, -1):
            name = f"generative.transition({l}, z_{l})"
            z = _call(name, p.transition, (l, z), n, shapes[l - 2], ref)
        _call("generative.likelihood(z_1)", p.likelihood, (z,), n, p.data_shape, ref)
        h = q.encode(x)
        if q.top_down:
            z = _call("posterior.top(x)", q.top, (h,), n, shapes[-1], ref)
            for l in range(L, 1, -1):
                name = f"posterior.down({l}, z_{l}, x)"
                z = _call(name, q.down, (l, z, h), n, shapes[l - 2], ref)
        if q.bottom_up:
            z = _call("posterior.first(x)", q.first, (h,), n, shapes[0], ref)
            for l in range(2, L + 1):
                z = _call(
                    f"posterior.up({l}, z_{l - 1}, x)", q.up, (l, z, h), n, shapes[l - 1], ref
                )
