"""A bounded, systematic fuzz of the whole command line: commands × flags × values × the
kind of file each path names (regular, empty, truncated, FIFO, symlink, folder, unreadable,
non-UTF-8), in every place a command reads or writes a file.

Each case runs ``latentkit.cli.main`` in this process under a 30 s alarm and must end with
exit status 0, or 1 or 2 with exactly one stderr line starting ``error:`` (the last; a run
that fails after it started has printed its header before); never a traceback;
and no file that existed before may change unless writing it is the command's job (the
report, the --json, --out and --tensors targets, through a symlink to its target). The
number of cases per kind comes from Hypothesis' statistics (docs/reliability.md):

    HYPOTHESIS_PROFILE=ci python -m pytest tests/test_cli_fuzz.py -q -p no:cacheprovider \\
        --hypothesis-show-statistics

The ``ci`` profile gives each file kind 25 cases (~20 s); ``LATENTKIT_FUZZ_BUDGET=SECONDS``
runs a ``slow`` variant that draws kinds at random, unseeded, for that many seconds.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import itertools
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from cli_runner import run_cli  # tests/ is on sys.path
from hypothesis import event, given, settings
from hypothesis import strategies as st

from latentkit import checkpoint as ckpt
from latentkit.cli import main

LOCK_NAME = ".latentkit.lock"  # the run folder's lock file: the OS lock's, not content
KINDS = ["regular", "empty", "truncated", "fifo", "symlink", "directory", "unreadable", "non-utf8"]
CASE_SECONDS = 30
TINY = ["--model", "vae", "--data", "digits", "--limit", "64", "--batch-size", "16",
        "--no-progress", "--set", "hidden=[8]", "--set", "latent_dim=2"]  # fmt: skip
CONFIG = b"""model = "vae"
[model_config]
hidden = [8]
latent_dim = 2
[train]
steps = 2
batch_size = 16
progress = false
[data]
name = "digits"
limit = 64
"""

# Values: small valid ones (cheap to run), absurd ones, and text that is no number.
_ints = st.one_of(
    st.integers(-3, 6),
    st.integers(10**10, 2**80),
    st.integers(-(2**80), -(10**10)),
)
_junk = st.sampled_from(["", "x", "1.5", "1e400", "nan", "-inf", "0x10", "٣", "\udcff", "1_0"])
_values = st.one_of(_ints.map(str), _junk, st.text(max_size=6))
_floats = st.one_of(
    st.sampled_from(["1e-3", "0", "-1", "1e39", "nan", "inf", "1e-320", "3e38"]), _junk
)
FLAGS = {
    "train": ["--steps", "--seed", "--eval-every", "--checkpoint-every", "--eval-limit",
              "--iwae-k", "--num-samples", "--limit", "--lr"],
    "evaluate": ["--seed", "--eval-limit", "--iwae-k", "--num-samples", "--batch-size",
                 "--limit"],
    "sample": ["-n", "--seed"],
    "report": ["--seed", "--eval-limit", "--iwae-k", "--num-samples"],
}  # fmt: skip
# (command, where the fuzzed file goes)
PLACES = [
    ("train", "config"),
    ("train", "data"),
    ("train", "run-dir"),
    ("evaluate", "run"),
    ("evaluate", "checkpoint-json"),
    ("evaluate", "checkpoint-tensors"),
    ("evaluate", "json-out"),
    ("sample", "checkpoint-json"),
    ("sample", "out"),
    ("sample", "tensors"),
    ("report", "run"),
    ("report", "metrics"),
]
_CASE = itertools.count()


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("fuzz-base") / "run"
    assert main(["train", *TINY, "--steps", "2", "--run-dir", str(run)]) == 0
    return run


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cli-fuzz-cases")


def _npy() -> bytes:
    buf = io.BytesIO()
    x = np.random.default_rng(0).integers(0, 2, size=(64, 1, 8, 8)).astype(np.float32)
    np.save(buf, x)
    return buf.getvalue()


def place_file(path: Path, kind: str, good: bytes, *, target: Path, link_to: str) -> None:
    """Put a file of ``kind`` at ``path``; ``good`` is what a valid one holds."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif os.path.lexists(path):
        path.unlink()
    if kind == "regular":
        path.write_bytes(good)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "symlink":
        if link_to == "file":
            target.write_bytes(good)
            path.symlink_to(target)
        else:
            path.symlink_to({"device": "/dev/zero", "dangling": str(target) + ".missing",
                             "loop": str(path)}[link_to])  # fmt: skip
    elif kind == "directory":
        path.mkdir()
    elif kind == "unreadable":  # as root the mode is ignored: the file is then just read
        path.write_bytes(good)
        path.chmod(0)
    else:
        path.write_bytes(b"\xff\xfe\x80" + good[3:])


