"""The Shard protocol: the seam that makes backends pluggable (see ARCHITECTURE.md)."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from ragkit._validation import check_ids, check_tenant
from ragkit.errors import InvalidInputError
from ragkit.filters import Filter
from ragkit.schema import Candidate, LexicalStats, Record


class Shard(ABC):
    """What every backend implements. Filters arrive parsed (``ragkit.filters.parse_filter``).

    Tenants are namespaces: ``search_*``, ``count`` and filtered ``delete`` see exactly one
    tenant (``None`` is the default tenant); ``get`` and ``delete`` by id address records by
    their id, which is unique within a shard. Implementations provide the synchronous methods;
    the async twins run them in a worker thread unless a backend overrides them with native
    async calls. ``ragkit.backends.contract`` is the conformance suite.
    """

    name: str

    @property
    @abstractmethod
    def dim(self) -> int | None: ...

    @abstractmethod
    def upsert(self, records: Sequence[Record]) -> None: ...

    @abstractmethod
    def delete(
        self,
        ids: Sequence[str] | None = None,
        *,
        filter: Filter | None = None,
        tenant: str | None = None,
    ) -> int: ...

    def delete_targets(
        self, ids: Sequence[str] | None, filter: Filter | None, tenant: str | None
    ) -> list[str]:
        """The ids a ``delete(ids, filter=, tenant=)`` call means: the given ids, those of
        ``tenant`` passing ``filter``, or their intersection. Neither ids nor a filter is an
        error, so a missing argument never wipes a store."""
        if ids is None and filter is None:
            raise InvalidInputError("delete needs ids or a filter (neither was given)")
        check_tenant(tenant)
        wanted = check_ids(list(dict.fromkeys(ids))) if ids is not None else None
        if filter is None and (tenant is None or wanted is None):
            return wanted or []
        matching = set(self.ids(filter=filter, tenant=tenant))
        return [i for i in wanted if i in matching] if wanted is not None else sorted(matching)

    @abstractmethod
    def get(self, ids: Sequence[str], *, include_vectors: bool = False) -> list[Record]: ...

    @abstractmethod
    def count(self, *, filter: Filter | None = None, tenant: str | None = None) -> int: ...

    @abstractmethod
    def tenants(self) -> list[str | None]:
        """Every tenant that has (or had) records in this shard."""

    @abstractmethod
    def ids(self, *, filter: Filter | None = None, tenant: str | None = None) -> list[str]:
        """Ids of the records of ``tenant`` passing ``filter``, in insertion order."""

    @abstractmethod
    def search_dense_batch(
        self,
        vectors: NDArray[np.float32],
        k: int,
        *,
        filter: Filter | None = None,
        tenant: str | None = None,
    ) -> list[list[Candidate]]: ...

    def search_dense(
        self,
        vector: NDArray[np.float32],
        k: int,
        *,
        filter: Filter | None = None,
        tenant: str | None = None,
    ) -> list[Candidate]:
        batch = np.asarray(vector, dtype=np.float32)[None, :]
        return self.search_dense_batch(batch, k, filter=filter, tenant=tenant)[0]

    @abstractmethod
    def search_lexical(
        self,
        text: str,
        k: int,
        *,
        filter: Filter | None = None,
        tenant: str | None = None,
        stats: LexicalStats | None = None,
    ) -> list[Candidate]: ...

    @abstractmethod
    def analyze(self, text: str) -> list[str]: ...

    @abstractmethod
    def lexical_stats(self, terms: Sequence[str]) -> LexicalStats: ...

    @abstractmethod
    def read_setting(self, key: str) -> str | None: ...

    @abstractmethod
    def write_setting(self, key: str, value: str) -> None: ...

    @abstractmethod
    def close(self) -> None: ...

    async def aupsert(self, records: Sequence[Record]) -> None:
        await asyncio.to_thread(self.upsert, records)

    async def adelete(
        self,
        ids: Sequence[str] | None = None,
        *,
        filter: Filter | None = None,
        tenant: str | None = None,
    ) -> int:
        return await asyncio.to_thread(self.delete, ids, filter=filter, tenant=tenant)

    async def aget(self, ids: Sequence[str], *, include_vectors: bool = False) -> list[Record]:
        return await asyncio.to_thread(self.get, ids, include_vectors=include_vectors)

    async def acount(self, *, filter: Filter | None = None, tenant: str | None = None) -> int:
        return await asyncio.to_thread(self.count, filter=filter, tenant=tenant)

    async def asearch_dense(
        self,
        vector: NDArray[np.float32],
        k: int,
        *,
        filter: Filter | None = None,
        tenant: str | None = None,
    ) -> list[Candidate]:
        return await asyncio.to_thread(self.search_dense, vector, k, filter=filter, tenant=tenant)

    async def asearch_lexical(
        self,
        text: str,
        k: int,
        *,
        filter: Filter | None = None,
        tenant: str | None = None,
        stats: LexicalStats | None = None,
    ) -> list[Candidate]:
        return await asyncio.to_thread(
            self.search_lexical, text, k, filter=filter, tenant=tenant, stats=stats
        )

    def __enter__(self) -> Shard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
