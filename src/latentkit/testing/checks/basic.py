"""Basic checks: the model builds and samples, its values and gradients are finite, and
one example's bound does not depend on another's."""

from __future__ import annotations

import torch

from latentkit.bounds import elbo, iwae
from latentkit.registry import training_loss
from latentkit.sampling import sample
from latentkit.testing.checks.case import CheckFailure, ModelCase
from latentkit.testing.checks.stats import assert_close

__all__ = ["batch_independence", "finite_values_and_gradients", "samples"]


@torch.no_grad()
def samples(case: ModelCase) -> None:
    """The model builds and samples.

    Proves: for every drawn config and seed the model builds, and ancestral sampling
    (``latentkit.sample``) gives finite data of shape ``[n, *data_shape]`` and finite
    latents of the declared shapes. (Drawing the case already built the model and sampled
    from it; a failure there is reported here, and the later checks are then skipped.)
    """
    model, n = case.model, case.x.shape[0]
    with case.draws():
        x, latents = sample(model, n, return_latents=True)
    if tuple(x.shape) != (n, *model.data_shape):
        raise CheckFailure(
            f"samples have shape {tuple(x.shape)}, expected {(n, *model.data_shape)}"
        )
    for l, (z, shape) in enumerate(zip(latents, model.generative.latent_shapes), start=1):
        if tuple(z.shape) != (n, *shape):
            raise CheckFailure(f"z_{l} has shape {tuple(z.shape)}, expected {(n, *shape)}")
    for what, value in (("x", x), *((f"z_{l}", z) for l, z in enumerate(latents, start=1))):
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise CheckFailure(f"sampled {what} is not finite: {value.tolist()}")


def finite_values_and_gradients(case: ModelCase) -> None:
    """Finite values and finite gradients.

    Proves: on the drawn config, parameters and data, every term of ELBO_β, IWAE_k', the
    model's training loss and the gradient of (training loss − IWAE_k') with respect to
    every parameter are finite — no log 0, overflowing exp or 0/0 anywhere on that path.
    """
    model, x = case.model, case.x
    with case.draws():
        result = elbo(model, x, beta=case.beta)
        bound = iwae(model, x, case.k_max)
        loss = training_loss(model, x).sum() - bound.sum()
    values = {**result.terms, "ELBO_β": result.total, f"IWAE_{case.k_max}": bound, "loss": loss}
    for what, value in values.items():
        bad = ~torch.isfinite(value.detach())
        if bool(bad.any()):
            raise CheckFailure(
                f"{what} is not finite at entries {bad.nonzero().flatten().tolist()}"
            )
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        return
    grads = torch.autograd.grad(loss, [p for _, p in named], allow_unused=True)
    for (pname, _), g in zip(named, grads):
        if g is not None and not bool(torch.isfinite(g).all()):
            raise CheckFailure(f"the gradient of the loss for parameter {pname!r} is not finite")


@torch.no_grad()
def batch_independence(case: ModelCase) -> None:
    """Batch independence: example i's bound does not depend on example j.

    Proves: replacing one example of a batch (at the drawn position) by another, with the
    same seed — hence the same draws — leaves every other example's ELBO terms and IWAE_k
    unchanged up to round-off. Catches statistics taken across the batch (batch norm in
    training mode, a mean over dim 0, a reshape that mixes examples).
    """
    model, x = case.model, case.x
    base = x if x.shape[0] >= 2 else torch.cat([x, x])
    j = case.swap_index % base.shape[0]
    changed = base.clone()
    changed[j] = case.x_swap[0]
    keep = torch.arange(base.shape[0], device=base.device) != j
    outputs = []
    for batch in (base, changed):
        with case.draws():
            result = elbo(model, batch)
            outputs.append(
                {**result.terms, "ELBO": result.total, "IWAE": iwae(model, batch, case.k)}
            )
    for term, value in outputs[0].items():
        assert_close(
            outputs[1][term][keep],
            value[keep],
            f"{term} of the other examples after replacing example {j} (same seed)",
        )
