"""The hostile examples of docs/reliability.md that no other test tried, one test (or one
parametrized table) per example, named by it. The examples already tested elsewhere are
listed in docs/reliability.md with their tests ("Hostile runs").

Commands run in this process (``latentkit.cli.main``) under a time limit; a lock held by this
process stands for another latentkit process (``flock`` locks belong to an open file, so a
second open in the same process is refused like another process's).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import signal
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_runner import (  # tests/ is on sys.path
    LOCK_NAME,
    TINY,
    CaseTimeout,
    copy_of,
    digest,
    error_line,
    run_cli,
    tiny_run,
)
from models_by_name import default_model, model_argv

import latentkit as lk
from latentkit import checkpoint as ckpt
from latentkit.trained import load_trained_model
from latentkit.training import TrainConfig, Trainer

DEEP = 10_000


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A finished 4-step run, copied by each test that changes it."""
    return tiny_run(tmp_path_factory.mktemp("examples"))


def command(name: str, run: Path) -> list[str]:
    """A command that reads the run's newest checkpoint."""
    return {
        "evaluate": ["evaluate", str(run), "--iwae-k", "0", "--diagnose", "0"],
        "report": ["report", str(run), "--iwae-k", "0", "--diagnose", "0"],
        "sample": ["sample", str(run), "-n", "4"],
        "resume": ["train", "--resume", "--run-dir", str(run), "--steps", "6", "--no-progress"],
    }[name]


READERS = ["evaluate", "report", "sample", "resume"]


# ------------------------------------------------------------------ edited checkpoints


def _edit_values(r: dict) -> None:
    r["model_config"]["latent_dim"] = 3  # the hash left as it was


def _remove_hash(r: dict) -> None:
    r.pop("info_sha256")
    r["train_config"]["lr"] = 1.0


def _lower_version(r: dict) -> None:
    r.pop("info_sha256")
    r.update(format_version=1, step=999)


@pytest.mark.parametrize("edit", [_edit_values, _remove_hash, _lower_version],
                         ids=["values-changed", "hash-removed", "version-lowered"])  # fmt: skip
@pytest.mark.parametrize("reader", READERS)
def test_a_hand_edited_checkpoint_is_refused_by_every_command(base, tmp_path, reader, edit):
    """A checkpoint JSON edited by hand (a value changed; the hash removed; the format
    version lowered to 1, which had no hash of its own content) is refused with one line by
    evaluate, report, sample and train --resume, and the run folder is left as it was."""
    run = copy_of(base, tmp_path)
    path = ckpt.latest_checkpoint(run)
    record = json.loads(path.read_text())
    edit(record)
    path.write_text(json.dumps(record))
    before = digest(run)
    code, _, err = run_cli(command(reader, run))
    assert code == 1
    assert path.name in error_line(err)
    assert digest(run) == before


@pytest.mark.parametrize("kind", ["fifo-as-json", "link-to-dev-zero-as-tensors"])
@pytest.mark.parametrize("reader", READERS)
def test_a_checkpoint_that_is_not_a_regular_file_never_hangs_any_command(
    base, tmp_path, reader, kind
):
    """A FIFO named like the newest checkpoint's JSON, or the tensor file a link to
    /dev/zero: one line naming it, at once (20 s alarm), from every command that reads it."""
    run = copy_of(base, tmp_path)
    if kind == "fifo-as-json":
        path = run / "checkpoints" / "step-00000009.json"
        os.mkfifo(path)
    else:
        path = ckpt.latest_checkpoint(run).with_suffix(".safetensors")
        path.unlink()
        path.symlink_to("/dev/zero")
    code, _, err = run_cli(command(reader, run), timeout=20)
    assert code == 1
    assert path.name in error_line(err)


@pytest.mark.parametrize("reader", ["evaluate", "resume"])
def test_garbage_tensors_under_forged_hashes_are_one_line(base, tmp_path, reader):
    """A safetensors file replaced by junk (or cut short) whose JSON a forger re-hashed: the
    hashes match, and the file is still refused by its format, one line."""
    run = copy_of(base, tmp_path)
    path = ckpt.latest_checkpoint(run)
    tensors = path.with_suffix(".safetensors")
    for blob in (os.urandom(4096), tensors.read_bytes()[:2000]):
        tensors.write_bytes(blob)
        record = json.loads(path.read_text())
        record["tensors_sha256"] = hashlib.sha256(blob).hexdigest()
        record["info_sha256"] = ckpt._info_digest(record)
        path.write_text(json.dumps(record))
        code, _, err = run_cli(command(reader, run))
        assert code == 1
        assert "not a valid safetensors file" in error_line(err)


