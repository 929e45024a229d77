"""A sharded store in one directory, driven from the CLI: ``ragkit shards init`` then
``HybridStore(DIR)`` and every command (scale-out part 1, acceptance 7)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragkit import HybridStore
from ragkit.backends import ShardedStore
from ragkit.cli import main
from ragkit.embeddings import HashingEmbedder
from ragkit.errors import StoreError
from ragkit.limits import Limits


def init(store: Path, *extra: str) -> int:
    return main(["shards", "init", "--store", str(store), *extra])


def test_sharded_store_directory_end_to_end(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "kb"
    assert init(store, "--hosts", "3", "--partitions", "6", "--replicas", "2") == 0
    with HybridStore(store, embedder=HashingEmbedder(dim=32)) as kb:
        assert isinstance(kb.backend, ShardedStore)
        kb.add_texts(
            [f"passage {i} on topic{i % 5}" for i in range(300)], ids=[f"p{i}" for i in range(300)]
        )
    capsys.readouterr()
    assert main(["shards", "status", "--store", str(store), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert [h["name"] for h in status["hosts"]] == ["h000", "h001", "h002"]
    assert len(status["copies"]) == 12  # 6 partitions x 2 replicas
    assert sum(c["records"] for c in status["copies"]) == 600
    assert all(c["in_sync"] and c["lag"] == 0 for c in status["copies"])

    assert main(["shards", "add", "--store", str(store)]) == 0
    assert main(["search", "--store", str(store), "topic3", "--json", "-k", "5"]) == 0
    hits = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(hits) == 5 and len({h["id"] for h in hits}) == 5
    assert main(["shards", "status", "--store", str(store)]) == 0
    out = capsys.readouterr().out
    assert "h003" in out and "primary" in out
    with HybridStore(store) as kb:
        assert kb.count() == 300


def test_ingest_and_search_by_tenant_in_a_tenant_routed_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "kb"
    assert init(store, "--hosts", "2", "--partitions", "4", "--route-by", "tenant") == 0
    docs = tmp_path / "docs.jsonl"
    docs.write_text(
        "\n".join(json.dumps({"id": f"d{i}", "text": f"acme memo {i} budget"}) for i in range(20))
    )
    with HybridStore(store, embedder=HashingEmbedder(dim=16)):
        pass  # the embedder is recorded in the store
    assert main(["ingest", "--store", str(store), str(docs), "--tenant", "acme"]) == 0
    capsys.readouterr()
    search = ["search", "--store", str(store), "budget", "--tenant", "acme", "--json", "-k", "3"]
    assert main(search) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3
    with HybridStore(store) as kb:
        assert kb.count(tenant="acme") == 20 and kb.count() == 0


def test_status_of_a_plain_store_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    HybridStore(tmp_path / "kb", embedder=HashingEmbedder(dim=8)).close()
    assert main(["shards", "status", "--store", str(tmp_path / "kb")]) == 2
    assert "not a sharded store" in capsys.readouterr().err


def test_bad_layouts_are_rejected_with_what_is_accepted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert init(tmp_path / "a", "--hosts", "2", "--partitions", "4", "--replicas", "3") == 2
    assert "replicas must be 1..2" in capsys.readouterr().err
    assert init(tmp_path / "b", "--hosts", "2", "--partitions", "0") == 2
    assert "partitions must be a positive integer" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_layouts_past_the_limits_are_refused_by_init_and_on_open(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--partitions 1000000`` once created 8,000 directories before anyone noticed: init
    refuses it up front, and a store.json edited past the limits does not open (not even
    read-only ``ragkit stats``); a store's own ``Limits`` can raise or lower them."""
    assert init(tmp_path / "a", "--hosts", "2", "--partitions", "1000000") == 2
    err = capsys.readouterr().err
    assert "partitions=1000000" in err and "Limits.max_partitions" in err
    assert init(tmp_path / "b", "--hosts", "300", "--partitions", "4") == 2
    assert "Limits.max_hosts" in capsys.readouterr().err
    assert init(tmp_path / "c", "--hosts", "12", "--partitions", "12", "--replicas", "10") == 2
    assert "Limits.max_replicas" in capsys.readouterr().err
    assert not any((tmp_path / n).exists() for n in "abc")

    store = tmp_path / "kb"
    assert init(store, "--hosts", "2", "--partitions", "4") == 0
    layout = json.loads((store / "store.json").read_text())
    (store / "store.json").write_text(json.dumps({**layout, "partitions": 1_000_000}))
    before = sorted(p.name for p in store.rglob("*"))
    assert main(["stats", "--store", str(store)]) == 2
    err = capsys.readouterr().err
    assert "store.json" in err and "Limits.max_partitions" in err
    assert sorted(p.name for p in store.rglob("*")) == before  # nothing was created

    (store / "store.json").write_text(json.dumps({**layout, "partitions": 8}))
    with pytest.raises(StoreError, match=r"Limits\.max_partitions"):
        HybridStore(store, embedder=HashingEmbedder(dim=8), limits=Limits(max_partitions=6))
    with HybridStore(store, embedder=HashingEmbedder(dim=8), limits=Limits(max_partitions=8)):
        pass


def test_a_round_one_sharded_directory_gets_migration_advice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = tmp_path / "old"
    old.mkdir()
    (old / "shards.json").write_text('{"shards": ["shard-000"], "replicas": 1}')
    assert main(["search", "--store", str(old), "anything"]) == 2
    assert "ragkit migrate" in capsys.readouterr().err
