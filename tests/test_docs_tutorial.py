"""The docs stay true: the tutorial's code runs, a package made from it alone is found by
its entry point and passes ``latentkit verify``, the hook reference is generated from the
hookspecs, and the checks page covers every check."""

from __future__ import annotations

import os
import pathlib
import re
import runpy
import subprocess
import sys
import textwrap

import pytest
import torch

import latentkit as lk
from latentkit.testing import CHECKS

ROOT = pathlib.Path(__file__).resolve().parents[1]
TUTORIAL = ROOT / "docs" / "tutorial.md"
FILE = re.compile(r"^# file: (\S+)\n")


def code_blocks(lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", TUTORIAL.read_text(), flags=re.S | re.M)


def write_package(root: pathlib.Path) -> list[str]:
    """Write the tutorial's ``# file:`` blocks under ``root``; return the other blocks."""
    session = []
    for block in code_blocks("python"):
        match = FILE.match(block)
        if match:
            path = root / match.group(1)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(block[match.end() :])
        else:
            session.append(block)
    return session


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_tutorial_code_runs_in_order(tmp_path, monkeypatch, capsys):
    session = write_package(tmp_path)
    assert session, "the tutorial has no code to run"
    monkeypatch.syspath_prepend(str(tmp_path))
    namespace: dict = {"__name__": "tutorial"}
    try:
        for i, block in enumerate(session):
            exec(compile(block, f"{TUTORIAL.name}, python block {i + 1}", "exec"), namespace)
    finally:
        hooks = sys.modules.get("linchain.hooks")
        if hooks is not None:
            lk.unregister_plugin(hooks)
        for name in [m for m in sys.modules if m == "linchain" or m.startswith("linchain.")]:
            del sys.modules[name]
    printed = capsys.readouterr().out
    assert "['kl_1', 'prior_matching', 'reconstruction']" in printed
    assert "'z1_dim' must be > 0" in printed


def test_a_package_from_the_tutorial_alone_is_listed_and_verified(tmp_path):
    """Only the tutorial's files and its entry point (as pip would install them): the model
    appears in ``latentkit list`` under its distribution, trains and evaluates from the
    command line, and ``latentkit verify`` passes."""
    write_package(tmp_path)
    (toml,) = code_blocks("toml")
    dist = re.search(r'^name = "([^"]+)"', toml, re.M).group(1)
    name, value = re.search(r'plugins"\]\n([\w-]+) = "([\w.:]+)"', toml).groups()
    info = tmp_path / f"{dist.replace('-', '_')}-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(f"[latentkit.plugins]\n{name} = {value}\n")
    # Discovery and the verify plumbing from the entry point; the tutorial's own block
    # above runs the checks with 10 examples.
    code = textwrap.dedent(
        """
        import torch
        torch.set_num_threads(1)
        import numpy as np
        from latentkit.cli import main
        from latentkit.testing.verify import verify_command
        assert main(["list"]) == 0
        # trained from the command line, as the tutorial's section 6 says
        np.save("points.npy", np.random.default_rng(0).normal(size=(300, 3)).astype("float32"))
        argv = ["train", "--model", "linchain", "--data", "file:points.npy", "--variant", "real",
                "--set", "data_dim=3", "--steps", "20", "--no-progress", "--run-dir", "run"]
        assert main(argv) == 0
        assert main(["evaluate", "run", "--iwae-k", "10", "--diagnose", "0"]) == 0
        raise SystemExit(verify_command("linchain", max_examples=5))
        """
    )
    env = dict(os.environ, PYTHONPATH=str(tmp_path), COLUMNS="200")
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"linchain\s+│\s+latentkit-linchain", done.stdout), done.stdout
    assert "no check failed for linchain" in done.stdout
    assert "plugin faults" not in done.stdout


def test_hook_reference_is_generated_from_the_hookspecs():
    script = runpy.run_path(str(ROOT / "scripts" / "gen_hook_docs.py"))
    committed = (ROOT / "docs" / "hooks.md").read_text()
    assert committed == script["render"](), "run: python scripts/gen_hook_docs.py"


def test_checks_page_covers_every_check():
    page = (ROOT / "docs" / "checks.md").read_text()
    for check in CHECKS:
        assert f"`{check.key}`" in page, check.key
