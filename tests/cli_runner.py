"""Run ``latentkit.cli.main`` in this process with a time limit (the hostile and fuzz tests)."""

from __future__ import annotations

import contextlib
import io
import signal

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
