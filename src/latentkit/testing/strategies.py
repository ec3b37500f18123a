"""Hypothesis strategies for latent models: shapes, configs, parameters, data, β, k.

Plugin authors reuse these on their own models::

    from hypothesis import given
    from latentkit.testing import strategies as lks

    @given(cfg=lks.linear_vae_configs(), seed=lks.seeds())
    def test_my_property(cfg, seed): ...

Random parameters come from a seed (``randomize_parameters``) so a failing example is
reproduced from the printed seed; data comes from ``hypothesis.extra.numpy`` so it shrinks.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from torch import nn

__all__ = [
    "betas",
    "data_batches",
    "importance_ks",
    "linear_vae_configs",
    "randomize_parameters",
    "seeds",
]


def seeds() -> st.SearchStrategy[int]:
    """Seeds for torch generators (shrink towards 0)."""
    return st.integers(min_value=0, max_value=2**31 - 1)


def betas(min_value: float = 0.0, max_value: float = 20.0) -> st.SearchStrategy[float]:
    """β values for ELBO_β."""
    return st.floats(min_value=min_value, max_value=max_value, allow_nan=False)


def importance_ks(max_value: int = 64) -> st.SearchStrategy[int]:
    """Numbers of importance samples k ≥ 1 for IWAE_k."""
    return st.integers(min_value=1, max_value=max_value)


@st.composite
def linear_vae_configs(draw, max_data_dim: int = 6, max_latent_dim: int = 4) -> dict:
    """Config values for ``load_model("vae", **cfg)`` giving a linear-Gaussian (pPCA) VAE."""
    return {
        "data_shape": (draw(st.integers(1, max_data_dim)),),
        "latent_dim": draw(st.integers(1, max_latent_dim)),
        "architecture": "linear",
        "likelihood": "gaussian",
        "likelihood_scale": "learned",
    }


def data_batches(
    data_shape: Sequence[int],
    *,
    batch_size: st.SearchStrategy[int] | None = None,
    scale: float = 3.0,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
) -> st.SearchStrategy[torch.Tensor]:
    """Finite batches ``[batch, *data_shape]`` with entries in [-scale, scale]."""
    batch_size = batch_size or st.integers(min_value=1, max_value=8)
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
