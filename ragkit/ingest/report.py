"""What an ingestion run did: counters, queue peaks, dead letters and skipped files."""

from __future__ import annotations

from dataclasses import dataclass, field

from ragkit.ingest.sources import Skipped


@dataclass(slots=True)
class DeadLetter:
    """Input the pipeline gave up on, and why."""

    source: str
    ids: list[str]
    error: str
    attempts: int
    stage: str


@dataclass
class IngestReport:
    """What a pipeline run did."""

    sources: int = 0
    chunks: int = 0
    unchanged: int = 0  # identical to what the store holds: not written
    reused: int = 0  # vector reused by content hash: written, not embedded
    embedded: int = 0  # texts embedded
    upserted: int = 0  # chunks written
    deleted: int = 0  # chunks the sources no longer produce (or deleted sources)
    retries: int = 0  # embedder calls retried after a transient error
    dead_letters: list[DeadLetter] = field(default_factory=list)
    queue_bounds: dict[str, int] = field(default_factory=dict)
    queue_peaks: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    skipped: Skipped = field(default_factory=Skipped)

    def summary(self) -> str:
        rate = self.upserted / self.seconds if self.seconds > 0 else 0.0
        skipped = self.skipped.files()
        return (
            f"{self.sources} sources, {self.chunks} chunks: {self.upserted} written "
            f"({self.embedded} embedded, {self.reused} reused vectors), {self.unchanged} "
            f"unchanged, {self.deleted} deleted, {self.retries} retries, "
            f"{len(self.dead_letters)} dead letters"
            + (f", {skipped} files skipped" if skipped else "")
            + f" in {self.seconds:.1f} s ({rate:.1f} chunks/s)"
        )
