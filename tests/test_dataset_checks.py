"""One data-set check (``latentkit.validation.check_dataset``) at the three entry points
that take a whole data set: the trainer, ``evaluate`` and ``diagnose``. Every example is
checked, not only the first, in the precision the model will see it in.

Mutants these tests kill: a finiteness check that reads only row 0 (the old ``diagnose``),
the range compared in the data's dtype instead of the model's (a float64 1e39 passes, then
is inf in the model), the last bad example named instead of the first, a slice of the
example-by-example pass dropped (a bad row past the first slice goes unseen), the cast
skipped in the trainer (float64 kept), the support check dropped from the shared check.
"""

from __future__ import annotations

import math

import pytest
import torch

import latentkit as lk
from latentkit import validation
from latentkit.errors import DTypeError, NonFiniteError, ShapeError, SupportError
from latentkit.training import TrainConfig
from latentkit.validation import check_dataset, check_finite_rows


@pytest.fixture(scope="module")
def model() -> lk.LatentModel:
    torch.manual_seed(0)
    return lk.load_model("vae", data_shape=(4,), latent_dim=2, hidden=(8,), likelihood="gaussian")


def _with(value: float, row: int, n: int = 10, dtype: torch.dtype = torch.float32):
    data = torch.randn(n, 4, dtype=dtype, generator=torch.Generator().manual_seed(1))
    data[row, 2] = value
    return data


def _train(model, data):
    return lk.Trainer(model, data, TrainConfig(steps=1, batch_size=2, progress=False))


def _diagnose(model, data):
    return lk.diagnose(model, data, num_draws=2)


def _evaluate(model, data):
    return lk.evaluate(model, data, iwae_k=0)


ENTRY_POINTS = {"train": _train, "evaluate": _evaluate, "diagnose": _diagnose}


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_a_non_finite_value_in_a_later_row_is_refused_naming_it(model, entry, value):
    """A NaN or inf in row 7 of 10 (row 0 finite) is refused before any work, naming the
    example, at each entry point."""
    with pytest.raises(NonFiniteError, match=r"1 of 10 examples \(the first, example 7\)"):
        ENTRY_POINTS[entry](model, _with(value, 7))


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_a_float64_value_beyond_float32_is_refused_in_a_later_row(model, entry):
    """1e39 is finite in float64 but inf in the float32 model: refused as inf, named."""
    data = _with(1e39, 5, dtype=torch.float64)
    with pytest.raises(NonFiniteError, match=r"example 5\).*0 NaN, 1 inf") as refused:
        ENTRY_POINTS[entry](model, data)
    if entry != "train":  # the trainer checks the copy it keeps, cast already
        assert "(in torch.float32, the model's precision)" in str(refused.value)


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_the_rest_of_the_shared_check_holds_at_each_entry_point(entry):
    """Shape, dtype, emptiness and p(x|z_1)'s support are the same check everywhere."""
    bern = lk.load_model("vae", data_shape=(4,), latent_dim=2, hidden=(8,), likelihood="bernoulli")
    run = ENTRY_POINTS[entry]
    with pytest.raises(ShapeError, match=r"\[batch, 4\]"):
        run(bern, torch.zeros(6, 5))
    with pytest.raises(DTypeError, match="floating-point"):
        run(bern, torch.zeros(6, 4, dtype=torch.int64))
    with pytest.raises(ShapeError, match="empty"):
        run(bern, torch.zeros(0, 4))
    data = torch.zeros(6, 4)
    data[4, 1] = 0.5  # inside [0, 1], outside the Bernoulli's {0, 1}
    with pytest.raises(SupportError, match="1 of 24 values"):
        run(bern, data)


def test_finite_data_at_the_edge_of_the_range_is_accepted(model):
    """float32's largest value, in float32 or float64 data, is finite once cast: accepted
    (the quick pass compares the extremes with the model's range, not a sum)."""
    top = torch.finfo(torch.float32).max
    for dtype in (torch.float32, torch.float64):
        data = torch.full((3, 4), top, dtype=dtype)
        data[1] = -top
        assert check_dataset(model, data) is data
        assert check_finite_rows(data, dtype=torch.float32) is data


def test_the_trainer_keeps_the_data_cast_to_its_dtype(model):
    data = torch.rand(6, 4, dtype=torch.float64)
    out = check_dataset(model, data, name="train_data", dtype=torch.float32)
    assert out.dtype == torch.float32 and torch.equal(out, data.float())
    assert check_dataset(model, data) is data  # no copy where none is asked for


def test_every_slice_of_the_slow_pass_is_looked_at(monkeypatch):
    """The example-by-example pass goes in slices: a bad example in the last one, and bad
    examples across several, are counted and the first named."""
    monkeypatch.setattr(validation, "ELEMENTS_PER_PASS", 8)  # two examples of 4 a slice
    data = torch.zeros(9, 4)
    data[8, 0] = math.inf
    with pytest.raises(NonFiniteError, match=r"1 of 9 examples \(the first, example 8\)"):
        check_finite_rows(data)
    data[3, 1:3] = math.nan
    with pytest.raises(NonFiniteError, match=r"2 of 9 .*example 3\); 3 non-finite.*2 NaN, 1 inf"):
        check_finite_rows(data)


def test_a_single_value_and_other_dtypes():
    """A 0-d tensor is one example; integer data pass through (their dtype is refused by
    the caller's own check)."""
    with pytest.raises(NonFiniteError, match="1 of 1 examples"):
        check_finite_rows(torch.tensor(math.nan))
    ints = torch.zeros(3, 2, dtype=torch.int64)
    assert check_finite_rows(ints) is ints


def test_the_slow_pass_casts_at_most_its_slice_at_once(monkeypatch):
    """Memory: the example-by-example pass casts whole examples, at most
    ``ELEMENTS_PER_PASS`` values at a time (here two examples of 20 of the three)."""
    monkeypatch.setattr(validation, "ELEMENTS_PER_PASS", 40)
    data = torch.zeros(3, 20, dtype=torch.float64)
    data[2, 0] = 1e39
    sizes, to = [], torch.Tensor.to

    def spy(self, *args, **kwargs):
        sizes.append(self.numel())
        return to(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "to", spy)
    with pytest.raises(NonFiniteError, match="example 2"):
        check_finite_rows(data, dtype=torch.float32)
    assert sizes == [40, 20]
