"""A sentence-transformers model as an ONNX graph, exported once from the weights on disk
(nothing downloaded), run without torch on OpenVINO (fp32 or bf16) or ONNX Runtime (fp32, or
int8 weights).

The export traces the transformer with eager attention (the SDPA mask code of transformers
traces to a graph that is wrong for padded batches) and mean- or CLS-pools inside the graph.
int8 quantizes the weights of every MatMul per output channel; activations are quantized per
batch at run time (ONNX Runtime's dynamic quantization), so an int8 vector depends slightly on
the other texts of its batch: ``LocalEmbedder`` embeds a query alone, and a corpus in the same
length-sorted batches every time.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from ragkit.errors import MissingDependencyError, StoreError

#: bump when the exported graph changes, so cached exports are made again
EXPORT_VERSION = 1

OnnxPrecision = Literal["fp32", "int8"]


def available(runtime: str) -> bool:
    """True when ``runtime`` ("onnx" or "openvino") and what the export needs (``onnx``,
    ``tokenizers``) can be imported."""
    try:
        import onnx  # noqa: F401
        import tokenizers  # noqa: F401

        if runtime == "onnx":
            import onnxruntime  # noqa: F401
        else:
            import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def default_cache_dir() -> Path:
    """Where exported graphs are kept unless a ``cache_dir`` is given."""
    return Path.home() / ".cache" / "ragkit" / "onnx"


def _pooling(model_dir: Path) -> str:
    config = model_dir / "1_Pooling" / "config.json"
    if not config.exists():
        return "mean"
    settings = json.loads(config.read_text(encoding="utf-8"))
    if settings.get("pooling_mode_mean_tokens"):
        return "mean"
    if settings.get("pooling_mode_cls_token"):
        return "cls"
    raise StoreError(
        f"{model_dir}: the ONNX runtime supports mean or CLS pooling; use runtime='torch' "
        "for this model"
    )


def _max_length(model_dir: Path) -> int:
    config = model_dir / "sentence_bert_config.json"
    if config.exists():
        return int(json.loads(config.read_text(encoding="utf-8")).get("max_seq_length", 512))
    return 512


def _weights(model_dir: Path) -> Path:
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (model_dir / name).exists():
            return model_dir / name
    raise StoreError(f"{model_dir} holds no model.safetensors or pytorch_model.bin")


def export_key(model_dir: Path, precision: OnnxPrecision) -> str:
    """A name for one export: the model folder's name, its weights' size and modification
    time, the export version, the precision and (int8) ONNX Runtime's version."""
    stat = _weights(model_dir).stat()
    parts = [model_dir.resolve().as_posix(), str(stat.st_size), str(stat.st_mtime_ns)]
    parts += [str(EXPORT_VERSION), precision]
    if precision == "int8":
        import onnxruntime

        parts.append(onnxruntime.__version__)
    import hashlib

    digest = hashlib.blake2b("\0".join(parts).encode(), digest_size=8).hexdigest()
    return f"{model_dir.name}-{precision}-{digest}.onnx"


def exported_graph(model_dir: Path, cache_dir: Path, precision: OnnxPrecision) -> Path:
    """The ONNX graph of ``model_dir`` at ``precision``, exported into ``cache_dir`` on first
    use (a few seconds; written to a temporary file and renamed, so a crash or a concurrent
    export never leaves a partial graph)."""
    target = cache_dir / export_key(model_dir, precision)
    if target.exists():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".export-") as scratch:
        fp32 = Path(scratch) / "fp32.onnx"
        _export_fp32(model_dir, fp32)
        made = fp32
        if precision == "int8":
            made = Path(scratch) / "int8.onnx"
            _quantize(fp32, made)
        os.replace(made, target)
    return target


def _export_fp32(model_dir: Path, dest: Path) -> None:
    try:
        import torch
        from transformers import AutoModel
    except ImportError:
        raise MissingDependencyError(
            "exporting the model to ONNX needs torch and transformers once: "
            "pip install torch==2.13.0 && pip install 'ragkit[local]'"
        ) from None
    pooling = _pooling(model_dir)
    with _quiet():
        model = AutoModel.from_pretrained(
            str(model_dir), attn_implementation="eager", local_files_only=True
        ).eval()

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            hidden = self.model(
                input_ids=input_ids, attention_mask=attention_mask
            ).last_hidden_state
            if pooling == "cls":
                return hidden[:, 0]
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)

    ids = torch.tensor([[101, 7592, 2088, 102], [101, 7592, 102, 0]], dtype=torch.long)
    mask = (ids != 0).long()
    axes = {"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"}}
    with _quiet(), torch.no_grad():
        torch.onnx.export(
            Pooled().eval(),
            (ids, mask),
            str(dest),
            dynamo=False,
            input_names=["input_ids", "attention_mask"],
            output_names=["embedding"],
            dynamic_axes={**axes, "embedding": {0: "batch"}},
            opset_version=17,
        )