# ------------------------------------------------------------------ silent wrong results


@pytest.mark.parametrize("fault", ["nan-weight", "inf-adam-moment"])
def test_the_last_good_checkpoint_named_after_a_nan_stop_evaluates_finite(tmp_path, fault):
    """A run stopped by a non-finite weight (read as a NaN loss) or Adam moment (the loss and
    gradient stay finite): the error names the last good checkpoint, which loads and whose
    ELBO on the training data is finite for every example."""
    torch.manual_seed(0)
    x = (torch.rand(64, 6) > 0.5).float()
    model = lk.load_model("vae", data_shape=(6,), latent_dim=2, hidden=(8,))
    cfg = TrainConfig(steps=12, batch_size=16, checkpoint_every=2, progress=False)
    trainer = Trainer(model, x, cfg, run_dir=tmp_path / "run")
    trainer.fit(until=4)
    with torch.no_grad():
        if fault == "nan-weight":
            next(trainer.model.parameters()).view(-1)[0] = math.nan
        else:
            next(iter(trainer.optimizer.state.values()))["exp_avg_sq"].fill_(math.inf)
    with pytest.raises(lk.errors.NonFiniteTrainingError) as exc:
        trainer.fit()
    named = re.search(r"last good checkpoint is (\S+\.json)", str(exc.value))
    assert named is not None, str(exc.value)
    assert Path(named.group(1)) == ckpt.latest_checkpoint(tmp_path / "run")
    good, info = load_trained_model(named.group(1))
    assert info["step"] == 4
    report = lk.evaluate(good, x, iwae_k=0)
    per_example = lk.elbo(good, x).total
    assert bool(torch.isfinite(per_example).all()) and math.isfinite(report.elbo.mean)


@pytest.mark.parametrize("cmd", ["train", "evaluate", "sample", "report", "verify"])
def test_a_stray_rank_never_silences_a_command(base, tmp_path, monkeypatch, cmd):
    """RANK=1 alone (no WORLD_SIZE): every command exits 2 with one line naming the missing
    variable, prints nothing on stdout, writes nothing (before, it printed nothing, exit 0)."""
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("RANK", "1")
    argv = {
        "train": ["train", *TINY, "--steps", "2", "--run-dir", str(tmp_path / "new")],
        "evaluate": command("evaluate", base),
        "sample": command("sample", base),
        "report": command("report", base),
        "verify": ["verify", "vae", "--max-examples", "1"],
    }[cmd]
    before = digest(base)
    code, out, err = run_cli(argv)
    assert code == 2 and out == ""
    assert "WORLD_SIZE" in error_line(err)
    assert digest(base) == before and not (tmp_path / "new").exists()


# ------------------------------------------------------------------ one line, not a traceback


def test_a_10000_deep_set_value_for_a_train_field_is_one_line(tmp_path):
    code, _, err = run_cli(["train", *TINY, "--run-dir", str(tmp_path / "r"),
                            "--set", "train.lr=" + "[" * DEEP + "]" * DEEP])  # fmt: skip
    assert code == 2 and "nested too deeply" in error_line(err)
    assert not (tmp_path / "r").exists()


def test_a_10000_deep_toml_value_is_one_line(tmp_path):
    cfg = tmp_path / "deep.toml"
    cfg.write_text('model = "vae"\n[train]\nlr = ' + "[" * DEEP + "]" * DEEP + "\n")
    code, _, err = run_cli(["train", "--config", str(cfg), "--run-dir", str(tmp_path / "r")])
    assert code == 2 and str(cfg) in error_line(err)


@pytest.mark.parametrize("model", ["ddpm", "vdm"])
def test_a_10_to_the_12_step_schedule_is_one_line(tmp_path, model):
    """A diffusion of 10¹² timesteps (its schedule alone would be 8 TB): refused when the
    configuration is read, one line naming num_timesteps, exit 2, no run folder."""
    run = tmp_path / "r"
    argv = ["train", "--model", model, "--data", "digits", "--limit", "64", "--batch-size",
            "16", "--no-progress", "--steps", "2", "--set", f"num_timesteps={10**12}"]  # fmt: skip
    code, out, err = run_cli([*argv, "--run-dir", str(run)])
    assert code == 2 and out == ""
    assert "num_timesteps" in error_line(err)
    assert not run.exists()


