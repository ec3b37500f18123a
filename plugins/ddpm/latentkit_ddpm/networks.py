"""The old home of the ε-networks, which are now latentkit's own: :mod:`latentkit.networks`
(``EpsMLP``, ``EpsUNet``, ``TimeEmbedding``, ``timestep_embedding``). Import them from there;
the names below are kept so that code importing them from here keeps working."""

# Old names, deprecated: the same objects as latentkit.networks'.
from latentkit.networks import EpsMLP as EpsMLP
from latentkit.networks import EpsUNet as EpsUNet
from latentkit.networks import TimeEmbedding as TimeEmbedding
from latentkit.networks import embedding_frequencies as embedding_frequencies
from latentkit.networks import timestep_embedding as timestep_embedding

_TimeEmbedding = TimeEmbedding

__all__: list[str] = []
