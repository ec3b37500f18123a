"""Feature networks for sample quality: the shipped MNIST classifier, and any image → feature map.

A :class:`FeatureNetwork` maps images ``[N, *input_shape]`` with pixels in [0, 1] to features
``[N, D]``; with a ``head`` it also gives class logits (for the classifier score). The shipped
one is :class:`LeNet` trained on MNIST by ``scripts/train_feature_net.py`` (docs/quality.md);
its file is checked against :data:`SHIPPED_SHA256` on every load. Nothing is ever downloaded: a
user's own network (an Inception on disk, a classifier of their own data) is a module handed
in, or a LeNet file of their own given by path.

Pixels are read according to the data's ``kind`` (``latentkit.data.Dataset.kind``): ``unit``
and ``binary`` as they are, ``symmetric8`` (2k/255 − 1) mapped to [0, 1] by (x + 1)/2. Values
a sampler puts slightly outside the range (within :data:`RANGE_MARGIN`) are clipped to it;
values farther out are refused, since they mean the wrong ``kind`` (e.g. 0..255 pixels).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from importlib import resources
from pathlib import Path
from typing import Any

import attrs
import safetensors.torch
import torch
from torch import Tensor, nn

from latentkit.arguments import check_count, check_path, check_shape, describe_value
from latentkit.errors import (
    CheckpointError,
    ConfigError,
    DTypeError,
    InputError,
    NonFiniteError,
    ShapeError,
)
from latentkit.safe_io import read_regular_file
from latentkit.validation import check_positive_int, check_tensor_kind

__all__ = [
    "KINDS",
    "RANGE_MARGIN",
    "SHIPPED_SHA256",
    "FeatureNetwork",
    "LeNet",
    "check_finite",
    "feature_file_bytes",
    "load_feature_network",
    "shipped_weights_path",
    "to_unit_pixels",
]

SHIPPED_FILE = "mnist_lenet.safetensors"
SHIPPED_SHA256 = "9e9c74bdab8720d8ad2664de1f5e25d7f01d98972989053fb7373032aca60834"
"""sha256 of the shipped ``mnist_lenet.safetensors`` (written by scripts/train_feature_net.py)."""

METADATA_KEY = "latentkit_feature_network"
"""The one metadata entry of a feature file: sorted JSON (one key, so the bytes are stable)."""

KINDS = ("unit", "binary", "symmetric8")
"""Pixel kinds a feature network reads (``Dataset.kind``); ``real`` data must be mapped back."""

RANGE_MARGIN = 0.5
"""Pixels (after mapping to [0, 1]) in [−margin, 1 + margin] are clipped; farther is an error."""

_MAX_FILE_BYTES = 64 * 2**20


MAX_LENET_WEIGHTS = 2**28
"""The most weights (biases aside) a :class:`LeNet` may have (1 GiB of float32): a feature
network of MNIST digits is far smaller (the shipped one: 20,522 parameters), so more is a
typo, refused before the allocator meets it."""


class LeNet(nn.Module):
    """A small LeNet: two 5×5 convolutions with max-pooling, a ``feature_dim`` layer, a classifier.

    ``body``: [N, C, 28, 28] → [N, feature_dim] (the features, taken before the ReLU so they
    are closer to Gaussian); ``head``: ReLU and a linear layer to ``classes`` logits. Every
    size an int ≥ 1 (``classes`` ≥ 2), at most :data:`MAX_LENET_WEIGHTS` weights in all,
    else a ConfigError.
    """

    def __init__(
        self,
        channels: int = 1,
        conv: tuple[int, int] = (8, 16),
        feature_dim: int = 64,
        classes: int = 10,
    ) -> None:
        super().__init__()
        c1, c2 = _lenet_sizes(channels, conv, feature_dim, classes)
        self.arch = {
            "channels": channels,
            "conv": [c1, c2],
            "feature_dim": feature_dim,
            "classes": classes,
        }
        # 28 → conv 24 → pool 12 → conv 8 → pool 4
        self.body = nn.Sequential(
            nn.Conv2d(channels, c1, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(c2 * 4 * 4, feature_dim),
        )
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(feature_dim, classes))

    def forward(self, x: Tensor) -> Tensor:
        """Class logits ``[N, classes]`` of images ``[N, C, 28, 28]`` in [0, 1]."""
        return self.head(self.body(x))


def lenet_weights(channels: int, conv: tuple[int, int], feature_dim: int, classes: int) -> int:
    """The weights (biases aside) of a :class:`LeNet` of these sizes: its two 5×5
    convolutions (C → c1 → c2), the 4×4×c2 → feature_dim layer and the head to ``classes``:
    25·c1·(C + c2) + feature_dim·(16·c2 + classes)."""
    c1, c2 = conv
    return 25 * c1 * (channels + c2) + feature_dim * (16 * c2 + classes)


def _lenet_sizes(channels: Any, conv: Any, feature_dim: Any, classes: Any) -> tuple[int, int]:
    """The two convolutions' widths, once every size is checked (see :class:`LeNet`)."""
    for name, value, low in (("channels", channels, 1), ("feature_dim", feature_dim, 1),
                             ("classes", classes, 2)):  # fmt: skip
        check_count(value, f"LeNet: {name}", low=low, error=ConfigError)
    if not isinstance(conv, (tuple, list)) or len(conv) != 2:
        raise ConfigError(f"LeNet: conv must be two widths (c1, c2), got {describe_value(conv)}")
    c1, c2 = (check_count(c, f"LeNet: conv[{i}]", error=ConfigError) for i, c in enumerate(conv))
    weights = lenet_weights(channels, (c1, c2), feature_dim, classes)
    if weights > MAX_LENET_WEIGHTS:
        raise ConfigError(
            f"LeNet: these sizes make {weights:,} weights, more than {MAX_LENET_WEIGHTS:,}"
        )
    return c1, c2


