"""A real redis-server on 127.0.0.1 and a free port, for tests, benchmarks and notebooks.

    server = RedisServer(folder)     # started; server.url is redis://127.0.0.1:PORT/0
    ...
    server.stop()                    # by its own pid

Nothing is persisted (no RDB snapshots, no AOF); ``folder`` is its working directory.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

from ragkit.errors import MissingDependencyError


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """Starts ``redis-server`` and waits until it answers (see the module docstring)."""

    def __init__(self, folder: str | Path, *, timeout_s: float = 30.0) -> None:
        import redis

        binary = shutil.which("redis-server")
        if binary is None:
            raise MissingDependencyError(
                "redis-server is not installed (make test installs it from Debian's packages)"
            )
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
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
        client = redis.Redis(host="127.0.0.1", port=self.port)
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.ConnectionError:
                    if time.monotonic() > deadline or self.process.poll() is not None:
                        raise
                    time.sleep(0.05)
        except BaseException:
            self.process.kill()
            raise
        finally:
            client.close()

    def stop(self) -> None:
        """Stop the server by its own pid."""
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=20)
