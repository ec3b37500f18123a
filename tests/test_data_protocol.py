"""The MNIST evaluation protocol's data side: dynamic binarization and the validation split
(``latentkit.data.protocol``), stated as properties.

Mutants tried by hand (each edit made in src/latentkit/data/protocol.py, this module run,
the edit undone); the tests that failed are named:

- ``u > p`` instead of ``u < p`` (the mean of the draws becomes 1 − p)
  → test_mean_of_dynamic_draws_converges_to_the_intensities, test_zero_and_one_are_kept*
  (all dtypes), test_unit_variant_gives_the_intensities_to_binarize,
  test_mnist_protocol_is_50000_and_10000.
- ``u <= p`` instead of ``u < p``: NOT caught, and no sampling test can catch it: it
  differs only when u == p exactly, for p = 0 with probability 2^-24 per value.
- comparing in ``probs.dtype`` (u rounded to float16/bfloat16 can reach 1.0, so p = 1
  gives 0) → test_zero_and_one_are_kept[float16, bfloat16].
- ``step`` left out of the stream (``step_seed`` returning ``key``)
  → test_different_steps_give_different_draws,
  test_mean_of_dynamic_draws_converges_to_the_intensities,
  test_step_seed_follows_the_documented_formula, test_step_seed_is_injective_in_the_step.
- ``step_seed`` keeping 16 bits (``& 0xFFFF``) → test_step_seed_follows_the_documented_formula,
  test_step_seed_is_injective_in_the_step.
- ``seed`` ignored (``key = 0``) → test_different_seeds_give_different_draws,
  test_step_seed_follows_the_documented_formula.
- one generator made in ``__init__`` and reused (hidden state)
  → test_same_seed_step_indices_give_identical_bits, test_a_resumed_run_sees_the_same_bits,
  test_row_depends_only_on_its_own_index_and_position, test_different_seeds_give_different_draws.
- uniforms drawn for all N examples and indexed (keyed by example, not by position)
  → test_row_depends_only_on_its_own_index_and_position.
- split: the first ``size`` examples instead of the last
  → test_validation_is_the_last_size_examples, test_split_parts_are_disjoint_and_add_up (order),
  test_split_default_is_10000_and_labels_split_alike, test_mnist_protocol_is_50000_and_10000.
- split: ``cut = n - size + 1`` (off by one) → the same four, and
  test_unit_variant_gives_the_intensities_to_binarize.
- split: accepting ``size == N`` (an empty training part)
  → test_split_validation_refuses_bad_sizes[10], test_split_validation_refuses_bad_data.
"""

from __future__ import annotations

import math

import pytest
import torch

import latentkit.data as data
from latentkit.data import DynamicBinarizer, split_validation, step_seed
from latentkit.errors import (
    ConfigError,
    DTypeError,
    InputError,
    NonFiniteError,
    ShapeError,
)

MNIST = {s.name: s for s in data.dataset_sources()}["mnist"]
needs_mnist = pytest.mark.skipif(
    not MNIST.available, reason=f"mnist not installed here: {MNIST.detail}"
)


def _grey_image(levels: range) -> torch.Tensor:
    """One 1×28×28 image whose 784 pixels cycle through the 8-bit ``levels`` (as k/255)."""
    k = torch.tensor(list(levels), dtype=torch.uint8)
    return data.to_unit_interval(k.repeat(math.ceil(784 / len(k)))[:784]).reshape(1, 1, 28, 28)


def _probs() -> torch.Tensor:
    """Three images: grey levels 8..247 with 0 and 1 (k = 0, 255), its flip 1 − p, and a
    constant 0.5 image. Grey levels stay ≥ 8/255 away from 0 and 1 so that with R = 4096
    draws R·p(1 − p) ≥ 122 at every grey pixel (the normal approximation below holds)."""
    a = _grey_image(range(0, 256))
    a = torch.where((a > 0) & (a < 8 / 255), torch.zeros(()), a)
    a = torch.where((a < 1) & (a > 247 / 255), torch.ones(()), a)
    return torch.cat([a, 1 - a, torch.full_like(a, 0.5)])


# ----------------------------------------------------------------------------- the draws


