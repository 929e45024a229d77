"""Which runtime should compute all-MiniLM-L6-v2? The measurements behind LocalEmbedder's
default (BENCHMARKS.md, "Getting documents in: the model paths").

    .venv/bin/python bench/bench_runtimes.py                  # every runtime tried
    .venv/bin/python bench/bench_runtimes.py --int8-variants  # int8 with some MatMuls in fp32
    .venv/bin/python bench/bench_runtimes.py --mixed          # document x query encoders

Default: on the graph ``LocalEmbedder`` exports (ONNX, fp32), ONNX Runtime (fp32, int8, and
both after ONNX Runtime's BERT fusions), OpenVINO (fp32, bf16, and the int8 graph) and
CTranslate2 (int8, from its own converter; needs ``pip install ctranslate2``): query p50 over
200 SciFact queries one at a time, docs/s over 768 abstracts in length-sorted batches of 64,
and cosine to the PyTorch fp32 vectors of 256 of them.

``--int8-variants``: ONNX Runtime int8 with the FFN output projections, the attention outputs
or the last layer kept in fp32: SciFact nDCG@10 through ``add_texts`` in batches of 256 and
cosine on 512 Python-docs chunks (Debian's ``python3.11-doc``). ``--mixed``: SciFact nDCG@10
for documents and queries embedded by different paths.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).parent))

from _model_paths import ONNX_CACHE, corpus_sources

from ragkit import HybridStore, Record
from ragkit.beir import read_corpus, read_qrels, read_queries
from ragkit.embeddings import LocalEmbedder
from ragkit.embeddings._onnx import GraphEncoder, export_key, exported_graph
from ragkit.embeddings.local import _bundled_model_path
from ragkit.evaluation import evaluate

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "scifact"
Encode = Callable[[list[str]], np.ndarray]


def unit(matrix: Any) -> np.ndarray:
    matrix = np.asarray(matrix, dtype=np.float32)
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


class Session(GraphEncoder):
    """A graph file on ONNX Runtime, with the model's tokenizer."""

    def __init__(self, graph: Path) -> None:
        import onnxruntime

        super().__init__(_bundled_model_path())
        self.session = onnxruntime.InferenceSession(str(graph), providers=["CPUExecutionProvider"])

    def _run(self, input_ids: Any, mask: Any) -> Any:
        return self.session.run(None, {"input_ids": input_ids, "attention_mask": mask})[0]


