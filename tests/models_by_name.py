"""Every registered model built by name for the tests that loop over ``lk.list_models()``.

A plugin model builds from its defaults. The core's ``composed`` model has no default (it
joins two models the user names), so these tests take a VAE over a VAE prior.
"""

from __future__ import annotations

import latentkit as lk
from latentkit.composition import compose_by_name

COMPOSED_ARGV = ["--model", "vae", "--prior", "vae"]
"""The command-line form of the composed model these tests train."""


def default_model(name: str) -> lk.LatentModel:
    """``lk.load_model(name)``, or for ``composed`` a VAE with a VAE prior (defaults)."""
    if name == "composed":
        return compose_by_name("vae", {}, "vae", {})
    return lk.load_model(name)


def model_argv(name: str) -> list[str]:
    """``--model NAME`` for ``latentkit train`` (the composed model: its two parts)."""
    return list(COMPOSED_ARGV) if name == "composed" else ["--model", name]