def test_mean_of_dynamic_draws_converges_to_the_intensities():
    """Average R = 4096 steps' draws of each image; every pixel passes a z-test.

    Per grey pixel, mean − p has sd σ = sqrt(p(1 − p)/R); we accept |mean − p| ≤ 4.5σ.
    Under the normal approximation (good here: R·p(1 − p) ≥ 122) a correct binarizer fails
    one pixel with probability 2·Φ(−4.5) ≈ 6.8e-6; by Bonferroni (the union bound) over the
    ≤ 3·784 = 2,352 pixels tested the false-alarm rate is ≤ 1.6% — for one seed, which is
    then fixed, so this test is deterministic. p = 0 and p = 1 pixels have σ = 0: exact.
    A wrong formula (u > p) is off by |1 − 2p|: 1 at p ∈ {0, 1}, ≥ 25σ for |p − 0.5| ≥ 0.1.
    """
    p = _probs()
    b = DynamicBinarizer(p, seed=2024)
    R = 4096
    idx = torch.arange(len(p))
    total = torch.zeros(p.shape, dtype=torch.float64)
    for step in range(R):
        total += b.batch(idx, step)
    mean, pd = total / R, p.double()
    sigma = (pd * (1 - pd) / R).sqrt()
    assert int(((mean - pd).abs() > 4.5 * sigma).sum()) == 0
    # and the overall mean agrees tightly (2,352·R draws)
    assert abs(float(mean.mean() - pd.mean())) < 1e-3


def test_zero_and_one_are_kept_and_values_are_exactly_binary():
    p = _probs()
    b = DynamicBinarizer(p, seed=0)
    for step in range(50):
        x = b.batch(torch.arange(len(p)), step)
        assert x.dtype == torch.float32 and x.shape == p.shape
        assert bool(((x == 0) | (x == 1)).all())
        assert bool((x[p == 0] == 0).all()) and bool((x[p == 1] == 1).all())


@pytest.mark.parametrize(
    "dtype", [torch.float16, torch.bfloat16, torch.float64], ids=["float16", "bfloat16", "float64"]
)
def test_zero_and_one_are_kept(dtype):
    """Any floating dtype: p = 0 gives 0 and p = 1 gives 1 at every draw (200 steps × 784
    values: comparing in float16 would turn about 40 of the ones into zeros)."""
    p = torch.zeros(2, 784, dtype=dtype)
    p[1] = 1
    b = DynamicBinarizer(p, seed=1)
    for step in range(200):
        x = b.batch(torch.tensor([0, 1]), step)
        assert x.dtype == torch.float32
        assert bool((x[0] == 0).all()) and bool((x[1] == 1).all())


def test_different_steps_give_different_draws():
    """A p = 0.5 image of 784 pixels: two steps agree everywhere with probability 2^-784."""
    p = torch.full((1, 1, 28, 28), 0.5)
    b = DynamicBinarizer(p, seed=7)
    rows = {tuple(b.batch(torch.tensor([0]), s).flatten().tolist()) for s in range(300)}
    assert len(rows) == 300


def test_different_seeds_give_different_draws():
    p = torch.full((1, 784), 0.5)
    idx = torch.tensor([0])
    a = DynamicBinarizer(p, seed=0).batch(idx, 3)
    assert not torch.equal(a, DynamicBinarizer(p, seed=1).batch(idx, 3))
    assert not torch.equal(a, DynamicBinarizer(p, seed=2**40).batch(idx, 3))  # high bits count


