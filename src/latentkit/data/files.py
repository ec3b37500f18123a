"""The user's own data: ``file:PATH`` (.npy, .npz, .pt, .safetensors) and ``folder:PATH``
(a folder of images).

An array file holds either one array ``[N, *data_shape]`` (split by a fixed seeded split,
``test_fraction`` of it for test) or named arrays ``train`` and (optionally) ``test``, with
optional ``train_labels`` / ``test_labels`` (or ``labels`` beside a single ``data``/``x``).
Values: uint8 (8-bit levels), bool, other ints within 0..255 (taken as 8-bit levels), or
floats (float16/32/64; no NaN or inf). Anything else is refused with the dtype named.

Files are untrusted: nothing is unpickled (``np.load(allow_pickle=False)``,
``torch.load(weights_only=True)``), a truncated or corrupt file is a one-line
:class:`~latentkit.errors.DataSourceError` naming the path, and an image whose header claims
more pixels than Pillow's decompression-bomb limit is refused before it is decoded.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latentkit.data.core import RawData, split_indices
from latentkit.errors import ConfigError, DataSourceError, DTypeError, NonFiniteError, ShapeError

__all__ = ["IMAGE_SUFFIXES", "SPLIT_SEED", "coerce_array", "load_file", "load_folder"]

#: the seed of every fixed train/test split latentkit makes (independent of ``seed``)
SPLIT_SEED = 0
ARRAY_SUFFIXES = (".npy", ".npz", ".pt", ".pth", ".safetensors")
IMAGE_SUFFIXES = (
    ".png",
    ".jpg",
    ".jpeg",
    ".bmp",
    ".gif",
    ".tif",
    ".tiff",
    ".webp",
    ".pgm",
    ".ppm",
    ".pbm",
)


def coerce_array(a: Any, where: str) -> np.ndarray:
    """Any array-like → uint8 levels or float32 values, ``[N, ...]`` with N ≥ 1, all finite."""
    if isinstance(a, torch.Tensor):
        t = a.detach().cpu()
        if t.dtype in (torch.bfloat16, torch.float16):
            t = t.to(torch.float32)
        try:
            a = t.numpy()
        except TypeError as e:  # e.g. quantized or unsupported dtypes
            raise DTypeError(f"{where}: unsupported tensor dtype {t.dtype} ({e})") from None
    if not isinstance(a, np.ndarray):
        raise DTypeError(f"{where}: expected an array or tensor, got {type(a).__name__}")
    if a.ndim < 2 or a.shape[0] == 0 or 0 in a.shape:
        raise ShapeError(
            f"{where}: expected an array [N, *data_shape] with N ≥ 1 and every dim ≥ 1, got "
            f"shape {a.shape}"
        )
    kind = a.dtype.kind
    if kind == "b":
        return a.astype(np.uint8) * np.uint8(255)
    if a.dtype == np.uint8:
        return np.ascontiguousarray(a)
    if kind in "iu":
        lo, hi = int(a.min()), int(a.max())
        if lo < 0 or hi > 255:
            raise DTypeError(
                f"{where}: integer data ({a.dtype}) is read as 8-bit levels 0..255, but its "
                f"values lie in [{lo}, {hi}]; convert it to float (e.g. x.astype('float32')) "
                "or to uint8 levels"
            )
        return a.astype(np.uint8)
    if kind == "f":
        out = np.ascontiguousarray(a, dtype=np.float32)
        finite = np.isfinite(out)
        if not finite.all():
            bad = int((~finite).sum())
            nan = int(np.isnan(out).sum())
            first = tuple(int(i) for i in np.argwhere(~finite)[0])
            raise NonFiniteError(
                f"{where}: {bad} non-finite value(s) ({nan} NaN, {bad - nan} inf), the first at "
                f"index {first}; drop or fix those examples"
            )
        return out
    raise DTypeError(
        f"{where}: unsupported dtype {a.dtype}; give uint8, bool, integer (0..255) or float data"
    )


def _labels(a: Any, n: int, where: str) -> np.ndarray | None:
    """Labels as int64, checked to be a 1-d integer array of length n (None stays None)."""
    if a is None:
        return None
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    a = np.asarray(a)
    if a.ndim != 1 or a.shape[0] != n or a.dtype.kind not in "iub":
        raise ShapeError(
            f"{where}: labels must be a 1-d integer array of length {n}, got {a.dtype} {a.shape}"
        )
    return a.astype(np.int64)


def _split(x: np.ndarray, labels: np.ndarray | None, test_fraction: float, where: str):
    """One array (and its labels) split into train and test by latentkit's fixed split."""
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    n = x.shape[0]
    n_test = round(n * test_fraction)
    if n < 2 or n_test < 1 or n_test >= n:
        raise ShapeError(
            f"{where}: {n} example(s) cannot be split into train and test with test_fraction "
            f"{test_fraction}; give more examples or separate 'train' and 'test' arrays"
        )
    tr, te = split_indices(n, n_test, SPLIT_SEED)
    lab = (None, None) if labels is None else (labels[tr], labels[te])
    return x[tr], x[te], lab[0], lab[1]


