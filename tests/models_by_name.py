"""Every registered model built by name for the tests that loop over ``lk.list_models()``.

A plugin model builds from its defaults. The core's ``composed`` model has no default (it
joins two models the user names), so these tests take a VAE over a VAE prior. A model that
is conditional by default (``m2``) is given a class, as the checks kit gives one (class 0):
the member of its family, an ordinary latent model.
"""

from __future__ import annotations

import latentkit as lk
from latentkit.composition import compose_by_name
from latentkit.testing.checks.case import given_seeded_condition

COMPOSED_ARGV = ["--model", "vae", "--prior", "vae"]
"""The command-line form of the composed model these tests train."""


def default_model(name: str) -> lk.LatentModel:
    """``lk.load_model(name)``, or for ``composed`` a VAE with a VAE prior (defaults); a
    conditional model given class 0."""
    if name == "composed":
        return compose_by_name("vae", {}, "vae", {})
    return given_seeded_condition(lk.load_model(name), 0)


def model_argv(name: str) -> list[str]:
    """``--model NAME`` for ``latentkit train`` (the composed model: its two parts)."""
    return list(COMPOSED_ARGV) if name == "composed" else ["--model", name]
