"""The feature network of sample quality (latentkit.quality.features): the shipped file's hash
and test accuracy, a user's own weights, and one clear error line for each bad input."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from torch import nn

import latentkit as lk
from latentkit.quality import (
    SHIPPED_SHA256,
    FeatureNetwork,
    LeNet,
    load_feature_network,
    shipped_weights_path,
    to_unit_pixels,
)
from latentkit.quality import features as features_module
from latentkit.quality.features import METADATA_KEY, feature_file_bytes

# The figures scripts/train_feature_net.py printed for the shipped file (docs/quality.md).
SHIPPED_ACCURACY = {"gray": 0.9903, "binarized": 0.9882}
# Logits are float32 sums whose order may differ on another CPU; an image whose top two
# logits are that close can flip. We allow 5 of the 10,000 test images to flip.
FLIP_ALLOWANCE = 5 / 10_000


def _one_line(e: pytest.ExceptionInfo) -> str:
    text = str(e.value)
    assert "\n" not in text and text
    return text


@pytest.fixture(scope="module")
def shipped() -> FeatureNetwork:
    return load_feature_network()


def test_shipped_file_is_the_recorded_one(shipped):
    """The packaged weights have the sha256 the code checks, and are small."""
    blob = shipped_weights_path().read_bytes()
    assert hashlib.sha256(blob).hexdigest() == SHIPPED_SHA256 == shipped.sha256
    assert len(blob) < 100_000
    assert sum(p.numel() for p in shipped.module.parameters()) < 50_000
    assert shipped.name == "mnist-lenet" and shipped.input_shape == (1, 28, 28)


@pytest.fixture(scope="module")
def mnist_test() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The MNIST test split as (images, labels) per kind: gray, binarized (seed 0), and the
    8-bit levels as 2k/255 − 1."""
    if "mnist" not in lk.data.list_datasets(available_only=True):
        pytest.skip("the embedded MNIST (extra 'mnist') is not installed here")
    # limit=10_000 keeps the whole test split (binarized draws are a prefix of the full load's)
    gray = lk.load_dataset("mnist", variant="unit", limit=10_000)
    binary = lk.load_dataset("mnist", variant="binarized", seed=0, limit=10_000)
    assert gray.test.shape[0] == 10_000
    return {
        "unit": (gray.test, gray.test_labels),
        "binary": (binary.test, binary.test_labels),
        "symmetric8": (2 * gray.test - 1, gray.test_labels),
    }


@pytest.mark.parametrize(
    ("kind", "recorded"), [("unit", "gray"), ("binary", "binarized"), ("symmetric8", "gray")]
)
def test_shipped_accuracy_on_the_test_split(shipped, mnist_test, kind, recorded):
    """All 10,000 test images: the accuracy the training script recorded (in the file and the
    docs), within FLIP_ALLOWANCE; 8-bit images read as kind symmetric8 are the gray ones."""
    images, labels = mnist_test[kind]
    _, logits = shipped.features_and_logits(images, kind=kind)
    acc = float((logits.argmax(1) == labels).double().mean())
    assert abs(acc - SHIPPED_ACCURACY[recorded]) <= FLIP_ALLOWANCE, acc
    assert shipped.info[f"test_accuracy_{recorded}"] == SHIPPED_ACCURACY[recorded]


def test_a_changed_shipped_file_is_refused(tmp_path, monkeypatch):
    """One flipped bit in the weights: the shipped file no longer matches its sha256."""
    blob = bytearray(shipped_weights_path().read_bytes())
    blob[-3] ^= 0x01
    bad = tmp_path / "mnist_lenet.safetensors"
    bad.write_bytes(bytes(blob))
    monkeypatch.setattr(features_module, "shipped_weights_path", lambda: bad)
    with pytest.raises(lk.CheckpointError) as e:
        load_feature_network()
    assert "are not the shipped ones" in _one_line(e) and str(bad) in str(e.value)
    with pytest.raises(lk.CheckpointError, match="not the expected ones"):
        load_feature_network(bad, sha256=SHIPPED_SHA256)


def test_a_users_lenet_file_round_trips(tmp_path):
    """A LeNet of one's own (other width, 3 classes) written in the feature-file format loads
    by path, gives the module's own features, and is checked against a given sha256."""
    torch.manual_seed(0)
    net = LeNet(feature_dim=16, classes=3)
    blob = feature_file_bytes(net, {"name": "my-digits"})
    path = tmp_path / "mine.safetensors"
    path.write_bytes(blob)
    loaded = load_feature_network(path)
    assert loaded.name == "my-digits" and loaded.sha256 == hashlib.sha256(blob).hexdigest()
    x = torch.rand(5, 1, 28, 28)
    f, logits = loaded.features_and_logits(x)
    with torch.no_grad():
        assert torch.equal(f, net.body(x).double()) and logits.shape == (5, 3)
    assert load_feature_network(path, sha256=loaded.sha256).sha256 == loaded.sha256
    with pytest.raises(lk.CheckpointError) as e:
        load_feature_network(path, sha256="0" * 64)
    assert "not the expected ones" in _one_line(e)


