"""Plugins and the documented examples are written from latentkit's public names alone.

A name N of latentkit is public when it is listed in the ``__all__`` of a module
``latentkit.M`` whose dotted path has no component starting with ``_`` (or in
``latentkit.__all__``). This test reads every ``.py`` under ``plugins/`` and
``docs/examples/`` with ``ast`` (``TYPE_CHECKING`` and function-local imports included)
and fails, naming ``file:line``, on

* ``from latentkit.M import N`` where N is not in ``latentkit.M.__all__`` (nor a public
  submodule of it), as the real modules declare it at test time;
* ``lk.X`` (``lk`` any name bound to a latentkit module) where X is not in that module's
  ``__all__`` (a submodule is accepted where the file imports it by its dotted path);
* an import of a private latentkit module (a path component starting with ``_``);
* an import of a sibling plugin's package: the one declared exception is ``beta-vae``,
  which is ``vae`` with another default objective and imports ``latentkit_vae``.

So a copy of any built-in plugin is a plugin an outside author could have written
(``tests/test_third_party_plugin.py`` runs such a copy).
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import re
import textwrap
from pathlib import Path
from types import ModuleType

import attrs
import pytest
import tomllib
import torch

import latentkit as lk
from latentkit.config import positive_ints
from latentkit.networks import EpsUNet, check_unet_shape

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = ROOT / "plugins"
EXAMPLES = ROOT / "docs" / "examples"

ALLOWED_SIBLINGS = {"latentkit_beta_vae": {"latentkit_vae"}}
"""The one declared import between plugins: beta-vae is vae with another objective."""


def _packages(root: Path) -> dict[str, Path]:
    """The importable packages of each project folder under ``root``: name → project folder."""
    found = {}
    for project in sorted(p for p in root.iterdir() if p.is_dir()):
        for pkg in project.iterdir():
            if (pkg / "__init__.py").is_file():
                found[pkg.name] = project
    return found


PLUGIN_PACKAGES = _packages(PLUGINS)
EXAMPLE_PACKAGES = _packages(EXAMPLES)


def _is_private(dotted: str) -> bool:
    return any(part.startswith("_") for part in dotted.split("."))


def _module(dotted: str) -> ModuleType | None:
    try:
        return importlib.import_module(dotted)
    except ImportError:
        return None


def _public_in(module: ModuleType, name: str, imported: set[str]) -> bool:
    """Whether ``module.name`` is public: in ``__all__``, or a public submodule (when the
    caller names it: ``from M import sub`` or a file that imported ``M.sub``)."""
    if name in getattr(module, "__all__", ()):
        return True
    sub = f"{module.__name__}.{name}"
    if _is_private(sub):
        return False
    if sub not in imported or not hasattr(module, "__path__"):
        return False  # only a package has submodules
    return importlib.util.find_spec(sub) is not None


class _Walker(ast.NodeVisitor):
    """Collects the violations of one file (module docstring: the rules)."""

    def __init__(self, label: str, own: set[str]):
        self.label, self.own = label, own
        self.found: list[str] = []
        self.aliases: dict[str, ModuleType] = {}  # local name → the latentkit module it is
        self.imported: set[str] = set()  # dotted latentkit modules the file imports

    def fail(self, node: ast.AST, why: str) -> None:
        self.found.append(f"{self.label}:{node.lineno}: {why}")

    def check_package(self, node: ast.AST, dotted: str) -> None:
        top = dotted.split(".")[0]
        known = PLUGIN_PACKAGES.keys() | EXAMPLE_PACKAGES.keys()
        if top in known and top not in self.own:
            self.fail(node, f"imports the sibling plugin package {top!r}")

    def check_module(self, node: ast.AST, dotted: str) -> ModuleType | None:
        if _is_private(dotted):
            self.fail(node, f"imports the private module {dotted!r}")
            return None
        module = _module(dotted)
        if module is None:
            self.fail(node, f"imports {dotted!r}, which does not exist")
        return module

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.check_package(node, alias.name)
            if alias.name.split(".")[0] != "latentkit":
                continue
            module = self.check_module(node, alias.name)
            if module is None:
                continue
            parts = alias.name.split(".")
            self.imported.update(".".join(parts[: i + 1]) for i in range(len(parts)))
            if alias.asname:
                self.aliases[alias.asname] = module
            else:
                self.aliases["latentkit"] = importlib.import_module("latentkit")

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level or node.module is None:
            return  # relative: the file's own package
        self.check_package(node, node.module)
        if node.module.split(".")[0] != "latentkit":
            return
        module = self.check_module(node, node.module)
        if module is None:
            return
        for alias in node.names:
            if alias.name == "*":
                continue
            sub = f"{node.module}.{alias.name}"
            if not _public_in(module, alias.name, self.imported | {sub}):
                self.fail(node, f"imports {alias.name!r} from {node.module!r}, not in its __all__")
                continue
            value = getattr(module, alias.name, None)
            if value is None and not _is_private(sub):
                value = _module(sub)
            if isinstance(value, ModuleType):
                self.imported.add(sub)
                self.aliases[alias.asname or alias.name] = value

    def check_chain(self, node: ast.Attribute) -> bool:
        """Checks the attribute chain ``base.a.b...`` link by link while it names modules;
        ``False`` when its base is no latentkit module (its parts are then visited)."""
        chain, base = [], node
        while isinstance(base, ast.Attribute):
            chain.append(base.attr)
            base = base.value
        if not (isinstance(base, ast.Name) and base.id in self.aliases):
            return False
        obj: object = self.aliases[base.id]
        for attr in reversed(chain):
            if not isinstance(obj, ModuleType):
                break
            if not _public_in(obj, attr, self.imported):
                self.fail(node, f"uses {obj.__name__}.{attr}, not in its __all__")
                break
            obj = getattr(obj, attr, None)
        return True


class _Uses(ast.NodeVisitor):
    """The second pass: every attribute chain, once the file's imports are all known."""

    def __init__(self, walker: _Walker):
        self.walker = walker

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if not self.walker.check_chain(node):
            self.generic_visit(node)  # e.g. ``f(lk.x).y``: the call may hold a chain of its own


