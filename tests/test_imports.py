"""Imports inside ``ragkit/`` point down only (one search protocol, acceptance 2).

Every ``import`` of a ragkit module, at the top of a file, inside a function or under
``TYPE_CHECKING``, is an edge. The test fails on an edge to a higher layer than the importing
module's, on a cycle between modules, and on ``pytest`` imported outside ``ragkit/testing/``.
A package's ``__init__`` gathering its own submodules is not an edge of the package's
modules; ``from package import name`` is an edge to the module that defines ``name``."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "ragkit"

#: lowest first; a module belongs to the layer of the longest prefix of its name
LAYERS: list[tuple[str, ...]] = [
    ("ragkit.errors", "ragkit.limits"),
    (
        "ragkit._async",
        "ragkit._validation",
        "ragkit._rowids",
        "ragkit._legs",
        "ragkit.analysis",
        "ragkit.schema",
        "ragkit.decay",
        "ragkit.query_syntax",
        "ragkit.rerank",
        "ragkit.grouping",
        "ragkit._highlight_scan",
        "ragkit.highlight",
        "ragkit.filters",
        "ragkit.fusion",
        "ragkit.request",
        "ragkit.mmr",
        "ragkit.tracing",
        "ragkit.cache",
        "ragkit.beir",
    ),
    ("ragkit.embeddings",),
    ("ragkit.backends.base", "ragkit.backends._remote"),
    ("ragkit._pipeline",),  # runs a search over any Shard; a served store runs it too
    ("ragkit.backends", "ragkit.backup"),
    # a store's caches; opening a path; shaping an answer (groups, windows, highlights)
    ("ragkit.cache._store", "ragkit._opening", "ragkit._answer"),
    ("ragkit.store",),
    ("ragkit.ingest", "ragkit.sources", "ragkit.evaluation", "ragkit._offtopic", "ragkit.migrate"),
    ("ragkit.stores", "ragkit.retrievers", "ragkit.chains"),
    ("ragkit.cli",),
    ("ragkit.testing",),
]


def _name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_name(p): p for p in ROOT.rglob("*.py")}


def _layer(module: str) -> int:
    """The layer of the longest prefix of ``module`` listed (the package root: the store's)."""
    if module == "ragkit":
        return next(i for i, names in enumerate(LAYERS) if "ragkit.store" in names)
    matches = [
        (len(p), i)
        for i, prefixes in enumerate(LAYERS)
        for p in prefixes
        if module == p or module.startswith(p + ".")
    ]
    assert matches, f"{module} is in no layer: add it to LAYERS"
    return max(matches)[1]


def _is_package(module: str) -> bool:
    return MODULES[module].name == "__init__.py"


def _defined_in(package: str, name: str) -> str:
    """The module a package's ``__init__`` takes ``name`` from (the package if its own)."""
    if f"{package}.{name}" in MODULES:
        return f"{package}.{name}"
    tree = ast.parse(MODULES[package].read_text())
    for node in tree.body:
        if (
            isinstance(node, ast.ImportFrom)
            and node.module
            and node.level == 0
            and any((a.asname or a.name) == name for a in node.names)
        ):
            return node.module if node.module in MODULES else package
    return package


def _imports(module: str) -> Iterator[str]:
    """Every ragkit module (or ``pytest``) this module imports, wherever it does."""
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("ragkit") or alias.name.split(".")[0] == "pytest":
                    yield alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] == "pytest":
                yield "pytest"
            elif node.module.startswith("ragkit"):
                if node.module in MODULES and _is_package(node.module):
                    for alias in node.names:
                        yield _defined_in(node.module, alias.name)
                else:
                    yield node.module


def _edges() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for module in MODULES:
        targets = set(_imports(module)) - {module}
        if _is_package(module):  # gathering its own submodules is not an edge
            targets = {t for t in targets if not t.startswith(module + ".")}
        edges[module] = targets
    return edges


def test_pytest_is_imported_only_in_ragkit_testing() -> None:
    offenders = sorted(
        m for m, targets in _edges().items() if "pytest" in targets and _layer(m) != len(LAYERS) - 1
    )
    assert not offenders, f"pytest imported outside ragkit/testing/: {offenders}"


def test_imports_point_down_only() -> None:
    upward = sorted(
        f"{m} (layer {_layer(m)}) imports {t} (layer {_layer(t)})"
        for m, targets in _edges().items()
        for t in targets
        if t != "pytest" and _layer(t) > _layer(m)
    )
    assert not upward, "\n".join(upward)


def test_no_module_cycle() -> None:
    edges = {m: {t for t in ts if t in MODULES} for m, ts in _edges().items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(edges):
        if module not in index:
            visit(module)
    assert not cycles, f"import cycles: {cycles}"


def test_the_walker_sees_every_kind_of_import() -> None:
    """The test itself: a deferred import, a TYPE_CHECKING import and a package re-export
    are all seen."""
    edges = _edges()
    assert "ragkit.backends.local.shard" in edges["ragkit.backends.sharded.host"] or any(
        t.startswith("ragkit.backends.local") for t in edges["ragkit.backends.sharded.host"]
    )
    assert "ragkit.backends.local._kernels" in edges["ragkit.backends.local._dense"]
    assert "pytest" in edges["ragkit.testing.shard_contract"]


def test_moved_names_still_work_one_release_and_warn() -> None:
    import pytest

    import ragkit.sources as old_sources
    from ragkit.ingest import sources

    with pytest.warns(DeprecationWarning, match="ragkit.ingest.sources.read_source"):
        assert old_sources.read_source is sources.read_source
