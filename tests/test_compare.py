"""``latentkit compare`` and ``latentkit.compare_runs``: finished runs' test figures in one
table, under one data protocol, with paired differences on the shared test examples.

Three tiny reported runs (4 steps on 64 digits each) are shared by the tests: a VAE and a
hierarchical VAE on the binarized digits, and a VAE on the 8-bit digits (another protocol).
A test that edits a run works on a copy.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_runner import error_line, run_cli
from safetensors import safe_open

import latentkit as lk
import latentkit.checkpoint as ckpt
from latentkit.compare.table import _training_text
from latentkit.report import examples_digest

BASE = ["--data", "digits", "--limit", "64", "--batch-size", "16", "--no-progress",
        "--steps", "4", "--report", "--iwae-k", "4", "--diagnose", "0"]  # fmt: skip
MODELS = {
    "vae": ["--model", "vae", "--set", "hidden=[16]", "--set", "latent_dim=2"],
    "hvae": ["--model", "hvae", "--set", "hidden=[16]", "--set", "latent_dims=[4,2]"],
    "vae8": ["--model", "vae", "--variant", "8bit", "--set", "hidden=[16]",
             "--set", "latent_dim=2"],
}  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("compare")
    out = {}
    with pytest.MonkeyPatch.context() as mp:
        # The report's PNGs (0.5 s each to render) are not what these tests read.
        mp.setattr("latentkit.report._model_plots", lambda *args, **kwargs: {})
        for name, flags in MODELS.items():
            code, _, err = run_cli(["train", *flags, *BASE, "--run-dir", str(root / name)])
            assert code == 0, err
            out[name] = root / name
    return out


def _copy(run: Path, tmp_path: Path, name: str | None = None) -> Path:
    target = tmp_path / (name or run.name)
    shutil.copytree(run, target)
    return target


def _per_example(run: Path) -> dict[str, np.ndarray]:
    """The saved per-example values, read with safetensors alone (not latentkit's reader)."""
    with safe_open(str(run / "per_example.safetensors"), framework="numpy") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


def _row(table: dict, run: str) -> dict:
    return next(r for r in table["rows"] if r["run"] == run)


def _edit_report(run: Path, edit) -> None:
    path = run / "report.json"
    report = json.loads(path.read_text())
    edit(report)
    path.write_text(json.dumps(report))


# ---------------------------------------------------------------- the table


def test_compare_prints_both_rows_and_writes_markdown_and_json(runs, tmp_path):
    md, js = tmp_path / "t.md", tmp_path / "t.json"
    code, out, err = run_cli(["compare", str(runs["vae"]), str(runs["hvae"]),
                              "--markdown", str(md), "--json", str(js)])  # fmt: skip
    assert code == 0, err
    assert "vae" in out and "hvae" in out and "IWAE" in out
    table = json.loads(js.read_text())
    assert {r["run"] for r in table["rows"]} == {"vae", "hvae"}
    means = [r["figure"]["nll_nats"]["mean"] for r in table["rows"]]
    assert means == sorted(means) and table["best"] == table["rows"][0]["run"]
    for name in ("vae", "hvae"):
        report = json.loads((runs[name] / "report.json").read_text())
        figure = _row(table, name)["figure"]
        assert figure["label"] == "−IWAE_k (k=4)" and figure["num_examples"] == 64
        assert figure["nll_nats"]["mean"] == -report["evaluation"]["iwae"]["mean"]
        assert figure["nll_nats"]["stderr"] == report["evaluation"]["iwae"]["stderr"]
        # bits/dim = nats / (D ln 2), D = 64 (8×8 binary digits)
        assert figure["bits_per_dim"]["mean"] == pytest.approx(
            figure["nll_nats"]["mean"] / (64 * math.log(2)), rel=1e-12
        )
        assert figure["bits_per_dim"]["stderr"] == pytest.approx(
            figure["nll_nats"]["stderr"] / (64 * math.log(2)), rel=1e-12
        )
        assert report["evaluation"]["bits_per_dim"]["iwae"]["mean"] == pytest.approx(
            figure["bits_per_dim"]["mean"], rel=1e-12
        )
        # the protocol the report records: the 64 test examples scored, and their digest
        test = lk.load_dataset("digits", variant="binarized", seed=0, limit=64).test
        assert report["data"]["examples"] == 64 == test.shape[0]
        assert report["data"]["examples_sha256"] == examples_digest(test)
        assert report["data"]["binarization"] == "fixed" and report["data"]["seed"] == 0
        row = _row(table, name)
        assert row["model"] == name and row["objective"] == "elbo"
        assert row["data"] == {"name": "digits", "variant": "binarized", "kind": "binary",
                               "split": "test"}  # fmt: skip
        assert [f["label"] for f in row["other_figures"]] == ["−ELBO"]
    lines = md.read_text().splitlines()
    assert lines[0].startswith("| run | model | objective | bound |")
    body = [line for line in lines[2:] if line.startswith("|")]
    assert [line.split("|")[1].strip() for line in body] == [r["run"] for r in table["rows"]]
    best = f"**{table['rows'][0]['figure']['nll_nats']['mean']:.2f} ±"
    assert best in body[0] and "**" not in body[1]  # the best bound alone in bold


def test_the_training_budget_is_recorded_and_shown(runs):
    table = lk.compare_runs([runs["vae"], runs["hvae"]]).to_json()
    for row in table["rows"]:
        t = row["training"]
        assert t["steps"] == 4 and t["batch_size"] == 16 and t["seconds_since_step"] == 0
        assert 0 < t["train_seconds"] < 60
        assert t["device"] == "cpu" and t["threads"] == torch.get_num_threads()
        assert t["world_size"] == 1
    md = lk.compare_runs([runs["vae"]]).to_markdown()
    assert "4 steps" in md and "cpu" in md and "thread" in md
    assert "from step" not in md  # counted from the start: said only of a resumed count


def test_the_python_api_is_public(runs):
    assert {"compare_runs", "Comparison", "ProtocolMismatchError", "RunFolderError"} <= set(
        lk.__all__
    )
    comparison = lk.compare_runs([str(runs["hvae"]), runs["vae"]], reference="vae")
    assert isinstance(comparison, lk.Comparison) and comparison.reference == "vae"
    assert comparison.to_markdown().count("\n|") >= 3


# ---------------------------------------------------------------- the paired difference


@pytest.mark.parametrize("figure", ["best", "elbo"])
def test_the_paired_difference_is_the_mean_of_per_example_differences(runs, figure):
    """Δ = mean_i (NLL_run(x_i) − NLL_ref(x_i)), s.e. = sd_i(·) / √N (ddof 1), recomputed
    with numpy from the saved per-example values; against the other reference, −Δ, same s.e."""
    key = "iwae" if figure == "best" else "elbo"
    a, b = _per_example(runs["vae"]), _per_example(runs["hvae"])
    assert np.array_equal(a["index"], np.arange(64)) and np.array_equal(b["index"], a["index"])
    for name, values in (("vae", a), ("hvae", b)):  # the saved values are the report's
        report = json.loads((runs[name] / "report.json").read_text())
        assert values[key].astype(np.float64).mean() == pytest.approx(
            report["evaluation"][key]["mean"], rel=1e-12
        )
    d = (-b[key].astype(np.float64)) - (-a[key].astype(np.float64))
    mean, se = d.mean(), d.std(ddof=1) / math.sqrt(d.size)
    assert se > 0
    table = lk.compare_runs([runs["vae"], runs["hvae"]], figure=figure).to_json()
    pair = _row(table, "hvae")["paired_difference"]
    assert pair["reference"] == "vae" and pair["num_examples"] == 64
    assert pair["nats"]["mean"] == pytest.approx(mean, rel=1e-12, abs=1e-12)
    assert pair["nats"]["stderr"] == pytest.approx(se, rel=1e-12)
    assert pair["bits_per_dim"]["mean"] == pytest.approx(mean / (64 * math.log(2)), rel=1e-12)
    assert _row(table, "vae")["paired_difference"] is None
    assert _row(table, "vae")["paired_note"] == "reference"
    flipped = lk.compare_runs([runs["vae"], runs["hvae"]], figure=figure, reference="hvae")
    pair = _row(flipped.to_json(), "vae")["paired_difference"]
    assert pair["nats"]["mean"] == pytest.approx(-mean, rel=1e-12, abs=1e-12)
    assert pair["nats"]["stderr"] == pytest.approx(se, rel=1e-12)


def test_runs_of_different_headline_figures_pair_each_ones_own(runs, tmp_path):
    """The reference reported no IWAE (its headline is −ELBO): Δ pairs the run's −IWAE_k
    with the reference's −ELBO, example by example."""
    ref = _copy(runs["vae"], tmp_path)
    _edit_report(ref, lambda r: r["evaluation"].update(iwae=None))
    a, b = _per_example(runs["hvae"]), _per_example(ref)
    d = (-a["iwae"].astype(np.float64)) - (-b["elbo"].astype(np.float64))
    table = lk.compare_runs([ref, runs["hvae"]]).to_json()
    assert _row(table, "vae")["figure"]["label"] == "−ELBO"
    pair = _row(table, "hvae")["paired_difference"]
    assert pair["nats"]["mean"] == pytest.approx(d.mean(), rel=1e-12)
    assert pair["nats"]["stderr"] == pytest.approx(d.std(ddof=1) / 8, rel=1e-12)  # √64


def test_a_run_without_per_example_values_gets_its_row_but_no_pair(runs, tmp_path):
    missing = _copy(runs["hvae"], tmp_path)
    (missing / "per_example.safetensors").unlink()
    table = lk.compare_runs([runs["vae"], missing]).to_json()
    row = _row(table, "hvae")
    assert row["figure"] is not None and row["paired_difference"] is None
    assert "no per_example.safetensors" in row["paired_note"]
    md = lk.compare_runs([runs["vae"], missing]).to_markdown()
    assert "— (hvae: no per_example.safetensors)" in md
    # a file that is not the one report.json wrote (another run's) is not paired either
    shutil.copy(runs["vae"] / "per_example.safetensors", missing / "per_example.safetensors")
    row = _row(lk.compare_runs([runs["vae"], missing]).to_json(), "hvae")
    assert row["paired_difference"] is None and "sha256 differs" in row["paired_note"]


def test_examples_of_other_indices_are_not_paired(runs, tmp_path):
    from safetensors.torch import load_file, save_file

    other = _copy(runs["hvae"], tmp_path)
    path = other / "per_example.safetensors"
    tensors = load_file(str(path))
    tensors["index"] = tensors["index"].flip(0).contiguous()
    save_file(tensors, str(path))
    import hashlib

    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    _edit_report(other, lambda r: r["per_example"].update(sha256=digest))
    row = _row(lk.compare_runs([runs["vae"], other]).to_json(), "hvae")
    assert row["paired_difference"] is None and "indices" in row["paired_note"]


# ---------------------------------------------------------------- one protocol


def test_runs_of_another_protocol_are_refused_naming_the_difference(runs, tmp_path):
    code, out, err = run_cli(["compare", str(runs["vae"]), str(runs["vae8"])])
    line = error_line(err)
    assert code == 1 and out == ""
    assert "variant — vae: binarized, vae8: 8bit" in line and "--allow-mixed" in line
    with pytest.raises(lk.ProtocolMismatchError) as info:
        lk.compare_runs([runs["vae"], runs["vae8"]])
    assert info.value.differences["variant"] == {"vae": "binarized", "vae8": "8bit"}
    md = tmp_path / "mixed.md"
    code, out, err = run_cli(["compare", str(runs["vae"]), str(runs["vae8"]), "--allow-mixed",
                              "--markdown", str(md)])  # fmt: skip
    assert code == 0 and "warning: the runs differ in variant" in err
    table = lk.compare_runs([runs["vae"], runs["vae8"]], allow_mixed=True).to_json()
    row = _row(table, "vae8")
    assert "variant" in row["differs_from_reference"] and row["paired_difference"] is None
    assert "other test examples" in row["paired_note"]
    assert "differs from reference" in md.read_text() and "**warning" in md.read_text()


def test_other_test_examples_alone_are_refused(runs, tmp_path):
    """Same data set, variant and count, other examples (their digest differs)."""
    other = _copy(runs["hvae"], tmp_path)
    _edit_report(other, lambda r: r["data"].update(examples_sha256="0" * 64))
    with pytest.raises(lk.ProtocolMismatchError, match="test examples — vae: sha256 "):
        lk.compare_runs([runs["vae"], other])
    row = _row(lk.compare_runs([runs["vae"], other], allow_mixed=True).to_json(), "hvae")
    assert row["differs_from_reference"] == ["test examples"]
    assert row["paired_difference"] is None


def test_another_binarization_draw_is_refused(runs, tmp_path):
    other = _copy(runs["hvae"], tmp_path)
    _edit_report(other, lambda r: r["data"].update(binarization="dynamic"))
    with pytest.raises(lk.ProtocolMismatchError, match=r"binarization — vae: fixed \(seed 0\), "
                       r"hvae: dynamic \(seed 0\)"):  # fmt: skip
        lk.compare_runs([runs["vae"], other])
    # the same test examples (only training drew differently): still paired when allowed
    row = _row(lk.compare_runs([runs["vae"], other], allow_mixed=True).to_json(), "hvae")
    assert row["differs_from_reference"] == ["binarization"]
    assert row["paired_difference"] is not None


# ---------------------------------------------------------------- sample quality


def _quality(fld: float, se: float, n: int = 200, sha: str = "9e" * 32) -> dict:
    """A report.json ``sample_quality`` block (``--sample-quality N``'s keys) of FLD ± se,
    N samples against 200 reference images."""

    def figures(fld: float, se: float, precision: float, recall: float, score: float) -> dict:
        return {"fld": fld, "fld_se": se, "bootstrap": 50, "precision": precision,
                "recall": recall, "k": 3, "classifier": {"score": score}, "n_samples": n,
                "n_reference": 200, "kind": "binary", "network": "mnist-lenet",
                "network_sha256": sha, "seconds": 0.5}  # fmt: skip

    return {**figures(fld, se, 0.75, 0.5, 6.25), "sampler": "ancestral, 1 latent layer",
            "sampler_steps": 1, "sampling_seconds": 0.1, "clipped": 0.0, "seed": 0,
            "reference": {"split": "test", "examples": 200, "examples_sha256": "ab" * 32},
            "reference_values": {"floor": figures(70.5, 9.0, 0.875, 0.875, 9.5),
                                 "ceiling": figures(1066.5, 20.0, 0.975, 0.0, 1.5)}}  # fmt: skip


def _with_quality(runs: dict, tmp_path: Path, **blocks: dict) -> list[Path]:
    """Copies of the runs named, each report.json given its block (None: left without)."""
    out = []
    for name, block in blocks.items():
        run = _copy(runs[name], tmp_path)
        if block is not None:
            _edit_report(run, lambda r, b=block: r.update(sample_quality=b))
        out.append(run)
    return out


def test_sample_quality_is_shown_beside_the_bound_and_sorts_with_figure_fld(runs, tmp_path):
    """The FLD ± s.e., ΔFLD against the reference with √(se₁² + se₂²), precision / recall,
    the score and the floor / ceiling; --figure fld orders by the FLD (the bound shown is
    the best), a run without figures last, with dashes."""
    vae, hvae = _with_quality(runs, tmp_path, vae=_quality(300.0, 4.0), hvae=_quality(250.0, 3.0))
    table = lk.compare_runs([vae, hvae]).to_json()
    assert table["sorted_by"] == "nll" and table["sample_quality_differences"] == {}
    row = _row(table, "hvae")
    assert row["fld_difference"] == {"mean": -50.0, "stderr": 5.0}  # √(4² + 3²)
    assert row["sample_quality"]["fld"] == {"mean": 250.0, "stderr": 3.0}
    assert row["sample_quality"]["floor_fld"] == 70.5
    assert row["sample_quality"]["ceiling_fld"] == 1066.5
    assert _row(table, "vae")["fld_difference"] is None  # the reference
    by_fld = lk.compare_runs([vae, hvae], figure="fld")
    assert [r.run.name for r in by_fld.rows] == ["hvae", "vae"] and by_fld.figure == "best"
    assert by_fld.best.run.name == "hvae"
    md = by_fld.to_markdown()
    lines = [line for line in md.splitlines() if line.startswith("| ")]
    assert "| FLD ± s.e. | ΔFLD vs vae | precision / recall | classifier score |" in lines[0]
    assert "**250.0 ± 3.0** | −50.0 ± 5.0 |".replace("−", "-") in lines[1]
    assert "0.750 / 0.500 | 6.25 | 70.5 / 1066.5 |" in lines[1]
    assert "| 300.0 ± 4.0 | reference |" in lines[2]
    # a third run without sample quality: listed last when sorted by it, its cells dashes
    plain = _copy(runs["vae"], tmp_path, "plain")
    rows = lk.compare_runs([vae, hvae, plain], figure="fld").rows
    assert [r.run.name for r in rows] == ["hvae", "vae", "plain"]
    last = lk.compare_runs([vae, hvae, plain], figure="fld").to_markdown().splitlines()[4]
    assert last.startswith("| plain") and last.endswith("| — | — | — | — | — |")


def test_sample_quality_measured_otherwise_is_named_and_not_sorted_by(runs, tmp_path):
    """Figures of other numbers of samples (or another feature network) do not compare: a
    warning names what differs, no ΔFLD, and --figure fld is refused unless --allow-mixed."""
    vae, hvae = _with_quality(runs, tmp_path, vae=_quality(300.0, 4.0),
                              hvae=_quality(250.0, 3.0, n=1000, sha="00" * 32))  # fmt: skip
    comparison = lk.compare_runs([vae, hvae])
    assert set(comparison.quality_differences) == {"samples", "feature network"}
    assert comparison.quality_differences["samples"] == {"vae": "200", "hvae": "1000"}
    assert "sample quality was measured with different samples" in comparison.warning()
    assert _row(comparison.to_json(), "hvae")["fld_difference"] is None
    assert "— (measured otherwise)" in comparison.to_markdown()
    with pytest.raises(lk.ProtocolMismatchError, match="samples — vae: 200, hvae: 1000"):
        lk.compare_runs([vae, hvae], figure="fld")
    code, _, err = run_cli(["compare", str(vae), str(hvae), "--figure", "fld"])
    assert code == 1 and "--allow-mixed" in error_line(err)
    code, _, err = run_cli(["compare", str(vae), str(hvae), "--figure", "fld",
                            "--allow-mixed"])  # fmt: skip
    assert code == 0 and "those FLDs do not compare" in err


def test_figure_fld_without_sample_quality_is_one_line(runs):
    code, out, err = run_cli(["compare", str(runs["vae"]), str(runs["hvae"]), "--figure", "fld"])
    assert code == 2 and out == ""
    assert "no run reports sample quality" in error_line(err) and "--sample-quality" in err


# ---------------------------------------------------------------- figures a model adds


def test_a_models_own_figures_are_shown_and_compared_by_name(runs, tmp_path):
    """A model's ``likelihood_figures`` (a continuous-time diffusion's), each shown by its own
    ``label`` (by its key when it has none: a report written before figures carried one),
    the evaluation's ODE figure (``evaluation.ode``, an NLL with the examples it flagged) and
    any other {mean, stderr} figure of the evaluation: listed, and compared with
    --figure NAME."""
    a, b = _copy(runs["vae"], tmp_path, "a"), _copy(runs["hvae"], tmp_path, "b")
    for run, nll in ((a, 40.0), (b, 41.5)):
        figures = {
            "continuous": {"what": "−ELBO_∞ (T → ∞)", "bound": "upper bound", "label": "−ELBO_∞",
                           "nll_nats": {"mean": nll + 1, "stderr": 0.5}},
            "ode": {"what": "ODE", "bound": "upper bound in expectation", "num_examples": 10,
                    "label": "ODE (decoder)", "nll_nats": {"mean": nll + 3, "stderr": 0.25}},
            "ode_direct": {"what": "−log p_ODE(x)", "bound": "exact up to solver tolerance",
                           "nll_nats": {"mean": nll + 4, "stderr": 0.25}},
        }  # fmt: skip
        ode = {"what": "−log p_ODE(x)", "num_examples": 12, "flagged": [{"index": 3}],
               "nll_nats": {"mean": nll, "stderr": 0.125}}  # fmt: skip

        def edit(r, figures=figures, nll=nll, ode=ode):
            r["likelihood_figures"] = figures
            r["evaluation"]["extra"] = {"mean": -nll - 2, "stderr": 0.75}
            r["evaluation"]["ode"] = ode

        _edit_report(run, edit)
    table = lk.compare_runs([a, b], figure="ode").to_json()
    row = _row(table, "b")
    assert row["figure"]["label"] == "ODE (1 flagged)" and row["figure"]["num_examples"] == 12
    assert row["figure"]["nll_nats"] == {"mean": 41.5, "stderr": 0.125}
    assert row["figure"]["bounds"] == "−log p_ODE(x)"
    assert row["paired_difference"] is None
    assert "no per-example values of ODE" in row["paired_note"]
    assert table["rows"][0]["run"] == "a"  # 40.0 < 41.5
    labels = {f["key"]: f for f in _row(table, "a")["other_figures"]}
    assert labels["continuous"]["label"] == "−ELBO_∞"
    assert labels["continuous"]["nll_nats"]["mean"] == 41.0
    assert labels["continuous"]["bounds"] == "≥ −log p(x)"
    assert labels["model:ode"]["label"] == "ODE (decoder)"
    assert labels["model:ode"]["nll_nats"]["mean"] == 43.0
    assert labels["model:ode"]["num_examples"] == 10
    assert labels["model:ode"]["bounds"] == "≥ −log p(x) in expectation"
    assert labels["ode_direct"]["label"] == "ode_direct"  # no label: shown by its key
    assert labels["ode_direct"]["nll_nats"]["mean"] == 44.0
    assert labels["extra"]["nll_nats"]["mean"] == 42.0  # a log-likelihood bound, negated
    row = _row(lk.compare_runs([a, b], figure="model:ode").to_json(), "a")
    assert row["figure"]["nll_nats"]["mean"] == 43.0
    code, out, err = run_cli(["compare", str(a), str(b), "--figure", "ode", "--json", "-"])
    assert code == 0, err  # --json -: the JSON alone on stdout
    assert [r["figure"]["label"] for r in json.loads(out)["rows"]] == ["ODE (1 flagged)"] * 2
    with pytest.raises(lk.ConfigError, match="no run reports 'nothing'"):
        lk.compare_runs([a, b], figure="nothing")


# ---------------------------------------------------------------- folders that are no finished run


def test_a_missing_folder_is_one_line(runs, tmp_path):
    code, out, err = run_cli(["compare", str(runs["vae"]), str(tmp_path / "nowhere")])
    assert code == 1 and out == "" and "nowhere: no such run folder" in error_line(err)
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli(["compare", str(runs["vae"]), str(tmp_path / "empty")])
    assert code == 1 and "empty: not a run folder" in error_line(err)


def test_an_unreported_run_is_one_line(runs, tmp_path):
    bare = _copy(runs["vae"], tmp_path, "bare")
    (bare / "report.json").unlink()
    code, _, err = run_cli(["compare", str(bare)])
    assert code == 1 and "no report.json" in error_line(err) and "latentkit report" in err


def test_an_unfinished_run_is_one_line(runs, tmp_path):
    run = _copy(runs["vae"], tmp_path, "cut")
    _rewrite(ckpt.latest_checkpoint(run), run, lambda r: r["train_config"].update(steps=100))
    code, _, err = run_cli(["compare", str(runs["vae"]), str(run)])
    line = error_line(err)
    assert code == 1 and "cut: unfinished: trained 4 of 100 steps" in line and "--resume" in line


def test_a_report_of_an_older_checkpoint_is_one_line(runs, tmp_path):
    run = _copy(runs["vae"], tmp_path, "stale")
    _edit_report(run, lambda r: r.update(step=2))
    with pytest.raises(lk.RunFolderError, match="report.json is of step 2, the run has trained "
                       "to step 4"):  # fmt: skip
        lk.compare_runs([run])
    # of the best checkpoint on validation (an earlier step): current
    _edit_report(run, lambda r: r.update(checkpoint=str(run / "best" / "step-00000002.json")))
    assert lk.compare_runs([run]).rows[0].run.name == "stale"


def test_an_output_over_a_runs_own_files_is_refused(runs):
    target = runs["vae"] / "checkpoints" / "table.md"
    code, out, err = run_cli(["compare", str(runs["vae"]), "--markdown", str(target)])
    assert code == 2 and out == "" and not target.exists()
    assert "the run's own" in error_line(err)


def test_bad_arguments_are_one_line(runs):
    code, _, err = run_cli(["compare", str(runs["vae"]), str(runs["vae"])])
    assert code == 2 and "the same run given twice" in error_line(err)
    code, _, err = run_cli(["compare", str(runs["vae"]), "--reference", "hvae"])
    assert code == 2 and "--reference hvae: not among the runs compared (vae)" in error_line(err)


# ---------------------------------------------------------------- the budget across a resume


def _rewrite(json_path: Path, folder: Path, edit) -> None:
    """The checkpoint at ``json_path`` written again into ``folder`` with ``edit`` applied to
    its record (what an earlier latentkit, or a longer session, would have written)."""
    tensors, info = ckpt.read_checkpoint(json_path)
    edit(info)
    keep = {k: v for k, v in info.items() if k not in ("format", "format_version", "step",
            "tensors", "tensors_sha256", "info_sha256")}  # fmt: skip
    ckpt.write_checkpoint(folder / "checkpoints", info["step"], tensors, keep)


def test_the_budget_adds_up_across_a_resume(tmp_path):
    """train_seconds of a resumed run = the sessions before its checkpoint + its own; a
    checkpoint that recorded none (an earlier latentkit) counts from its step."""
    torch.manual_seed(0)
    model = lk.load_model("vae", data_shape=(6,), latent_dim=2, hidden=(8,),
                          likelihood="bernoulli")  # fmt: skip
    x = torch.bernoulli(torch.full((32, 6), 0.4))
    config = lk.TrainConfig(steps=4, batch_size=8, progress=False, checkpoint_every=2)
    first = lk.Trainer(model, x, config, run_dir=tmp_path / "a")
    first.fit(until=2)
    _, info = ckpt.read_checkpoint(tmp_path / "a")
    assert 0 < info["budget"]["train_seconds"] <= first.train_seconds + 5e-4  # 1 ms rounding
    assert info["budget"]["since_step"] == 0 and info["budget"]["device"] == "cpu"
    # as if the sessions before step 2 had taken 1000 s
    _rewrite(ckpt.latest_checkpoint(tmp_path / "a"), tmp_path / "long",
             lambda r: r["budget"].update(train_seconds=1000.0))  # fmt: skip
    second = lk.Trainer(model, x, config, run_dir=tmp_path / "long")
    second.resume(tmp_path / "long")
    assert second.train_seconds == 1000.0
    second.fit()
    _, info = ckpt.read_checkpoint(tmp_path / "long")
    assert info["step"] == 4 and second.train_seconds > 1000.0
    assert 1000.0 < info["budget"]["train_seconds"] <= second.train_seconds + 5e-4
    _rewrite(ckpt.latest_checkpoint(tmp_path / "a"), tmp_path / "old", lambda r: r.pop("budget"))
    third = lk.Trainer(model, x, config, run_dir=tmp_path / "old")
    third.resume(tmp_path / "old")
    assert third.train_seconds == 0 and third.seconds_since_step == 2
    third.fit()
    _, info = ckpt.read_checkpoint(tmp_path / "old")
    assert info["budget"]["since_step"] == 2 and info["budget"]["train_seconds"] > 0
    words = _training_text({"steps": 4, "train_seconds": 1.5, "seconds_since_step": 2})
    assert words == "4 steps, 1.5 s (from step 2)"


def test_the_examples_digest_tells_examples_apart():
    """Same values (in any float dtype) and shape: one digest; one value or the order or the
    shape changed: another."""
    x = torch.bernoulli(torch.full((5, 1, 2, 2), 0.5, dtype=torch.float64),
                        generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert examples_digest(x) == examples_digest(x.float()) == examples_digest(x.clone())
    y = x.clone()
    y[4, 0, 1, 1] = 1 - y[4, 0, 1, 1]
    assert examples_digest(y) != examples_digest(x)
    assert not torch.equal(x.flip(0), x) and examples_digest(x.flip(0)) != examples_digest(x)
    assert examples_digest(x.reshape(5, 4)) != examples_digest(x)


def test_compare_has_help(capsys):
    from latentkit.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["compare", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "usage: latentkit compare" in out and "--allow-mixed" in out


def test_a_conditional_runs_bounds_are_given_c_and_best_is_its_marginal(runs, tmp_path):
    """A conditional run's ELBO and IWAE bound −log p(x | c) (given the test labels): labelled
    so, and its marginal NLL −log Σ_c p(c) p(x | c), the report's figure comparable with an
    unconditional run's −log p(x), is what ``best`` compares."""
    from latentkit.compare.conditional import GIVEN
    from latentkit.compare.runs import load_run

    run = tmp_path / "cvae"
    flags = [*MODELS["vae"], "--set", "model.classes=10", *BASE, "--run-dir", str(run)]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("latentkit.report._model_plots", lambda *args, **kwargs: {})
        code, _, err = run_cli(["train", *flags])
    assert code == 0, err
    record, plain = load_run(run), load_run(runs["vae"])
    block = json.loads((run / "report.json").read_text())["conditional"]
    for key in ("elbo", "iwae"):
        assert record.figures[key].bounds == GIVEN and record.figures[key].label.endswith("given c")
        assert plain.figures[key].bounds != GIVEN
    best = record.figure("best")
    assert best.key == "marginal" and best.nll.mean == block["marginal_nll"]
    assert best.num_examples == block["examples"] and "p(c) p(x|c)" in best.label
    assert plain.figure("best").key == "iwae" and "marginal" not in plain.figures
    table = lk.compare_runs([run, runs["vae"]], reference="vae").to_json()
    assert "p(c) p(x|c)" in json.dumps(_row(table, "cvae"))