def test_same_seed_step_indices_give_identical_bits():
    """A pure function of (seed, step, indices): same bits from another object, in any call
    order, and torch's global generator is neither used nor advanced."""
    p = torch.rand(20, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    idx = torch.tensor([3, 3, 0, 19, 7])
    a = DynamicBinarizer(p, seed=11)
    first = a.batch(idx, 5)
    a.batch(idx, 6)
    a.batch(torch.tensor([1]), 5)
    state = torch.get_rng_state()
    again = a.batch(idx, 5)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(first, again)
    assert torch.equal(first, DynamicBinarizer(p.clone(), seed=11).batch(idx, 5))
    torch.manual_seed(12345)  # the global seed plays no part
    assert torch.equal(first, DynamicBinarizer(p, seed=11).batch(idx.to(torch.int32), 5))


def test_a_resumed_run_sees_the_same_bits():
    """Steps 0..9 of one run versus a run restarted at step 5 with a new binarizer."""
    p = torch.rand(64, 784, generator=torch.Generator().manual_seed(1))
    order = torch.Generator().manual_seed(99)
    batches = [torch.randint(64, (16,), generator=order) for _ in range(10)]
    run = DynamicBinarizer(p, seed=3)
    whole = [run.batch(batches[s], s) for s in range(10)]
    resumed = DynamicBinarizer(p, seed=3)
    for s in range(5, 10):
        assert torch.equal(resumed.batch(batches[s], s), whole[s])


def test_row_depends_only_on_its_own_index_and_position():
    """Row j of a step's batch depends on (seed, step, j, indices[j]) only: not on the other
    indices, nor on how many follow. (Documented: bits are keyed by position, so the same
    example at two positions gets independent draws.)"""
    p = torch.rand(50, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    b = DynamicBinarizer(p, seed=5)
    idx = torch.tensor([4, 9, 17, 30, 4])
    full = b.batch(idx, 8)
    other = b.batch(torch.tensor([4, 0, 49, 1]), 8)
    assert torch.equal(full[0], other[0])
    for k in range(1, len(idx) + 1):
        assert torch.equal(b.batch(idx[:k], 8), full[:k])
    # position keyed: one p = 0.5 example at two positions, independent draws
    half = DynamicBinarizer(torch.full((1, 784), 0.5), seed=0).batch(torch.tensor([0, 0]), 0)
    assert not torch.equal(half[0], half[1])


def test_an_empty_batch_is_empty():
    b = DynamicBinarizer(torch.rand(3, 2, 2), seed=0)
    x = b.batch(torch.zeros(0, dtype=torch.int64), 0)
    assert x.shape == (0, 2, 2) and x.dtype == torch.float32


def test_draws_do_not_depend_on_the_device(device):
    p = torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(4))
    idx = torch.tensor([7, 0, 3])
    on_cpu = DynamicBinarizer(p, seed=9).batch(idx, 2)
    there = DynamicBinarizer(p.to(device), seed=9).batch(idx.to(device), 2)
    assert there.device.type == device.type
    assert torch.equal(there.cpu(), on_cpu)


# ----------------------------------------------------------------------------- step_seed


def _fmix32(h: int) -> int:
    """MurmurHash3's finalizer, written out again from the documented formula."""
    h ^= h >> 16
    h = (h * 0x85EBCA6B) % 2**32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) % 2**32
    return h ^ (h >> 16)


def test_step_seed_follows_the_documented_formula():
    for seed in (0, 1, 2024, 2**32 + 5, 2**63 - 1, -1):
        s = seed % 2**64
        key = _fmix32((s % 2**32) ^ _fmix32((s >> 32) ^ 0x9E3779B9))
        for step in (0, 1, 2, 1000, 2**32 - 1):
            assert step_seed(seed, step) == _fmix32((key + step) % 2**32)
            assert 0 <= step_seed(seed, step) < 2**32  # all a CPU torch.Generator uses


def test_step_seed_is_injective_in_the_step():
    """200,000 steps of one seed: all distinct streams (a 32-bit hash of (seed, step) would
    repeat one with probability ≈ 1 − exp(−n²/2^33) ≈ 99%)."""
    n = 200_000
    for seed in (12345,):
        assert len({step_seed(seed, t) for t in range(n)}) == n


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "probs, error, match",
    [
        ([[0.5]], InputError, "torch.Tensor"),
        (torch.zeros(2, 3, dtype=torch.uint8), DTypeError, "floating-point"),
        (torch.zeros(2, 3, dtype=torch.bool), DTypeError, "floating-point"),
        (torch.tensor(0.5), ShapeError, "N ≥ 1"),
        (torch.zeros(0, 3), ShapeError, "N ≥ 1"),
        (torch.tensor([[0.5, math.nan]]), NonFiniteError, "NaN or inf"),
        (torch.tensor([[0.5], [math.inf]]), NonFiniteError, "example 1"),
        (torch.tensor([[0.5, 1.0001]]), InputError, r"in \[0, 1\]"),
        (torch.tensor([[-1e-6, 0.5]]), InputError, r"in \[0, 1\]"),
    ],
)
def test_bad_probabilities_are_refused(probs, error, match):
    with pytest.raises(error, match=match):
        DynamicBinarizer(probs, seed=0)


@pytest.mark.parametrize("seed", [True, 1.0, "0", None])
def test_bad_seed_is_refused(seed):
    with pytest.raises(ConfigError, match="seed must be an int"):
        DynamicBinarizer(torch.zeros(2, 3), seed=seed)


