"""``ragkit shards``: create, inspect, heal and grow a sharded store directory."""

from __future__ import annotations

import argparse
import dataclasses
import json

from rich.console import Console
from rich.table import Table

from ragkit.backends.sharded.layout import StoreLayout
from ragkit.backends.sharded.router import ClusterStatus
from ragkit.errors import InvalidInputError


def _layout(store: str) -> StoreLayout:
    if not StoreLayout.exists(store):
        raise InvalidInputError(
            f"{store} is not a sharded store (no store.json); see 'ragkit shards init'"
        )
    return StoreLayout.load(store)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    shards = sub.add_parser("shards", help="create, inspect, heal and grow sharded stores")
    shards_sub = shards.add_subparsers(dest="shards_command", required=True)
    init = shards_sub.add_parser("init", help="create an empty sharded store directory")
    init.add_argument("--store", required=True)
    init.add_argument("--hosts", type=int, required=True, help="hosts holding the partitions")
    init.add_argument("--partitions", type=int, required=True, help="fixed at creation")
    init.add_argument("--replicas", type=int, default=1, help="copies of each partition")
    init.add_argument("--route-by", choices=["id", "tenant"], default="id")
    init.add_argument("--hosting", choices=["local", "ray"], default="local")
    init.add_argument("--write-quorum", type=int, default=None)
    init.set_defaults(run=init_store)
    status = shards_sub.add_parser("status", help="hosts and replicas: health, version, lag")
    status.add_argument("--store", required=True)
    status.add_argument("--json", action="store_true")
    status.set_defaults(run=show_status)
    heal = shards_sub.add_parser("heal", help="catch up lagging replicas now")
    heal.add_argument("--store", required=True)
    heal.set_defaults(run=heal_store)
    add = shards_sub.add_parser("add", help="add one host and move the partitions it now holds")
    add.add_argument("--store", required=True)
    add.set_defaults(run=add_host)


def init_store(args: argparse.Namespace) -> int:
    layout = StoreLayout.create(
        args.store,
        hosts=args.hosts,
        partitions=args.partitions,
        replicas=args.replicas,
        route_by=args.route_by,
        hosting=args.hosting,
        write_quorum=args.write_quorum,
    )
    Console(stderr=True).print(
        f"created {args.store}: {layout.partitions} partitions x {layout.replicas} replica(s) "
        f"over {len(layout.hosts)} {layout.hosting} hosts, routed by {layout.route_by}"
    )
    return 0


def print_status(store: str, status: ClusterStatus, hosting: str) -> None:
    console = Console()
    hosts = Table(title=f"{store}: {len(status.hosts)} {hosting} hosts")
    for column in ("host", "health", "breaker", "errors", "messages"):
        hosts.add_column(column)
    for h in status.hosts:
        hosts.add_row(h.name, h.health, h.breaker, str(h.errors), str(h.messages))
    console.print(hosts)
    copies = Table(
        title=f"{status.partitions} partitions x {status.replicas} replica(s), "
        f"routed by {status.route_by}"
    )
    for column in ("partition", "host", "role", "in sync", "version", "lag", "records"):
        copies.add_column(column, justify="left" if column in ("host", "role") else "right")
    for c in status.copies:
        copies.add_row(
            str(c.partition),
            c.host,
            "primary" if c.primary else "replica",
            "yes" if c.in_sync else ("no (full copy)" if c.needs_copy else "no"),
            "-" if c.version is None else str(c.version),
            "-" if c.lag is None else str(c.lag),
            "-" if c.records is None else str(c.records),
        )
    console.print(copies)


def show_status(args: argparse.Namespace) -> int:
    layout = _layout(args.store)
    store = layout.open(args.store)
    try:
        status = store.status()
    finally:
        store.close()
    if args.json:
        print(json.dumps(dataclasses.asdict(status)))
    else:
        print_status(args.store, status, layout.hosting)
    return 0 if status.healthy else 1


def heal_store(args: argparse.Namespace) -> int:
    layout = _layout(args.store)
    store = layout.open(args.store)
    try:
        healed = store.heal()
        lagging = store.table.out_of_sync()
    finally:
        store.close()
    Console(stderr=True).print(
        f"caught up {len(healed)} replica(s); {len(lagging)} still out of sync"
        + (f": {lagging}" if lagging else "")
    )
    return 0 if not lagging else 1


def add_host(args: argparse.Namespace) -> int:
    layout = _layout(args.store)
    store = layout.open(args.store)
    try:
        name = layout.add_host(args.store, store)
        report = store.status()
    finally:
        store.close()
    held = [c.partition for c in report.copies if c.host == name]
    Console(stderr=True).print(f"added host {name}; it holds partitions {held}")
    return 0
