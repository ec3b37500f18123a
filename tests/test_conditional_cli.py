"""Conditional models from the command line: train with the data's labels, sample a class
or a row per class, evaluate given the labels with the marginal NLL, and the refusals
(docs/conditional.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_runner import digest, error_line, run_cli

DATA = ["--data", "digits", "--limit", "300", "--batch-size", "32", "--no-progress"]
CVAE = ["--model", "vae", "--set", "hidden=[16]", "--set", "latent_dim=2", "--set", "classes=10"]
EVAL = ["--no-progress", "--diagnose", "0", "--iwae-k", "4", "--eval-limit", "40"]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("cvae") / "run"
    code, _, err = run_cli(["train", *DATA, *CVAE, "--steps", "3", "--run-dir", str(folder)])
    assert code == 0, err
    return folder


def test_sample_one_class_and_a_row_per_class(run, tmp_path):
    code, _, err = run_cli(["sample", str(run), "--condition", "7", "--out", str(tmp_path)])
    assert code == 0, err
    assert (tmp_path / "samples.png").exists()
    code, _out, err = run_cli(["sample", str(run), "-n", "20", "--out", str(tmp_path / "g.png")])
    assert code == 0, err
    assert (tmp_path / "g.png").exists()


def test_evaluate_is_given_the_labels_and_reports_the_marginal(run):
    code, out, err = run_cli(["evaluate", str(run), *EVAL, "--json", "-"])
    assert code == 0, err
    payload = json.loads(out)
    block = payload["conditional"]
    assert block["examples"] == 40 and block["iwae_k"] == 4
    # log p(x) ≥ log p(c) + log p(x | c) for every c: the marginal NLL is at most the
    # conditional one plus log K (here both IWAE_4 estimates, so compare their means with
    # the standard errors' room: 4 of each).
    room = 4 * (block["marginal_nll_stderr"] + payload["iwae"]["stderr"])
    assert block["marginal_nll"] <= -payload["iwae"]["mean"] + 2.3026 + room
    assert 0.0 <= block["classification_error"] <= 1.0


def test_report_writes_the_conditional_block(run):
    code, _out, err = run_cli(["report", str(run), *EVAL])
    assert code == 0, err
    assert json.loads((run / "report.json").read_text())["conditional"]["examples"] == 40


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--condition", "10"], "condition 10 is outside the label set 0..9"),
        (["--guidance", "2", "--condition", "1"], "takes no guidance scale"),
        (["--guidance", "-1"], "expected a finite number ≥ 0"),
    ],
)
def test_bad_sampling_conditions_are_one_line(run, tmp_path, argv, message):
    code, _, err = run_cli(["sample", str(run), "--out", str(tmp_path / "x.png"), *argv])
    assert code != 0
    assert message in error_line(err, alone=False)
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--set", "data.labels=5"], "objective needs every label"),
        (["--model", "vae", "--set", "data.labels=5"], "takes no labels"),
        (["--set", "classes=3"], "the train labels go up to 9; the model has 3 classes"),
        (["--set", "data.labels=0"], "labels"),
    ],
)
def test_bad_label_settings_are_refused_before_the_run_folder(tmp_path, extra, message):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "keep.txt").write_text("old")
    before = digest(folder)
    model = [] if "--model" in extra else CVAE
    argv = ["train", *DATA, *model, *extra, "--steps", "2", "--run-dir", str(folder)]
    if "--model" in extra:
        argv += ["--set", "hidden=[16]"]
    code, _, err = run_cli([*argv, "--overwrite"])
    assert code != 0
    assert message in error_line(err), err
    assert digest(folder) == before


def test_unconditional_run_refuses_a_condition(tmp_path):
    folder = tmp_path / "plain"
    argv = ["train", *DATA, "--model", "vae", "--set", "hidden=[16]", "--steps", "2"]
    code, _, err = run_cli([*argv, "--run-dir", str(folder)])
    assert code == 0, err
    code, _, err = run_cli(["sample", str(folder), "--condition", "1"])
    assert code != 0 and "takes no condition" in error_line(err, alone=False)


def test_m2_trains_semi_supervised_with_labels_per_class(tmp_path):
    """[data] labels = N keeps N labels per class for the semi-supervised objective; the
    evaluation reports q(y | x)'s classification error."""
    folder = tmp_path / "m2"
    small = ["--set", "model.latent_dim=2", "--set", "model.hidden=[8]"]
    small += ["--set", "model.classifier_hidden=[8]", "--set", "model.labelled=50"]  # 5 × 10
    argv = ["train", *DATA, "--model", "m2", *small, "--set", "data.labels=5", "--steps", "3"]
    code, _, err = run_cli([*argv, "--run-dir", str(folder)])
    assert code == 0, err
    assert "labels = 5" in (folder / "config.toml").read_text()
    code, out, err = run_cli(["evaluate", str(folder), *EVAL, "--json", "-"])
    assert code == 0, err
    assert json.loads(out)["conditional"]["classifier"] == "q(y|x)"


