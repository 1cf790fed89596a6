"""The facts jetfleet keeps about one model: what the cost model uses as features, how frames go in and
what comes out. Built-in models (`costmodel.model_zoo`) and model-repository entries
(`costmodel.model_repository`) are both `ModelInfo`s."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Task = Literal["classification", "detection", "other"]
Preprocessing = Literal["imagenet"]


@dataclass(frozen=True)
class ModelInput:
    """The one input tensor of a model: one frame's shape (no batch dimension) and how images become it."""

    name: str = "input"
    shape: tuple[int, ...] = (3, 224, 224)
    datatype: str = "FP32"  # Open Inference Protocol datatype name
    preprocessing: Preprocessing = "imagenet"  # resize, centre crop, ImageNet mean/std (deployments.payload)


@dataclass(frozen=True)
class ModelInfo:
    """Static facts about one model (variant)."""

    name: str  # unique key, e.g. "resnet50"; requests name it
    family: str  # variants of one family share it
    gmacs: float  # giga multiply-accumulates per frame at input_hw
    params_m: float  # parameters, millions
    input_hw: int  # square input side, pixels
    accuracy_pct: float
    accuracy_metric: str = "imagenet-top1"
    sources: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    task: Task = "classification"  # classification: /v1 answers top-5; otherwise named output tensors
    variant: str = ""  # the variant's label within its family ("" for the family's only model)
    input: ModelInput | None = None  # None: (3, input_hw, input_hw) FP32 named "input"
    outputs: tuple[str, ...] = ("logits",)

    @property
    def model_input(self) -> ModelInput:
        """The input spec, defaulted from `input_hw` for facts-only entries."""
        return self.input or ModelInput(shape=(3, self.input_hw, self.input_hw))
