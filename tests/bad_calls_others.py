"""Hostile calls of the public callables outside the core's entry points: the registry and
the chains' types, evaluation and comparison, composition, diffusion helpers, figures,
sample quality, training and the testing kit.

A case with ``gap=FILE`` is one the callable does not refuse yet (a traceback or a silent
result): it runs as a strict expected failure, so the day FILE checks it the case passes,
the xfail turns into a failure, and the gap mark must go."""

from __future__ import annotations

import attrs
import torch
from bad_calls_kit import HUGE, INF, NAN, Bad, bad

import latentkit as lk
from latentkit import diffusion as DF
from latentkit import plots as P
from latentkit import quality as Q
from latentkit import testing as TS
from latentkit import training as T

t = torch.zeros


@attrs.frozen
class _SpecConfig:
    """A config class a spec accepts."""


def _nan_at(x: torch.Tensor, i: int) -> torch.Tensor:
    """``x`` with a NaN at index ``i`` (not only the first row is looked at)."""
    x = x.clone()
    x[i] = NAN
    return x


F64 = torch.float64


def _feature_net() -> Q.FeatureNetwork:
    """A feature network of 2-pixel images that reads them as they are."""
    return Q.FeatureNetwork(lambda x: x, (2,), "identity")


def _gaussian(n: int, d: int) -> tuple[torch.Tensor, ...]:
    """Features [n, d], their mean and covariance, radii [n]: a prepared reference's fields."""
    x = torch.randn(n, d, dtype=F64, generator=torch.Generator().manual_seed(0))
    return x, x.mean(0), torch.eye(d, dtype=F64), torch.ones(n, dtype=F64)