def test_m2_labelled_count_comes_from_the_data_or_is_refused(tmp_path):
    """M2's N_l (α / N_l weighs each labelled example) is the data's count of labelled
    training examples: filled in when not given, refused when given otherwise."""
    small = ["--set", "model.latent_dim=2", "--set", "model.hidden=[8]"]
    small += ["--set", "model.classifier_hidden=[8]", "--set", "data.labels=3"]
    argv = ["train", *DATA, "--model", "m2", *small, "--steps", "1"]
    folder = tmp_path / "filled"
    code, _, err = run_cli([*argv, "--run-dir", str(folder)])
    assert code == 0, err
    assert "labelled = 30" in (folder / "config.toml").read_text()  # 3 per class × 10
    folder = tmp_path / "refused"
    code, _, err = run_cli([*argv, "--set", "model.labelled=100", "--run-dir", str(folder)])
    line = error_line(err)
    assert code == 2 and "model.labelled=100" in line and "30 labelled" in line
    assert not folder.exists()


def test_the_marginals_k_follows_the_evaluation():
    """The conditional block's IWAE_k per class: the given k; when unset, the evaluation's own
    default (100 on a short chain; none beyond 16 layers, where it takes one importance weight
    per class, k = 1); ``iwae_k = 0`` (no IWAE asked for) is k = 1 too, not 100 (it was)."""
    import torch

    import latentkit as lk
    from latentkit.conditional_report import conditional_block

    torch.manual_seed(0)
    short = lk.load_model("vae", data_shape=(4,), latent_dim=2, classes=3)
    long = lk.load_model("ddpm", data_shape=(4,), decoder="gaussian", num_timesteps=20,
                         classes=3, hidden=(8,))  # fmt: skip
    x, c = torch.randn(6, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    for model, options, k in [
        (short, {"iwae_k": 7}, 7),
        (short, {}, 100),
        (short, {"iwae_k": 0}, 1),
        (long, {}, 1),
        (long, {"iwae_k": 0}, 1),
    ]:
        assert conditional_block(model, x, c, options, seed=0)["iwae_k"] == k


def test_the_models_own_classifier_is_scored_on_every_evaluated_example():
    """The marginal NLL costs K evaluations an example and stops at MARGINAL_EXAMPLES; M2's
    q(y | x) is one network call, so its error is over every example evaluated (``examples``,
    0: all), recomputed here with the classifier itself."""
    import torch

    import latentkit as lk
    from latentkit.conditional_report import MARGINAL_EXAMPLES, conditional_block

    torch.manual_seed(0)
    model = lk.load_model("m2", data_shape=(4,), classes=3, latent_dim=2, hidden=(8,),
                          classifier_hidden=(8,), likelihood="gaussian").eval()  # fmt: skip
    n = MARGINAL_EXAMPLES + 300
    x, c = torch.randn(n, 4), torch.randint(0, 3, (n,))
    with torch.no_grad():
        wrong = model.posterior.classify(x).probs.argmax(-1) != c
    for examples, m in [(0, n), (MARGINAL_EXAMPLES + 100, MARGINAL_EXAMPLES + 100), (50, 50)]:
        block = conditional_block(model, x, c, {"iwae_k": 1, "examples": examples}, seed=0)
        assert block["examples"] == min(m, MARGINAL_EXAMPLES)
        assert block["classification_examples"] == m
        assert block["classification_error"] == float(wrong[:m].double().mean())