def _quantize(source: Path, dest: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _quiet():
        quantize_dynamic(
            str(source),
            str(dest),
            weight_type=QuantType.QInt8,
            per_channel=True,  # per-tensor weights lose too much (cosine to fp32 ~0.94)
            op_types_to_quantize=["MatMul"],
        )


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporter's tracer warnings and the quantizer's advice while exporting."""
    from transformers.utils import logging as hf_logging

    root = logging.getLogger()
    level, bars = root.level, hf_logging.is_progress_bar_enabled()
    root.setLevel(logging.ERROR)
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)
        if bars:
            hf_logging.enable_progress_bar()  # type: ignore[no-untyped-call]


class GraphEncoder:
    """Pooled (not normalized) embeddings from the exported graph, with the model's own
    tokenizer (``tokenizer.json``, truncated to the model's ``max_seq_length``); subclasses
    run the graph on one runtime."""

    def __init__(self, model_dir: Path) -> None:
        try:
            from tokenizers import Tokenizer
        except ImportError:
            raise MissingDependencyError(
                "the exported model needs tokenizers: pip install 'ragkit[local]'"
            ) from None
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.no_padding()  # tokenizer.json files often pad every text to 128
        self.tokenizer.enable_truncation(_max_length(model_dir))

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self.tokenizer.encode_batch(list(texts))]

    def encode_ids(self, batch: Sequence[Sequence[int]]) -> NDArray[np.float32]:
        """Embed texts given as token ids (padded here to the longest of the batch)."""
        width = max(len(ids) for ids in batch)
        input_ids = np.zeros((len(batch), width), dtype=np.int64)
        for row, ids in enumerate(batch):
            input_ids[row, : len(ids)] = ids
        lengths = np.array([len(ids) for ids in batch])
        mask = (np.arange(width)[None, :] < lengths[:, None]).astype(np.int64)
        return np.asarray(self._run(input_ids, mask), dtype=np.float32)

    def _run(self, input_ids: NDArray[np.int64], mask: NDArray[np.int64]) -> Any:
        raise NotImplementedError


class OnnxEncoder(GraphEncoder):
    """The graph on ONNX Runtime (fp32, or int8 weights)."""

    def __init__(
        self,
        model_dir: Path,
        *,
        precision: OnnxPrecision,
        cache_dir: Path,
        threads: int | None = None,
    ) -> None:
        try:
            import onnxruntime
        except ImportError:
            raise MissingDependencyError(
                "the ONNX runtime needs onnxruntime and onnx: pip install 'ragkit[local]'"
            ) from None
        super().__init__(model_dir)
        self.graph = exported_graph(model_dir, cache_dir, precision)
        options = onnxruntime.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(
            str(self.graph), options, providers=["CPUExecutionProvider"]
        )

    def _run(self, input_ids: NDArray[np.int64], mask: NDArray[np.int64]) -> Any:
        return self.session.run(None, {"input_ids": input_ids, "attention_mask": mask})[0]


def openvino_bf16_supported() -> bool:
    """True when OpenVINO's CPU plugin runs bf16 natively here (AVX512-BF16 or AMX)."""
    try:
        import openvino
    except ImportError:
        return False
    capabilities = openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    return "BF16" in capabilities


class OpenVinoEncoder(GraphEncoder):
    """The fp32 graph on OpenVINO's CPU plugin, computing in fp32 or in bf16 (native on
    CPUs with AVX512-BF16 or AMX; its kernels differ between Intel and AMD). Compiled
    kernels are cached in ``cache_dir/openvino``, so a later process starts sooner."""

    def __init__(
        self,
        model_dir: Path,
        *,
        precision: Literal["fp32", "bf16"],
        cache_dir: Path,
        threads: int | None = None,
    ) -> None:
        try:
            import openvino
        except ImportError:
            raise MissingDependencyError(
                "the OpenVINO runtime needs openvino: pip install 'ragkit[local]'"
            ) from None
        super().__init__(model_dir)
        self.graph = exported_graph(model_dir, cache_dir, "fp32")
        core = openvino.Core()
        config: dict[str, Any] = {
            "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
            "PERFORMANCE_HINT": "LATENCY",  # one request at a time: every core on it
            "CACHE_DIR": str(cache_dir / "openvino"),
        }
        if threads is not None:
            config["INFERENCE_NUM_THREADS"] = threads
        self.compiled = core.compile_model(core.read_model(str(self.graph)), "CPU", config)

    def _run(self, input_ids: NDArray[np.int64], mask: NDArray[np.int64]) -> Any:
        return self.compiled({"input_ids": input_ids, "attention_mask": mask})[0]
