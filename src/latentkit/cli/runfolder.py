"""The run folder: one writer at a time, and nothing lost on ``--overwrite``."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console

from latentkit.checkpoint import (
    latest_checkpoint,
    read_checkpoint,
)
from latentkit.cli.common import CLIError
from latentkit.errors import LatentkitError

__all__ = ["LOCK_NAME", "REPLACED_PREFIX", "RUN_FILES", "_RunFolder"]


LOCK_NAME = ".latentkit.lock"
"""The lock file in a run folder: one ``train`` process writes a run folder at a time."""


RUN_FILES = (
    "checkpoints",
    "best",
    "metrics.jsonl",
    "config.json",
    "config.toml",
    "report.json",
    "samples.png",
    "curves.png",
    "layer_kl.png",
    "diagnostics.png",
    "diagnostics_training.png",
    "per_t.png",
    "tensorboard",
    "mlruns",
)
"""What ``train`` writes into a run folder; ``--overwrite`` moves these aside."""


REPLACED_PREFIX = ".replaced-"


def _checkpoint_info(path: Path | None) -> dict[str, Any]:
    return read_checkpoint(path)[1] if path is not None else {}


def _refuse_existing_run(run_dir: Path) -> None:
    found = latest_checkpoint(run_dir) or latest_checkpoint(run_dir / "best")
    if found is not None:
        raise CLIError(
            f"{run_dir} already holds a run (checkpoint {found}); pass "
            "--resume to continue it, --overwrite to start over, or another --run-dir"
        )


class _RunFolder:
    """The run folder, held by one ``train`` process at a time (an OS lock on
    ``RUN/.latentkit.lock``, released by the OS on any exit, ``kill -9`` included), and the
    previous run's files while ``--overwrite`` replaces them: moved aside into
    ``RUN/.replaced-*/``, deleted once the new run has written a checkpoint, restored if it
    fails before that (and restored by the next ``train`` if a kill left them there)."""

    def __init__(self, run_dir: Path, *, writer: bool, err: Console):
        self.run_dir, self.writer, self.err = run_dir, writer, err
        self.aside: Path | None = None
        self._lock: Any = None

    def __enter__(self) -> _RunFolder:
        if not self.writer:  # ranks other than 0 write nothing
            return self
        from filelock import FileLock, Timeout

        self.run_dir.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.run_dir / LOCK_NAME), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise LatentkitError(
                f"{self.run_dir} is being written by another latentkit process (it holds "
                f"{self.run_dir / LOCK_NAME}); wait for it, or use another --run-dir"
            ) from None
        self._lock = lock
        self._recover()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._lock is not None:
            self._lock.release()

    def _recover(self) -> None:
        """A ``.replaced-*`` folder left by a killed ``--overwrite``: the old run comes back
        if the new one never wrote a checkpoint, else it goes."""
        for aside in sorted(self.run_dir.glob(REPLACED_PREFIX + "*")):
            if not aside.is_dir() or aside.is_symlink():
                continue
            if latest_checkpoint(self.run_dir) is None:
                self._restore(aside)
                self.err.print(
                    f"restored the run an interrupted --overwrite left in {aside}", markup=False
                )
            else:
                shutil.rmtree(aside)

    def move_aside(self) -> None:
        if not self.writer:
            return
        present = [n for n in RUN_FILES if os.path.lexists(self.run_dir / n)]
        if not present:
            return
        self.aside = Path(tempfile.mkdtemp(prefix=REPLACED_PREFIX, dir=self.run_dir))
        for name in present:
            os.replace(self.run_dir / name, self.aside / name)

    def _restore(self, aside: Path) -> None:
        for name in RUN_FILES:  # the new run's files go, the old run's come back
            new = self.run_dir / name
            if new.is_dir() and not new.is_symlink():
                shutil.rmtree(new)
            elif os.path.lexists(new):
                new.unlink()
            if os.path.lexists(aside / name):
                os.replace(aside / name, new)
        shutil.rmtree(aside)

    def settle(self, *, started: bool) -> None:
        """After the new run: delete the old one if the new has a checkpoint, else restore."""
        if self.aside is None:
            return
        aside, self.aside = self.aside, None
        if started:
            shutil.rmtree(aside)
        else:
            self._restore(aside)
