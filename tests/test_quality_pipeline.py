"""Sample quality in the pipeline: ``--sample-quality N`` in ``train --report``, ``report`` and
``evaluate`` (report.json's ``sample_quality`` block, the table, the progress bar), the
refusal of data the feature network cannot read before anything is sampled, and
``latentkit compare`` showing and sorting by the FLD.

One tiny reported run is shared: a VAE, 4 steps on 250 binarized MNIST images, its report
made with 200 samples. A test that changes a run works on a copy.
"""

from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import attrs
import pytest
import torch
from cli_runner import digest, error_line, run_cli, tiny_run

import latentkit as lk
from latentkit import quality
from latentkit.quality import pipeline
from latentkit.report import examples_digest
from latentkit.trained import load_trained_model

N = 200
MNIST = ["--model", "vae", "--data", "mnist", "--limit", "250", "--batch-size", "16",
         "--no-progress", "--set", "hidden=[16]", "--set", "latent_dim=2"]  # fmt: skip
QUICK = ["--iwae-k", "4", "--diagnose", "0", "--eval-limit", "32"]
FIGURES = {"fld", "fld_se", "bootstrap", "precision", "recall", "k", "classifier", "n_samples",
           "n_reference", "kind", "network", "network_sha256", "seconds"}  # fmt: skip
BLOCK = FIGURES | {"sampler", "sampler_steps", "sampling_seconds", "clipped", "seed",
                   "reference", "reference_values"}  # fmt: skip
CLASSIFIER = {"score", "mean_entropy", "marginal_entropy", "class_counts", "accuracy",
              "accuracy_se", "label_log_prob"}  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("quality") / "mnist"
    with pytest.MonkeyPatch.context() as mp:
        # The report's PNGs (matplotlib, 0.5 s each) are not what these tests read.
        mp.setattr("latentkit.report._model_plots", lambda *args, **kwargs: {})
        mp.setattr("latentkit.report._diagnostics_plots", lambda *args, **kwargs: {})
        code, _, err = run_cli(["train", *MNIST, "--steps", "4", "--report", *QUICK,
                                "--sample-quality", str(N), "--run-dir", str(folder)])  # fmt: skip
    assert code == 0, err
    return folder


def _copy(run: Path, tmp_path: Path, name: str = "run") -> Path:
    target = tmp_path / name
    shutil.copytree(run, target)
    return target


def _block(run: Path) -> dict:
    return json.loads((run / "report.json").read_text())["sample_quality"]


def _without(block: dict, *keys: str) -> dict:
    """The block without its timings (and ``keys``): what two runs of it share exactly."""
    drop = {"seconds", "sampling_seconds", *keys}
    out = {k: v for k, v in block.items() if k not in drop}
    if "reference_values" in out:
        out["reference_values"] = {
            side: {k: v for k, v in values.items() if k != "seconds"}
            for side, values in out["reference_values"].items()
        }
    return out


def test_train_report_writes_the_block_with_every_key_as_the_python_api_computes_it(run):
    """report.json's block holds every documented key; its figures are those of the public
    steps (draw_samples, prepare_reference, sample_quality, reference_values) at the
    evaluation seed, to the last bit."""
    block = _block(run)
    assert set(block) == BLOCK and set(block["classifier"]) == CLASSIFIER
    assert block["n_samples"] == block["n_reference"] == N and block["kind"] == "binary"
    assert block["network_sha256"] == quality.SHIPPED_SHA256 and block["k"] == 3
    assert block["sampler"] == "ancestral, 1 latent layer" and block["sampler_steps"] == 1
    assert block["seed"] == 0 and block["bootstrap"] == 50
    assert block["sampling_seconds"] >= 0 and block["seconds"] > 0
    ds = lk.load_dataset("mnist", variant="binarized", limit=250)
    assert block["reference"] == {
        "split": "test",
        "examples": N,
        "examples_sha256": examples_digest(ds.test[:N]),
    }
    values = block["reference_values"]
    assert set(values) == {"floor", "ceiling"}
    assert all(set(values[s]) == FIGURES and values[s]["n_samples"] == N for s in values)
    # the floor (real digits) well below the ceiling (independent pixels)
    assert (
        values["floor"]["fld"] < block["fld"]
        and values["floor"]["fld"] < 0.5 * (values["ceiling"]["fld"])
    )

    model, _ = load_trained_model(run)
    drawn = quality.draw_samples(model, N, batch_size=500, seed=0)
    ref = quality.prepare_reference(ds.test[:N], kind=ds.kind)
    expected = quality.sample_quality(drawn.images, ref, seed=0).to_dict()
    bounds = quality.reference_values(ds.train, ref, n=N, seed=0).to_dict()
    assert block["clipped"] == 0.0  # Bernoulli draws: in {0, 1}
    assert _without(block, "sampler", "sampler_steps", "clipped", "seed", "reference") == _without(
        {**expected, "reference_values": bounds}
    )


