"""docs/compose.md's Python examples run, in order, as tests/test_docs.py runs the other pages."""

from __future__ import annotations

import test_docs as docs_pages


def test_compose_page_blocks_run(tmp_path, monkeypatch):
    docs_pages.test_python_blocks_run("docs/compose.md", tmp_path, monkeypatch)
