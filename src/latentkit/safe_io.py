"""Files written so that nothing is lost: atomic replacement (a temporary file, fsync, rename,
fsync of the folder), reads bounded in size and refused for anything but a regular file, and
JSON that is always valid (NaN and inf written as null)."""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import stat
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "atomic_write_bytes",
    "atomic_write_json",
    "json_safe",
    "memory_bytes",
    "read_regular_file",
    "writable_path",
]


def _fsync_dir(path: Path) -> None:
    # Makes the rename itself durable; not every platform can open a directory.
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


_HELD_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def _interrupts_held() -> Iterator[None]:
    """SIGINT and SIGTERM held back while the body runs, then delivered, in the order they
    came, to the handlers that were there before (on the main thread, where Python runs
    signal handlers; elsewhere nothing is held). So Ctrl-C inside a file's replacement lets
    the file be written whole and then interrupts: it never lands between the temporary's
    creation and its removal. A handler installed outside Python is left alone."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    before = {}
    for sig in _HELD_SIGNALS:
        if signal.getsignal(sig) is not None:
            before[sig] = signal.signal(sig, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
        for sig in caught:  # the handlers run now (a KeyboardInterrupt is raised from here)
            signal.raise_signal(sig)


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, pause: float = 0.0) -> Path:
    """Write ``data`` to ``path`` so that a reader sees the old file or the new one, never half.

    The temporary file lives in the destination folder, so ``os.replace`` is a rename on
    one file system (atomic on POSIX and Windows). ``pause`` seconds are slept between the
    temporary write and the rename (tests use it to kill a process inside that window).

    A symbolic link is written through: its target is replaced, the link stays. An existing
    target that is not a regular file (a folder, a FIFO, a device) is refused with an
    ``OSError`` and left as it is. The file's permission bits are those of the file it
    replaces, or, for a new file, 0666 less the umask (as ``open`` gives). Returns the path
    written (the link's target).

    SIGINT and SIGTERM arriving during the write are delivered once it is over (the file
    whole, or the temporary removed after a failure), so Ctrl-C never leaves a temporary
    behind (docs/reliability.md, "Ctrl-C").
    """
    path = writable_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = _mode_for(path)
    with _interrupts_held():
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            if hasattr(os, "fchmod"):  # mkstemp makes 0600; open() follows the umask
                os.fchmod(fd, mode)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            if pause > 0:
                time.sleep(pause)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        _fsync_dir(path.parent)
    return path


def _umask() -> int:
    """This process's umask, read without changing it where the platform says it (Linux's
    /proc), else by setting and restoring it."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _mode_for(path: Path) -> int:
    """The permission bits a rewrite of ``path`` gets: those of the file it replaces, or, for
    a new file, what ``open(path, "w")`` would give (0666 less the umask)."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return 0o666 & ~_umask()


def writable_path(path: str | os.PathLike) -> Path:
    """Where a write to ``path`` lands: the target of a symbolic link (followed to the end),
    else ``path``; an ``OSError`` if that exists and is not a regular file."""
    path = Path(path)
    if path.is_symlink():
        path = Path(os.path.realpath(path))
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return path
    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "not a regular file"
        raise FileExistsError(f"{path} is {kind}; not replaced")
    return path


def read_regular_file(path: str | os.PathLike, *, limit: int, what: str = "file") -> bytes:
    """The bytes of ``path`` if it is a regular file (a link to one is followed) of at most
    ``limit`` bytes; else an ``OSError`` saying what it is. A FIFO or a device is never read
    (opened non-blocking, checked with ``fstat`` before any read), nor an oversized file."""
    path = Path(path)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(f"{what} {path} is a folder")
        if not stat.S_ISREG(st.st_mode):
            raise OSError(f"{what} {path} is not a regular file (a FIFO or device?)")
        if st.st_size > limit:
            raise OSError(f"{what} {path} has {st.st_size:,} bytes, more than the {limit:,} read")
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(st.st_size + 1)  # read(n) allocates n bytes: the size, not the limit
    finally:
        os.close(fd)
    return data[: st.st_size]  # a file appended to meanwhile: what it held when opened


def memory_bytes() -> int:
    """This machine's physical memory in bytes (2**40 where the platform does not say)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, OSError, ValueError):
        return 2**40


def json_safe(obj: Any) -> Any:
    """``obj`` with every NaN or infinite float replaced by ``None`` (strict JSON has neither)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def atomic_write_json(path: str | os.PathLike, obj: Any, *, pause: float = 0.0) -> Path:
    """:func:`atomic_write_bytes` of ``obj`` as indented JSON (NaN and inf written as null)."""
    text = json.dumps(json_safe(obj), indent=2, allow_nan=False) + "\n"
    return atomic_write_bytes(path, text.encode(), pause=pause)
