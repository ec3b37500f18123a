"""Checkpoints written before the public-API change still load, evaluate and resume.

tests/data/legacy_runs/ holds tiny runs trained by commit 02a93d1 (the command is in
scripts/make_legacy_reference.py) and reference.json, what each evaluated to then
(float64, seeded). Today's code must rebuild each model from its checkpoint alone and
give the same bound: float64 arithmetic on the same weights and the same random draws,
so the tolerance is round-off (1e-9 relative).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from cli_runner import run_cli

import latentkit as lk

ROOT = Path(__file__).parent / "data" / "legacy_runs"
REFERENCE = json.loads((ROOT / "reference.json").read_text())


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_legacy_checkpoint_evaluates_as_before(name):
    model, info = lk.load_trained_model(ROOT / name)
    assert info["model"] == name
    assert info["weights"] == REFERENCE[name]["weights"]
    model = model.double()
    x = lk.load_dataset("digits", variant=info["data"]["variant"]).test[:8].double()
    torch.manual_seed(0)
    with torch.no_grad():
        bound = lk.elbo(model, x, num_samples=2)
    expected = torch.tensor(REFERENCE[name]["elbo"], dtype=torch.float64)
    torch.testing.assert_close(bound.total, expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", ["vae", "ddpm", "vdm"])
def test_legacy_run_resumes(name, tmp_path):
    run = tmp_path / name
    shutil.copytree(ROOT / name, run)
    code, _, err = run_cli(
        ["train", "--run-dir", str(run), "--resume", "--steps", "4", "--no-progress"]
    )
    assert code == 0, err
    _, info = lk.load_trained_model(run)
    assert info["step"] == 4
