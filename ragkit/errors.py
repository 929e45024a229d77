"""The ragkit exception hierarchy: every error a user can cause is a ``RagkitError``."""

from __future__ import annotations


class RagkitError(Exception):
    """Base class of every error ragkit raises on purpose."""


class InvalidInputError(RagkitError, ValueError):
    """A request or record was rejected before anything was written or searched."""


class FilterError(InvalidInputError):
    """A metadata filter is malformed: unknown operator, wrong value type, bad field name."""


class EmbedderMismatchError(RagkitError):
    """A store was opened with an embedder other than the one it was built with."""


class EmbeddingError(RagkitError):
    """The embedding model or service failed in a way retrying cannot fix."""


class MissingDependencyError(RagkitError, ImportError):
    """An optional extra needed for this feature is not installed."""


class StoreError(RagkitError):
    """The store cannot be opened or used (locked by another process, unreadable files)."""


class ClusterAuthenticationError(StoreError):
    """The Ray cluster uses token authentication and this process has no token for it, or
    not the cluster's."""


class ShardUnavailableError(RagkitError):
    """Shards did not answer within the deadline and the store does not allow partial answers."""


class QuorumError(RagkitError):
    """A write was not acknowledged by enough replicas (``write_quorum``)."""


class StaleWriteError(RagkitError):
    """A fenced write was refused: the store already holds a newer position for these keys
    (a writer that lost its lease came back after another applied something newer)."""

    def __init__(self, keys: list[str]) -> None:
        self.keys = keys
        shown = ", ".join(keys[:5]) + (", ..." if len(keys) > 5 else "")
        super().__init__(f"refused a write older than what the store holds for {shown}")
