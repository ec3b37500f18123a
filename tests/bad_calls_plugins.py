"""Hostile calls of the plugins' public callables: each plugin package's ``__all__`` (and
``latentkit_vdm.figures``', the module the continuous-time docs send users to), and the
public methods its exported classes define themselves.

:func:`plugin_callables` enumerates them; ``tests/test_public_callables.py`` fails when one
has neither a case in :data:`PLUGINS` nor a reason in :data:`PLUGIN_EXEMPT`. A method that
overrides one of a latentkit or torch base class (``prior``, ``transition``, ``down``,
``forward``, ``log_prob``, ``log_marginal`` …) is not enumerated: it is the contract the
engine (or torch) calls at every step, whose input the engine's entry points check.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from bad_calls_kit import HUGE, INF, NAN, Bad, bad, exported_callables
from latentkit_beta_vae import BetaVAEConfig, build_beta_vae
from latentkit_ddpm import (
    DDPMConfig,
    DDPMGenerative,
    DDPMModel,
    DDPMPosterior,
    DiffusionSchedule,
    LinearGaussianReverse,
    build_ddpm,
    check_beta,
    cosine_beta,
    gaussian_data_reverse,
    linear_beta,
    make_schedule,
)
from latentkit_gmm import GMMConfig, GMMGenerative, build_gmm, em_step, fit_em
from latentkit_hvae import HVAEConfig, build_hvae
from latentkit_iaf import IAFConfig, IAFPosterior, InverseAutoregressiveFlow, build_iaf
from latentkit_m2 import (
    M2Config,
    M2Generative,
    M2Objective,
    M2ObjectiveConfig,
    M2Posterior,
    build_m2,
    classification_error,
    mask_labels,
    unlabelled_elbo,
)
from latentkit_vae import VAEConfig, build_vae
from latentkit_vamp import VampConfig, VampGenerative, VampPosterior, build_vamp
from latentkit_vdm import (
    ContinuousDiffusion,
    CosineLogSNR,
    LearnedLogSNR,
    LinearLogSNR,
    VDMConfig,
    VDMGenerative,
    VDMModel,
    VDMPosterior,
    build_vdm,
    likelihood_figures,
    make_log_snr,
    per_t_breakdown,
    sample_ode,
    sample_sde,
    sample_times,
)
from latentkit_vdm.figures import ode_decoder_bound, per_t_plot

import latentkit as lk
from latentkit.networks import MADE


def _plugin_packages() -> tuple[str, ...]:
    """The package of every project under ``plugins/`` and ``docs/examples/``."""
    root = Path(__file__).resolve().parents[1]
    return tuple(
        init.parent.name
        for folder in (root / "plugins", root / "docs" / "examples")
        for project in sorted(p for p in folder.iterdir() if p.is_dir())
        for init in sorted(project.glob("latentkit_*/__init__.py"))
    )


PLUGIN_MODULES = (*_plugin_packages(), "latentkit_vdm.figures")
"""The modules whose ``__all__`` is enumerated: every built-in plugin's package and the
example plugin's (a new plugin is enumerated as it lands), and the module of the
continuous-time likelihood figures."""


def _own_methods(cls: type) -> Iterator[tuple[str, Any]]:
    """(name, function) of each public method that the plugin's own classes in ``cls``'s
    MRO define, less those overriding a method of a base outside the plugin."""
    root = cls.__module__.split(".")[0]
    own = [k for k in cls.__mro__ if k.__module__.split(".")[0] == root]
    foreign = [k for k in cls.__mro__ if k not in own]
    seen: set[str] = set()
    for klass in own:
        for name, value in vars(klass).items():
            if name.startswith("_") or name in seen:
                continue
            seen.add(name)
            if any(name in vars(base) for base in foreign):
                continue
            fn = value.__func__ if isinstance(value, (staticmethod, classmethod)) else value
            if inspect.isfunction(fn):
                yield name, fn


def plugin_callables() -> dict[int, list[str]]:
    """id(object) → its dotted names: the callables of :data:`PLUGIN_MODULES`' ``__all__``
    (less exceptions and modules) and their classes' own public methods (``Class.method``)."""
    found: dict[int, list[str]] = {}
    for module_name in PLUGIN_MODULES:
        for dotted, obj in exported_callables(module_name):
            found.setdefault(id(obj), []).append(dotted)
            if inspect.isclass(obj):
                for method, fn in _own_methods(obj):
                    found.setdefault(id(fn), []).append(f"{dotted}.{method}")
    return found


