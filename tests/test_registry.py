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
