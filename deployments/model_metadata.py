"""What a served model takes and returns, as named, typed tensors (the Open Inference Protocol's model metadata).

Today every model of the zoo (`costmodel.model_zoo`) is an image classifier served through the same engine
interface, so its signature follows from its input side alone:

    inputs   input    FP32   [-1, 3, H, W]   normalised frames (ImageNet mean/std), H = W = the model's input side
             image    BYTES  [-1]            encoded JPEG/PNG images, decoded and preprocessed by the service
    outputs  classes  INT64  [-1, 5]         top-5 class indices, most likely first
             scores   FP32   [-1, 5]         their softmax probabilities

A request sends exactly one of the two inputs. `model_signature` is the one place that says this; a model
repository that records inputs and outputs per model can back it without changing its callers.
"""

from __future__ import annotations

from dataclasses import dataclass

from actors.engines.base import TOP_K
from costmodel.model_zoo import MODELS

FRAMES_INPUT = "input"
IMAGES_INPUT = "image"
CLASSES_OUTPUT = "classes"
SCORES_OUTPUT = "scores"
MODEL_VERSION = "1"  # the zoo has one version of each model


@dataclass(frozen=True)
class TensorSpec:
    """One named tensor: its protocol datatype and shape (-1: any size along that axis)."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


@dataclass(frozen=True)
class ModelSignature:
    """A served model's name, version, and the tensors it takes (one of `inputs` per request) and returns."""

    name: str
    version: str
    input_hw: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def input(self, name: str) -> TensorSpec | None:
        return next((t for t in self.inputs if t.name == name), None)

    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]


def model_signature(model: str) -> ModelSignature:
    """The signature of `model` (a model or family name the fleet serves); its input side from the zoo
    (224 when the zoo does not know it: the engines' default)."""
    info = MODELS.get(model) or next((m for m in MODELS.values() if m.family == model), None)
    hw = info.input_hw if info is not None else 224
    return ModelSignature(
        name=model,
        version=MODEL_VERSION,
        input_hw=hw,
        inputs=(TensorSpec(FRAMES_INPUT, "FP32", (-1, 3, hw, hw)), TensorSpec(IMAGES_INPUT, "BYTES", (-1,))),
        outputs=(TensorSpec(CLASSES_OUTPUT, "INT64", (-1, TOP_K)), TensorSpec(SCORES_OUTPUT, "FP32", (-1, TOP_K))),
    )
