"""``latentkit evaluate RUN`` and ``latentkit report RUN`` score a run as it recorded its
``[evaluate]`` table (a recipe's protocol: ``iwae_k = 5000``, ``examples = 100``), each value
overridden by its flag; a checkpoint outside a run folder has no record and takes the flags
alone; a broken record is one clear error line naming the file and the field."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from latentkit.cli import main

TINY = ["--data", "digits", "--limit", "256", "--batch-size", "32", "--no-progress"]
NET = ["--set", "hidden=[16]", "--set", "latent_dim=3"]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A VAE trained 10 steps whose run recorded ``[evaluate] iwae_k = 6, examples = 40``."""
    folder = tmp_path_factory.mktemp("recorded") / "vae"
    code = main(
        ["train", "--model", "vae", *TINY, *NET, "--steps", "10", "--run-dir", str(folder),
         "--iwae-k", "6", "--eval-limit", "40"]
    )  # fmt: skip
    assert code == 0
    recorded = json.loads((folder / "config.json").read_text())["evaluate"]
    assert recorded["iwae_k"] == 6 and recorded["examples"] == 40
    return folder


def _evaluate(capsys, *args: str) -> tuple[dict, str]:
    assert main(["evaluate", *args, "--json", "-"]) == 0
    captured = capsys.readouterr()
    return json.loads(captured.out), captured.err


def test_evaluate_takes_the_runs_recorded_table(run, capsys):
    payload, err = _evaluate(capsys, str(run))
    assert payload["iwae_k"] == 6 and payload["num_examples"] == 40
    assert "[evaluate] as the run recorded it: examples = 40, iwae_k = 6 (a flag" in err


def test_how_a_run_was_watched_is_not_inherited(run, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    doc = json.loads((copy / "config.json").read_text())
    doc["evaluate"]["progress"] = False
    (copy / "config.json").write_text(json.dumps(doc))
    _, err = _evaluate(capsys, str(copy))
    assert "iwae_k = 6" in err and "progress" not in err


def test_a_flag_overrides_the_recorded_value_it_names_only(run, capsys):
    payload, err = _evaluate(capsys, str(run), "--iwae-k", "2")
    assert payload["iwae_k"] == 2 and payload["num_examples"] == 40
    assert "examples = 40" in err and "iwae_k" not in err


def test_a_checkpoint_in_the_run_folder_takes_the_runs_table(run, capsys):
    checkpoint = sorted((run / "checkpoints").glob("step-*.json"))[-1]
    payload, _ = _evaluate(capsys, str(checkpoint))
    assert payload["iwae_k"] == 6 and payload["num_examples"] == 40


def test_a_checkpoint_outside_any_run_folder_takes_the_flags_alone(run, tmp_path, capsys):
    checkpoint = sorted((run / "checkpoints").glob("step-*.json"))[-1]
    for path in (checkpoint, checkpoint.with_suffix(".safetensors")):
        shutil.copy(path, tmp_path / path.name)
    payload, err = _evaluate(capsys, str(tmp_path / checkpoint.name), "--iwae-k", "3")
    assert payload["iwae_k"] == 3 and payload["num_examples"] == 256  # the default: all
    assert "as the run recorded it" not in err


def test_report_takes_the_runs_recorded_table(run, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    assert main(["report", str(copy), "--no-progress"]) == 0
    evaluation = json.loads((copy / "report.json").read_text())["evaluation"]
    assert evaluation["iwae_k"] == 6 and evaluation["num_examples"] == 40


@pytest.mark.parametrize(
    ("table", "named"),
    [({"iwae_k": "many"}, "iwae_k"), ({"examples": -1}, "examples"), ([1, 2], "[evaluate]")],
)
def test_a_broken_record_is_one_error_naming_the_file_and_field(
    run, tmp_path, capsys, table, named
):
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    doc = json.loads((copy / "config.json").read_text())
    doc["evaluate"] = table
    (copy / "config.json").write_text(json.dumps(doc))
    assert main(["evaluate", str(copy), "--json", "-"]) == 2
    err = capsys.readouterr().err
    assert "config.json" in err and named in err and "Traceback" not in err
