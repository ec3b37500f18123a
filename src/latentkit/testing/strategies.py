"""Hypothesis strategies for latent models: shapes, configs, parameters, data, β, k.

Plugin authors reuse these on their own models::

    from hypothesis import given
    from latentkit.testing import strategies as lks

    @given(case=lks.random_model_cases("mymodel", my_configs()))
    def test_my_property(case):
        model, x = case
        ...

Random parameters come from a seed (``randomize_parameters``, ``perturb_parameters``) so a
failing example is reproduced from the printed seed; data comes from
``hypothesis.extra.numpy`` so it shrinks, or from the model itself (``model_data``), which
fits any likelihood's support.

For any registered model, ``model_configs(name)`` draws from the configs its plugin declares
(``ModelSpec.test_configs``) and ``model_data(model)`` draws batches it accepts; the checks
in :mod:`latentkit.testing.checks` are built from these. A plugin whose config has the
fields of one latent vector under an encoder and a decoder (``data_shape``, ``latent_dim``,
``architecture``, ``hidden``, ``likelihood``, ``likelihood_scale``) draws them with
``encoder_decoder_configs`` and adds its own.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from torch import nn
from torch.distributions import constraints

from latentkit.chains import LatentModel
from latentkit.registry import get_model_spec, load_model
from latentkit.sampling import sample

__all__ = [
    "ARCHITECTURES",
    "LIKELIHOODS",
    "LIKELIHOOD_SCALES",
    "betas",
    "data_batches",
    "encoder_decoder_configs",
    "encoder_decoder_fields",
    "importance_ks",
    "model_configs",
    "model_data",
    "perturb_parameters",
    "random_model_cases",
    "randomize_parameters",
    "seeded",
    "seeds",
]

LIKELIHOODS = ("gaussian", "bernoulli", "discretized")
"""The likelihoods of :func:`latentkit.make_likelihood`, in the order the strategies draw them."""
LIKELIHOOD_SCALES = ("learned", "predicted", "fixed")
"""How a Gaussian or discretized likelihood's scale is set (``make_likelihood``'s ``scale``)."""
ARCHITECTURES = ("linear", "mlp")
"""An encoder/decoder's ``architecture`` field: linear maps, or MLPs of widths ``hidden``."""


def seeds() -> st.SearchStrategy[int]:
    """Seeds for torch generators (shrink towards 0)."""
    return st.integers(min_value=0, max_value=2**31 - 1)


def betas(min_value: float = 0.0, max_value: float = 20.0) -> st.SearchStrategy[float]:
    """β values for ELBO_β."""
    return st.floats(min_value=min_value, max_value=max_value, allow_nan=False)


def importance_ks(max_value: int = 64) -> st.SearchStrategy[int]:
    """Numbers of importance samples k ≥ 1 for IWAE_k."""
    return st.integers(min_value=1, max_value=max_value)


def data_batches(
    data_shape: Sequence[int],
    *,
    batch_size: st.SearchStrategy[int] | None = None,
    scale: float = 3.0,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
) -> st.SearchStrategy[torch.Tensor]:
    """Finite batches ``[batch, *data_shape]`` with entries in [-scale, scale]."""
    if batch_size is None:
        batch_size = st.integers(min_value=1, max_value=8)
    np_dtype = np.float64 if dtype == torch.float64 else np.float32

    @st.composite
    def build(draw):
        b = draw(batch_size)
        arr = draw(
            hnp.arrays(
                np_dtype,
                (b, *data_shape),
                elements=st.floats(
                    -scale, scale, allow_nan=False, width=64 if np_dtype is np.float64 else 32
                ),
            )
        )
        return torch.from_numpy(arr).to(device=device, dtype=dtype)

    return build()


@st.composite
def random_model_cases(
    draw, name: str, configs: st.SearchStrategy[dict], device: str | torch.device = "cpu"
) -> tuple[LatentModel, torch.Tensor]:
    """``(model, x)``: the registered model ``name`` built from a drawn config, in float64
    on ``device``, every parameter drawn at random (``randomize_parameters`` under a drawn
    seed), and a finite batch for it (``data_batches`` of the model's ``data_shape``)."""
    cfg = draw(configs)
    model = load_model(name, **cfg).to(device=device, dtype=torch.float64)
    randomize_parameters(model, draw(seeds()))
    return model, draw(data_batches(model.data_shape, device=device))


@torch.no_grad()
def randomize_parameters(model: nn.Module, seed: int, scale: float = 0.7) -> nn.Module:
    """Overwrite every parameter with N(0, scale²) draws from a generator seeded by ``seed``.

    Gives a model far from its initialisation, so a property is tested on arbitrary
    parameters rather than on the neighbourhood of the default init.
    """
    gen = torch.Generator().manual_seed(int(seed))
    for p in model.parameters():
        p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64).to(p) * scale)
    return model


@torch.no_grad()
def perturb_parameters(model: nn.Module, seed: int, scale: float = 0.5) -> nn.Module:
    """Add seeded noise to every parameter: N(0, scale²) for vectors and scalars, and
    N(0, scale²/fan_in) per entry of a matrix (fan_in = its last dimension).

    Moves a model away from its initialisation (where, say, a zero-initialised head makes
    q equal the prior and hides a wrong KL) while keeping activations O(1), which
    ``randomize_parameters`` does not for wide layers.
    """
    gen = torch.Generator().manual_seed(int(seed))
    for p in model.parameters():
        noise = torch.randn(p.shape, generator=gen, dtype=torch.float64) * scale
        if p.ndim >= 2:
            noise /= math.sqrt(p.shape[-1])
        p.add_(noise.to(p))
    return model


