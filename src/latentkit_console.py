"""The ``latentkit`` console script's entry (``[project.scripts]`` in pyproject.toml).

:func:`latentkit.cli.main` turns Ctrl-C into one line on stderr and exit status 130, but
importing it imports latentkit and torch first (a second or two on a cold start), and a Ctrl-C
in that window ended in a Python traceback. This module imports nothing heavy, so an interrupt
that lands while latentkit is still being imported is one line and 130 too.
"""

from __future__ import annotations

import os
import sys

__all__ = ["main"]

INTERRUPTED = 130
"""The exit status after Ctrl-C (SIGINT), as ``latentkit.cli`` returns it."""


def main() -> int:
    """Run the ``latentkit`` command on ``sys.argv``; returns its exit status."""
    try:
        from latentkit.cli import main as run
    except KeyboardInterrupt:
        return _say_interrupted_while_importing()
    return run()


def _say_interrupted_while_importing() -> int:
    """The line :func:`latentkit.cli.main` says after Ctrl-C, said without importing
    latentkit (the import was what Ctrl-C stopped); under torchrun only rank 0 says it."""
    command = next((w for w in sys.argv[1:] if not w.startswith("-")), "")
    rank = os.environ.get("RANK", "0").strip()
    if not ("WORLD_SIZE" in os.environ and rank.isdigit() and int(rank) != 0):
        sys.stderr.write(f"interrupted: latentkit {command} stopped (exit status {INTERRUPTED})\n")
        sys.stderr.flush()
    return INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
