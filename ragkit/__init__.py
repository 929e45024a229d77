"""ragkit: hybrid BM25 + vector retrieval for LangChain and LlamaIndex applications."""

from ragkit.errors import RagkitError
from ragkit.request import SearchRequest
from ragkit.schema import Hit, Record, SearchMode, SearchResult
from ragkit.store import HybridStore, SearchOptions

__all__ = [
    "Hit",
    "HybridStore",
    "RagkitError",
    "Record",
    "SearchMode",
    "SearchOptions",
    "SearchRequest",
    "SearchResult",
]
__version__ = "0.1.0"
