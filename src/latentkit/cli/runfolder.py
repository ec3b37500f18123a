"""The run folder: one writer at a time, and nothing lost on ``--overwrite``."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from rich.console import Console

from latentkit.checkpoint import (
    latest_checkpoint,
    read_checkpoint,
)
from latentkit.cli.common import CLIError
from latentkit.errors import LatentkitError

__all__ = [
    "LOCK_NAME",
    "REPLACED_PREFIX",
    "RUN_FILES",
    "_RunFolder",
    "holding_run_folders_of",
    "run_folder_of",
]


LOCK_NAME = ".latentkit.lock"
"""The lock file in a run folder: one ``train`` process writes a run folder at a time."""


RUN_FILES = (
    "checkpoints",
    "best",
    "metrics.jsonl",
    "config.json",
    "config.toml",
    "report.json",
    "per_example.safetensors",
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


def _acquire(run_dir: Path, advice: str = "or use another --run-dir") -> Any:
    """The run folder's OS lock, taken at once, or one line saying who holds it."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(run_dir / LOCK_NAME), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise LatentkitError(
            f"{run_dir} is being written by another latentkit process (it holds "
            f"{run_dir / LOCK_NAME}); wait for it, {advice}"
        ) from None
    return lock


def run_folder_of(output: str | os.PathLike) -> Path | None:
    """The run folder a file written at ``output`` lands in (through a symbolic link, where
    its target lands): the nearest folder above it holding a run's lock file (a process
    writing a run folder always has one there); ``None`` if there is none."""
    here = Path(os.path.realpath(output)).parent
    for folder in (here, *here.parents):
        if (folder / LOCK_NAME).is_file():
            return folder
    return None


RUN_OWN = ("checkpoints", "best", "config.json", "config.toml", "metrics.jsonl", LOCK_NAME)
"""What only ``train`` writes in a run folder: no other command's output may replace it."""


REPORT_OWN = ("report.json", "per_example.safetensors")
"""The run's report (``report``, ``train --report``), which ``compare`` reads: no other
command's output file may replace it."""


def _refuse_replacing_the_run(output: str | os.PathLike, folder: Path) -> None:
    inside = Path(os.path.realpath(output)).relative_to(folder).parts
    if inside and (inside[0] in RUN_OWN or inside[0].startswith(REPLACED_PREFIX)):
        raise CLIError(
            f"{output}: would write into {folder / inside[0]}, which is the run's own "
            "(checkpoints, configuration, metrics); write the output elsewhere"
        )
    if inside in tuple((name,) for name in REPORT_OWN):
        raise CLIError(
            f"{output}: would replace {folder / inside[0]}, the run's report (written by "
            "`latentkit report`, read by `latentkit compare`); write the output elsewhere"
        )


@contextlib.contextmanager
def holding_run_folders_of(
    outputs: Iterable[str | os.PathLike | None], *, report: Path | None = None
) -> Iterator[None]:
    """Hold the lock of every run folder one of ``outputs`` lands in, as ``train`` and
    ``report`` hold it, so a command's output never lands in a run folder another process
    is writing (or replacing with ``--overwrite``): refused at once with one line. An output
    that would replace the run's own files (:data:`RUN_OWN`) or its report
    (:data:`REPORT_OWN`) is refused first; ``report``, a run's ``report.json`` the command
    itself updates, is held, not refused."""
    folders = set()
    for output in outputs:
        folder = run_folder_of(output) if output is not None else None
        if folder is not None:
            _refuse_replacing_the_run(output, folder)
            folders.add(folder)
    if report is not None and (folder := run_folder_of(report)) is not None:
        folders.add(folder)
    with contextlib.ExitStack() as held:
        for folder in sorted(folders):
            held.callback(_acquire(folder, "or write the output elsewhere").release)
        yield


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
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._lock = _acquire(self.run_dir)
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

    def refuse_odd_metrics(self) -> None:
        """``metrics.jsonl`` is appended to (and read on resume): a FIFO, a device or a folder
        in its place (a link to one included) would block or never end; refused, one line."""
        path = self.run_dir / "metrics.jsonl"
        if not self.writer or not os.path.lexists(path):
            return
        try:
            mode = os.stat(path).st_mode
        except FileNotFoundError:  # a dangling link: appending creates its target
            return
        if not stat.S_ISREG(mode):
            raise LatentkitError(
                f"{path} is not a regular file (a FIFO, device or folder, or a link to one); "
                "remove it, or use another --run-dir"
            )

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