def test_evaluate_prints_the_table_and_writes_the_block_into_report_json(run, tmp_path):
    """``evaluate RUN --sample-quality N``: the table (model, floor, ceiling), the block in
    --json and in the run's report.json (with the checkpoint it scored), the figures
    those of the report at the same seed; nothing else in report.json changes."""
    copy = _copy(run, tmp_path)
    before = json.loads((copy / "report.json").read_text())
    code, out, err = run_cli(["evaluate", str(copy), *QUICK, "--sample-quality", str(N),
                              "--json", str(tmp_path / "e.json")])  # fmt: skip
    assert code == 0, err
    for words in ("sample quality", "FLD ± s.e.", "precision", "recall", "classifier score",
                  "floor", "ceiling", f"{N} samples"):  # fmt: skip
        assert words in out, words
    assert "wrote the sample quality into" in err
    assert "\x1b[?25l" not in err and all(line.strip() for line in err.splitlines())  # no bar
    after = json.loads((copy / "report.json").read_text())
    block = after.pop("sample_quality")
    assert {k: v for k, v in before.items() if k != "sample_quality"} == after
    assert set(block) == BLOCK | {"checkpoint", "step"} and block["step"] == 4
    assert Path(block["checkpoint"]).name == "step-00000004.json"
    assert _without(block, "checkpoint", "step") == _without(before["sample_quality"])
    payload = json.loads((tmp_path / "e.json").read_text())
    assert _without(payload["sample_quality"]) == _without(block, "checkpoint", "step")


def test_evaluate_on_other_data_leaves_report_json_alone(run, tmp_path):
    """Data chosen by flags is not the run's: the figures are printed, report.json not
    touched, and a line says why."""
    copy = _copy(run, tmp_path)
    before = digest(copy)
    code, _, err = run_cli(["evaluate", str(copy), *QUICK, "--sample-quality", "50",
                            "--limit", "100"])  # fmt: skip
    assert code == 0, err
    assert "not written into report.json: the data was chosen by --limit" in err
    assert digest(copy) == before


@pytest.mark.parametrize("command", ["evaluate", "report"])
def test_8x8_data_is_refused_before_anything_is_evaluated_or_sampled(
    command, tmp_path, monkeypatch
):
    """A run on the 8×8 digits: one error line naming the shape the network reads, before
    the evaluation and the sampling (both would fail this test if reached); the run
    folder unchanged."""
    run = tiny_run(tmp_path)
    before = digest(run)

    def reached(*args, **kwargs):
        raise AssertionError("reached after a refusal")

    monkeypatch.setattr("latentkit.quality.pipeline.draw_samples", reached)
    monkeypatch.setattr("latentkit.report.evaluate", reached, raising=False)
    monkeypatch.setattr("latentkit.evaluation.evaluate", reached)
    code, out, err = run_cli([command, str(run), "--sample-quality", "50"])
    assert code == 1 and out == ""
    line = error_line(err)
    assert "1×8×8" in line and "1×28×28" in line and "mnist-lenet" in line
    assert digest(run) == before


