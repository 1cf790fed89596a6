"""What the cost model needs to know about a model, read from its ONNX graph (never typed by hand).

`onnx_facts(path)` runs `onnx` shape inference with the batch dimension fixed at 1 and counts:

- MACs per frame: `Conv`/`ConvTranspose` (output elements x input channels per group x kernel area),
  `Gemm`/`MatMul` (output elements x the reduced dimension). Element-wise ops, pooling and activations are
  not counted: they are memory-bound and small next to the convolutions, as in torchvision's model cards;
- parameters: the elements of every initializer (constants included);
- the input: the first graph input that is not an initializer, its name, shape (batch dimension dropped)
  and element type, and the square side `input_hw` when its last two dimensions are equal;
- the outputs: every graph output's name.

onnx is imported here, so only callers that read ONNX files pay for it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jetfleet.errors import ConfigError

# ONNX TensorProto element types by the Open Inference Protocol's datatype names
ONNX_DATATYPES = {1: "FP32", 2: "UINT8", 3: "INT8", 6: "INT32", 7: "INT64", 9: "BOOL", 10: "FP16", 11: "FP64"}


@dataclass(frozen=True)
class OnnxFacts:
    """The facts of one ONNX model, per frame (batch dimension 1)."""

    gmacs: float  # giga multiply-accumulates per frame
    params_m: float  # parameters, millions
    input_name: str
    input_shape: tuple[int, ...]  # one frame's shape, e.g. (3, 224, 224)
    input_datatype: str  # e.g. FP32
    input_hw: int  # the square input side (the last dimension)
    output_names: tuple[str, ...]


def onnx_facts(path: str | Path) -> OnnxFacts:
    """Read `path` and compute its `OnnxFacts`; ConfigError naming the file when it is not a usable model."""
    import onnx
    from onnx import numpy_helper, shape_inference

    path = Path(path)
    try:
        model = onnx.load(str(path))
    except Exception as e:  # noqa: BLE001 - protobuf raises several unrelated types on garbage
        raise ConfigError(f"{path}: not a readable ONNX model: {e}") from None
    graph = model.graph
    initializers = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    if not inputs:
        raise ConfigError(f"{path}: the graph has no input")
    for i in inputs:  # one frame: every symbolic or leading batch dimension becomes 1
        dims = i.type.tensor_type.shape.dim
        for k, d in enumerate(dims):
            if k == 0 or not d.HasField("dim_value"):
                d.Clear()
                d.dim_value = 1
    try:
        inferred = shape_inference.infer_shapes(model, strict_mode=True)
    except Exception as e:  # noqa: BLE001 - onnx's inference errors are several types
        raise ConfigError(f"{path}: onnx shape inference failed: {e}") from None
    shapes = _shapes(inferred.graph)
    macs = sum(_node_macs(node, shapes) for node in inferred.graph.node)
    params = sum(math.prod(numpy_helper.to_array(t).shape) for t in graph.initializer)
    first = inputs[0]
    frame_shape = tuple(d.dim_value for d in first.type.tensor_type.shape.dim)[1:]
    if len(frame_shape) < 2:
        raise ConfigError(f"{path}: input {first.name!r} has shape {list(frame_shape)}; expected (C, H, W)")
    return OnnxFacts(
        gmacs=macs / 1e9,
        params_m=params / 1e6,
        input_name=first.name,
        input_shape=frame_shape,
        input_datatype=ONNX_DATATYPES.get(first.type.tensor_type.elem_type, "FP32"),
        input_hw=int(frame_shape[-1]),
        output_names=tuple(o.name for o in graph.output),
    )


def _shapes(graph: Any) -> dict[str, tuple[int, ...]]:
    """Static shapes of every named tensor the inference could resolve (symbolic dims as 1)."""
    out: dict[str, tuple[int, ...]] = {}
    for vi in [*graph.input, *graph.value_info, *graph.output]:
        t = vi.type.tensor_type
        if t.HasField("shape"):
            out[vi.name] = tuple(d.dim_value if d.HasField("dim_value") else 1 for d in t.shape.dim)
    for init in graph.initializer:
        out[init.name] = tuple(init.dims)
    return out


def _node_macs(node: Any, shapes: dict[str, tuple[int, ...]]) -> int:
    """Multiply-accumulates of one node (0 for ops that are not counted or whose shapes are unknown)."""
    if node.op_type in ("Conv", "ConvTranspose"):
        weight = shapes.get(node.input[1])
        out = shapes.get(node.output[0])
        if weight is None or out is None:
            return 0
        # Conv weight (M, C/group, k...): each output element sums C/group x kernel products.
        # ConvTranspose weight (C, M/group, k...): each input element scatters M/group x kernel products.
        if node.op_type == "Conv":
            return math.prod(out) * math.prod(weight[1:])
        x = shapes.get(node.input[0])
        return 0 if x is None else math.prod(x) * math.prod(weight[1:])
    if node.op_type in ("Gemm", "MatMul"):
        a, out = shapes.get(node.input[0]), shapes.get(node.output[0])
        if a is None or out is None or not a:
            return 0
        trans_a = any(att.name == "transA" and att.i for att in node.attribute)
        reduced = a[-2] if trans_a and len(a) >= 2 else a[-1]
        return math.prod(out) * reduced
    return 0
