"""Two judged corpora built from documentation already on this machine, in BEIR layout.

Neither is written by this project nor chosen for how ragkit does on it. Each asks a known-item
question: a one-line summary a human wrote for a page, and the page it summarizes as the one
relevant document (the summary itself is not in the document).

- ``manpages``: every English manual page in sections 1-8 of ``/usr/share/man`` except the
  generated ``gcloud_*`` pages and ``.so`` redirects, rendered by ``man`` without hyphenation
  (a word broken across lines would be two words to BM25). Query: the NAME line's description
  ("list directory contents"); document: the page's names as title and its DESCRIPTION section
  (or, without one, the page after NAME and SYNOPSIS).
- ``docstrings``: functions and classes of the standard library and of a fixed list of
  installed packages. Query: the docstring's summary paragraph; document: the qualified name
  as title and the rest of the docstring.

Documents are cut at 2,000 characters, like a chunk; queries whose summary is shared by two
documents are dropped (the documents stay, as distractors). The corpora are written under
``bench/results/corpora`` (not in the repository: the texts keep their own licenses).
"""

from __future__ import annotations

import ast
import gzip
import inspect
import json
import os
import random
import re
import subprocess
import sys
import sysconfig
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

MAN = Path("/usr/share/man")
SECTIONS = tuple(f"man{n}" for n in range(1, 9))
#: Packages whose docstrings join the standard library's, fixed before any measurement.
PACKAGES = (
    "numpy",
    "scipy",
    "sympy",
    "sklearn",
    "networkx",
    "matplotlib",
    "torch",
    "pydantic",
    "sqlalchemy",
    "langchain_core",
    "llama_index/core",
)
MAX_CHARS = 2000
MAX_DOCS = 6000
QUERIES = 500
_WS = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class Page:
    id: str
    title: str
    text: str
    summary: str


def _squash(text: str) -> str:
    return _WS.sub(" ", text).strip()


def _render(path: Path) -> str:
    env = {**os.environ, "MANWIDTH": "100", "MAN_KEEP_FORMATTING": "0"}
    done = subprocess.run(
        ["man", "--nh", "--nj", "-l", "-E", "UTF-8", str(path)],
        capture_output=True,
        env=env,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        return ""
    plain = subprocess.run(
        ["col", "-bx"], input=done.stdout, capture_output=True, timeout=60, check=False
    )
    return plain.stdout.decode("utf-8", "replace")


def _sections(rendered: str) -> dict[str, str]:
    """Section heading (a line in capitals at column 0) -> its body."""
    out: dict[str, list[str]] = {}
    current: str | None = None
    for line in rendered.splitlines()[1:]:
        if line and not line[0].isspace() and line.upper() == line and len(line) < 40:
            current = line.strip()
            out.setdefault(current, [])
        elif current is not None:
            out[current].append(line)
    return {name: _squash("\n".join(lines)) for name, lines in out.items()}


def _man_page(path: Path) -> Page | None:
    with gzip.open(path, "rb") as raw:
        head = raw.read(200)
    if head.lstrip().startswith(b".so "):
        return None
    sections = _sections(_render(path))
    name = sections.get("NAME", "")
    names, dash, summary = name.partition(" - ")
    if not dash or not 2 <= len(summary.split()) <= 40:
        return None
    body = sections.get("DESCRIPTION") or " ".join(
        text for heading, text in sections.items() if heading not in ("NAME", "SYNOPSIS")
    )
    if len(body) < 100:
        return None
    page_id = f"{path.parent.name}/{path.name.removesuffix('.gz')}"
    return Page(page_id, names.strip(), body[:MAX_CHARS], summary.strip())


def man_pages() -> list[Page]:
    files = sorted(
        p
        for section in SECTIONS
        for p in (MAN / section).glob("*.gz")
        if not p.name.startswith("gcloud") and not p.is_symlink()
    )
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        pages = list(pool.map(_man_page, files))
    return [p for p in pages if p is not None]


def _python_files() -> Iterator[tuple[str, Path]]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(stdlib.rglob("*.py")):
        parts = path.relative_to(stdlib).parts
        if parts[0] in ("site-packages", "test", "idlelib", "lib2to3") or "tests" in parts:
            continue
        yield ".".join(parts).removesuffix(".py"), path
    site = Path(sysconfig.get_paths()["purelib"])
    for package in PACKAGES:
        for path in sorted((site / package).rglob("*.py")):
            parts = path.relative_to(site).parts
            if "tests" in parts or "test" in parts or "testing" in parts:
                continue
            yield ".".join(parts).removesuffix(".py"), path


def _docstrings(module: str, path: Path) -> Iterator[Page]:
    try:
        tree = ast.parse(path.read_text("utf-8"))
    except (SyntaxError, UnicodeDecodeError, ValueError):
        return
    stack: list[tuple[str, ast.AST]] = [(module, tree)]
    while stack:
        prefix, node = stack.pop()
        for child in ast.iter_child_nodes(node):
            if not isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                continue
            name = f"{prefix}.{child.name}"
            if isinstance(child, ast.ClassDef):
                stack.append((name, child))
            doc = ast.get_docstring(child)
            if not doc or child.name.startswith("_"):
                continue
            summary, _, body = inspect.cleandoc(doc).partition("\n\n")
            summary, body = _squash(summary), _squash(body)
            if not 3 <= len(summary.split()) <= 40 or len(body) < 200:
                continue
            yield Page(name, name, body[:MAX_CHARS], summary)


def docstrings() -> list[Page]:
    pages = [page for module, path in _python_files() for page in _docstrings(module, path)]
    seen: set[str] = set()
    unique = []
    for page in pages:  # inherited or copied docstrings: keep the first
        if page.text not in seen:
            seen.add(page.text)
            unique.append(page)
    rng = random.Random(0)
    return sorted(rng.sample(unique, min(MAX_DOCS, len(unique))), key=lambda p: p.id)


def write_beir(pages: list[Page], folder: Path) -> None:
    """``pages`` as a BEIR folder: every page in the corpus, ``QUERIES`` of those with a summary
    no other page shares as test queries."""
    counts = Counter(p.summary.lower() for p in pages)
    askable = [p for p in pages if counts[p.summary.lower()] == 1]
    asked = sorted(random.Random(1).sample(askable, min(QUERIES, len(askable))), key=lambda p: p.id)
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    with gzip.open(folder / "corpus.jsonl.gz", "wt", encoding="utf-8") as out:
        for page in pages:
            out.write(json.dumps({"_id": page.id, "title": page.title, "text": page.text}) + "\n")
    with (folder / "queries.jsonl").open("w", encoding="utf-8") as out:
        for n, page in enumerate(asked):
            out.write(json.dumps({"_id": f"q{n}", "text": page.summary}) + "\n")
    with (folder / "qrels" / "test.tsv").open("w", encoding="utf-8") as out:
        out.write("query-id\tcorpus-id\tscore\n")
        for n, page in enumerate(asked):
            out.write(f"q{n}\t{page.id}\t1\n")


def build(name: str, root: Path) -> Path:
    folder = root / name
    if not (folder / "qrels" / "test.tsv").exists():
        pages = man_pages() if name == "manpages" else docstrings()
        write_beir(pages, folder)
        print(f"  {name}: {len(pages)} documents", file=sys.stderr)
    return folder
