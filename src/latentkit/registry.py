"""The plugin registry: entry points → pluggy → model specs → ``load_model``.

Discovery is pluggy's ``PluginManager.load_setuptools_entrypoints``, called once per
entry point of the group ``latentkit.plugins``, so one plugin that fails to import is
reported (naming its distribution) while the others still load. The core imports no
built-in plugin by name: the built-ins are found exactly as a third party's would be.
"""

from __future__ import annotations

import importlib.metadata
import weakref
from typing import Any

import attrs
import pluggy
import torch
from torch import Tensor

from latentkit import hookspecs, objectives
from latentkit.arguments import check_count, check_flag, check_model, describe_value
from latentkit.chains import LatentModel, ObjectiveChoice
from latentkit.config import structure_config
from latentkit.errors import ConfigError, EstimatorError, InputError, PluginError, UnknownModelError
from latentkit.objectives import Objective, ObjectiveSpec
from latentkit.specs import ModelSpec
from latentkit.validation import check_model_input

__all__ = [
    "ENTRY_POINT_GROUP",
    "ModelSpec",
    "PluginFault",
    "get_model_spec",
    "get_objective_spec",
    "list_models",
    "list_objectives",
    "load_model",
    "make_objective",
    "model_specs",
    "objective_specs",
    "plugin_faults",
    "register_plugin",
    "reload_plugins",
    "training_loss",
    "training_objective",
    "unregister_plugin",
]

ENTRY_POINT_GROUP = "latentkit.plugins"
IN_PROCESS = "<registered in process>"
BUILT_IN = "latentkit"
"""The distribution named for what the core registers itself (the ``elbo``/``iwae`` objectives)."""


@attrs.frozen
class PluginFault:
    """A plugin problem found while loading: which distribution, which entry point, what."""

    distribution: str
    entry_point: str
    problem: str

    def __str__(self) -> str:
        if self.distribution == IN_PROCESS:
            return f"plugin {self.entry_point!r} (registered in process): {self.problem}"
        return f"{self.distribution} (entry point {self.entry_point!r}): {self.problem}"


class _Registry:
    def __init__(self) -> None:
        self.pm = pluggy.PluginManager("latentkit")
        self.pm.add_hookspecs(hookspecs)
        # The core's own objectives come in through the same hook as a plugin's.
        self.pm.register(objectives, name="latentkit.objectives")
        self.origin: dict[str, str] = {"latentkit.objectives": BUILT_IN}  # plugin → distribution
        self.extra: list[tuple[object, str]] = []
        self.models: dict[str, ModelSpec] | None = None
        self.objectives: dict[str, ObjectiveSpec] = {}
        self.faults: list[PluginFault] = []
        self.collecting: list[str] = []
        """Plugins whose hook ``_collect`` is calling now (innermost last)."""

    def _discover(self) -> None:
        seen: dict[str, str] = {}
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = ep.dist.name if ep.dist is not None else "<unknown distribution>"
            if ep.name in seen:
                if seen[ep.name] != dist:
                    self.faults.append(
                        PluginFault(
                            dist,
                            ep.name,
                            f"entry point name already used by {seen[ep.name]}; not loaded",
                        )
                    )
                continue
            seen[ep.name] = dist
            if not ep.pattern.match(ep.value):
                self.faults.append(
                    PluginFault(
                        dist,
                        ep.name,
                        f"malformed entry point value {ep.value!r}: expected 'package.module' "
                        "or 'package.module:object', unquoted",
                    )
                )
                continue
            try:
                self.pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP, name=ep.name)
            except Exception as exc:
                self.faults.append(
                    PluginFault(dist, ep.name, f"failed to load {ep.value}: {exc!r}")
                )
                continue
            self.origin[ep.name] = dist
        for obj, name in self.extra:
            if not self.pm.is_registered(obj):
                problem = None
                if self.pm.get_plugin(name) is not None:
                    problem = f"the plugin name is taken by {self.pm.get_plugin(name)!r}"
                else:
                    try:
                        self.pm.register(obj, name=name)
                    except pluggy.PluginValidationError as exc:
                        problem = str(exc)
                if problem:
                    self.faults.append(PluginFault(IN_PROCESS, name, f"not registered: {problem}"))
                    continue
            self.origin[name] = IN_PROCESS
        self._unknown_hooks()

    def _unknown_hooks(self) -> None:
        """A hook implementation with no matching spec (a typo) would contribute nothing."""
        known = sorted(n for n in dir(hookspecs) if n.startswith("latentkit_"))
        for hook_name, caller in vars(self.pm.hook).items():
            if hook_name.startswith("_") or caller.has_spec():
                continue
            for impl in caller.get_hookimpls():
                if impl.optionalhook:
                    continue
                self.faults.append(
                    PluginFault(
                        self.origin.get(impl.plugin_name, impl.plugin_name),
                        impl.plugin_name,
                        f"implements {hook_name!r}, which is not a latentkit hook "
                        f"(known hooks: {', '.join(known)})",
                    )
                )

    def _collect(
        self,
        hook: str,
        spec_class: type,
        what: str,
        *,
        skip: frozenset[str] = frozenset(),
        faults: list[PluginFault] | None = None,
    ) -> dict[str, Any]:
        """Every plugin's contributions to ``hook`` by name; faults recorded (in ``faults``,
        else the registry's), not raised. Plugins named in ``skip`` are not asked."""
        found: dict[str, Any] = {}
        faults = self.faults if faults is None else faults
        for impl in getattr(self.pm.hook, hook).get_hookimpls():
            if impl.plugin_name in skip:
                continue
            dist = self.origin.get(impl.plugin_name, impl.plugin_name)

            def fault(problem: str, dist: str = dist, impl: Any = impl) -> None:
                faults.append(PluginFault(dist, impl.plugin_name, problem))

            self.collecting.append(impl.plugin_name)
            try:
                specs = impl.function()
            except Exception as exc:
                fault(f"{hook}() raised {exc!r}")
                continue
            finally:
                self.collecting.pop()
            if not isinstance(specs, (list, tuple)):
                fault(f"{hook}() must return a list of {what}, got {type(specs).__name__}")
                continue
            for spec in specs:
                if not isinstance(spec, spec_class):
                    fault(f"{hook}() returned {spec!r}, not a {what}")
                elif spec.name in found:
                    fault(
                        f"{what.removesuffix('Spec').lower()} name {spec.name!r} is already "
                        f"registered by {found[spec.name].plugin}; this one is ignored"
                    )
                else:
                    found[spec.name] = attrs.evolve(spec, plugin=dist)
        return dict(sorted(found.items()))

    def ensure(self) -> dict[str, ModelSpec]:
        if self.models is None and self.collecting:
            # A plugin's hook looks a model up while the models are being collected (a
            # plugin that wraps another's model): it gets every other plugin's models,
            # asked again without discovering the entry points again, and without itself
            # or any hook further out (two plugins that look each other up end in a fault
            # each, not in a recursion). Faults are recorded by the outer collection alone.
            return self._collect(
                "latentkit_models",
                ModelSpec,
                "ModelSpec",
                skip=frozenset(self.collecting),
                faults=[],
            )
        if self.models is None:
            self.faults = []
            self._discover()
            self.models = self._collect("latentkit_models", ModelSpec, "ModelSpec")
            self.objectives = self._collect("latentkit_objectives", ObjectiveSpec, "ObjectiveSpec")
        return self.models


