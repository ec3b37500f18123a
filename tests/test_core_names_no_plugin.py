"""The core (``src/latentkit``) names no plugin: it reaches every model and every plugin's
objective through the registry, as it would a third party's.

Read from the source with ``ast`` (docstrings and comments, which may cite a model as an
example, are not code and are not read). A finding is any of:

* an import of a plugin's package (``latentkit_vae`` ...), or a string naming one
  (``importlib.import_module("latentkit_vae")``);
* a comparison with the name of a registered model or of an objective a plugin adds
  (``kind == "ddpm"``, ``name in ("vae", "hvae")``, a ``case "hybrid":``), or of an
  object's ``.name`` with any registered name, the core's own ``elbo`` and ``iwae``
  included (``o.name == "iwae"``): what an objective or a model is, the core learns from
  what it declares, not from its name. (``"iwae"`` and ``"elbo"`` compared with anything
  else are the core's own bounds, e.g. a figure of an evaluation, and are not findings.)
* a registered model's name, or an objective a plugin adds, passed to the registry's
  lookups (``load_model("vae")``, ``get_model_spec("hvae")``, ``make_objective("simple",
  ...)``); a model's name as a key of a dict written in the core.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

import latentkit as lk

REPO = pathlib.Path(__file__).resolve().parents[1]
CORE = REPO / "src" / "latentkit"
LOOKUPS = {"load_model", "get_model_spec", "make_objective", "get_objective_spec"}
CORE_OBJECTIVES = {"elbo", "iwae"}


def plugin_packages() -> set[str]:
    """The built-in plugins' import names (``plugins/*/latentkit_*``)."""
    return {p.parent.name for p in REPO.glob("plugins/*/latentkit_*/__init__.py")}


def _strings(node: ast.AST) -> list[str]:
    """The string constants ``node`` is, or holds as a tuple, list or set literal."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return [s for e in node.elts for s in _strings(e)]
    return []


def _called(node: ast.Call) -> str:
    f = node.func
    return f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""


def _is_name_attribute(node: ast.AST) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "name"


def findings(
    source: str, *, packages: set[str], models: set[str], objectives: set[str]
) -> list[tuple[int, str]]:
    """``(line, what)`` for each place in ``source`` that names a plugin (the rules above),
    given the registered ``models`` and ``objectives``."""
    plugin_names = models | (objectives - CORE_OBJECTIVES)
    out: list[tuple[int, str]] = []

    def names_package(text: str) -> bool:
        return any(text == p or text.startswith(p + ".") for p in packages)

    for node in ast.walk(ast.parse(source)):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Import):
            out += [(line, f"import {a.name}") for a in node.names if names_package(a.name)]
        elif isinstance(node, ast.ImportFrom) and not node.level and names_package(node.module):
            out.append((line, f"from {node.module} import"))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if names_package(node.value):
                out.append((line, f"the package name {node.value!r}"))
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            compared = plugin_names
            if any(_is_name_attribute(o) for o in operands):
                compared = models | objectives
            for operand in operands:
                out += [(line, f"compares with {s!r}") for s in _strings(operand) if s in compared]
        elif isinstance(node, ast.match_case):
            for sub in ast.walk(node.pattern):
                if isinstance(sub, ast.MatchValue):
                    out += [(line, f"case {s!r}") for s in _strings(sub.value) if s in plugin_names]
        elif isinstance(node, ast.Call) and _called(node) in LOOKUPS and node.args:
            out += [
                (line, f"{_called(node)}({s!r})")
                for s in _strings(node.args[0])
                if s in plugin_names
            ]
        elif isinstance(node, ast.Dict):
            keys = [k for k in node.keys if k is not None]
            out += [(line, f"the dict key {s!r}") for k in keys for s in _strings(k) if s in models]
    return out


@pytest.fixture(scope="module")
def names() -> dict[str, set[str]]:
    models = set(lk.list_models())
    assert {"vae", "hvae", "ddpm"} <= models, "the built-in plugins are not installed"
    return {
        "packages": plugin_packages(),
        "models": models,
        "objectives": set(lk.list_objectives()),
    }


def test_the_core_names_no_plugin(names):
    found = []
    for path in sorted(CORE.rglob("*.py")):
        for line, what in findings(path.read_text(), **names):
            found.append(f"{path.relative_to(REPO)}:{line}: {what}")
    assert not found, "the core names a plugin:\n" + "\n".join(found)


def test_each_rule_finds_what_it_is_for(names):
    """Each kind of naming, alone in a snippet, is found; the same names in a docstring, a
    comment or an unrelated string are not."""
    snippets = {
        "import latentkit_vae.model\n": "import latentkit_vae.model",
        "from latentkit_hvae import x\n": "from latentkit_hvae import",
        "importlib.import_module('latentkit_ddpm')\n": "the package name 'latentkit_ddpm'",
        "k = 8 if o.name == 'iwae' else 1\n": "compares with 'iwae'",
        "ok = spec.name != 'elbo'\n": "compares with 'elbo'",
        "ok = name not in ('vae', 'hvae')\n": "compares with 'vae'",
        "ok = loss == 'simple'\n": "compares with 'simple'",
        "match name:\n    case 'ddpm':\n        pass\n": "case 'ddpm'",
        "m = lk.load_model('vae')\n": "load_model('vae')",
        "s = get_model_spec('vdm')\n": "get_model_spec('vdm')",
        "o = make_objective('hybrid', m)\n": "make_objective('hybrid')",
        "TABLE = {'vamp': 1}\n": "the dict key 'vamp'",
    }
    for source, what in snippets.items():
        assert what in [w for _, w in findings(source, **names)], source
    quiet = (
        '"""load_model("vae") in a docstring."""\n'
        "# name == 'iwae' in a comment\n"
        "o = make_objective('elbo', m)\n"
        "label = 'vae mlp'\n"
        "x = objective == kind\n"
        "bound = 'iwae' if 'iwae' in metrics else 'elbo'\n"
        "figures = {'continuous': 1}\n"
    )
    assert findings(quiet, **names) == []
