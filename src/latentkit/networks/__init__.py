"""Network parts for a model's chains, public for plugin authors (``docs/core.md``):

* :mod:`latentkit.networks.layers`: ``mlp``, the activations, ``GaussianHead`` (features →
  a diagonal Gaussian) and MADE's masked layers for autoregressive flows;
* :mod:`latentkit.networks.embeddings`: the sinusoidal time embedding, its MLP, and Fourier
  features of an input;
* :mod:`latentkit.networks.denoisers`: the diffusions' ε-networks, ``EpsMLP`` (vectors) and
  ``EpsUNet`` (images).

Every name is importable from ``latentkit.networks`` itself.
"""

from latentkit.networks.denoisers import EpsMLP, EpsUNet, check_unet_shape
from latentkit.networks.embeddings import (
    TimeEmbedding,
    embedding_frequencies,
    fourier_features,
    timestep_embedding,
)
from latentkit.networks.layers import (
    ACTIVATIONS,
    MADE,
    GaussianHead,
    MaskedLinear,
    activation_layer,
    mlp,
)

__all__ = [
    "ACTIVATIONS",
    "MADE",
    "EpsMLP",
    "EpsUNet",
    "GaussianHead",
    "MaskedLinear",
    "TimeEmbedding",
    "activation_layer",
    "check_unet_shape",
    "embedding_frequencies",
    "fourier_features",
    "mlp",
    "timestep_embedding",
]