def test_files_that_are_not_feature_files_are_refused(tmp_path):
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(lk.CheckpointError, match="cannot read the feature weights") as e:
        load_feature_network(missing)
    _one_line(e)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all")
    with pytest.raises(lk.CheckpointError, match="not a latentkit feature-network file") as e:
        load_feature_network(junk)
    _one_line(e)
    import safetensors.torch

    other = tmp_path / "other.safetensors"
    meta = json.dumps({"arch": LeNet().arch})
    other.write_bytes(safetensors.torch.save({"w": torch.ones(2)}, metadata={METADATA_KEY: meta}))
    with pytest.raises(lk.CheckpointError, match="does not hold a LeNet's weights") as e:
        load_feature_network(other)
    _one_line(e)


def test_wrong_shape_for_the_network(shipped):
    """28×28 one-channel images only (or their 784-long rows); anything else one line."""
    for shape in [(4, 1, 32, 32), (4, 3, 28, 28), (4, 28, 28), (4, 100)]:
        with pytest.raises(lk.ShapeError) as e:
            shipped.features(torch.rand(shape))
        assert "[N, 1, 28, 28]" in _one_line(e) and "mnist-lenet" in str(e.value)
    x = torch.rand(6, 1, 28, 28)
    assert torch.equal(shipped.features(x), shipped.features(x.reshape(6, 784)))


def test_nan_samples_are_refused(shipped):
    x = torch.rand(8, 1, 28, 28)
    x[3, 0, 5, 5] = float("nan")
    x[6, 0, 0, 0] = float("inf")
    with pytest.raises(lk.NonFiniteError) as e:
        shipped.features(x)
    assert "2 non-finite value(s) (1 NaN, 1 inf)" in _one_line(e) and "example 3" in str(e.value)


def test_pixel_kinds():
    """symmetric8 pixels 2k/255 − 1 are read as k/255; a sampler's slight overshoot is clipped;
    0..255 values, integer tensors and unknown kinds are refused with one line each."""
    x = torch.rand(3, 1, 28, 28)
    assert torch.allclose(to_unit_pixels(2 * x - 1, "symmetric8"), x, atol=1e-7)
    assert float(to_unit_pixels(x + 0.2, "unit").max()) == 1.0
    for bad, kind, err in [
        (x * 255, "unit", lk.ConfigError),
        ((x * 255).to(torch.uint8), "unit", lk.DTypeError),
        (x, "real", lk.ConfigError),
        (x.tolist(), "unit", lk.InputError),
    ]:
        with pytest.raises(err) as e:
            to_unit_pixels(bad, kind)
        _one_line(e)


def test_a_users_own_module_as_feature_network():
    """Any module mapping images to [N, D] serves (no head: no classifier score); a module
    that gives another shape is named in one line."""
    net = FeatureNetwork(module=nn.Flatten(), input_shape=(1, 4, 4), name="raw pixels")
    x = torch.rand(10, 1, 4, 4)
    f, logits = net.features_and_logits(x)
    assert torch.equal(f, x.reshape(10, 16).double()) and logits is None
    bad = FeatureNetwork(module=nn.Identity(), input_shape=(1, 4, 4), name="identity")
    with pytest.raises(lk.ShapeError, match="'identity' must map") as e:
        bad.features(x)
    _one_line(e)


@pytest.mark.parametrize(
    ("channels", "conv", "feature_dim", "classes"),
    [(1, (8, 16), 64, 10), (3, (5, 7), 11, 2), (2, (1, 3), 1, 13)],
)
def test_the_lenet_weight_count_is_the_networks(channels, conv, feature_dim, classes):
    """``lenet_weights``, the count LeNet's size bound is checked against, is the number of
    weights (parameters of two or more dimensions) the network holds, exactly."""
    net = lk.quality.LeNet(channels, conv, feature_dim, classes)
    held = sum(p.numel() for p in net.parameters() if p.ndim > 1)
    assert features_module.lenet_weights(channels, conv, feature_dim, classes) == held


def test_a_lenet_of_more_weights_than_the_bound_is_refused(monkeypatch):
    """The bound is on the count itself: one weight over it is refused, at it built."""
    sizes = (1, (2, 3), 4, 5)
    monkeypatch.setattr(features_module, "MAX_LENET_WEIGHTS", features_module.lenet_weights(*sizes))
    assert isinstance(lk.quality.LeNet(*sizes), lk.quality.LeNet)
    monkeypatch.setattr(
        features_module, "MAX_LENET_WEIGHTS", features_module.lenet_weights(*sizes) - 1
    )
    with pytest.raises(lk.ConfigError, match="LeNet: these sizes make"):
        lk.quality.LeNet(*sizes)