def violations(source: str, label: str, own: set[str]) -> list[str]:
    """Every violation in ``source`` (a file of the packages ``own``), as ``label:line: why``."""
    walker = _Walker(label, own)
    tree = ast.parse(source)
    # Imports first: one may sit below a use (a TYPE_CHECKING block, a function's body).
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            walker.visit(node)
    _Uses(walker).visit(tree)
    return walker.found


def _files() -> list[tuple[Path, set[str]]]:
    out = []
    for packages, root in ((PLUGIN_PACKAGES, PLUGINS), (EXAMPLE_PACKAGES, EXAMPLES)):
        for project in sorted(p for p in root.iterdir() if p.is_dir()):
            own = {name for name, folder in packages.items() if folder == project}
            own |= {a for name in own for a in ALLOWED_SIBLINGS.get(name, ())}
            for path in sorted(project.rglob("*.py")):
                if ".egg-info" not in str(path) and "__pycache__" not in path.parts:
                    out.append((path, own))
    return out


def test_plugins_and_examples_import_only_public_names():
    """Every file under plugins/ and docs/examples/ keeps the rules (module docstring)."""
    files = _files()
    assert len(files) > 30, "the walk found too few files: the layout changed?"
    found = []
    for path, own in files:
        found += violations(path.read_text(), str(path.relative_to(ROOT)), own)
    assert not found, "non-public imports:\n" + "\n".join(found)


def test_plugins_declare_no_sibling_dependency():
    """A plugin's ``pyproject.toml`` requires latentkit and outside packages, no other plugin's
    distribution (beta-vae's ``latentkit-vae`` excepted): what it imports, it declares."""
    distributions = {}
    for project in sorted(p for p in PLUGINS.iterdir() if (p / "pyproject.toml").is_file()):
        meta = tomllib.loads((project / "pyproject.toml").read_text())["project"]
        distributions[meta["name"]] = project
    assert len(distributions) >= 7
    found = []
    for name, project in distributions.items():
        meta = tomllib.loads((project / "pyproject.toml").read_text())["project"]
        own = {p.name for p in project.iterdir() if (p / "__init__.py").is_file()}
        allowed = {d for pkg in own for d in ALLOWED_SIBLINGS.get(pkg, ())}
        for requirement in meta.get("dependencies", []):
            dist = re.split(r"[<>=!~ ;\[]", requirement, maxsplit=1)[0]
            if dist in distributions and dist.replace("-", "_") not in allowed:
                found.append(f"{name} requires the plugin {dist}")
    assert not found, found


# The checker itself: each rule fails on a file that breaks it.

