"""The bytes one frame of a model occupies on its way to a device: its input tensor (shape x datatype).

Frames travel from the controller to the device as the model's input tensor, already preprocessed (what the
ingress builds, and what LoudVA's controller sent Triton: InceptionV3's FP32 3 x 299 x 299 = 1,072,812 bytes).
The shape and datatype come from the model's entry (`costmodel.model_info.ModelInput`: the ONNX graph for a
repository model); a variant (`costmodel.variants`) ships its own input side at its base model's datatype.
"""

from __future__ import annotations

import math
from functools import lru_cache

from costmodel.model_zoo import get_model
from costmodel.variants import resolve
from jetfleet.errors import UnknownNameError

__all__ = ["DATATYPE_BYTES", "frame_bytes"]

# Open Inference Protocol datatypes a model input may declare, and their sizes.
DATATYPE_BYTES: dict[str, int] = {"FP32": 4, "FP16": 2, "BF16": 2, "UINT8": 1, "INT8": 1, "INT32": 4, "INT64": 8}


@lru_cache(maxsize=1024)
def frame_bytes(model: str) -> int:
    """Bytes of one frame of `model` as shipped to a device: a zoo or repository model, a variant, or a family
    (its reference variant)."""
    variant = resolve(model)
    if variant is not None:
        base = get_model(variant.base).model_input
        return 3 * variant.input_hw * variant.input_hw * DATATYPE_BYTES[base.datatype]
    spec = get_model(model).model_input
    size = DATATYPE_BYTES.get(spec.datatype)
    if size is None:
        raise UnknownNameError("input datatype", spec.datatype, DATATYPE_BYTES)
    return math.prod(spec.shape) * size
