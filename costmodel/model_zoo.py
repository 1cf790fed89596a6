"""The DNN models jetfleet knows: descriptors the cost model uses as features, and accuracy.

`gmacs` are multiply-accumulates per frame at the model's input size, as torchvision's model cards
report them (their "GFLOPS" column counts MACs). Accuracy is ImageNet top-1 (%) for classifiers and
COCO AP50 (%) for detectors, from the cited model cards. Per-device latency figures used to scale
emulated devices to these models live in `costmodel.device_models`, each with its own source.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from jetfleet.errors import UnknownNameError


@dataclass(frozen=True)
class ModelInfo:
    """Static facts about one model (variant)."""

    name: str  # unique key, e.g. "resnet50"
    family: str  # the name requests use; variants of one family share it
    gmacs: float  # giga multiply-accumulates per frame at input_hw
    params_m: float  # parameters, millions
    input_hw: int  # square input side, pixels
    accuracy_pct: float
    accuracy_metric: str = "imagenet-top1"
    sources: dict[str, str] = field(default_factory=dict, compare=False, hash=False)


_TV = "torchvision model card (pytorch.org/vision/stable/models)"

MODELS: dict[str, ModelInfo] = {
    m.name: m
    for m in [
        ModelInfo("inceptionv3", "inceptionv3", 5.71, 27.2, 299, 77.29, sources={"all": _TV}),
        ModelInfo("resnet18", "resnet18", 1.81, 11.7, 224, 69.76, sources={"all": _TV}),
        ModelInfo("resnet34", "resnet34", 3.66, 21.8, 224, 73.31, sources={"all": _TV}),
        ModelInfo("resnet50", "resnet50", 4.09, 25.6, 224, 76.13, sources={"all": _TV}),
        ModelInfo("googlenet", "googlenet", 1.50, 6.6, 224, 69.78, sources={"all": _TV}),
        ModelInfo("mobilenetv2", "mobilenetv2", 0.30, 3.5, 224, 71.88, sources={"all": _TV}),
        ModelInfo("efficientnet-b3", "efficientnet-b3", 1.83, 12.2, 300, 82.01, sources={"all": _TV}),
        ModelInfo(
            "yolov4-tiny",
            "yolov4-tiny",
            3.45,
            6.1,
            416,
            40.2,
            accuracy_metric="coco-ap50",
            sources={"all": "AlexeyAB/darknet YOLOv4-tiny model zoo (6.9 BFLOPs = 3.45 GMACs, 40.2 AP50)"},
        ),
    ]
}


def get_model(name: str) -> ModelInfo:
    """Look a model up by name; raise UnknownNameError naming the known ones."""
    try:
        return MODELS[name]
    except KeyError:
        raise UnknownNameError("model", name, MODELS) from None
