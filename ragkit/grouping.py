"""Documents, not fragments: hits grouped by a metadata field, and context windows.

Both work on a ranking that is already final (fused, decayed, reranked), so they give the
same answer on every backend and every partition count: grouping and windows never look
inside a shard.

- ``group_hits``: the first ``k`` distinct values of a field in ranking order, each with its
  best ``size`` hits; a group's score is its best hit's score (the ranking is best first).
  Hits without the field form no group and are left out.
- ``window_ranges`` and ``merge_windows``: each hit's neighbouring chunks (``position`` within
  ``n`` of its own, same ``source``), windows of one source that overlap or touch merged into
  the better-ranked hit's.

Chunks written by ``ragkit.ingest`` carry ``source`` and ``chunk`` (the position); a record
without both has a window of itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ragkit.schema import Group, Hit, Record

#: the metadata keys a chunk's source document and its position in it are stored under
SOURCE_KEY, POSITION_KEY = "source", "chunk"


def group_key(value: Any) -> Any:
    """A hashable key for a metadata value (lists become tuples); ``None`` for no value."""
    if isinstance(value, list):
        return tuple(group_key(v) for v in value)
    if isinstance(value, dict):
        return None
    return value


def group_hits(hits: Sequence[Hit], by: str, k: int, size: int) -> list[Group]:
    """The first ``k`` groups of ``hits`` (best first) by metadata field ``by``, each with at
    most ``size`` hits. A bool value and a number are different groups (``True`` is not
    ``1``), as in filters."""
    groups: dict[tuple[type, Any], Group] = {}
    for hit in hits:
        key = group_key(hit.record.metadata.get(by))
        if key is None:
            continue
        slot = (type(key), key)
        group = groups.get(slot)
        if group is None:
            if len(groups) == k:
                continue
            group = groups[slot] = Group(hit.record.metadata[by], hit.score)
        if len(group.hits) < size:
            group.hits.append(hit)
    return list(groups.values())


def chunk_position(record: Record) -> tuple[str, int] | None:
    """(source, position) of a chunk, or ``None`` for a record that is not one."""
    source = record.metadata.get(SOURCE_KEY)
    position = record.metadata.get(POSITION_KEY)
    if not isinstance(source, str) or isinstance(position, bool) or not isinstance(position, int):
        return None
    return source, position


def window_ranges(hits: Sequence[Hit], n: int) -> dict[str, list[tuple[int, int]]]:
    """The position ranges (inclusive) to read per source for windows of ``n`` chunks."""
    ranges: dict[str, list[tuple[int, int]]] = {}
    for hit in hits:
        place = chunk_position(hit.record)
        if place is not None:
            source, position = place
            ranges.setdefault(source, []).append((max(0, position - n), position + n))
    return ranges


def merge_windows(hits: Sequence[Hit], n: int, neighbours: Sequence[Record]) -> list[Hit]:
    """Each hit with its window (``Hit.window``: the chunks of its source within ``n``
    positions, in order, itself included). A hit whose window overlaps or touches that of a
    better hit of the same source is merged into it (``Hit.merged`` lists the ids folded in),
    so no text comes back twice. ``neighbours``: the chunks read for ``window_ranges``."""
    chunks: dict[str, dict[int, Record]] = {}
    for record in [*neighbours, *(hit.record for hit in hits)]:
        place = chunk_position(record)
        if place is not None:
            chunks.setdefault(place[0], {}).setdefault(place[1], record)
    # Clusters of hits, best first: (hit, source, low, high); disjoint and not touching
    # within a source, so a new window joins every cluster it touches in one step.
    clusters: list[tuple[Hit, str | None, int, int]] = []
    merged: dict[str, list[str]] = {}
    for hit in hits:
        merged[hit.id] = hit.merged = []
        place = chunk_position(hit.record)
        if place is None:
            clusters.append((hit, None, 0, -1))
            continue
        source, position = place
        low, high = max(0, position - n), position + n
        touched = [
            i
            for i, (_, s, lo, hi) in enumerate(clusters)
            if s == source and low <= hi + 1 and high >= lo - 1
        ]
        if not touched:
            clusters.append((hit, source, low, high))
            continue
        best = clusters[touched[0]][0]
        for i in touched[1:]:
            merged[best.id].extend([clusters[i][0].id, *merged[clusters[i][0].id]])
        merged[best.id].append(hit.id)
        low = min(low, *(clusters[i][2] for i in touched))
        high = max(high, *(clusters[i][3] for i in touched))
        clusters[touched[0]] = (best, source, low, high)
        for i in reversed(touched[1:]):
            del clusters[i]
    for hit, of, low, high in clusters:
        if of is None:
            hit.window = [hit.record]
        else:
            of_source = chunks[of]
            hit.window = [of_source[p] for p in sorted(of_source) if low <= p <= high]
    return [hit for hit, *_ in clusters]


def group_passage(group: Group) -> tuple[str, list[str]]:
    """A group as one passage, for a retriever's document per group: its hits' texts (their
    windows with ``expand``) in source order where they are chunks (else rank order), joined
    by blank lines, and the ids of the chunks joined, in that order."""
    hits = list(group.hits)
    places = [chunk_position(hit.record) for hit in hits]
    if all(place is not None for place in places):
        hits = [hit for _, hit in sorted(zip(places, hits), key=lambda pair: pair[0])]  # type: ignore[arg-type,return-value]
    records = [record for hit in hits for record in (hit.window or [hit.record])]
    return "\n\n".join(r.text for r in records), [r.id for r in records]


def group_info(group: Group, rank: int, scale: str) -> dict[str, Any]:
    """What a retriever puts under ``metadata["ragkit"]`` for a group: its rank, score,
    scale and key, the chunks joined and each hit's own scores."""
    _, chunks = group_passage(group)
    return {
        "rank": rank,
        "score": group.score,
        "scale": scale,
        "group": group.key,
        "chunks": chunks,
        "hits": [hit.score_info(i, scale) for i, hit in enumerate(group.hits, start=1)],
    }
