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


@pytest.fixture(scope="session")
def device(latentkit_device: str) -> torch.device:
    """cpu, or cuda when present (session-scoped so Hypothesis tests may use it)."""
    return torch.device(latentkit_device)
