"""Hostile calls of the core's entry points: the bounds, sampling, the oracles, the
estimators and their building blocks, the trained-model loader, the input checks and the
argument checks (``latentkit.arguments``), and the top-level names these modules give."""

from __future__ import annotations

import torch
from bad_calls_kit import HUGE, INF, NAN, Bad, bad

import latentkit as lk
from latentkit import arguments as A
from latentkit import estimators as E
from latentkit import oracles as O
from latentkit import validation as V

t = torch.zeros


def _nan_row_7() -> torch.Tensor:
    x = torch.randn(8, 4, generator=torch.Generator().manual_seed(0))
    x[7, 2] = INF
    return x


CORE: dict[str, tuple[Bad, ...]] = {
    "latentkit.elbo": (
        bad("wrong type", lambda k: lk.elbo("vae", k.x), lk.InputError, "model", "LatentModel"),
        bad("wrong type", lambda k: lk.elbo(k.vae, [[0.0] * 4]), lk.InputError, "x", "list"),
        bad("wrong shape", lambda k: lk.elbo(k.vae, t(2, 5)), lk.ShapeError, "[batch, 4]"),
        bad("wrong dtype", lambda k: lk.elbo(k.vae, t(2, 4).long()), lk.DTypeError, "int64"),
        bad("NaN", lambda k: lk.elbo(k.vae, t(2, 4) + NAN), lk.NonFiniteError, "NaN"),
        bad("huge int", lambda k: lk.elbo(k.vae, k.x, num_samples=HUGE), lk.InputError, "≤"),
        bad("bool for int", lambda k: lk.elbo(k.vae, k.x, num_samples=True), lk.InputError),
        bad("out of range", lambda k: lk.elbo(k.vae, k.x, beta=-1.0), lk.InputError, "beta"),
        bad("unknown choice", lambda k: lk.elbo(k.vae, k.x, estimator="magic"), lk.EstimatorError),
        bad("not a bool", lambda k: lk.elbo(k.vae, k.x, validate="no"), lk.InputError, "validate"),
    ),
    "latentkit.iwae": (
        bad("zero count", lambda k: lk.iwae(k.vae, k.x, 0), lk.InputError, "k must be an int"),
        bad("huge int", lambda k: lk.iwae(k.vae, k.x, HUGE), lk.InputError, "k must be"),
        bad("bool for int", lambda k: lk.iwae(k.vae, k.x, 2, chunk=True), lk.InputError, "chunk"),
        bad("huge int", lambda k: lk.iwae(k.vae, k.x, 2, chunk=HUGE), lk.InputError, "chunk"),
        bad("inf", lambda k: lk.iwae(k.vae, t(2, 4) + INF, 2), lk.NonFiniteError, "inf"),
        bad("not a bool", lambda k: lk.iwae(k.vae, k.x, 2, validate=0), lk.InputError, "validate"),
    ),
    "latentkit.bits_per_dim": (
        bad("zero count", lambda k: lk.bits_per_dim(t(2), 0), lk.InputError, "data_dims"),
        bad("bool for int", lambda k: lk.bits_per_dim(t(2), True), lk.InputError, "data_dims"),
        bad("wrong type", lambda k: lk.bits_per_dim("x", 4), lk.InputError, "nats"),
    ),
    "latentkit.sample": (
        bad("negative count", lambda k: lk.sample(k.vae, -3), lk.InputError, "n must be an int"),
        bad("huge int", lambda k: lk.sample(k.vae, HUGE), lk.InputError, "n must be"),
        bad("bool for int", lambda k: lk.sample(k.vae, True), lk.InputError, "n must be"),
        bad("wrong type", lambda k: lk.sample(None, 2), lk.InputError, "model"),
        bad("not a bool", lambda k: lk.sample(k.vae, 2, likelihood_mean="y"), lk.InputError),
        bad("not a bool", lambda k: lk.sample(k.vae, 2, return_latents=1), lk.InputError),
    ),
    "latentkit.exact_log_prob": (
        bad("wrong type", lambda k: lk.exact_log_prob(None, k.x), lk.InputError, "model"),
        bad("wrong shape", lambda k: lk.exact_log_prob(k.vae, t(4)), lk.ShapeError, "(4,)"),
        bad("not a bool", lambda k: lk.exact_log_prob(k.vae, k.x, validate="no"), lk.InputError),
        bad("not tractable", lambda k: lk.exact_log_prob(k.hvae, k.x), lk.NotTractableError),
    ),
    "latentkit.exact_posterior": (
        bad("wrong type", lambda k: lk.exact_posterior(None), lk.InputError, "model"),
        bad("not tractable", lambda k: lk.exact_posterior(k.hvae), lk.NotTractableError),
    ),
    "latentkit.oracles.ExactLinearGaussianPosterior": (
        bad("wrong type", lambda k: O.ExactLinearGaussianPosterior("m"), lk.InputError, "model"),
    ),
    "latentkit.oracles.linear_gaussian_elbo": (
        bad("wrong shape", lambda k: O.linear_gaussian_elbo(k.vae, t(2, 5)), lk.ShapeError),
        bad("wrong type", lambda k: O.linear_gaussian_elbo("m", k.x), lk.InputError, "model"),
    ),
    "latentkit.load_trained_model": (
        bad("missing file", lambda k: lk.load_trained_model(k.tmp / "nope"), lk.CheckpointError),
        bad("wrong type", lambda k: lk.load_trained_model(3), lk.InputError, "path"),
        bad(
            "unknown choice",
            lambda k: lk.load_trained_model(k.tmp, device="gpu9"),
            lk.ConfigError,
            "gpu9",
        ),
        bad("not a bool", lambda k: lk.load_trained_model(k.tmp, averaged="y"), lk.InputError),
    ),
    # -- the estimators and the building blocks of a bound
    "latentkit.Estimator": (
        bad("unknown option", lambda k: lk.Estimator(bogus=1), lk.EstimatorError, "bogus"),
    ),
    "latentkit.estimators.resolve_estimator": (
        bad("unknown choice", lambda k: E.resolve_estimator(k.vae, "magic"), lk.EstimatorError),
        bad("wrong type", lambda k: E.resolve_estimator("m", "auto"), lk.InputError, "model"),
        bad("wrong type", lambda k: E.resolve_estimator(k.vae, ["auto"]), lk.EstimatorError),
    ),
    "latentkit.estimators.training_estimator": (
        bad("wrong type", lambda k: E.training_estimator(None), lk.InputError, "model"),
        bad("unknown choice", lambda k: E.training_estimator(k.vae, "x"), lk.EstimatorError),
    ),
    "latentkit.estimators.monte_carlo_estimator": (
        bad("wrong type", lambda k: E.monte_carlo_estimator("m"), lk.InputError, "model"),
    ),
    "latentkit.estimators.draw_with_log_prob": (
        bad("wrong type", lambda k: E.draw_with_log_prob("d"), lk.InputError, "d must be"),
    ),
    "latentkit.estimators.kl_or_log_ratio": (
        bad(
            "wrong type",
            lambda k: E.kl_or_log_ratio("q", k.q, t(2, 3), analytic=True),
            lk.InputError,
            "q must be",
        ),
        bad(
            "not a bool",
            lambda k: E.kl_or_log_ratio(k.q, k.q, t(2, 3), analytic="y"),
            lk.InputError,
            "analytic",
        ),
    ),
    "latentkit.estimators.per_dimension_kl": (
        bad(
            "wrong type",
            lambda k: E.per_dimension_kl(k.q, k.q, [0.0], analytic=True),
            lk.InputError,
            "z must be",
        ),
    ),
    "latentkit.estimators.end_terms": (
        bad("wrong type", lambda k: E.end_terms(k.vdm, "x"), lk.InputError, "x must be"),
        bad("wrong model", lambda k: E.end_terms(k.hvae, k.x), lk.EstimatorError, "layer-batched"),
    ),
    "latentkit.estimators.layer_term": (
        bad("wrong type", lambda k: E.layer_term(k.vdm, k.x_vdm, 2), lk.InputError, "l must be"),
        bad("wrong model", lambda k: E.layer_term(k.hvae, k.x, t(2)), lk.EstimatorError),
    ),
    # -- the input checks themselves
    "latentkit.validation.check_data": (
        bad("wrong shape", lambda k: V.check_data(k.vae, t(2, 5)), lk.ShapeError, "[batch, 4]"),
        bad("wrong type", lambda k: V.check_data("m", t(2, 4)), lk.InputError, "model"),
    ),
    "latentkit.validation.check_dataset": (
        bad("empty", lambda k: V.check_dataset(k.vae, t(0, 4)), lk.ShapeError, "empty"),
        bad("inf in row 7", lambda k: V.check_dataset(k.vae, _nan_row_7()), lk.NonFiniteError),
        bad("wrong type", lambda k: V.check_dataset(None, k.x), lk.InputError, "model"),
    ),
    "latentkit.validation.check_finite_rows": (
        bad("NaN", lambda k: V.check_finite_rows(torch.tensor([[NAN]])), lk.NonFiniteError),
        bad("wrong type", lambda k: V.check_finite_rows("x"), lk.InputError, "torch.Tensor"),
    ),
    "latentkit.validation.check_likelihood_support": (
        bad("wrong type", lambda k: V.check_likelihood_support(k.vae, "x"), lk.InputError),
    ),
    "latentkit.validation.check_model_input": (
        bad("wrong shape", lambda k: V.check_model_input(k.vae, t(2, 5)), lk.ShapeError),
        bad("wrong type", lambda k: V.check_model_input(3, k.x), lk.InputError, "model"),
    ),
    "latentkit.validation.check_positive_int": (
        bad("zero count", lambda k: V.check_positive_int(0, "n"), lk.InputError, "n must be"),
        bad("huge int", lambda k: V.check_positive_int(HUGE, "n"), lk.InputError, "≤"),
    ),
    "latentkit.validation.check_tensor_kind": (
        bad("wrong type", lambda k: V.check_tensor_kind([1], "x"), lk.InputError, "x must be"),
        bad("complex", lambda k: V.check_tensor_kind(t(2, dtype=torch.cfloat), "x"), lk.DTypeError),
    ),
    "latentkit.validation.likelihood_family": (
        bad("wrong type", lambda k: V.likelihood_family("m"), lk.InputError, "model"),
    ),
    "latentkit.validation.likelihood_is_discrete": (
        bad("wrong type", lambda k: V.likelihood_is_discrete(None), lk.InputError, "model"),
    ),
    # -- the argument checks
    "latentkit.arguments.check_count": (
        bad("bool for int", lambda k: A.check_count(True, "n"), lk.InputError, "n must be"),
        bad("huge int", lambda k: A.check_count(HUGE, "n"), lk.InputError, "≤"),
        bad("negative count", lambda k: A.check_count(-1, "n", low=0), lk.InputError, "≥ 0"),
    ),
    "latentkit.arguments.check_seed": (
        bad("huge int", lambda k: A.check_seed(HUGE), lk.InputError, "seed", "2**32 - 1"),
        bad("negative", lambda k: A.check_seed(-1), lk.InputError, "seed"),
        bad("bool for int", lambda k: A.check_seed(False), lk.InputError, "seed"),
    ),
    "latentkit.arguments.check_number": (
        bad("NaN", lambda k: A.check_number(NAN, "x"), lk.InputError, "finite"),
        bad("huge int", lambda k: A.check_number(10**400, "x"), lk.InputError, "finite"),
        bad("out of range", lambda k: A.check_number(0.0, "x", above=0.0), lk.InputError, "> 0"),
        bad("wrong type", lambda k: A.check_number("1", "x"), lk.InputError, "a number"),
    ),
    "latentkit.arguments.check_choice": (
        bad("unknown choice", lambda k: A.check_choice("c", "x", "ab"), lk.InputError, "'a'"),
        bad("wrong type", lambda k: A.check_choice(["a"], "x", "ab"), lk.InputError, "x must"),
    ),
    "latentkit.arguments.check_flag": (
        bad("not a bool", lambda k: A.check_flag(1, "f"), lk.InputError, "True or False"),
    ),
    "latentkit.arguments.check_model": (
        bad("wrong type", lambda k: A.check_model("m", "f"), lk.InputError, "f: model"),
    ),
    "latentkit.arguments.check_shape": (
        bad("zero size", lambda k: A.check_shape((0, 3), "s"), lk.InputError, "s must be"),
        bad("wrong type", lambda k: A.check_shape("abc", "s"), lk.InputError, "'abc'"),
        bad("bool for int", lambda k: A.check_shape((True,), "s"), lk.InputError, "s must be"),
    ),
    "latentkit.arguments.check_path": (
        bad("wrong type", lambda k: A.check_path(3, "p"), lk.InputError, "p must be a path"),
        bad("empty path", lambda k: A.check_path("", "p"), lk.InputError, "p must be a path"),
        bad("NUL byte", lambda k: A.check_path("a\0b", "p"), lk.InputError, "p must be a path"),
        bad("wrong type", lambda k: A.check_path(b"a", "p"), lk.InputError, "p must be a path"),
        bad(
            "missing file",
            lambda k: A.check_path(k.tmp / "none", "p", exists="file"),
            lk.InputError,
            "p: no such file",
        ),
        bad(
            "a file for a folder",
            lambda k: A.check_path(k.file, "p", exists="folder"),
            lk.InputError,
            "p: no such folder",
        ),
    ),
    "latentkit.arguments.checked": (
        bad("wrong type", lambda k: A.checked(_annotated)(1.5), lk.InputError, "_annotated: n"),
        bad("bool for int", lambda k: A.checked(_annotated)(True), lk.InputError, "a bool"),
        bad("unknown keyword", lambda k: A.checked(_annotated)(1, m=2), lk.InputError, "'m'"),
    ),
}


def _annotated(n: int) -> int:
    return n
