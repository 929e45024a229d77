"""Event-driven ingestion: chunkers with stable ids, loaders, an asyncio pipeline with
back-pressure and retries, and a Redis Streams consumer (see each module)."""

from ragkit.ingest.chunkers import (
    CharChunker,
    Chunk,
    Chunker,
    MarkdownChunker,
    SourceDocument,
    TokenChunker,
    WholeChunker,
)
from ragkit.ingest.events import publish_delete, publish_upsert
from ragkit.ingest.loaders import (
    as_source,
    as_sources,
    from_langchain,
    from_llamaindex,
    from_reader,
    load_folder,
)
from ragkit.ingest.pipeline import IngestPipeline
from ragkit.ingest.report import DeadLetter, IngestReport
from ragkit.ingest.stream import ConsumeReport, StreamConsumer

__all__ = [
    "CharChunker",
    "Chunk",
    "Chunker",
    "ConsumeReport",
    "DeadLetter",
    "IngestPipeline",
    "IngestReport",
    "MarkdownChunker",
    "SourceDocument",
    "StreamConsumer",
    "TokenChunker",
    "WholeChunker",
    "as_source",
    "as_sources",
    "from_langchain",
    "from_llamaindex",
    "from_reader",
    "load_folder",
    "publish_delete",
    "publish_upsert",
]
