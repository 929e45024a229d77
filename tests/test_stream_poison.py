"""One poison event is one dead letter: the stream consumer against a real redis-server, with
every kind of bad event a producer has sent, mixed with good ones."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from ragkit import HybridStore
from ragkit.embeddings import HashingEmbedder
from ragkit.ingest import StreamConsumer, publish_delete, publish_upsert

DEEP = "[" * 200_000 + "]" * 200_000

#: (fields, what the dead letter's reason must say)
POISON: list[tuple[dict[str, Any], str]] = [
    ({"op": "delete", "id": "bad\nid"}, "control character"),
    ({"op": "delete", "id": "ok-id", "tenant": "acme\x00"}, "control character"),
    ({"op": "upsert", "id": "bad\x07id", "text": "text"}, "control character"),
    ({"op": "upsert", "id": "deep", "text": "t", "metadata": '{"a": ' + DEEP + "}"}, "too deep"),
    ({"op": "upsert", "id": "list", "text": "t", "metadata": "[1]"}, "JSON object"),
    ({"op": "upsert", "id": "json", "text": "t", "metadata": "{not json"}, "Expecting"),
    ({"op": "upsert", "id": "bytes", "text": b"\xff\xfe"}, "utf-8"),
    ({"op": "upsert", "id": b"\xff\xfe", "text": "t"}, "utf-8"),
    ({"op": "upsert", "id": "dim", "text": "t", "vector": b"\0\0\0\0" * 3}, "dimension"),
    ({"op": "upsert", "id": "odd", "text": "t", "vector": b"\0\0\0"}, "float32"),
    ({"op": "frobnicate", "id": "z"}, "op must be"),
    ({"op": "upsert", "text": "no id"}, "no 'id'"),
    (
        {
            "op": "upsert",
            "id": "nested",
            "text": "t",
            "metadata": json.dumps({"a": [[[[[]]]]] * 1}),
        },
        "",
    ),
]


def _publish_mixed(client: Any, stream: str) -> tuple[list[str], list[str]]:
    """Good events around every poison event; returns (good ids, poison stream ids)."""
    good, poison = [], []
    for n, (fields, _) in enumerate(POISON):
        publish_upsert(client, stream, f"good-{n}", f"good event number {n}")
        good.append(f"good-{n}")
        poison.append(client.xadd(stream, fields).decode())
    publish_upsert(client, stream, "to-delete", "deleted below")
    publish_delete(client, stream, "to-delete")
    return good, poison


def test_every_kind_of_poison_event_is_a_dead_letter_and_the_rest_is_applied(
    tmp_path: Path, client: Any, stream: str
) -> None:
    store = HybridStore(tmp_path / "kb", embedder=HashingEmbedder(dim=64), shared=True)
    good, poison = _publish_mixed(client, stream)
    consumer = StreamConsumer(store, client, stream, consumer="one", block_ms=50)
    report = consumer.run(until_idle_s=0.5)

    # nothing is stuck: every event is acknowledged, the group is drained
    assert consumer.lag() == {"pending": 0, "lag": 0}
    assert sorted(store.ids()) == sorted([*good, "nested"])  # "nested" is valid metadata
    dead = {
        entry[b"entry"].decode(): entry[b"error"].decode()
        for _, entry in client.xrange(f"{stream}:dead")
    }
    poisoned = [p for p, (_, why) in zip(poison, POISON) if why]
    assert sorted(dead) == sorted(poisoned) and report.dead == len(poisoned)
    for entry, (_, why) in zip(poison, POISON):
        if why:
            assert why.lower() in dead[entry].lower(), (entry, dead[entry])
    store.close()


def test_ragkit_consume_restarts_cleanly_after_poison(
    tmp_path: Path, client: Any, stream: str, redis_url: str
) -> None:
    HybridStore(tmp_path / "kb", embedder=HashingEmbedder(dim=64)).close()
    good, _ = _publish_mixed(client, stream)
    command = [
        sys.executable, "-m", "ragkit.cli", "consume", "--stream", stream,
        "--store", str(tmp_path / "kb"), "--redis", redis_url, "--block-ms", "50",
        "--until-idle", "0.5",
    ]  # fmt: skip
    for _ in range(2):  # the second run finds nothing left to retry
        run = subprocess.run(command, check=False, capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        assert "Traceback" not in run.stderr
    with HybridStore(tmp_path / "kb") as store:
        assert set(good) <= set(store.ids())