CASES = {
    "private name": ("from latentkit.bounds import _check_beta", 1),
    "unlisted name": ("from latentkit.networks import itertools", 1),
    "private module": ("import latentkit.cli.__main__", 1),
    "private module from": ("from latentkit.testing._nothing import x", 1),
    "attribute": ("import latentkit as lk\nlk.registry", 1),
    "attribute of a submodule": ("import latentkit.ode\nlatentkit.ode.torch", 1),
    "aliased module": ("from latentkit import distributions as D\nD.math", 1),
    "sibling": ("from latentkit_ddpm.networks import EpsMLP", 1),
    "sibling plain import": ("import latentkit_vae", 1),
    "typing-only import": (
        "import typing\nif typing.TYPE_CHECKING:\n    from latentkit.bounds import math",
        1,
    ),
    "inside a function": ("def f():\n    import latentkit as lk\n    return lk.chains", 1),
    "public name": ("from latentkit.networks import mlp", 0),
    "public attribute": ("import latentkit as lk\nlk.LatentModel", 0),
    "public submodule": ("from latentkit import ode\node.solve", 0),
    "imported submodule": ("import latentkit.ode\nlatentkit.ode.solve", 0),
    "own package": ("from latentkit_vdm.model import _anything", 0),
    "declared sibling": ("from latentkit_vae import VAEConfig", 0),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_checker_names_each_violation(case):
    """Each rule is seen to fire (and public names to pass), with the file and line."""
    source, expected = CASES[case]
    own = {"latentkit_vdm"} if case != "declared sibling" else {"latentkit_vae"}
    found = violations(textwrap.dedent(source), "f.py", own)
    assert len(found) == expected, found
    assert all(f.startswith("f.py:") for f in found)


# The toolkit's rules, as docs/core.md's helpers table states them.


@pytest.mark.parametrize(
    ("min_len", "value", "ok"),
    [
        (0, (), True),
        (1, (), False),
        (1, (3,), True),
        (1, (3, 0), False),
        (1, (3, -1), False),
        (1, (True,), False),  # a bool is no width
        (1, (2.0,), False),
        (2, (3,), False),
        (2, (3, 4), True),
    ],
)
def test_positive_ints_is_a_tuple_of_at_least_min_len_ints_above_zero(min_len, value, ok):
    """``positive_ints(min_len)`` accepts exactly the tuples of ≥ ``min_len`` ints > 0 (bools
    refused), and its ConfigError names the field, the rule, the hint and the value."""

    @attrs.frozen
    class Config:
        widths: tuple = attrs.field(validator=positive_ints(min_len, hint=", one per layer"))

    if ok:
        assert Config(value).widths == value
        return
    with pytest.raises(lk.ConfigError) as err:
        Config(value)
    message = str(err.value)
    assert message.startswith("'widths' must be ") and "ints > 0, one per layer" in message
    assert repr(value) in message


@pytest.mark.parametrize("levels", [1, 2, 3])
def test_check_unet_shape_accepts_exactly_the_shapes_eps_unet_runs_on(levels):
    """An image (C, H, W) passes ``check_unet_shape`` if and only if an ``EpsUNet`` of
    ``levels`` resolution levels maps it to ε̂ of its own shape (each stride-2 step needs an
    even side: H and W divisible by 2^(levels − 1)); a shape that is not (C, H, W) is refused."""
    mult = tuple(range(1, levels + 1))
    torch.manual_seed(0)
    for side in (2, 3, 4, 6, 8):
        for shape in [(1, side, 8), (1, 8, side)]:  # H, then W
            net = EpsUNet(shape, channels=2, channel_mult=mult).eval()
            try:
                runs = net(torch.zeros(1, *shape), torch.zeros(1)).shape == (1, 1, *shape)
            except RuntimeError:
                runs = False
            try:
                check_unet_shape(shape, mult)
                accepted = True
            except lk.ConfigError as err:
                accepted = False
                assert "divisible" in str(err)
            assert accepted == runs == (side % 2 ** (levels - 1) == 0), (shape, levels)
    for shape in [(4,), (4, 4), (1, 1, 4, 4)]:
        with pytest.raises(lk.ConfigError, match=r"needs image data_shape \(C, H, W\)"):
            check_unet_shape(shape, mult)


def test_eps_network_kinds_are_the_configs_own():
    """``EpsNetworkConfig.network`` takes the kinds of the config class's ``NETWORKS``: the
    ``vdm`` config adds ``linear`` (it builds that one itself), ``ddpm``'s does not; an
    unknown kind is refused naming them."""
    with pytest.raises(lk.ConfigError, match=r"'network' must be in \('auto', 'mlp', 'unet'\)"):
        lk.load_model("ddpm", data_shape=(2,), network="linear")
    with pytest.raises(lk.ConfigError, match="'network' must be in .*'linear'.*got 'conv'"):
        lk.load_model("vdm", data_shape=(2,), network="conv")
    model = lk.load_model("vdm", data_shape=(2,), num_timesteps=1, network="linear")
    assert model.config.resolved_network == "linear"


def test_a_config_field_a_base_class_declares_keeps_the_bases_description():
    """``--help`` and ``latentkit list`` read each field's text from the class that
    describes it: a plugin config built on a public base (``EncoderDecoderConfig``) shows
    the base's descriptions without copying them."""
    from latentkit.config import describe_fields

    for name in ("vamp", "iaf", "ddpm", "vdm"):
        docs = {d["name"]: d["doc"] for d in describe_fields(lk.get_model_spec(name).config_class)}
        missing = [field for field, text in docs.items() if not text]
        assert not missing, f"{name}: fields without a description: {missing}"
