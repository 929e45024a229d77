from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.register_assert_rewrite("ragkit.testing")

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from ragkit import HybridStore  # noqa: E402
from ragkit.embeddings import HashingEmbedder, LocalEmbedder  # noqa: E402

SCIFACT = Path(__file__).resolve().parents[2] / "shared" / "data" / "scifact"


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    """A crash prints the stack of the thread that crashed. (pytest's faulthandler dumps
    every thread, newest first, and stops at 100: in a long run the main thread, the oldest,
    is cut off.)"""
    import faulthandler

    try:
        from _pytest.faulthandler import fault_handler_stderr_fd_key

        fd = config.stash[fault_handler_stderr_fd_key]
    except (ImportError, KeyError):
        return
    faulthandler.enable(file=fd, all_threads=False)


@pytest.fixture(scope="session")
def scifact_dir() -> Path:
    if not (SCIFACT / "corpus.jsonl.gz").exists():
        pytest.fail(f"SciFact is expected at {SCIFACT} (see DEVELOPERS.md)")
    return SCIFACT


@pytest.fixture(scope="session")
def scifact_store(scifact_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SciFact indexed once per session with the default embedder (about 90 s); tests open
    the directory in turn (a store directory is open in one place at a time)."""
    from ragkit.cli import main

    path = tmp_path_factory.mktemp("scifact") / "kb"
    assert main(["ingest", "--store", str(path), str(scifact_dir)]) == 0
    return path


@pytest.fixture(scope="session")
def local_embedder() -> LocalEmbedder:
    return LocalEmbedder()


@pytest.fixture
def hashing() -> HashingEmbedder:
    return HashingEmbedder(dim=64)


@pytest.fixture
def store(hashing: HashingEmbedder) -> Iterator[HybridStore]:
    with HybridStore(embedder=hashing) as s:
        yield s


def _free_port() -> int:
    from ragkit.testing.redis_server import free_port

    return free_port()


def start_chroma(path: Path) -> tuple[Any, int]:
    """Start ``chroma run`` on 127.0.0.1 and a free port; wait until it answers."""
    import shutil
    import subprocess
    import sys
    import time
    import urllib.request

    port = _free_port()
    chroma = shutil.which("chroma") or str(Path(sys.executable).parent / "chroma")
    proc = subprocess.Popen(
        [chroma, "run", "--path", str(path), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=1)
            return proc, port
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError("chroma run exited") from None
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("chroma run did not start within 60 s")


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    proc, port = start_chroma(tmp_path_factory.mktemp("chroma-server"))
    yield "127.0.0.1", port
    proc.terminate()  # stopped by its own pid
    try:
        proc.wait(timeout=20)
    except Exception:
        proc.kill()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server on 127.0.0.1 and a free port, stopped by its own pid."""
    from ragkit.errors import MissingDependencyError
    from ragkit.testing.redis_server import RedisServer

    try:
        server = RedisServer(tmp_path_factory.mktemp("redis"))
    except MissingDependencyError as exc:
        pytest.fail(str(exc))
    yield server.url
    server.stop()


@pytest.fixture
def client(redis_url: str) -> Iterator[Any]:
    """A redis-py client of the session's real redis-server."""
    import redis

    conn = redis.Redis.from_url(redis_url)
    yield conn
    conn.close()


@pytest.fixture
def stream() -> str:
    """A fresh stream name."""
    import uuid

    return f"events-{uuid.uuid4().hex[:8]}"
