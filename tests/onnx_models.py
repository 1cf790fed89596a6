"""Small ONNX models built from code (onnx.helper, random weights) for the model-repository tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

CONV_MACS = 8 * 32 * 32 * 3 * 3 * 3  # Conv 3->8, 3x3, padding 1, on 32x32: output elements x (C_in x k x k)
HEAD_MACS = 8 * 4 + 8 * 3  # the two Gemm heads
PARAMS = (8 * 3 * 3 * 3 + 8) + (8 * 4 + 4) + (8 * 3 + 3)


def tiny_detector(path: Path, seed: int = 0) -> Path:
    """images (N, 3, 32, 32) -> Conv -> Relu -> GlobalAveragePool -> Flatten -> boxes (N, 4), scores (N, 3)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)

    def init(name: str, *shape: int):
        return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)

    nodes = [
        helper.make_node("Conv", ["images", "w", "b"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "wb", "bb"], ["box_logits"], transB=1),
        helper.make_node("Sigmoid", ["box_logits"], ["boxes"]),
        helper.make_node("Gemm", ["f", "ws", "bs"], ["score_logits"], transB=1),
        helper.make_node("Softmax", ["score_logits"], ["scores"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tinydet",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, 32, 32])],
        [
            helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["N", 4]),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 3]),
        ],
        [init("w", 8, 3, 3, 3), init("b", 8), init("wb", 4, 8), init("bb", 4), init("ws", 3, 8), init("bs", 3)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path
