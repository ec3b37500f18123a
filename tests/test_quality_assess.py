"""The entry points of sample quality (latentkit.quality.assess): a set against itself, the
reference values' order on MNIST, the JSON form, and drawing samples with a progress hook."""

from __future__ import annotations

import json
import math
import pathlib
import re

import pytest
import torch
from torch import nn

import latentkit as lk
from latentkit.quality import (
    FeatureNetwork,
    prepare_reference,
    reference_values,
    sample_quality,
    trivial_samples,
)
from latentkit.quality.assess import draw_samples


def _projection_network() -> FeatureNetwork:
    """A fixed random linear map of 4×4 images to 6 features, with a 3-class head."""
    torch.manual_seed(0)
    body = nn.Sequential(nn.Flatten(), nn.Linear(16, 6))
    return FeatureNetwork(module=body, head=nn.Linear(6, 3), input_shape=(1, 4, 4), name="proj")


def test_a_set_against_itself():
    """FLD 0 (round-off of tr Σ ≈ 1: |FLD| ≤ 1e-9), precision = recall = 1, on a user's
    network; passing a prepared reference gives the same figures as passing the images."""
    net = _projection_network()
    x = torch.rand(300, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    q = sample_quality(x, x, network=net, bootstrap=10)
    assert abs(q.fld) <= 1e-9 and (q.precision, q.recall) == (1.0, 1.0)
    assert q.fld_se > 0 and q.classifier is not None and sum(q.classifier.class_counts) == 300
    other = torch.rand(200, 1, 4, 4, generator=torch.Generator().manual_seed(2)) ** 2
    ref = prepare_reference(x, network=net, k=5)
    a = sample_quality(other, ref, bootstrap=10)
    b = sample_quality(other, x, network=net, k=5, bootstrap=10)
    assert attrs_equal(a, b, ignore={"seconds"}) and a.k == 5 and a.fld > 10 * a.fld_se
    with pytest.raises(lk.ConfigError, match="k = 3, but the prepared reference has 5"):
        sample_quality(other, ref, k=3)
    with pytest.raises(lk.ConfigError, match="kind = 'binary', but"):
        sample_quality(other, ref, kind="binary")


def attrs_equal(a, b, ignore: set[str]) -> bool:
    da, db = a.to_dict(), b.to_dict()
    return {k: v for k, v in da.items() if k not in ignore} == {
        k: v for k, v in db.items() if k not in ignore
    }


def test_to_dict_is_plain_json():
    """report.json material: strict JSON (no NaN: the s.e. without bootstrap is null)."""
    net = _projection_network()
    x = torch.rand(50, 1, 4, 4)
    d = sample_quality(x, torch.rand(60, 1, 4, 4), network=net, bootstrap=0).to_dict()
    text = json.dumps(d, allow_nan=False)
    assert json.loads(text)["fld_se"] is None and d["n_samples"] == 50 and d["network"] == "proj"
    assert isinstance(d["classifier"]["class_counts"], list)


def test_bad_samples_each_give_one_line():
    net = _projection_network()
    ref = prepare_reference(torch.rand(40, 1, 4, 4), network=net)
    nan = torch.rand(40, 1, 4, 4)
    nan[7, 0, 1, 1] = float("nan")
    cases = [
        (nan, lk.NonFiniteError, "1 NaN"),
        (torch.rand(40, 1, 5, 5), lk.ShapeError, "[N, 1, 4, 4]"),
        (torch.rand(3, 1, 4, 4), lk.ShapeError, "k = 3 needs more than 3"),
        (torch.rand(40, 1, 4, 4) * 255, lk.ConfigError, "expected [0, 1]"),
    ]
    headless = FeatureNetwork(module=nn.Flatten(), input_shape=(1, 4, 4), name="pixels")
    with pytest.raises(lk.ConfigError, match="'pixels' has none"):
        sample_quality(
            torch.rand(9, 1, 4, 4), torch.rand(9, 1, 4, 4), network=headless, labels=torch.zeros(9)
        )
    for samples, err, words in cases:
        with pytest.raises(err) as e:
            sample_quality(samples, ref)
        assert "\n" not in str(e.value) and words in str(e.value)


@pytest.mark.parametrize("kind", ["binary", "unit", "symmetric8"])
def test_trivial_samples_match_the_pixel_means(kind):
    """Independent pixels with the training split's per-pixel means and s.d.: over 4,000
    draws the mean is within 5 s.e. of the data's (s.d. ≤ ½, so 5·½/√4000 ≈ 0.04) and, for
    the Gaussian kinds, the s.d. within 6% (5 s.e. of a sample s.d.: 5/√8000); gray pixels
    are 0.4 or 0.6 (s.d. ≤ 0.1, so clipping at 0 and 1, 4 s.d. away, changes neither)."""
    g = torch.Generator().manual_seed(0)
    p = torch.rand(1, 4, 4, generator=g) * 0.6 + 0.2
    train = (torch.rand(500, 1, 4, 4, generator=g) < p).float()
    if kind != "binary":
        train = train * 0.2 + 0.4
    if kind == "symmetric8":
        train = 2 * train - 1
    draws = trivial_samples(train, 4000, kind=kind, seed=1)
    lo = -1.0 if kind == "symmetric8" else 0.0
    assert draws.shape == (4000, 1, 4, 4) and draws.min() >= lo and draws.max() <= 1.0
    assert (draws.mean(0) - train.mean(0)).abs().max() <= 0.04
    if kind == "binary":
        assert set(draws.unique().tolist()) <= {0.0, 1.0}
    else:
        assert (draws.std(0) / train.std(0) - 1).abs().max() <= 0.06


def test_reference_values_bracket_on_mnist():
    """500 training digits against 500 test digits (the floor) beat 500 independent-pixel
    draws (the ceiling) on FLD (by far more than the bootstrap s.e.), recall and classifier
    score. Not on precision: the ceiling's draws are one tight blob of features next to a few
    blob-like test digits, inside their balls (0.96 here; docs/quality.md)."""
    if "mnist" not in lk.data.list_datasets(available_only=True):
        pytest.skip("the embedded MNIST (extra 'mnist') is not installed here")
    data = lk.load_dataset("mnist", variant="binarized", limit=500)
    rv = reference_values(data.train, data.test, kind=data.kind, bootstrap=10)
    floor, ceiling = rv.floor, rv.ceiling
    assert floor.n_samples == ceiling.n_samples == floor.n_reference == 500
    assert ceiling.fld - floor.fld > 10 * (ceiling.fld_se + floor.fld_se)
    assert floor.recall > 0.5 > ceiling.recall
    assert floor.classifier.score > ceiling.classifier.score
    assert set(rv.to_dict()) == {"floor", "ceiling"}


def test_draw_samples_batches_seeds_and_reports():
    """n draws in batches with on_batch(done) after each; the seed fixes them and leaves the
    global random state as it was; the sampler is named."""
    model = lk.load_model("vae", data_shape=(4,), latent_dim=2, architecture="linear")
    seen: list[int] = []
    state = torch.get_rng_state()
    a = draw_samples(model, 7, batch_size=3, seed=5, on_batch=seen.append)
    assert torch.equal(torch.get_rng_state(), state)
    b = draw_samples(model, 7, batch_size=3, seed=5)
    assert seen == [3, 6, 7] and a.images.shape == (7, 4) and torch.equal(a.images, b.images)
    assert a.sampler == "ancestral, 1 layer" and a.seconds >= 0 and math.isfinite(a.seconds)
    c = draw_samples(model, 2, sampler=lambda m, n: torch.zeros(n, 4), sampler_name="zeros")
    assert c.sampler == "zeros" and torch.equal(c.images, torch.zeros(2, 4))


def test_the_docs_examples_run(capsys):
    """docs/quality.md's python blocks run as written (MNIST's needs the embedded set)."""
    if "mnist" not in lk.data.list_datasets(available_only=True):
        pytest.skip("the embedded MNIST (extra 'mnist') is not installed here")
    text = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "quality.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) == 2
    for i, code in enumerate(blocks):
        exec(compile(code, f"docs/quality.md[block {i}]", "exec"), {"__name__": "docs_quality"})
    out = capsys.readouterr().out
    assert "FLD" in out and "floor" in out