def test_train_report_with_8x8_data_is_refused_before_training(tmp_path):
    """``train --report --sample-quality N`` on data the feature network cannot read: one
    error line before the first step, and no run folder made."""
    run = tmp_path / "never"
    argv = ["train", "--model", "vae", "--data", "digits", "--limit", "64", "--steps", "2",
            "--batch-size", "16", "--no-progress", "--run-dir", str(run), "--report",
            "--sample-quality", "50"]  # fmt: skip
    code, _, err = run_cli(argv)
    assert code == 1 and "1×8×8" in error_line(err)
    assert "trained" not in err and not run.exists()


def test_more_samples_than_training_images_is_refused_first(run, tmp_path, monkeypatch):
    """The floor scores N training images: N above the split's size is one line (exit 2)
    naming the size, before the sampling."""
    monkeypatch.setattr("latentkit.quality.pipeline.draw_samples", None)  # would fail
    code, _, err = run_cli(["evaluate", str(run), *QUICK, "--sample-quality", "251"])
    assert code == 2
    assert "training split has 250: ask for at most 250" in error_line(err)


def test_the_flag_is_checked_like_every_evaluate_field():
    code, _, err = run_cli(["evaluate", "RUN", "--sample-quality", "-1"])
    assert code == 2 and "--sample-quality" in error_line(err)


@pytest.mark.parametrize("no_progress", [False, True])
def test_the_sampling_bar_shows_on_a_terminal_unless_no_progress(
    no_progress, run, tmp_path, monkeypatch
):
    """On a terminal (TTY_COMPATIBLE=1 makes rich treat stderr as one) the sampling shows a
    bar labelled ``sample``; ``--no-progress`` shows no bar at all (no cursor codes)."""
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    flags = ["--no-progress"] if no_progress else []
    code, _, err = run_cli(["evaluate", str(run), *QUICK, "--sample-quality", "50",
                            "--limit", "100", *flags])  # fmt: skip
    assert code == 0, err
    bar = "\x1b[?25l"  # rich hides the cursor while a live bar shows
    if no_progress:
        assert bar not in err and "sample\x1b" not in err
    else:
        assert bar in err and "sample\x1b[0m" in err and "50/50" in err


def test_compare_lists_and_sorts_by_the_fld(run, tmp_path):
    """Two runs with sample quality: compare shows FLD ± s.e., ΔFLD with √(se₁² + se₂²),
    precision, recall and the score, and --figure fld orders them by the FLD."""
    a, b = _copy(run, tmp_path, "a"), _copy(run, tmp_path, "b")
    report = json.loads((b / "report.json").read_text())
    report["sample_quality"]["fld"] -= 50.0  # b's samples now the better ones
    (b / "report.json").write_text(json.dumps(report))
    table = lk.compare_runs([a, b], figure="fld").to_json()
    assert [r["run"] for r in table["rows"]] == ["b", "a"] and table["sorted_by"] == "fld"
    qa = json.loads((a / "report.json").read_text())["sample_quality"]
    row = next(r for r in table["rows"] if r["run"] == "b")
    assert row["fld_difference"]["mean"] == pytest.approx(-50.0, abs=1e-9)
    assert row["fld_difference"]["stderr"] == pytest.approx(2**0.5 * qa["fld_se"], rel=1e-12)
    assert row["sample_quality"]["precision"] == qa["precision"]
    md = tmp_path / "t.md"
    code, out, err = run_cli(["compare", str(a), str(b), "--figure", "fld", "--markdown", str(md)])
    assert code == 0, err
    assert "sorted by the samples' FLD" in out
    lines = [line for line in md.read_text().splitlines() if line.startswith("| ")]
    header = [c.strip() for c in lines[0].split("|")[1:-1]]
    assert header[-5:] == ["FLD ± s.e.", "ΔFLD vs a", "precision / recall",
                           "classifier score", "FLD floor / ceiling"]  # fmt: skip
    assert [line.split("|")[1].strip() for line in lines[1:]] == ["b", "a"]
    assert f"**{qa['fld'] - 50:.1f} ± {qa['fld_se']:.1f}**" in lines[1]  # the best in bold


