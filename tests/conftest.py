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
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
    import shutil
    import subprocess
    import time

    server = shutil.which("redis-server")
    if server is None:
        pytest.fail("redis-server is not installed (make test installs it with apt-get)")
    port = _free_port()
    folder = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [
            server,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(folder),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import redis

    client = redis.Redis(host="127.0.0.1", port=port)
    deadline = time.monotonic() + 30
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise
            time.sleep(0.1)
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(timeout=20)