def _first_line(e: BaseException) -> str:
    """An exception's message cut to its first line (torch's are paragraphs)."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


_MAGIC = {
    ".npy": ((b"\x93NUMPY",), "no .npy header (not a file written by numpy.save)"),
    ".npz": ((b"PK\x03\x04", b"PK\x05\x06"), "not a zip archive (not written by numpy.savez)"),
}


def _torch_reason(e: BaseException) -> str:
    """The informative line of a torch.load failure (its first lines are boilerplate)."""
    lines = [line.strip() for line in str(e).splitlines()]
    said = [line for line in lines if line.startswith("WeightsUnpickler error:")]
    reason = said[0] if said else _first_line(e)
    return reason.rstrip(": ") or type(e).__name__


def _read_arrays(path: Path) -> Mapping[str, Any] | Any:
    """The file's content: one array, or a mapping of named arrays."""
    suffix = path.suffix.lower()
    if path.stat().st_size == 0:
        raise DataSourceError(f"file:{path}: is empty (0 bytes)")
    try:
        if suffix in _MAGIC:
            # numpy takes a file without its magic for a pickle: say what it is not instead
            magics, why = _MAGIC[suffix]
            with open(path, "rb") as f:
                head = f.read(6)
            if not any(head.startswith(m) for m in magics):
                raise ValueError(why)
        if suffix == ".npy":
            return np.load(path, allow_pickle=False)
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        if suffix in (".pt", ".pth"):
            obj = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(obj, (list, tuple)) and len(obj) == 2:
                obj = {"train": obj[0], "test": obj[1]}
            return obj
        from safetensors.numpy import load_file as load_safetensors

        return load_safetensors(str(path))
    except ValueError as e:
        if "allow_pickle" in str(e) or "Object arrays" in str(e):
            raise DTypeError(
                f"file:{path}: holds Python objects (pickled); save a plain numeric array"
            ) from None
        raise DataSourceError(
            f"file:{path}: cannot be read as {suffix} ({_first_line(e)})"
        ) from None
    except Exception as e:  # corrupt or truncated files raise many different types
        if suffix in (".pt", ".pth") and "Unsupported global" in str(e):
            raise DataSourceError(
                f"file:{path}: holds Python objects that torch.load(weights_only=True) will not "
                f"unpickle ({_torch_reason(e)}); save plain tensors (a tensor, or a dict of them)"
            ) from None
        reason = _torch_reason(e) if suffix in (".pt", ".pth") else _first_line(e)
        raise DataSourceError(
            f"file:{path}: cannot be read as {suffix} ({type(e).__name__}: {reason})"
        ) from None