def digest(folder: Path) -> dict[str, str]:
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_symlink() or not p.is_file() or p.name == LOCK_NAME:
            continue
        with contextlib.suppress(PermissionError):
            out[str(p.relative_to(folder))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def run_case(argv: list[str]) -> tuple[int, str]:
    code, _, err = run_cli(argv, timeout=CASE_SECONDS)
    return code, err


def build_case(draw, base: Path, scratch: Path, kind: str):
    """(argv, case folder, paths the command may write) for one drawn case."""
    command, where = draw(st.sampled_from(PLACES))
    link_to = draw(st.sampled_from(["file", "device", "dangling", "loop"]))
    case = scratch / f"case{next(_CASE)}"
    case.mkdir()
    run = case / "run"
    shutil.copytree(base, run)
    newest = ckpt.latest_checkpoint(run)
    target = case / "target"
    path = case / "file"
    writes: set[str] = set()
    if where == "config":
        place_file(path, kind, CONFIG, target=target, link_to=link_to)
        argv = ["train", "--config", str(path), "--run-dir", str(case / "new")]
    elif where == "data":
        path = case / "data.npy"
        place_file(path, kind, _npy(), target=target, link_to=link_to)
        argv = ["train", *TINY, "--data", f"file:{path}", "--steps", "2",
                "--run-dir", str(case / "new")]  # fmt: skip
    elif where == "run-dir":
        place_file(path, kind, b"not a run\n", target=target, link_to=link_to)
        argv = ["train", *TINY, "--steps", "2", "--run-dir", str(path)]
        if kind == "directory":
            writes.add("file/")
    elif where == "run":
        place_file(path, kind, newest.read_bytes(), target=target, link_to=link_to)
        argv = [command, str(path)]
    elif where in ("checkpoint-json", "checkpoint-tensors"):
        victim = newest if where == "checkpoint-json" else newest.with_suffix(".safetensors")
        place_file(victim, kind, victim.read_bytes(), target=target, link_to=link_to)
        argv = [command, str(run)]
    elif where == "metrics":
        metrics = run / "metrics.jsonl"
        place_file(metrics, kind, metrics.read_bytes(), target=target, link_to=link_to)
        argv = [command, str(run)]
    else:  # an output path: writing it (or its link's target) is the command's job
        place_file(path, kind, b"old content\n", target=target, link_to=link_to)
        flag = {"json-out": "--json", "out": "--out", "tensors": "--tensors"}[where]
        argv = [command, str(run), flag, str(path)]
        writes.update({"file", "target", "file/samples.png", "file/samples.safetensors"})
    if command in ("sample", "report"):
        writes.update({"run/samples.png", "run/report.json", "run/curves.png",
                       "run/layer_kl.png"})  # fmt: skip
    if command == "train":
        writes.add("new/")
    for flag in draw(st.lists(st.sampled_from(FLAGS[command]), max_size=2, unique=True)):
        argv += [flag, draw(_floats if flag == "--lr" else _values)]
    if command in ("evaluate", "report") and "--iwae-k" not in argv:
        argv += ["--iwae-k", "2"]  # the default 100 is slow; --iwae-k itself is fuzzed too
    event(f"kind: {kind}")
    event(f"place: {command} {where}")
    return argv, case, writes


def check_case(argv: list[str], case: Path, writes: set[str]) -> int:
    before = digest(case)
    code, err = run_case(argv)
    assert "Traceback" not in err, (argv, err)
    if code != 0:
        assert code in (1, 2), (argv, code, err)
        lines = [line for line in err.splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("error:")]
        assert errors == lines[-1:] and errors, (argv, err)
    after = digest(case)
    changed = {k for k in before if before[k] != after.get(k)}

    def allowed(name: str) -> bool:
        return name in writes or any(name.startswith(w) for w in writes if w.endswith("/"))

    assert all(allowed(k) for k in changed), (argv, sorted(changed))
    event(f"exit {code}")
    return code


@pytest.mark.parametrize("kind", KINDS)
@given(data=st.data())
def test_any_command_on_any_kind_of_file_is_exit_0_or_one_error_line(base, scratch, kind, data):
    """For each file kind: a drawn command, place, flags and values; exit 0 or one error
    line, no traceback, no hang, no pre-existing file changed but the command's outputs."""
    argv, case, writes = build_case(data.draw, base, scratch, kind)
    try:
        check_case(argv, case, writes)
    finally:
        shutil.rmtree(case, ignore_errors=True)


SLOW_BUDGET = float(os.environ.get("LATENTKIT_FUZZ_BUDGET", "0") or 0)
"""Seconds for the slow variant: its own variable, so CI's LATENTKIT_SLOW_BUDGET (the kill -9
variant's) does not add it to every CI run."""


@pytest.mark.slow
@pytest.mark.skipif(not SLOW_BUDGET, reason="set LATENTKIT_FUZZ_BUDGET=SECONDS to run it")
def test_the_cli_fuzz_for_a_time_budget(base, scratch):
    """The same property, kinds drawn at random, for LATENTKIT_FUZZ_BUDGET seconds."""
    deadline = time.monotonic() + SLOW_BUDGET

    @settings(max_examples=20, derandomize=False, database=None)
    @given(data=st.data(), kind=st.sampled_from(KINDS))
    def some(data, kind):
        argv, case, writes = build_case(data.draw, base, scratch, kind)
        try:
            check_case(argv, case, writes)
        finally:
            shutil.rmtree(case, ignore_errors=True)

    while time.monotonic() < deadline:
        some()
