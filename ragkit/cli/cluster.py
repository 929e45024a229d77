"""``ragkit cluster up|status|down``: a sharded store served by a Ray cluster."""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from typing import Any

from rich.console import Console
from rich.table import Table

from ragkit.cli.shards import print_status


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], positive: Any) -> None:
    cluster = sub.add_parser(
        "cluster", help="serve a sharded store from a Ray cluster to many processes"
    )
    cluster_sub = cluster.add_subparsers(dest="cluster_command", required=True)
    up = cluster_sub.add_parser(
        "up", help="start the store's hosts and service on a running Ray cluster"
    )
    up.add_argument("--store", required=True, help="the store directory (created if new)")
    up.add_argument("--hosts", type=positive, default=None, help="hosts of a new store")
    up.add_argument("--partitions", type=positive, default=None, help="partitions of a new store")
    up.add_argument("--replicas", type=positive, default=None, help="copies of each partition")
    up.add_argument("--address", default=None, help="the Ray cluster (default: RAY_ADDRESS)")
    up.set_defaults(run=cluster_up)
    status = cluster_sub.add_parser(
        "status", help="hosts (node, pid, restarts), partitions, primaries, lag"
    )
    status.add_argument("--store", required=True)
    status.add_argument("--json", action="store_true")
    status.set_defaults(run=cluster_status)
    down = cluster_sub.add_parser("down", help="checkpoint and stop the actors; the data stays")
    down.add_argument("--store", required=True)
    down.set_defaults(run=cluster_down)


def cluster_up(args: argparse.Namespace) -> int:
    from ragkit.backends.sharded.served import up

    store = up(
        args.store,
        hosts=args.hosts,
        partitions=args.partitions,
        replicas=args.replicas,
        address=args.address,
    )
    status = store.status()
    Console(stderr=True).print(
        f"serving {args.store}: {status.partitions} partitions x {status.replicas} replica(s) "
        f"over {len(status.hosts)} Ray hosts; open it anywhere with HybridStore({args.store!r})",
        soft_wrap=True,
    )
    return 0


def cluster_status(args: argparse.Namespace) -> int:
    from ragkit.backends.sharded.served import ServedStore

    store = ServedStore(args.store)
    status = store.status()
    hosts = store.hosts()
    if args.json:
        print(json.dumps({**dataclasses.asdict(status), "actors": hosts}))
        return 0 if status.healthy else 1
    table = Table(title="host actors")
    for column in ("host", "alive", "node", "pid", "restarts", "last restart"):
        table.add_column(column)
    for h in hosts:
        last = h.get("last_restart")
        table.add_row(
            h["host"],
            "yes" if h["alive"] else f"no: {h.get('error', '')}",
            (h.get("node") or "-")[:12],
            str(h.get("pid") or "-"),
            str(h.get("restarts", 0)),
            "-" if last is None else time.strftime("%H:%M:%S", time.localtime(last)),
        )
    Console().print(table)
    print_status(args.store, status, "ray")
    return 0 if status.healthy else 1


def cluster_down(args: argparse.Namespace) -> int:
    from ragkit.backends.sharded.served import down

    down(args.store)
    Console(stderr=True).print(
        f"stopped {args.store}; its data stays on disk ('ragkit cluster up --store "
        f"{args.store}' serves it again)",
        soft_wrap=True,
    )
    return 0