def resolve_plugin(dotted: str) -> object:
    """The object a dotted name of :func:`plugin_callables` names (a method: its function)."""
    parts = dotted.split(".")
    for i in range(len(parts) - 1, 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for part in parts[i:]:
            obj = inspect.getattr_static(obj, part) if inspect.isclass(obj) else getattr(obj, part)
        return obj.__func__ if isinstance(obj, (staticmethod, classmethod)) else obj
    raise LookupError(dotted)


_PER_STEP = "per-step arithmetic the chains and objectives call at every step (no checks there)"
PLUGIN_EXEMPT = {
    # Records the library builds and returns.
    "latentkit_vdm.ContinuousElbo": "result record of continuous_elbo, built per step",
    # No arguments.
    "latentkit_vamp.VampGenerative.components": "no arguments",
    "latentkit_vdm.LearnedLogSNR.span": "no arguments",
    # What a step computes: users reach it through the model's checked entry points
    # (latentkit.elbo, training_loss, continuous_elbo, the samplers, the figures).
    "latentkit_iaf.InverseAutoregressiveFlow.from_base": _PER_STEP,
    "latentkit_iaf.InverseAutoregressiveFlow.from_noise": _PER_STEP,
    "latentkit_iaf.InverseAutoregressiveFlow.rsample_and_log_prob": _PER_STEP,
    "latentkit_ddpm.DDPMGenerative.eps_and_log_var": _PER_STEP,
    "latentkit_ddpm.DDPMGenerative.mean": _PER_STEP,
    "latentkit_ddpm.DDPMGenerative.reverse_from": _PER_STEP,
    "latentkit_ddpm.DDPMModel.q_sample": _PER_STEP,
    "latentkit_ddpm.DDPMModel.timestep_term": _PER_STEP,
    "latentkit_ddpm.DDPMPosterior.on_grid": _PER_STEP,
    "latentkit_ddpm.DiffusionSchedule.gather": _PER_STEP,
    "latentkit_vdm.LearnedLogSNR.profile": _PER_STEP,
    "latentkit_vdm.LearnedLogSNR.from_profile": _PER_STEP,
    "latentkit_vdm.VDMGenerative.probability_flow": _PER_STEP + " (each ODE solver step)",
    "latentkit_gmm.GMMGenerative.log_joint_table": _PER_STEP,
    "latentkit_m2.M2Generative.label_log_prior": "no arguments",
    "latentkit_m2.M2Generative.one_hot": _PER_STEP,
    "latentkit_m2.M2Posterior.class_logits": _PER_STEP,
    **{
        f"latentkit_vdm.ContinuousDiffusion.{name}": _PER_STEP
        for name in (
            "gamma",
            "scales",
            "eps",
            "on_grid",
            "q_sample",
            "marginal",
            "decoder",
            "prior",
            "prior_matching",
            "reconstruction",
            "normal_part",
            "linear_coefficients",
            "diffusion_integrand",
            "elbo",
            "sde_coefficients",
            "score",
            "score_matching_loss",
            "probability_flow",
            "reverse_drift",
            "step_constants",
        )
    },
}
"""Plugin callables with no bad-input case, each with the reason."""


# -- the small objects the calls are made on, built once --------------------------------------


@functools.cache
def _vdm() -> VDMModel:
    torch.manual_seed(0)
    return lk.load_model("vdm", data_shape=(2,), hidden=(8,), decoder="gaussian", num_timesteps=4)


@functools.cache
def _ddpm() -> DDPMModel:
    torch.manual_seed(0)
    return lk.load_model("ddpm", data_shape=(2,), hidden=(8,), decoder="gaussian", num_timesteps=4)


@functools.cache
def _gmm() -> lk.LatentModel:
    torch.manual_seed(0)
    return lk.load_model("gmm", data_dim=2, components=3)


@functools.cache
def _vamp() -> lk.LatentModel:
    torch.manual_seed(0)
    return lk.load_model("vamp", data_shape=(4,), latent_dim=2, hidden=(8,), num_pseudo_inputs=2)


@functools.cache
def _m2() -> lk.LatentModel:
    torch.manual_seed(0)
    return lk.load_model("m2", data_shape=(4,), latent_dim=2, hidden=(8,), classes=3)


@functools.cache
def _flow() -> InverseAutoregressiveFlow:
    torch.manual_seed(0)
    iaf = lk.load_model("iaf", data_shape=(4,), latent_dim=2, hidden=(8,), num_steps=1)
    return iaf.posterior(torch.zeros(3, 4))


def _made() -> MADE:
    return MADE(2, (4,), 0, "silu")


t = torch.zeros
X = t(3, 2)  # a batch of the 2-d models (_vdm, _ddpm, _gmm)
ODD = t(3, 5)  # a batch of the wrong width
NAN_ROW = torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.0, NAN]])  # NaN in the last row only
BREAKDOWN = {"t": [0.5], "integrand": [1.0], "eps_mse": [1.0]}


def _steps(**kw):
    return sample_sde(_vdm(), 2, **kw)


