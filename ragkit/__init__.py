"""ragkit: hybrid BM25 + vector retrieval for LangChain and LlamaIndex applications."""

from ragkit.errors import RagkitError
from ragkit.schema import Hit, Record, SearchResult
from ragkit.store import HybridStore

__all__ = ["Hit", "HybridStore", "RagkitError", "Record", "SearchResult"]
__version__ = "0.1.0"
