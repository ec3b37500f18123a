"""``[data] repeat_labelled = R``: each labelled training example R times in the training
set, so that uniformly drawn batches hold labelled examples R times as often (the few labels
of a semi-supervised run, docs/conditional.md), and a model that counts its labelled
examples (m2's ``labelled``, which weighs each one's classification loss α / N_l) counts
the copies."""

from __future__ import annotations

import pytest
import torch
from cli_runner import digest, error_line, run_cli

import latentkit as lk
from latentkit.cli.data import training_splits

DATA = ["--data", "digits", "--limit", "300", "--batch-size", "32", "--no-progress"]
M2 = ["--model", "m2", "--set", "model.latent_dim=2", "--set", "model.hidden=[8]",
      "--set", "model.classifier_hidden=[8]"]  # fmt: skip


def test_the_labelled_examples_are_appended_r_times_in_all():
    ds = lk.load_dataset("digits", limit=300)
    spec = lk.ConditionSpec(num_classes=10)
    once = training_splits(ds, {"labels": 3}, condition=spec)
    four = training_splits(ds, {"labels": 3, "repeat_labelled": 4}, condition=spec)
    x, y = four["train_data"], four["train_labels"]
    n = once["train_data"].shape[0]
    known = once["train_labels"] >= 0
    assert int(known.sum()) == 30
    assert x.shape[0] == n + 3 * 30 and y.shape[0] == x.shape[0]
    assert torch.equal(x[:n], once["train_data"]) and torch.equal(y[:n], once["train_labels"])
    copies_x, copies_y = x[n:].reshape(3, 30, -1), y[n:].reshape(3, 30)
    for r in range(3):  # each copy: the labelled examples, images and labels, in order
        assert torch.equal(copies_x[r], once["train_data"][known].reshape(30, -1))
        assert torch.equal(copies_y[r], once["train_labels"][known])
    assert int((y >= 0).sum()) == 120 and int((y == lk.MISSING_LABEL).sum()) == n - 30


def test_m2_counts_the_copies_and_a_resumed_run_keeps_them(tmp_path):
    folder = tmp_path / "m2"
    argv = ["train", *DATA, *M2, "--set", "data.labels=3", "--set", "data.repeat_labelled=4"]
    code, _, err = run_cli([*argv, "--steps", "2", "--run-dir", str(folder)])
    assert code == 0, err
    config = (folder / "config.toml").read_text()
    assert "labelled = 120" in config and "repeat_labelled = 4" in config  # 3 × 10 × 4
    code, _, err = run_cli(["train", "--resume", "--run-dir", str(folder), "--steps", "4"])
    assert code == 0, err
    assert "labelled = 120" in (folder / "config.toml").read_text()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--set", "data.labels=3", "--set", "data.repeat_labelled=0"], "repeat_labelled"),
        (["--set", "data.repeat_labelled=2"], "with labels = 'all' every example is labelled"),
        (["--model", "vae", "--set", "data.repeat_labelled=2"], "is for a conditional model"),
        (["--set", "data.labels=3", "--set", "data.repeat_labelled=1000000"], "GiB of copies"),
        (
            ["--set", "data.labels=3", "--set", "data.repeat_labelled=2",
             "--set", "model.labelled=30"],
            "60 labelled",
        ),
    ],
    ids=["zero", "every-label", "unconditional", "too-many-copies", "labelled-disagrees"],
)  # fmt: skip
def test_bad_repeat_settings_are_refused_before_the_run_folder(tmp_path, extra, message):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "keep.txt").write_text("old")
    before = digest(folder)
    model = ["--set", "hidden=[8]"] if "--model" in extra else M2
    argv = ["train", *DATA, *model, *extra, "--steps", "2", "--run-dir", str(folder)]
    code, _, err = run_cli([*argv, "--overwrite"])
    assert code != 0
    assert message in error_line(err), err
    assert digest(folder) == before
