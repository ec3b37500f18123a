"""Hostile calls of the core's parts: networks, blocks, distributions, likelihoods, config
helpers, the probability-flow ODE, the data loaders and the diagnostics."""

from __future__ import annotations

import torch
from bad_calls_kit import HUGE, INF, NAN, Bad, bad

import latentkit as lk
from latentkit import blocks as B
from latentkit import config as C
from latentkit import data as DA
from latentkit import diagnostics as DG
from latentkit import distributions as D
from latentkit import likelihoods as L
from latentkit import networks as N
from latentkit import ode as O

t = torch.zeros
EDC = B.EncoderDecoderConfig


def _rows(n: int = 8, bad_row: int | None = None, value: float = INF) -> torch.Tensor:
    x = torch.randn(n, 4, generator=torch.Generator().manual_seed(0))
    if bad_row is not None:
        x[bad_row, 1] = value
    return x


def _inf_row_2() -> torch.Tensor:
    x = torch.zeros(3, 2)
    x[2, 0] = INF
    return x


def _diagnose(k, **kw):
    return lk.diagnose(k.vae, _rows(), **kw)


def _ode(k, **kw):
    return lk.ode_log_prob(k.vdm, k.x_vdm, **kw)


def _figure(k, **kw):
    return O.ode_figure(k.vdm, k.x_vdm, t(3), **{"discrete": False, **kw})


def _dataset(**kw):
    fields = dict(name="d", train=t(2, 3), test=t(2, 3), data_shape=(3,), kind="unit")
    return DA.Dataset(**{**fields, "description": "d", **kw})