def check_finite(x: Tensor, name: str) -> None:
    """A :class:`NonFiniteError` naming ``name`` and counting NaN and inf when ``x`` has any."""
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        bad, nan = int((~finite).sum()), int(torch.isnan(x).sum())
        first = int((~finite).reshape(x.shape[0], -1).any(1).nonzero()[0])
        raise NonFiniteError(
            f"{name} holds {bad} non-finite value(s) ({nan} NaN, {bad - nan} inf); "
            f"the first in example {first} of {x.shape[0]}"
        )


def to_unit_pixels(images: Any, kind: str, *, name: str = "samples") -> Tensor:
    """``images`` as float32 pixels in [0, 1] (see the module docstring), checked for dtype,
    finiteness and range, each failure one line naming ``name``."""
    if kind not in KINDS:
        raise ConfigError(
            f"kind must be one of {', '.join(KINDS)} (a Dataset's kind), got {kind!r}; "
            "standardized ('real') data must be mapped back to pixels first"
        )
    x = check_tensor_kind(images, name)
    if not x.is_floating_point():
        raise DTypeError(
            f"{name} must be a floating-point tensor, got {x.dtype} (8-bit images: divide by 255 "
            "and pass kind='unit')"
        )
    check_finite(x, name)
    x = x.detach().to(torch.float32)
    if kind == "symmetric8":
        x = (x + 1.0) / 2.0
    if x.numel():
        lo, hi = float(x.min()), float(x.max())
        if lo < -RANGE_MARGIN or hi > 1.0 + RANGE_MARGIN:
            raise ConfigError(
                f"{name} have pixels in [{lo:.4g}, {hi:.4g}] once read as kind {kind!r} "
                f"(expected [0, 1]); pass the kind of the data ({', '.join(KINDS)})"
            )
    return x.clamp(0.0, 1.0)


def _callable(field: str, value: Any, optional: bool = False) -> None:
    if not (callable(value) or (optional and value is None)):
        want = "a callable (an nn.Module)" + (" or None" if optional else "")
        raise InputError(f"FeatureNetwork: {field} must be {want}, got {describe_value(value)}")


