"""Hypothesis strategies of small ``hvae`` configs: the model's test configs, and the
linear-Gaussian ones its mutants are built on."""

from __future__ import annotations

from hypothesis import strategies as st


@st.composite
def hvae_configs(draw, max_depth: int = 4, max_dim: int = 4) -> dict:
    """Small ``load_model("hvae", **cfg)`` values across depth, architecture, posterior and
    conditioning (a third of them conditional on 3 classes: the checks run on the model given
    a seeded class, ``latentkit.testing.checks.case.given_seeded_condition``).

    Linear configs with a Gaussian likelihood are linear-Gaussian chains (for each class of a
    conditional one), so the checks' exact-log-p comparison applies to them.
    """
    architecture = draw(st.sampled_from(["linear", "mlp"]))
    likelihood = (
        "gaussian" if architecture == "linear" else draw(st.sampled_from(["gaussian", "bernoulli"]))
    )
    depth = draw(st.integers(2, max_depth))
    config = {
        "data_shape": (draw(st.integers(1, 6)),),
        "latent_dims": tuple(draw(st.integers(1, max_dim)) for _ in range(depth)),
        "architecture": architecture,
        "hidden": (draw(st.integers(2, 8)),),
        "likelihood": likelihood,
        "posterior": draw(st.sampled_from(["top-down", "bottom-up"])),
        "classes": draw(st.sampled_from((0, 0, 3))),
    }
    if architecture == "mlp" and draw(st.booleans()):  # widths per stage instead of `hidden`
        config["stage_hidden"] = tuple((draw(st.integers(2, 8)),) for _ in range(depth))
    return config


@st.composite
def linear_hvae_configs(draw, max_depth: int = 3, max_dim: int = 3, max_data_dim: int = 4) -> dict:
    """Small linear ``hvae`` configs with a Gaussian likelihood, either posterior: linear-
    Gaussian chains, so the exact oracle applies to every one (the base of its mutants)."""
    depth = draw(st.integers(2, max_depth))
    return {
        "data_shape": (draw(st.integers(1, max_data_dim)),),
        "latent_dims": tuple(draw(st.integers(1, max_dim)) for _ in range(depth)),
        "architecture": "linear",
        "likelihood": "gaussian",
        "posterior": draw(st.sampled_from(["top-down", "bottom-up"])),
    }
