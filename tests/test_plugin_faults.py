"""Plugin faults (DESIGN §3): a plugin that fails to import, registers a name twice, returns
a malformed spec or implements a hook that does not exist is reported with the name of
its distribution, and every other plugin keeps working.

Faulty third-party distributions are made for real: a ``*.dist-info`` folder (METADATA and
entry_points.txt, what ``pip install`` writes) and a module, in temporary directories
appended to ``sys.path`` of a fresh interpreter (after site-packages, so the installed
plugins are discovered first), so discovery goes through importlib.metadata and pluggy
exactly as for an installed package.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import attrs
import pytest

import latentkit as lk

GOOD = """
import attrs
import latentkit as lk

@attrs.frozen
class Config:
    dim: int = 2

def build(cfg):
    return lk.load_model("vae", data_shape=(cfg.dim,), latent_dim=1)

@lk.hookimpl
def latentkit_models():
    return [lk.ModelSpec("good-model", Config, build, "still loads")]
"""

FAULTY = {
    # distribution name: (entry point name, module source)
    "fault-import": ("broken", "import a_dependency_that_is_not_installed\n"),
    "fault-duplicate": (
        "dup",
        GOOD.replace('"good-model", Config, build, "still loads"', '"vae", Config, build'),
    ),
    "fault-not-a-spec": (
        "notspec",
        "import latentkit as lk\n\n@lk.hookimpl\ndef latentkit_models():\n"
        "    return [{'name': 'dict-model'}]\n",
    ),
    "fault-not-a-list": (
        "notlist",
        "import latentkit as lk\n\n@lk.hookimpl\ndef latentkit_models():\n    return None\n",
    ),
    "fault-bad-name": (
        "badname",
        GOOD.replace('"good-model", Config, build, "still loads"', '"Bad Name!", Config, build'),
    ),
    "fault-raises": (
        "raises",
        "import latentkit as lk\n\n@lk.hookimpl\ndef latentkit_models():\n"
        "    raise RuntimeError('the plugin crashed')\n",
    ),
    "fault-typo": (
        "typo",
        "import latentkit as lk\n\n@lk.hookimpl\ndef latentkit_model():\n    return []\n",
    ),
    "fault-quoted": ("quoted", GOOD.replace("good-model", "quoted-model")),
    "fault-good": ("good", GOOD),
    "fault-twin": ("good", GOOD.replace("good-model", "twin-model")),
}


def write_distribution(root: pathlib.Path, dist: str, entry_point: str, source: str) -> None:
    module = dist.replace("-", "_") + "_hooks"
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[latentkit.plugins]\n{entry_point} = {module}\n")


@pytest.fixture(scope="module")
def faulty_path(tmp_path_factory) -> list[pathlib.Path]:
    """Two folders: fault-twin in the second, so fault-good (same entry point name) is first."""
    first, second = tmp_path_factory.mktemp("plugins_a"), tmp_path_factory.mktemp("plugins_b")
    for dist, (entry_point, source) in FAULTY.items():
        write_distribution(second if dist == "fault-twin" else first, dist, entry_point, source)
    # A value copied from pyproject.toml with its quotes: not a valid entry point.
    (first / "fault_quoted-0.1.dist-info" / "entry_points.txt").write_text(
        '[latentkit.plugins]\nquoted = "fault_quoted_hooks"\n'
    )
    return [first, second]


def run_python(code: str, paths: list[pathlib.Path]) -> subprocess.CompletedProcess:
    prelude = f"import sys\nsys.path.extend({[str(p) for p in paths]!r})\n"
    return subprocess.run(
        [sys.executable, "-c", prelude + code],
        env=dict(os.environ, COLUMNS="250"),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def registry_state(faulty_path) -> dict:
    code = """