_registry = _Registry()
_unregistered: list[object] = []  # undone once, so undoing again (a cleanup) is no error


def reload_plugins() -> None:
    """Forget the loaded plugins and discover them again (e.g. after installing one)."""
    extra = _registry.extra
    _registry.__init__()
    _registry.extra = extra


def _has_hooks(plugin: object) -> bool:
    """Whether ``plugin`` has a function marked ``@latentkit.hookimpl`` (what pluggy takes)."""
    for attr in dir(plugin):
        try:
            if _registry.pm.parse_hookimpl_opts(plugin, attr) is not None:
                return True
        except Exception:  # an attribute that cannot be read holds no hook
            continue
    return False


def register_plugin(plugin: object, name: str | None = None) -> None:
    """Register a plugin object in this process, without an entry point (tests, notebooks):
    a module, class or object with a ``@latentkit.hookimpl`` function, under ``name`` (a
    non-empty str; default its ``__name__``, else its repr), else a PluginError at once."""
    if name is not None and (not isinstance(name, str) or not name):
        raise PluginError(
            f"register_plugin: name must be a non-empty str, got {describe_value(name)}"
        )
    if not _has_hooks(plugin):
        raise PluginError(
            f"register_plugin: plugin {describe_value(plugin)} has no function marked "
            "@latentkit.hookimpl (a latentkit_models or latentkit_objectives hook)"
        )
    name = name or getattr(plugin, "__name__", None) or repr(plugin)
    _registry.extra.append((plugin, name))
    # Collected again (with every fault, the entry points' included) at the next use.
    _registry.models = None


def unregister_plugin(plugin: object) -> None:
    """Undo :func:`register_plugin` (again: nothing; a plugin never registered: a PluginError)."""
    known = [p for p, _ in _registry.extra] + _unregistered
    if not _registry.pm.is_registered(plugin) and all(p is not plugin for p in known):
        raise PluginError(f"unregister_plugin: plugin {describe_value(plugin)} is not registered")
    _unregistered.extend([plugin] if all(p is not plugin for p in _unregistered) else [])
    _registry.extra = [(p, n) for p, n in _registry.extra if p is not plugin]
    if _registry.pm.is_registered(plugin):
        _registry.pm.unregister(plugin)
    _registry.models = None


def list_models() -> list[str]:
    """Names of every registered model, sorted."""
    return list(_registry.ensure())


def model_specs() -> dict[str, ModelSpec]:
    """Every registered model's spec, by name."""
    return dict(_registry.ensure())


