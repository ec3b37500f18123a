"""Every shell command in the docs runs: each line of the ```bash / ```sh / ```console blocks
of README.md and docs/*.md, at a tiny budget, in a temporary folder.

A block runs as a reader pasting it into a shell in an empty folder would run it: its lines in
order, ``\\`` continuations joined, comments dropped, ``NAME=value`` prefixes and ``export`` as
the environment, ``T="..."`` and ``$T`` as shell variables, ``cd DIR &&`` (back in the block's
folder at the next block). ``latentkit ...`` (and ``python -m latentkit.cli ...``) runs in this
process with budget flags appended (:func:`budget`); the CLI's later flag or ``--set`` wins
over an earlier one, so the budget caps what the doc asks for and nothing of the command is
rewritten. ``python scripts/X.py ...`` runs the repository's script, ``python -m MODULE``
the module. Anything else (``pip``, ``bash``, ``torchrun``, pipes, loops) must be marked.

HTML comments right above a block mark it (docs/reliability.md, "Commands in the docs"):

    <!-- not run in tests: REASON -->              the whole block is not run
    <!-- not run in tests: `PREFIX` REASON -->     nor the block's commands starting PREFIX
    <!-- run in tests after the block above -->    in the folder of the page's previous
                                                   block (it uses a run that one made)

An unmarked command that fails, or that this runner cannot run, fails the test; so does a
marker whose PREFIX starts no command of its block, or whose reason names a test file that is
not there.

The pages in :data:`SAMPLE` run by default (about 25 s on 2 idle cores); the others are
``slow``: they run when ``LATENTKIT_SLOW_BUDGET=SECONDS`` is set (``.ci/run`` sets 45), the
README first, each command starting only while the budget lasts (all of them: about 90 s); a
page the budget cut short passes the commands it ran and is reported skipped.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import os
import re
import runpy
import shlex
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import tomllib
from cli_runner import run_cli

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["README.md", *(str(p.relative_to(ROOT)) for p in sorted((ROOT / "docs").glob("*.md")))]
SAMPLE = ["docs/cli.md", "docs/objectives.md", "docs/training.md"]
"""The pages run by default: every command of the CLI's page, and two pages of quick ones."""
SLOW_BUDGET = float(os.environ.get("LATENTKIT_SLOW_BUDGET", "0") or 0)
"""Seconds for the other pages (README first): each starts only while the budget lasts."""
_SLOW_START: list[float] = []
_now = time.monotonic
TIMEOUT = 120
"""Seconds one command may take at its budget (the slowest take ~10 s on 2 idle cores)."""
STEPS = 2
"""Steps of a training; the k-th ``--resume`` of a page trains (k + 1) times as many in all,
so it goes on past the step the run it continues reached."""

FENCE = re.compile(r"^```(bash|sh|console|shell)[ \t]*\n(.*?)^```", re.S | re.M)
SKIP = re.compile(r"\s*not run in tests:\s*(?:`([^`]+)`)?\s*(.*?)\s*$", re.S)
AFTER = "run in tests after the block above"
VARIABLE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")
ASSIGNMENT = re.compile(r"^[A-Za-z_]\w*=")


@dataclass
class Command:
    line: int
    text: str
    skip: str | None = None


@dataclass
class Block:
    page: str
    line: int
    commands: list[Command] = field(default_factory=list)
    skips: list[tuple[str | None, str]] = field(default_factory=list)
    after: bool = False


def _comments(before: str) -> list[str]:
    """The HTML comments right above a fence (blank lines between them allowed)."""
    found, rest = [], before.rstrip()
    while rest.endswith("-->") and (start := rest.rfind("<!--")) >= 0:
        found.append(rest[start + 4 : -3])
        rest = rest[:start].rstrip()
    return found


def _lines(body: str, console: bool) -> list[tuple[int, str]]:
    """(line offset, command) of a block: continuations joined, comment lines dropped; in a
    console block only the ``$ `` lines (the rest is output)."""
    out, pending, first = [], "", 0
    for i, raw in enumerate(body.splitlines()):
        if console and not pending:
            if not raw.startswith("$ "):
                continue
            raw = raw[2:]
        if not pending:
            first = i
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        line, pending = (pending + raw).strip(), ""
        if line and not line.startswith("#"):
            out.append((first, line))
    return out


def blocks(page: str, text: str | None = None) -> list[Block]:
    """The page's shell blocks, their commands marked as the comments above them say."""
    text = (ROOT / page).read_text(encoding="utf-8") if text is None else text
    found = []
    for match in FENCE.finditer(text):
        block = Block(page, text.count("\n", 0, match.start()) + 2)
        for comment in _comments(text[: match.start()]):
            skip = SKIP.match(comment)
            if skip:
                block.skips.append((skip.group(1), skip.group(2)))
            block.after |= " ".join(comment.split()) == AFTER
        for offset, line in _lines(match.group(2), match.group(1) == "console"):
            command = Command(block.line + offset, line)
            for prefix, reason in block.skips:
                if prefix is None or line.startswith(prefix):
                    command.skip = reason
            block.commands.append(command)
        found.append(block)
    return found