@pytest.mark.parametrize(
    "indices, error, match",
    [
        ([0, 1], InputError, "torch.Tensor"),
        (torch.tensor([0.0, 1.0]), DTypeError, "integer indices"),
        (torch.tensor([True, False]), DTypeError, "integer indices"),
        (torch.tensor([[0, 1]]), ShapeError, "1-d"),
        (torch.tensor([0, 4]), InputError, r"\[0, 3\] \(N = 4\)"),
        (torch.tensor([-1, 0]), InputError, r"\[0, 3\]"),
    ],
)
def test_bad_indices_are_refused(indices, error, match):
    with pytest.raises(error, match=match):
        DynamicBinarizer(torch.zeros(4, 3), seed=0).batch(indices, 0)


@pytest.mark.parametrize("step", [-1, 2**32, 1.0, True, None])
def test_bad_step_is_refused(step):
    b = DynamicBinarizer(torch.zeros(4, 3), seed=0)
    with pytest.raises(ConfigError, match="step must be an int"):
        b.batch(torch.tensor([0]), step)
    with pytest.raises(ConfigError, match="step must be an int"):
        step_seed(0, step)


# ----------------------------------------------------------------------------- validation split


def test_validation_is_the_last_size_examples():
    x = torch.arange(100).reshape(100, 1) * 10
    kept, valid = split_validation(x, 30)
    assert torch.equal(valid, x[70:]) and torch.equal(kept, x[:70])
    assert valid[0, 0] == 700 and valid[-1, 0] == 990  # the last 30, in their order


@pytest.mark.parametrize("n, size", [(2, 1), (10, 9), (60_000, 10_000), (1_797, 300)])
def test_split_parts_are_disjoint_and_add_up(n, size):
    x = torch.arange(n)
    kept, valid = split_validation(x, size)
    assert (len(kept), len(valid)) == (n - size, size)
    assert set(kept.tolist()).isdisjoint(valid.tolist())
    assert sorted(kept.tolist() + valid.tolist()) == list(range(n))
    assert torch.equal(torch.cat([kept, valid]), x)  # order kept too


def test_split_default_is_10000_and_labels_split_alike():
    images = torch.zeros(60_000, 1, 2, 2)
    labels = torch.arange(60_000) % 10
    kept, valid = split_validation(images)
    assert (len(kept), len(valid)) == (50_000, 10_000) == (50_000, data.VALIDATION_SIZE)
    kl, vl = split_validation(labels)
    assert torch.equal(vl, labels[50_000:]) and torch.equal(kl, labels[:50_000])
    assert kept.data_ptr() == images.data_ptr()  # views, no copy


@pytest.mark.parametrize("size", [0, -1, 10, 11, True, 2.5, "3", None])
def test_split_validation_refuses_bad_sizes(size):
    with pytest.raises(ConfigError, match=r"validation size .*\[1, 9\].*N = 10"):
        split_validation(torch.zeros(10, 3), size)


def test_split_validation_refuses_bad_data():
    with pytest.raises(ConfigError, match="at least 2"):
        split_validation(torch.zeros(1, 3), 1)
    with pytest.raises(ShapeError, match="0-d"):
        split_validation(torch.tensor(1.0), 1)
    with pytest.raises(InputError, match="torch.Tensor"):
        split_validation([[0.0], [1.0]], 1)


# ----------------------------------------------------------------------------- with real data


def test_unit_variant_gives_the_intensities_to_binarize():
    """``variant="unit"`` is the [0, 1] intensities (k/255); the binarizer takes them as is."""
    ds = data.load_dataset("digits", variant="unit")
    k = torch.round(ds.train * 255)
    assert torch.equal(ds.train, k / 255) and float(ds.train.min()) >= 0
    train, valid = split_validation(ds.train, 300)
    assert len(valid) == 300
    b = DynamicBinarizer(train, seed=0)
    x = b.batch(torch.arange(len(train)), 0)
    assert x.shape == train.shape
    assert abs(float(x.mean()) - float(train.mean())) < 0.01  # 76,800 draws, sd ≈ 0.0017


@needs_mnist
def test_mnist_protocol_is_50000_and_10000():
    ds = data.load_dataset("mnist", variant="unit")
    train, valid = split_validation(ds.train)
    assert (train.shape, valid.shape) == ((50_000, 1, 28, 28), (10_000, 1, 28, 28))
    assert torch.equal(valid, ds.train[50_000:]) and torch.equal(train, ds.train[:50_000])
    b = DynamicBinarizer(train, seed=0)
    idx = torch.randint(50_000, (512,), generator=torch.Generator().manual_seed(0))
    x = b.batch(idx, 0)
    assert x.shape == (512, 1, 28, 28)
    assert bool((x[train[idx] == 0] == 0).all()) and bool((x[train[idx] == 1] == 1).all())
