"""A store's identity is its own: copies of a store directory (``cp -r``, a backup restored
twice) never share cached results, behind one SQLite cache or one real Redis (reliability
round two, item 1).

Before this, a copy kept the store id and both copies' generations moved in step, so store B
answered with store A's records and ``result_cache_hit: True``."""

from __future__ import annotations

import shutil
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ragkit import HybridStore
from ragkit.cache import CacheBackend, RedisCache, SQLiteCache
from ragkit.embeddings import HashingEmbedder

QUERY = "invoice 4711"


def _store(path: Path, cache: CacheBackend, **kwargs: Any) -> HybridStore:
    return HybridStore(
        path, embedder=HashingEmbedder(dim=32), cache=cache, result_cache=True, **kwargs
    )


@pytest.fixture(params=["sqlite", "redis"])
def shared_cache(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CacheBackend]:
    """One cache both copies use: a SQLite file, or the session's real redis-server."""
    if request.param == "sqlite":
        cache: CacheBackend = SQLiteCache(tmp_path / "cache.sqlite3")
    else:
        url = request.getfixturevalue("redis_url")
        cache = RedisCache(url, prefix=f"identity-{uuid.uuid4().hex[:8]}:")
    yield cache
    cache.close()


def _texts(result: Any) -> list[str]:
    return [hit.record.text for hit in result.hits]


def test_a_copied_directory_never_answers_with_the_originals_results(
    tmp_path: Path, shared_cache: CacheBackend
) -> None:
    a_dir, b_dir = tmp_path / "kb", tmp_path / "kb2"
    with _store(a_dir, shared_cache) as a:
        a.add_texts(["shared policy on invoices"], ids=["base"])
    shutil.copytree(a_dir, b_dir)
    with _store(a_dir, shared_cache) as a, _store(b_dir, shared_cache) as b:
        assert a.backend.store_id != b.backend.store_id
        # The generations move in step: one write each, different records.
        a.add_texts(["customer A secret invoice 4711"], ids=["secret"])
        b.add_texts(["customer B public invoice 4711"], ids=["secret"])
        assert a.backend.generation == b.backend.generation
        first = a.search(QUERY, k=2)
        assert "customer A secret invoice 4711" in _texts(first)
        assert a.search(QUERY, k=2).info["result_cache_hit"]  # the cache does work
        answer = b.search(QUERY, k=2)
        assert not answer.info["result_cache_hit"]
        assert "customer A secret invoice 4711" not in _texts(answer)
        assert "customer B public invoice 4711" in _texts(answer)


def test_a_copy_searched_before_any_write_misses_the_originals_entries(
    tmp_path: Path, shared_cache: CacheBackend
) -> None:
    a_dir = tmp_path / "kb"
    with _store(a_dir, shared_cache) as a:
        a.add_texts(["customer A secret invoice 4711"], ids=["secret"])
        a.search(QUERY, k=1)
    for n in range(2):  # a backup restored twice: two copies, each its own
        shutil.copytree(a_dir, tmp_path / f"copy{n}")
    with (
        _store(tmp_path / "copy0", shared_cache) as c0,
        _store(tmp_path / "copy1", shared_cache) as c1,
    ):
        assert len({c0.backend.store_id, c1.backend.store_id}) == 2
        assert not c0.search(QUERY, k=1).info["result_cache_hit"]
        assert not c1.search(QUERY, k=1).info["result_cache_hit"]


def test_read_only_opens_of_an_unopened_copy_agree_on_an_identity_of_their_own(
    tmp_path: Path, shared_cache: CacheBackend
) -> None:
    a_dir, b_dir = tmp_path / "kb", tmp_path / "kb2"
    with _store(a_dir, shared_cache) as a:
        a.add_texts(["customer A secret invoice 4711"], ids=["secret"])
        original = a.backend.store_id
        a.search(QUERY, k=1)
    shutil.copytree(a_dir, b_dir)
    with _store(b_dir, shared_cache, read_only=True) as r1:
        reader_id = r1.backend.store_id
        assert reader_id != original
        assert not r1.search(QUERY, k=1).info["result_cache_hit"]
    with _store(b_dir, shared_cache, read_only=True) as r2:
        assert r2.backend.store_id == reader_id
        assert r2.search(QUERY, k=1).info["result_cache_hit"]  # readers of the copy share
    with _store(a_dir, shared_cache, read_only=True) as ra:
        assert ra.backend.store_id == original
        assert ra.search(QUERY, k=1).info["result_cache_hit"]


