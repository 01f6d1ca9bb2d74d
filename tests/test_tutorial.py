"""The tutorial pages (docs/tutorial/*.md) run: every ```python block of a page, in
order, in one namespace, with live R for the reference fits. A page whose numbers
drift from what it says fails its own assertions."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

PAGES = sorted((Path(__file__).resolve().parents[1] / "docs" / "tutorial").glob("3*.md"))
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def test_there_is_a_page_per_section():
    assert [p.name[:2] for p in PAGES] == ["31", "32", "33", "34", "35", "36"]


@pytest.mark.r
@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.stem)
def test_page_runs(page):
    blocks = BLOCK.findall(page.read_text())
    assert blocks, f"{page.name} has no python code"
    namespace: dict = {"__name__": f"tutorial_{page.stem}"}
    for i, code in enumerate(blocks):
        exec(compile(code, f"{page.name}[block {i + 1}]", "exec"), namespace)
