"""Bad input at the core entry points gets a typed error naming the problem, in one line."""

from __future__ import annotations

import pytest
import torch

import latentkit as lk


@pytest.fixture(scope="module")
def model():
    return lk.load_model("vae", data_shape=(4,), latent_dim=2, architecture="linear")


def one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg, msg
    return msg


@pytest.mark.parametrize("entry", ["elbo", "iwae", "exact_log_prob"])
@pytest.mark.parametrize(
    ("x", "error", "words"),
    [
        (torch.full((2, 4), float("nan")), lk.NonFiniteError, ["8 non-finite", "8 NaN"]),
        (torch.tensor([[0.0, float("inf"), 0.0, 0.0]]), lk.NonFiniteError, ["1 inf"]),
        (torch.zeros(2, 5), lk.ShapeError, ["[batch, 4]", "(2, 5)"]),
        (torch.zeros(4), lk.ShapeError, ["[batch, 4]", "(4,)"]),
        (torch.zeros(0, 4), lk.ShapeError, ["empty batch"]),
        (
            torch.zeros(2, 4, dtype=torch.uint8),
            lk.DTypeError,
            ["floating-point", "to_unit_interval"],
        ),
        (torch.zeros(2, 4, dtype=torch.int64), lk.DTypeError, ["torch.int64"]),
        (torch.zeros(2, 4, dtype=torch.float64), lk.DTypeError, ["float64", "float32"]),
        (torch.zeros(2, 4, device="meta"), lk.DeviceError, ["meta", "cpu"]),
        ([[0.0] * 4], lk.InputError, ["torch.Tensor", "list"]),
    ],
    ids=[
        "nan",
        "inf",
        "shape",
        "rank",
        "empty",
        "uint8",
        "int64",
        "dtype-mix",
        "device-mix",
        "list",
    ],
)
def test_bad_data_is_named(model, entry, x, error, words):
    fn = {
        "elbo": lambda m, v: lk.elbo(m, v),
        "iwae": lambda m, v: lk.iwae(m, v, 4),
        "exact_log_prob": lk.exact_log_prob,
    }[entry]
    with pytest.raises(error) as exc:
        fn(model, x)
    msg = one_line(exc)
    for w in words:
        assert w in msg, msg


def test_input_errors_are_value_errors_for_generic_handlers(model):
    """Callers catching ValueError (or TypeError for dtype) still catch ours."""
    with pytest.raises(ValueError):
        lk.elbo(model, torch.zeros(1, 3))
    with pytest.raises(TypeError):
        lk.elbo(model, torch.zeros(1, 4, dtype=torch.int32))


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"num_samples": 0}, ["num_samples", "≥ 1", "0"]),
        ({"num_samples": 2.5}, ["num_samples"]),
        ({"beta": -1.0}, ["beta", "≥ 0"]),
        ({"beta": float("nan")}, ["beta", "finite"]),
        ({"estimator": "magic"}, ["unknown estimator", "'magic'", "analytic"]),
        ({"estimator": "layer-batched"}, ["layer-batched", "not layer-batched"]),
    ],
)
def test_bad_bound_arguments_are_named(model, kwargs, words):
    with pytest.raises(lk.LatentkitError) as exc:
        lk.elbo(model, torch.zeros(2, 4), **kwargs)
    msg = one_line(exc)
    for w in words:
        assert w in msg, msg


def test_bad_k_and_n(model):
    with pytest.raises(lk.InputError, match="k must be an int ≥ 1"):
        lk.iwae(model, torch.zeros(2, 4), 0)
    with pytest.raises(lk.InputError, match="n must be an int ≥ 1"):
        lk.sample(model, -3)


