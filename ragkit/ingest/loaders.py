"""Loaders: where source documents come from.

A folder of text and Markdown files, LangChain ``Document``s (any LangChain document
loader's output), LlamaIndex documents and nodes (any ``BaseReader``'s output), or plain
``SourceDocument``s and strings. ``as_sources`` accepts a mix of them, so the loaders users
already have plug into ``IngestPipeline`` as they are.

A source id names what a document came from, and re-ingesting a source replaces its chunks,
so two documents must never share one by accident:

- a folder's files: ``<source root>/<relative path>`` (see ``ragkit.ingest.sources``);
- a LangChain ``Document``: its ``id``; else ``metadata["source"]`` plus the page, row or
  element the loader records (``page``, ``page_number``, ``row``, ``seq_num``,
  ``element_id``, ``start_index``), so a PDF loader's pages stay pages; else a hash of the
  text;
- a LlamaIndex document or node: its id, unless that is a random UUID (a reader run without
  ``filename_as_id``): then a document's ``file_path`` (plus ``page_label``), else a hash
  of the text, so running the reader again replaces instead of duplicating.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ragkit.errors import InvalidInputError
from ragkit.ingest.chunkers import SourceDocument, markdown_title
from ragkit.ingest.sources import Skipped, is_markdown, source_id, source_root, text_files

#: metadata keys LangChain loaders use for the part of a source a document is
_PART_KEYS = ("page", "page_number", "row", "seq_num", "element_id", "start_index")


def load_folder(
    folder: str | Path,
    *,
    source_name: str | None = None,
    follow_outside: bool = False,
    skipped: Skipped | None = None,
) -> Iterator[SourceDocument]:
    """One document per text or Markdown file below ``folder``: id
    ``<source root>/<relative path>`` (the root is ``source_name``, default the folder's
    absolute path); metadata ``path`` (relative, ``/``-separated) and ``title`` from a
    Markdown file's first heading. Every file left out (other kinds, not UTF-8, bad names,
    vanished, unreadable, links outside the folder) is listed in ``skipped``."""
    root = Path(folder)
    if not root.is_dir():
        raise InvalidInputError(f"{root} is not a folder (ragkit sync reads a folder of files)")
    name = source_root(root, source_name)
    report = skipped if skipped is not None else Skipped()
    for relative, text, suffix in text_files(root, report, follow_outside=follow_outside):
        title = markdown_title(text) if is_markdown(suffix) else None
        metadata: dict[str, Any] = {"path": relative}
        if title:
            metadata["title"] = title
        yield SourceDocument(source_id(name, relative), text, metadata)


def _content_id(text: str) -> str:
    return (
        "doc-" + hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()
    )


def from_langchain(doc: Any) -> SourceDocument:
    """A LangChain ``Document``: its ``id``; else ``metadata["source"]`` with the page, row
    or element the loader records; else a hash of the text (see the module docstring)."""
    metadata = dict(doc.metadata or {})
    if doc.id:
        return SourceDocument(str(doc.id), doc.page_content, metadata)
    source = metadata.get("source")
    if source is None or str(source) == "":
        return SourceDocument(_content_id(doc.page_content), doc.page_content, metadata)
    parts = [f"{key}={metadata[key]}" for key in _PART_KEYS if metadata.get(key) is not None]
    return SourceDocument("#".join([str(source), *parts]), doc.page_content, metadata)


def _random_id(value: str) -> bool:
    try:
        return uuid.UUID(value).version == 4
    except ValueError:
        return False


def from_llamaindex(node: Any) -> SourceDocument:
    """A LlamaIndex ``Document`` or node (``BaseReader.load_data()`` output, or nodes from
    an ``IngestionPipeline``): its ``node_id``, unless that is a random UUID (see the module
    docstring)."""
    text = node.get_content()
    metadata = dict(node.metadata or {})
    node_id = str(node.node_id or "")
    if node_id and not _random_id(node_id):
        return SourceDocument(node_id, text, metadata)
    is_document = getattr(node, "class_name", lambda: "")() == "Document"
    if is_document and metadata.get("file_path"):  # a split node shares it: hashed below
        page = metadata.get("page_label")
        name = str(metadata["file_path"]) + (f"#page={page}" if page is not None else "")
        return SourceDocument(name, text, metadata)
    return SourceDocument(_content_id(text), text, metadata)


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