def load_file(path_text: str, *, test_fraction: float = 0.1) -> RawData:
    """Read ``file:PATH`` (see the module docstring for what the file may hold)."""
    path = Path(path_text).expanduser()
    where = f"file:{path}"
    if not path.is_file():
        raise DataSourceError(f"{where}: no such file")
    if path.suffix.lower() not in ARRAY_SUFFIXES:
        raise DataSourceError(
            f"{where}: unsupported file type {path.suffix!r}; use one of "
            f"{', '.join(ARRAY_SUFFIXES)} (or folder:PATH for images)"
        )
    content = _read_arrays(path)
    if isinstance(content, Mapping):
        train, test, tr_lab, te_lab, split_note = _named_splits(content, where, test_fraction)
    else:
        x = coerce_array(content, where)
        train, test, tr_lab, te_lab = _split(x, None, test_fraction, where)
        split_note = f"a fixed seeded split ({test_fraction:g} for test)"
    train, test = _matching(train, test, where)
    levels = "8-bit levels" if train.dtype == np.uint8 else "float values"
    desc = (
        f"{path.name}: {train.shape[0]} train / {test.shape[0]} test, "
        f"{'×'.join(map(str, train.shape[1:]))}, {levels}, {split_note}"
    )
    return RawData(
        train=train,
        test=test,
        description=desc,
        train_labels=tr_lab,
        test_labels=te_lab,
        info={
            "source": str(path),
            "split_seed": SPLIT_SEED,
            "pixel_scale": "k/255" if train.dtype == np.uint8 else "as stored",
        },
    )


def _named_splits(content: Mapping[str, Any], where: str, test_fraction: float) -> tuple:
    """(train, test, train labels, test labels, how they were split) from named arrays:
    ``train`` with its own ``test`` or a fixed seeded split of it, else one array (``data``,
    ``x``, ``X`` or the only one) split; labels are dropped unless both splits have them."""
    odd = [k for k in content if not isinstance(k, str)]
    if odd:  # e.g. a .pt dict mixing 0 and "train": sorted() would fail on the mix
        raise DataSourceError(
            f"{where}: array names must be text (train, test, data, ...), got {odd[0]!r}"
        )
    keys = sorted(content)
    if "train" in content:
        train = coerce_array(content["train"], f"{where}['train']")
        tr_lab = _labels(content.get("train_labels"), train.shape[0], f"{where}['train_labels']")
        if "test" not in content:
            train, test, tr_lab, te_lab = _split(train, tr_lab, test_fraction, where)
            note = f"a fixed seeded split of 'train' ({test_fraction:g} for test)"
            return train, test, tr_lab, te_lab, note
        test = coerce_array(content["test"], f"{where}['test']")
        te_lab = _labels(content.get("test_labels"), test.shape[0], f"{where}['test_labels']")
        if (tr_lab is None) != (te_lab is None):
            tr_lab = te_lab = None
        return train, test, tr_lab, te_lab, "its own train/test arrays"
    single = next((k for k in ("data", "x", "X") if k in content), None)
    if single is None and len(content) != 1:
        raise DataSourceError(
            f"{where}: holds arrays {keys}; name them 'train' (and 'test'), or store one array"
        )
    key = single if single is not None else keys[0]
    x = coerce_array(content[key], f"{where}[{key!r}]")
    lab = _labels(content.get("labels"), x.shape[0], f"{where}['labels']")
    train, test, tr_lab, te_lab = _split(x, lab, test_fraction, where)
    note = f"a fixed seeded split of {key!r} ({test_fraction:g} for test)"
    return train, test, tr_lab, te_lab, note


def _matching(train: np.ndarray, test: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
    """The two splits with one example shape (else a ShapeError) and one kind of value: if
    one holds 8-bit levels and the other floats, the levels become floats k/255."""
    if train.shape[1:] != test.shape[1:]:
        raise ShapeError(
            f"{where}: train examples have shape {train.shape[1:]} but test examples "
            f"{test.shape[1:]}; they must match"
        )
    if (train.dtype == np.uint8) != (test.dtype == np.uint8):
        train, test = (
            a.astype(np.float32) / 255.0 if a.dtype == np.uint8 else a for a in (train, test)
        )
    return train, test


# ----------------------------------------------------------------------------- image folders

_GREY_MODES = {"1", "L"}
_WIDE_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


def _images_under(root: Path) -> list[Path]:
    """Every image file under root, recursively, in sorted order (hidden files skipped)."""
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )


