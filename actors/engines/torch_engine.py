"""The torch engine: real inference on the CPU with a network defined in `actors.networks`.

Inventory options (all optional):

    engine: torch
    options:
      model_map: {inceptionv3: resnet18}   # run requests for a model with another network (default: same name)
      weights: {resnet18: /path/r18.pth}    # a state_dict per network; else seeded random weights
      weights_path: /path/r18.pth           # one state_dict for every network this device builds
      onnx: {resnet18: /path/r18.onnx}      # run this model's ONNX file with onnxruntime instead
      onnx_path: /path/model.onnx           # the same for every model of the device
      threads: 2                            # torch.set_num_threads
      seed: 0                               # random-weight seed

A batch runs in a worker thread (`asyncio.to_thread`), so the actor's event loop stays responsive.
torch (and onnxruntime) are imported when the engine is built, never at module import.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from actors.engines.base import Engine, EngineRun, topk_outputs
from costmodel.model_zoo import MODELS
from jetfleet.errors import ConfigError, DeviceError, UnknownNameError


class TorchEngine(Engine):
    """Runs `actors.networks` models (or ONNX files through onnxruntime) on CPU frames."""

    name: ClassVar[str] = "torch"

    def __init__(
        self,
        *,
        model_map: Mapping[str, str] | None = None,
        weights: Mapping[str, str | Path] | None = None,
        onnx: Mapping[str, str | Path] | None = None,
        default_weights: str | Path | None = None,
        default_onnx: str | Path | None = None,
        threads: int | None = None,
        seed: int = 0,
    ) -> None:
        import torch

        self._torch = torch
        if threads:
            torch.set_num_threads(int(threads))
        self.model_map = dict(model_map or {})
        self.weights = {k: Path(v) for k, v in (weights or {}).items()}
        self.onnx = {k: Path(v) for k, v in (onnx or {}).items()}
        self.default_weights = Path(default_weights) if default_weights else None
        self.default_onnx = Path(default_onnx) if default_onnx else None
        self.seed = seed
        self._runners: dict[str, Callable[[np.ndarray], np.ndarray]] = {}
        self._hw: dict[str, int] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_options(cls, options: Mapping[str, Any], *, where: str = "torch engine") -> TorchEngine:
        """Build from an inventory's `options` (engine-unrelated keys such as speed_factor are ignored)."""
        for key in ("model_map", "weights", "onnx"):
            if key in options and not isinstance(options[key], Mapping):
                raise ConfigError(f"{where}: option {key!r} must be a mapping of model to value")
        return cls(
            model_map=options.get("model_map"),
            weights=options.get("weights"),
            onnx=options.get("onnx"),
            default_weights=options.get("weights_path"),
            default_onnx=options.get("onnx_path"),
            threads=options.get("threads"),
            seed=int(options.get("seed", 0)),
        )

    def network_of(self, model: str) -> str:
        """The network that serves requests for `model`: the mapped one, else the model itself, else (for a
        model variant such as a smaller input size) its base model."""
        if model in self.model_map:
            return self.model_map[model]
        from actors.engines.emulated import zoo_base

        base = zoo_base(model)
        return self.model_map.get(base, base)

    def input_hw(self, model: str) -> int:
        self.load(model)
        return self._hw[model]

    def load(self, model: str) -> None:
        with self._lock:
            if model not in self._runners:
                self._runners[model] = self._build(model)

    def _build(self, model: str) -> Callable[[np.ndarray], np.ndarray]:
        onnx_path = self.onnx.get(model) or self.default_onnx
        if onnx_path is not None:
            return self._build_onnx(model, onnx_path)
        from actors import networks

        name = self.network_of(model)
        if name not in networks.NETWORKS:
            raise UnknownNameError(f"network for model {model!r} (torch engine)", name, networks.NETWORKS)
        net = networks.build_network(name, seed=self.seed, weights=self.weights.get(name) or self.default_weights)
        from actors.engines.emulated import resolve_variant

        # frames keep the requested model's own input size (a stand-in network takes any size)
        variant = resolve_variant(model)
        if variant is not None:
            self._hw[model] = variant.input_hw
        else:
            self._hw[model] = MODELS[model].input_hw if model in MODELS else networks.input_hw(name)
        torch = self._torch

        def run(frames: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return net(torch.from_numpy(frames)).numpy()

        return run

    def _build_onnx(self, model: str, path: Path) -> Callable[[np.ndarray], np.ndarray]:
        if not path.exists():
            raise ConfigError(f"{path}: no such ONNX file (model {model!r}, torch engine)")
        try:
            import onnxruntime as ort
        except ImportError:
            raise ConfigError(
                f"{path}: the torch engine runs ONNX files with onnxruntime, which is not installed "
                "(pip install onnxruntime), or use engine: tensorrt on a GPU"
            ) from None
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        inp = session.get_inputs()[0]
        hw = inp.shape[-1]
        self._hw[model] = hw if isinstance(hw, int) else 224
        out_name = session.get_outputs()[0].name
        return lambda frames: session.run([out_name], {inp.name: frames})[0]

    async def run(self, model: str, frames: np.ndarray | None, n_frames: int, freq_hz: float) -> EngineRun:
        self.load(model)
        if frames is None:
            frames = synthetic_frames(n_frames, self._hw[model])
        frames = np.ascontiguousarray(frames, dtype=np.float32)
        try:
            logits = await asyncio.to_thread(self._runners[model], frames)
        except Exception as e:  # shape mismatches, onnxruntime failures: this batch fails, the device lives
            raise DeviceError(f"torch engine: {model} failed on frames of shape {frames.shape}: {e}") from None
        return EngineRun(topk_outputs(logits, model))


def synthetic_frames(n_frames: int, hw: int, seed: int = 0) -> np.ndarray:
    """Deterministic normalised-image-like frames, float32 (n, 3, hw, hw)."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n_frames, 3, hw, hw), dtype=np.float32)
