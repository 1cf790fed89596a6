"""The ONNX Runtime engine: runs a model repository's ONNX file, the general engine for any model.

    engine: onnxruntime
    options:
      providers: [CUDAExecutionProvider, CPUExecutionProvider]   # default: TensorRT, CUDA where present, CPU
      threads: 2                                                 # intra-op threads (CPU provider)

The ONNX file comes from the model's repository entry (`costmodel.model_zoo.model_entry`); a built-in model
without a file cannot run here (the torch or TensorRT engines build those from code). Classifiers answer top-5;
every other task answers its named outputs (`FrameOutput.tensors`). Execution providers the installed
onnxruntime does not offer are skipped, so one inventory serves both a CPU host and a CUDA one.
onnxruntime is imported when the engine is built (`pip install 'jetfleet[onnx]'`).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from actors.engines.base import Engine, EngineRun, named_outputs, topk_outputs
from costmodel.model_zoo import model_entry
from jetfleet.errors import ConfigError, DeviceError

PREFERRED_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
INPUT_DTYPES = {"FP32": np.float32, "FP16": np.float16, "UINT8": np.uint8, "FP64": np.float64}


class OnnxRuntimeEngine(Engine):
    """One `onnxruntime.InferenceSession` per model, built on first use."""

    name: ClassVar[str] = "onnxruntime"

    def __init__(self, *, providers: Sequence[str] | None = None, threads: int | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise ConfigError("the onnxruntime engine needs onnxruntime (pip install 'jetfleet[onnx]')") from None
        self._ort = ort
        available = ort.get_available_providers()
        wanted = list(providers) if providers else list(PREFERRED_PROVIDERS)
        self.providers = [p for p in wanted if p in available]
        if not self.providers:
            raise ConfigError(f"onnxruntime engine: none of the providers {wanted} is available; have {available}")
        self.threads = threads
        self._sessions: dict[str, Any] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_options(cls, options: Mapping[str, Any], *, where: str = "onnxruntime engine") -> OnnxRuntimeEngine:
        """Build from an inventory's `options` (engine-unrelated keys such as speed_factor are ignored)."""
        providers = options.get("providers")
        if providers is not None and (isinstance(providers, str) or not isinstance(providers, Sequence)):
            raise ConfigError(f"{where}: option 'providers' must be a list of execution provider names")
        return cls(providers=providers, threads=options.get("threads"))

    def load(self, model: str) -> None:
        with self._lock:
            if model in self._sessions:
                return
            entry = model_entry(model)
            if entry.onnx_path is None:
                raise ConfigError(
                    f"model {model!r} has no ONNX file in a model repository; the onnxruntime engine runs "
                    "repository models (jetfleet models add), the torch and tensorrt engines build built-in ones"
                )
            options = self._ort.SessionOptions()
            if self.threads:
                options.intra_op_num_threads = int(self.threads)
            self._sessions[model] = self._ort.InferenceSession(str(entry.onnx_path), options, providers=self.providers)

    def input_hw(self, model: str) -> int:
        return model_entry(model).info.input_hw

    async def run(self, model: str, frames: np.ndarray | None, n_frames: int, freq_hz: float) -> EngineRun:
        self.load(model)
        info = model_entry(model).info
        spec = info.model_input
        if frames is None:
            rng = np.random.default_rng(0)
            frames = rng.standard_normal((n_frames, *spec.shape), dtype=np.float32)
        frames = np.ascontiguousarray(frames, dtype=INPUT_DTYPES.get(spec.datatype, np.float32))
        session = self._sessions[model]
        try:
            arrays = await asyncio.to_thread(session.run, list(info.outputs), {spec.name: frames})
        except Exception as e:  # shape mismatches, runtime failures: this batch fails, the device lives
            raise DeviceError(f"onnxruntime engine: {model} failed on frames of shape {frames.shape}: {e}") from None
        if info.task == "classification":
            return EngineRun(topk_outputs(arrays[0], model))
        try:
            return EngineRun(named_outputs(dict(zip(info.outputs, arrays, strict=True)), n_frames, model))
        except ValueError as e:
            raise DeviceError(f"onnxruntime engine: {e}") from None
