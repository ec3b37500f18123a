"""Modules shared between the chains: owned once by the LatentModel (``model.shared``),
referenced by both chains through ``SharedModule``.

The model below has an encoder that q uses on x and p's prior uses on a learned
pseudo-input u: p(z) = q(z | u) (a one-component VampPrior). Sharing is right exactly when
p and q see the same weights after every operation a model goes through: a state_dict
round trip, ``.double()``, ``.to(device)``, a deep copy, ``with_posterior``.
"""

from __future__ import annotations

import copy

import pytest
import torch
from models_by_name import default_model
from torch import nn

import latentkit as lk
from latentkit.chains import SharedModule
from latentkit.distributions import diag_normal
from latentkit.networks import GaussianHead

D, d = 3, 2


class Generative(lk.GenerativeChain):
    def __init__(self, encoder: SharedModule):
        super().__init__((D,), [(d,)])
        self.encoder = encoder
        self.head = GaussianHead()
        self.u = nn.Parameter(torch.randn(1, D))
        self.decoder = nn.Linear(d, D)

    def prior(self, n):
        q_u = self.head(self.encoder(self.u)).base_dist
        return diag_normal(q_u.loc.expand(n, -1), q_u.scale.expand(n, -1))

    def likelihood(self, z1):
        return diag_normal(self.decoder(z1), torch.ones_like(self.decoder.bias))


class Posterior(lk.SingleLayerPosterior):
    def __init__(self, encoder: SharedModule):
        super().__init__()
        self.encoder = encoder
        self.head = GaussianHead()

    def forward(self, x):
        return self.head(self.encoder(x))


def build(seed: int = 0) -> lk.LatentModel:
    torch.manual_seed(seed)
    encoder = nn.Sequential(nn.Linear(D, 4), nn.Tanh(), nn.Linear(4, 2 * d))
    ref = SharedModule(encoder)
    return lk.LatentModel(Generative(ref), Posterior(ref), shared={"encoder": encoder})


def _views(model, x):
    """What each chain computes with the shared encoder: p's prior and q at x."""
    prior = model.generative.prior(1).base_dist
    q = model.posterior(x).base_dist
    return prior.loc, prior.scale, q.loc, q.scale


def test_state_dict_holds_each_shared_tensor_once():
    model = build()
    keys = list(model.state_dict())
    encoder_keys = [k for k in keys if ".0." in k or ".2." in k]
    assert encoder_keys == [f"shared.encoder.{i}.{w}" for i in (0, 2) for w in ("weight", "bias")]
    ptrs = [t.data_ptr() for t in model.state_dict().values()]
    assert len(ptrs) == len(set(ptrs)), "a tensor is saved under two names"
    assert len(list(model.parameters())) == len(keys)


def test_state_dict_round_trip_reaches_both_chains():
    """load_state_dict of model A into model B (other seed): B's prior and q equal A's."""
    a, b = build(0), build(1)
    x = torch.randn(4, D)
    before = _views(b, x)
    b.load_state_dict(a.state_dict())
    for got, want, old in zip(_views(b, x), _views(a, x), before):
        assert torch.equal(got, want)
        assert not torch.equal(got, old)


def test_safetensors_accepts_the_state_dict():
    """Shared tensors saved twice are refused by safetensors; here there are none."""
    safetensors = pytest.importorskip("safetensors.torch")
    model = build()
    blob = safetensors.save(model.state_dict())
    loaded = safetensors.load(blob)
    assert loaded.keys() == model.state_dict().keys()


def test_double_converts_the_module_both_chains_use():
    model = build().double()
    x = torch.randn(4, D, dtype=torch.float64)
    assert all(t.dtype == torch.float64 for t in _views(model, x))
    assert model.generative.encoder.module is model.shared["encoder"]
    assert model.posterior.encoder.module is model.shared["encoder"]
    assert torch.isfinite(lk.elbo(model, x).total).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_to_cuda_moves_the_module_both_chains_use():
    model = build().to("cuda")
    x = torch.randn(4, D, device="cuda")
    assert all(t.device.type == "cuda" for t in _views(model, x))


def test_deepcopy_keeps_one_shared_module():
    model = build()
    clone = copy.deepcopy(model)
    enc = clone.shared["encoder"]
    assert enc is not model.shared["encoder"]
    assert clone.generative.encoder.module is enc and clone.posterior.encoder.module is enc


def test_with_posterior_keeps_p_and_its_shared_modules():
    """with_posterior changes q only: p(z) is the same distribution, and the new model still
    owns (saves, converts) the encoder p uses."""
    model = build()
    other_q = build(1).posterior  # references another model's encoder ...
    with pytest.raises(TypeError, match="does not own"):
        model.with_posterior(other_q)  # ... which this model does not own: refused
    fresh = Posterior(SharedModule(model.shared["encoder"]))
    other = model.with_posterior(fresh)
    assert other.posterior is fresh
    assert other.generative is model.generative
    assert other.shared["encoder"] is model.shared["encoder"]
    assert [k for k in other.state_dict() if k.startswith("shared.")] == [
        k for k in model.state_dict() if k.startswith("shared.")
    ]
    x = torch.randn(4, D)
    for a, b in zip(_views(model, x), _views(other, x)):
        assert torch.equal(a, b)


def test_a_reference_to_an_unowned_module_is_refused_by_path():
    encoder = nn.Linear(D, 2 * d)
    ref = SharedModule(encoder)
    with pytest.raises(TypeError, match=r"generative\.encoder refers to a Linear"):
        lk.LatentModel(Generative(ref), Posterior(ref))


def test_a_shared_module_also_registered_in_a_chain_is_refused():
    encoder = nn.Linear(D, 2 * d)
    q = Posterior(SharedModule(encoder))
    q.own = encoder  # registered as a submodule of q as well
    with pytest.raises(TypeError, match=r"also registered in the chain at 'posterior\.own'"):
        lk.LatentModel(Generative(SharedModule(encoder)), q, shared={"encoder": encoder})


def test_shared_module_takes_only_modules():
    with pytest.raises(TypeError, match="takes an nn.Module"):
        SharedModule(torch.zeros(2))


def _first(tensors):
    return next(iter(tensors), None)


@pytest.mark.parametrize("name", lk.list_models())
def test_reference_is_the_first_parameter(name):
    model = default_model(name)
    assert model.reference() is _first(model.parameters())


def test_reference_walks_as_parameters_and_buffers_do():
    """The walk is depth-first in registration order, a module's own tensors before its
    children's; no parameter at all falls back to the first buffer, then to an empty tensor."""
    vae = lk.load_model("vae")
    # Parameters only deep inside: the first child is parameter-free, a None child is skipped.
    holder = nn.Module()
    holder.empty = nn.Sequential(nn.ReLU(), nn.Identity())
    holder.missing = None
    holder.deep = nn.Sequential(nn.Sequential(nn.ReLU(), nn.Linear(2, 3)), nn.Linear(3, 1))
    holder.register_parameter("unset", None)
    vae.generative._modules = {"holder": holder, **vae.generative._modules}
    assert vae.reference() is _first(vae.parameters()) is holder.deep[0][1].weight
    # Buffers only: the first buffer; nothing at all: an empty tensor.
    frozen = lk.load_model("vae")
    for module in frozen.modules():
        module._parameters.clear()
    assert _first(frozen.parameters()) is None
    assert frozen.reference() is _first(frozen.buffers())
    for module in frozen.modules():
        module._buffers.clear()
    assert frozen.reference().numel() == 0
