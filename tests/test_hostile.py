"""Hostile use of the command line and the checkpoint files, one case per test: each test
tries what a hostile run of ``latentkit`` found, and fails without its fix
(docs/reliability.md, "Hostile runs").

Most tests call ``latentkit.cli.main`` in this process; the run-folder lock needs a second
real process (a lock is per process, and ``kill -9`` must release it).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from cli_runner import (  # tests/ is on sys.path
    LOCK_NAME,
    TINY,
    copy_of,
    digest,
    error_line,
    run_cli,
    tiny_run,
)

import latentkit as lk
from latentkit import checkpoint as ckpt
from latentkit.trained import load_trained_model
from latentkit.training import TrainConfig, Trainer

REPLACED = ".replaced-"  # latentkit.cli.REPLACED_PREFIX


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A finished 4-step run, copied by each test that changes it."""
    return tiny_run(tmp_path_factory.mktemp("hostile"))


# ------------------------------------------------------------------ data loss


@pytest.mark.parametrize(
    "bad",
    [["--data", "file:/nonexistent/x.npy"], ["--batch-size", "100000"],
     ["--set", "hidden=[1000000000]"]],
    ids=["missing-data", "batch-larger-than-data", "model-beyond-memory"],
)  # fmt: skip
def test_overwrite_refused_later_leaves_the_old_run_untouched(base, tmp_path, bad):
    """`train --overwrite` that fails validation (data, batch, model size) exits with one
    line and leaves every file of the old run as it was."""
    run = copy_of(base, tmp_path)
    before = digest(run)
    code, _, err = run_cli(["train", *TINY, "--steps", "2", "--overwrite", "--run-dir", str(run),
                            *bad])  # fmt: skip
    assert code in (1, 2)
    error_line(err)
    assert digest(run) == before


def test_overwrite_that_fails_before_its_first_checkpoint_restores_the_old_run(
    base, tmp_path, monkeypatch
):
    """The new run fails in fit before it wrote a checkpoint: the old run comes back whole,
    and nothing is left aside."""
    run = copy_of(base, tmp_path)
    before = digest(run)

    def fail(self, **kw):
        raise lk.errors.TrainingError("step 1: injected failure")

    monkeypatch.setattr(Trainer, "fit", fail)
    code, _, err = run_cli(["train", *TINY, "--steps", "2", "--overwrite", "--run-dir", str(run)])
    assert code == 1 and "injected" in error_line(err, alone=False)
    assert digest(run) == before
    assert not list(run.glob(REPLACED + "*"))


def test_overwrite_replaces_the_whole_old_run_once_the_new_one_has_started(base, tmp_path):
    """A successful --overwrite leaves only the new run: no old checkpoint, best/ or metric
    line, nothing aside."""
    run = copy_of(base, tmp_path)
    (run / "best").mkdir()
    shutil.copy(ckpt.latest_checkpoint(run), run / "best")
    code, _, err = run_cli(["train", *TINY, "--steps", "3", "--overwrite", "--run-dir", str(run)])
    assert code == 0, err
    assert [p.name for p in ckpt.list_checkpoints(run / "checkpoints")] == ["step-00000003.json"]
    assert not (run / "best").exists() and not list(run.glob(REPLACED + "*"))
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert max(steps) == 3


def test_an_overwrite_killed_before_its_first_checkpoint_is_undone_by_the_next_train(
    base, tmp_path
):
    """A kill -9 between moving the old run aside and the new run's first checkpoint: the
    next `train` into the folder puts the old run back (and, without --overwrite, refuses)."""
    run = copy_of(base, tmp_path)
    before = digest(run)
    aside = run / f"{REPLACED}killed"
    aside.mkdir()
    for name in ("checkpoints", "metrics.jsonl", "config.json", "config.toml"):
        os.replace(run / name, aside / name)
    (run / "metrics.jsonl").write_text('{"step": 1, "split": "train"}\n')  # the new run's
    code, _, err = run_cli(["train", *TINY, "--steps", "2", "--run-dir", str(run)])
    assert code == 2 and "already holds a run" in err.splitlines()[-1]
    assert digest(run) == before and not aside.exists()