@pytest.mark.parametrize(
    "failure",
    [
        RuntimeError(
            "[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate "
            "memory: you tried to allocate 8000000000008 bytes. Error code 12"
        ),
        MemoryError(),
    ],
    ids=["torch-cpu-allocator", "python-memory-error"],
)
def test_an_allocation_failure_is_one_line(monkeypatch, failure):
    """An allocation no estimate foresaw (torch's CPU allocator's RuntimeError, or a
    MemoryError): exit 1, one line that starts "error: out of memory", no traceback."""
    from latentkit.cli import parser

    def fail(*args, **kwargs):
        raise failure

    monkeypatch.setattr(parser, "cmd_list", fail)
    code, out, err = run_cli(["list"])
    assert code == 1 and out == ""
    assert error_line(err).startswith("error: out of memory")


def test_a_runtime_error_that_is_no_allocation_failure_is_still_a_traceback(monkeypatch):
    """Only torch's allocation failures become one line: any other RuntimeError is a bug,
    and keeps its traceback (docs/reliability.md, "Guarantees")."""
    from latentkit.cli import parser

    def boom(*args, **kwargs):
        raise RuntimeError("an internal bug")

    monkeypatch.setattr(parser, "cmd_list", boom)  # what build_parser binds `list` to
    with pytest.raises(RuntimeError, match="an internal bug"):
        run_cli(["list"])


def test_a_garbage_safetensors_data_file_is_one_line(tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(np.random.default_rng(0).bytes(1000))
    code, _, err = run_cli(["train", *TINY, "--data", f"file:{junk}", "--run-dir",
                            str(tmp_path / "r")])  # fmt: skip
    assert code == 1 and "junk.safetensors" in error_line(err)


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["evaluate", "RUN", "--limit", "-1"], "--limit"),
        (["evaluate", "RUN", "--limit", "100000000000000000000000"], "--limit"),
        (["train", *TINY, "--limit", "0"], "--limit"),
        (["evaluate", "RUN", "--diagnose", "-1"], "--diagnose"),
        (["report", "RUN", "--diagnose", "-2"], "--diagnose"),
        (["report", "RUN", "--num-samples", "-1"], "--num-samples"),
        (["train", *TINY, "--diagnose", "-1"], "--diagnose"),
    ],
    ids=lambda v: " ".join(v)[:30] if isinstance(v, list) else v,
)
def test_negative_counts_for_the_evaluation_flags_are_one_line(base, tmp_path, argv, flag):
    """The evaluation counts the other tests do not try: exit 2, one line naming the flag."""
    argv = [str(base) if a == "RUN" else a for a in argv]
    if argv[0] == "train":
        argv += ["--run-dir", str(tmp_path / "r")]
    code, out, err = run_cli(argv)
    assert code == 2 and out == ""
    assert flag in error_line(err)


def _api_cases() -> list:
    """(entry point, input kind) pairs."""
    cases = [
        pytest.param(entry, kind, id=f"{entry}-{kind}")
        for entry in ("elbo", "iwae", "evaluate")
        for kind in ("sparse", "numpy", "list", "none", "nested", "complex")
    ]
    return [
        *cases,
        pytest.param("sample", "tensor", id="sample-tensor"),
        pytest.param("sample", "numpy", id="sample-numpy"),
    ]


def _bad_input(kind: str):
    x = torch.ones(3, 4)
    return {
        "sparse": x.to_sparse(),
        "numpy": np.ones((3, 4), np.float32),
        "list": [[1.0] * 4] * 3,
        "none": None,
        "nested": torch.nested.nested_tensor([torch.ones(4), torch.ones(4)]),
        "complex": x.to(torch.complex64),
        "tensor": x,
    }[kind]


