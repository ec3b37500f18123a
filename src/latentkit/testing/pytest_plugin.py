"""pytest plugin (entry point ``pytest11``): ``--latentkit-device`` and the check fixtures.

Loaded automatically wherever latentkit is installed. A plugin author's suite gets
latentkit's property checks on their model with one fixture::

    def test_my_model(latentkit_check):
        latentkit_check("mymodel")

It runs every check in :data:`latentkit.testing.CHECKS` (Hypothesis's active profile sets
the number of examples) and fails with each failing check's shrunk counterexample. Tests
that take ``latentkit_check`` or ``latentkit_device`` run once per device: cpu, and cuda
— skipped with a reason where there is none — or those given by ``--latentkit-device``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("latentkit")
    group.addoption(
        "--latentkit-device",
        action="append",
        default=None,
        help="device(s) for latentkit checks: cpu, cuda (default: cpu, plus cuda when present)",
    )


def pytest_configure(config: pytest.Config) -> None:
    # Registered here so suites run with --strict-markers accept the mark the plugin adds.
    config.addinivalue_line("markers", "gpu: needs a CUDA device (added by latentkit's plugin)")


def _devices(config: pytest.Config) -> list:
    import torch  # imported when a test asks for a device, not at every pytest start

    chosen = config.getoption("--latentkit-device") or ["cpu", "cuda"]
    params = []
    for name in chosen:
        marks = []
        if name.startswith("cuda"):
            marks.append(pytest.mark.gpu)
            if not torch.cuda.is_available():
                marks.append(pytest.mark.skip(reason=f"{name}: no CUDA device on this machine"))
        params.append(pytest.param(name, marks=marks, id=name))
    return params


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "latentkit_device" in metafunc.fixturenames:
        metafunc.parametrize("latentkit_device", _devices(metafunc.config), scope="session")


@pytest.fixture
def latentkit_check(latentkit_device: str) -> Callable[..., Any]:
    """``latentkit_check(name, *, checks=None, configs=None, max_examples=None)``: run
    latentkit's property checks on the registered model ``name`` on this test's device.

    ``checks``: keys of the checks to run (default: all); ``configs``: a Hypothesis strategy
    of config dicts (default: the plugin's ``test_configs``); ``max_examples``: per check
    (default: the active Hypothesis profile's). Fails the test with the report and the
    counterexamples if any check fails; returns the list of ``CheckResult`` otherwise.
    """
    from latentkit.testing.checks import format_report, run_checks

    def check(
        name: str,
        *,
        checks: Iterable[str] | None = None,
        configs: Any = None,
        max_examples: int | None = None,
    ) -> list:
        __tracebackhide__ = True
        results = run_checks(
            name, device=latentkit_device, checks=checks, configs=configs, max_examples=max_examples
        )
        if any(r.failed for r in results):
            pytest.fail(format_report(name, results), pytrace=False)
        return results

    return check