def test_a_second_writer_of_a_run_folder_is_refused_and_kill_9_frees_it(tmp_path):
    """While one `latentkit train` process writes a run folder, a second is refused with one
    line; after `kill -9` of the first (no handler runs) the folder is free again."""
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "latentkit.cli", "train", *TINY, "--steps", "1000000",
           "--checkpoint-every", "0", "--set", "train.log_every=5",
           "--run-dir", str(run)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.monotonic() + 120
        while not (run / "metrics.jsonl").exists():
            assert first.poll() is None, first.communicate()[1].decode()[-2000:]
            assert time.monotonic() < deadline, "the first writer never started"
            time.sleep(0.1)
        code, _, err = run_cli(["train", *TINY, "--steps", "2", "--overwrite", "--run-dir",
                                str(run)])  # fmt: skip
        assert code == 1 and "another latentkit process" in error_line(err)
    finally:
        first.kill()  # SIGKILL
        first.wait()
    code, _, err = run_cli(["train", *TINY, "--steps", "2", "--overwrite", "--run-dir", str(run)])
    assert code == 0, err


def test_report_into_a_folder_another_process_writes_is_refused(base):
    """`report` writes report.json and figures into the run folder: it takes the folder's lock
    like `train`, so it never interleaves with a writer (here the lock held by this process)."""
    from filelock import FileLock

    before = digest(base)
    with FileLock(str(base / LOCK_NAME)):
        code, _, err = run_cli(["report", str(base), "--iwae-k", "0", "--diagnose", "0"])
    assert code == 1 and "another latentkit process" in error_line(err)
    assert digest(base) == before


def test_python_evaluate_checks_every_row_for_nan():
    model = lk.load_model("vae", data_shape=(4,), latent_dim=2, hidden=(8,), likelihood="gaussian")
    data = torch.randn(10, 4)
    data[7, 2] = math.inf
    with pytest.raises(lk.errors.NonFiniteError, match="1 of 10 examples.*example 7"):
        lk.evaluate(model, data, iwae_k=0)


def test_fit_refuses_a_folder_holding_a_later_run_and_pruning_keeps_the_newest(tmp_path):
    """Trainer.fit with fewer steps into a folder holding a later run: refused before any
    write (TrainingError); write_checkpoint never prunes the checkpoint it just wrote."""
    x = (torch.rand(64, 6) > 0.5).float()

    def trainer(steps: int) -> Trainer:
        model = lk.load_model("vae", data_shape=(6,), latent_dim=2, hidden=(8,))
        cfg = TrainConfig(steps=steps, batch_size=16, checkpoint_every=2, progress=False)
        return Trainer(model, x, cfg, run_dir=tmp_path / "run")

    trainer(8).fit()
    before = digest(tmp_path / "run")
    with pytest.raises(lk.errors.TrainingError, match="later step"):
        trainer(4).fit()
    assert digest(tmp_path / "run") == before
    d = tmp_path / "pruned"
    for step in (100, 200, 10):
        written = ckpt.write_checkpoint(d, step, {"w": torch.zeros(1)}, {}, keep_last=2)
    assert written.exists()
    assert [p.name for p in ckpt.list_checkpoints(d)] == [
        "step-00000010.json",
        "step-00000100.json",
        "step-00000200.json",
    ]


# ------------------------------------------------------------------ edited checkpoints


def _edit(run: Path, change) -> Path:
    path = ckpt.latest_checkpoint(run)
    record = json.loads(path.read_text())
    change(record)
    path.write_text(json.dumps(record))
    return path


@pytest.mark.parametrize(
    "edit",
    [
        lambda r: r.pop("info_sha256"),
        lambda r: r.update(step=r["step"] + 100),
        lambda r: (r.pop("info_sha256"), r.update(format_version=1, step=999)),
        lambda r: (r.pop("info_sha256"), r["model_config"].update(latent_dim=3)),
        lambda r: (r.pop("info_sha256"), r["train_config"].update(lr=1.0)),
    ],
    ids=["hash-removed", "step-changed", "version-lowered", "model-config", "train-config"],
)
def test_every_hand_edit_of_a_checkpoint_is_refused(base, tmp_path, edit):
    """Values changed, the hash removed, the format version lowered to 1 (whose JSON had no
    hash of its own): `evaluate` refuses each with one line (exit 1); so does the API."""
    run = copy_of(base, tmp_path)
    _edit(run, edit)
    with pytest.raises(lk.CheckpointError):
        load_trained_model(run)
    code, _, err = run_cli(["evaluate", str(run), "--iwae-k", "0"])
    assert code == 1
    error_line(err)


