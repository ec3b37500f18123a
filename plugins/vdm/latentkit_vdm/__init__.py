"""Continuous-time variance-preserving diffusion for latentkit (a plugin, found by its entry
point): the VDM bound as T → ∞, its discrete-T bounds, the SDE view and the ODE likelihood.

Notation (``docs/continuous.md``): γ_t = −log SNR_t, ᾱ_t² = sigmoid(−γ_t), β̄_t² = sigmoid(γ_t),
q(z_t | x) = N(ᾱ_t x, β̄_t² I), t ∈ [0, 1]. VDM writes α_t, σ_t for our ᾱ_t, β̄_t.
"""

from latentkit_vdm.figures import likelihood_figures, per_t_breakdown
from latentkit_vdm.model import (
    ContinuousDiffusion,
    ContinuousElbo,
    VDMConfig,
    VDMGenerative,
    VDMModel,
    VDMPosterior,
    build_vdm,
    sample_times,
)
from latentkit_vdm.sampling import sample_ode, sample_sde
from latentkit_vdm.schedule import CosineLogSNR, LearnedLogSNR, LinearLogSNR, make_log_snr

__all__ = [
    "ContinuousDiffusion",
    "ContinuousElbo",
    "CosineLogSNR",
    "LearnedLogSNR",
    "LinearLogSNR",
    "VDMConfig",
    "VDMGenerative",
    "VDMModel",
    "VDMPosterior",
    "build_vdm",
    "likelihood_figures",
    "make_log_snr",
    "per_t_breakdown",
    "sample_ode",
    "sample_sde",
    "sample_times",
]
