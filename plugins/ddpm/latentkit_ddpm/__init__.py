"""The DDPM family for latentkit (a plugin, discovered through its entry point).

Notation (``docs/ddpm.md``): q(x_t | x_{t-1}) = N(α_t x_{t-1}, β_t² I) with α_t² + β_t² = 1,
ᾱ_t = α_1⋯α_t, β̄_t = √(1 − ᾱ_t²). The DDPM paper's β_t is our β_t², its ᾱ_t our ᾱ_t².
"""

from latentkit_ddpm.gaussian_oracle import LinearGaussianReverse, gaussian_data_reverse
from latentkit_ddpm.model import (
    DDPMConfig,
    DDPMGenerative,
    DDPMModel,
    DDPMPosterior,
    build_ddpm,
    make_schedule,
)
from latentkit_ddpm.networks import EpsMLP as EpsMLP  # old name: latentkit.networks.EpsMLP
from latentkit_ddpm.networks import EpsUNet as EpsUNet  # old name: latentkit.networks.EpsUNet
from latentkit_ddpm.schedule import DiffusionSchedule, check_beta, cosine_beta, linear_beta

__all__ = [
    "DDPMConfig",
    "DDPMGenerative",
    "DDPMModel",
    "DDPMPosterior",
    "DiffusionSchedule",
    "LinearGaussianReverse",
    "build_ddpm",
    "check_beta",
    "cosine_beta",
    "gaussian_data_reverse",
    "linear_beta",
    "make_schedule",
]
