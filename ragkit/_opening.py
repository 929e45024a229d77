"""Opening a store: which backend a path means, and which embedder the store uses."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

from ragkit.backends.base import EMBEDDER_SETTING, Shard
from ragkit.backends.local import LocalShard
from ragkit.embeddings import (
    Embedder,
    LocalEmbedder,
    embedder_from_spec,
    rebuildable,
    reopen_hint,
)
from ragkit.errors import EmbedderMismatchError, StoreError
from ragkit.limits import DEFAULT_LIMITS, Limits


def open_path(
    path: str | os.PathLike[str] | None,
    *,
    create: bool = True,
    limits: Limits = DEFAULT_LIMITS,
    read_only: bool = False,
    shared: bool = False,
    text_fields: Sequence[str] | None = None,
) -> Shard:
    """A directory with ``store.json`` is a sharded store; anything else a LocalShard
    (``create=False``: a directory that holds no store is an error, not a new store;
    ``read_only``: an existing LocalShard directory, without taking its lock; ``shared``:
    a LocalShard directory that several processes write)."""
    from ragkit.backends.sharded.layout import StoreLayout

    if path is not None and StoreLayout.exists(path):
        if text_fields:
            raise StoreError(
                f"{path} is a sharded store; text_fields are indexed by a single LocalShard "
                "(a store directory without store.json, or in memory)"
            )
        if read_only or shared:
            raise StoreError(
                f"{path} is a sharded store; read_only=True and shared=True open a "
                "single-shard directory "
                "(attach to a served cluster to read a sharded store from another process)"
            )
        layout = StoreLayout.load(path, limits)
        if layout.served is not None:
            from ragkit.backends.sharded.served import ServedStore

            return ServedStore(path)
        return layout.open(path, limits=limits)
    return LocalShard(
        path,
        create=create,
        limits=limits,
        read_only=read_only,
        shared=shared,
        text_fields=text_fields,
    )


def resolve_embedder(
    backend: Shard, embedder: Embedder | None, *, trusted: bool = False
) -> Embedder:
    """The embedder a store uses: the one it was built with (persisted in the backend's
    settings), checked against an explicitly given one; a new store records its choice."""
    stored = backend.read_setting(EMBEDDER_SETTING)
    if stored is None:
        chosen = embedder if embedder is not None else LocalEmbedder()
        dim = backend.dim
        if dim is not None and dim != chosen.dim:
            raise EmbedderMismatchError(
                f"the backend holds {dim}-d vectors but {chosen.model_id} makes "
                f"{chosen.dim}-d vectors"
            )
        record = {"spec": chosen.spec(), "model_id": chosen.model_id, "dim": chosen.dim}
        if not backend.read_only:
            backend.write_setting(EMBEDDER_SETTING, json.dumps(record))
        return chosen
    saved = json.loads(stored)
    if embedder is None:
        return embedder_from_spec(saved["spec"], trusted=trusted)
    if embedder.model_id != saved["model_id"] or embedder.dim != saved["dim"]:
        advice = (
            "Open it without passing an embedder to use the original"
            if rebuildable(saved["spec"])
            else f"Pass the embedder it was built with ({reopen_hint(saved['spec'])})"
        )
        raise EmbedderMismatchError(
            f"this store was built with {saved['model_id']} ({saved['dim']}-d); "
            f"got {embedder.model_id} ({embedder.dim}-d). {advice}, or build a new store."
        )
    return embedder
