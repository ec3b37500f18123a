"""The docs' Python examples run: every ```python block of these pages, in order, per page."""

from __future__ import annotations

import pathlib
import re

import pytest
import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGES = [
    "README.md",
    "docs/core.md",
    "docs/bounds.md",
    "docs/hvae.md",
    "docs/ddpm.md",
    "docs/training.md",
    "docs/objectives.md",
    "docs/diagnostics.md",
    "docs/vamp.md",
    "docs/iaf.md",
    "docs/continuous.md",
    "docs/conditional.md",
]
BLOCK = re.compile(r"```python\n(.*?)```", re.S)


@pytest.mark.parametrize("page", PAGES)
def test_python_blocks_run(page, tmp_path, monkeypatch):
    text = (ROOT / page).read_text()
    blocks = BLOCK.findall(text)
    assert blocks, f"{page} has no python example"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": f"docs_{pathlib.Path(page).stem}"}
    grad, dtype = torch.is_grad_enabled(), torch.get_default_dtype()
    try:
        for i, code in enumerate(blocks):
            try:
                exec(compile(code, f"{page}[block {i}]", "exec"), namespace)
            except Exception as exc:  # pragma: no cover - the message is the point
                raise AssertionError(f"{page}, python block {i} failed: {exc!r}\n{code}") from exc
    finally:  # examples may switch global torch state; later tests must not inherit it
        torch.set_grad_enabled(grad)
        torch.set_default_dtype(dtype)