@pytest.mark.filterwarnings("ignore::UserWarning")  # torch: nested tensors are a prototype
@pytest.mark.parametrize(("entry", "kind"), _api_cases())
def test_sparse_nested_or_non_tensor_inputs_are_one_typed_error(entry, kind):
    """lk.elbo / lk.iwae / lk.evaluate given a sparse, nested, complex or non-tensor batch, and
    lk.sample given a tensor for n: one typed latentkit error with a one-line message."""
    model = lk.load_model("vae", data_shape=(4,), latent_dim=2, hidden=(8,), likelihood="bernoulli")
    value = _bad_input(kind)
    call = {
        "elbo": lambda: lk.elbo(model, value),
        "iwae": lambda: lk.iwae(model, value, 3),
        "evaluate": lambda: lk.evaluate(model, value, iwae_k=0),
        "sample": lambda: lk.sample(model, value),
    }[entry]
    with pytest.raises(lk.errors.LatentkitError) as exc:
        call()
    assert "\n" not in str(exc.value), str(exc.value)


# ------------------------------------------------------------------ misleading


def test_a_listed_model_of_fixed_shape_says_which_data_trains_it(tmp_path):
    """gmm (listed by `latentkit list`) takes no shape from the data: on the embedded data,
    one line saying which data it needs; given them (--data file:), it trains."""
    code, _, err = run_cli(["train", "--model", "gmm", "--steps", "5", "--limit", "64",
                            "--batch-size", "16", "--data", "digits", "--run-dir",
                            str(tmp_path / "a")])  # fmt: skip
    line = error_line(err)
    assert code == 2 and "[2]" in line and "[1, 8, 8]" in line and "--data file:" in line
    data = tmp_path / "two.npy"
    np.save(data, np.random.default_rng(0).normal(size=(96, 2)).astype(np.float32))
    code, _, err = run_cli(["train", "--model", "gmm", "--steps", "5", "--batch-size", "16",
                            "--data", f"file:{data}", "--variant", "real", "--no-progress",
                            "--run-dir", str(tmp_path / "b")])  # fmt: skip
    assert code == 0, err


def test_every_listed_model_trains_five_steps_from_the_command_line(tmp_path):
    """Every model `latentkit list` shows trains 5 steps on embedded data (digits), or, for a
    model of fixed shape, on a file of its shape, the way the refusal above says."""
    from latentkit.registry import get_model_spec, model_specs

    for name in sorted(model_specs()):
        argv = ["train", *model_argv(name), "--steps", "5", "--batch-size", "16",
                "--no-progress", "--iwae-k", "0", "--diagnose", "0",
                "--run-dir", str(tmp_path / name)]  # fmt: skip
        if "data_shape" in get_model_spec(name).data_fields():
            argv += ["--data", "digits", "--limit", "64"]
        else:
            shape = tuple(default_model(name).data_shape)
            data = tmp_path / f"{name}.npy"
            np.save(data, np.random.default_rng(0).normal(size=(96, *shape)).astype(np.float32))
            argv += ["--data", f"file:{data}", "--variant", "real"]
        code, _, err = run_cli(argv, timeout=120)
        assert code == 0, (name, err[-2000:])


def test_run_files_follow_the_umask_and_a_rewrite_keeps_the_mode(base, tmp_path):
    """Every file a run writes (checkpoints, config, metrics, report, samples) gets 0666 less
    the umask, as metrics.jsonl (opened for append) always did, not mkstemp's 0600; a file
    rewritten in place (metrics.jsonl on --resume) keeps the mode it had."""
    old = os.umask(0o027)
    try:
        run = tmp_path / "run"
        code, _, err = run_cli(["train", *TINY, "--steps", "2", "--run-dir", str(run)])
        assert code == 0, err
        code, _, err = run_cli(["sample", str(run), "-n", "4", "--tensors", str(run)])
        assert code == 0, err
        code, _, err = run_cli([*command("evaluate", run), "--json", str(run / "ev.json")])
        assert code == 0, err
        modes = {
            str(p.relative_to(run)): stat.S_IMODE(p.stat().st_mode)
            for p in run.rglob("*")
            if p.is_file()
        }
        assert len(modes) >= 7 and set(modes.values()) == {0o640}, modes
        (run / "metrics.jsonl").chmod(0o600)
        code, _, err = run_cli(["train", "--resume", "--run-dir", str(run), "--steps", "3",
                                "--no-progress"])  # fmt: skip
        assert code == 0, err
        assert stat.S_IMODE((run / "metrics.jsonl").stat().st_mode) == 0o600
        assert stat.S_IMODE(ckpt.latest_checkpoint(run).stat().st_mode) == 0o640
    finally:
        os.umask(old)


# ------------------------------------------------------------------ the run folder's lock


