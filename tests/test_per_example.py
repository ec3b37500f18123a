"""Per-example bounds (``evaluate --per-example``, ``EvalReport.per_example``) and the
paired comparison of two models on the same examples (``latentkit.paired_difference``)."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch
from cli_runner import error_line, run_cli, tiny_run
from safetensors import safe_open

import latentkit as lk

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location(
        "paired_difference", ROOT / "scripts" / "paired_difference.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _read(path: Path) -> tuple[dict, dict]:
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()


def test_the_report_keeps_each_examples_bounds_in_order():
    torch.manual_seed(0)
    model = lk.load_model("vae", data_shape=(6,), latent_dim=2, hidden=(8,),
                          likelihood="bernoulli")  # fmt: skip
    x = torch.bernoulli(torch.full((13, 6), 0.4))
    report = lk.evaluate(model, x, iwae_k=3, batch_size=5)
    per = report.per_example
    assert per["elbo"].shape == per["iwae"].shape == (13,)
    assert math.isclose(float(per["elbo"].double().mean()), report.elbo.mean, rel_tol=1e-6)
    assert math.isclose(float(per["iwae"].double().mean()), report.iwae.mean, rel_tol=1e-6)
    # in the data's order: the examples evaluated alone, with the same stream, match
    alone = lk.evaluate(model, x[:5], iwae_k=3, batch_size=5).per_example
    assert torch.equal(alone["elbo"], per["elbo"][:5])
    assert "iwae" not in lk.evaluate(model, x, iwae_k=0).per_example


def test_paired_difference_is_the_mean_and_standard_error_of_the_differences():
    a = torch.tensor([1.0, 2.0, 4.0, 7.0])
    b = torch.tensor([0.5, 1.0, 3.0, 6.5])
    d = lk.paired_difference(a, b)
    diffs = [0.5, 1.0, 1.0, 0.5]
    mean = sum(diffs) / 4
    sd = math.sqrt(sum((v - mean) ** 2 for v in diffs) / 3)
    assert d.mean == pytest.approx(mean, rel=1e-12)
    assert d.stderr == pytest.approx(sd / 2, rel=1e-12)
    assert lk.paired_difference(a, a).mean == 0 and lk.paired_difference(a, a).stderr == 0
    with pytest.raises(lk.ShapeError, match="same examples"):
        lk.paired_difference(a, b[:3])


def test_evaluate_writes_per_example_bounds_and_the_script_pairs_them(tmp_path, capsys):
    run = tiny_run(tmp_path)
    files = []
    for seed in (0, 1):
        out, js = tmp_path / f"seed{seed}.safetensors", tmp_path / f"seed{seed}.json"
        code, _, err = run_cli(["evaluate", str(run), "--iwae-k", "4", "--seed", str(seed),
                                "--diagnose", "0", "--per-example", str(out),
                                "--json", str(js)])  # fmt: skip
        assert code == 0, err
        tensors, meta = _read(out)
        report = json.loads(js.read_text())
        n = report["num_examples"]
        assert tensors["elbo"].shape == tensors["iwae"].shape == (n,)
        assert float(tensors["iwae"].double().mean()) == pytest.approx(
            report["iwae"]["mean"], rel=1e-6
        )
        assert meta["iwae_k"] == "4" and meta["seed"] == str(seed)
        files.append(out)
    assert _script().main([str(files[0]), str(files[1])]) == 0
    printed = capsys.readouterr().out
    assert "paired" in printed and "IWAE-4" in printed and "A − B" in printed


def test_per_example_into_the_runs_own_files_is_refused(tmp_path):
    run = tiny_run(tmp_path)
    target = next((run / "checkpoints").glob("*.safetensors"))
    before = target.read_bytes()
    code, _, err = run_cli(["evaluate", str(run), "--iwae-k", "2", "--diagnose", "0",
                            "--per-example", str(target)])  # fmt: skip
    assert code == 2 and target.read_bytes() == before
    assert "the run's own" in error_line(err)


def test_the_script_refuses_files_of_other_lengths(tmp_path, capsys):
    from safetensors.torch import save_file

    save_file({"elbo": torch.zeros(3)}, str(tmp_path / "a.safetensors"))
    save_file({"elbo": torch.zeros(4)}, str(tmp_path / "b.safetensors"))
    code = _script().main([str(tmp_path / "a.safetensors"), str(tmp_path / "b.safetensors")])
    assert code == 2 and "same examples" in capsys.readouterr().err


@pytest.mark.parametrize("case", ["missing", "garbage", "no-elbo"])
def test_the_script_refuses_what_is_no_per_example_file_in_one_line(tmp_path, capsys, case):
    from safetensors.torch import save_file

    good, bad = tmp_path / "good.safetensors", tmp_path / "bad.safetensors"
    save_file({"elbo": torch.zeros(3)}, str(good))
    if case == "garbage":
        bad.write_bytes(b"not a safetensors file at all")
    elif case == "no-elbo":
        save_file({"samples": torch.zeros(3, 2)}, str(bad))
    assert _script().main([str(good), str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and len(err.strip().splitlines()) == 1