def plugin_faults() -> list[PluginFault]:
    """Problems met while loading plugins (empty when all loaded cleanly)."""
    _registry.ensure()
    return list(_registry.faults)


def get_model_spec(name: str) -> ModelSpec:
    """The spec registered under ``name``; a clear error listing the names otherwise."""
    models = _registry.ensure()
    if not isinstance(name, str) or name not in models:
        known = ", ".join(models) or "none"
        hint = ""
        if _registry.faults:
            hint = "; plugin faults: " + "; ".join(map(str, _registry.faults))
        raise UnknownModelError(f"no model named {name!r}; registered models: {known}{hint}")
    return models[name]


def load_model(name: str, **config: Any) -> LatentModel:
    """Build the model registered as ``name`` from config values (fields of its config class)."""
    if not isinstance(name, str):
        raise UnknownModelError(f"model name must be a string, got {type(name).__name__}")
    spec = get_model_spec(name)
    cfg = structure_config(spec.config_class, config, model=name)
    model = spec.factory(cfg)
    if not isinstance(model, LatentModel):
        raise PluginError(
            f"{spec.plugin}: the factory of model {name!r} returned {type(model).__name__}, "
            "not a latentkit.LatentModel"
        )
    model.name, model.config = name, cfg
    return model


def list_objectives() -> list[str]:
    """Names of every registered training objective, sorted (``elbo``, ``iwae`` and those
    plugins add through ``latentkit_objectives``)."""
    _registry.ensure()
    return list(_registry.objectives)


def objective_specs() -> dict[str, ObjectiveSpec]:
    """Every registered objective's spec, by name."""
    _registry.ensure()
    return dict(_registry.objectives)


def get_objective_spec(name: str) -> ObjectiveSpec:
    """The objective registered under ``name``; a clear error listing the names otherwise."""
    _registry.ensure()
    found = _registry.objectives
    if not isinstance(name, str) or name not in found:
        raise ConfigError(
            f"no objective named {name!r}; registered objectives: {', '.join(found) or 'none'}"
        )
    return found[name]


def make_objective(name: str, model: LatentModel, **config: Any) -> Objective:
    """Build the objective registered as ``name`` for ``model`` from its config values.

    A bad value raises :class:`~latentkit.ConfigError` naming ``objective.FIELD``; an
    objective that does not apply to the model says why.
    """
    spec = get_objective_spec(name)
    if not isinstance(model, LatentModel):
        raise PluginError(f"make_objective needs a latentkit.LatentModel, got {type(model)!r}")
    cfg = structure_config(spec.config_class, config, where=f"objective {name!r}")
    supports = getattr(spec.factory, "supports", None)
    reason = supports(model) if callable(supports) else None
    if reason is not None:
        raise ConfigError(f"objective {name!r} does not apply to this model: {reason}")
    built = spec.factory(cfg, model)
    if not isinstance(built, Objective):
        raise PluginError(
            f"{spec.plugin}: the factory of objective {name!r} returned "
            f"{type(built).__name__}, not a latentkit.Objective"
        )
    built.name = spec.name
    return built


_built: weakref.WeakKeyDictionary[LatentModel, tuple[ObjectiveChoice, Objective]] = (
    weakref.WeakKeyDictionary()
)


def training_objective(model: LatentModel) -> Objective:
    """The objective ``model.objective_choice`` names (the one the model trains with unless
    told otherwise), built once per model and kept (its state, e.g. an importance sampler's
    history, carries over from call to call); built again if the choice is changed."""
    choice = check_model(model, "training_objective").objective_choice
    cached = _built.get(model)
    if cached is not None and cached[0] == choice:
        return cached[1]
    built = make_objective(choice.name, model, **choice.options)
    _built[model] = (ObjectiveChoice(choice.name, dict(choice.options)), built)
    return built


def training_loss(
    model: LatentModel, x: Tensor, step: int | Tensor | None = None, *, validate: bool = True
) -> Tensor:
    """The loss of the model's own objective (:func:`training_objective`), ``[batch]``.
    ``step``: optimizer steps taken so far, an int ≥ 0 or a 0-dim integer tensor (``None``:
    after any schedule has ended). ``validate``: check ``x`` first, as ``lk.elbo`` does
    (shape, dtype, device, finiteness, p(x|z_1)'s support; one read-back); ``False`` skips it."""
    if not isinstance(model, LatentModel):
        raise EstimatorError(f"model must be a latentkit.LatentModel, got {type(model).__name__}")
    if isinstance(step, Tensor):
        kind = step.dtype
        if step.ndim or kind.is_floating_point or kind.is_complex or kind == torch.bool:
            raise InputError(
                f"training_loss: step must be an int ≥ 0 or a 0-dim integer "
                f"tensor, got {describe_value(step)}"
            )
    elif step is not None:
        check_count(step, "training_loss: step", low=0)
    if check_flag(validate, "training_loss: validate"):
        check_model_input(model, x)
    return training_objective(model).forward(model, x, step)