def test_a_moved_store_keeps_its_identity(tmp_path: Path) -> None:
    with HybridStore(tmp_path / "kb", embedder=HashingEmbedder(dim=8)) as kb:
        kb.add_texts(["one"])
        before = kb.backend.store_id
    (tmp_path / "kb").rename(tmp_path / "moved")
    with HybridStore(tmp_path / "moved", embedder=HashingEmbedder(dim=8)) as kb:
        assert kb.backend.store_id == before


def _set_settings(log: Path, **values: str) -> None:
    with sqlite3.connect(log) as conn:
        conn.executemany(
            "UPDATE settings SET value = ? WHERE key = ?", [(v, k) for k, v in values.items()]
        )


def test_a_copy_that_keeps_its_id_still_never_shares_a_state_after_a_write(
    tmp_path: Path,
) -> None:
    """The inode of a deleted store can be reused by a copy put in its place: the copy then
    looks like the original. Every write's random token still tells their states apart."""
    a_dir, b_dir = tmp_path / "kb", tmp_path / "kb2"
    with HybridStore(a_dir, embedder=HashingEmbedder(dim=8)) as a:
        a.add_texts(["base"], ids=["base"])
    shutil.copytree(a_dir, b_dir)
    with sqlite3.connect(a_dir / "records.sqlite3") as conn:
        home = conn.execute("SELECT value FROM settings WHERE key = 'home'").fetchone()[0]
    with HybridStore(b_dir, embedder=HashingEmbedder(dim=8)) as b:
        copy_id = b.backend.store_id
    # Make the copy indistinguishable: the original's id and home.
    with sqlite3.connect(a_dir / "records.sqlite3") as conn:
        original_id = conn.execute("SELECT value FROM settings WHERE key='store_id'").fetchone()[0]
    assert copy_id != original_id
    _set_settings(b_dir / "records.sqlite3", store_id=original_id, home=home)
    (b_dir / "STORE").write_text(f'{{"kind": "ragkit.LocalShard", "store_id": "{original_id}"}}')
    with HybridStore(a_dir, embedder=HashingEmbedder(dim=8)) as a:
        a.add_texts(["A"], ids=["x"])
        key_a = a.backend.state_key
    b_home = b_dir / "records.sqlite3"
    # Opened in place of the original (same id, same home as far as the file says).
    st = b_home.stat()
    _set_settings(b_home, home=f"{st.st_dev}:{st.st_ino}")
    with HybridStore(b_dir, embedder=HashingEmbedder(dim=8)) as b:
        assert b.backend.store_id == original_id
        b.add_texts(["B"], ids=["x"])
        assert b.backend.generation == 2
        assert b.backend.state_key != key_a


def test_a_copied_sharded_directory_takes_a_new_identity(
    tmp_path: Path, shared_cache: CacheBackend
) -> None:
    from ragkit.cli import main

    a_dir, b_dir = tmp_path / "kb", tmp_path / "kb2"
    assert main(["shards", "init", "--store", str(a_dir), "--hosts", "2", "--partitions", "2"]) == 0
    with _store(a_dir, shared_cache) as a:
        a.add_texts(["shared policy on invoices"], ids=["base"])
        original = a.backend.store_id
    shutil.copytree(a_dir, b_dir)
    with _store(a_dir, shared_cache) as a, _store(b_dir, shared_cache) as b:
        assert a.backend.store_id == original != b.backend.store_id
        a.add_texts(["customer A secret invoice 4711"], ids=["secret"])
        b.add_texts(["customer B public invoice 4711"], ids=["secret"])
        assert a.backend.generation == b.backend.generation
        assert "customer A secret invoice 4711" in _texts(a.search(QUERY, k=2))
        answer = b.search(QUERY, k=2)
        assert not answer.info["result_cache_hit"]
        assert "customer A secret invoice 4711" not in _texts(answer)