@pytest.mark.parametrize("kind", ["fifo", "link-to-device", "folder", "oversized"])
@pytest.mark.parametrize("which", ["json", "tensors"])
def test_only_regular_files_of_bounded_size_are_read_as_checkpoints(base, tmp_path, kind, which):
    """A FIFO, a link to /dev/zero, a folder, or a 100 GB sparse file in the checkpoint's
    place: refused with one line at once (no hang: a 20 s alarm; no read of the content)."""
    run = copy_of(base, tmp_path)
    path = ckpt.latest_checkpoint(run)
    if which == "tensors":
        path = path.with_suffix(".safetensors")
    path.unlink()
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "link-to-device":
        path.symlink_to("/dev/zero")
    elif kind == "folder":
        path.mkdir()
    else:
        with open(path, "wb") as f:
            f.truncate(100 * 2**30)
    code, _, err = run_cli(["evaluate", str(run), "--iwae-k", "0"], timeout=20)
    assert code == 1
    line = error_line(err)
    assert path.name in line


# ------------------------------------------------------------------ silent wrong results


def test_non_finite_optimizer_state_is_never_checkpointed(tmp_path):
    """Adam's second moment overflowing to inf (finite loss and gradient): the checkpoint is
    refused with NonFiniteTrainingError naming the tensor, and no file is written."""
    x = (torch.rand(64, 6) > 0.5).float()
    model = lk.load_model("vae", data_shape=(6,), latent_dim=2, hidden=(8,))
    cfg = TrainConfig(steps=4, batch_size=16, checkpoint_every=0, progress=False)
    trainer = Trainer(model, x, cfg, run_dir=tmp_path / "run")
    trainer.fit(until=2)
    before = digest(tmp_path / "run" / "checkpoints")
    first = next(iter(trainer.optimizer.state.values()))
    first["exp_avg_sq"].fill_(math.inf)
    with pytest.raises(lk.errors.NonFiniteTrainingError, match="exp_avg_sq"):
        trainer.fit()
    assert digest(tmp_path / "run" / "checkpoints") == before


@pytest.mark.parametrize("steps", ["4", "2"])
def test_resume_to_no_more_steps_is_refused_and_changes_nothing(base, tmp_path, steps):
    run = copy_of(base, tmp_path)
    before = digest(run)
    code, _, err = run_cli(["train", "--resume", "--run-dir", str(run), "--steps", steps])
    assert code == 2 and "nothing to train" in error_line(err)
    assert digest(run) == before


def test_fit_at_its_last_step_writes_nothing(tmp_path):
    """Trainer.fit when the step is already config.steps: no evaluation, no metrics line."""
    x = (torch.rand(64, 6) > 0.5).float()
    model = lk.load_model("vae", data_shape=(6,), latent_dim=2, hidden=(8,))
    cfg = TrainConfig(steps=2, batch_size=16, progress=False)
    trainer = Trainer(model, x, cfg, test_data=x, run_dir=tmp_path / "run")
    trainer.fit()
    before = digest(tmp_path / "run")
    assert trainer.fit().step == 2
    assert digest(tmp_path / "run") == before


def test_report_of_an_older_checkpoint_names_that_checkpoint(base, tmp_path):
    run = copy_of(base, tmp_path)
    code, _, err = run_cli(["train", "--resume", "--run-dir", str(run), "--steps", "6",
                            "--no-progress", "--set", "train.keep_checkpoints=3"])  # fmt: skip
    assert code == 0, err
    older = run / "checkpoints" / "step-00000004.json"
    code, _, err = run_cli(["report", str(older), "--iwae-k", "0"])
    assert code == 0, err
    report = json.loads((run / "report.json").read_text())
    assert report["checkpoint"] == str(older) and report["step"] == 4


