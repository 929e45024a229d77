"""One way the benchmarks start Ray: a local instance with every listener on 127.0.0.1."""

from __future__ import annotations

import os


def start_local(object_store_mb: int, num_cpus: int = 2) -> None:
    """``ray.init`` on this machine only, with explicit CPUs and object store memory."""
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # listeners on loopback
    import ray

    ray.init(
        num_cpus=num_cpus,
        object_store_memory=object_store_mb * 2**20,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        log_to_driver=False,
    )
