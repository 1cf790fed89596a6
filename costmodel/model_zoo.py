"""The DNN models jetfleet knows: descriptors the cost model uses as features, and accuracy.

The built-in zoo below is the default repository's entries: facts-only (no ONNX file; engines build these
networks from code), each figure with its source. `use_repository(path)` adds a model repository's entries
(`costmodel.model_repository`, facts computed from each ONNX graph) to `MODELS`, the models this process
knows; a fleet inventory's `model_repository` does it for every process that loads the fleet, and
`$JETFLEET_MODEL_REPOSITORY` for `get_model` in any jetfleet process.

`gmacs` are multiply-accumulates per frame at the model's input size, as torchvision's model cards
report them (their "GFLOPS" column counts MACs). Accuracy is ImageNet top-1 (%) for classifiers and
COCO AP50 (%) for detectors, from the cited model cards. Per-device latency figures used to scale
emulated devices to these models live in `costmodel.device_models`, each with its own source.
"""

from __future__ import annotations

import os
from pathlib import Path

from costmodel.model_info import ModelInfo, ModelInput
from costmodel.model_repository import ModelEntry, load_repository
from jetfleet.errors import ConfigError, UnknownNameError

__all__ = [
    "BUILTIN_MODELS",
    "MODELS",
    "REPOSITORY_ENV",
    "ModelInfo",
    "ModelInput",
    "get_model",
    "model_entry",
    "use_repository",
]

REPOSITORY_ENV = "JETFLEET_MODEL_REPOSITORY"  # a model repository every jetfleet process of a shell uses

_TV = "torchvision model card (pytorch.org/vision/stable/models)"

BUILTIN_MODELS: dict[str, ModelInfo] = {
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
            task="detection",
            outputs=("boxes", "confs"),
            sources={"all": "AlexeyAB/darknet YOLOv4-tiny model zoo (6.9 BFLOPs = 3.45 GMACs, 40.2 AP50)"},
        ),
    ]
}


# The models this process knows: the built-ins, then every repository `use_repository` registered.
MODELS: dict[str, ModelInfo] = dict(BUILTIN_MODELS)
_ENTRIES: dict[str, ModelEntry] = {}
_USED: set[Path] = set()


def use_repository(root: str | Path) -> list[str]:
    """Make every model of the repository at `root` known to this process (MODELS, `model_entry`); returns
    their names. Idempotent; ConfigError when an entry would change a model already known under its name."""
    root = Path(root).resolve()
    if root in _USED:
        return sorted(e.info.name for e in _ENTRIES.values() if e.root.parent == root)
    entries = load_repository(root)
    for entry in entries:
        known = MODELS.get(entry.info.name)
        if known is not None and known != entry.info:
            where = _ENTRIES[known.name].yaml_path if known.name in _ENTRIES else "the built-in zoo"
            raise ConfigError(f"{entry.yaml_path}: model {entry.info.name!r} is already defined by {where}")
    for entry in entries:
        MODELS[entry.info.name] = entry.info
        _ENTRIES[entry.info.name] = entry
    _USED.add(root)
    return [e.info.name for e in entries]


def _use_environment_repository() -> None:
    root = os.environ.get(REPOSITORY_ENV)
    if root and Path(root).is_dir():
        use_repository(root)


def get_model(name: str) -> ModelInfo:
    """Look a model up by name (also in the repository named by $JETFLEET_MODEL_REPOSITORY); raise
    UnknownNameError naming the known ones."""
    if name not in MODELS:
        _use_environment_repository()
    try:
        return MODELS[name]
    except KeyError:
        raise UnknownNameError("model", name, MODELS) from None


def model_entry(name: str) -> ModelEntry:
    """The repository entry of `name`: its files (ONNX, TensorRT plans) and facts; a built-in model is a
    facts-only entry (no files: engines build it from code)."""
    info = get_model(name)
    return _ENTRIES.get(name) or ModelEntry(info=info, root=None)
