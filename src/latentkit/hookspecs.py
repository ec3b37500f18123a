"""Hook specifications: the contract between latentkit and its plugins.

A plugin is a module (or object) with functions named like the hooks below, marked with
``latentkit.hookimpl``, exposed through an entry point in the group ``latentkit.plugins``::

    # pyproject.toml of your package
    [project.entry-points."latentkit.plugins"]
    mymodel = "mymodel_plugin.hooks"

Each hook's docstring says when it is called, what it receives and what it returns.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("latentkit")
hookimpl = pluggy.HookimplMarker("latentkit")

__all__ = ["hookimpl", "hookspec", "latentkit_models", "latentkit_objectives"]


@hookspec
def latentkit_models() -> list:
    """Contribute latent-variable models to the registry.

    Called once per plugin when the registry is first used (``latentkit.list_models``,
    ``latentkit.load_model``, ``latentkit list``), and again after
    ``latentkit.reload_plugins()``. Takes no arguments.

    Return a list of :class:`latentkit.ModelSpec`, one per model: its registry ``name``
    (lower case, digits, ``-`` and ``_``), its ``config_class`` (an attrs class whose
    validators reject bad values naming the field), and its ``factory``, a callable taking
    one config instance and returning a :class:`latentkit.LatentModel`. Optionally (keyword
    ``test_configs``) a zero-argument callable returning a Hypothesis strategy of small
    config dicts, which ``latentkit verify`` and ``latentkit.testing`` check the model on;
    (``checks``) the family's own checks; (``mutants``) the model with the deliberate faults
    of ``latentkit.testing.mutants`` it carries. Each keyword: :class:`latentkit.ModelSpec`.

    All plugins' results are collected (this is not a ``firstresult`` hook). A name two
    plugins both return is a fault reported with both distributions; the first stays
    usable. A plugin whose hook raises or returns anything but ``ModelSpec`` objects is
    reported in ``latentkit.plugin_faults()`` and skipped; the other plugins still load.
    So is a hook implementation whose name matches no hook here (a typo would otherwise
    contribute nothing, silently).

    A plugin that wraps another's model may look it up from this hook
    (``latentkit.get_model_spec("vae")``): it sees every other plugin's models, whichever
    loaded first. Two plugins that look each other's models up each get a fault
    (``tests/test_registry.py``).
    """


@hookspec
def latentkit_objectives() -> list:
    """Contribute training objectives to the registry.

    Called once per plugin when the registry is first used (``latentkit.list_objectives``,
    ``latentkit.make_objective``, ``latentkit train --objective NAME``), and again after
    ``latentkit.reload_plugins()``. Takes no arguments. The core contributes ``elbo`` and
    ``iwae`` through this same hook; the ``ddpm`` plugin adds ``simple`` and ``hybrid``.

    Return a list of :class:`latentkit.ObjectiveSpec`, one per objective: its registry
    ``name`` (lower case, digits, ``-`` and ``_``), its ``config_class`` (an attrs class of
    its options, whose validators reject bad values naming the field), and its ``factory``,
    called as ``factory(config, model)`` and returning a :class:`latentkit.Objective` — an
    ``nn.Module`` whose ``forward(model, x, step)`` gives the per-example loss ``[batch]``
    that training minimises (``step``: optimizer steps taken so far, an int or a 0-dim
    tensor, ``None`` after any schedule). An ``Objective`` subclass is itself a factory;
    its classmethod ``supports(model)`` (``None``, or the reason the objective does not
    apply) is consulted first.

    Faults are handled as for ``latentkit_models``: a name two plugins both return is
    reported with both distributions (the first stays usable), and a hook that raises or
    returns anything but ``ObjectiveSpec`` objects is reported in
    ``latentkit.plugin_faults()`` while the other plugins still load.
    """
