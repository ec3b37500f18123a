"""Fuzz the public entry points with malformed input; each must raise a typed, one-line error.

Hypothesis walks bad tensors (rank, shape, dtype, device, NaN/inf positions, empty
batches, non-tensors) and bad arguments (num_samples, k, n, beta, estimator, config
values); every case must raise the documented ``latentkit.LatentkitError`` subclass, whose
message names what was given — never a torch internals error, never a silent NaN.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import latentkit as lk

DATA_SHAPE = (3, 2)


@pytest.fixture(scope="module")
def model():
    return lk.load_model("vae", data_shape=DATA_SHAPE, latent_dim=2, hidden=(4,))


ENTRY_POINTS = {
    "elbo": lambda m, x: lk.elbo(m, x),
    "elbo-mc": lambda m, x: lk.elbo(m, x, estimator="bottom-up", num_samples=2),
    "iwae": lambda m, x: lk.iwae(m, x, 3),
}

_floats = [torch.float16, torch.bfloat16, torch.float64]
_ints = [torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.bool]


@st.composite
def bad_batches(draw):
    """(tensor-or-object, expected error type, words the message must contain)."""
    kind = draw(
        st.sampled_from(["shape", "rank", "empty", "int", "float", "device", "nonfinite", "object"])
    )
    b = draw(st.integers(1, 4))
    if kind == "shape":
        shape = draw(
            st.tuples(st.integers(1, 4), st.integers(1, 4)).filter(lambda s: s != DATA_SHAPE)
        )
        return torch.zeros(b, *shape), lk.ShapeError, ["[batch, 3, 2]", str((b, *shape))]
    if kind == "rank":
        extra = draw(st.lists(st.integers(1, 3), min_size=0, max_size=3))
        shape = tuple(extra) if len(extra) != 2 else (*extra, 1)
        shape = (b, *shape) if shape else ()
        return torch.zeros(shape), lk.ShapeError, ["[batch, 3, 2]"]
    if kind == "empty":
        return torch.zeros(0, *DATA_SHAPE), lk.ShapeError, ["empty batch"]
    if kind == "int":
        dtype = draw(st.sampled_from(_ints))
        return (
            torch.zeros(b, *DATA_SHAPE, dtype=dtype),
            lk.DTypeError,
            ["floating-point", str(dtype)],
        )
    if kind == "float":
        dtype = draw(st.sampled_from(_floats))
        return torch.zeros(b, *DATA_SHAPE, dtype=dtype), lk.DTypeError, [str(dtype), "float32"]
    if kind == "device":
        return torch.zeros(b, *DATA_SHAPE, device="meta"), lk.DeviceError, ["meta", "cpu"]
    if kind == "nonfinite":
        x = torch.zeros(b, *DATA_SHAPE)
        flat = x.view(-1)
        idx = draw(st.sets(st.integers(0, flat.numel() - 1), min_size=1))
        values = [draw(st.sampled_from([math.nan, math.inf, -math.inf])) for _ in idx]
        for i, v in zip(sorted(idx), values):
            flat[i] = v
        nan = sum(math.isnan(v) for v in values)
        return x, lk.NonFiniteError, [f"{len(idx)} non-finite", f"{nan} NaN"]
    obj = draw(st.sampled_from([None, 3.0, "x", [[0.0] * 2] * 3, np.zeros((1, *DATA_SHAPE))]))
    return obj, lk.InputError, ["torch.Tensor", type(obj).__name__]


@given(case=bad_batches(), entry=st.sampled_from(sorted(ENTRY_POINTS)))
def test_bad_batches_raise_typed_one_line_errors(model, case, entry):
    x, error, words = case
    with pytest.raises(error) as exc:
        ENTRY_POINTS[entry](model, x)
    msg = str(exc.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, (w, msg)


@given(case=bad_batches())
def test_exact_log_prob_checks_input_before_tractability(case):
    """Bad data is reported as bad data even on a model with an exact oracle."""
    linear = lk.load_model("vae", data_shape=DATA_SHAPE, latent_dim=2, architecture="linear")
    x, error, _ = case
    with pytest.raises(error):
        lk.exact_log_prob(linear, x)


_bad_counts = st.one_of(
    st.integers(max_value=0),
    st.floats(allow_nan=True),
    st.booleans(),
    st.text(max_size=3),
    st.none(),
)


@given(value=_bad_counts, which=st.sampled_from(["num_samples", "k", "n"]))
def test_bad_counts_are_named(model, value, which):
    x = torch.zeros(2, *DATA_SHAPE)
    call = {
        "num_samples": lambda: lk.elbo(model, x, num_samples=value),
        "k": lambda: lk.iwae(model, x, value),
        "n": lambda: lk.sample(model, value),
    }[which]
    with pytest.raises(lk.InputError, match=f"{which} must be an int ≥ 1"):
        call()


@given(
    beta=st.one_of(
        st.floats(max_value=-1e-12), st.just(math.nan), st.just(math.inf), st.text(max_size=2)
    )
)
def test_bad_beta_is_named(model, beta):
    with pytest.raises(lk.InputError, match="beta"):
        lk.elbo(model, torch.zeros(1, *DATA_SHAPE), beta=beta)


@given(
    name=st.text(min_size=1, max_size=12).filter(
        lambda s: s not in lk.list_estimators() and s != "auto"
    )
)
def test_unknown_estimator_is_named(model, name):
    with pytest.raises(lk.EstimatorError, match="unknown estimator"):
        lk.elbo(model, torch.zeros(1, *DATA_SHAPE), estimator=name)


@given(
    field=st.sampled_from(
        ["latent_dim", "fixed_scale", "min_scale", "architecture", "likelihood", "hidden"]
    ),
    value=st.one_of(st.integers(-5, 0), st.floats(max_value=0.0), st.text(max_size=4), st.none()),
)
def test_bad_config_values_name_the_field(field, value):
    try:
        lk.load_model("vae", **{field: value})
    except lk.ConfigError as exc:
        assert field in str(exc) and "\n" not in str(exc)
    else:  # a value the field legitimately accepts (e.g. hidden=() means no hidden layer)
        assert field == "hidden" and value == ""


@given(name=st.text(max_size=10).filter(lambda s: s not in lk.list_models()))
def test_unknown_model_names_are_refused(name):
    with pytest.raises(lk.UnknownModelError, match="no model named"):
        lk.load_model(name)