def _validation_asked(argv: list[str]) -> bool:
    """Whether a ``train`` command holds out a validation split: by its recipe, its
    ``--config`` file or a ``--set data.validation=N``."""
    for flag, value in itertools.pairwise(argv):
        doc: dict = {}
        if flag == "--set" and value.startswith("data.validation="):
            doc = {"data": {"validation": value.partition("=")[2].strip() not in ("0", "")}}
        elif flag == "--recipe":
            from latentkit.recipes import recipe_text

            doc = tomllib.loads(recipe_text(value))
        elif flag == "--config":
            with contextlib.suppress(OSError, tomllib.TOMLDecodeError):
                doc = tomllib.loads(Path(value).read_text(encoding="utf-8"))
        if doc.get("data", {}).get("validation", 0):
            return True
    return False


def budget(argv: list[str], resumes: int) -> list[str]:
    """The flags appended to ``latentkit ARGV`` so that it runs in seconds (``resumes``: the
    page's ``--resume`` trainings so far, this one included). Each caps what the doc asked
    for: a later flag or
    ``--set`` wins over an earlier one. An IWAE bound the command asks for gets k = 2; the
    default (k = 100, none for chains longer than 16) is kept, since forcing one on a
    1000-step chain would cost more than the default."""
    command = argv[0] if argv else ""
    if "--help" in argv or "-h" in argv:
        return []
    iwae = any(a == "--iwae-k" or a.startswith(("--iwae-k=", "evaluate.iwae_k=")) for a in argv)
    if command == "train":
        sets = [
            f"train.steps={STEPS * (1 + resumes)}",
            "train.batch_size=16",
            "train.eval_examples=16",
            "train.compile=false",
            "data.limit=64",
            "evaluate.examples=16",
            "evaluate.diagnose=0",
            *(["evaluate.iwae_k=2"] if iwae else []),
            *(["data.validation=16"] if _validation_asked(argv) else []),
        ]
        return ["--no-progress", *(a for s in sets for a in ("--set", s))]
    if command in ("evaluate", "report"):
        flags = ["--eval-limit", "16", "--diagnose", "0", "--no-progress"]
        return [*flags, *(["--iwae-k", "2"] if iwae else [])]
    if command == "verify":
        return ["--max-examples", "2"]
    return []


class CannotRun(Exception):
    """A command this runner does not run (it must be marked in the doc)."""


@contextlib.contextmanager
def _inside(cwd: Path, env: dict[str, str]):
    """In ``cwd``, with ``env`` added to the environment; both restored after."""
    before_cwd, before_env = os.getcwd(), {k: os.environ.get(k) for k in env}
    os.chdir(cwd)
    os.environ.update(env)
    try:
        yield
    finally:
        os.chdir(before_cwd)
        for key, value in before_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _script(argv: list[str], module: bool) -> tuple[int, str]:
    """``python -m MODULE ARGS``, or ``python SCRIPT ARGS`` of the repository's script, in
    this process: (exit status, what it printed)."""
    out, saved = io.StringIO(), sys.argv
    sys.argv, code = list(argv), 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            if module:
                runpy.run_module(argv[0], run_name="__main__", alter_sys=True)
            else:
                runpy.run_path(str(ROOT / argv[0]), run_name="__main__")
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    except Exception:  # a failing script: its traceback is the output
        code = 1
        out.write(traceback.format_exc())
    finally:
        sys.argv = saved
    return code, out.getvalue()


def _latentkit(argv: list[str]) -> tuple[int, str]:
    """``latentkit ARGV`` in this process: (exit status, stderr or else stdout)."""
    try:
        code, out, err = run_cli(argv, timeout=TIMEOUT)
    except Exception:  # a traceback: the command failed
        return 1, traceback.format_exc()
    except BaseException as exc:  # the time limit (cli_runner's CaseTimeout)
        if isinstance(exc, KeyboardInterrupt):
            raise
        return 1, f"{type(exc).__name__}: {exc}"
    return code, err or out


