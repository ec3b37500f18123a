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


def _z_gradient(
    model, x, integrand, monkeypatch, seed: int = 1
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, z, d loss/d z) under ``integrand``, z the prior's input (A's draw)."""
    cls = vdm.ContinuousDiffusion
    closed, seen = cls.normal_part, []
    with monkeypatch.context() as m:
        m.setattr(cls, "diffusion_integrand", integrand)
        m.setattr(cls, "normal_part", lambda core, z: (seen.append(z), closed(core, z))[1])
        objective = composed_objective(model)
        torch.manual_seed(seed)
        loss = objective(model, x).sum()
    (z,) = seen
    return loss.detach(), z, torch.autograd.grad(loss, [z])[0]


def test_the_score_form_gives_the_encoder_the_smoothed_residual_score(monkeypatch):
    """The same value as the full form; d loss/d z is the detached form's plus α · net(α z,
    t*) / β̄ at γ(t*) = SCORE_GAMMA (recomputed here from the network)."""
    model = _model()
    x = torch.rand(5, 6).bernoulli()
    value, _ = _grads(model, x, False, monkeypatch)
    cut_value, z, cut_dz = _z_gradient(
        model, x, bench._residual_without_encoder_gradient, monkeypatch
    )
    score_value, z_again, score_dz = _z_gradient(
        model, x, bench._residual_with_score_gradient, monkeypatch
    )
    torch.testing.assert_close(score_value, value, rtol=0, atol=0)
    torch.testing.assert_close(cut_value, value, rtol=0, atol=0)
    torch.testing.assert_close(z_again, z, rtol=0, atol=0)
    core = model.prior.generative.core
    g = torch.tensor(bench.SCORE_GAMMA)
    a, s = torch.sigmoid(-g).sqrt(), torch.sigmoid(g).sqrt()
    lo, hi = core.gamma(torch.tensor(0.0))[0], core.gamma(torch.tensor(1.0))[0]
    with torch.no_grad():
        net = core.net(a * z, ((g - lo) / (hi - lo)).expand(5))
    torch.testing.assert_close(score_dz, cut_dz + a * net / s, rtol=1e-5, atol=1e-6)


def test_the_encoder_draws_form_keeps_the_expected_gradient_with_less_noise(monkeypatch):
    """Same value and the same gradient as the detached form for every parameter but the
    encoder's; z's gradient over 300 seeds has the full form's mean (z-test, 4.5 standard
    errors) and less variance (ENCODER_DRAWS = 8 further draws)."""
    model = _model()
    x = torch.rand(5, 6).bernoulli()
    value, _ = _grads(model, x, False, monkeypatch)
    with monkeypatch.context() as m:
        m.setattr(
            vdm.ContinuousDiffusion, "diffusion_integrand", bench._residual_with_encoder_draws
        )
        objective = composed_objective(model)
        torch.manual_seed(1)
        loss = objective(model, x).sum()
        named = dict(model.named_parameters())
        grads = dict(zip(named, torch.autograd.grad(loss, list(named.values()), allow_unused=True)))
    torch.testing.assert_close(loss.detach(), value, rtol=0, atol=0)
    _, cut = _grads(model, x, True, monkeypatch)
    for name, g in grads.items():
        if not name.startswith("posterior.outer") and g is not None:
            torch.testing.assert_close(g, cut[name], rtol=0, atol=0)
    draws = {"full": [], "fewer": []}
    for seed in range(300):
        for form, integrand in (("full", vdm.ContinuousDiffusion.diffusion_integrand),
                                ("fewer", bench._residual_with_encoder_draws)):  # fmt: skip
            draws[form].append(_z_gradient(model, x, integrand, monkeypatch, seed)[2])
    full_z, fewer_z = torch.stack(draws["full"]), torch.stack(draws["fewer"])
    se = (full_z.var(0) / 300 + fewer_z.var(0) / 300).sqrt()
    assert ((full_z.mean(0) - fewer_z.mean(0)).abs() / se).max() < 4.5
    assert fewer_z.var(0).sum() < full_z.var(0).sum()


@pytest.mark.parametrize(("step", "w"), [(0, 0.0), (10, 0.0), (15, 0.5), (20, 1.0), (99, 1.0)])
def test_the_ramp_form_scales_the_encoders_residual_gradient(step, w, monkeypatch):
    """At a step of the ramp (10 → 20 here) the value and every non-encoder gradient are the
    full form's, and z's gradient is (1 − w) · the detached form's + w · the full form's."""
    model = _model()
    x = torch.rand(5, 6).bernoulli()
    monkeypatch.setattr(bench, "RAMP", (10, 20))
    value, full = _grads(model, x, False, monkeypatch)
    _, _, full_dz = _z_gradient(model, x, vdm.ContinuousDiffusion.diffusion_integrand, monkeypatch)
    _, _, cut_dz = _z_gradient(model, x, bench._residual_without_encoder_gradient, monkeypatch)
    monkeypatch.setattr(bench, "_CALLS", [step])
    ramp_value, _, ramp_dz = _z_gradient(model, x, bench._residual_ramped, monkeypatch)
    assert bench._CALLS == [step + 1]
    torch.testing.assert_close(ramp_value, value, rtol=0, atol=0)
    torch.testing.assert_close(ramp_dz, (1 - w) * cut_dz + w * full_dz, rtol=1e-5, atol=1e-5)
    monkeypatch.setattr(bench, "_CALLS", [step])
    with monkeypatch.context() as m:
        m.setattr(vdm.ContinuousDiffusion, "diffusion_integrand", bench._residual_ramped)
        objective = composed_objective(model)
        torch.manual_seed(1)
        loss = objective(model, x).sum()
        named = dict(model.named_parameters())
        grads = torch.autograd.grad(loss, list(named.values()), allow_unused=True)
    for name, g in zip(named, grads, strict=True):
        if not name.startswith("posterior.outer") and g is not None:
            torch.testing.assert_close(g, full[name], rtol=1e-6, atol=1e-7)
