"""Embeddings from any OpenAI-compatible ``/v1/embeddings`` endpoint."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray
from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from ragkit.embeddings.base import Embedder, normalize_rows
from ragkit.errors import EmbeddingError, InvalidInputError

if TYPE_CHECKING:
    import openai

_KNOWN_DIMS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}


def is_transient(exc: BaseException) -> bool:
    """Rate limits, timeouts, dropped connections and 5xx are worth retrying; nothing else
    (the OpenAI SDK's errors, and Python's ``TimeoutError`` and ``ConnectionError``)."""
    import openai

    if isinstance(exc, TimeoutError | ConnectionError):
        return True
    if isinstance(exc, openai.RateLimitError | openai.APITimeoutError | openai.APIConnectionError):
        return True
    return isinstance(exc, openai.APIStatusError) and exc.status_code >= 500


class OpenAIEmbedder(Embedder):
    """Embeddings through the ``openai`` SDK, for OpenAI or any compatible server.

    Requests are batched; rate limits (429), server errors (5xx), timeouts and connection
    errors are retried with exponential backoff and jitter (tenacity). Authentication and
    validation errors are not retried: they raise ``EmbeddingError`` at once.

    Key init args:
        model: embedding model name (default ``text-embedding-3-small``).
        api_key: the key (default: the SDK reads ``OPENAI_API_KEY``). Never persisted or logged.
        base_url: any OpenAI-compatible server, e.g. ``http://127.0.0.1:8000/v1``.
        dimensions: requested output dimension, for models that support it.
        batch_size: texts per request (default 256).
        max_attempts: attempts per batch including the first (default 6).

    Instantiate:
        .. code-block:: python

            from ragkit.embeddings import OpenAIEmbedder
            embedder = OpenAIEmbedder(model="text-embedding-3-small")
            vectors = embedder.embed_documents(["hybrid search", "vector search"])
    """

    def __init__(
        self,
        model: str = "text-embedding-3-small",
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        dimensions: int | None = None,
        batch_size: int = 256,
        max_attempts: int = 6,
        timeout_s: float = 60.0,
        max_wait_s: float = 30.0,
        client: openai.OpenAI | None = None,
    ) -> None:
        if batch_size <= 0 or max_attempts <= 0:
            raise InvalidInputError(
                f"batch_size and max_attempts must be positive, got {batch_size}, {max_attempts}"
            )
        self.model = model
        self.model_id = f"openai:{model}" + (f":{dimensions}" if dimensions else "")
        self.base_url = base_url
        self.dimensions = dimensions
        self.batch_size = batch_size
        self.max_attempts = max_attempts
        self.max_wait_s = max_wait_s
        self._dim: int | None = dimensions or _KNOWN_DIMS.get(model)
        if client is None:
            import openai

            # The SDK's own retries are off: tenacity decides, so the policy is one place.
            client = openai.OpenAI(
                api_key=api_key, base_url=base_url, max_retries=0, timeout=timeout_s
            )
        self._client = client

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._dim = int(self.embed_documents(["dimension probe"]).shape[1])
        return self._dim

    def _request(self, batch: list[str]) -> list[list[float]]:
        kwargs: dict[str, Any] = {"model": self.model, "input": batch}
        if self.dimensions:
            kwargs["dimensions"] = self.dimensions
        response = self._client.embeddings.create(**kwargs)
        ordered = sorted(response.data, key=lambda item: item.index)
        return [list(item.embedding) for item in ordered]

    def _request_with_retries(self, batch: list[str]) -> list[list[float]]:
        import openai

        retrying = Retrying(
            retry=retry_if_exception(is_transient),
            stop=stop_after_attempt(self.max_attempts),
            wait=wait_random_exponential(multiplier=0.5, max=self.max_wait_s),
            reraise=False,
        )
        try:
            for attempt in retrying:
                with attempt:
                    return self._request(batch)
        except RetryError as exc:
            last = exc.last_attempt.exception()
            raise EmbeddingError(
                f"embedding request to {self.base_url or 'OpenAI'} failed after "
                f"{self.max_attempts} attempts: {type(last).__name__}: {last}"
            ) from last
        except openai.APIStatusError as exc:
            raise EmbeddingError(
                f"embedding request rejected with HTTP {exc.status_code} "
                f"({type(exc).__name__}); not retried: {exc.message}"
            ) from exc
        raise EmbeddingError("embedding request made no attempt")  # pragma: no cover

    def embed_documents(self, texts: Sequence[str]) -> NDArray[np.float32]:
        rows: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            batch = list(texts[start : start + self.batch_size])
            vectors = self._request_with_retries(batch)
            if len(vectors) != len(batch):
                raise EmbeddingError(
                    f"server returned {len(vectors)} embeddings for {len(batch)} inputs"
                )
            rows.extend(vectors)
        if not rows:
            return np.zeros((0, self._dim or 0), dtype=np.float32)
        matrix = normalize_rows(np.asarray(rows, dtype=np.float32))
        if self._dim is None:
            self._dim = int(matrix.shape[1])
        elif matrix.shape[1] != self._dim:
            raise EmbeddingError(
                f"server returned {matrix.shape[1]}-d embeddings, expected {self._dim}"
            )
        return matrix

    def spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"kind": "openai", "model": self.model}
        if self.base_url:
            spec["base_url"] = self.base_url
        if self.dimensions:
            spec["dimensions"] = self.dimensions
        return spec