PLUGINS: dict[str, tuple[Bad, ...]] = {
    # -- vdm: samplers
    "latentkit_vdm.sample_sde": (
        bad("zero count", lambda k: _steps(steps=0), lk.InputError, "steps", "≥ 1"),
        bad("negative", lambda k: _steps(steps=-3), lk.InputError, "steps"),
        bad("huge int", lambda k: _steps(steps=HUGE), lk.InputError, "steps"),
        bad("bool for int", lambda k: _steps(steps=True), lk.InputError, "steps"),
        bad("zero count", lambda k: sample_sde(_vdm(), 0), lk.InputError, "sample_sde: n"),
        bad("wrong type", lambda k: sample_sde(_ddpm(), 2), lk.InputError, "vdm model"),
        bad("wrong type", lambda k: sample_sde("m", 2), lk.InputError, "model"),
        bad("wrong type", lambda k: _steps(generator=3), lk.InputError, "generator"),
        bad("wrong type", lambda k: _steps(decode="yes"), lk.InputError, "decode"),
    ),
    "latentkit_vdm.sample_ode": (
        bad("zero count", lambda k: sample_ode(_vdm(), 0), lk.InputError, "sample_ode: n"),
        bad("huge int", lambda k: sample_ode(_vdm(), HUGE), lk.InputError, "n"),
        bad("unknown choice", lambda k: sample_ode(_vdm(), 2, method="rk45"), lk.ConfigError),
        bad("NaN", lambda k: sample_ode(_vdm(), 2, rtol=NAN), lk.ConfigError, "rtol"),
        bad("negative", lambda k: sample_ode(_vdm(), 2, atol=-1.0), lk.ConfigError, "atol"),
        bad("wrong type", lambda k: sample_ode(_vdm(), 2, decode=1), lk.InputError, "decode"),
        bad("wrong type", lambda k: sample_ode(_vdm(), 2, generator="g"), lk.InputError),
        bad("wrong type", lambda k: sample_ode(k.vae, 2), lk.InputError, "vdm model"),
    ),
    "latentkit_vdm.sample_times": (
        bad("zero count", lambda k: sample_times(0, "uniform", like=X), lk.InputError, "n"),
        bad("bool for int", lambda k: sample_times(True, "uniform", like=X), lk.InputError),
        bad("unknown choice", lambda k: sample_times(3, "sobol", like=X), lk.ConfigError),
        bad("wrong type", lambda k: sample_times(3, "uniform", like=3), lk.InputError, "like"),
    ),
    # -- vdm: the model and its methods
    "latentkit_vdm.VDMModel.with_timesteps": (
        bad("huge int", lambda k: _vdm().with_timesteps(10**7), lk.ConfigError, "with_timesteps"),
        bad("huge int", lambda k: _vdm().with_timesteps(HUGE), lk.ConfigError, "num_timesteps"),
        bad("zero count", lambda k: _vdm().with_timesteps(0), lk.ConfigError, "num_timesteps"),
        bad("wrong type", lambda k: _vdm().with_timesteps("8"), lk.ConfigError, "num_timesteps"),
        bad("bool for int", lambda k: _vdm().with_timesteps(True), lk.ConfigError),
    ),
    "latentkit_vdm.VDMModel.continuous_elbo": (
        bad("wrong shape", lambda k: _vdm().continuous_elbo(ODD), lk.ShapeError, "x"),
        bad("wrong type", lambda k: _vdm().continuous_elbo([[0.0, 0.0]]), lk.InputError, "x"),
        bad(
            "wrong dtype",
            lambda k: _vdm().continuous_elbo(X.double()),
            lk.DTypeError,
            "float64",
        ),
        bad("NaN", lambda k: _vdm().continuous_elbo(NAN_ROW), lk.NonFiniteError, "x"),
        bad("empty", lambda k: _vdm().continuous_elbo(t(0, 2)), lk.InputError, "x"),
        bad("wrong shape", lambda k: _vdm().continuous_elbo(X, t=t(4)), lk.ShapeError, "t"),
        bad(
            "out of range",
            lambda k: _vdm().continuous_elbo(X, t=torch.full((3,), 1.5)),
            lk.InputError,
            "[0, 1]",
        ),
        bad(
            "NaN",
            lambda k: _vdm().continuous_elbo(X, t=torch.tensor([0.1, NAN, 0.2])),
            lk.InputError,
            "t",
        ),
        bad("wrong type", lambda k: _vdm().continuous_elbo(X, t=0.5), lk.InputError, "t"),
        bad(
            "unknown choice",
            lambda k: _vdm().continuous_elbo(X, t_sampler="sobol"),
            lk.ConfigError,
            "t_sampler",
        ),
    ),
    "latentkit_vdm.VDMModel.likelihood_figures": (
        bad("wrong shape", lambda k: _vdm().likelihood_figures(ODD), lk.ShapeError, "data"),
        bad("unknown keyword", lambda k: _vdm().likelihood_figures(X, bogus=1), lk.ConfigError),
    ),
    "latentkit_vdm.VDMModel.per_t_plot": (
        bad("wrong type", lambda k: _vdm().per_t_plot({}, k.tmp / "a.png"), lk.InputError),
    ),
    "latentkit_vdm.VDMModel": (
        bad("wrong type", lambda k: VDMModel({"data_shape": (2,)}), lk.ConfigError, "VDMModel"),
        bad(
            "wrong type",
            lambda k: VDMModel(_vdm().config, core="c"),
            lk.InputError,
            "VDMModel: core",
        ),
    ),
    "latentkit_vdm.build_vdm": (
        bad("wrong type", lambda k: build_vdm("vdm"), lk.ConfigError, "build_vdm"),
    ),
    "latentkit_vdm.VDMConfig": (
        bad("zero count", lambda k: VDMConfig(num_timesteps=0), lk.ConfigError, "num_timesteps"),
        bad("huge int", lambda k: VDMConfig(num_timesteps=HUGE), lk.ConfigError, "num_timesteps"),
        bad("bool for int", lambda k: VDMConfig(num_timesteps=True), lk.ConfigError),
        bad(
            "unknown choice", lambda k: VDMConfig(schedule="quadratic"), lk.ConfigError, "schedule"
        ),
        bad("NaN", lambda k: VDMConfig(gamma_min=NAN), lk.ConfigError, "gamma_min"),
        bad("wrong type", lambda k: VDMConfig(fourier_exponents=5), lk.ConfigError, "fourier"),
        bad("wrong type", lambda k: VDMConfig(gamma_max="5"), lk.ConfigError, "gamma_max"),
    ),
    "latentkit_vdm.ContinuousDiffusion": (
        bad(
            "wrong type", lambda k: ContinuousDiffusion(None), lk.ConfigError, "ContinuousDiffusion"
        ),
        bad("wrong type", lambda k: ContinuousDiffusion(_vdm().config, net=3), lk.InputError),
    ),
    "latentkit_vdm.VDMGenerative": (
        bad("zero count", lambda k: VDMGenerative(_vdm().core, 0), lk.ConfigError, "num_timesteps"),
        bad("wrong type", lambda k: VDMGenerative("core", 4), lk.InputError, "core"),
    ),
    "latentkit_vdm.VDMPosterior": (
        bad("huge int", lambda k: VDMPosterior(_vdm().core, HUGE), lk.ConfigError, "num_timesteps"),
        bad("wrong type", lambda k: VDMPosterior(None, 4), lk.InputError, "core"),
    ),
    # -- vdm: the schedules
    "latentkit_vdm.make_log_snr": (
        bad("unknown choice", lambda k: make_log_snr("quad", -1.0, 1.0), lk.ConfigError, "kind"),
        bad("out of order", lambda k: make_log_snr("linear", 1.0, -1.0), lk.ConfigError),
    ),
    "latentkit_vdm.LinearLogSNR": (
        bad("wrong type", lambda k: LinearLogSNR("a", 3.0), lk.ConfigError, "gamma_min"),
        bad("out of order", lambda k: LinearLogSNR(3.0, 1.0), lk.ConfigError, "gamma_max"),
        bad("NaN", lambda k: LinearLogSNR(-1.0, NAN), lk.ConfigError, "gamma_max"),
        bad("out of range", lambda k: LinearLogSNR(-1.0, 1e6), lk.ConfigError, "gamma_max"),
        bad("wrong type", lambda k: LinearLogSNR(-1.0, "5"), lk.ConfigError, "gamma_max"),
        bad("bool for float", lambda k: LinearLogSNR(False, 1.0), lk.ConfigError, "gamma_min"),
    ),
    "latentkit_vdm.CosineLogSNR": (
        bad("NaN", lambda k: CosineLogSNR(NAN, 1.0), lk.ConfigError, "gamma_min"),
        bad("inf", lambda k: CosineLogSNR(-INF, 1.0), lk.ConfigError, "gamma_min"),
        bad("out of order", lambda k: CosineLogSNR(1.0, 1.0), lk.ConfigError, "gamma_max"),
    ),
    "latentkit_vdm.LearnedLogSNR": (
        bad("out of range", lambda k: LearnedLogSNR(-1e6, 1.0), lk.ConfigError, "gamma_min"),
        bad("zero count", lambda k: LearnedLogSNR(-1.0, 1.0, hidden=0), lk.ConfigError, "hidden"),
        bad("huge int", lambda k: LearnedLogSNR(-1.0, 1.0, hidden=HUGE), lk.ConfigError),
    ),
    # -- vdm: the likelihood figures
    "latentkit_vdm.likelihood_figures": (
        bad("wrong type", lambda k: likelihood_figures("m", X), lk.InputError, "model"),
        bad("NaN", lambda k: likelihood_figures(_vdm(), NAN_ROW), lk.NonFiniteError, "data"),
        bad("empty", lambda k: likelihood_figures(_vdm(), t(0, 2)), lk.InputError, "data"),
        bad("negative", lambda k: likelihood_figures(_vdm(), X, seed=-1), lk.InputError, "seed"),
        bad("zero count", lambda k: likelihood_figures(_vdm(), X, num_t=0), lk.InputError),
        bad("zero count", lambda k: likelihood_figures(_vdm(), X, t_draws=0), lk.InputError),
        bad("huge int", lambda k: likelihood_figures(_vdm(), X, batch_size=HUGE), lk.InputError),
        bad("wrong type", lambda k: likelihood_figures(_vdm(), X, discrete="yes"), lk.InputError),
        bad("negative", lambda k: likelihood_figures(_vdm(), X, ode_examples=-1), lk.ConfigError),
        bad("NaN", lambda k: likelihood_figures(_vdm(), X, ode_margin=NAN), lk.ConfigError),
        bad("unknown keyword", lambda k: likelihood_figures(_vdm(), X, rtl=1e-3), lk.ConfigError),
        bad(
            "unknown choice",
            lambda k: likelihood_figures(_vdm(), X, method="rk45"),
            lk.ConfigError,
            "rk45",
        ),
        bad("negative", lambda k: likelihood_figures(_vdm(), X, rtol=-1.0), lk.ConfigError, "rtol"),
        bad(  # refused even where no ODE figure is asked for
            "unknown choice",
            lambda k: likelihood_figures(_vdm(), X, ode_examples=0, method="rk45"),
            lk.ConfigError,
            "rk45",
        ),
    ),
    "latentkit_vdm.per_t_breakdown": (
        bad("zero count", lambda k: per_t_breakdown(_vdm(), X, num_t=0), lk.InputError, "num_t"),
        bad("huge int", lambda k: per_t_breakdown(_vdm(), X, seed=HUGE), lk.InputError, "seed"),
        bad("wrong shape", lambda k: per_t_breakdown(_vdm(), ODD), lk.ShapeError, "data"),
        bad("wrong type", lambda k: per_t_breakdown(_ddpm(), X), lk.InputError, "vdm model"),
    ),
    "latentkit_vdm.figures.ode_decoder_bound": (
        bad("wrong shape", lambda k: ode_decoder_bound(_vdm(), ODD), lk.ShapeError, "x"),
        bad("NaN", lambda k: ode_decoder_bound(_vdm(), NAN_ROW), lk.NonFiniteError, "x"),
        bad("unknown keyword", lambda k: ode_decoder_bound(_vdm(), X, bogus=1), lk.ConfigError),
        bad("NaN", lambda k: ode_decoder_bound(_vdm(), X, atol=NAN), lk.ConfigError, "atol"),
        bad("wrong type", lambda k: ode_decoder_bound(_vdm(), X, generator=0), lk.InputError),
    ),
    "latentkit_vdm.figures.per_t_plot": (
        bad("wrong type", lambda k: per_t_plot([], k.tmp / "a.png"), lk.InputError, "breakdown"),
        bad("empty", lambda k: per_t_plot({"t": []}, k.tmp / "a.png"), lk.InputError),
        bad(
            "empty",
            lambda k: per_t_plot({key: [] for key in BREAKDOWN}, k.tmp / "a.png"),
            lk.InputError,
            "breakdown",
        ),
        bad("wrong type", lambda k: per_t_plot(BREAKDOWN, 3), lk.InputError, "path"),
        bad("wrong type", lambda k: per_t_plot(BREAKDOWN, k.tmp / "a.png", title=1), lk.InputError),
    ),
    # -- ddpm
    "latentkit_ddpm.linear_beta": (
        bad("zero count", lambda k: linear_beta(0), lk.ConfigError, "num_timesteps"),
        bad("negative", lambda k: linear_beta(-3), lk.ConfigError, "num_timesteps"),
        bad("huge int", lambda k: linear_beta(HUGE), lk.ConfigError, "num_timesteps"),
        bad("wrong type", lambda k: linear_beta(10.0), lk.ConfigError, "num_timesteps"),
        bad("bool for int", lambda k: linear_beta(True), lk.ConfigError, "num_timesteps"),
    ),
    "latentkit_ddpm.cosine_beta": (
        bad("zero count", lambda k: cosine_beta(0), lk.ConfigError, "num_timesteps"),
        bad("huge int", lambda k: cosine_beta(10**7), lk.ConfigError, "num_timesteps"),
        bad("negative", lambda k: cosine_beta(10, offset=-0.5), lk.ConfigError, "offset"),
        bad("NaN", lambda k: cosine_beta(10, offset=NAN), lk.ConfigError, "offset"),
        bad("wrong type", lambda k: cosine_beta(10, offset="s"), lk.ConfigError, "offset"),
    ),
    "latentkit_ddpm.check_beta": (
        bad("wrong type", lambda k: check_beta([0.1, 0.2]), lk.ConfigError, "beta"),
        bad("out of range", lambda k: check_beta(torch.tensor([0.1, 1.5])), lk.ConfigError, "t=2"),
        bad("NaN", lambda k: check_beta(torch.tensor([NAN])), lk.ConfigError, "t=1"),
        bad("empty", lambda k: check_beta(t(0)), lk.ConfigError, "non-empty"),
        bad("wrong type", lambda k: check_beta(torch.ones(2) / 4, field=3), lk.ConfigError),
    ),
    "latentkit_ddpm.DiffusionSchedule": (
        bad("wrong type", lambda k: DiffusionSchedule("beta"), lk.ConfigError, "beta"),
        bad("out of range", lambda k: DiffusionSchedule([0.1, 0.0]), lk.ConfigError, "t=2"),
        bad("wrong shape", lambda k: DiffusionSchedule(torch.ones(2, 2) / 4), lk.ConfigError),
        bad("wrong dtype", lambda k: DiffusionSchedule(torch.ones(2) / 4 + 0j), lk.ConfigError),
    ),
    "latentkit_ddpm.DDPMConfig": (
        bad("zero count", lambda k: DDPMConfig(num_timesteps=0), lk.ConfigError, "num_timesteps"),
        bad("huge int", lambda k: DDPMConfig(num_timesteps=HUGE), lk.ConfigError, "num_timesteps"),
        bad("unknown choice", lambda k: DDPMConfig(schedule="sqrt"), lk.ConfigError, "schedule"),
        bad("NaN", lambda k: DDPMConfig(hybrid_weight=NAN), lk.ConfigError, "hybrid_weight"),
        bad(
            "wrong type",
            lambda k: DDPMConfig(schedule="given", num_timesteps=2, beta=("a", 0.1)),
            lk.ConfigError,
            "beta",
        ),
        bad("wrong type", lambda k: DDPMConfig(beta=0.1), lk.ConfigError, "beta"),
    ),
    "latentkit_ddpm.make_schedule": (
        bad("wrong type", lambda k: make_schedule({"num_timesteps": 4}), lk.ConfigError),
    ),
    "latentkit_ddpm.build_ddpm": (
        bad("wrong type", lambda k: build_ddpm("ddpm"), lk.ConfigError, "build_ddpm"),
    ),
    "latentkit_ddpm.DDPMModel": (
        bad("wrong type", lambda k: DDPMModel(None), lk.ConfigError, "DDPMModel"),
    ),
    "latentkit_ddpm.DDPMGenerative": (
        bad("wrong type", lambda k: DDPMGenerative(_ddpm().config, "s"), lk.ConfigError),
        bad(
            "wrong shape",
            lambda k: DDPMGenerative(_ddpm().config, DiffusionSchedule(linear_beta(7))),
            lk.ConfigError,
            "T = 7",
        ),
    ),
    "latentkit_ddpm.DDPMPosterior": (
        bad("zero count", lambda k: DDPMPosterior(_ddpm().schedule, 0), lk.ConfigError),
        bad(
            "wrong type",
            lambda k: DDPMPosterior(_ddpm().schedule, 1, binary=1),
            lk.ConfigError,
            "binary",
        ),
        bad("wrong type", lambda k: DDPMPosterior(linear_beta(4), 1), lk.ConfigError, "schedule"),
    ),
    "latentkit_ddpm.LinearGaussianReverse": (
        bad(
            "negative",
            lambda k: LinearGaussianReverse(*[torch.ones(3, 2)] * 2, -torch.ones(3, 2), t(2), t(2)),
            lk.InputError,
            "var",
        ),
        bad(
            "wrong shape",
            lambda k: LinearGaussianReverse(*[torch.ones(3, 2)] * 3, t(3), torch.ones(3)),
            lk.ShapeError,
            "prior_mean",
        ),
        bad(
            "NaN",
            lambda k: LinearGaussianReverse(
                torch.full((3, 2), NAN), *[torch.ones(3, 2)] * 2, t(2), t(2)
            ),
            lk.NonFiniteError,
            "A",
        ),
        bad("wrong type", lambda k: LinearGaussianReverse("A", 1, 1, 1, 1), lk.InputError, "A"),
    ),
    "latentkit_ddpm.gaussian_data_reverse": (
        bad(
            "unknown choice",
            lambda k: gaussian_data_reverse(_ddpm().schedule, t(2), torch.ones(2), prior="flat"),
            lk.ConfigError,
            "prior",
        ),
        bad(
            "wrong type",
            lambda k: gaussian_data_reverse("s", t(2), torch.ones(2)),
            lk.InputError,
            "schedule",
        ),
        bad(
            "negative",
            lambda k: gaussian_data_reverse(_ddpm().schedule, t(2), -torch.ones(2)),
            lk.InputError,
            "std",
        ),
    ),
    # -- the example plugin (gmm)
    "latentkit_gmm.fit_em": (
        bad("negative", lambda k: fit_em(_gmm(), X, steps=-1), lk.InputError, "steps"),
        bad("huge int", lambda k: fit_em(_gmm(), X, steps=HUGE), lk.InputError, "steps"),
        bad("bool for int", lambda k: fit_em(_gmm(), X, steps=True), lk.InputError, "steps"),
        bad("wrong shape", lambda k: fit_em(_gmm(), ODD), lk.ShapeError, "x"),
        bad("NaN", lambda k: fit_em(_gmm(), NAN_ROW), lk.NonFiniteError, "x"),
        bad("wrong type", lambda k: fit_em(k.vae, X), lk.InputError, "gmm model"),
    ),
    "latentkit_gmm.em_step": (
        bad("wrong shape", lambda k: em_step(_gmm(), ODD), lk.ShapeError, "x"),
        bad("NaN", lambda k: em_step(_gmm(), NAN_ROW), lk.NonFiniteError, "x"),
        bad("wrong type", lambda k: em_step("m", X), lk.InputError, "model"),
    ),
    "latentkit_gmm.GMMConfig": (
        bad("zero count", lambda k: GMMConfig(components=0), lk.ConfigError, "components"),
        bad("huge int", lambda k: GMMConfig(data_dim=HUGE), lk.ConfigError, "data_dim"),
        bad("wrong type", lambda k: GMMConfig(hidden=3), lk.ConfigError, "hidden"),
        bad("unknown choice", lambda k: GMMConfig(posterior="mean"), lk.ConfigError, "posterior"),
        bad("inf", lambda k: GMMConfig(min_scale=INF), lk.ConfigError, "min_scale"),
    ),
    "latentkit_gmm.GMMGenerative": (
        bad("wrong type", lambda k: GMMGenerative(None), lk.ConfigError, "GMMConfig"),
    ),
    "latentkit_gmm.build_gmm": (
        bad("wrong type", lambda k: build_gmm({"components": 2}), lk.ConfigError, "build_gmm"),
    ),
    # -- m2
    "latentkit_m2.M2Config": (
        bad("one class", lambda k: M2Config(classes=1), lk.ConfigError, "classes"),
    ),
    "latentkit_m2.M2Generative": (
        bad("wrong type", lambda k: M2Generative("cfg"), lk.ConfigError, "M2Generative"),
    ),
    "latentkit_m2.M2Posterior": (
        bad("wrong type", lambda k: M2Posterior("cfg"), lk.ConfigError, "M2Posterior"),
    ),
    "latentkit_m2.M2Posterior.classify": (
        bad("wrong type", lambda k: _m2().posterior.classify("x"), lk.InputError, "x"),
    ),
    "latentkit_m2.build_m2": (
        bad("wrong type", lambda k: build_m2("cfg"), lk.ConfigError, "build_m2"),
    ),
    "latentkit_m2.M2ObjectiveConfig": (
        bad("negative", lambda k: M2ObjectiveConfig(alpha=-1.0), lk.ConfigError, "alpha"),
        bad("unknown choice", lambda k: M2ObjectiveConfig(estimator="x"), lk.ConfigError),
    ),
    "latentkit_m2.M2Objective": (
        bad("wrong type", lambda k: M2Objective(M2ObjectiveConfig(), "m"), lk.InputError, "model"),
    ),
    "latentkit_m2.classification_error": (
        bad("wrong shape", lambda k: classification_error(_m2(), t(3, 5), t(3)), lk.ShapeError),
        bad("wrong type", lambda k: classification_error("m", t(3, 4), t(3)), lk.InputError),
    ),
    "latentkit_m2.mask_labels": (
        bad("wrong dtype", lambda k: mask_labels(t(3), 1, 0), lk.InputError, "labels"),
    ),
    "latentkit_m2.unlabelled_elbo": (
        bad("wrong shape", lambda k: unlabelled_elbo(_m2(), t(3, 5)), lk.ShapeError, "x"),
        bad("wrong type", lambda k: unlabelled_elbo("m", t(3, 4)), lk.InputError, "model"),
    ),
    # -- the VAE family
    "latentkit_vae.VAEConfig": (
        bad("zero count", lambda k: VAEConfig(latent_dim=0), lk.ConfigError, "latent_dim"),
        bad("unknown choice", lambda k: VAEConfig(architecture="cnn"), lk.ConfigError, "cnn"),
    ),
    "latentkit_vae.build_vae": (
        bad("wrong type", lambda k: build_vae("vae"), lk.ConfigError, "VAEConfig"),
        bad("NaN", lambda k: build_vae(VAEConfig(), beta=NAN), lk.ConfigError, "beta"),
        bad("negative", lambda k: build_vae(VAEConfig(), beta=-1.0), lk.ConfigError, "beta"),
    ),
    "latentkit_beta_vae.BetaVAEConfig": (
        bad("negative", lambda k: BetaVAEConfig(beta=-1.0), lk.ConfigError, "beta"),
        bad("wrong type", lambda k: BetaVAEConfig(beta="4"), lk.ConfigError, "beta"),
        bad("inf", lambda k: BetaVAEConfig(beta=INF), lk.ConfigError, "beta"),
    ),
    "latentkit_beta_vae.build_beta_vae": (
        bad("wrong type", lambda k: build_beta_vae(VAEConfig()), lk.ConfigError, "BetaVAEConfig"),
    ),
    "latentkit_hvae.HVAEConfig": (
        bad("unknown choice", lambda k: HVAEConfig(architecture="conv"), lk.ConfigError),
        bad("NaN", lambda k: HVAEConfig(fixed_scale=NAN), lk.ConfigError, "fixed_scale"),
        bad("wrong type", lambda k: HVAEConfig(min_scale="1"), lk.ConfigError, "min_scale"),
        bad(
            "bool for int",
            lambda k: HVAEConfig(stage_hidden=((True,), (3,))),
            lk.ConfigError,
            "stage_hidden",
        ),
        bad("zero count", lambda k: HVAEConfig(latent_dims=(4, 0)), lk.ConfigError, "latent_dims"),
    ),
    "latentkit_hvae.HVAEConfig.widths": (
        bad("zero count", lambda k: HVAEConfig().widths(0), lk.InputError, "stage"),
        bad("out of range", lambda k: HVAEConfig().widths(3), lk.InputError, "stage"),
    ),
    "latentkit_hvae.HVAEConfig.net": (
        bad("zero count", lambda k: HVAEConfig().net(0, 3, 1), lk.InputError, "d_in"),
        bad("huge int", lambda k: HVAEConfig().net(2, HUGE, 1), lk.InputError, "d_out"),
        bad("out of range", lambda k: HVAEConfig().net(2, 3, 9), lk.InputError, "stage"),
        bad(
            "out of range",
            lambda k: HVAEConfig(architecture="linear").net(2, 3, 9),
            lk.InputError,
            "net: stage",
        ),
    ),
    "latentkit_hvae.build_hvae": (
        bad("wrong type", lambda k: build_hvae(VAEConfig()), lk.ConfigError, "HVAEConfig"),
    ),
    "latentkit_iaf.IAFConfig": (
        bad("negative", lambda k: IAFConfig(num_steps=-1), lk.ConfigError, "num_steps"),
        bad("huge int", lambda k: IAFConfig(num_steps=HUGE), lk.ConfigError, "num_steps"),
        bad("bool for int", lambda k: IAFConfig(context_dim=True), lk.ConfigError, "context_dim"),
    ),
    "latentkit_iaf.IAFPosterior": (
        bad("wrong type", lambda k: IAFPosterior(VAEConfig()), lk.ConfigError, "IAFConfig"),
    ),
    "latentkit_iaf.build_iaf": (
        bad("wrong type", lambda k: build_iaf(None), lk.ConfigError, "IAFConfig"),
    ),
    "latentkit_iaf.InverseAutoregressiveFlow": (
        bad(
            "empty",
            lambda k: InverseAutoregressiveFlow(t(3, 2), torch.ones(3, 2), None, []),
            lk.InputError,
            "steps",
        ),
        bad(
            "wrong shape",
            lambda k: InverseAutoregressiveFlow(t(3, 2), torch.ones(3, 3), None, [_made()]),
            lk.ShapeError,
            "scale",
        ),
        bad(
            "wrong shape",
            lambda k: InverseAutoregressiveFlow(t(3, 2), torch.ones(3, 2), t(4, 1), [_made()]),
            lk.ShapeError,
            "context",
        ),
        bad(
            "wrong type",
            lambda k: InverseAutoregressiveFlow("loc", torch.ones(3, 2), None, [_made()]),
            lk.InputError,
            "loc",
        ),
        bad(
            "wrong type",
            lambda k: InverseAutoregressiveFlow(t(3, 2), torch.ones(3, 2), None, ["step"]),
            lk.InputError,
            "MADE",
        ),
    ),
    "latentkit_iaf.InverseAutoregressiveFlow.inverse": (
        bad("wrong shape", lambda k: _flow().inverse(t(3, 5)), lk.ShapeError, "value"),
        bad("wrong type", lambda k: _flow().inverse([0.0, 0.0]), lk.ShapeError, "value"),
    ),
    "latentkit_vamp.VampConfig": (
        bad("zero count", lambda k: VampConfig(num_pseudo_inputs=0), lk.ConfigError),
        bad("huge int", lambda k: VampConfig(num_pseudo_inputs=HUGE), lk.ConfigError),
        bad("bool for int", lambda k: VampConfig(num_pseudo_inputs=True), lk.ConfigError),
    ),
    "latentkit_vamp.VampGenerative": (
        bad("wrong type", lambda k: VampGenerative(VampConfig(), "enc"), lk.InputError, "encoder"),
        bad(
            "wrong type",
            lambda k: VampGenerative(VAEConfig(), _vamp().generative.encoder),
            lk.ConfigError,
            "VampConfig",
        ),
    ),
    "latentkit_vamp.VampPosterior": (
        bad("wrong type", lambda k: VampPosterior(None), lk.InputError, "encoder"),
    ),
    "latentkit_vamp.build_vamp": (
        bad("wrong type", lambda k: build_vamp(VAEConfig()), lk.ConfigError, "build_vamp"),
    ),
}
"""The hostile calls of the plugins' callables, in :data:`bad_calls_kit.Bad`'s form."""
