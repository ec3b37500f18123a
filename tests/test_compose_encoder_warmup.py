"""The composed objective's ``encoder_warmup``: the encoder's gradient through the prior's term
moves from N(0, I)'s (w = 0) to the prior's (w = 1) over given steps; the value and every
other parameter's gradient stay the bound's.

Claims, float64, a VAE with an ``eps_skip`` ``vdm`` prior whose network is not zero, the same
seed for each call (so the same draws):

* the loss's value equals the plain composed objective's at every step;
* every gradient but the encoder's equals the plain objective's;
* the encoder's is (1 − w) g_0 + w g_1 with w linear in the step: g_1 the plain objective's,
  g_0 the gradient of the outer VAE's own one-draw ELBO under N(0, I) at the same draw of z
  (``lk.elbo(outer, x, estimator="top-down-mc")``) — before ``start`` they are equal;
* the trainer passes its step (the weights seen over a short run rise as the steps do);
* bad ``encoder_warmup`` values are one ``ConfigError`` each.

Mutants (each tried by hand): w's ramp from ``end`` (the middle step), the N(0, I) part's
weight w instead of 1 − w (before ``start``), z not detached in the prior's term (the
encoder's gradient at w = 0), the normal part's value left in the loss (the value test).
"""

from __future__ import annotations

import pytest
import torch

import latentkit as lk
from latentkit.composition import compose, composed_objective
from latentkit.composition import objective as composed_module
from latentkit.training import TrainConfig, Trainer

F64 = torch.float64
WARMUP = (10, 20)


def _model() -> lk.LatentModel:
    torch.manual_seed(0)
    outer = lk.load_model("vae", data_shape=(6,), latent_dim=3, hidden=(8,))
    prior = lk.load_model("vdm", data_shape=(3,), decoder="gaussian", eps_skip=True,
                          fourier_exponents=(), hidden=(8,))  # fmt: skip
    with torch.no_grad():  # a network that is not zero: the prior is not N(0, I)
        for p in prior.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return compose(outer, prior=prior).double()


def _x() -> torch.Tensor:
    return torch.rand(5, 6, generator=torch.Generator().manual_seed(2), dtype=F64).bernoulli()


def _loss_and_grads(model, loss_of) -> tuple[torch.Tensor, dict[str, torch.Tensor | None]]:
    torch.manual_seed(1)
    loss = loss_of().sum()
    named = dict(model.named_parameters())
    grads = torch.autograd.grad(loss, list(named.values()), allow_unused=True)
    return loss.detach(), dict(zip(named, grads, strict=True))


def _encoder(name: str) -> bool:
    return name.startswith("posterior.outer")


@pytest.mark.parametrize(("step", "w"), [(0, 0.0), (10, 0.0), (13, 0.3), (15, 0.5), (20, 1.0)])
def test_the_encoder_moves_from_the_normal_gradient_to_the_priors(step, w):
    model = _model()
    x = _x()
    plain = composed_objective(model)
    warm = composed_objective(model, encoder_warmup=list(WARMUP))
    value, full = _loss_and_grads(model, lambda: plain(model, x, step))
    warm_value, warm_grads = _loss_and_grads(model, lambda: warm(model, x, step))
    torch.testing.assert_close(warm_value, value, rtol=1e-12, atol=0)
    _, normal = _loss_and_grads(
        model, lambda: -lk.elbo(model.outer, x, estimator="top-down-mc").total
    )
    encoder = [name for name in full if _encoder(name)]
    assert encoder
    for name, g in warm_grads.items():
        if _encoder(name):
            want = (1 - w) * normal[name] + w * full[name]
            torch.testing.assert_close(g, want, rtol=1e-9, atol=1e-12)
        elif full[name] is not None:
            torch.testing.assert_close(g, full[name], rtol=1e-12, atol=1e-14)
    if 0 < w < 1:  # the two ends differ, so the mixture is not either
        assert not torch.allclose(normal[encoder[0]], full[encoder[0]])


def test_the_trainer_passes_its_step(monkeypatch):
    seen = []
    weight = composed_module._encoder_weight

    def spy(step, warmup):
        w = weight(step, warmup)
        seen.append(float(w))
        return w

    monkeypatch.setattr(composed_module, "_encoder_weight", spy)
    model = _model().float()
    objective = composed_objective(model, encoder_warmup=[1, 4])
    config = TrainConfig(steps=6, batch_size=8, seed=0, progress=False, checkpoint_every=0)
    Trainer(model, torch.rand(32, 6).bernoulli(), config, objective=objective).fit()
    assert seen[0] == 0.0 and seen[-1] == 1.0
    assert 0.0 < seen[2] < 1.0  # the step between start and end
    assert seen == sorted(seen)


@pytest.mark.parametrize(
    "bad", [[5, 5], [3], [-1, 2], [1.5, 3], [True, 2], [4, 1], 5, "ab", {"start": 1}]
)
def test_a_bad_warmup_is_refused_naming_the_field(bad):
    with pytest.raises(lk.ConfigError, match="encoder_warmup"):
        composed_objective(_model(), encoder_warmup=bad)


def test_a_tensor_step_traces_in_one_graph_without_recompiling():
    """Under torch.compile (fullgraph) the warm-up's weight is computed from a tensor step:
    one graph for every step, and the traced loss and its gradients (where w acts: the
    value does not depend on it) equal the eager ones (Dynamo's eager backend runs the same
    operators in the same order, so the same draws)."""
    model = _model()
    x = _x()
    warm = composed_objective(model, encoder_warmup=list(WARMUP))
    graphs = []

    def backend(gm, _inputs):
        graphs.append(gm)
        return gm.forward

    def fn(x, step):
        return warm(model, x, step)

    torch._dynamo.reset()
    compiled = torch.compile(fn, fullgraph=True, backend=backend)
    params = list(model.parameters())
    for step in (0, 15, 25):
        s = torch.tensor(step)
        torch.manual_seed(3)
        traced = compiled(x, s)
        traced_grads = torch.autograd.grad(traced.sum(), params, allow_unused=True)
        torch.manual_seed(3)
        eager = fn(x, s)
        eager_grads = torch.autograd.grad(eager.sum(), params, allow_unused=True)
        torch.testing.assert_close(traced, eager, rtol=0, atol=0)
        for a, b in zip(traced_grads, eager_grads, strict=True):  # w reaches the backward
            if b is not None:
                torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    assert len(graphs) == 1