@contextlib.contextmanager
def seeded(seed: int, device: str | torch.device = "cpu") -> Iterator[None]:
    """Run a block with torch's global generators seeded by ``seed``, restoring them after.

    Seeds the CPU generator and, for a CUDA ``device``, that device's; draws made inside
    (``rsample``, ``sample``, ``randint``) are then reproduced by the same seed.
    """
    device = torch.device(device)
    if device.type != "cuda":
        # Only the CPU generator: torch.manual_seed would also queue a lazy CUDA seeding,
        # recording a stack trace each time (slow in a loop of thousands of examples).
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(int(seed))
            yield
        return
    index = device.index if device.index is not None else torch.cuda.current_device()
    with torch.random.fork_rng(devices=[index]):
        torch.default_generator.manual_seed(int(seed))
        with torch.cuda.device(index):
            torch.cuda.manual_seed(int(seed))
        yield


def model_configs(name: str) -> st.SearchStrategy[dict]:
    """Config dicts for ``load_model(name, **cfg)``: the plugin's ``test_configs``, if it
    declares them, else only the default config."""
    spec = get_model_spec(name)
    return spec.test_configs() if spec.test_configs is not None else st.just({})


def _real_valued(model: LatentModel) -> bool:
    """Whether p(x | z_1) has the whole real line as support (so any finite batch is data).

    Asked at z_1 = z_L ~ p(z_L) for one layer, else at zeros: without walking the chain,
    so a chain whose samples blow up is reported by the checks, not here.
    """
    p, ref = model.generative, model.reference()
    with seeded(0, ref.device):
        top = p.prior(1).sample()
    # z_1 in the model's float dtype: the top latent may be discrete (a mixture's component
    # index, a LongTensor) while z_1 is continuous.
    z1 = (
        top
        if p.num_layers == 1
        else torch.zeros(1, *p.latent_shapes[0], dtype=ref.dtype, device=ref.device)
    )
    support = p.likelihood(z1).support
    while isinstance(support, constraints.independent):
        support = support.base_constraint
    return support is constraints.real


def model_data(
    model: LatentModel, *, min_batch: int = 1, max_batch: int = 6
) -> st.SearchStrategy[torch.Tensor]:
    """Batches ``[b, *data_shape]`` the model accepts, on its device and in its dtype.

    Draws from the model's own generative chain (``latentkit.sample`` under a drawn seed),
    which fits any likelihood (binary, 8-bit, real); where p(x | z_1) is supported on the
    whole real line, also arbitrary finite batches (``data_batches``), tried first so a
    counterexample shrinks to plain numbers.
    """
    ref = model.reference()
    batch = st.integers(min_batch, max_batch)

    def from_model(b: int, seed: int) -> torch.Tensor:
        with seeded(seed, ref.device):
            x = sample(model, b).to(ref.dtype)
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"latentkit.sample gave non-finite data under seed {seed}")
        return x

    samples = st.builds(from_model, batch, seeds())
    if not _real_valued(model):
        return samples
    arrays = data_batches(model.data_shape, batch_size=batch, dtype=ref.dtype, device=ref.device)
    return st.one_of(arrays, samples)


@st.composite
def encoder_decoder_fields(
    draw,
    likelihood: str,
    *,
    architecture: st.SearchStrategy[str],
    likelihood_scale: st.SearchStrategy[str],
    hidden: st.SearchStrategy[int],
    max_data_dim: int,
    max_latent_dim: int,
) -> dict:
    """The fields of one latent vector under an encoder and a decoder, for ``likelihood``:
    ``data_shape`` (a vector of 1..``max_data_dim``), ``latent_dim`` (1..``max_latent_dim``),
    ``architecture``, ``hidden`` (one layer's width), ``likelihood`` and, unless it is
    ``bernoulli``, ``likelihood_scale``; drawn in that order from the strategies given."""
    cfg = {
        "data_shape": (draw(st.integers(1, max_data_dim)),),
        "latent_dim": draw(st.integers(1, max_latent_dim)),
        "architecture": draw(architecture),
        "hidden": (draw(hidden),),
        "likelihood": likelihood,
    }
    if likelihood != "bernoulli":
        cfg["likelihood_scale"] = draw(likelihood_scale)
    return cfg


@st.composite
def encoder_decoder_configs(draw, max_data_dim: int = 5, max_latent_dim: int = 3) -> dict:
    """:func:`encoder_decoder_fields` weighted for the checks: half the draws linear with a
    Gaussian likelihood of learned or fixed scale (a linear-Gaussian generative chain, so
    the exact-log-p check applies), half MLPs over every likelihood and scale. A plugin
    whose config has these fields adds its own (pseudo-inputs, a flow's steps ...)."""
    linear = draw(st.booleans())
    if linear:
        likelihood, scale = "gaussian", draw(st.sampled_from(["learned", "fixed"]))
    else:
        likelihood = draw(st.sampled_from(LIKELIHOODS))
        scale = draw(st.sampled_from(LIKELIHOOD_SCALES))
    return draw(
        encoder_decoder_fields(
            likelihood,
            architecture=st.just("linear" if linear else "mlp"),
            likelihood_scale=st.just(scale),
            hidden=st.integers(2, 8),
            max_data_dim=max_data_dim,
            max_latent_dim=max_latent_dim,
        )
    )


vae_family_configs = encoder_decoder_configs  # the old name of encoder_decoder_configs (deprecated)