def test_sample_into_a_folder_writes_inside_it(base, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    code, _, err = run_cli(["sample", str(base), "-n", "4", "--out", str(out), "--tensors",
                            str(out)])  # fmt: skip
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["samples.png", "samples.safetensors"]
    assert not (tmp_path / "out.png").exists()


@pytest.mark.parametrize("name", ["grid", "grid.jpgx", "dangling.png"])
def test_sample_out_that_is_not_a_png_path_is_one_line(base, tmp_path, name):
    """--out without .png (matplotlib would append one, or fail on the format), or a link to
    a missing target without it: exit 2, one line, nothing written."""
    out = tmp_path / name
    if name == "dangling.png":
        out.symlink_to(tmp_path / "missing")
    code, _, err = run_cli(["sample", str(base), "-n", "4", "--out", str(out)])
    assert code == 2 and "PNG" in error_line(err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ([name] if out.is_symlink() else [])


def test_json_through_a_symlink_writes_its_target_and_keeps_the_link(base, tmp_path):
    target, link = tmp_path / "target.json", tmp_path / "link.json"
    target.write_text("{}")
    link.symlink_to(target)
    code, _, err = run_cli(["evaluate", str(base), "--iwae-k", "0", "--json", str(link)])
    assert code == 0, err
    assert link.is_symlink() and json.loads(target.read_text())["step"] == 4


@pytest.mark.parametrize("kind", ["fifo", "folder"])
def test_an_output_path_that_is_not_a_regular_file_is_refused(base, tmp_path, kind):
    """--json or --out naming a FIFO (a write would block forever) or --json a folder."""
    path = tmp_path / "out"
    os.mkfifo(path) if kind == "fifo" else path.mkdir()
    code, _, err = run_cli(["evaluate", str(base), "--iwae-k", "0", "--json", str(path)], 20)
    assert code == 1 and str(path) in error_line(err)
    if kind == "fifo":
        code, _, err = run_cli(["sample", str(base), "-n", "4", "--out", str(path)], 20)
        assert code == 1 and str(path) in error_line(err)


def test_evaluation_checks_every_row_for_nan(base):
    """A NaN in row 5 (not the first) of the data to evaluate: refused, not a NaN ELBO."""
    model, _ = load_trained_model(base)
    data = (torch.rand(10, *model.data_shape) > 0.5).float()
    data[5, 0] = math.nan
    from rich.console import Console

    from latentkit.report import _run_evaluation

    console = Console(stderr=True, quiet=True)
    with pytest.raises(lk.errors.NonFiniteError, match="1 of 10 examples.*example 5"):
        _run_evaluation(model, data, options={}, discrete=True, seed=0, err=console)


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"RANK": "1"}, "WORLD_SIZE"),
        ({"WORLD_SIZE": "2"}, "RANK"),
        ({"RANK": "0", "WORLD_SIZE": "x"}, "WORLD_SIZE"),
        ({"RANK": "3", "WORLD_SIZE": "2"}, "RANK"),
        ({"LOCAL_RANK": "-1", "RANK": "0", "WORLD_SIZE": "1"}, "LOCAL_RANK"),
        ({"RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "h", "MASTER_PORT": "99999"},
         "MASTER_PORT"),
        ({"RANK": "0", "WORLD_SIZE": "2", "MASTER_PORT": "1234"}, "MASTER_ADDR"),
        ({"RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "a b", "MASTER_PORT": "1"},
         "MASTER_ADDR"),
    ],
)  # fmt: skip
def test_a_partial_or_bad_distributed_environment_is_one_line(monkeypatch, env, name):
    """A stray RANK (or a bad WORLD_SIZE, LOCAL_RANK, MASTER_*) never silences a command:
    exit 2 and one line naming the variable."""
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    code, out, err = run_cli(["list"])
    assert code == 2 and out == ""
    assert name in error_line(err)


# ------------------------------------------------------------------ one line, not a traceback


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["train", *TINY, "--seed", str(2**64)], ["'seed'", "4,294,967,295"]),
        (["train", *TINY, "--lr", "1e39"], ["'lr'", "float32"]),
        (["train", *TINY, "--steps", str(10**10)], ["'steps'", "1,000,000,000"]),
        (["train", *TINY, "--set", "hidden=[1000000000]"], ["parameters", "memory"]),
        (["train", *TINY, "--eval-limit", "-1"], ["--eval-limit", "≥ 0"]),
        (["train", *TINY, "--iwae-k", str(10**13)], ["--iwae-k", "1,000,000"]),
        (["evaluate", "RUN", "--eval-limit", "-3"], ["--eval-limit", "≥ 0"]),
        (["evaluate", "RUN", "--iwae-k", str(10**13)], ["--iwae-k", "1,000,000"]),
        (["evaluate", "RUN", "--num-samples", "0"], ["--num-samples", "≥ 1"]),
        (["evaluate", "RUN", "--batch-size", "-1"], ["--batch-size", "≥ 1"]),
        (["evaluate", "RUN", "--num-samples", "9000", "--batch-size", "9000"], ["rows"]),
        (["evaluate", "RUN", "--seed", str(2**70)], ["--seed", "4,294,967,295"]),
        (["sample", "RUN", "-n", str(10**9)], ["--num", "10,000"]),
        (["sample", "RUN", "--seed", "-1"], ["--seed", "≥ 0"]),
        (["report", "RUN", "--iwae-k", "-1"], ["--iwae-k", "≥ 0"]),
        (["verify", "nosuchmodel"], ["nosuchmodel"]),
        (["verify", "vae", "--max-examples", "0"], ["--max-examples"]),
        (["verify", "vae", "--device", "tpu"], ["tpu"]),
    ],
    ids=lambda v: " ".join(v)[:40] if isinstance(v, list) else None,
)
def test_absurd_sizes_and_counts_are_one_line_naming_the_limit(base, tmp_path, argv, words):
    """Refused before anything is allocated or run: exit 2, one stderr line naming the value
    and its limit (verify's refusals too go to stderr, not stdout); no run folder made."""
    argv = [str(base) if a == "RUN" else a for a in argv]
    never = tmp_path / "never"
    code, out, err = run_cli([*argv, "--run-dir", str(never)] if argv[0] == "train" else argv)
    assert code == 2, err
    assert not never.exists()
    line = error_line(err)
    for w in words:
        assert w in line, (w, line)
    assert "error" not in out


