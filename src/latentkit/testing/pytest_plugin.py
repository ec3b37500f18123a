"""pytest plugin (entry point ``pytest11``): a ``--latentkit-device`` option and fixtures."""

from __future__ import annotations

import pytest
import torch


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("latentkit")
    group.addoption(
        "--latentkit-device",
        action="append",
        default=None,
        help="device(s) for latentkit checks: cpu, cuda (default: cpu, plus cuda when present)",
    )


def _devices(config: pytest.Config) -> list:
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
