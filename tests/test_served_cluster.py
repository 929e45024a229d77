"""A sharded store served by a real Ray cluster (a head node and a second node joined with
``ray start --address``, both on 127.0.0.1, stopped by pid) and shared by several client
processes: scale-out part 2. The cluster runs with Ray's token authentication on (its default
for a new cluster): every client finds the token where Ray looks (``RAY_AUTH_TOKEN_PATH``
here), and one without it is refused with a clear ``ClusterAuthenticationError``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ray = pytest.importorskip("ray", reason="the ray extra is part of make test")

from ragkit.backends.local import LocalShard  # noqa: E402
from ragkit.backends.sharded._ray_auth import refresh  # noqa: E402
from ragkit.backends.sharded.layout import StoreLayout  # noqa: E402
from ragkit.backends.sharded.placement import place  # noqa: E402
from ragkit.testing.ray_cluster import LocalRayCluster  # noqa: E402

HOSTS, PARTITIONS, REPLICAS = 4, 8, 2
CLIENTS, PER_CLIENT = 3, 5000


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalRayCluster]:
    if ray.is_initialized():
        ray.shutdown()
    running = LocalRayCluster()  # token authentication on
    assert running.env["RAY_AUTH_MODE"] == "token"
    saved = {k: os.environ.get(k) for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH")}
    os.environ.pop("RAY_AUTH_MODE", None)  # ragkit turns token mode on from the store's record
    os.environ["RAY_AUTH_TOKEN_PATH"] = running.token_path  # where Ray finds the token
    try:
        running.start(nodes=2)
        yield running
    finally:
        if ray.is_initialized():
            ray.shutdown()
        running.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        refresh()  # Ray caches the token mode per process: a later local ray.init needs none


def _ragkit(*args: str, env: dict[str, str] | None = None, check: bool = True) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "ragkit.cli", *args],
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check and done.returncode != 0:
        raise AssertionError(f"ragkit {args} failed ({done.returncode}):\n{done.stderr}")
    return done.stdout + done.stderr


CLIENT = textwrap.dedent(
    """
    import json, sys, time
    from ragkit import HybridStore
    from ragkit.embeddings import HashingEmbedder
    from ragkit.errors import QuorumError, ShardUnavailableError

    store_dir, index, per, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    store = HybridStore(store_dir, embedder=HashingEmbedder(dim=64))
    start = index * per // 2          # neighbours share half of their ids
    acked, problems, searches, retried = {}, [], 0, 0
    ids = [f"r{start + i}" for i in range(per)]
    batches = [(rev, b) for rev in (1, 2) for b in range(0, per, 100)]  # every id twice
    for rev, b in batches:
        batch = ids[b : b + 100]
        texts = [f"{rid} revision{rev} by client{index} marker{b}" for rid in batch]
        deadline = time.monotonic() + 180
        while True:  # a write without its quorum (a copy down) is not acknowledged: retry
            try:
                store.add_texts(texts, ids=batch)
                break
            except (QuorumError, ShardUnavailableError):
                retried += 1
                assert time.monotonic() < deadline, "writes never got their quorum back"
                time.sleep(0.5)
        acked.update(zip(batch, texts))
        result = store.search(f"marker{b} client{index}", k=5)
        searches += 1
        if result.partial or len(result) < 5:
            problems.append(f"search after batch {b}: partial={result.partial} hits={len(result)}")
    json.dump(
        {"acked": acked, "problems": problems, "searches": searches, "retried": retried},
        open(out, "w"),
    )
    """
)


def _start_clients(
    store_dir: Path, env: dict[str, str], folder: Path
) -> tuple[list[subprocess.Popen[bytes]], list[Path]]:
    """CLIENTS processes running CLIENT against the served store; their report files."""
    outputs = [folder / f"client{i}.json" for i in range(CLIENTS)]
    clients = [
        subprocess.Popen(
            [sys.executable, "-c", CLIENT, str(store_dir), str(i), str(PER_CLIENT), str(out)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for i, out in enumerate(outputs)
    ]
    return clients, outputs


def _replica_records(store_dir: Path) -> dict[int, dict[str, dict[str, str]]]:
    """partition -> host -> {id: text}, read from every replica directory on disk."""
    layout = StoreLayout.load(store_dir)
    table = place(layout.partitions, layout.hosts, layout.replicas, layout.router["zones"])
    out: dict[int, dict[str, dict[str, str]]] = {}
    for partition, hosts in enumerate(table):
        for host in hosts:
            shard = LocalShard(store_dir / "hosts" / host / f"p{partition:04d}", read_only=True)
            try:
                records = shard.get(shard.ids())
            finally:
                shard.close()
            out.setdefault(partition, {})[host] = {r.id: r.text for r in records}
    return out


def _not_last_written(
    served: dict[str, str], writes: dict[str, set[str]]
) -> dict[str, tuple[str, list[str]]]:
    """Ids serving a text that is no client's last acknowledged write of them (shown with
    what they serve and what was written, so a failure says which revision came back)."""
    return {
        rid: (served[rid], sorted(texts))
        for rid, texts in writes.items()
        if served[rid] not in texts
    }


def _wait_healthy(store: Any, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        status = store.status()
        if status.healthy:
            return status
        assert time.monotonic() < deadline, f"not healthy: {status}"
        time.sleep(0.5)


def test_clients_in_three_processes_share_a_served_store_through_a_host_kill(
    cluster: LocalRayCluster, tmp_path: Path
) -> None:
    from ragkit.backends.sharded.served import ServedStore

    store_dir = tmp_path / "kb"
    env = {**cluster.env, "RAY_ADDRESS": cluster.address}
    out = _ragkit(
        "cluster",
        "up",
        "--store",
        str(store_dir),
        "--hosts",
        str(HOSTS),
        "--partitions",
        str(PARTITIONS),
        "--replicas",
        str(REPLICAS),
        env=env,
    )
    assert "serving" in out
    again = _ragkit("cluster", "up", "--store", str(store_dir), env=env)  # attaches
    assert "serving" in again

    os.environ["RAY_ADDRESS"] = cluster.address
    try:
        store = ServedStore(store_dir)
        hosts = {h["host"]: h for h in store.hosts()}
        assert len({h["node"] for h in hosts.values()}) == 2  # hosts on both nodes
        assert len({h["pid"] for h in hosts.values()}) == HOSTS  # each started once
        status = store.status()
        for partition in range(PARTITIONS):  # a partition's copies on different nodes
            copies = [c.host for c in status.copies if c.partition == partition]
            assert len({hosts[h]["node"] for h in copies}) == REPLICAS

        clients, outputs = _start_clients(store_dir, env, tmp_path)
        # Under that load, SIGKILL one host actor; Ray restarts it, the router heals it.
        time.sleep(4)
        victim = "h001"
        old_pid = hosts[victim]["pid"]
        os.kill(old_pid, signal.SIGKILL)
        saw_down = False
        for proc in clients:
            while proc.poll() is None:
                if not saw_down:
                    status = store.status()
                    saw_down = any(
                        h.name == victim and h.health != "ok" for h in status.hosts
                    ) or any(c.host == victim and not c.in_sync for c in status.copies)
                time.sleep(0.2)
            assert proc.returncode == 0, proc.stderr.read().decode() if proc.stderr else ""
        healed = _wait_healthy(store)
        assert {h.name for h in healed.hosts} == set(hosts)
        # The served client is a Shard like any other: search() answers the service's
        # final ranking, with the records behind it.
        from ragkit.embeddings import HashingEmbedder
        from ragkit.request import SearchRequest

        text = "marker0 client0"
        request = SearchRequest(text=text, vector=HashingEmbedder(dim=64).embed_query(text), k=5)
        answer = store.search(request)
        assert answer.ranked is not None and len(answer.ranked.ids) == 5 and not answer.native
        assert set(answer.records.fetch(answer.ranked.ids)) == set(answer.ranked.ids)
        assert list(answer.ranked.ids) == [h.id for h in store.run(request).hits]
        restarted = {h["host"]: h for h in store.hosts()}[victim]
        # the status shows the kill (while down, or as a restart) and the recovery
        assert restarted["alive"] and restarted["pid"] != old_pid
        assert restarted["restarts"] == 1

        reports = [json.loads(path.read_text()) for path in outputs]
        assert [r["problems"] for r in reports] == [[]] * CLIENTS  # no failed or short search
        writes: dict[str, set[str]] = {}
        for report in reports:
            for rid, text in report["acked"].items():
                writes.setdefault(rid, set()).add(text)
        served = {r.id: r.text for r in store.get(sorted(writes))}
        assert set(served) == set(writes)  # no acknowledged write lost
        # each id holds the last write of a client that wrote it (its revision 2, never
        # the revision 1 it replaced)
        assert _not_last_written(served, writes) == {}
        assert all("revision2" in text for text in served.values())
        assert store.count() == len(writes)

        status_out = _ragkit("cluster", "status", "--store", str(store_dir), "--json", env=env)
        shown = json.loads(status_out.splitlines()[0])
        row = next(h for h in shown["actors"] if h["host"] == victim)
        assert row["restarts"] == 1 and row["alive"]  # the kill, and the recovery
        assert all(c["in_sync"] for c in shown["copies"])
        table = _ragkit("cluster", "status", "--store", str(store_dir), env=env)
        assert "restarts" in table and "primary" in table
    finally:
        os.environ.pop("RAY_ADDRESS", None)

    _ragkit("cluster", "down", "--store", str(store_dir), env=env)
    on_disk = _replica_records(store_dir)
    for partition, copies in on_disk.items():  # every replica identical, as served
        first, *others = copies.values()
        assert all(other == first for other in others), f"partition {partition} differs"
    merged = {
        rid: text
        for copies in on_disk.values()
        for rid, text in next(iter(copies.values())).items()
    }
    assert merged == served

    _ragkit("cluster", "up", "--store", str(store_dir), env=env)
    os.environ["RAY_ADDRESS"] = cluster.address
    try:
        back = ServedStore(store_dir)
        assert back.count() == len(served)
        assert {r.id: r.text for r in back.get(sorted(served))} == served
    finally:
        os.environ.pop("RAY_ADDRESS", None)
    _ragkit("cluster", "down", "--store", str(store_dir), env=env)
    with pytest.raises(Exception, match="cluster is down"):
        ServedStore(store_dir)


def test_losing_the_second_nodes_raylet_under_load_loses_nothing(
    cluster: LocalRayCluster, tmp_path: Path
) -> None:
    from ragkit.backends.sharded.served import ServedStore

    store_dir = tmp_path / "kb"
    env = {**cluster.env, "RAY_ADDRESS": cluster.address}
    _ragkit(
        "cluster",
        "up",
        "--store",
        str(store_dir),
        "--hosts",
        "4",
        "--partitions",
        "4",
        "--replicas",
        "2",
        env=env,
    )
    os.environ["RAY_ADDRESS"] = cluster.address
    try:
        store = ServedStore(store_dir)
        before = {h["host"]: h for h in store.hosts()}
        second = cluster.raylets()[1]
        clients, outputs = _start_clients(store_dir, env, tmp_path)
        time.sleep(2)
        assert all(proc.poll() is None for proc in clients)  # killed under load
        second.send_signal(signal.SIGKILL)  # the node is gone: its hosts with it
        for proc in clients:
            proc.wait(600)
            assert proc.returncode == 0, proc.stderr.read().decode() if proc.stderr else ""
        reports = [json.loads(path.read_text()) for path in outputs]
        assert [r["problems"] for r in reports] == [[]] * CLIENTS  # no failed or short search
        deadline = time.monotonic() + 180
        while True:  # Ray declares the node dead; its hosts start again on the head node
            after = {h["host"]: h for h in store.hosts()}
            moved = [h for h in before if after[h].get("node") != before[h]["node"]]
            if len(moved) == HOSTS // 2 and all(after[h]["alive"] for h in after):
                break
            assert time.monotonic() < deadline, f"hosts never moved: {after}"
            time.sleep(1)
        assert all(after[h]["restarts"] == 1 for h in moved)
        healed = _wait_healthy(store, timeout=240)
        writes: dict[str, set[str]] = {}
        for report in reports:
            for rid, text in report["acked"].items():
                writes.setdefault(rid, set()).add(text)
        served = {r.id: r.text for r in store.get(sorted(writes))}
        assert set(served) == set(writes) and store.count() == len(writes)
        assert _not_last_written(served, writes) == {}
        assert healed.healthy
    finally:
        os.environ.pop("RAY_ADDRESS", None)
    _ragkit("cluster", "down", "--store", str(store_dir), env=env)
    for partition, copies in _replica_records(store_dir).items():
        first, *others = copies.values()
        assert all(other == first for other in others), f"partition {partition} differs"


REFUSED = textwrap.dedent(
    """
    import sys
    from ragkit import HybridStore
    from ragkit.embeddings import HashingEmbedder
    from ragkit.errors import ClusterAuthenticationError

    try:
        HybridStore(sys.argv[1], embedder=HashingEmbedder(dim=64))
    except ClusterAuthenticationError as exc:
        print(exc)
        sys.exit(3)
    sys.exit(0)
    """
)


def test_a_client_without_the_clusters_token_is_refused_clearly(
    cluster: LocalRayCluster, tmp_path: Path
) -> None:
    """The served store records that its cluster uses tokens; a process with the token (found
    where Ray looks) attaches and searches, one without it gets a ClusterAuthenticationError
    that says where Ray looks for a token, at once instead of after a connection timeout."""
    store_dir = tmp_path / "kb"
    env = {**cluster.env, "RAY_ADDRESS": cluster.address}
    _ragkit(
        "cluster", "up", "--store", str(store_dir),
        "--hosts", "2", "--partitions", "2", "--replicas", "1", env=env,
    )  # fmt: skip
    try:
        assert json.loads((store_dir / "store.json").read_text())["served"]["auth"] == "token"
        # With the token, and RAY_AUTH_MODE unset: ragkit turns token mode on.
        with_token = {k: v for k, v in env.items() if k != "RAY_AUTH_MODE"}
        out = _ragkit("search", "--store", str(store_dir), "anything", env=with_token)
        assert "ClusterAuthentication" not in out
        home = tmp_path / "home"  # no ~/.ray/auth_token there
        home.mkdir()
        without = {
            k: v
            for k, v in with_token.items()
            if k not in ("RAY_AUTH_TOKEN_PATH", "RAY_AUTH_TOKEN")
        }
        without["HOME"] = str(home)
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-c", REFUSED, str(store_dir)],
            env=without, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        assert done.returncode == 3, done.stdout + done.stderr
        assert "uses token authentication" in done.stdout
        assert "RAY_AUTH_TOKEN_PATH" in done.stdout and "~/.ray/auth_token" in done.stdout
        assert time.monotonic() - started < 60  # not a connection timeout
        cli = subprocess.run(
            [sys.executable, "-m", "ragkit.cli", "search", "--store", str(store_dir), "x"],
            env=without, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        assert cli.returncode == 2 and "uses token authentication" in cli.stderr
    finally:
        _ragkit("cluster", "down", "--store", str(store_dir), env=env)