def _read_images(paths: list[Path], root: Path) -> tuple[np.ndarray, str]:
    """The images as uint8 [N, C, H, W] (grey, or RGB when any is in colour), all of one size."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow comes with matplotlib
        raise DataSourceError(
            "folder: datasets need Pillow; install it with `pip install pillow`"
        ) from None
    images, modes = [], []
    for p in paths:
        try:
            with Image.open(p) as im:
                im.load()
                image = im.copy()
        except Exception as e:  # Pillow's decoders raise many types on corrupt or bomb files
            raise DataSourceError(
                f"folder:{root}: cannot read image {p} ({_first_line(e)})"
            ) from None
        if image.mode in _WIDE_MODES:
            raise DTypeError(
                f"folder:{root}: {p} is a {image.mode} (16-bit or float) image; only 8-bit "
                "images are read: convert them, or save the arrays and use file:PATH"
            )
        images.append(image)
        modes.append(image.mode)
    grey = all(m in _GREY_MODES for m in modes)
    target = "L" if grey else "RGB"
    first = images[0].size
    arrays = []
    for p, im in zip(paths, images):
        if im.size != first:
            raise ShapeError(
                f"folder:{root}: images differ in size: {paths[0].name} is {first[0]}×{first[1]} "
                f"but {p} is {im.size[0]}×{im.size[1]} (width×height); resize them to one size"
            )
        a = np.asarray(im.convert(target), dtype=np.uint8)
        arrays.append(a[None] if grey else a.transpose(2, 0, 1))
    return np.stack(arrays), target


def _class_labels(paths: list[Path], root: Path, classes: list[str] | None):
    """Each image's class index from its first subfolder, and the class names; ``(None,
    None)`` where they do not all have one."""
    parts = [p.relative_to(root).parts for p in paths]
    if any(len(q) < 2 for q in parts):
        return None, None
    names = classes if classes is not None else sorted({q[0] for q in parts})
    index = {c: i for i, c in enumerate(names)}
    if any(q[0] not in index for q in parts):
        return None, None
    return np.array([index[q[0]] for q in parts], dtype=np.int64), names


def load_folder(path_text: str, *, test_fraction: float = 0.1) -> RawData:
    """Read ``folder:PATH``: every image under PATH (recursively, in sorted order), all of one
    size, as uint8 ``[N, C, H, W]`` (C = 1 when every image is greyscale, else 3 with any
    alpha dropped). ``PATH/train`` and ``PATH/test`` subfolders are used as the splits when
    both exist; otherwise a fixed seeded split. Images in class subfolders get labels
    (class index in sorted folder-name order)."""
    root = Path(path_text).expanduser()
    where = f"folder:{root}"
    if not root.is_dir():
        raise DataSourceError(f"{where}: no such folder")
    split_dirs = (root / "train", root / "test")
    if all(d.is_dir() for d in split_dirs):
        tr_paths, te_paths = _images_under(split_dirs[0]), _images_under(split_dirs[1])
        if not tr_paths or not te_paths:
            raise DataSourceError(
                f"{where}: train/ and test/ must both hold images ({', '.join(IMAGE_SUFFIXES)})"
            )
        x, mode = _read_images(tr_paths + te_paths, root)
        train, test = x[: len(tr_paths)], x[len(tr_paths) :]
        tr_lab, names = _class_labels(tr_paths, split_dirs[0], None)
        te_lab, _ = _class_labels(te_paths, split_dirs[1], names)
        if tr_lab is None or te_lab is None:
            tr_lab = te_lab = names = None
        split_note = "its train/ and test/ folders"
    else:
        paths = _images_under(root)
        if not paths:
            raise DataSourceError(
                f"{where}: no images found (looked for {', '.join(IMAGE_SUFFIXES)})"
            )
        x, mode = _read_images(paths, root)
        lab, names = _class_labels(paths, root, None)
        train, test, tr_lab, te_lab = _split(x, lab, test_fraction, where)
        split_note = f"a fixed seeded split ({test_fraction:g} for test)"
    desc = (
        f"image folder {root.name}: {train.shape[0]} train / {test.shape[0]} test, "
        f"{'×'.join(map(str, train.shape[1:]))} ({mode}), {split_note}"
    )
    info: dict[str, Any] = {
        "source": str(root),
        "split_seed": SPLIT_SEED,
        "image": True,
        "pixel_scale": "k/255",
    }
    if names is not None:
        info["classes"] = list(names)
    return RawData(
        train=train, test=test, description=desc, train_labels=tr_lab, test_labels=te_lab, info=info
    )
