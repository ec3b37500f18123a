"""A copy of a built-in plugin, as an outside package, passes ``latentkit verify``.

The ``vdm`` plugin's package is copied, as the tutorial lays out an outside author's package
(``docs/tutorial.md``, sections 1, 4 and 5), into a temporary folder under another name; its
own absolute imports are rewritten to that name, and its model and its two objectives are
registered under names of their own (registry names are global). Registered in process with
``latentkit.register_plugin``, it runs every check ``latentkit verify`` runs, through the
public testing API. It imports latentkit's public names alone (``tests/test_public_api.py``),
so nothing but latentkit is needed: this is what an outside package re-implementing a built-in
would be.
"""

from __future__ import annotations

import ast
import importlib
import re
import shutil
import sys
from pathlib import Path

import pytest

import latentkit as lk
from latentkit.testing import check_model

ROOT = Path(__file__).resolve().parents[1]
ORIGINAL = ROOT / "plugins" / "vdm" / "latentkit_vdm"
PACKAGE = "outside_diffusion"
MODEL = "outside-diffusion"

# The rewrites an outside author makes, each expected a known number of times, so that a
# change of the plugin's layout fails here rather than testing something else.
IMPORTS = re.compile(r"^(\s*)(from|import) latentkit_vdm\b", re.MULTILINE)
RENAMES = {
    "hooks.py": [('name="vdm",', f'name="{MODEL}",')],
    "objectives.py": [
        ('CONTINUOUS = "continuous"', f'CONTINUOUS = "{MODEL}-continuous"'),
        ('SCORE_MATCHING = "score-matching"', f'SCORE_MATCHING = "{MODEL}-score-matching"'),
    ],
}


def _copy_package(folder: Path) -> Path:
    """The plugin's package copied to ``folder/PACKAGE``, rewritten as above."""
    target = folder / PACKAGE
    shutil.copytree(ORIGINAL, target, ignore=shutil.ignore_patterns("__pycache__"))
    rewritten = 0
    for path in target.glob("*.py"):
        text, n = IMPORTS.subn(rf"\1\2 {PACKAGE}", path.read_text())
        rewritten += n
        for old, new in RENAMES.get(path.name, []):
            assert text.count(old) == 1, f"{path.name}: expected {old!r} once"
            text = text.replace(old, new)
        path.write_text(text)
    assert rewritten >= 10, f"only {rewritten} imports of the package itself were rewritten"
    for path in target.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in getattr(node, "names", [])] if isinstance(node, ast.Import) else []
            )
            if isinstance(node, ast.ImportFrom) and node.module:
                names.append(node.module)
            assert not any(n.split(".")[0] == "latentkit_vdm" for n in names), (path, names)
    return target


@pytest.fixture
def outside_plugin(tmp_path):
    """The copy's hook module, registered; unregistered and forgotten afterwards."""
    _copy_package(tmp_path)
    sys.path.insert(0, str(tmp_path))
    hooks = importlib.import_module(f"{PACKAGE}.hooks")
    lk.register_plugin(hooks)
    try:
        yield hooks
    finally:
        lk.unregister_plugin(hooks)
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
            del sys.modules[name]


def test_a_copy_of_vdm_outside_the_repository_passes_verify(outside_plugin, tmp_path):
    """The copy registers cleanly beside the built-in (no plugin fault), builds its own
    classes (loaded from the copy, not the built-in) and passes every check of
    ``latentkit verify``, the family's own checks included."""
    assert MODEL in lk.list_models()
    assert {f"{MODEL}-continuous", f"{MODEL}-score-matching"} <= set(lk.list_objectives())
    assert lk.plugin_faults() == []
    model = lk.load_model(MODEL, data_shape=(2,), num_timesteps=2, hidden=(4,))
    assert type(model).__module__ == f"{PACKAGE}.model"
    assert model.default_objective[0] == f"{MODEL}-continuous"
    copied = [m for name, m in sys.modules.items() if name.startswith(PACKAGE + ".")]
    assert len(copied) >= 8
    assert all(Path(m.__file__).is_relative_to(tmp_path) for m in copied)

    results = check_model(MODEL, max_examples=3, derandomize=True)
    statuses = {r.check.key: r.status for r in results}
    assert set(statuses.values()) <= {"passed", "not applicable", "skipped"}, statuses
    assert statuses["vdm-score-matching"] == "passed"  # one of the family's own checks ran
    assert sum(s == "passed" for s in statuses.values()) >= 10


def test_the_copy_is_gone_after_unregistering(tmp_path):
    """Registering and unregistering leaves the registry as it was (no leftover model)."""
    before = lk.list_models()
    _copy_package(tmp_path)
    sys.path.insert(0, str(tmp_path))
    try:
        hooks = importlib.import_module(f"{PACKAGE}.hooks")
        lk.register_plugin(hooks)
        assert MODEL in lk.list_models()
        lk.unregister_plugin(hooks)
        assert lk.list_models() == before
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
            del sys.modules[name]