MORE: dict[str, tuple[Bad, ...]] = {
    # -- diagnose: every argument
    "latentkit.diagnose": (
        bad("huge int", lambda k: _diagnose(k, seed=HUGE), lk.InputError, "seed"),
        bad("negative", lambda k: _diagnose(k, seed=-1), lk.InputError, "seed"),
        bad("inf in row 7", lambda k: lk.diagnose(k.vae, _rows(8, 7)), lk.NonFiniteError, "7"),
        bad("NaN in row 3", lambda k: lk.diagnose(k.vae, _rows(8, 3, NAN)), lk.NonFiniteError),
        bad("zero count", lambda k: _diagnose(k, batch_size=0), lk.InputError, "batch_size"),
        bad("bool for int", lambda k: _diagnose(k, num_draws=True), lk.InputError, "num_draws"),
        bad("huge int", lambda k: _diagnose(k, num_draws=HUGE), lk.InputError, "num_draws"),
        bad("huge int", lambda k: _diagnose(k, pairs_per_call=HUGE), lk.InputError, "pairs"),
        bad("inf", lambda k: _diagnose(k, active_threshold=INF), lk.InputError, "threshold"),
        bad("bool", lambda k: _diagnose(k, active_threshold=True), lk.InputError, "threshold"),
        bad("not a bool", lambda k: _diagnose(k, joint="no"), lk.InputError, "joint"),
        bad("not a bool", lambda k: _diagnose(k, keep_latents=0), lk.InputError, "keep_latents"),
        bad("ignored setting", lambda k: _diagnose(k, timesteps=[1]), lk.InputError, "timesteps"),
        bad(
            "out of range",
            lambda k: lk.diagnose(k.vdm, t(4, 2), timesteps=[HUGE]),
            lk.InputError,
            "timesteps",
        ),
        bad(
            "wrong type",
            lambda k: lk.diagnose(k.vdm, t(4, 2), timesteps="12"),
            lk.InputError,
            "timesteps",
        ),
        bad("wrong type", lambda k: lk.diagnose(k.vae, [[0.0] * 4]), lk.InputError, "data"),
        bad("wrong type", lambda k: lk.diagnose("m", _rows()), lk.InputError, "diagnose: model"),
    ),
    "latentkit.diagnostics.aggregate_log_prob": (
        bad("wrong type", lambda k: DG.aggregate_log_prob("q", t(2, 2), k.x), lk.InputError),
        bad(
            "zero count",
            lambda k: DG.aggregate_log_prob(k.vae.posterior, t(2, 2), k.x, pairs_per_call=0),
            lk.InputError,
            "pairs_per_call",
        ),
        bad(
            "empty",
            lambda k: DG.aggregate_log_prob(k.vae.posterior, t(2, 2), t(0, 4)),
            lk.InputError,
            "data",
        ),
    ),
    "latentkit.diagnostics.gaussian_diffusion_information": (
        bad(
            "wrong shape",
            lambda k: DG.gaussian_diffusion_information(t(2, 3), t(3), t(3)),
            lk.ShapeError,
            "cov",
        ),
        bad(
            "wrong shape",
            lambda k: DG.gaussian_diffusion_information(torch.eye(2), t(3), t(4)),
            lk.ShapeError,
            "alpha_bar",
        ),
    ),
    "latentkit.diagnostics.diagnostics_plot": (
        bad("wrong type", lambda k: DG.diagnostics_plot("d", k.tmp / "d.png"), lk.InputError),
        bad(
            "unknown format",
            lambda k: DG.diagnostics_plot(k.diagnostics, k.tmp / "d.bogus"),
            lk.InputError,
            "'.bogus'",
        ),
        bad("a folder", lambda k: DG.diagnostics_plot(k.diagnostics, k.tmp), lk.InputError),
    ),
    "latentkit.diagnostics.comparison_plot": (
        bad("wrong type", lambda k: DG.comparison_plot({"a": 1}, k.tmp / "c.png"), lk.InputError),
        bad("empty", lambda k: DG.comparison_plot({}, k.tmp / "c.png"), lk.InputError),
        bad(
            "wrong type",
            lambda k: DG.comparison_plot({"a": k.diagnostics}, 3),
            lk.InputError,
            "path",
        ),
    ),
    "latentkit.diagnostics.training_diagnostics_plot": (
        bad(
            "wrong type", lambda k: DG.training_diagnostics_plot(3, k.tmp / "t.png"), lk.InputError
        ),
        bad(
            "missing file",
            lambda k: DG.training_diagnostics_plot(k.tmp / "none.jsonl", k.tmp / "t.png"),
            lk.InputError,
            "none.jsonl",
        ),
    ),
    "latentkit.diagnostics.diagnostics_table": (
        bad("wrong type", lambda k: DG.diagnostics_table("d"), lk.InputError, "diag"),
        bad("wrong type", lambda k: DG.diagnostics_table(k.diagnostics, 3), lk.InputError),
    ),
    # -- the probability-flow ODE
    "latentkit.ode_log_prob": (
        bad("unknown choice", lambda k: _ode(k, method="rk45"), lk.ConfigError, "rk45"),
        bad(
            "below the floor",
            lambda k: _ode(k, rtol=1e-300, atol=1e-300),
            lk.ConfigError,
            "machine epsilon",
        ),
        bad("above 1", lambda k: _ode(k, rtol=1e300, atol=1e300), lk.ConfigError, "rtol"),
        bad("NaN", lambda k: _ode(k, atol=NAN), lk.ConfigError, "atol"),
        bad("huge int", lambda k: _ode(k, num_probes=HUGE), lk.ConfigError, "num_probes"),
        bad("negative", lambda k: _ode(k, exact_max_dims=-1), lk.ConfigError, "exact_max_dims"),
        bad("not a bool", lambda k: _ode(k, dequantize="yes"), lk.ConfigError, "dequantize"),
        bad("not a bool", lambda k: _ode(k, validate="no"), lk.ConfigError, "validate"),
        bad("wrong type", lambda k: _ode(k, generator="g"), lk.ConfigError, "generator"),
        bad("unknown option", lambda k: _ode(k, options={"bogus": 1}), lk.ConfigError, "bogus"),
        bad(
            "zero step",
            lambda k: _ode(k, method="euler", options={"step_size": 0.0}),
            lk.ConfigError,
            "step_size",
        ),
        bad(
            "too many steps",
            lambda k: _ode(k, method="rk4", options={"step_size": 1e-12}),
            lk.ConfigError,
            "steps",
        ),
        bad("no contract", lambda k: lk.ode_log_prob(k.vae, k.x), lk.InputError, "probability"),
        bad("wrong shape", lambda k: lk.ode_log_prob(k.vdm, t(3, 4)), lk.ShapeError),
    ),
    "latentkit.ode.check_solver": (
        bad(
            "unknown choice",
            lambda k: O.check_solver("rk45", 1e-5, 1e-5, None, torch.float32),
            lk.ConfigError,
        ),
        bad(
            "wrong type",
            lambda k: O.check_solver("dopri5", 1e-5, 1e-5, None, "float32"),
            lk.ConfigError,
            "dtype",
        ),
        bad(
            "bad option value",
            lambda k: O.check_solver("dopri5", 1e-5, 1e-5, {"max_num_steps": 0}, torch.float32),
            lk.ConfigError,
            "max_num_steps",
        ),
    ),
    "latentkit.ode.solve": (
        bad("wrong type", lambda k: O.solve("f", t(2), 0.0, 1.0), lk.InputError, "solve: func"),
        bad("wrong type", lambda k: O.solve(lambda s, y: y, "y", 0.0, 1.0), lk.InputError, "y0"),
        bad("NaN", lambda k: O.solve(lambda s, y: y, t(2), 0.0, NAN), lk.InputError, "finite"),
    ),
    "latentkit.ode.solver_options": (
        bad("wrong type", lambda k: O.solver_options("dopri5", "t", None), lk.InputError, "times"),
        bad("wrong type", lambda k: O.solver_options("dopri5", t(2), 3), lk.ConfigError),
    ),
    "latentkit.ode.within_span": (
        bad("wrong type", lambda k: O.within_span("f", 0.0, 1.0), lk.InputError, "func"),
        bad("NaN", lambda k: O.within_span(lambda s, y: y, 0.0, NAN), lk.InputError, "finite"),
    ),
    "latentkit.ode.check_margin": (
        bad("NaN", lambda k: O.check_margin(NAN), lk.ConfigError, "ode_margin"),
        bad("negative", lambda k: O.check_margin(-1.0), lk.ConfigError, "ode_margin"),
    ),
    "latentkit.ode.ode_data_end": (
        bad("wrong type", lambda k: O.ode_data_end(None), lk.InputError, "ode_data_end: model"),
        bad("no bins", lambda k: O.ode_data_end(k.vdm), lk.ConfigError, "bins"),
    ),
    "latentkit.ode.ode_figure": (
        bad("NaN", lambda k: _figure(k, margin=NAN), lk.ConfigError, "ode_margin"),
        bad(
            "wrong shape",
            lambda k: O.ode_figure(k.vdm, k.x_vdm, t(4), discrete=False),
            lk.ShapeError,
        ),
        bad("zero count", lambda k: _figure(k, batch_size=0), lk.InputError, "batch_size"),
        bad("huge int", lambda k: _figure(k, seed=HUGE), lk.InputError, "seed"),
        bad("missing argument", lambda k: O.ode_figure(k.vdm, k.x_vdm, t(3)), lk.InputError),
        bad("unknown option", lambda k: _figure(k, metod="rk4"), lk.ConfigError, "metod"),
        bad("unknown choice", lambda k: _figure(k, method="rk45"), lk.ConfigError, "rk45"),
        bad(
            "inf in row 2",
            lambda k: O.ode_figure(k.vdm, _inf_row_2(), t(3), discrete=False, batch_size=1),
            lk.NonFiniteError,
            "data",
            "example 2",
        ),
    ),
    "latentkit.ode.prior_typical": (
        bad("huge int", lambda k: O.prior_typical(k.vdm, seed=HUGE), lk.InputError, "seed"),
        bad("one draw", lambda k: O.prior_typical(k.vdm, draws=1), lk.InputError, "draws"),
        bad("wrong type", lambda k: O.prior_typical("m"), lk.InputError, "model"),
    ),
    "latentkit.ode.probability_flow_contract": (
        bad("wrong type", lambda k: O.probability_flow_contract("m"), lk.InputError, "model"),
    ),
    "latentkit.ode.OdeFigure": (
        bad("wrong type", lambda k: O.OdeFigure("o", t(2), t(2), (1,), 4), lk.InputError),
        bad("NaN", lambda k: O.OdeFigure(t(2), t(2), t(2), (1,), 4, margin=NAN), lk.ConfigError),
    ),
    # -- data
    "latentkit.load_dataset": (
        bad("wrong type", lambda k: lk.load_dataset(3), lk.DataSourceError, "name"),
        bad("unknown choice", lambda k: lk.load_dataset("bogus"), lk.DataSourceError, "bogus"),
        bad("unknown choice", lambda k: lk.load_dataset("digits", variant="x"), lk.ConfigError),
        bad("huge int", lambda k: lk.load_dataset("digits", seed=HUGE), lk.ConfigError, "seed"),
        bad("negative", lambda k: lk.load_dataset("digits", limit=-1), lk.ConfigError, "limit"),
        bad("bool for int", lambda k: lk.load_dataset("digits", limit=True), lk.ConfigError),
        bad("huge int", lambda k: lk.load_dataset("digits", limit=HUGE), lk.ConfigError, "limit"),
        bad("out of range", lambda k: lk.load_dataset("digits", test_fraction=1.5), lk.ConfigError),
        bad("NaN", lambda k: lk.load_dataset("digits", test_fraction=NAN), lk.ConfigError),
        bad("not a bool", lambda k: lk.load_dataset("digits", flatten="y"), lk.ConfigError),
        bad("not a bool", lambda k: lk.load_dataset("digits", download=1), lk.ConfigError),
        bad("wrong type", lambda k: lk.load_dataset("digits", root=3), lk.ConfigError, "root"),
        bad(
            "missing file",
            lambda k: lk.load_dataset(f"file:{k.tmp / 'none.npy'}"),
            lk.DataSourceError,
        ),
    ),
    "latentkit.data.Dataset": (
        bad("unknown choice", lambda k: _dataset(kind="bogus"), lk.ConfigError, "kind"),
        bad("wrong dtype", lambda k: _dataset(train=t(2, 3).double()), lk.DTypeError, "float32"),
        bad("wrong shape", lambda k: _dataset(test=t(2, 4)), lk.ShapeError, "test"),
    ),
    "latentkit.data.DynamicBinarizer": (
        bad("bool for int", lambda k: DA.DynamicBinarizer(t(2, 3), True), lk.ConfigError, "seed"),
        bad("out of range", lambda k: DA.DynamicBinarizer(t(2, 3) + 2, 0), lk.InputError),
        bad("NaN", lambda k: DA.DynamicBinarizer(t(2, 3) + NAN, 0), lk.NonFiniteError),
    ),
    "latentkit.data.binarize": (
        bad("out of range", lambda k: DA.binarize(t(2, 3) + 2.0), lk.InputError, "[0, 1]"),
        bad("wrong dtype", lambda k: DA.binarize(t(2, 3).long()), lk.DTypeError),
        bad("bool for int", lambda k: DA.binarize(t(2, 3), seed=True), lk.ConfigError, "seed"),
    ),
    "latentkit.data.list_datasets": (
        bad("not a bool", lambda k: DA.list_datasets(available_only="y"), lk.ConfigError),
    ),
    "latentkit.data.split_validation": (
        bad("zero count", lambda k: DA.split_validation(t(5, 2), 0), lk.ConfigError, "size"),
        bad("wrong type", lambda k: DA.split_validation("x"), lk.InputError),
    ),
    "latentkit.data.step_seed": (
        bad("negative", lambda k: DA.step_seed(0, -1), lk.ConfigError, "step"),
        bad("bool for int", lambda k: DA.step_seed(True, 0), lk.ConfigError, "seed"),
    ),
    "latentkit.data.to_display": (
        bad("unknown choice", lambda k: DA.to_display(t(2), "bogus"), lk.ConfigError, "kind"),
        bad("zero std", lambda k: DA.to_display(t(2), "real", std=0.0), lk.ConfigError, "std"),
        bad("NaN", lambda k: DA.to_display(t(2), "real", mean=NAN), lk.ConfigError, "mean"),
        bad("wrong type", lambda k: DA.to_display("x", "unit"), lk.InputError),
    ),
    "latentkit.data.to_symmetric": (
        bad("wrong dtype", lambda k: DA.to_symmetric(t(2)), lk.DTypeError, "uint8"),
    ),
    "latentkit.data.to_unit_interval": (
        bad("wrong type", lambda k: DA.to_unit_interval([1, 2]), lk.InputError, "list"),
    ),
    # -- networks
    "latentkit.networks.MADE": (
        bad("zero count", lambda k: N.MADE(0, (4,)), lk.ConfigError, "dim"),
        bad("huge int", lambda k: N.MADE(HUGE, (4,)), lk.ConfigError, "dim"),
        bad("wrong type", lambda k: N.MADE(3, "ab"), lk.InputError, "hidden"),
        bad("zero size", lambda k: N.MADE(3, (0,)), lk.ConfigError, "hidden"),
        bad("negative", lambda k: N.MADE(3, (4,), context_dim=-1), lk.ConfigError, "context_dim"),
        bad("unknown choice", lambda k: N.MADE(3, (4,), activation="x"), lk.ConfigError),
    ),
    "latentkit.networks.EpsMLP": (
        bad("zero size", lambda k: N.EpsMLP((0,)), lk.ConfigError, "data_shape"),
        bad("negative", lambda k: N.EpsMLP((4,), hidden=(-1,)), lk.ConfigError, "hidden"),
        bad("zero count", lambda k: N.EpsMLP((4,), out_groups=0), lk.ConfigError, "out_groups"),
        bad("wrong type", lambda k: N.EpsMLP("4"), lk.InputError, "data_shape"),
    ),
    "latentkit.networks.EpsUNet": (
        bad("wrong shape", lambda k: N.EpsUNet((4,)), lk.ConfigError, "(C, H, W)"),
        bad("zero count", lambda k: N.EpsUNet((1, 8, 8), channels=0), lk.ConfigError, "channels"),
        bad("bool for int", lambda k: N.EpsUNet((1, 8, 8), channels=True), lk.InputError),
    ),
    "latentkit.networks.GaussianHead": (
        bad("negative", lambda k: N.GaussianHead(min_scale=-1.0), lk.InputError, "min_scale"),
        bad("NaN", lambda k: N.GaussianHead(min_scale=NAN), lk.InputError, "min_scale"),
    ),
    "latentkit.networks.MaskedLinear": (
        bad("wrong type", lambda k: N.MaskedLinear(2, 3, "m"), lk.InputError, "mask"),
        bad("wrong shape", lambda k: N.MaskedLinear(2, 3, torch.ones(2, 2)), lk.ConfigError),
        bad("zero count", lambda k: N.MaskedLinear(0, 3, torch.ones(3, 0)), lk.ConfigError),
    ),
    "latentkit.networks.TimeEmbedding": (
        bad("zero count", lambda k: N.TimeEmbedding(0, 4), lk.ConfigError, "dim"),
        bad("unknown choice", lambda k: N.TimeEmbedding(4, 4, activation="x"), lk.ConfigError),
    ),
    "latentkit.networks.activation_layer": (
        bad("unknown choice", lambda k: N.activation_layer("bogus"), lk.ConfigError, "bogus"),
        bad("unhashable", lambda k: N.activation_layer(["relu"]), lk.ConfigError, "activation"),
    ),
    "latentkit.networks.check_unet_shape": (
        bad("wrong shape", lambda k: N.check_unet_shape((1, 7, 7), (1, 2)), lk.ConfigError),
        bad("wrong type", lambda k: N.check_unet_shape("abc", (1, 2)), lk.InputError),
        bad("zero size", lambda k: N.check_unet_shape((0, 8, 8), (1, 2)), lk.ConfigError),
    ),
    "latentkit.networks.embedding_frequencies": (
        bad("zero count", lambda k: N.embedding_frequencies(0), lk.ConfigError, "dim"),
        bad("negative", lambda k: N.embedding_frequencies(4, max_period=-1.0), lk.ConfigError),
    ),
    "latentkit.networks.fourier_features": (
        bad("wrong type", lambda k: N.fourier_features("z", (1,)), lk.InputError, "z"),
        bad("wrong type", lambda k: N.fourier_features(t(2, 3), ("a",)), lk.InputError),
        bad("huge int", lambda k: N.fourier_features(t(2, 3), (HUGE,)), lk.InputError),
    ),
    "latentkit.networks.mlp": (
        bad("negative", lambda k: N.mlp((4, -1)), lk.ConfigError, "sizes"),
        bad("unknown choice", lambda k: N.mlp((4, 2), activation="x"), lk.ConfigError),
        bad("wrong type", lambda k: N.mlp(4), lk.InputError, "sizes"),
    ),
    "latentkit.networks.timestep_embedding": (
        bad("wrong type", lambda k: N.timestep_embedding("t", 4), lk.InputError, "t"),
        bad("zero count", lambda k: N.timestep_embedding(t(3), 0), lk.ConfigError, "dim"),
        bad("wrong shape", lambda k: N.timestep_embedding(t(()), 4), lk.InputError, "[batch]"),
    ),
    # -- blocks
    "latentkit.blocks.DecoderChain": (
        bad("wrong type", lambda k: B.DecoderChain("cfg"), lk.ConfigError, "EncoderDecoderConfig"),
    ),
    "latentkit.blocks.EncoderDecoderConfig": (
        bad("zero count", lambda k: EDC(latent_dim=0), lk.ConfigError, "latent_dim", "> 0"),
        bad("huge int", lambda k: EDC(latent_dim=HUGE), lk.ConfigError, "latent_dim"),
        bad("bool for int", lambda k: EDC(latent_dim=True), lk.ConfigError, "latent_dim"),
        bad("unknown choice", lambda k: EDC(architecture="cnn"), lk.ConfigError, "cnn"),
        bad("NaN", lambda k: EDC(fixed_scale=NAN), lk.ConfigError, "fixed_scale"),
        bad("inf", lambda k: EDC(min_scale=INF), lk.ConfigError, "min_scale"),
        bad("huge int", lambda k: EDC(data_shape=(HUGE,)), lk.ConfigError, "data_shape"),
    ),
    "latentkit.blocks.EpsNetworkConfig": (
        bad("unknown choice", lambda k: B.EpsNetworkConfig(network="x"), lk.ConfigError),
        bad("zero count", lambda k: B.EpsNetworkConfig(channels=0), lk.ConfigError, "channels"),
    ),
    "latentkit.blocks.GaussianEncoder": (
        bad("zero count", lambda k: B.GaussianEncoder((4,), 0), lk.ConfigError, "latent_dim"),
        bad("negative", lambda k: B.GaussianEncoder((4,), 2, min_scale=-1.0), lk.InputError),
        bad("wrong type", lambda k: B.GaussianEncoder("x", 2), lk.InputError, "data_shape"),
    ),
    # -- distributions
    "latentkit.distributions.DiscretizedNormal": (
        bad("one level", lambda k: D.DiscretizedNormal(t(2), t(2) + 1, levels=1), lk.ConfigError),
        bad("huge int", lambda k: D.DiscretizedNormal(t(2), t(2) + 1, levels=HUGE), lk.ConfigError),
        bad("wrong type", lambda k: D.DiscretizedNormal("l", t(2) + 1), lk.InputError, "loc"),
    ),
    "latentkit.distributions.LevelGrid": (
        bad("one level", lambda k: D.LevelGrid(1), lk.ConfigError, "levels"),
        bad("huge int", lambda k: D.LevelGrid(HUGE), lk.ConfigError, "levels"),
        bad("bool for int", lambda k: D.LevelGrid(True), lk.ConfigError, "levels"),
    ),
    "latentkit.distributions.closed_form_kl": (
        bad("wrong type", lambda k: D.closed_form_kl("q", "p"), lk.InputError, "Distribution"),
    ),
    "latentkit.distributions.diag_normal": (
        bad("wrong type", lambda k: D.diag_normal("l", t(2)), lk.InputError, "loc"),
        bad("out of range", lambda k: D.diag_normal(t(2, 3), t(2, 3) + 1, 5), lk.InputError),
        bad("bool for int", lambda k: D.diag_normal(t(2, 3), t(2, 3) + 1, True), lk.InputError),
    ),
    "latentkit.distributions.log1mexp": (
        bad("wrong type", lambda k: D.log1mexp("a"), lk.InputError, "a must be"),
    ),
    "latentkit.distributions.register_closed_form": (
        bad("wrong type", lambda k: D.register_closed_form("q", "p"), lk.InputError, "type_q"),
    ),
    "latentkit.distributions.standard_normal": (
        bad("negative", lambda k: D.standard_normal(-1, (2,), like=t(1)), lk.InputError, "n"),
        bad("huge int", lambda k: D.standard_normal(HUGE, (2,), like=t(1)), lk.InputError),
        bad("wrong type", lambda k: D.standard_normal(2, (2,), like="t"), lk.InputError, "like"),
    ),
    "latentkit.distributions.to_multivariate": (
        bad("wrong type", lambda k: D.to_multivariate("p"), lk.InputError, "Independent"),
    ),
    # -- likelihoods
    "latentkit.make_likelihood": (
        bad("unknown choice", lambda k: lk.make_likelihood("poisson", (4,)), lk.ConfigError),
        bad("unhashable", lambda k: lk.make_likelihood(["gaussian"], (4,)), lk.ConfigError),
        bad("zero size", lambda k: lk.make_likelihood("gaussian", (0,)), lk.ConfigError),
        bad("negative", lambda k: lk.make_likelihood("gaussian", (4,), -1.0), lk.ConfigError),
        bad("NaN", lambda k: lk.make_likelihood("gaussian", (4,), NAN), lk.ConfigError),
        bad("bool", lambda k: lk.make_likelihood("gaussian", (4,), True), lk.InputError),
        bad("unknown choice", lambda k: lk.make_likelihood("gaussian", (4,), "x"), lk.ConfigError),
        bad(
            "unknown option", lambda k: lk.make_likelihood("gaussian", (4,), bogus=1), lk.InputError
        ),
        bad("wrong type", lambda k: lk.make_likelihood("gaussian", "ab"), lk.InputError),
    ),
    "latentkit.likelihoods.BernoulliLikelihood": (
        bad("zero size", lambda k: L.BernoulliLikelihood((0,)), lk.ConfigError, "data_shape"),
    ),
    "latentkit.likelihoods.GaussianLikelihood": (
        bad("negative", lambda k: L.GaussianLikelihood((4,), min_scale=-1.0), lk.ConfigError),
        bad("zero", lambda k: L.GaussianLikelihood((4,), init_scale=0.0), lk.ConfigError),
    ),
    "latentkit.likelihoods.DiscretizedGaussianLikelihood": (
        bad("negative", lambda k: L.DiscretizedGaussianLikelihood((4,), -1.0), lk.ConfigError),
    ),
    "latentkit.likelihoods.Likelihood": (
        bad("wrong type", lambda k: L.Likelihood("x"), lk.ConfigError, "data_shape"),
    ),
    "latentkit.likelihoods.split_params": (
        bad("wrong type", lambda k: L.split_params("p"), lk.InputError, "params"),
        bad("wrong shape", lambda k: L.split_params(t(3)), lk.InputError, "params"),
    ),
    # -- config helpers
    "latentkit.structure_config": (
        bad("wrong type", lambda k: lk.structure_config(EDC, {"latent_dim": "x"}), lk.ConfigError),
        bad("unknown field", lambda k: lk.structure_config(EDC, {"latnet": 1}), lk.ConfigError),
        bad("wrong type", lambda k: lk.structure_config(int, {}), lk.ConfigError, "attrs"),
        bad("wrong type", lambda k: lk.structure_config(EDC, 3), lk.ConfigError, "mapping"),
    ),
    "latentkit.unstructure_config": (
        bad("wrong type", lambda k: lk.unstructure_config(3), lk.ConfigError, "attrs"),
    ),
    "latentkit.config.config_fields": (
        bad("wrong type", lambda k: C.config_fields(int), lk.ConfigError, "attrs"),
    ),
    "latentkit.config.describe_fields": (
        bad("wrong type", lambda k: C.describe_fields(3), lk.ConfigError, "attrs"),
    ),
    "latentkit.config.data_levels": (
        bad("wrong type", lambda k: C.data_levels(3), lk.ConfigError, "decoder_field"),
    ),
    "latentkit.config.int_at_least": (
        bad("wrong type", lambda k: C.int_at_least("a"), lk.ConfigError, "low"),
    ),
    "latentkit.config.one_of": (
        bad("empty", lambda k: C.one_of(), lk.ConfigError, "one_of"),
        bad("wrong type", lambda k: C.one_of(3), lk.ConfigError, "one_of"),
    ),
    "latentkit.config.positive_ints": (
        bad("negative", lambda k: C.positive_ints(-1), lk.ConfigError, "min_len"),
        bad("wrong type", lambda k: C.positive_ints(1, hint=3), lk.ConfigError, "hint"),
    ),
    "latentkit.config.ruled": (bad("wrong type", lambda k: C.ruled(3), lk.ConfigError, "rule"),),
}
