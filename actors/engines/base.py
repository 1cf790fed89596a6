"""The engine interface: what a device actor runs a batch with.

An engine turns N frames of one model into N `FrameOutput`s. It does not touch the GPU clock or read
power; the device runtime (`actors.device.DeviceRuntime`) owns DVFS and the power meter and wraps every
engine call with them. Engines:

- `emulated` (`actors.engines.emulated`): sleeps the device model's latency, deterministic pseudo-outputs;
- `torch` (`actors.engines.torch_engine`): a real network on CPU frames;
- `onnxruntime` (`actors.engines.onnxruntime_engine`): a model repository's ONNX file, on the CPU or on
  ONNX Runtime's CUDA / TensorRT execution providers where present;
- `tensorrt` (`actors.engines.tensorrt_engine`): a TensorRT plan built from ONNX, on a GPU.

`Engine.run` is async so that an actor's event loop stays free while a batch runs: CPU-bound engines run
their work in a thread (`asyncio.to_thread`).
"""

from __future__ import annotations

import abc
import hashlib
import math
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

TOP_K = 5


@dataclass(frozen=True, slots=True, eq=False)
class NamedTensor:
    """One named output tensor of one frame (a detector's boxes, scores, ...)."""

    name: str
    data: np.ndarray  # the frame's slice of the output (batch dimension removed)

    @property
    def datatype(self) -> str:
        """The Open Inference Protocol datatype name of `data`."""
        return NUMPY_DATATYPES.get(self.data.dtype.name, "FP32")


NUMPY_DATATYPES = {
    "float32": "FP32",
    "float16": "FP16",
    "float64": "FP64",
    "int64": "INT64",
    "int32": "INT32",
    "int8": "INT8",
    "uint8": "UINT8",
    "bool": "BOOL",
}


@dataclass(frozen=True, slots=True)
class FrameOutput:
    """What a model said about one frame: a classifier's top-k class indices and their probabilities, or
    (any other task) its named output tensors."""

    classes: tuple[int, ...]  # class indices, most likely first (classifiers)
    scores: tuple[float, ...]  # softmax probabilities of those classes (classifiers)
    model: str = ""  # the model (variant) that produced it
    tensors: tuple[NamedTensor, ...] = ()  # named outputs (models that are not classifiers)


@dataclass(slots=True)
class EngineRun:
    """One engine call: per-frame outputs plus what the engine itself modelled (emulated engines only)."""

    outputs: list[FrameOutput]
    modelled_latency_s: float = math.nan  # the modelled device time of the batch (NaN: real engine)
    modelled_energy_j: float = math.nan  # the modelled board energy of the batch (NaN: real engine)
    detail: dict[str, float] = field(default_factory=dict)


class Engine(abc.ABC):
    """Base class of inference engines. Subclasses set `name` and implement `run` (and `load` when useful)."""

    name: ClassVar[str] = "engine"

    def load(self, model: str) -> None:
        """Prepare `model` (build, load weights) so the first batch does not pay for it. Default: nothing."""
        return None

    def input_hw(self, model: str) -> int:
        """Square input side in pixels the engine expects for `model` (synthetic frames use it)."""
        return 224

    @abc.abstractmethod
    async def run(self, model: str, frames: np.ndarray | None, n_frames: int, freq_hz: float) -> EngineRun:
        """Run `n_frames` frames of `model`. `frames` is a float32 array (N, 3, H, W) or None for synthetic
        frames; `freq_hz` is the GPU frequency the runtime has already set (emulated engines use it)."""

    def close(self) -> None:
        """Release what the engine holds (GPU memory, threads). Default: nothing."""
        return None


def topk_outputs(logits: np.ndarray, model: str, k: int = TOP_K) -> list[FrameOutput]:
    """Per-row top-k classes and softmax scores of a (N, C) logits array."""
    logits = np.asarray(logits, dtype=np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(shifted)
    probs /= probs.sum(axis=1, keepdims=True)
    k = min(k, probs.shape[1])
    idx = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return [
        FrameOutput(tuple(int(c) for c in row), tuple(float(probs[i, c]) for c in row), model)
        for i, row in enumerate(idx)
    ]


def named_outputs(outputs: dict[str, np.ndarray], n_frames: int, model: str) -> list[FrameOutput]:
    """Per-frame named tensors from batched outputs (each output's first dimension is the batch)."""
    for name, array in outputs.items():
        if array.ndim == 0 or array.shape[0] != n_frames:
            raise ValueError(f"{model}: output {name!r} of shape {list(array.shape)} has no batch dimension")
    return [
        FrameOutput((), (), model, tuple(NamedTensor(name, np.asarray(a[i])) for name, a in outputs.items()))
        for i in range(n_frames)
    ]


def pseudo_logits(model: str, frames: np.ndarray | None, n_frames: int, n_classes: int = 1000) -> np.ndarray:
    """Deterministic stand-in logits: a function of the model name and each frame's bytes (or its index)."""
    rows = []
    for i in range(n_frames):
        h = hashlib.blake2b(model.encode(), digest_size=8)
        if frames is not None:
            h.update(np.ascontiguousarray(frames[i]).tobytes())
        else:
            h.update(i.to_bytes(4, "little"))
        rng = np.random.default_rng(int.from_bytes(h.digest(), "little"))
        rows.append(rng.standard_normal(n_classes) * 3.0)
    return np.stack(rows) if rows else np.zeros((0, n_classes))
