"""Reliability, cases 1, 4, 6, 7, 8: hostile and careless input gets a RagkitError naming the
value and what is accepted, changes nothing, and never bricks a store."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from ragkit import HybridStore, RagkitError, Record
from ragkit.backends import LocalShard
from ragkit.cli import main
from ragkit.embeddings import HashingEmbedder
from ragkit.errors import FilterError, InvalidInputError, StoreError
from ragkit.limits import Limits

EMBEDDER = HashingEmbedder(dim=16)


def snapshot(store: HybridStore) -> dict[str | None, list[tuple[str, str, Any]]]:
    out = {}
    for tenant in store.backend.tenants():
        ids = store.ids(tenant=tenant)
        out[tenant] = sorted((r.id, r.text, r.metadata) for r in store.get(ids, tenant=tenant))
    return out


@pytest.fixture
def kb(tmp_path: Path) -> Any:
    store = HybridStore(tmp_path / "kb", embedder=EMBEDDER)
    store.add_texts(["alpha beta", "gamma delta"], metadatas=[{"n": 1}, {"n": 2}], ids=["a", "g"])
    yield store
    store.close()


# ---- case 1: integers -------------------------------------------------------------------------


@pytest.mark.parametrize("value", [2**1024, -(2**64), 2**53 + 1, int("9" * 400)])
def test_an_integer_beyond_2_53_is_rejected_and_the_store_still_opens(
    kb: HybridStore, tmp_path: Path, value: int
) -> None:
    before = snapshot(kb)
    with pytest.raises(InvalidInputError, match="2\\*\\*53"):
        kb.add_texts(["huge"], metadatas=[{"n": value}], ids=["huge"])
    with pytest.raises(InvalidInputError, match="2\\*\\*53"):
        kb.add_texts(["nested"], metadatas=[{"deep": [{"n": value}]}])
    assert snapshot(kb) == before
    kb.close()
    with HybridStore(tmp_path / "kb") as reopened:  # never bricked
        assert snapshot(reopened) == before


def test_integers_up_to_2_53_compare_exactly(store: HybridStore) -> None:
    edge = 2**53
    store.add_texts(["edge", "below"], metadatas=[{"n": edge}, {"n": edge - 1}], ids=["e", "b"])
    assert store.ids({"n": edge}) == ["e"]
    assert store.ids({"n": {"$lt": edge}}) == ["b"]


@pytest.mark.parametrize(
    "flt", [{"n": 2**1024}, {"n": {"$gt": 2**64}}, {"n": {"$in": [1, 10**400]}}]
)
def test_a_huge_integer_in_a_filter_is_a_filter_error(kb: HybridStore, flt: Any) -> None:
    for call in (
        lambda: kb.search("alpha", filter=flt),
        lambda: kb.count(flt),
        lambda: kb.ids(flt),
    ):
        with pytest.raises(FilterError, match="2\\*\\*53"):
            call()


def test_ingest_of_a_400_digit_number_names_the_record_and_leaves_the_store_usable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "docs.jsonl"
    huge = {"n": int("9" * 400)}
    lines = [{"id": "ok", "text": "fine text"}, {"id": "bad", "text": "t", "metadata": huge}]
    source.write_text("\n".join(json.dumps(line) for line in lines))
    store = tmp_path / "kb"
    HybridStore(store, embedder=EMBEDDER).close()
    assert main(["ingest", "--store", str(store), str(source)]) == 2
    err = capsys.readouterr().err
    assert "'bad'" in err and "2**53" in err
    with HybridStore(store) as kb:
        assert kb.count() == 0  # validated before anything was written


# ---- case 4: a bare string is not a list of ids ----------------------------------------------


def test_delete_and_get_refuse_a_bare_string(kb: HybridStore) -> None:
    kb.add_texts(["one", "two", "three"], ids=["a", "b", "c"])
    for call in (lambda: kb.delete("abc"), lambda: kb.get("abc"), lambda: kb.get(None)):  # type: ignore[arg-type]
        with pytest.raises(InvalidInputError, match="list of strings"):
            call()
    assert [r.id for r in kb.get(["a", "b", "c"])] == ["a", "b", "c"]


# ---- case 6: metadata memory is proportional to what is stored --------------------------------


def test_a_record_with_20000_keys_costs_its_own_entries_not_20000_columns() -> None:
    limits = Limits(max_metadata_keys=50_000, max_metadata_bytes=2_000_000)
    shard = LocalShard(limits=limits)
    vec = EMBEDDER.embed_documents(["x"])[0]
    shard.upsert([Record(f"r{i}", f"row {i}", {"k": i}, vec) for i in range(2000)])
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    wide = {f"key{j}": j for j in range(20_000)}
    shard.upsert([Record("wide", "wide row", wide, vec)])
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    # Dense columns would allocate 4 arrays x 2,001 rows x 20,000 keys (~550 MB).
    assert grown < 60 * 2**20, f"{grown / 2**20:.0f} MB for one wide record"
    assert shard.count(filter=_parse({"key19999": 19999})) == 1
    assert shard.count(filter=_parse({"key19999": {"$exists": False}})) == 2000
    shard.close()


def _parse(spec: dict[str, Any]) -> Any:
    from ragkit.filters import parse_filter

    return parse_filter(spec)


# ---- case 7: no raw exception escapes ---------------------------------------------------------

LONE = "bad \udc80 text"


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.add_texts([LONE]),
        lambda s: s.add_texts(["ok"], ids=[LONE]),
        lambda s: s.add_texts(["ok"], metadatas=[{LONE: 1}]),
        lambda s: s.add_texts(["ok"], metadatas=[{"k": LONE}]),
        lambda s: s.add_texts(["ok"], tenant=LONE),
        lambda s: s.search(LONE),
        lambda s: s.search("ok", filter={"k": LONE}),
        lambda s: s.search("ok", filter={LONE: 1}),
        lambda s: s.get([LONE]),
    ],
)
def test_lone_surrogates_anywhere_are_invalid_input(kb: HybridStore, call: Any) -> None:
    before = snapshot(kb)
    with pytest.raises(InvalidInputError, match="surrogate"):
        call(kb)
    assert snapshot(kb) == before


def test_a_filter_nested_3000_deep_is_a_filter_error(kb: HybridStore) -> None:
    flt: dict[str, Any] = {"n": 1}
    for _ in range(3000):
        flt = {"$not": flt}
    with pytest.raises(FilterError, match="nests deeper than 32"):
        kb.search("alpha", filter=flt)


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.add_texts(["x"], metadatas=[[1]]),
        lambda s: s.add_texts(["x"], metadatas={"a": 1}),
        lambda s: s.add_texts("not a list"),
        lambda s: s.upsert([object()]),
        lambda s: s.get(None),
        lambda s: s.search(None),
        lambda s: s.search("x", k="3"),
        lambda s: s.search("x", tenant=7),
        lambda s: s.add_texts(["x"], ids=["bad\nid"]),
    ],
)
def test_wrong_types_are_invalid_input_not_type_errors(kb: HybridStore, call: Any) -> None:
    before = snapshot(kb)
    with pytest.raises(InvalidInputError):
        call(kb)
    assert snapshot(kb) == before


def test_every_call_after_close_is_a_store_error(tmp_path: Path) -> None:
    store = HybridStore(tmp_path / "kb", embedder=EMBEDDER)
    store.add_texts(["alpha"], ids=["a"])
    shard = store.backend
    store.close()
    calls = [
        lambda: store.search("alpha"),
        lambda: store.add_texts(["more"]),
        lambda: store.get(["a"]),
        store.count,
        lambda: store.delete(["a"]),
        shard.count,
        lambda: shard.get(["a"]),
    ]
    for call in calls:
        with pytest.raises(StoreError, match="closed"):
            call()
    store.close()  # closing twice is fine


def test_a_store_path_that_is_a_file_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "file.txt"
    path.write_text("not a store")
    with pytest.raises(StoreError, match="is a file"):
        HybridStore(path, embedder=EMBEDDER)


def test_a_corrupt_sqlite_file_is_a_store_error(tmp_path: Path) -> None:
    HybridStore(tmp_path / "kb", embedder=EMBEDDER).close()
    (tmp_path / "kb" / "records.sqlite3").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a readable ragkit record log"):
        HybridStore(tmp_path / "kb")


# ---- case 8: read-only commands never create a store ------------------------------------------


@pytest.mark.parametrize("command", [["search", "anything"], ["stats"], ["optimize"]])
def test_read_commands_on_an_ordinary_folder_create_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "holiday.jpg").write_bytes(b"\xff\xd8")
    assert main([command[0], "--store", str(folder), *command[1:]]) == 2
    assert "no ragkit store" in capsys.readouterr().err
    assert sorted(p.name for p in folder.iterdir()) == ["holiday.jpg"]


# ---- limits are configurable and named --------------------------------------------------------


@pytest.mark.parametrize(
    ("limits", "call", "limit_name"),
    [
        (Limits(max_text_chars=10), lambda s: s.add_texts(["x" * 11]), "max_text_chars"),
        (
            Limits(max_metadata_keys=2),
            lambda s: s.add_texts(["x"], metadatas=[{"a": 1, "b": 2, "c": 3}]),
            "max_metadata_keys",
        ),
        (
            Limits(max_metadata_bytes=20),
            lambda s: s.add_texts(["x"], metadatas=[{"a": "y" * 30}]),
            "max_metadata_bytes",
        ),
        (Limits(max_batch=2), lambda s: s.add_texts(["x", "y", "z"]), "max_batch"),
        (Limits(max_k=5), lambda s: s.search("x", k=6), "max_k"),
        (
            Limits(max_filter_conditions=2),
            lambda s: s.search("x", filter={"a": {"$in": [1, 2, 3]}}),
            "max_filter_conditions",
        ),
        (
            Limits(max_filter_depth=2),
            lambda s: s.search("x", filter={"$not": {"$not": {"$not": {"a": 1}}}}),
            "max_filter_depth",
        ),
        (Limits(max_query_chars=5), lambda s: s.search("x" * 6), "max_query_chars"),
    ],
)
def test_each_limit_is_enforced_and_named(limits: Limits, call: Any, limit_name: str) -> None:
    with HybridStore(embedder=EMBEDDER, limits=limits) as store:
        store.add_texts(["x"], ids=["seed"])
        with pytest.raises(RagkitError, match=limit_name.replace("max_", "").split("_")[0]):
            call(store)
        assert store.count() == 1
    with HybridStore(embedder=EMBEDDER) as relaxed:  # the defaults accept these
        relaxed.add_texts(["x"], ids=["seed"])
        call(relaxed)


def test_limits_themselves_are_validated() -> None:
    with pytest.raises(InvalidInputError, match="2\\*\\*53"):
        Limits(max_int=2**60)
    with pytest.raises(InvalidInputError, match="positive integer"):
        Limits(max_k=0)