def test_sampler_of_names_a_diffusions_steps():
    model = lk.load_model("ddpm", data_shape=(4,), num_timesteps=7, hidden=[8])
    assert quality.sampler_of(model) == ("ancestral, T = 7 steps", 7)
    vae = lk.load_model("vae", data_shape=(4,), latent_dim=2, hidden=[8])
    assert quality.sampler_of(vae) == ("ancestral, 1 latent layer", 1)


def test_the_reference_values_are_computed_once_per_data_n_and_seed(monkeypatch):
    """A process scoring several models of one data set computes the reference values once;
    another seed, N, or splits changed in place compute them again."""
    ds = lk.load_dataset("mnist", variant="binarized", limit=120)
    calls = []
    real = pipeline.reference_values

    def counted(*args, **kwargs):
        calls.append(kwargs["seed"])
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "reference_values", counted)
    monkeypatch.setattr(pipeline, "BOOTSTRAP", 2)
    model = lk.load_model(
        "vae", data_shape=(1, 28, 28), latent_dim=2, hidden=[8], likelihood="bernoulli"
    )
    first = quality.model_sample_quality(model, ds, 60, seed=3)
    again = quality.model_sample_quality(model, ds, 60, seed=3)
    assert len(calls) == 1 and _without(first) == _without(again)
    quality.model_sample_quality(model, ds, 60, seed=4)
    quality.model_sample_quality(model, ds, 50, seed=4)
    assert calls == [3, 4, 4]
    ds.train[0].zero_()  # in place: its version changes
    quality.model_sample_quality(model, ds, 50, seed=4)
    assert len(calls) == 4


def test_the_table_shows_model_floor_and_ceiling():
    floor = {"fld": 3.14159, "fld_se": 0.5, "precision": 0.9, "recall": 0.875,
             "classifier": {"score": 9.5}}  # fmt: skip
    ceiling = {"fld": 1458.4, "fld_se": 7.2, "precision": 1.0, "recall": 0.0,
               "classifier": {"score": 1.2}}  # fmt: skip
    block = {"fld": 123.456, "fld_se": 7.89, "precision": 0.8125, "recall": 0.5,
             "classifier": {"score": 6.789}, "n_samples": 10, "n_reference": 10,
             "sampler": "ancestral, T = 5 steps", "network": "net", "k": 3, "bootstrap": 2,
             "sampling_seconds": 1.0, "seconds": 2.0,
             "reference_values": {"floor": floor, "ceiling": ceiling}}  # fmt: skip
    from rich.console import Console

    console = Console(width=200, record=True, file=io.StringIO())
    console.print(quality.sample_quality_table(block))
    text = console.export_text()
    for cell in ("123 ± 8", "0.812", "0.500", "6.79", "3.14 ± 0.50", "0.875", "1458 ± 7",
                 "1.000", "0.000", "1.20", "ancestral, T = 5 steps"):  # fmt: skip
        assert cell in text, cell


def _data(shape=(1, 28, 28), kind="binary", train=250, test=250) -> SimpleNamespace:
    """What check_readable reads of a data set: name, variant, kind, shape, split sizes."""
    return SimpleNamespace(name="d", variant="v", kind=kind, data_shape=shape,
                           train=torch.zeros(train, 1), test=torch.zeros(test, 1))  # fmt: skip


def test_check_readable_draws_the_line_where_the_network_and_the_floor_need():
    """Accepted: 1×28×28 or 784 values of a pixel kind, k < N ≤ the training split, a test
    split above k. Refused (one line naming why): anything one step past."""
    for ok in (_data(), _data(shape=(784,)), _data(kind="unit"), _data(kind="symmetric8")):
        assert pipeline.check_readable(ok, 250).name == "mnist-lenet"
    assert pipeline.check_readable(_data(), pipeline.K + 1) is not None
    assert pipeline.check_readable(_data(test=pipeline.K + 1), 10) is not None
    refused = [
        (_data(shape=(1, 8, 8)), 10, lk.ShapeError, "examples are 1×8×8"),
        (_data(shape=(3, 28, 28)), 10, lk.ShapeError, "3×28×28"),
        (_data(shape=(785,)), 10, lk.ShapeError, "785"),
        (_data(kind="real"), 10, lk.ConfigError, "standardized"),
        (_data(), 251, lk.ConfigError, "training split has 250: ask for at most 250"),
        (_data(), pipeline.K, lk.ConfigError, f"need more than {pipeline.K}"),
        (_data(test=pipeline.K), 10, lk.ConfigError, f"test split has {pipeline.K}"),
    ]
    for data, n, error, words in refused:
        with pytest.raises(error, match=re.escape(words)):
            pipeline.check_readable(data, n)


