"""docs/reproduction.md quotes what its kept artifacts say: every test NLL and ELBO in the
evaluation files of docs/reproduction/, and every paired difference recomputed from the
per-image bound files. A figure edited by hand, or an artifact replaced without the doc
(or the reverse), fails here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import latentkit as lk

DOCS = Path(__file__).resolve().parents[1] / "docs"
KEPT = DOCS / "reproduction"
EVALS = sorted(KEPT.glob("*.eval-k5000-*.json"))


def _doc() -> str:
    return " ".join((DOCS / "reproduction.md").read_text(encoding="utf-8").split())


def test_there_are_evaluations_to_check():
    assert len(EVALS) >= 5


@pytest.mark.parametrize("path", EVALS, ids=lambda p: p.name)
def test_every_kept_evaluation_is_quoted_as_measured(path):
    report = json.loads(path.read_text(encoding="utf-8"))
    nll, elbo = report["nll_nats"], report["elbo"]
    assert report["iwae_k"] == 5000
    doc = _doc()
    assert f"{nll['mean']:.2f} ± {nll['stderr']:.2f}" in doc, path.name
    assert f"−{-elbo['mean']:.2f} ± {elbo['stderr']:.2f}" in doc, path.name


def _iwae(name: str, first: int = 2000) -> torch.Tensor:
    return load_file(KEPT / name)["iwae"][:first].double()


# (lower-NLL run's file, the other's, the difference as the doc words it): NLL(b) − NLL(a).
PAIRED = [
    ("iwae-paper-iwae-k5.first2000.safetensors", "iwae-paper-vae-150k.first2000.safetensors"),
    ("iwae-paper-vae-450k.all10000.safetensors", "iwae-paper-vae-150k.first2000.safetensors"),
    ("iwae-paper-vae.all10000.safetensors", "iwae-paper-vae-150k.first2000.safetensors"),
    ("iwae-paper-iwae-k5-60k.first2000.safetensors", "iwae-paper-vae-150k.first2000.safetensors"),
    ("iwae-paper-2layer-80k.first2000.safetensors", "iwae-paper-vae-150k.first2000.safetensors"),
    ("iwae-paper-2layer.first2000.safetensors", "iwae-paper-vae-150k.first2000.safetensors"),
    ("iwae-paper-2layer.first2000.safetensors", "iwae-paper-vae.all10000.safetensors"),
    ("iwae-paper-2layer.first2000.safetensors", "iwae-paper-2layer-80k.first2000.safetensors"),
]


@pytest.mark.parametrize(("a", "b"), PAIRED, ids=lambda n: n.split(".")[0])
def test_every_paired_difference_is_quoted_as_recomputed(a, b):
    """The difference of the better run's per-image −IWAE₅₀₀₀ from the other's, on the same
    first 2,000 test images, with its paired standard error, as the doc prints it."""
    diff = lk.paired_difference(_iwae(a), _iwae(b))
    assert diff.mean > 0, (a, b)  # the first of each pair is the better one
    assert f"{diff.mean:.2f} ± {diff.stderr:.2f}" in _doc(), (a, b, diff)


def test_per_image_files_average_to_their_evaluation():
    """A per-image file is the evaluation's own: its mean is the JSON's IWAE bound."""
    for run, images in [
        ("iwae-paper-vae", "all10000"),
        ("iwae-paper-vae-450k", "all10000"),
        ("iwae-paper-iwae-k5", "first2000"),
        ("iwae-paper-2layer", "first2000"),
    ]:
        per_image, report = f"{run}.{images}.safetensors", f"{run}.eval-k5000-{images}.json"
        bound = load_file(KEPT / per_image)["iwae"].double()
        mean = json.loads((KEPT / report).read_text(encoding="utf-8"))["iwae"]["mean"]
        # float32 per-image values summed in float64: agreement to ~1e-6 relative
        assert abs(bound.mean().item() - mean) < 1e-4, per_image