@pytest.mark.parametrize(
    "content",
    [b'model = "\xff\xfe"\n', b"x = " + b"[" * 5000 + b"]" * 5000 + b"\n"],
    ids=["not-utf8", "nested"],
)
def test_a_non_utf8_or_deeply_nested_config_is_one_line(tmp_path, content):
    cfg = tmp_path / "c.toml"
    cfg.write_bytes(content)
    code, _, err = run_cli(["train", "--config", str(cfg)])
    assert code == 2 and str(cfg) in error_line(err)


def test_a_deeply_nested_set_value_is_one_line():
    code, _, err = run_cli(["train", *TINY, "--set", "latent_dim=" + "[" * 5000 + "]" * 5000])
    assert code == 2 and "nested too deeply" in error_line(err)


def test_malformed_metrics_lines_are_skipped_by_the_report(base, tmp_path):
    run = copy_of(base, tmp_path)
    with open(run / "metrics.jsonl", "ab") as f:
        f.write(b'[1, 2]\n{"split": "train", "step": "x", "elbo": 1}\n\xff\xfe\n'
                b'{"split": "train", "step": 3, "elbo": "y", "kl": 1, "reconstruction": 1}\n'
                b'{"split": "test", "step": 9, "elbo": -1.0}\n' + b"[" * 5000 + b"\n")  # fmt: skip
    code, _, err = run_cli(["report", str(run), "--iwae-k", "0"])
    assert code == 0, err
    assert (run / "curves.png").exists()


def test_malformed_metrics_lines_are_dropped_on_resume(base, tmp_path):
    """Non-UTF-8, deeply nested and non-object lines in metrics.jsonl: --resume drops them
    (as it drops a line cut by a kill) and goes on."""
    run = copy_of(base, tmp_path)
    with open(run / "metrics.jsonl", "ab") as f:
        f.write(b"\xff\xfe\n" + b"[" * 5000 + b"\n[1, 2]\n")
    code, _, err = run_cli(["train", "--resume", "--run-dir", str(run), "--steps", "5",
                            "--no-progress"])  # fmt: skip
    assert code == 0, err
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert all(isinstance(json.loads(line), dict) for line in lines)


@pytest.mark.parametrize("bound", ["elbo", "iwae"])
def test_the_bounds_refuse_data_outside_the_likelihoods_support(bound):
    """A Bernoulli model's elbo/iwae at x = 5 is no log-probability: refused by name (once the
    family is known, no extra network call: it is kept per generative chain)."""
    model = lk.load_model("vae", data_shape=(4,), latent_dim=2, hidden=(8,), likelihood="bernoulli")

    def call(d: torch.Tensor, **kw) -> torch.Tensor:
        if bound == "elbo":
            return lk.elbo(model, d, **kw).total
        return lk.iwae(model, d, 3, **kw)

    x = torch.ones(3, 4)
    x[1, 2] = 5.0
    with pytest.raises(lk.errors.SupportError, match=r"the first, 5, at index \(1, 2\)"):
        call(x)
    assert call(torch.ones(3, 4)).shape == (3,)
    x[1, 2] = 0.5  # validate=False is the caller's promise: no check, a number comes back
    assert call(x, validate=False).shape == (3,)


def test_the_support_probe_leaves_the_callers_random_stream_alone():
    """The first elbo() of a model whose z_1 is an index probes p(x|z_1) at a prior draw: in a
    forked stream, so two same-seed calls give the same draws, first call or not."""
    model = lk.load_model("gmm")
    x = lk.sample(model, 6)
    torch.manual_seed(3)
    first = lk.elbo(model, x).total
    torch.manual_seed(3)
    second = lk.elbo(model, x).total
    assert torch.equal(first, second)
