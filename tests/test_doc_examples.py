"""The getting-started page and the how-to run as written: every Python block of a page in
order, in one namespace (later blocks use the store earlier ones made), and the pages'
`ragkit ingest`, `ragkit sync`, `ragkit search`, `ragkit backup` and `ragkit restore` command
lines."""

from __future__ import annotations

import gc
import re
import shlex
from pathlib import Path

import pytest

from ragkit import HybridStore

DOCS = Path(__file__).resolve().parents[1] / "docs"
PAGES = ["getting-started.md", "how-to.md"]
RUNNABLE = (
    "ragkit ingest ",
    "ragkit sync ",
    "ragkit search ",
    "ragkit backup ",
    "ragkit restore ",
)


def _blocks(page: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", (DOCS / page).read_text(), flags=re.DOTALL)


@pytest.mark.parametrize("page", PAGES)
def test_every_python_example_of_the_page_runs(
    page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    blocks = _blocks(page, "python")
    assert blocks, f"{page} has no Python example"
    namespace: dict[str, object] = {"__name__": "docs"}
    try:
        for number, code in enumerate(blocks):
            exec(compile(code, f"{page} block {number}", "exec"), namespace)
    finally:
        gc.unfreeze()  # the how-to's gc.freeze() example is for a service, not this process
        for value in namespace.values():
            if isinstance(value, HybridStore):
                value.close()


@pytest.mark.parametrize("page", PAGES)
def test_the_pages_ingest_sync_and_search_commands_run(
    page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ragkit.cli.main import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "capitals.md").write_text(
        "# Capitals\n\nParis is the capital of France.\n"
    )
    lines = [
        line.split("  #")[0].strip()
        for block in _blocks(page, "bash")
        for line in block.splitlines()
        if line.startswith(RUNNABLE)
    ]
    assert lines, f"{page} shows no ingest, sync or search command"
    for line in lines:
        assert main(shlex.split(line)[1:]) == 0, line