import json, latentkit as lk
print(json.dumps({
    "models": {n: s.plugin for n, s in lk.model_specs().items()},
    "faults": [[f.distribution, f.entry_point, f.problem, str(f)] for f in lk.plugin_faults()],
    "loads": lk.load_model("good-model", dim=3).data_shape == (3,),
}))
"""
    done = run_python(code, faulty_path)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def faults_of(state: dict, dist: str) -> list[str]:
    return [text for d, _, _, text in state["faults"] if d == dist]


def test_the_other_plugins_keep_working(registry_state):
    models = registry_state["models"]
    assert models["vae"] == "latentkit-vae" and models["beta-vae"] == "latentkit-beta-vae"
    assert models["good-model"] == "fault-good" and registry_state["loads"]


def test_an_import_failure_names_the_distribution_and_the_cause(registry_state):
    (text,) = faults_of(registry_state, "fault-import")
    assert "entry point 'broken'" in text and "a_dependency_that_is_not_installed" in text
    assert "ModuleNotFoundError" in text


def test_a_duplicate_model_name_names_both_distributions_and_the_first_stays(registry_state):
    (text,) = faults_of(registry_state, "fault-duplicate")
    assert "'vae'" in text and "latentkit-vae" in text and "ignored" in text
    assert registry_state["models"]["vae"] == "latentkit-vae"


def test_a_duplicate_entry_point_name_is_reported_not_silently_dropped(registry_state):
    """Two distributions both name their entry point ``good``: the second is not loaded."""
    (text,) = faults_of(registry_state, "fault-twin")
    assert "entry point name already used by fault-good" in text
    assert "twin-model" not in registry_state["models"]


@pytest.mark.parametrize(
    ("dist", "words"),
    [
        ("fault-not-a-spec", ["returned {'name': 'dict-model'}", "not a ModelSpec"]),
        ("fault-not-a-list", ["must return a list of ModelSpec", "got NoneType"]),
        ("fault-bad-name", ["'name' must be lower case", "'Bad Name!'"]),
        ("fault-raises", ["latentkit_models() raised", "the plugin crashed"]),
        ("fault-typo", ["'latentkit_model'", "not a latentkit hook", "latentkit_models"]),
        ("fault-quoted", ["malformed entry point value", "'\"fault_quoted_hooks\"'", "unquoted"]),
    ],
)
def test_a_malformed_plugin_is_reported_with_its_distribution(registry_state, dist, words):
    (text,) = faults_of(registry_state, dist)
    for w in words:
        assert w in text, text


def test_every_fault_is_one_of_ours(registry_state):
    assert {d for d, *_ in registry_state["faults"]} == set(FAULTY) - {"fault-good"}


def test_unknown_model_error_lists_the_faults(faulty_path):
    done = run_python(
        "import latentkit as lk\ntry:\n    lk.load_model('dict-model')\n"
        "except lk.UnknownModelError as e:\n    print(e)\n",
        faulty_path,
    )
    assert "no model named 'dict-model'" in done.stdout
    assert "plugin faults" in done.stdout and "fault-not-a-spec" in done.stdout


def test_latentkit_list_shows_the_models_and_the_faults(faulty_path):
    done = run_python(
        "from latentkit.cli import main\nraise SystemExit(main(['list']))", faulty_path
    )
    assert done.returncode == 0, done.stderr
    assert "good-model" in done.stdout and "plugin faults" in done.stdout
    for dist in set(FAULTY) - {"fault-good"}:
        assert dist in done.stdout, dist


# ---- in-process registration (tests, notebooks) -------------------------------------------


@attrs.frozen
class _Config:
    dim: int = 2


class _First:
    @staticmethod
    @lk.hookimpl
    def latentkit_models():
        return [lk.ModelSpec("in-process-a", _Config, lambda cfg: lk.load_model("vae"))]


class _Second:
    @staticmethod
    @lk.hookimpl
    def latentkit_models():
        return [lk.ModelSpec("in-process-a", _Config, lambda cfg: lk.load_model("vae"))]


class _Third:
    @staticmethod
    @lk.hookimpl
    def latentkit_models():
        return []


class _Typo:
    @staticmethod
    @lk.hookimpl
    def latentkit_modles():
        return []


def test_in_process_faults_are_reported_and_undone_by_unregistering():
    try:
        lk.register_plugin(_First, name="first")
        lk.register_plugin(_Second, name="second")
        lk.register_plugin(_Typo, name="typo")
        lk.register_plugin(_Third, name="first")  # a plugin name that is taken
        faults = [str(f) for f in lk.plugin_faults()]
        assert "in-process-a" in lk.list_models()
        assert any("'in-process-a' is already registered" in f for f in faults), faults
        assert any("'latentkit_modles', which is not a latentkit hook" in f for f in faults)
        assert any("plugin 'first' (registered in process)" in f and "taken" in f for f in faults)
    finally:
        for plugin in (_First, _Second, _Third, _Typo):
            lk.unregister_plugin(plugin)
    assert "in-process-a" not in lk.list_models()
    assert not [f for f in lk.plugin_faults() if "in process" in str(f)]
