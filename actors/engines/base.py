"""The engine interface: what a device actor runs a batch with.

An engine turns N frames of one model into N `FrameOutput`s. It does not touch the GPU clock or read
power; the device runtime (`actors.device.DeviceRuntime`) owns DVFS and the power meter and wraps every
engine call with them. Engines:

- `emulated` (`actors.engines.emulated`): sleeps the device model's latency, deterministic pseudo-outputs;
- `torch` (`actors.engines.torch_engine`): a real network on CPU frames;
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


@dataclass(frozen=True, slots=True)
class FrameOutput:
    """What a classifier said about one frame: the top-k class indices and their probabilities."""

    classes: tuple[int, ...]  # class indices, most likely first
    scores: tuple[float, ...]  # softmax probabilities of those classes
    model: str = ""  # the model (variant) that produced it


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