def _of(kind: type | tuple[type, ...], want: str, field: str, value: Any) -> None:
    if not isinstance(value, kind):
        raise InputError(f"FeatureNetwork: {field} must be {want}, got {describe_value(value)}")


@attrs.frozen(eq=False)
class FeatureNetwork:
    """An image → feature map ``module``, with an optional classifier ``head`` on its features.

    Attributes:
        module: ``[N, *input_shape]`` pixels in [0, 1] → ``[N, D]`` features (any ``nn.Module``
            or callable; it is put in eval mode and called without gradients).
        input_shape: one image's shape, e.g. ``(1, 28, 28)``; flat ``[N, prod(input_shape)]``
            inputs are reshaped to it.
        name: what the figures are labelled with (the report names the network).
        head: ``[N, D]`` features → ``[N, classes]`` logits, or None (no classifier score).
        sha256: the weights file's digest when loaded from one, else None.
        info: what the weights file records of its training (data, seed, test accuracy).
    """

    module: Any = attrs.field(validator=lambda i, a, v: _callable("module", v))
    input_shape: tuple[int, ...] = attrs.field(
        converter=lambda s: check_shape(s, "FeatureNetwork: input_shape")
    )
    name: str = attrs.field(validator=lambda i, a, v: _of(str, "a str", "name", v))
    head: Any = attrs.field(default=None, validator=lambda i, a, v: _callable("head", v, True))
    sha256: str | None = attrs.field(
        default=None, validator=lambda i, a, v: _of((str, type(None)), "a str or None", "sha256", v)
    )
    info: dict[str, Any] = attrs.field(
        factory=dict, repr=False, validator=lambda i, a, v: _of(dict, "a dict", "info", v)
    )

    def _batches(self, images: Tensor, kind: str, batch_size: int, name: str):
        x = to_unit_pixels(images, kind, name=name)
        if len(self.input_shape) > 1 and x.ndim == 2 and x.shape[1] == math.prod(self.input_shape):
            x = x.reshape(x.shape[0], *self.input_shape)
        if x.ndim != len(self.input_shape) + 1 or tuple(x.shape[1:]) != self.input_shape:
            raise ShapeError(
                f"{name} must have shape [N, {', '.join(map(str, self.input_shape))}] (or "
                f"[N, {math.prod(self.input_shape)}]) for the feature network {self.name!r}, got "
                f"{tuple(x.shape)}"
            )
        if x.shape[0] == 0:
            raise ShapeError(f"{name} is empty (shape {tuple(x.shape)})")
        check_positive_int(batch_size, "batch_size")
        device = _device_of(self.module)
        for start in range(0, x.shape[0], batch_size):
            yield x[start : start + batch_size].to(device)

    @torch.no_grad()
    def features(
        self, images: Tensor, *, kind: str = "unit", batch_size: int = 1000, name: str = "samples"
    ) -> Tensor:
        """Features ``[N, D]`` in float64 of ``images`` (pixels of ``kind``)."""
        return self.features_and_logits(images, kind=kind, batch_size=batch_size, name=name)[0]

    @torch.no_grad()
    def features_and_logits(
        self, images: Tensor, *, kind: str = "unit", batch_size: int = 1000, name: str = "samples"
    ) -> tuple[Tensor, Tensor | None]:
        """Features ``[N, D]`` and logits ``[N, classes]`` (None without a head), float64, CPU."""
        for m in (self.module, self.head):
            if isinstance(m, nn.Module):
                m.eval()
        feats, logits = [], []
        for xb in self._batches(images, kind, batch_size, name):
            f = self.module(xb)
            if not isinstance(f, Tensor) or f.ndim != 2 or f.shape[0] != xb.shape[0]:
                raise ShapeError(
                    f"the feature network {self.name!r} must map [N, ...] images to [N, D] "
                    f"features; it gave {tuple(f.shape) if isinstance(f, Tensor) else type(f)}"
                )
            feats.append(f.double().cpu())
            if self.head is not None:
                logits.append(self.head(f).double().cpu())
        out = torch.cat(feats)
        check_finite(out, f"the features of {name} ({self.name})")
        return out, (torch.cat(logits) if logits else None)


