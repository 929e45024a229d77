"""A real Ray cluster on this machine, for tests and benchmarks of served stores.

``LocalRayCluster`` runs ``ray start --head`` on 127.0.0.1 and a free port, and joins more
nodes with ``ray start --address`` (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=1`` lets a second
node share the machine). Token authentication is on, as Ray 2.60 has it for a new cluster: the
cluster's token is written to ``token_path`` (in its session folder) and ``env`` carries
``RAY_AUTH_MODE=token`` and ``RAY_AUTH_TOKEN_PATH``, Ray's own way to find it, for the nodes and
for client processes; a client in this process sets ``RAY_AUTH_TOKEN_PATH`` itself
(``auth=False``: no tokens, ``RAY_AUTH_MODE=disabled``). Every
process it started names its session folder on its command line, which is how ``stop``
finds them and stops them by pid (never ``ray stop``, which would stop other clusters).

    cluster = LocalRayCluster()
    cluster.start(nodes=2)
    ...  # RAY_ADDRESS=cluster.address, RAY_AUTH_TOKEN_PATH=cluster.token_path
    cluster.stop()
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil  # type: ignore[import-untyped]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalRayCluster:
    """Ray nodes on 127.0.0.1 (see the module docstring)."""

    def __init__(
        self, *, cpus_per_node: int = 2, object_store_mb: int = 200, auth: bool = True
    ) -> None:
        self.temp = tempfile.mkdtemp(prefix="rkray", dir="/tmp")  # short: socket paths
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.cpus = cpus_per_node
        self.store_bytes = object_store_mb * 2**20
        self.token_path = str(Path(self.temp) / "auth_token")
        auth_env = {"RAY_AUTH_MODE": "disabled"}
        if auth:
            token = Path(self.token_path)
            token.write_text(secrets.token_hex(32))  # 256 bits, as `ray get-auth-token` makes
            token.chmod(0o600)
            auth_env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": self.token_path}
        inherited = {
            k: v
            for k, v in os.environ.items()
            if k not in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")
        }
        self.env = {
            **inherited,
            **auth_env,
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1",
            "RAY_USAGE_STATS_ENABLED": "0",
        }
        self._ray = str(Path(sys.executable).parent / "ray")

    def _run(self, *args: str) -> None:
        done = subprocess.run(
            [
                self._ray,
                "start",
                *args,
                "--node-ip-address",
                "127.0.0.1",
                "--num-cpus",
                str(self.cpus),
                "--object-store-memory",
                str(self.store_bytes),
                "--disable-usage-stats",
            ],
            env=self.env,
            check=False,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode != 0:
            raise RuntimeError(f"ray start {args[:2]} failed:\n{done.stdout}\n{done.stderr}")

    def start(self, nodes: int = 2) -> None:
        """The head node, then ``nodes - 1`` more."""
        self._run(
            "--head",
            "--port",
            str(self.port),
            "--include-dashboard",
            "false",
            "--temp-dir",
            self.temp,
        )
        for _ in range(nodes - 1):
            self.add_node()

    def add_node(self) -> None:
        """One more node, its session under the same folder (so ``stop`` finds it)."""
        self._run("--address", self.address, "--temp-dir", self.temp)

    def processes(self) -> list[psutil.Process]:
        """Every process of this cluster."""
        found = []
        for proc in psutil.process_iter(["cmdline"]):
            try:
                if proc.status() == psutil.STATUS_ZOMBIE:
                    continue
                if any(self.temp in part for part in proc.info["cmdline"] or []):
                    found.append(proc)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return found

    def raylets(self) -> list[psutil.Process]:
        """The raylet of each node, head first."""
        found = []
        for proc in self.processes():
            try:
                if Path(proc.cmdline()[0]).name == "raylet":
                    found.append(proc)
            except (psutil.NoSuchProcess, IndexError):
                continue
        return sorted(found, key=lambda p: p.create_time())

    def stop(self) -> None:
        """Stop every process of this cluster by pid; remove its session folder."""
        for _ in range(3):  # a node may start a process while the others stop
            procs = self.processes()
            if not procs:
                break
            for proc in procs:
                try:
                    proc.terminate()
                except psutil.NoSuchProcess:
                    continue
            _, alive = psutil.wait_procs(procs, timeout=15)
            for proc in alive:
                try:
                    proc.kill()
                except psutil.NoSuchProcess:
                    continue
            psutil.wait_procs(alive, timeout=5)
        shutil.rmtree(self.temp, ignore_errors=True)
