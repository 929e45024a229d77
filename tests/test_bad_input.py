"""Acceptance 5: bad input gets a clear RagkitError naming the problem and changes nothing."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ragkit import HybridStore, RagkitError, Record
from ragkit.embeddings import HashingEmbedder


@pytest.fixture
def disk_store(tmp_path: Path) -> Iterator[HybridStore]:
    with HybridStore(tmp_path / "kb", embedder=HashingEmbedder(dim=16)) as store:
        store.add_texts(
            ["first text about cats", "second text about dogs"],
            ids=["a", "b"],
            metadatas=[{"n": 1}, {"n": 2}],
        )
        yield store


def snapshot(store: HybridStore) -> tuple[Any, ...]:
    records = store.get(["a", "b", "x", "y"], include_vectors=True)
    return (
        store.count(),
        [(r.id, r.text, r.metadata, r.vector.tolist()) for r in records],  # type: ignore[union-attr]
        store.search("cats dogs text", k=5).ids,
        store.backend._log.seq,  # type: ignore[attr-defined]
    )


vec16 = np.ones(16, dtype=np.float32)

WRITES: list[tuple[str, Callable[[HybridStore], object], str]] = [
    ("empty text", lambda s: s.add_texts(["ok text", ""], ids=["x", "y"]), "empty"),
    ("whitespace text", lambda s: s.add_texts(["ok text", " \n\t"], ids=["x", "y"]), "whitespace"),
    ("wrong dimension", lambda s: s.upsert([Record("x", "ok", {}, np.ones(3))]), "dimension 3"),
    ("NaN vector", lambda s: s.upsert([Record("x", "ok", {}, np.full(16, np.nan))]), "NaN"),
    ("inf vector", lambda s: s.upsert([Record("x", "ok", {}, vec16 * np.inf)]), "infinity"),
    ("duplicate ids", lambda s: s.add_texts(["one", "two"], ids=["x", "x"]), "duplicate id 'x'"),
    (
        "unserializable metadata",
        lambda s: s.add_texts(["ok"], metadatas=[{"when": object()}]),
        "JSON",
    ),
    ("NaN metadata", lambda s: s.add_texts(["ok"], metadatas=[{"score": float("nan")}]), "JSON"),
    ("non-string id", lambda s: s.add_texts(["ok", "ok2"], ids=["x", 5]), "ids[1] is int"),  # type: ignore[list-item]
    ("non-string text", lambda s: s.add_texts(["ok", 42]), "text must be a string"),  # type: ignore[list-item]
    ("metadata count", lambda s: s.add_texts(["ok", "ok2"], metadatas=[{}]), "1 metadatas for 2"),
    (
        "unknown filter operator (delete)",
        lambda s: s.delete(filter={"n": {"$regex": "1"}}),
        "$regex",
    ),
    ("wrong filter type (delete)", lambda s: s.delete(filter={"n": {"$gt": [1]}}), "$gt"),
    ("delete without arguments", lambda s: s.delete(), "ids or a filter"),
]

READS: list[tuple[str, Callable[[HybridStore], object], str]] = [
    ("unknown filter operator", lambda s: s.search("cats", filter={"n": {"$like": 1}}), "$like"),
    ("wrong filter type", lambda s: s.search("cats", filter={"n": {"$in": "12"}}), "$in"),
    ("k zero", lambda s: s.search("cats", k=0), "k must be an integer from 1 to 10,000"),
    ("k negative", lambda s: s.search("cats", k=-2), "got -2"),
    ("k float", lambda s: s.search("cats", k=2.5), "got 2.5"),
    ("wrong query vector dim", lambda s: s.search_by_vector(np.ones(5)), "dimension 5"),
    ("unknown mode", lambda s: s.search("cats", mode="fuzzy"), "'fuzzy'"),
]


@pytest.mark.parametrize(
    ("case", "call", "message"), WRITES + READS, ids=[c for c, _, _ in WRITES + READS]
)
def test_bad_input_is_a_clear_error_and_changes_nothing(
    disk_store: HybridStore, case: str, call: Callable[[HybridStore], object], message: str
) -> None:
    before = snapshot(disk_store)
    with pytest.raises(RagkitError) as info:
        call(disk_store)
    assert message in str(info.value), f"{case}: {info.value}"
    assert snapshot(disk_store) == before


def test_the_store_is_still_usable_and_reopens_after_rejections(tmp_path: Path) -> None:
    path = tmp_path / "kb"
    with HybridStore(path, embedder=HashingEmbedder(dim=16)) as store:
        store.add_texts(["kept"], ids=["k"])
        for _, call, _ in WRITES:
            with pytest.raises(RagkitError):
                call(store)
        store.add_texts(["added later"], ids=["l"])
    with HybridStore(path) as store:
        assert store.count() == 2
        assert store.search("kept", k=1, mode="lexical").ids == ["k"]
