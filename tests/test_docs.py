"""The documentation stays true to the repository."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_sites_benchmark_page_is_benchmarks_md() -> None:
    """docs/benchmarks.md is BENCHMARKS.md with image paths relative to docs/ (bench/report.py
    writes both; an edit to one alone fails here)."""
    source = (ROOT / "BENCHMARKS.md").read_text()
    assert (ROOT / "docs" / "benchmarks.md").read_text() == source.replace("](docs/img/", "](img/")
    for image in re.findall(r"\]\((docs/img/[^)]+)\)", source):
        assert (ROOT / image).exists(), image


def test_every_notebook_the_docs_list_exists() -> None:
    listed = re.findall(r"`(cookbook/[^`]+\.ipynb)`", (ROOT / "docs" / "cookbook.md").read_text())
    assert len(listed) == 8
    assert all((ROOT / path).exists() for path in listed)
    assert sorted(listed) == sorted(
        str(p.relative_to(ROOT)) for p in (ROOT / "cookbook").glob("*.ipynb")
    )