class OpenVino(GraphEncoder):
    def __init__(self, graph: Path, hint: str) -> None:
        import openvino

        super().__init__(_bundled_model_path())
        core = openvino.Core()
        config = {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY"}
        self.compiled = core.compile_model(core.read_model(str(graph)), "CPU", config)

    def _run(self, input_ids: Any, mask: Any) -> Any:
        return self.compiled({"input_ids": input_ids, "attention_mask": mask})[0]


def encode_with(encoder: GraphEncoder) -> Encode:
    return lambda texts: unit(encoder.encode_ids(encoder.token_ids(texts)))


def quantize(source: Path, dest: Path, exclude: list[str], fused: bool = False) -> Path:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    extra = {"DefaultTensorType": onnx.TensorProto.FLOAT} if fused else {}
    quantize_dynamic(
        str(source),
        str(dest),
        weight_type=QuantType.QInt8,
        per_channel=True,
        op_types_to_quantize=["MatMul"],
        nodes_to_exclude=exclude,
        extra_options=extra,
    )
    return dest


def weight_matmuls(graph: Path) -> list[str]:
    import onnx

    model = onnx.load(str(graph), load_external_data=False)
    weights = {i.name for i in model.graph.initializer}
    return [n.name for n in model.graph.node if n.op_type == "MatMul" and set(n.input) & weights]


def ffn_outputs(names: list[str]) -> list[str]:
    return [n for n in names if "/output/dense" in n and "attention" not in n]


def ctranslate2_path(scratch: Path) -> Encode | None:
    try:
        import ctranslate2
    except ImportError:
        print("ctranslate2 is not installed: its row is skipped (pip install ctranslate2)")
        return None
    target = scratch / "ct2"
    subprocess.run(
        [sys.executable, "-m", "ctranslate2.converters.transformers", "--model",
         str(_bundled_model_path()), "--output_dir", str(target), "--quantization", "int8"],
        check=True, capture_output=True,
    )  # fmt: skip
    encoder = ctranslate2.Encoder(str(target), device="cpu", compute_type="int8")
    tokens = GraphEncoder(_bundled_model_path())

    def encode(texts: list[str]) -> np.ndarray:
        encoded = tokens.tokenizer.encode_batch(texts)
        hidden = np.array(encoder.forward_batch([e.tokens for e in encoded]).last_hidden_state)
        lengths = np.array([len(e.ids) for e in encoded])
        mask = (np.arange(hidden.shape[1])[None, :] < lengths[:, None])[..., None]
        return unit((hidden * mask).sum(1) / mask.sum(1))

    return encode


def runtimes(scratch: Path) -> None:
    from onnxruntime.transformers import optimizer

    fp32 = exported_graph(_bundled_model_path(), ONNX_CACHE, "fp32")
    int8 = exported_graph(_bundled_model_path(), ONNX_CACHE, "int8")
    fused = scratch / "fused.onnx"
    optimizer.optimize_model(str(fp32), model_type="bert", num_heads=12, hidden_size=384)\
        .save_model_to_file(str(fused))  # fmt: skip
    fused_names = weight_matmuls(fused)
    paths: dict[str, Encode | None] = {
        "ONNX Runtime fp32": encode_with(Session(fp32)),
        "ONNX Runtime int8": encode_with(Session(int8)),
        "ONNX Runtime fp32, BERT fusions": encode_with(Session(fused)),
        "ONNX Runtime int8, BERT fusions": encode_with(
            Session(quantize(fused, scratch / "fused-int8.onnx", [], fused=True))
        ),
        "ONNX Runtime int8, BERT fusions, FFN outputs fp32": encode_with(
            Session(quantize(fused, scratch / "fused-b.onnx", ffn_outputs(fused_names), True))
        ),
        "OpenVINO fp32": encode_with(OpenVino(fp32, "f32")),
        "OpenVINO bf16": encode_with(OpenVino(fp32, "bf16")),
        "OpenVINO on the int8 graph": encode_with(OpenVino(int8, "f32")),
        "CTranslate2 int8": ctranslate2_path(scratch),
    }
    docs = [d.content for d in read_corpus(DATA)][:768]
    queries = list(read_queries(DATA).values())[:200]
    reference = LocalEmbedder(runtime="torch", precision="fp32").embed_documents(docs[:256])
    order = sorted(range(len(docs)), key=lambda i: len(docs[i]))
    for name, encode in paths.items():
        if encode is None:
            continue
        for query in queries[:10]:
            encode([query])
        latencies = []
        for query in queries:
            started = time.perf_counter()
            encode([query])
            latencies.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        for start in range(0, len(order), 64):
            encode([docs[i] for i in order[start : start + 64]])
        rate = len(docs) / (time.perf_counter() - started)
        vectors = np.concatenate([encode(docs[s : s + 64]) for s in range(0, 256, 64)])
        cosines = np.sum(vectors * reference, axis=1)
        print(
            f"{name:52s} query p50 {statistics.median(latencies):5.2f} ms  {rate:6.1f} docs/s  "
            f"cosine min {cosines.min():.4f} mean {cosines.mean():.5f}",
            flush=True,
        )


def variant_embedder(scratch: Path, name: str, exclude: list[str]) -> LocalEmbedder:
    """A LocalEmbedder whose int8 graph keeps ``exclude`` in fp32 (placed where the embedder
    looks for its export)."""
    folder = scratch / name
    folder.mkdir(exist_ok=True)
    fp32 = exported_graph(_bundled_model_path(), ONNX_CACHE, "fp32")
    quantize(fp32, folder / export_key(_bundled_model_path(), "int8"), exclude)
    return LocalEmbedder(runtime="onnx", precision="int8", cache_dir=folder)


def scifact_ndcg(store: HybridStore) -> dict[str, float]:
    return {r.mode: round(r.ndcg_at_10, 4) for r in evaluate(store, DATA, ["hybrid", "dense"])}


def int8_variants(scratch: Path) -> None:
    names = weight_matmuls(exported_graph(_bundled_model_path(), ONNX_CACHE, "fp32"))
    variants = {
        "every weight MatMul": [],
        "FFN output projections in fp32": ffn_outputs(names),
        "FFN and attention outputs in fp32": [n for n in names if "/output/dense" in n],
        "last layer in fp32": [n for n in names if "layer.5/" in n],
    }
    docs = list(read_corpus(DATA))
    python_docs, chunker = corpus_sources("python-docs", DATA, 0)
    chunks = [c.text for d in python_docs for c in chunker.split(d)]
    chunks = random.Random(1).sample(chunks, 512)
    exact = LocalEmbedder(runtime="onnx", precision="fp32", cache_dir=ONNX_CACHE)
    reference = exact.embed_documents(chunks)
    queries = list(read_queries(DATA).values())[:150]
    for index, (name, exclude) in enumerate(variants.items()):
        embedder = variant_embedder(scratch, f"v{index}", exclude)
        embedder.embed_query("warm up")
        with HybridStore(embedder=embedder, query_embedding_cache=False) as store:
            started = time.perf_counter()
            for start in range(0, len(docs), 256):
                batch = docs[start : start + 256]
                store.add_texts([d.content for d in batch], ids=[d.id for d in batch])
            rate = len(docs) / (time.perf_counter() - started)
            ndcg = scifact_ndcg(store)
        latencies = []
        for query in queries:
            started = time.perf_counter()
            embedder.embed_query(query)
            latencies.append((time.perf_counter() - started) * 1000)
        cosines = np.sum(embedder.embed_documents(chunks) * reference, axis=1)
        print(
            f"{name:36s} kept {len(exclude):2d}  {rate:6.1f} docs/s  query p50 "
            f"{statistics.median(latencies):.2f} ms  {ndcg}  Python docs cosine min "
            f"{cosines.min():.4f} mean {cosines.mean():.4f}",
            flush=True,
        )


def mixed(scratch: Path) -> None:
    names = weight_matmuls(exported_graph(_bundled_model_path(), ONNX_CACHE, "fp32"))
    encoders = {
        "fp32": LocalEmbedder(runtime="onnx", precision="fp32", cache_dir=ONNX_CACHE),
        "int8": variant_embedder(scratch, "all", []),
        "int8 FFN fp32": variant_embedder(scratch, "ffn", ffn_outputs(names)),
        "bf16": LocalEmbedder(runtime="torch", precision="bf16"),
    }
    docs = list(read_corpus(DATA))
    judged = read_qrels(DATA, "test")
    queries = [q for i, q in read_queries(DATA).items() if i in judged]
    exact = np.stack([encoders["fp32"].embed_query(q) for q in queries])
    vectors = {}
    for name, embedder in encoders.items():
        texts = [d.content for d in docs]
        vectors[name] = np.concatenate(
            [embedder.embed_documents(texts[s : s + 256]) for s in range(0, len(texts), 256)]
        )
        mine = np.stack([embedder.embed_query(q) for q in queries])
        cosines = np.sum(mine * exact, axis=1)
        print(f"queries {name}: cosine to fp32 min {cosines.min():.4f} mean {cosines.mean():.4f}")
    for doc_path in encoders:
        for query_path in ("fp32", "int8", "int8 FFN fp32"):
            with HybridStore(embedder=encoders[query_path], query_embedding_cache=False) as store:
                store.upsert(
                    [Record(d.id, d.content, {}, vectors[doc_path][i]) for i, d in enumerate(docs)]
                )
                print(f"documents {doc_path:14s} queries {query_path:14s} {scifact_ndcg(store)}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--int8-variants", action="store_true")
    parser.add_argument("--mixed", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        if args.int8_variants:
            int8_variants(Path(scratch))
        elif args.mixed:
            mixed(Path(scratch))
        else:
            runtimes(Path(scratch))


if __name__ == "__main__":
    main()