@pytest.mark.parametrize(
    ("config", "words"),
    [
        ({"latent_dim": 0}, ["latent_dim", "> 0", "0"]),
        ({"latent_dim": "eight"}, ["latent_dim"]),
        ({"architecture": "cnn"}, ["architecture", "linear", "mlp", "cnn"]),
        ({"likelihood": "poisson"}, ["likelihood", "bernoulli"]),
        ({"data_shape": (0, 3)}, ["data_shape", "ints > 0"]),
        ({"fixed_scale": -1.0}, ["fixed_scale", "> 0"]),
        ({"latnet_dim": 3}, ["unknown config field", "latnet_dim", "latent_dim"]),
    ],
)
def test_bad_config_names_the_field(config, words):
    with pytest.raises(lk.ConfigError) as exc:
        lk.load_model("vae", **config)
    msg = one_line(exc)
    assert "'vae'" in msg
    for w in words:
        assert w in msg, msg


def test_beta_vae_rejects_nonpositive_beta():
    with pytest.raises(lk.ConfigError, match="beta"):
        lk.load_model("beta-vae", beta=0.0)


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(lk.UnknownModelError) as exc:
        lk.load_model("vea")
    msg = one_line(exc)
    assert "'vea'" in msg and "vae" in msg and "beta-vae" in msg


@pytest.mark.parametrize("entry", ["elbo", "iwae"])
@pytest.mark.parametrize(
    ("x", "error", "words"),
    [
        (torch.tensor([[0.0, float("nan"), 1.0, 0.5]]), lk.NonFiniteError, ["1 NaN"]),
        (torch.tensor([[0.0, float("-inf"), 1.0, 1.0]]), lk.NonFiniteError, ["1 inf"]),
        (torch.tensor([[0.0, 1.0, 1.0, 0.5]]), lk.SupportError, ["1 of 4 values", "0.5"]),
        (torch.eye(4).to_sparse(), lk.InputError, ["dense", "to_dense"]),
    ],
    ids=["nan-beside-a-bad-value", "inf", "half", "sparse"],
)
def test_bounded_support_names_non_finite_values_first(entry, x, error, words):
    """A Bernoulli model checks finiteness and support in one pass; a batch that fails is
    named by its worst fault: NaN/inf as non-finite (not as outside {0, 1}), then support."""
    m = lk.load_model("vae", data_shape=(4,), latent_dim=2, likelihood="bernoulli")
    fn = {"elbo": lambda v: lk.elbo(m, v), "iwae": lambda v: lk.iwae(m, v, 3)}[entry]
    with pytest.raises(error) as exc:
        fn(x)
    msg = one_line(exc)
    for w in words:
        assert w in msg, msg
    assert lk.elbo(m, torch.tensor([[0.0, 1.0, 1.0, 0.0]])).total.isfinite().all()


_EDGE_VALUES = [0.0, 1.0, -0.0, 0.5, 2.0, -1.0, 1e-45, 1e-300, 1 - 1e-7, 1 + 1e-7, 3.0e38]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize(
    "support",
    [
        torch.distributions.constraints.boolean,
        torch.distributions.constraints.interval(-1.0, 1.0),
        torch.distributions.constraints.interval(0.0, 1.0),
    ],
    ids=["boolean", "interval(-1, 1)", "interval(0, 1)"],
)
@pytest.mark.parametrize(
    "value", [*_EDGE_VALUES, float("nan"), float("inf"), float("-inf")], ids=repr
)
def test_one_pass_support_check_agrees_with_the_constraint(support, value, dtype):
    """The one-pass check of a bounded support (x − x² for {0, 1}, ``aminmax`` for an
    interval) says "all inside" exactly when torch's own constraint check and a finiteness
    check both do: every edge value, in every floating dtype, beside valid values."""
    from latentkit.validation import _all_inside_bounded

    x = torch.tensor([[0.0, value, 1.0], [1.0, 0.0, 0.0]], dtype=dtype)
    expected = bool(support.check(x).all()) and bool(x.isfinite().all())
    assert _all_inside_bounded(support, x) is expected
    assert _all_inside_bounded(support, x[1:]) is True  # the valid row alone
    assert _all_inside_bounded(support, x[:0]) is False  # empty: the slow path decides
    assert _all_inside_bounded(torch.distributions.constraints.real, x[1:]) is False
