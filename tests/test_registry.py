"""Models are found through entry points only; the core imports no plugin by name."""

from __future__ import annotations

import importlib.metadata
import pathlib
import re

import attrs
import pytest
import torch

import latentkit as lk

SRC = pathlib.Path(lk.__file__).parent


def test_builtin_models_come_from_entry_points():
    eps = {ep.name: ep for ep in importlib.metadata.entry_points(group="latentkit.plugins")}
    assert {"vae", "beta-vae"} <= set(eps)
    specs = lk.model_specs()
    assert {"vae", "beta-vae"} <= set(lk.list_models())
    assert specs["vae"].plugin == eps["vae"].dist.name == "latentkit-vae"
    assert specs["beta-vae"].plugin == "latentkit-beta-vae"
    assert lk.plugin_faults() == [] or all(
        f.distribution not in {"latentkit-vae", "latentkit-beta-vae"} for f in lk.plugin_faults()
    )


def test_core_never_imports_a_plugin_by_name():
    """The built-ins are found exactly as a third party's plugin would be."""
    plugin_packages = {p.name for p in (SRC.parents[1] / "plugins").glob("*/latentkit_*")}
    assert plugin_packages, "no plugin packages found next to the core"
    pattern = re.compile(r"^\s*(from|import)\s+(" + "|".join(plugin_packages) + r")\b", re.M)
    offenders = [str(p) for p in SRC.rglob("*.py") if pattern.search(p.read_text())]
    assert offenders == []


def test_load_model_builds_from_config_and_records_it():
    model = lk.load_model("vae", data_shape=[3], latent_dim=2, hidden=[5])
    assert model.name == "vae"
    assert model.config.data_shape == (3,) and model.config.hidden == (5,)
    cfg = lk.unstructure_config(model.config)
    again = lk.structure_config(type(model.config), cfg)
    assert again == model.config
    assert isinstance(lk.load_model("vae", **cfg), lk.LatentModel)


class _InProcess:
    @attrs.frozen
    class Config:
        dim: int = attrs.field(default=2, validator=attrs.validators.gt(0))

    @staticmethod
    @lk.hookimpl
    def latentkit_models():
        def build(cfg):
            return lk.load_model("vae", data_shape=(cfg.dim,), latent_dim=1)

        return [lk.ModelSpec("in-process-vae", _InProcess.Config, build, "test model")]


def test_register_plugin_in_process_and_unregister():
    lk.register_plugin(_InProcess, name="in-process")
    try:
        assert "in-process-vae" in lk.list_models()
        model = lk.load_model("in-process-vae", dim=3)
        assert model.data_shape == (3,) and model.name == "in-process-vae"
        with pytest.raises(lk.ConfigError, match="dim"):
            lk.load_model("in-process-vae", dim=0)
    finally:
        lk.unregister_plugin(_InProcess)
    assert "in-process-vae" not in lk.list_models()


def test_unregistering_again_is_nothing_but_a_plugin_never_registered_is_refused():
    """A cleanup may undo a registration twice; a plugin never registered (a wrong object)
    is named in a PluginError, and a plugin without a hook is refused at registration."""
    lk.register_plugin(_InProcess, name="in-process")
    lk.unregister_plugin(_InProcess)
    lk.unregister_plugin(_InProcess)
    assert "in-process-vae" not in lk.list_models()
    with pytest.raises(lk.PluginError, match="is not registered"):
        lk.unregister_plugin(_InProcess.Config)
    with pytest.raises(lk.PluginError, match="no function marked @latentkit.hookimpl"):
        lk.register_plugin(_InProcess.Config)


def test_factory_returning_a_non_model_is_a_plugin_error():
    class Bad:
        @staticmethod
        @lk.hookimpl
        def latentkit_models():
            return [
                lk.ModelSpec("not-a-model", _InProcess.Config, lambda cfg: torch.nn.Linear(1, 1))
            ]

    lk.register_plugin(Bad, name="bad")
    try:
        with pytest.raises(lk.PluginError, match="not a latentkit.LatentModel"):
            lk.load_model("not-a-model")
    finally:
        lk.unregister_plugin(Bad)


def _wrapper_plugin(name: str, base: str):
    """A plugin whose hook builds its spec from another plugin's (as a plugin that wraps
    a model does): it looks ``base`` up while the models are being collected."""

    class Wrapper:
        calls = 0

        @staticmethod
        @lk.hookimpl
        def latentkit_models():
            Wrapper.calls += 1
            spec = lk.get_model_spec(base)
            return [attrs.evolve(spec, name=name, description=f"wraps {base}")]

    Wrapper.__name__ = name
    return Wrapper