def _draw(r: int, stage: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A comparison's draws: two sets of replicates of zeros."""
    return t(r, 1), t(r, 1)


def _choice(**kw):
    return lk.ObjectiveChoice(**{"name": "elbo", "options": {}, **kw})


OTHERS: dict[str, tuple[Bad, ...]] = {
    # -- the registry
    "latentkit.load_model": (
        bad("unknown choice", lambda k: lk.load_model("nope"), lk.UnknownModelError, "nope"),
        bad("wrong type", lambda k: lk.load_model(3), lk.UnknownModelError),
        bad("zero count", lambda k: lk.load_model("vae", latent_dim=0), lk.ConfigError),
        bad("huge int", lambda k: lk.load_model("vae", latent_dim=HUGE), lk.ConfigError),
        bad("unknown field", lambda k: lk.load_model("vae", latnet_dim=3), lk.ConfigError),
    ),
    "latentkit.get_model_spec": (
        bad("unknown choice", lambda k: lk.get_model_spec("nope"), lk.UnknownModelError),
        bad("wrong type", lambda k: lk.get_model_spec(["vae"]), lk.UnknownModelError),
    ),
    "latentkit.get_objective_spec": (
        bad("unknown choice", lambda k: lk.get_objective_spec("nope"), lk.LatentkitError),
    ),
    "latentkit.make_objective": (
        bad("unknown choice", lambda k: lk.make_objective("nope", k.vae), lk.LatentkitError),
        bad("wrong type", lambda k: lk.make_objective("elbo", "m"), lk.PluginError, "LatentModel"),
        bad("out of range", lambda k: lk.make_objective("iwae", k.vae, k=0), lk.ConfigError),
    ),
    "latentkit.training_objective": (
        bad("wrong type", lambda k: lk.training_objective(None), lk.InputError, "model"),
    ),
    "latentkit.training_loss": (
        bad("wrong type", lambda k: lk.training_loss("m", k.x), lk.EstimatorError, "model"),
        bad("wrong shape", lambda k: lk.training_loss(k.vae, t(2, 5)), lk.ShapeError, "x"),
        bad("NaN", lambda k: lk.training_loss(k.vae, t(2, 4) + NAN), lk.NonFiniteError, "x"),
        bad(
            "wrong dtype",
            lambda k: lk.training_loss(k.vae, t(2, 4, dtype=torch.long)),
            lk.DTypeError,
            "x",
        ),
        bad("negative", lambda k: lk.training_loss(k.vae, k.x, step=-1), lk.InputError, "step"),
        bad("bool", lambda k: lk.training_loss(k.vae, k.x, step=True), lk.InputError, "step"),
        bad("huge int", lambda k: lk.training_loss(k.vae, k.x, step=HUGE), lk.InputError, "step"),
        bad(
            "wrong dtype",
            lambda k: lk.training_loss(k.vae, k.x, step=torch.tensor(1.5)),
            lk.InputError,
            "step",
        ),
        bad(
            "wrong shape",
            lambda k: lk.training_loss(k.vae, k.x, step=torch.tensor([1, 2])),
            lk.InputError,
            "step",
        ),
        bad(
            "wrong type",
            lambda k: lk.training_loss(k.vae, k.x, validate="no"),
            lk.InputError,
            "validate",
        ),
    ),
    "latentkit.register_plugin": (
        bad("wrong type", lambda k: lk.register_plugin(None), lk.PluginError, "hookimpl"),
        bad("no hooks", lambda k: lk.register_plugin(object()), lk.PluginError, "hookimpl"),
        bad(
            "wrong type",
            lambda k: lk.register_plugin(object(), name=3),
            lk.PluginError,
            "name",
        ),
        bad("empty name", lambda k: lk.register_plugin(lk, name=""), lk.PluginError, "name"),
    ),
    "latentkit.unregister_plugin": (
        bad(
            "never registered",
            lambda k: lk.unregister_plugin(object()),
            lk.PluginError,
            "not registered",
        ),
        bad("wrong type", lambda k: lk.unregister_plugin(None), lk.PluginError, "not registered"),
    ),
    "latentkit.ModelSpec": (
        bad("wrong type", lambda k: lk.ModelSpec(3, int, print), lk.ConfigError, "'name'"),
        bad(
            "not an attrs class",
            lambda k: lk.ModelSpec("m", int, print),
            lk.ConfigError,
            "'config_class'",
        ),
        bad(
            "not callable",
            lambda k: lk.ModelSpec("m", _SpecConfig, "f"),
            lk.ConfigError,
            "'factory'",
        ),
        bad(
            "wrong type",
            lambda k: lk.ModelSpec("m", _SpecConfig, print, 3),
            lk.ConfigError,
            "'description'",
        ),
        bad(
            "wrong type",
            lambda k: lk.ModelSpec("m", _SpecConfig, print, continuous_data=[1]),
            lk.ConfigError,
            "'continuous_data'",
        ),
        bad(
            "wrong type",
            lambda k: lk.ModelSpec("m", _SpecConfig, print, data_shape_field=3),
            lk.ConfigError,
            "'data_shape_field'",
        ),
    ),
    "latentkit.ObjectiveSpec": (
        bad("wrong type", lambda k: lk.ObjectiveSpec(3, int, print), lk.ConfigError, "'name'"),
        bad(
            "not callable",
            lambda k: lk.ObjectiveSpec("o", _SpecConfig, None),
            lk.ConfigError,
            "'factory'",
        ),
    ),
    # -- the chains' types
    "latentkit.LatentModel": (
        bad("wrong type", lambda k: lk.LatentModel("p", "q"), lk.InputError),
        bad(
            "wrong type",
            lambda k: lk.LatentModel(k.vae.generative, k.vae.posterior, objective=3),
            lk.InputError,
        ),
    ),
    "latentkit.GenerativeChain": (
        bad("zero size", lambda k: lk.GenerativeChain((0,), ((2,),)), lk.InputError),
    ),
    "latentkit.LinearGaussianSpec": (
        bad(
            "wrong type",
            lambda k: lk.LinearGaussianSpec("m", t(1), (), t(1), t(1), t(1)),
            lk.InputError,
        ),
    ),
    "latentkit.ObjectiveChoice": (bad("wrong type", lambda k: _choice(name=3), lk.InputError),),
    "latentkit.SharedModule": (bad("wrong type", lambda k: lk.SharedModule("m"), lk.InputError),),
    "latentkit.FunctionObjective": (
        bad("wrong type", lambda k: lk.FunctionObjective("f"), lk.ConfigError, "callable"),
    ),
    "latentkit.Objective": (bad("wrong type", lambda k: lk.Objective(None, "m"), lk.InputError),),
    # -- training
    "latentkit.TrainConfig": (
        bad("zero count", lambda k: lk.TrainConfig(steps=0), lk.ConfigError, "steps"),
        bad("huge int", lambda k: lk.TrainConfig(seed=HUGE), lk.ConfigError, "seed"),
        bad("NaN", lambda k: lk.TrainConfig(lr=NAN), lk.ConfigError, "lr"),
    ),
    "latentkit.Trainer": (
        bad("NaN", lambda k: lk.Trainer(k.vae, t(3, 4) + NAN), lk.NonFiniteError),
        bad(
            "wrong type",
            lambda k: lk.Trainer("m", k.x),
            lk.InputError,
        ),
    ),
    "latentkit.training.DataOrder": (
        bad("too few", lambda k: T.DataOrder(0, 1, 0), lk.ConfigError, "batch_size"),
        bad("huge int", lambda k: T.DataOrder(10, 2, HUGE), lk.ConfigError, "seed"),
        bad("zero count", lambda k: T.DataOrder(10, 0, 0), lk.ConfigError, "batch_size"),
        bad("bool", lambda k: T.DataOrder(10, True, 0), lk.ConfigError, "batch_size"),
        bad("negative", lambda k: T.DataOrder(-1, 1, 0), lk.ConfigError, "num_examples"),
        bad("wrong type", lambda k: T.DataOrder(10.0, 2, 0), lk.ConfigError, "num_examples"),
    ),
    "latentkit.training.DistInfo": (
        bad("negative", lambda k: T.DistInfo(rank=-1), lk.ConfigError, "rank"),
        bad("zero count", lambda k: T.DistInfo(world_size=0), lk.ConfigError, "world_size"),
        bad("out of range", lambda k: T.DistInfo(rank=2, world_size=2), lk.ConfigError, "rank"),
        bad("wrong type", lambda k: T.DistInfo(local_rank="0"), lk.ConfigError, "local_rank"),
    ),
    "latentkit.training.JsonlLogger": (
        bad("wrong type", lambda k: T.JsonlLogger(3), lk.InputError, "run_dir"),
        bad("empty path", lambda k: T.JsonlLogger(""), lk.InputError, "run_dir"),
        bad("a file", lambda k: T.JsonlLogger(k.file), lk.InputError, "run_dir", "is a file"),
    ),
    "latentkit.training.MLflowLogger": (
        bad("wrong type", lambda k: T.MLflowLogger(3), lk.InputError, "run_dir"),
        bad("a file", lambda k: T.MLflowLogger(k.file), lk.InputError, "run_dir", "is a file"),
    ),
    "latentkit.training.TensorBoardLogger": (
        bad("wrong type", lambda k: T.TensorBoardLogger(3), lk.InputError, "run_dir"),
    ),
    "latentkit.training.make_logger": (
        bad("unknown choice", lambda k: T.make_logger("bogus", k.tmp), lk.ConfigError, "bogus"),
        bad("wrong type", lambda k: T.make_logger(["jsonl"], k.tmp), lk.ConfigError, "logger"),
        bad("wrong type", lambda k: T.make_logger("jsonl", 3), lk.InputError, "run_dir"),
    ),
    "latentkit.training.init_distributed": (
        bad("wrong type", lambda k: T.init_distributed("d"), lk.InputError, "device"),
    ),
    "latentkit.training.resolve_device": (
        bad("unknown choice", lambda k: T.resolve_device("gpu9"), lk.ConfigError, "gpu9"),
        bad("wrong type", lambda k: T.resolve_device(0), lk.ConfigError, "device must be a str"),
    ),
    "latentkit.training.seed_everything": (
        bad("huge int", lambda k: T.seed_everything(HUGE), lk.InputError, "seed"),
        bad("negative", lambda k: T.seed_everything(-1), lk.InputError, "seed"),
        bad("wrong type", lambda k: T.seed_everything(1.5), lk.InputError, "seed"),
        bad("bool", lambda k: T.seed_everything(True), lk.InputError, "seed"),
    ),
    # -- evaluation, comparison, composition
    "latentkit.evaluate": (
        bad(
            "inf in row 1",
            lambda k: lk.evaluate(k.vae, t(3, 4).index_fill(0, torch.tensor([1]), INF)),
            lk.NonFiniteError,
        ),
        bad(
            "unknown choice",
            lambda k: lk.evaluate(k.vae, k.x, estimator="bogus"),
            lk.LatentkitError,
        ),
        bad(
            "zero count",
            lambda k: lk.evaluate(k.vae, k.x, batch_size=0),
            lk.InputError,
        ),
        bad(
            "huge int",
            lambda k: lk.evaluate(k.vae, k.x, seed=HUGE),
            lk.InputError,
        ),
    ),
    "latentkit.paired_difference": (
        bad("wrong shape", lambda k: lk.paired_difference(t(3), t(4)), lk.ShapeError),
        bad("wrong type", lambda k: lk.paired_difference("a", "b"), lk.InputError),
        bad("NaN", lambda k: lk.paired_difference(t(3) + NAN, t(3)), lk.NonFiniteError, "a"),
        bad(
            "inf in row 2",
            lambda k: lk.paired_difference(t(3), torch.tensor([0.0, 0.0, INF])),
            lk.NonFiniteError,
            "b",
            "example 2",
        ),
        bad("empty", lambda k: lk.paired_difference(t(0), t(0)), lk.ShapeError, "one example"),
        bad(
            "wrong dtype",
            lambda k: lk.paired_difference(t(2, dtype=torch.bool), t(2, dtype=torch.bool)),
            lk.DTypeError,
            "a",
        ),
    ),
    "latentkit.compare_runs": (
        bad("missing folder", lambda k: lk.compare_runs([k.tmp / "none"]), lk.RunFolderError),
        bad(
            "unknown choice", lambda k: lk.compare_runs([k.tmp], figure="bogus"), lk.LatentkitError
        ),
    ),
    "latentkit.compose": (
        bad(
            "wrong type",
            lambda k: lk.compose(k.vae, prior="m"),
            lk.InputError,
            "LatentModel",
        ),
        bad(
            "wrong type",
            lambda k: lk.compose("m", prior=k.vae),
            lk.InputError,
            "LatentModel",
        ),
    ),
    # -- diffusion helpers
    "latentkit.diffusion.StepTables": (
        bad("wrong type", lambda k: DF.StepTables("t"), lk.InputError, "tables"),
        bad("empty", lambda k: DF.StepTables({}), lk.InputError, "tables"),
        bad("bad name", lambda k: DF.StepTables({"a.b": t(2)}), lk.InputError, "'a.b'"),
        bad("taken name", lambda k: DF.StepTables({"forward": t(2)}), lk.InputError, "forward"),
        bad("wrong type", lambda k: DF.StepTables({"a": "x"}), lk.InputError, "'a'"),
    ),
    "latentkit.diffusion.alpha_bar_sq": (
        bad("wrong type", lambda k: DF.alpha_bar_sq("g"), lk.InputError, "gamma"),
        bad("wrong type", lambda k: DF.alpha_bar_sq(0.5), lk.InputError, "gamma"),
        bad(
            "wrong dtype", lambda k: DF.alpha_bar_sq(t(2, dtype=torch.long)), lk.InputError, "gamma"
        ),
    ),
    "latentkit.diffusion.beta_bar_sq": (
        bad("wrong type", lambda k: DF.beta_bar_sq("g"), lk.InputError, "gamma"),
        bad(
            "wrong dtype", lambda k: DF.beta_bar_sq(t(2, dtype=torch.long)), lk.InputError, "gamma"
        ),
    ),
    "latentkit.diffusion.cosine_alpha_bar": (
        bad(
            "out of range",
            lambda k: DF.cosine_alpha_bar(t(3), offset=-1.0),
            lk.InputError,
            "offset",
        ),
        bad("NaN", lambda k: DF.cosine_alpha_bar(t(3), offset=NAN), lk.InputError, "offset"),
        bad("wrong type", lambda k: DF.cosine_alpha_bar(t(3), offset="s"), lk.InputError, "offset"),
        bad("out of range", lambda k: DF.cosine_alpha_bar(t(3) + 1.5), lk.InputError, "u"),
        bad("NaN in row 2", lambda k: DF.cosine_alpha_bar(_nan_at(t(4), 2)), lk.InputError, "u"),
        bad("wrong type", lambda k: DF.cosine_alpha_bar("u"), lk.InputError, "u"),
        bad("negative", lambda k: DF.cosine_alpha_bar(t(3) - 0.5), lk.InputError, "u"),
    ),
    "latentkit.diffusion.cosine_log_snr": (
        bad(
            "out of order", lambda k: DF.cosine_log_snr(t(3), 1.0, -1.0), lk.InputError, "gamma_max"
        ),
        bad("NaN", lambda k: DF.cosine_log_snr(t(3), NAN, 1.0), lk.InputError, "gamma_min"),
        bad("huge", lambda k: DF.cosine_log_snr(t(3), 0.0, 1e4), lk.InputError, "gamma_max"),
        bad("bool", lambda k: DF.cosine_log_snr(t(3), False, 1.0), lk.InputError, "gamma_min"),
        bad("wrong type", lambda k: DF.cosine_log_snr(0.5, -1.0, 1.0), lk.InputError, "u"),
        bad("equal ends", lambda k: DF.cosine_log_snr(t(3), 1.0, 1.0), lk.InputError, "gamma_max"),
        bad("huge", lambda k: DF.cosine_log_snr(t(3), -1e4, 1.0), lk.InputError, "gamma_min"),
    ),
    "latentkit.diffusion.gamma_from_alpha_bar": (
        bad("wrong type", lambda k: DF.gamma_from_alpha_bar("a"), lk.InputError, "alpha_bar"),
    ),
    "latentkit.diffusion.gather_steps": (
        bad("out of range", lambda k: DF.gather_steps(t(5), 5, t(2)), lk.InputError, "t=5"),
        bad("negative", lambda k: DF.gather_steps(t(5), -1, t(2)), lk.InputError, "t=-1"),
        bad("wrong type", lambda k: DF.gather_steps(t(5), 2.7, t(2)), lk.InputError, "t must"),
        bad("wrong type", lambda k: DF.gather_steps(t(5), "3", t(2)), lk.InputError, "t must"),
        bad("bool", lambda k: DF.gather_steps(t(5), True, t(2)), lk.InputError, "t must"),
        bad("wrong dtype", lambda k: DF.gather_steps(t(5), t(2), t(2)), lk.InputError, "t must"),
        bad("wrong type", lambda k: DF.gather_steps([0.0, 1.0], 1, t(2)), lk.InputError, "table"),
        bad(
            "wrong type",
            lambda k: DF.gather_steps(t(5), torch.tensor([1, 2]), "x"),
            lk.InputError,
            "like",
        ),
    ),
    "latentkit.diffusion.step_beta_from_alpha_bar": (
        bad(
            "out of range",
            lambda k: DF.step_beta_from_alpha_bar(t(3) + 1, cap=2.0),
            lk.InputError,
            "cap",
        ),
        bad("zero", lambda k: DF.step_beta_from_alpha_bar(t(3) + 1, cap=0.0), lk.InputError, "cap"),
        bad("zero ᾱ", lambda k: DF.step_beta_from_alpha_bar(t(3)), lk.InputError, "alpha_bar"),
        bad(
            "NaN in row 1",
            lambda k: DF.step_beta_from_alpha_bar(_nan_at(t(3) + 1, 1)),
            lk.InputError,
            "alpha_bar",
        ),
        bad("too few", lambda k: DF.step_beta_from_alpha_bar(t(1) + 1), lk.InputError, "alpha_bar"),
        bad(
            "wrong shape", lambda k: DF.step_beta_from_alpha_bar(t(2, 2) + 1), lk.InputError, "1-d"
        ),
    ),
    "latentkit.diffusion.step_variance_fraction": (
        bad("wrong type", lambda k: DF.step_variance_fraction("g", t(2)), lk.InputError, "gamma_s"),
        bad("wrong type", lambda k: DF.step_variance_fraction(t(2), 1), lk.InputError, "gamma_t"),
    ),
    # -- figures
    "latentkit.plots.as_images": (
        bad("wrong type", lambda k: P.as_images("x"), lk.InputError, "x"),
        bad("wrong shape", lambda k: P.as_images(t(4)), lk.ShapeError, "x"),
        bad("empty", lambda k: P.as_images(t(0, 4)), lk.ShapeError, "x"),
        bad("wrong shape", lambda k: P.as_images(t(2, 4), (3,)), lk.ShapeError, "data_shape"),
        bad("zero size", lambda k: P.as_images(t(2, 4), (0, 4)), lk.InputError, "data_shape"),
        bad("wrong type", lambda k: P.as_images(t(2, 4), "22"), lk.InputError, "data_shape"),
        bad("NaN in row 1", lambda k: P.as_images(_nan_at(t(3, 4), 1)), lk.NonFiniteError, "x"),
        bad("wrong shape", lambda k: P.as_images(t(2, 1, 1, 2, 2)), lk.ShapeError, "data_shape"),
    ),
    "latentkit.plots.finish_panels": (
        bad(
            "wrong type",
            lambda k: P.finish_panels("f", [], k.tmp / "a.png", None),
            lk.InputError,
            "fig",
        ),
    ),
    "latentkit.plots.layer_kl_plot": (
        bad(
            "NaN",
            lambda k: P.layer_kl_plot([1.0], NAN, k.tmp / "a.png"),
            lk.InputError,
            "prior_matching",
        ),
        bad(
            "inf in row 1",
            lambda k: P.layer_kl_plot([1.0, INF], 1.0, k.tmp / "a.png"),
            lk.InputError,
            "layer_kl[1]",
        ),
        bad(
            "NaN",
            lambda k: P.layer_kl_plot(t(2) + NAN, 1.0, k.tmp / "a.png"),
            lk.InputError,
            "layer_kl[0]",
        ),
        bad(
            "wrong type",
            lambda k: P.layer_kl_plot("kl", 1.0, k.tmp / "a.png"),
            lk.InputError,
            "layer_kl",
        ),
        bad(
            "NaN",
            lambda k: P.layer_kl_plot([1.0], 1.0, k.tmp / "a.png", reconstruction=NAN),
            lk.InputError,
            "reconstruction",
        ),
        bad("a folder", lambda k: P.layer_kl_plot([1.0], 1.0, k.tmp), lk.InputError, "is a folder"),
        bad(
            "unknown suffix",
            lambda k: P.layer_kl_plot([1.0], 1.0, k.tmp / "a.bogus"),
            lk.InputError,
            "suffix",
        ),
    ),
    "latentkit.plots.read_metrics": (
        bad(
            "missing file",
            lambda k: P.read_metrics(k.tmp / "none.jsonl"),
            lk.InputError,
            "no such file",
        ),
        bad("a folder", lambda k: P.read_metrics(k.tmp), lk.InputError, "no such file"),
        bad("wrong type", lambda k: P.read_metrics(3), lk.InputError, "path"),
    ),
    "latentkit.plots.sample_grid": (
        bad(
            "zero count",
            lambda k: P.sample_grid(t(4, 4), k.tmp / "a.png", ncols=0),
            lk.InputError,
            "ncols",
        ),
        bad(
            "huge int",
            lambda k: P.sample_grid(t(4, 4), k.tmp / "a.png", ncols=HUGE),
            lk.InputError,
            "ncols",
        ),
        bad(
            "bool",
            lambda k: P.sample_grid(t(4, 4), k.tmp / "a.png", ncols=True),
            lk.InputError,
            "ncols",
        ),
        bad("wrong type", lambda k: P.sample_grid(t(4, 4), 3), lk.InputError, "path"),
        bad(
            "NaN in row 3",
            lambda k: P.sample_grid(_nan_at(t(4, 4), 3), k.tmp / "a.png"),
            lk.NonFiniteError,
            "NaN",
        ),
        bad(
            "out of range",
            lambda k: P.sample_grid(t(4, 4), k.tmp / "a.png", ncols=5),
            lk.InputError,
            "ncols",
        ),
    ),
    "latentkit.plots.save_figure": (
        bad("wrong type", lambda k: P.save_figure("f", k.tmp / "a.png"), lk.InputError, "fig"),
    ),
    "latentkit.plots.training_curves": (
        bad(
            "missing file",
            lambda k: P.training_curves(k.tmp / "none.jsonl", k.tmp / "a.png"),
            lk.InputError,
            "no such file",
        ),
        bad(
            "wrong type",
            lambda k: P.training_curves([3], k.tmp / "a.png"),
            lk.InputError,
            "metrics",
        ),
        bad(
            "a folder", lambda k: P.training_curves(k.metrics, k.tmp), lk.InputError, "is a folder"
        ),
    ),
    # -- sample quality
    "latentkit.quality.FeatureNetwork": (
        bad("wrong type", lambda k: Q.FeatureNetwork("m", (1,), "n"), lk.InputError, "module"),
        bad(
            "zero size", lambda k: Q.FeatureNetwork(print, (0,), "n"), lk.InputError, "input_shape"
        ),
        bad(
            "wrong type",
            lambda k: Q.FeatureNetwork(print, ("1",), "n"),
            lk.InputError,
            "input_shape",
        ),
        bad("wrong type", lambda k: Q.FeatureNetwork(print, (1,), 3), lk.InputError, "name"),
        bad(
            "wrong type",
            lambda k: Q.FeatureNetwork(print, (1,), "n", head=3),
            lk.InputError,
            "head",
        ),
        bad(
            "wrong type",
            lambda k: Q.FeatureNetwork(print, (1,), "n", info=[]),
            lk.InputError,
            "info",
        ),
    ),
    "latentkit.quality.LeNet": (
        bad("zero count", lambda k: Q.LeNet(channels=0), lk.ConfigError, "channels"),
        bad("bool", lambda k: Q.LeNet(feature_dim=True), lk.ConfigError, "feature_dim"),
        bad("one class", lambda k: Q.LeNet(classes=1), lk.ConfigError, "classes"),
        bad("wrong shape", lambda k: Q.LeNet(conv=(8,)), lk.ConfigError, "conv"),
        bad("wrong type", lambda k: Q.LeNet(conv=(8, 2.5)), lk.ConfigError, "conv[1]"),
        bad("huge", lambda k: Q.LeNet(feature_dim=10**8), lk.ConfigError, "weights"),
        bad("huge int", lambda k: Q.LeNet(classes=HUGE), lk.ConfigError, "classes"),
    ),
    "latentkit.quality.PreparedReference": (
        bad(
            "wrong type",
            lambda k: Q.PreparedReference("f", t(1), t(1), t(1), 3, "unit", None),
            lk.InputError,
            "network",
        ),
        bad(
            "wrong type",
            lambda k: Q.PreparedReference("f", t(1), t(1), t(1), 3, "unit", _feature_net()),
            lk.InputError,
            "features",
        ),
        bad(
            "unknown choice",
            lambda k: Q.PreparedReference(*_gaussian(5, 2), 3, "real", _feature_net()),
            lk.InputError,
            "kind",
        ),
        bad(
            "wrong shape",
            lambda k: Q.PreparedReference(
                *_gaussian(5, 2)[:3], t(4, dtype=F64), 3, "unit", _feature_net()
            ),
            lk.ShapeError,
            "radii",
        ),
        bad(
            "out of range",
            lambda k: Q.PreparedReference(*_gaussian(5, 2), 5, "unit", _feature_net()),
            lk.InputError,
            "k",
        ),
    ),
    "latentkit.quality.classifier_score": (
        bad("wrong shape", lambda k: Q.classifier_score(t(3)), lk.ShapeError, "logits"),
        bad(
            "NaN in row 1",
            lambda k: Q.classifier_score(_nan_at(t(3, 4), 1)),
            lk.NonFiniteError,
            "logits",
        ),
        bad(
            "wrong dtype",
            lambda k: Q.classifier_score(t(3, 4), labels=torch.tensor([0.5, 1.0, 2.0])),
            lk.DTypeError,
            "labels",
        ),
    ),
    "latentkit.quality.draw_samples": (
        bad("zero count", lambda k: Q.draw_samples(k.vae, 0), lk.InputError, "n must be"),
        bad("huge int", lambda k: Q.draw_samples(k.vae, HUGE), lk.InputError, "n must be"),
        bad("bool", lambda k: Q.draw_samples(k.vae, True), lk.InputError, "n must be"),
        bad("huge int", lambda k: Q.draw_samples(k.vae, 2, seed=HUGE), lk.InputError, "seed"),
    ),
    "latentkit.quality.frechet_distance": (
        bad(
            "wrong type",
            lambda k: Q.frechet_distance("m", t(2, 2), t(2), t(2, 2)),
            lk.InputError,
            "mu1",
        ),
        bad(
            "wrong shape", lambda k: Q.frechet_distance(t(2), t(2, 2), t(2), t(3, 3)), lk.ShapeError
        ),
        bad(
            "wrong shape",
            lambda k: Q.frechet_distance(t(2, 2), t(2, 2), t(2, 2), t(2, 2)),
            lk.ShapeError,
        ),
        bad(
            "NaN in row 1",
            lambda k: Q.frechet_distance(t(2), t(2, 2), t(2), _nan_at(t(2, 2), 1)),
            lk.NonFiniteError,
            "cov2",
        ),
    ),
    "latentkit.quality.frechet_estimate": (
        bad(
            "negative", lambda k: Q.frechet_estimate(t(5, 2), t(5, 2), bootstrap=-1), lk.ConfigError
        ),
        bad(
            "huge int",
            lambda k: Q.frechet_estimate(t(5, 2), t(5, 2), bootstrap=HUGE),
            lk.ConfigError,
            "bootstrap",
        ),
        bad(
            "huge int",
            lambda k: Q.frechet_estimate(t(5, 2), t(5, 2), seed=HUGE),
            lk.InputError,
            "seed",
        ),
        bad(
            "NaN in row 3",
            lambda k: Q.frechet_estimate(_nan_at(t(5, 2), 3), t(5, 2)),
            lk.NonFiniteError,
            "example 3",
        ),
        bad(
            "too many",
            lambda k: Q.frechet_estimate(t(5, 2), t(5, 2), bootstrap=Q.metrics.MAX_BOOTSTRAP + 1),
            lk.ConfigError,
            "bootstrap",
        ),
    ),
    "latentkit.quality.gaussian_stats": (
        bad("wrong type", lambda k: Q.gaussian_stats("f"), lk.ShapeError, "features"),
        bad("inf", lambda k: Q.gaussian_stats(t(4, 2) + INF), lk.NonFiniteError, "features"),
    ),
    "latentkit.quality.knn_radii": (
        bad("zero count", lambda k: Q.knn_radii(t(5, 2), k=0), lk.InputError, "k must be"),
        bad("bool", lambda k: Q.knn_radii(t(5, 2), k=True), lk.InputError, "k must be"),
        bad(
            "NaN in row 4",
            lambda k: Q.knn_radii(_nan_at(t(5, 2), 4)),
            lk.NonFiniteError,
            "example 4",
        ),
    ),
    "latentkit.quality.load_feature_network": (
        bad(
            "missing file",
            lambda k: Q.load_feature_network(k.tmp / "none.safetensors"),
            lk.CheckpointError,
        ),
        bad("wrong type", lambda k: Q.load_feature_network(3), lk.InputError, "path"),
        bad("wrong type", lambda k: Q.load_feature_network(sha256=3), lk.InputError, "sha256"),
        bad("not hex", lambda k: Q.load_feature_network(sha256="ab"), lk.InputError, "sha256"),
    ),
    "latentkit.quality.precision_recall": (
        bad("wrong shape", lambda k: Q.precision_recall(t(5, 2), t(5, 3)), lk.ShapeError),
        bad(
            "zero count",
            lambda k: Q.precision_recall(t(5, 2), t(5, 2), k=0),
            lk.InputError,
            "k must be",
        ),
        bad(
            "NaN in row 2",
            lambda k: Q.precision_recall(t(5, 2), _nan_at(t(5, 2), 2)),
            lk.NonFiniteError,
            "example 2",
        ),
    ),
    "latentkit.quality.prepare_reference": (
        bad("wrong type", lambda k: Q.prepare_reference("r"), lk.InputError, "reference"),
    ),
    "latentkit.quality.reference_values": (
        bad("wrong type", lambda k: Q.reference_values("t", "r"), lk.InputError, "reference"),
    ),
    "latentkit.quality.sample_quality": (
        bad("wrong type", lambda k: Q.sample_quality("s", "r"), lk.InputError, "reference"),
    ),
    "latentkit.quality.to_unit_pixels": (
        bad("unknown choice", lambda k: Q.to_unit_pixels(t(2, 1, 28, 28), "bogus"), lk.ConfigError),
    ),
    "latentkit.quality.trivial_samples": (
        bad("zero count", lambda k: Q.trivial_samples(t(5, 4), 0), lk.InputError, "n must be"),
        bad("huge int", lambda k: Q.trivial_samples(t(5, 4), 2, seed=HUGE), lk.InputError, "seed"),
    ),
    "latentkit.quality.check_readable": (
        bad("zero count", lambda k: Q.check_readable("d", 0), lk.InputError, "n must be"),
    ),
    "latentkit.quality.model_sample_quality": (
        bad("zero count", lambda k: Q.model_sample_quality(k.vae, "d", 0), lk.InputError, "n"),
        bad(
            "huge int",
            lambda k: Q.model_sample_quality(k.vae, "d", 4, seed=HUGE),
            lk.InputError,
            "seed",
        ),
    ),
    "latentkit.quality.sample_quality_table": (
        bad("wrong type", lambda k: Q.sample_quality_table("b"), lk.InputError, "block"),
        bad("wrong type", lambda k: Q.sample_quality_table({}, title=3), lk.InputError, "title"),
    ),
    "latentkit.quality.sampler_of": (
        bad("wrong type", lambda k: Q.sampler_of("m"), lk.InputError, "model"),
    ),
    # -- the testing kit
    "latentkit.testing.Check": (
        bad("wrong type", lambda k: TS.Check(3, "t", print), lk.InputError, "key"),
        bad("empty", lambda k: TS.Check("", "t", print), lk.InputError, "key"),
        bad("not callable", lambda k: TS.Check("c", "t", "run"), lk.InputError, "run"),
        bad(
            "not callable", lambda k: TS.Check("c", "t", print, applies=1), lk.InputError, "applies"
        ),
    ),
    "latentkit.testing.ModelCase": (
        bad(
            "wrong type",
            lambda k: TS.ModelCase(3, {}, 0, t(1), t(1), 0, 1.0, 1, 1),
            lk.UnknownModelError,
        ),
        bad(
            "huge int",
            lambda k: TS.ModelCase("vae", {}, HUGE, t(1), t(1), 0, 1.0, 1, 1),
            lk.InputError,
            "seed",
        ),
    ),
    "latentkit.testing.assert_in_expectation": (
        bad("wrong type", lambda k: TS.assert_in_expectation("d", "w"), lk.InputError, "draw"),
        bad(
            "unknown choice",
            lambda k: TS.assert_in_expectation(_draw, "w", relation="<"),
            lk.InputError,
            "relation",
        ),
        bad(
            "zero count",
            lambda k: TS.assert_in_expectation(_draw, "w", stages=(64, 0)),
            lk.InputError,
            "stages[1]",
        ),
        bad(
            "not a bool",
            lambda k: TS.assert_in_expectation(_draw, "w", paired=1),
            lk.InputError,
            "paired",
        ),
        bad(
            "wrong type",
            lambda k: TS.assert_in_expectation(_draw, "w", names=("a",)),
            lk.InputError,
            "names",
        ),
    ),
    "latentkit.testing.build_model": (
        bad("unknown choice", lambda k: TS.build_model("nope", {}, 0), lk.UnknownModelError),
        bad("huge int", lambda k: TS.build_model("vae", {}, HUGE), lk.InputError, "seed"),
        bad("negative", lambda k: TS.build_model("vae", {}, -1), lk.InputError, "seed"),
        bad("wrong type", lambda k: TS.build_model("vae", [], 0), lk.InputError, "config"),
        bad(
            "unknown choice",
            lambda k: TS.build_model("vae", {}, 0, device="gpu9"),
            lk.InputError,
            "device",
        ),
    ),
    "latentkit.testing.check_model": (
        bad("unknown choice", lambda k: TS.check_model("nope"), lk.UnknownModelError),
    ),
    "latentkit.testing.format_report": (
        bad("wrong type", lambda k: TS.format_report("m", [3]), lk.InputError, "results"),
        bad("wrong type", lambda k: TS.format_report(3, []), lk.InputError, "name"),
    ),
    "latentkit.testing.model_cases": (
        bad("unknown choice", lambda k: TS.model_cases("nope"), lk.UnknownModelError, "nope"),
        bad("wrong type", lambda k: TS.model_cases(3), lk.UnknownModelError, "name"),
        bad("zero count", lambda k: TS.model_cases("vae", max_batch=0), lk.InputError, "max_batch"),
        bad(
            "huge int", lambda k: TS.model_cases("vae", max_batch=HUGE), lk.InputError, "max_batch"
        ),
        bad("wrong type", lambda k: TS.model_cases("vae", configs={}), lk.InputError, "configs"),
        bad(
            "unknown choice",
            lambda k: TS.model_cases("vae", device="gpu9"),
            lk.InputError,
            "device",
        ),
        bad(
            "too many", lambda k: TS.model_cases("vae", max_batch=1025), lk.InputError, "max_batch"
        ),
    ),
    "latentkit.testing.run_check": (
        bad("wrong type", lambda k: TS.run_check("c", "vae"), lk.InputError, "check"),
        bad(
            "zero count",
            lambda k: TS.run_check(TS.CHECKS[0], "vae", max_examples=0),
            lk.InputError,
            "max_examples",
        ),
        bad(
            "NaN",
            lambda k: TS.run_check(TS.CHECKS[0], "vae", shrink_seconds=NAN),
            lk.InputError,
            "shrink_seconds",
        ),
        bad(
            "unknown keyword",
            lambda k: TS.run_check(TS.CHECKS[0], "vae", bogus=1),
            lk.InputError,
            "bogus",
        ),
    ),
    "latentkit.testing.run_checks": (
        bad("unknown choice", lambda k: TS.run_checks("nope"), lk.UnknownModelError),
        bad(
            "unknown choice",
            lambda k: TS.run_checks("vae", checks=["bogus"]),
            lk.ConfigError,
            "'bogus'",
        ),
        bad(
            "wrong type",
            lambda k: TS.run_checks("vae", checks="finite"),
            lk.ConfigError,
            "a list of check keys",
        ),
        bad(
            "unknown choice",
            lambda k: TS.run_checks("vae", device="gpu9"),
            lk.ConfigError,
            "device",
        ),
        bad(
            "huge int",
            lambda k: TS.run_checks("vae", max_examples=HUGE),
            lk.InputError,
            "max_examples",
        ),
        bad(
            "not callable", lambda k: TS.run_checks("vae", on_result=3), lk.InputError, "on_result"
        ),
    ),
}
