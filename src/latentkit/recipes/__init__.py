"""Shipped recipes: named run configurations that reproduce published results.

Each recipe is a TOML file of this folder in ``latentkit train --config``'s format, with a
``[recipe]`` table that says where it comes from (``source``, ``published_nll``), what it
trains (``description``, ``architecture``, ``optimiser``, ``protocol``) and what it costs
(``budget_cpu``, ``budget_gpu``). ``latentkit recipes`` lists them; ``latentkit train
--recipe NAME`` runs one, any key overridable with ``--set`` (e.g. ``--set steps=300``).
Results and the commands that made them: ``docs/reproduction.md``.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import tomllib

from latentkit.errors import ConfigError

__all__ = ["list_recipes", "recipe_info", "recipe_text"]


def _files() -> dict[str, Any]:
    folder = resources.files(__name__)
    return {
        entry.name.removesuffix(".toml"): entry
        for entry in folder.iterdir()
        if entry.name.endswith(".toml")
    }


def list_recipes() -> list[str]:
    """Names of the shipped recipes, sorted."""
    return sorted(_files())


def recipe_text(name: str) -> str:
    """The TOML text of recipe ``name``; a clear error listing the recipes otherwise."""
    files = _files()
    if not isinstance(name, str) or name not in files:
        raise ConfigError(f"no recipe named {name!r}; recipes: {', '.join(sorted(files))}")
    return files[name].read_text()


def recipe_info(name: str) -> dict[str, Any]:
    """The ``[recipe]`` table of recipe ``name`` (source, description, budgets, ...)."""
    return dict(tomllib.loads(recipe_text(name)).get("recipe", {}))