def _counting_discovery(monkeypatch) -> list[int]:
    from latentkit import registry

    calls = [0]
    original = registry._Registry._discover

    def counted(self):
        calls[0] += 1
        return original(self)

    monkeypatch.setattr(registry._Registry, "_discover", counted)
    return calls


@pytest.mark.parametrize("order", ["base first", "wrapper first"])
def test_a_plugin_that_looks_up_another_plugins_model_is_collected_once(monkeypatch, order):
    """The wrapper's hook asks for a model mid-collection: it gets the other plugins' models
    (whichever was registered first), the entry points are discovered once, and no fault
    is recorded (a nested lookup used to rediscover every entry point, recursively: the
    mutation table's plugin spent 20 s there)."""
    from latentkit import registry

    discoveries = _counting_discovery(monkeypatch)
    wrapper = _wrapper_plugin("wraps-in-process", "in-process-vae")
    plugins = [(_InProcess, "in-process"), (wrapper, "wrapper")]
    if order == "wrapper first":
        plugins.reverse()
    for plugin, name in plugins:
        lk.register_plugin(plugin, name=name)
    try:
        specs = lk.model_specs()
        assert discoveries[0] == 1
        assert specs["wraps-in-process"].config_class is _InProcess.Config
        assert specs["wraps-in-process"].plugin == registry.IN_PROCESS
        assert not [f for f in lk.plugin_faults() if f.entry_point in {"wrapper", "in-process"}]
        assert lk.load_model("wraps-in-process", dim=3).data_shape == (3,)
    finally:
        for plugin, _ in plugins:
            lk.unregister_plugin(plugin)


def test_two_plugins_that_look_each_other_up_end_in_a_fault_each_not_a_recursion(monkeypatch):
    discoveries = _counting_discovery(monkeypatch)
    a, b = _wrapper_plugin("model-a", "model-b"), _wrapper_plugin("model-b", "model-a")
    lk.register_plugin(a, name="plugin-a")
    lk.register_plugin(b, name="plugin-b")
    try:
        models = lk.list_models()
        assert "model-a" not in models and "model-b" not in models
        faults = {f.entry_point: f.problem for f in lk.plugin_faults()}
        # (the messages are reprs of the errors: their quotes may come escaped)
        raised = r"latentkit_models\(\) raised UnknownModelError.+"
        assert re.match(raised + "model-b", faults["plugin-a"])
        assert re.match(raised + "model-a", faults["plugin-b"])
        assert discoveries[0] == 1
        # Each hook is asked twice: once by the collection, once by the other's lookup (a
        # lookup that asked the hooks further out again would recurse until Python stops it).
        assert (a.calls, b.calls) == (2, 2)
        assert "RecursionError" not in str(faults)
        assert "vae" in models  # the other plugins are unaffected
    finally:
        lk.unregister_plugin(a)
        lk.unregister_plugin(b)


@attrs.frozen
class _SpecConfig:
    size: int = 1


_GOOD_SPEC = {"name": "a-spec_1", "config_class": _SpecConfig, "factory": lambda *args: None}


@pytest.mark.parametrize("kind", [lk.ModelSpec, lk.ObjectiveSpec], ids=lambda k: k.__name__)
@pytest.mark.parametrize(
    ("field", "bad", "says"),
    [
        ("name", "Bad Name", "lower case letters"),
        ("name", "1st", "starting with a letter"),
        ("name", 7, "lower case letters"),
        ("config_class", dict, "must be an attrs class"),
        ("config_class", _SpecConfig(), "must be an attrs class"),
        ("factory", "build", "must be callable"),
    ],
)
def test_both_kinds_of_spec_refuse_a_bad_field_naming_it(kind, field, bad, says):
    """One rule, one validator (latentkit.specs), the same for models and objectives: the
    error names the field and what it must be."""
    assert kind(**_GOOD_SPEC).name == "a-spec_1"
    with pytest.raises(lk.ConfigError, match=f"'{field}' .*{says}|{says}.*'{field}'"):
        kind(**{**_GOOD_SPEC, field: bad})


@pytest.mark.parametrize("field", ["test_configs", "checks", "mutants"])
def test_a_model_spec_refuses_a_hook_that_is_not_callable(field):
    assert getattr(lk.ModelSpec(**_GOOD_SPEC, **{field: lambda: None}), field) is not None
    with pytest.raises(lk.ConfigError, match=f"ModelSpec: '{field}' must be callable"):
        lk.ModelSpec(**_GOOD_SPEC, **{field: "not callable"})