@pytest.mark.parametrize(
    "where",
    ["run-folder", "a-subfolder", "link-into-the-run-folder", "sample-default",
     "sample-tensors"],
)  # fmt: skip
def test_an_output_into_a_run_folder_another_process_holds_is_refused(base, tmp_path, where):
    """evaluate --json (or sample's grid or tensors) landing inside a run folder whose lock
    another process holds: exit 1, one line naming the lock, nothing written there; the same
    command writing outside it is not held up."""
    from filelock import FileLock

    run = copy_of(base, tmp_path)
    out = {
        "run-folder": run / "ev.json",
        "a-subfolder": run / "evaluations" / "ev.json",
        "link-into-the-run-folder": tmp_path / "link.json",
        "sample-default": None,
        "sample-tensors": run / "s.safetensors",
    }[where]
    if where == "link-into-the-run-folder":
        out.symlink_to(run / "ev.json")
    if where.startswith("sample"):
        argv = command("sample", run)
        if out is not None:
            argv += ["--out", str(tmp_path / "grid.png"), "--tensors", str(out)]
    else:
        argv = [*command("evaluate", run), "--json", str(out)]
    before = digest(run)
    with FileLock(str(run / LOCK_NAME)):
        code, _, err = run_cli(argv)
        assert code == 1
        assert "another latentkit process" in error_line(err) and LOCK_NAME in err
        assert digest(run) == before
        elsewhere = tmp_path / "elsewhere.json"
        code, _, err = run_cli([*command("evaluate", run), "--json", str(elsewhere)])
        assert code == 0 and elsewhere.exists(), err
    code, _, err = run_cli(argv)  # released: the same command goes through
    assert code == 0, err
    assert digest(run) != before


@pytest.mark.parametrize(
    "target",
    ["checkpoints/step-00000004.json", "checkpoints/step-00000004.safetensors", "config.json",
     "metrics.jsonl", "best/x.json", "link-to-the-checkpoint"],
)  # fmt: skip
def test_an_output_never_replaces_a_file_of_the_run(base, tmp_path, target):
    """`evaluate --json` or `sample --tensors` naming a run's checkpoint, configuration or
    metrics (or a link to one): exit 2, one line; before, the checkpoint was silently
    replaced by the report and the run could no longer be evaluated or resumed."""
    run = copy_of(base, tmp_path)
    if target == "link-to-the-checkpoint":
        out = tmp_path / "link.json"
        out.symlink_to(ckpt.latest_checkpoint(run))
    else:
        out = run / target
    before = digest(run)
    if out.suffix == ".safetensors":
        argv = [*command("sample", run), "--out", str(tmp_path / "g.png"), "--tensors", str(out)]
    else:
        argv = [*command("evaluate", run), "--json", str(out)]
    code, _, err = run_cli(argv)
    assert code == 2 and "the run's own" in error_line(err)
    assert digest(run) == before
    load_trained_model(run)


def test_a_folder_named_like_a_leftover_is_left_alone_on_resume(base, tmp_path):
    """Folders named like a killed writer's temporary or uncommitted tensor file in
    checkpoints/: resume neither fails on them (before: `[Errno 21] Is a directory`) nor
    deletes them; the run goes on."""
    run = copy_of(base, tmp_path)
    odd = [run / "checkpoints" / ".step-00000005.json.x.tmp",
           run / "checkpoints" / "step-00000009.safetensors"]  # fmt: skip
    for folder in odd:
        folder.mkdir()
        (folder / "keep").write_text("mine")
    code, _, err = run_cli(command("resume", run))
    assert code == 0, err
    assert ckpt.latest_checkpoint(run).name == "step-00000006.json"
    assert all((folder / "keep").read_text() == "mine" for folder in odd)


@pytest.mark.parametrize("given", ["best/step-00000004.json", "checkpoints"])
def test_report_and_sample_of_a_checkpoint_write_into_its_run_folder(base, tmp_path, given):
    """`report`/`sample` given a checkpoint in best/ (or the checkpoints/ folder itself) write
    report.json and samples.png into the run folder, under its lock, never into best/ or
    checkpoints/ (where `sample` would now be refused: they are the run's own)."""
    run = copy_of(base, tmp_path)
    (run / "best").mkdir()
    for p in ckpt.latest_checkpoint(run).parent.glob("step-00000004.*"):
        shutil.copy(p, run / "best")
    code, _, err = run_cli([*command("sample", run)[:1], str(run / given), "-n", "4"])
    assert code == 0, err
    code, _, err = run_cli(["report", str(run / given), "--iwae-k", "0", "--diagnose", "0"])
    assert code == 0, err
    assert (run / "samples.png").is_file() and (run / "report.json").is_file()
    for own in ("best", "checkpoints"):
        assert sorted(p.name for p in (run / own).iterdir()) == [
            "step-00000004.json",
            "step-00000004.safetensors",
        ]


