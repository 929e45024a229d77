"""Issue 5, acceptance 3: three ``chroma run`` servers as the shards of a ShardedStore answer
like one Chroma collection; killing a server gives the documented partial answer."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

chromadb = pytest.importorskip("chromadb", reason="the chroma extra is part of make test")

from conftest import start_chroma  # noqa: E402

from ragkit import HybridStore  # noqa: E402
from ragkit.backends import ChromaShard, ShardedStore  # noqa: E402
from ragkit.backends.chroma import ChromaReplicas  # noqa: E402
from ragkit.backends.sharded import LocalHost  # noqa: E402
from ragkit.embeddings import HashingEmbedder  # noqa: E402
from ragkit.errors import ShardUnavailableError  # noqa: E402

VOCAB = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "omega",
    "sigma",
    "kappa",
    "theta",
    "zeta",
    "rho",
    "hybrid",
    "search",
    "vector",
]


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[tuple[Any, int]]]:
    procs = [start_chroma(tmp_path_factory.mktemp(f"chroma{i}")) for i in range(3)]
    yield procs
    for proc, _ in procs:
        proc.kill()
        proc.wait(timeout=20)


def corpus(seed: int) -> list[tuple[str, str, dict[str, int]]]:
    rng = random.Random(seed)
    return [
        (
            f"doc-{i:03d}",
            " ".join(rng.choices(VOCAB, k=rng.randint(1, 10))),
            {"g": rng.randint(0, 3)},
        )
        for i in range(rng.randint(5, 80))
    ]


def fill(store: HybridStore, docs: list[tuple[str, str, dict[str, int]]]) -> None:
    store.add_texts([t for _, t, _ in docs], [m for _, _, m in docs], [i for i, _, _ in docs])


def sharded(
    servers: list[tuple[Any, int]], tmp: Path | None, tag: str, **kwargs: Any
) -> HybridStore:
    """Each ``chroma run`` server is a host; its partition replicas are collections there."""
    hosts = [
        LocalHost(
            f"c{i}",
            replicas=ChromaReplicas(
                chromadb.HttpClient(host="127.0.0.1", port=port),
                prefix=tag,
                sidecar_root=None if tmp is None else tmp / f"{tag}-side{i}",
            ),
        )
        for i, (_, port) in enumerate(servers)
    ]
    kwargs.setdefault("heal_interval_s", None)
    router = ShardedStore(hosts, **kwargs)
    return HybridStore(backend=router, embedder=HashingEmbedder(dim=32))


@pytest.mark.parametrize("seed", range(6))
def test_three_chroma_servers_answer_like_one_collection(
    servers: list[tuple[Any, int]], tmp_path: Path, seed: int
) -> None:
    docs = corpus(seed)
    client = chromadb.PersistentClient(path=str(tmp_path / "single"))
    single = HybridStore(
        backend=ChromaShard(client, f"single{seed}"), embedder=HashingEmbedder(dim=32)
    )
    spread = sharded(servers, tmp_path, f"eq{seed}", partitions=6, replicas=2)
    fill(single, docs)
    fill(spread, docs)
    rng = random.Random(seed)
    for _ in range(5):
        query = " ".join(rng.choices(VOCAB, k=rng.randint(1, 3)))
        for flt in (None, {"g": 1}, {"g": {"$ne": 2}}):
            for mode in ("hybrid", "dense", "lexical"):
                want = single.search(query, k=10, mode=mode, filter=flt)
                got = spread.search(query, k=10, mode=mode, filter=flt)
                assert got.ids == want.ids, (mode, query, flt)
    single.close()
    spread.close()


def test_killing_a_chroma_server_gives_a_partial_answer_or_a_replica_answers(
    servers: list[tuple[Any, int]], tmp_path: Path
) -> None:
    docs = corpus(99)
    allow = sharded(servers, tmp_path, "one", partitions=3, replicas=1, deadline_s=5.0)
    fill(allow, docs)
    # A second router over the same collections: its in-memory sidecars are rebuilt from them.
    fail = sharded(servers, None, "one", partitions=3, replicas=1, deadline_s=5.0, partial="fail")
    assert fail.count() == allow.count() == len(docs)
    copied = sharded(servers, tmp_path, "two", partitions=3, replicas=2, deadline_s=5.0)
    fill(copied, docs)
    want = copied.search("alpha beta", k=5, mode="dense").ids
    lost = [f"partition-{c.partition}" for c in allow.backend.status().copies if c.host == "c2"]  # type: ignore[attr-defined]
    proc, _ = servers[2]
    proc.kill()
    proc.wait(timeout=20)
    result = allow.search("alpha beta", k=5, mode="dense")
    assert result.partial and result.missing_shards == lost
    with pytest.raises(ShardUnavailableError, match="partition"):
        fail.search("alpha beta", k=5, mode="dense")
    again = copied.search("alpha beta", k=5, mode="dense")  # replicas on the live servers
    assert again.ids == want and not again.partial
