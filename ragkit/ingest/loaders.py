"""Loaders: where source documents come from.

A folder of text and Markdown files, LangChain ``Document``s (any LangChain document
loader's output), LlamaIndex documents and nodes (any ``BaseReader``'s output), or plain
``SourceDocument``s and strings. ``as_sources`` accepts a mix of them, so the loaders users
already have plug into ``IngestPipeline`` as they are.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ragkit.chunking import markdown_title
from ragkit.errors import InvalidInputError
from ragkit.ingest.chunkers import SourceDocument
from ragkit.sources import Skipped, is_markdown, text_files


def load_folder(folder: str | Path, *, skipped: Skipped | None = None) -> Iterator[SourceDocument]:
    """One document per text or Markdown file below ``folder`` (id: the path relative to
    it, ``/``-separated; metadata: ``title`` from a Markdown file's first heading). Files of
    other kinds and files that are not UTF-8 are listed in ``skipped``."""
    root = Path(folder)
    if not root.is_dir():
        raise InvalidInputError(f"{root} is not a folder (ragkit sync reads a folder of files)")
    report = skipped if skipped is not None else Skipped()
    for relative, text, suffix in text_files(root, report):
        title = markdown_title(text) if is_markdown(suffix) else None
        yield SourceDocument(relative, text, {"title": title} if title else {})


def _content_id(text: str) -> str:
    return (
        "doc-" + hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()
    )


def from_langchain(doc: Any) -> SourceDocument:
    """A LangChain ``Document``: its ``id``, else ``metadata["source"]``, else a hash of the
    text becomes the source id (give documents ids to replace them on re-ingest)."""
    metadata = dict(doc.metadata or {})
    source_id = doc.id or metadata.get("source") or _content_id(doc.page_content)
    return SourceDocument(str(source_id), doc.page_content, metadata)


def from_llamaindex(node: Any) -> SourceDocument:
    """A LlamaIndex ``Document`` or node (``BaseReader.load_data()`` output, or nodes from
    an ``IngestionPipeline``); its ``node_id`` (a document's ``doc_id``) is the source id."""
    text = node.get_content()
    return SourceDocument(str(node.node_id or _content_id(text)), text, dict(node.metadata or {}))


def as_source(item: Any) -> SourceDocument:
    """Any supported input as a ``SourceDocument`` (else an ``InvalidInputError``)."""
    if isinstance(item, SourceDocument):
        return item
    if isinstance(item, str):
        return SourceDocument(_content_id(item), item)
    if hasattr(item, "page_content") and hasattr(item, "metadata"):
        return from_langchain(item)
    if hasattr(item, "get_content") and hasattr(item, "node_id"):
        return from_llamaindex(item)
    raise InvalidInputError(
        f"cannot ingest {type(item).__name__!r}: expected a ragkit SourceDocument, a string, "
        "a LangChain Document or a LlamaIndex Document/node"
    )


def as_sources(items: Iterable[Any]) -> Iterator[SourceDocument]:
    """``as_source`` of each item."""
    for item in items:
        yield as_source(item)


def from_reader(reader: Any, **load_args: Any) -> list[SourceDocument]:
    """Documents a LlamaIndex ``BaseReader`` loads (``reader.load_data(**load_args)``)."""
    return [from_llamaindex(doc) for doc in reader.load_data(**load_args)]