def _device_of(module: Any) -> torch.device:
    if isinstance(module, nn.Module):
        for p in module.parameters():
            return p.device
    return torch.device("cpu")


def shipped_weights_path() -> Path:
    """Where the shipped MNIST LeNet's weights lie inside the installed package."""
    return Path(str(resources.files("latentkit.quality").joinpath(SHIPPED_FILE)))


def _metadata(blob: bytes, path: Path) -> dict[str, Any]:
    """The feature file's own metadata entry (see :data:`METADATA_KEY`), from its header."""
    try:
        size = int.from_bytes(blob[:8], "little")
        header = json.loads(blob[8 : 8 + size])
        return json.loads(header["__metadata__"][METADATA_KEY])
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(
            f"{path} is not a latentkit feature-network file (no readable "
            f"{METADATA_KEY!r} metadata: {type(e).__name__})"
        ) from None


def lenet_from_bytes(blob: bytes, path: Path) -> LeNet:
    """A :class:`LeNet` built from a feature file's metadata and loaded with its tensors."""
    meta = _metadata(blob, path)
    try:
        net = LeNet(**meta["arch"])
        tensors = safetensors.torch.load(blob)
        net.load_state_dict(tensors, strict=True)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path} does not hold a LeNet's weights ({first})") from None
    return net


def feature_file_bytes(net: LeNet, info: dict[str, Any]) -> bytes:
    """A feature file's bytes: the LeNet's tensors and one metadata entry (sorted JSON of
    ``arch`` and ``info``), the same bytes for the same weights and info."""
    meta = json.dumps({"arch": net.arch, **info}, sort_keys=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    return safetensors.torch.save(tensors, metadata={METADATA_KEY: meta})


def load_feature_network(
    path: str | os.PathLike | None = None, *, sha256: str | None = None
) -> FeatureNetwork:
    """The shipped MNIST LeNet (``path`` None), or a LeNet file written by
    ``scripts/train_feature_net.py`` (a user's own data), read from disk only.

    The shipped file must have :data:`SHIPPED_SHA256`; a user's file must have ``sha256`` when
    given (either way the digest is recorded in the network, so reports name the weights).

    Raises:
        CheckpointError: a missing or unreadable file, a digest that differs, a file that is
            not a LeNet's weights.
        InputError: ``path`` not a path, ``sha256`` not 64 hex digits.
    """
    if sha256 is not None and not (
        isinstance(sha256, str) and re.fullmatch(r"[0-9a-f]{64}", sha256)
    ):
        raise InputError(
            f"sha256 must be 64 lower-case hex digits or None, got {describe_value(sha256)}"
        )
    shipped = path is None
    p = shipped_weights_path() if shipped else check_path(path, "load_feature_network: path")
    expected = SHIPPED_SHA256 if shipped else sha256
    try:
        blob = read_regular_file(p, limit=_MAX_FILE_BYTES, what="feature weights")
    except OSError as e:
        raise CheckpointError(f"cannot read the feature weights {p} ({e.strerror or e})") from None
    digest = hashlib.sha256(blob).hexdigest()
    if expected is not None and digest != expected:
        which = "the shipped ones" if shipped else "the expected ones"
        raise CheckpointError(
            f"feature weights {p} are not {which}: sha256 {digest[:16]}… where {expected[:16]}… "
            "is required (reinstall latentkit, or retrain: scripts/train_feature_net.py)"
        )
    net = lenet_from_bytes(blob, p)
    meta = _metadata(blob, p)
    name = "mnist-lenet" if shipped else str(meta.get("name", p.stem))
    return FeatureNetwork(
        module=net.body,
        head=net.head,
        input_shape=(net.arch["channels"], 28, 28),
        name=name,
        sha256=digest,
        info=meta,
    )