@pytest.mark.parametrize("kind", ["fifo", "link-to-dev-zero"])
@pytest.mark.parametrize("how", ["train", "resume"])
def test_a_metrics_file_that_is_not_a_regular_file_never_hangs_train(base, tmp_path, how, kind):
    """metrics.jsonl a FIFO (appending to it blocks; before, `train` hung and even ignored
    SIGTERM) or a link to /dev/zero (resume read it to no end): one line at once, nothing
    written; `--overwrite` replaces it like any old run file."""
    run = copy_of(base, tmp_path) if how == "resume" else tmp_path / "run"
    run.mkdir(exist_ok=True)
    metrics = run / "metrics.jsonl"
    metrics.unlink(missing_ok=True)
    os.mkfifo(metrics) if kind == "fifo" else metrics.symlink_to("/dev/zero")
    before = digest(run)
    argv = command("resume", run) if how == "resume" else ["train", *TINY, "--steps", "2",
                                                           "--run-dir", str(run)]  # fmt: skip
    code, _, err = run_cli(argv, timeout=20)
    assert code == 1 and "metrics.jsonl is not a regular file" in err.splitlines()[-1]
    assert "Traceback" not in err and digest(run) == before
    if how == "train":
        code, _, err = run_cli([*argv, "--overwrite"], timeout=60)
        assert code == 0, err
        assert metrics.is_file() and not metrics.is_symlink()


def test_trainer_resume_refuses_a_metrics_file_that_is_not_a_regular_file(tmp_path):
    """The API's resume (which trims metrics.jsonl to the checkpoint's step) refuses a FIFO in
    its place with a TrainingError instead of blocking on it."""
    x = (torch.rand(64, 6) > 0.5).float()

    def trainer() -> Trainer:
        model = lk.load_model("vae", data_shape=(6,), latent_dim=2, hidden=(8,))
        cfg = TrainConfig(steps=4, batch_size=16, checkpoint_every=2, progress=False)
        return Trainer(model, x, cfg, run_dir=tmp_path / "run")

    trainer().fit(until=2)
    (tmp_path / "run" / "metrics.jsonl").unlink()
    os.mkfifo(tmp_path / "run" / "metrics.jsonl")
    resumed = trainer()

    def expire(*_):
        raise CaseTimeout("resume blocked on the FIFO for 20 s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(20)
    try:
        with pytest.raises(lk.errors.TrainingError, match="metrics.jsonl is not a regular file"):
            resumed.resume(ckpt.latest_checkpoint(tmp_path / "run"))
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.mark.parametrize("model", ["ddpm", "vdm"])
def test_a_diffusion_of_absurdly_many_timesteps_is_refused_at_validation(model):
    """num_timesteps beyond latentkit.diffusion.MAX_TIMESTEPS is a ConfigError naming the
    field, before any schedule table is built (10^8 steps ran past two minutes before)."""
    from latentkit.diffusion import MAX_TIMESTEPS

    with pytest.raises(lk.ConfigError, match="num_timesteps"):
        lk.load_model(model, data_shape=(4,), num_timesteps=100_000_000)
    with pytest.raises(lk.ConfigError, match="num_timesteps"):
        lk.load_model(model, data_shape=(4,), num_timesteps=MAX_TIMESTEPS + 1)


def test_an_unresolvable_master_addr_is_one_line(monkeypatch):
    """RANK/WORLD_SIZE for two processes and a MASTER_ADDR that does not resolve: a
    ConfigError naming it, at once (torch's rendezvous would retry it without end)."""
    from latentkit.training.runtime import distributed_env

    for k, v in {"RANK": "1", "WORLD_SIZE": "2", "MASTER_PORT": "29500"}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("MASTER_ADDR", "no-such-host.invalid")
    with pytest.raises(lk.ConfigError, match="MASTER_ADDR='no-such-host.invalid' does not resolve"):
        distributed_env()
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    assert distributed_env().world_size == 2