@dataclass
class Shell:
    """What a reader's shell keeps from one line to the next: the folder, the environment
    (``export``), the shell variables; and the page's count of resumed trainings."""

    home: Path
    cwd: Path
    variables: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    resumes: int = 0

    def run(self, text: str) -> tuple[int, str]:
        """(exit status, output) of one command line; ``A && B`` runs B if A succeeded."""

        def expand(match: re.Match) -> str:
            name = match.group(1) or match.group(2)
            if name not in self.variables:
                raise CannotRun(f"${name} is not set in the block")
            return self.variables[name]

        lexer = shlex.shlex(VARIABLE.sub(expand, text), posix=True, punctuation_chars=";&|<>()")
        lexer.whitespace_split, lexer.commenters = True, "#"
        words: list[str] = []
        for word in [*lexer, "&&"]:
            if word != "&&":
                words.append(word)
                continue
            status, output = self._simple(words)
            if status != 0:
                return status, output
            words = []
        return 0, ""

    def _simple(self, words: list[str]) -> tuple[int, str]:
        env = {}
        while words and ASSIGNMENT.match(words[0]):
            name, _, value = words.pop(0).partition("=")
            env[name] = value
        syntax = [w for w in words if w and set(w) <= set(";&|<>()")]
        if syntax:
            raise CannotRun(f"the shell's {syntax[0]!r}")
        if not words:
            self.variables.update(env)
            return 0, ""
        program, args = words[0], words[1:]
        if program == "export" and all(ASSIGNMENT.match(a) for a in args):
            self.env.update(a.split("=", 1) for a in args)
            return 0, ""
        if program == "cd" and len(args) == 1:
            self.cwd = (self.cwd / args[0]).resolve()
            return (0, "") if self.cwd.is_dir() else (1, f"cd: {args[0]}: no such folder")
        if program == "python" and args[:2] == ["-m", "latentkit.cli"]:
            program, args = "latentkit", args[2:]
        with _inside(self.cwd, {**self.env, **env}):
            if program == "latentkit":
                self.resumes += args[:1] == ["train"] and "--resume" in args
                return _latentkit([*args, *budget(args, self.resumes)])
            if program == "python" and args[:1] == ["-m"] and len(args) > 1:
                return _script(args[1:], module=True)
            if program == "python" and args and (ROOT / args[0]).is_file():
                return _script(args, module=False)
        raise CannotRun(f"it runs latentkit and python, not {program!r}")


def stale_markers(block: Block) -> list[str]:
    """A block's markers that mark nothing, give no reason, or name a missing test file."""
    found = []
    for prefix, reason in block.skips:
        where = f"{block.page}:{block.line}: the marker `{prefix or ''}` {reason!r}"
        if prefix is not None and not any(c.text.startswith(prefix) for c in block.commands):
            found.append(f"{where} starts no command of its block")
        found += [
            f"{where} names {name}, which is not there"
            for name in re.findall(r"tests/\w+\.py", reason)
            if not (ROOT / name).is_file()
        ]
        if not reason:
            found.append(f"{where} gives no reason")
    return found


class BudgetSpent(Exception):
    """The time a page's run was given is over: what failed before, and the commands run."""

    def __init__(self, failures: list[str], ran: int):
        super().__init__(f"{ran} commands run")
        self.failures, self.ran = failures, ran


def run_page(
    page: str, folder: Path, text: str | None = None, *, until: float | None = None
) -> list[str]:
    """Run the unmarked commands of ``page`` (or of ``text`` as that page) under ``folder``;
    what failed, one entry each. With ``until`` (a ``time.monotonic()`` instant), a command
    starts only before it: past it, :class:`BudgetSpent` says how far the page got."""
    failures: list[str] = []
    shell = Shell(folder, folder)
    ran = 0
    for i, block in enumerate(blocks(page, text)):
        failures += stale_markers(block)
        if all(command.skip is not None for command in block.commands):
            continue  # not run: the next block "after the block above" follows the one before
        if not block.after:
            home = folder / f"block-{i}"
            home.mkdir(parents=True)
            shell = Shell(home, home, resumes=shell.resumes)
        shell.cwd = shell.home
        for command in block.commands:
            if command.skip is not None:
                continue
            if until is not None and _now() > until:
                raise BudgetSpent(failures, ran)
            ran += 1
            where = f"{page}:{command.line}: {command.text}"
            try:
                status, output = shell.run(command.text)
            except CannotRun as exc:
                failures.append(f"{where}\n  cannot run it here ({exc}): mark it in the doc")
                continue
            if status != 0:
                failures.append(f"{where}\n  exit status {status}:\n{output[-3000:]}")
    return failures


# -- the runner itself, on made-up pages ---------------------------------------------------

PAGE = """Text.

<!-- not run in tests: `pip install` no network here -->

```bash
pip install -e .     # a comment
latentkit train --model vae --data digits --set hidden=[16] \\
    --set latent_dim=2 --steps 3000 --set train.steps=150000
```

```python
not a shell block
```

<!-- run in tests after the block above -->
```console
$ latentkit evaluate runs/vae --iwae-k 5000
output line
$ latentkit train --resume --run-dir runs/vae --steps 10000
```
"""