def test_a_densitys_draws_are_clipped_to_the_datas_range_and_counted():
    """8-bit data ([−1, 1]) and a Gaussian decoder whose draws spill over it: the block
    scores the draws clipped to [−1, 1] and records the share of values that lay outside."""
    ds = lk.load_dataset("mnist", variant="8bit", limit=120)
    model = lk.load_model(
        "vae", data_shape=(1, 28, 28), latent_dim=2, hidden=[8], likelihood="gaussian"
    )
    block = quality.model_sample_quality(model, ds, 60, seed=1)
    x = quality.draw_samples(model, 60, seed=1).images
    outside = float(((x < -1) | (x > 1)).double().mean())
    assert 0 < outside < 1 and float(((x > -1) & (x < 0)).double().mean()) > 0
    assert block["clipped"] == outside
    ref = quality.prepare_reference(ds.test[:60], kind="symmetric8")
    expected = quality.sample_quality(x.clamp(-1, 1), ref, seed=1, bootstrap=pipeline.BOOTSTRAP)
    assert _without(block, "sampler", "sampler_steps", "clipped", "seed", "reference",
                    "reference_values") == _without(expected.to_dict())  # fmt: skip


def test_evaluate_writes_into_a_report_of_the_same_weights_only(run, tmp_path):
    """report.json naming a copy of the checkpoint evaluated (the same bytes elsewhere)
    takes the block; naming other weights, it is left alone, a line saying whose report it
    is."""
    copy = _copy(run, tmp_path)
    twin = tmp_path / "twin"
    twin.mkdir()
    for suffix in (".json", ".safetensors"):
        name = "step-00000004" + suffix
        shutil.copy(copy / "checkpoints" / name, twin / name)
    report = json.loads((copy / "report.json").read_text())
    report["checkpoint"] = str(twin / "step-00000004.json")
    (copy / "report.json").write_text(json.dumps(report))
    code, _, err = run_cli(["evaluate", str(copy), *QUICK, "--sample-quality", "50"])
    assert code == 0 and "wrote the sample quality into" in err, err
    assert _block(copy)["n_samples"] == 50
    weights = twin / "step-00000004.safetensors"
    blob = bytearray(weights.read_bytes())
    blob[-1] ^= 1  # other weights
    weights.write_bytes(bytes(blob))
    before = digest(copy)
    code, _, err = run_cli(["evaluate", str(copy), *QUICK, "--sample-quality", "60"])
    assert code == 0, err
    assert f"not written into report.json: it is the report of {twin}" in err
    assert digest(copy) == before


def test_with_fewer_test_images_than_samples_the_reference_is_the_whole_test_split():
    """N = 100 samples against the 60 test images there are; the floor and the ceiling are
    of N = 100 too (the samples' size, which the FLD's bias depends on)."""
    ds = lk.load_dataset("mnist", variant="binarized", limit=120)
    ds = attrs.evolve(ds, test=ds.test[:60], test_labels=ds.test_labels[:60])
    model = lk.load_model(
        "vae", data_shape=(1, 28, 28), latent_dim=2, hidden=[8], likelihood="bernoulli"
    )
    block = quality.model_sample_quality(model, ds, 100, seed=0)
    assert (block["n_samples"], block["n_reference"], block["reference"]["examples"]) == (
        100,
        60,
        60,
    )
    for side in ("floor", "ceiling"):
        assert block["reference_values"][side]["n_samples"] == 100
        assert block["reference_values"][side]["n_reference"] == 60
