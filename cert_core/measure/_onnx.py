"""all-MiniLM-L6-v2 on ONNX Runtime: the numpy backend's model as an fp32 graph built at load time.

No fp32 ONNX file of the model is published and exporting one needs torch, so the graph of the
BERT encoder is written here with the ``onnx`` helper API, in memory, around the weights the
numpy backend reads from ``model.safetensors`` (Q, K and V in one matrix, the 1/sqrt(d) score
scale folded into Q). The weights are not copied into the graph: they reach ONNX Runtime as
external initializers, the word embeddings straight from the file's memory map. Tokenisation,
batching and normalisation are the numpy backend's; mean pooling runs in the graph.

The graph uses ONNX Runtime's Attention (QKV projection, scores, mask, softmax and context in one
kernel) and BiasGelu (bias and exact, erf-based GELU) with standard LayerNormalization (opset 17).
In ONNX Runtime's profiler this spent about 5% less kernel time than the same graph in standard ops
(where ONNX Runtime fuses the GELU but not the attention); SkipLayerNormalization was slower than
Add + LayerNormalization. Matrix products are nearly all of the time. Needs ``pytest-cert[onnx]``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np

from ._minilm import Array, NumpyEmbedder

if TYPE_CHECKING:
    from onnx import ModelProto

__all__ = ["OnnxEmbedder", "build_graph", "session_options"]

OPSET = 17  # LayerNormalization; supported by every onnxruntime the extra allows


def build_graph(model: NumpyEmbedder) -> tuple[ModelProto, dict[str, Array]]:
    """The encoder of ``model`` as an ONNX graph, and the weights it reads as external initializers
    (name to float32 array; pass them with ``SessionOptions.add_external_initializers``).

    Inputs ``input_ids`` and ``attention_mask`` (int64, batch x tokens); output ``pooled``
    (float32, batch x hidden): the token embeddings mean-pooled over the mask, not normalised."""
    from onnx import TensorProto, helper, numpy_helper

    nodes: list[Any] = []
    consts: list[Any] = []
    placeholders: list[Any] = []
    weights: dict[str, Array] = {}

    def const(name: str, value: Any) -> str:
        consts.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def weight(name: str, value: Array) -> str:
        array = np.asarray(value, dtype=np.float32)
        # An initializer whose data is "external": ONNX Runtime takes it from ``weights`` instead.
        proto = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=array.shape)
        proto.data_location = TensorProto.EXTERNAL
        for key, val in (("location", f"{name}.bin"), ("offset", "0"), ("length", str(array.nbytes))):
            entry = proto.external_data.add()
            entry.key, entry.value = key, val
        placeholders.append(proto)
        weights[name] = array
        return name

    def node(op: str, inputs: list[str], output: str, domain: str = "", **attrs: Any) -> str:
        nodes.append(helper.make_node(op, inputs, [output], name=output, domain=domain, **attrs))
        return output

    ms = "com.microsoft"
    eps = model.eps
    # Embeddings: token_type_ids are all 0, so the type embedding is folded into the positions.
    node("Shape", ["input_ids"], "tokens", start=1, end=2)
    const("zero", np.array([0], np.int64))
    node("Slice", [weight("pos", model.pos + model.type0), "zero", "tokens", "zero"], "pos_t")
    node("Gather", [weight("word", model.word), "input_ids"], "tok_emb")
    node("Add", ["tok_emb", "pos_t"], "emb")
    ln = [weight("emb_ln_g", model.emb_ln[0]), weight("emb_ln_b", model.emb_ln[1])]
    x = node("LayerNormalization", ["emb", *ln], "x", axis=-1, epsilon=eps)
    # Attention takes the 0/1 mask itself (padded keys get -10000 before the softmax: weight 0).
    node("Cast", ["attention_mask"], "mask_i32", to=TensorProto.INT32)
    for i, layer in enumerate(model.layers):
        p = f"l{i}_"
        qkv = [weight(p + "wqkv", layer["wqkv"]), weight(p + "bqkv", layer["bqkv"])]
        ctx = node("Attention", [x, *qkv, "mask_i32"], p + "ctx", ms, num_heads=model.heads, scale=1.0)
        node("MatMul", [ctx, weight(p + "wo", layer["wo"])], p + "attn_mm")
        node("Add", [p + "attn_mm", weight(p + "bo", layer["bo"])], p + "attn")
        node("Add", [p + "attn", x], p + "res1")
        ln = [weight(p + "ln1_g", layer["ln1"][0]), weight(p + "ln1_b", layer["ln1"][1])]
        x1 = node("LayerNormalization", [p + "res1", *ln], p + "x1", axis=-1, epsilon=eps)
        node("MatMul", [x1, weight(p + "wi", layer["wi"])], p + "inter_mm")
        # BiasGelu is the exact (erf) GELU of HF BERT's "gelu"; FastGelu (tanh) would not match.
        node("BiasGelu", [p + "inter_mm", weight(p + "bi", layer["bi"])], p + "inter", ms)
        node("MatMul", [p + "inter", weight(p + "wo2", layer["wo2"])], p + "out_mm")
        node("Add", [p + "out_mm", weight(p + "bo2", layer["bo2"])], p + "out")
        node("Add", [p + "out", x1], p + "res2")
        ln = [weight(p + "ln2_g", layer["ln2"][0]), weight(p + "ln2_b", layer["ln2"][1])]
        x = node("LayerNormalization", [p + "res2", *ln], p + "x", axis=-1, epsilon=eps)
    # Mean pooling over the mask.
    node("Cast", ["attention_mask"], "mask_f", to=TensorProto.FLOAT)
    const("axis_tokens", np.array([1], np.int64))
    const("axis_last", np.array([2], np.int64))
    const("tiny", np.array(1e-9, np.float32))
    node("Unsqueeze", ["mask_f", "axis_last"], "mask3")
    node("Mul", [x, "mask3"], "masked")
    node("ReduceSum", ["masked", "axis_tokens"], "summed", keepdims=0)
    node("ReduceSum", ["mask3", "axis_tokens"], "counts", keepdims=0)
    node("Max", ["counts", "tiny"], "counts_safe")
    node("Div", ["summed", "counts_safe"], "pooled")
    graph = helper.make_graph(
        nodes,
        "all-minilm-encoder",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "tokens"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "tokens"]),
        ],
        [helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["batch", model.hidden])],
        [*consts, *placeholders],
    )
    opsets = [helper.make_opsetid("", OPSET), helper.make_opsetid(ms, 1)]
    proto = helper.make_model(graph, opset_imports=opsets, ir_version=8, producer_name="pytest-cert")
    return proto, weights


def _cpus() -> int:
    """The CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def session_options(threads: int | None = None) -> Any:
    """ONNX Runtime's options for an embedding model: ``threads`` intra-op threads (default every
    CPU the process may use), one operator at a time, every graph optimisation, errors only."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or _cpus()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: its notes on graph rewrites are not the user's
    return options


class OnnxEmbedder(NumpyEmbedder):
    """The ONNX Runtime backend: the numpy backend's model, tokenisation and batching, its encoder
    run by ONNX Runtime on the CPU (``threads``: intra-op threads, default every CPU it may use)."""

    backend = "onnx"

    def __init__(
        self, files: Any, *, max_tokens: int = 256, batch_size: int = 16, threads: int | None = None
    ) -> None:
        import onnxruntime as ort

        super().__init__(files, max_tokens=max_tokens, batch_size=batch_size)
        try:
            graph, weights = build_graph(self)
        except Exception as exc:  # the onnx package's own checks: any of them means no graph
            raise ValueError(f"{files.path}: the model's ONNX graph could not be built: {exc}") from exc
        options = session_options(threads)
        # The session may read the arrays in place: they (held by their OrtValues) live as long as it.
        self._initializers = [ort.OrtValue.ortvalue_from_numpy(a) for a in weights.values()]
        options.add_external_initializers(list(weights), self._initializers)
        try:
            self.session = ort.InferenceSession(
                graph.SerializeToString(), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # ONNX Runtime's errors derive from Exception, each on its own
            raise ValueError(
                f"{files.path}: ONNX Runtime {ort.__version__} refused the graph built from the model: {exc}"
            ) from exc

    def _forward(self, ids: Array, mask: Array) -> Array:
        return self.session.run(["pooled"], {"input_ids": ids, "attention_mask": mask})[0]