def test_blocks_are_read_with_their_markers_and_joined_lines():
    first, second = blocks("made-up.md", PAGE)
    assert [c.text for c in first.commands] == [
        "pip install -e .     # a comment",
        "latentkit train --model vae --data digits --set hidden=[16]      --set latent_dim=2 "
        "--steps 3000 --set train.steps=150000",
    ]
    assert [c.skip for c in first.commands] == ["no network here", None]
    assert (first.line, first.commands[1].line, first.after) == (6, 7, False)
    assert [c.text for c in second.commands] == [
        "latentkit evaluate runs/vae --iwae-k 5000",
        "latentkit train --resume --run-dir runs/vae --steps 10000",
    ]
    assert second.after and second.commands[0].skip is None


def test_the_budget_wins_over_the_docs_own_values_and_a_later_block_sees_the_run(tmp_path):
    assert run_page("made-up.md", tmp_path, PAGE) == []
    run = tmp_path / "block-0" / "runs" / "vae" / "checkpoints"
    # 2 steps, then the page's first --resume goes on to 4
    assert sorted(p.name for p in run.glob("*.json")) == [
        "step-00000002.json",
        "step-00000004.json",
    ]


def test_a_failing_unmarked_command_fails_the_page(tmp_path):
    alone = PAGE.replace("<!-- run in tests after the block above -->", "")
    failures = run_page("made-up.md", tmp_path, alone)  # in a folder of its own: no run
    assert len(failures) == 2, failures
    assert failures[0].startswith("made-up.md:17: latentkit evaluate runs/vae")
    assert failures[1].startswith("made-up.md:19: latentkit train --resume")
    assert all("exit status" in f for f in failures)


def test_an_unmarked_command_the_runner_cannot_run_fails_the_page(tmp_path):
    unmarked = "<!-- not run in tests: `pip uninstall` why -->\n```bash\npip install -e .\n```\n"
    failures = run_page("made-up.md", tmp_path / "a", unmarked)
    assert "starts no command of its block" in failures[0]
    assert "made-up.md:3: pip install -e ." in failures[1] and "not 'pip'" in failures[1]
    piped = "```bash\nlatentkit list | head\n```\n"
    assert "the shell's '|'" in run_page("made-up.md", tmp_path, piped)[0]


def test_a_page_past_its_time_stops_before_its_next_command(tmp_path):
    clock = iter([0.0, 5.0])  # the first command starts in time, the second too late
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(globals(), "_now", lambda: next(clock))
        with pytest.raises(BudgetSpent) as cut:
            run_page("made-up.md", tmp_path, PAGE, until=1.0)
    assert (cut.value.ran, cut.value.failures) == (1, [])
    assert [p.name for p in (tmp_path / "block-0" / "runs").iterdir()] == ["vae"]


def test_a_marker_naming_a_missing_test_file_is_stale(tmp_path):
    page = "<!-- not run in tests: tests/test_nothing_here.py runs it -->\n```sh\npip x\n```\n"
    assert "names tests/test_nothing_here.py" in run_page("made-up.md", tmp_path, page)[0]


# -- the docs ------------------------------------------------------------------------------


def test_the_sample_is_of_pages_with_commands_to_run():
    assert set(SAMPLE) <= set(PAGES)
    for page in SAMPLE:
        assert any(c.skip is None for b in blocks(page) for c in b.commands), page


@pytest.mark.parametrize("page", SAMPLE)
def test_every_command_of_the_sampled_pages_runs(page, tmp_path):
    failures = run_page(page, tmp_path)
    assert not failures, "\n\n".join(failures)


@pytest.mark.slow
@pytest.mark.parametrize("page", [p for p in PAGES if p not in SAMPLE])
def test_every_command_of_the_other_pages_runs(page, tmp_path):
    if not any(c.skip is None for b in blocks(page) for c in b.commands):
        assert run_page(page, tmp_path) == []  # nothing to run: its markers are checked
        return
    if not SLOW_BUDGET:
        pytest.skip("the pages beyond the sample: set LATENTKIT_SLOW_BUDGET=SECONDS to run them")
    _SLOW_START[:] = _SLOW_START or [time.monotonic()]
    spent = f"LATENTKIT_SLOW_BUDGET={SLOW_BUDGET:g} s spent"
    try:
        failures = run_page(page, tmp_path, until=_SLOW_START[0] + SLOW_BUDGET)
    except BudgetSpent as cut:
        assert not cut.failures, "\n\n".join(cut.failures)
        pytest.skip(f"{spent}, after {cut.ran} of the page's commands")
    assert not failures, "\n\n".join(failures)
