"""A rerank stage after fusion: ``rerank=`` takes

- any callable ``(query, hits) -> scores`` (one number per hit, higher is better);
- a LangChain ``BaseDocumentCompressor`` (its ``compress_documents``; a document it drops is
  dropped, its ``relevance_score`` metadata is the score where it sets one, else its order);
- a LlamaIndex node postprocessor (its ``postprocess_nodes``; the nodes' new scores);
- a ``CrossEncoder`` from sentence-transformers, or the path of one on disk
  (``CrossEncoderReranker``; nothing is downloaded).

Each hit keeps its fused score in ``Hit.fused_score``; ``Hit.score`` and
``Hit.rerank_score`` become the reranker's. The hits reranked are the fused pool's best
``candidates`` (100 by default); reranking is not cached.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

from ragkit.errors import InvalidInputError
from ragkit.schema import Hit

RerankFunction = Callable[[str, Sequence[Hit]], Sequence[float | None]]


@runtime_checkable
class _Compressor(Protocol):
    def compress_documents(self, documents: Sequence[Any], query: str) -> Sequence[Any]: ...


@runtime_checkable
class _Postprocessor(Protocol):
    def postprocess_nodes(self, nodes: list[Any], query_str: str | None = None) -> list[Any]: ...


@runtime_checkable
class _Predictor(Protocol):
    def predict(self, sentences: Any, *args: Any, **kwargs: Any) -> Any: ...


class CrossEncoderReranker:
    """A sentence-transformers ``CrossEncoder`` scoring (query, text) pairs, loaded from a
    local directory (never downloaded). ``batch_size`` pairs per forward pass."""

    def __init__(self, model: str | os.PathLike[str] | Any, *, batch_size: int = 32) -> None:
        if isinstance(model, str | os.PathLike):
            if not os.path.isdir(model):
                raise InvalidInputError(
                    f"rerank: {os.fspath(model)!r} is not a directory holding a cross-encoder"
                )
            from sentence_transformers import CrossEncoder

            model = CrossEncoder(os.fspath(model), device="cpu", local_files_only=True)
        self.model = model
        self.batch_size = batch_size

    def __call__(self, query: str, hits: Sequence[Hit]) -> list[float]:
        if not hits:
            return []
        pairs = [(query, hit.text) for hit in hits]
        scores = self.model.predict(pairs, batch_size=self.batch_size, show_progress_bar=False)
        return [float(s) for s in scores]


def as_reranker(value: object) -> RerankFunction:
    """The rerank function for what ``rerank=`` was given; an ``InvalidInputError`` naming
    what is accepted otherwise."""
    if isinstance(value, CrossEncoderReranker):
        return value
    if isinstance(value, str | os.PathLike | _Predictor):
        return CrossEncoderReranker(value)
    if isinstance(value, _Compressor):
        return _compressor(value)
    if isinstance(value, _Postprocessor):
        return _postprocessor(value)
    if callable(value):
        return value
    raise InvalidInputError(
        f"rerank={value!r:.80} is not supported; accepted: a callable (query, hits) -> scores, "
        "a LangChain BaseDocumentCompressor, a LlamaIndex node postprocessor, a "
        "sentence-transformers CrossEncoder or the path of one"
    )


def rerank_scores(reranker: RerankFunction, query: str, hits: Sequence[Hit]) -> list[float | None]:
    """One score per hit (``None``: the reranker dropped it), checked."""
    scores = list(reranker(query, hits))
    if len(scores) != len(hits):
        raise InvalidInputError(
            f"the reranker returned {len(scores)} scores for {len(hits)} hits; it must return "
            "one score per hit"
        )
    out: list[float | None] = []
    for score in scores:
        if score is not None and (isinstance(score, bool) or not _is_number(score)):
            raise InvalidInputError(f"the reranker returned {score!r:.40}; scores are numbers")
        out.append(None if score is None else float(score))
    return out


def _is_number(value: object) -> bool:
    try:
        float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return True


def _compressor(compressor: _Compressor) -> RerankFunction:
    def rerank(query: str, hits: Sequence[Hit]) -> list[float | None]:
        from langchain_core.documents import Document

        docs = [
            Document(page_content=h.text, metadata=dict(h.metadata), id=str(i))
            for i, h in enumerate(hits)
        ]
        kept = list(compressor.compress_documents(docs, query))
        scores: list[float | None] = [None] * len(hits)
        for order, doc in enumerate(kept):
            given = doc.metadata.get("relevance_score")
            scores[int(doc.id)] = float(given) if _is_number(given) else float(len(kept) - order)
        return scores

    return rerank


def _postprocessor(postprocessor: _Postprocessor) -> RerankFunction:
    def rerank(query: str, hits: Sequence[Hit]) -> list[float | None]:
        from llama_index.core.schema import NodeWithScore, TextNode

        nodes = [
            NodeWithScore(
                node=TextNode(text=h.text, id_=str(i), metadata=dict(h.metadata)), score=h.score
            )
            for i, h in enumerate(hits)
        ]
        kept = postprocessor.postprocess_nodes(nodes, query_str=query)
        scores: list[float | None] = [None] * len(hits)
        for order, node in enumerate(kept):
            given = node.score
            scores[int(node.node.node_id)] = (
                float(given) if given is not None else float(len(kept) - order)
            )
        return scores

    return rerank
