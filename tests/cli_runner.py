"""Run ``latentkit.cli.main`` in this process with a time limit (the hostile and fuzz tests)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import shutil
import signal
from pathlib import Path

from latentkit.cli import main


class CaseTimeout(BaseException):
    """A command ran past its time (not an OSError, which the CLI turns into one line)."""


def run_cli(argv: list[str], timeout: int = 120) -> tuple[int, str, str]:
    """``main(argv)`` in this process with a time limit: (exit status, stdout, stderr)."""
    err, out = io.StringIO(), io.StringIO()

    def expire(*_):
        raise CaseTimeout(f"latentkit {' '.join(argv)} ran past {timeout} s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(timeout)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            try:
                code = main(argv)
            except SystemExit as exc:
                code = exc.code
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    return int(code), out.getvalue(), err.getvalue()


# -- what the hostile tests share: a tiny run, its files' digest, the one-line error ------

LOCK_NAME = ".latentkit.lock"  # latentkit.cli.LOCK_NAME (spelled out: the tests run on old code)
TINY = ["--model", "vae", "--data", "digits", "--limit", "64", "--batch-size", "16",
        "--no-progress", "--set", "hidden=[16]", "--set", "latent_dim=2"]  # fmt: skip


def error_line(err: str, *, alone: bool = True) -> str:
    """stderr's one ``error:`` line, its last; no traceback; with ``alone``, nothing else
    (a refusal before training starts prints nothing before it)."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err, err
    assert [line for line in lines if line.startswith("error:")] == lines[-1:], err
    assert lines[-1].startswith("error:") and (len(lines) == 1 or not alone), err
    return lines[-1]


def digest(folder: Path) -> dict[str, str]:
    """sha256 of every regular file under ``folder`` (links not followed), the lock aside."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink() and p.name != LOCK_NAME
    }


def tiny_run(folder: Path) -> Path:
    """A finished 4-step run of :data:`TINY` in ``folder/base``."""
    run = folder / "base"
    code, _, err = run_cli(["train", *TINY, "--steps", "4", "--run-dir", str(run)])
    assert code == 0, err
    return run


def copy_of(base: Path, tmp_path: Path) -> Path:
    """A copy of the run ``base`` in ``tmp_path/run``, for a test that changes it."""
    run = tmp_path / "run"
    shutil.copytree(base, run)
    return run
