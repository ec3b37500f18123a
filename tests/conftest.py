"""Shared test setup: Hypothesis profiles, the ``device`` fixture, the slow-test budget.

Profiles (``HYPOTHESIS_PROFILE``): ``ci`` (default in .ci/run: bounded and
derandomized so CI is reproducible), ``dev`` (the default here) and ``thorough``.
Each test's ``@settings`` may only raise ``max_examples`` for its own reasons; never
lower it to hide a failure.

The ``device`` fixture is parametrized by latentkit's pytest plugin
(``--latentkit-device``): cpu always, cuda when present, else skipped with a reason.
"""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import HealthCheck, settings

_common = dict(
    deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
settings.register_profile("ci", max_examples=25, derandomize=True, print_blob=True, **_common)
settings.register_profile("dev", max_examples=40, **_common)
settings.register_profile("thorough", max_examples=500, **_common)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


def _pin_hypothesis_source_constants() -> None:
    """Keep Hypothesis's pool of source constants empty for the whole session.

    Hypothesis draws some values from the constants written in the source of every local
    module imported so far (``providers._get_local_constants``: latentkit's and the plugins'
    modules, anything a test imports from a temporary folder). That pool is process-wide
    and grows as tests import more of latentkit, so a derandomized test drew other examples
    depending on which tests ran before it in the same process (the vdm checks found no
    linear-Gaussian config after tests/test_cli_flags.py had imported the CLI's modules).
    With the pool pinned, a test's draws depend on the test alone, in any order or subset.
    """
    from hypothesis.internal.conjecture import providers

    if not hasattr(providers, "_get_local_constants"):  # a Hypothesis without the pool
        return
    empty = providers.Constants()
    providers._get_local_constants = lambda: empty
    providers.CONSTANTS_CACHE.cache.clear()


_pin_hypothesis_source_constants()


@pytest.fixture(scope="session")
def device(latentkit_device: str) -> torch.device:
    """cpu, or cuda when present (session-scoped so Hypothesis tests may use it)."""
    return torch.device(latentkit_device)
