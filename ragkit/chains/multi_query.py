"""Multi-query retrieval: LLM rewrites of the question, results fused with RRF."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import numpy as np
from langchain_core.callbacks import (
    AsyncCallbackManagerForRetrieverRun,
    CallbackManagerForRetrieverRun,
)
from langchain_core.documents import Document
from langchain_core.language_models import BaseLanguageModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import Runnable
from pydantic import ConfigDict

from ragkit.fusion import fuse_rrf
from ragkit.schema import Leg

REWRITE_PROMPT = ChatPromptTemplate.from_messages(
    [
        (
            "system",
            "Write {n} different search queries that would find documents answering the "
            "user's question. One query per line, no numbering, no other text.",
        ),
        ("human", "{question}"),
    ]
)


# A list marker a model may put before a rewrite despite the prompt: "1.", "2)", "(3)", "-",
# "*", "•". Only a marker followed by a space, at the start: "2FA setup" and "RK-4012" stay.
_MARKER = re.compile(r"^\s*(?:\d{1,2}[.)]|\(\d{1,2}\)|[-*•])\s+")


def clean_rewrite(line: str) -> str:
    """One rewrite line without its list marker and surrounding quotes."""
    line = _MARKER.sub("", line).strip()
    if len(line) >= 2 and line[0] == line[-1] and line[0] in "\"'":
        line = line[1:-1].strip()
    return line


def _fuse(result_lists: list[list[Document]], k: int) -> list[Document]:
    by_id: dict[str, Document] = {}
    legs = []
    for docs in result_lists:
        keys = list(dict.fromkeys(doc.id or doc.page_content for doc in docs))
        for doc in docs:
            by_id.setdefault(doc.id or doc.page_content, doc)
        legs.append(Leg(keys, np.zeros(len(keys), dtype=np.float32)))
    fused = fuse_rrf(legs, [1.0] * len(legs))
    return [by_id[i] for i in fused.ids[:k]]


class MultiQueryRetriever(BaseRetriever):
    """Searches the original question and ``n`` LLM rewrites, fusing the lists with RRF."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    retriever: BaseRetriever
    llm: Runnable[Any, Any]
    n: int = 3
    k: int = 4

    def _queries(self, raw: str, question: str) -> list[str]:
        rewrites = [clean_rewrite(line) for line in raw.splitlines()]
        return list(dict.fromkeys([question, *[q for q in rewrites if q][: self.n]]))

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        rewrite = REWRITE_PROMPT | self.llm | StrOutputParser()
        raw = rewrite.invoke(
            {"question": query, "n": self.n}, config={"callbacks": run_manager.get_child()}
        )
        queries = self._queries(raw, query)
        results = [
            self.retriever.invoke(q, config={"callbacks": run_manager.get_child()}) for q in queries
        ]
        return _fuse(results, self.k)

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun
    ) -> list[Document]:
        rewrite = REWRITE_PROMPT | self.llm | StrOutputParser()
        raw = await rewrite.ainvoke(
            {"question": query, "n": self.n}, config={"callbacks": run_manager.get_child()}
        )
        queries = self._queries(raw, query)
        results = await asyncio.gather(
            *[
                self.retriever.ainvoke(q, config={"callbacks": run_manager.get_child()})
                for q in queries
            ]
        )
        return _fuse(list(results), self.k)


def multi_query_retriever(
    retriever: BaseRetriever, llm: BaseLanguageModel[Any], n: int = 3, *, k: int = 4
) -> MultiQueryRetriever:
    """A retriever that asks ``llm`` for ``n`` rewrites of each question and fuses the
    results of the question and its rewrites with reciprocal rank fusion."""
    return MultiQueryRetriever(retriever=retriever, llm=llm, n=n, k=k)
