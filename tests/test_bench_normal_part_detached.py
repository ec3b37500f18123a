"""bench/normal_part_noise.py's ``detached`` form: the residual's term of a composed model's
``vdm`` prior without the encoder's gradient. Same value, same gradient for every parameter
but the encoder's (the prior's network, the decoder); the encoder's is the gradient of the
other terms alone."""

from __future__ import annotations

import pytest
import torch

import latentkit as lk
from latentkit.composition import compose, composed_objective

vdm = pytest.importorskip("latentkit_vdm.continuous")
bench = pytest.importorskip("bench.normal_part_noise")


def _model() -> lk.LatentModel:
    torch.manual_seed(0)
    outer = lk.load_model("vae", data_shape=(6,), latent_dim=3, hidden=(8,))
    prior = lk.load_model("vdm", data_shape=(3,), decoder="gaussian", eps_skip=True,
                          normal_part="exact", fourier_exponents=(), hidden=(8,))  # fmt: skip
    with torch.no_grad():  # a network that is not zero, so the residual's term is not 0
        for p in prior.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return compose(outer, prior=prior)


def _grads(model, x, patched: bool, monkeypatch) -> tuple[torch.Tensor, dict]:
    cls = vdm.ContinuousDiffusion
    with monkeypatch.context() as m:
        if patched:
            m.setattr(cls, "diffusion_integrand", bench._residual_without_encoder_gradient)
        objective = composed_objective(model)
        torch.manual_seed(1)
        loss = objective(model, x).sum()
        named = dict(model.named_parameters())
        grads = torch.autograd.grad(loss, list(named.values()), allow_unused=True)
    return loss.detach(), dict(zip(named, grads, strict=True))


def test_the_detached_form_cuts_only_the_encoders_gradient(monkeypatch):
    model = _model()
    x = torch.rand(5, 6).bernoulli()
    value, full = _grads(model, x, False, monkeypatch)
    cut_value, cut = _grads(model, x, True, monkeypatch)
    torch.testing.assert_close(cut_value, value, rtol=0, atol=0)
    encoder = {name for name, _ in model.named_parameters() if name.startswith("posterior.outer")}
    assert encoder
    for name in full:
        if name in encoder:
            assert not torch.allclose(full[name], cut[name]), name
        elif full[name] is not None:
            torch.testing.assert_close(cut[name], full[name], rtol=0, atol=0)
