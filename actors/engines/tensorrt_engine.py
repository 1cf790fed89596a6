"""The TensorRT engine: builds a plan from ONNX with a dynamic-batch optimisation profile, caches it, runs it.

    engine: tensorrt
    options:
      onnx: {resnet18: /models/r18.onnx}   # per model; else onnx_path for all; else the model repository's
      onnx_path: /models/model.onnx        #   ONNX file; else the network of the same name from
                                           #   actors.networks is exported (random weights)
      max_batch: 32                        # the profile covers batches 1..max_batch (opt = max_batch)
      opt_batch: 8                         # optional: the batch TensorRT tunes kernels for
      fp16: true                           # build with FP16 kernels where the GPU has them
      workspace_mb: 1024
      plan_cache_dir: ~/.cache/jetfleet/trt

A plan is tied to the TensorRT version and the GPU, so its cache key hashes the ONNX bytes, the TensorRT
version, the GPU name and the build options. A model-repository entry's prebuilt plan for the device's kind
(`plans: {xavier-nx: plans/xavier-nx.plan}`) is loaded as it is, without building; it must have been built
with this TensorRT for batches up to `max_batch`. Batches larger than `max_batch` run in chunks.

It uses the TensorRT >= 8.5 name-based I/O API (`num_io_tensors`, `set_input_shape`, `set_tensor_address`,
`execute_async_v3`), present in TensorRT 8.5/8.6 (JetPack 5), 10 (JetPack 6, desktop) and 11. Device memory
and the CUDA stream come from torch's CUDA build (`TorchCuda`). Both modules are imported when the engine is
built; `trt` and `cuda` are injectable, which is how the tests check the logic without a GPU.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from actors.engines.base import Engine, EngineRun, topk_outputs
from jetfleet.errors import ConfigError, DeviceError

DEFAULT_CACHE = Path("~/.cache/jetfleet/trt")


class TorchCuda:
    """Device buffers and the CUDA stream, from torch's CUDA build."""

    def __init__(self, device: int = 0) -> None:
        import torch

        if not torch.cuda.is_available():
            raise DeviceError("the tensorrt engine needs a CUDA GPU and torch built with CUDA; none found")
        self.torch = torch
        self.device = torch.device("cuda", device)
        self.stream = torch.cuda.Stream(self.device)

    def to_device(self, array: np.ndarray) -> Any:
        return self.torch.from_numpy(np.ascontiguousarray(array)).to(self.device, non_blocking=False)

    def empty(self, shape: tuple[int, ...], dtype: np.dtype) -> Any:
        torch_dtype = self.torch.from_numpy(np.empty(0, dtype=dtype)).dtype
        return self.torch.empty(shape, dtype=torch_dtype, device=self.device)

    def ptr(self, buffer: Any) -> int:
        return int(buffer.data_ptr())

    def stream_handle(self) -> int:
        return int(self.stream.cuda_stream)

    def synchronize(self) -> None:
        self.stream.synchronize()

    def to_host(self, buffer: Any) -> np.ndarray:
        return buffer.cpu().numpy()

    def device_name(self) -> str:
        return str(self.torch.cuda.get_device_name(self.device))


@dataclass(frozen=True)
class BuildOptions:
    """What a plan is built with; part of its cache key."""

    max_batch: int = 32
    opt_batch: int | None = None
    fp16: bool = True
    workspace_mb: int = 1024

    def key(self) -> str:
        return f"b{self.max_batch}-o{self.opt_batch or self.max_batch}-fp16{int(self.fp16)}-ws{self.workspace_mb}"


class TrtModel:
    """One deserialised TensorRT engine with its execution context and named I/O tensors."""

    def __init__(self, trt: Any, cuda: Any, plan: bytes, model: str, max_batch: int, logger: Any) -> None:
        self.trt, self.cuda, self.model, self.max_batch = trt, cuda, model, max_batch
        self.runtime = trt.Runtime(logger)
        self.engine = self.runtime.deserialize_cuda_engine(plan)
        if self.engine is None:
            raise DeviceError(f"TensorRT could not deserialise the plan of {model!r} (stale cache? delete it)")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in inputs]
        if len(inputs) != 1 or not outputs:
            raise DeviceError(f"{model!r}: expected one image input and a logits output, got {inputs} -> {outputs}")
        self.input, self.output = inputs[0], outputs[0]
        shape = tuple(self.engine.get_tensor_shape(self.input))
        self.input_hw = int(shape[-1]) if shape and shape[-1] > 0 else 224

    def infer(self, frames: np.ndarray) -> np.ndarray:
        """Logits of `frames` (N, 3, H, W), in chunks of at most max_batch."""
        chunks = [frames[i : i + self.max_batch] for i in range(0, len(frames), self.max_batch)]
        return np.concatenate([self._infer_chunk(c) for c in chunks]) if chunks else np.zeros((0, 0))

    def _infer_chunk(self, frames: np.ndarray) -> np.ndarray:
        trt, cuda, ctx = self.trt, self.cuda, self.context
        in_dtype = trt.nptype(self.engine.get_tensor_dtype(self.input))
        if not ctx.set_input_shape(self.input, tuple(frames.shape)):
            raise DeviceError(f"{self.model!r}: TensorRT refused input shape {tuple(frames.shape)}")
        inp = cuda.to_device(frames.astype(in_dtype, copy=False))
        out_shape = tuple(ctx.get_tensor_shape(self.output))
        out = cuda.empty(out_shape, trt.nptype(self.engine.get_tensor_dtype(self.output)))
        ctx.set_tensor_address(self.input, cuda.ptr(inp))
        ctx.set_tensor_address(self.output, cuda.ptr(out))
        if not ctx.execute_async_v3(cuda.stream_handle()):
            raise DeviceError(f"{self.model!r}: TensorRT execute_async_v3 failed for batch {len(frames)}")
        cuda.synchronize()
        return cuda.to_host(out).astype(np.float32, copy=False).reshape(len(frames), -1)


def build_plan(trt: Any, onnx_bytes: bytes, options: BuildOptions, logger: Any, source: str) -> bytes:
    """Parse ONNX, add a dynamic-batch profile (1 .. max_batch) for every input, build a serialised plan."""
    builder = trt.Builder(logger)
    flags = 0
    if _trt_major(trt) < 10:  # TensorRT 8 needs explicit batch asked for
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_bytes):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise DeviceError(f"{source}: TensorRT could not parse the ONNX model: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mb << 20)
    if options.fp16 and getattr(builder, "platform_has_fast_fp16", True) and hasattr(trt.BuilderFlag, "FP16"):
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    opt = min(options.opt_batch or options.max_batch, options.max_batch)
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        rest = tuple(int(d) for d in tuple(tensor.shape)[1:])
        if any(d < 0 for d in rest):
            dims = tuple(tensor.shape)
            raise DeviceError(f"{source}: input {tensor.name!r} has dynamic dims {dims}; only the batch may be")
        profile.set_shape(tensor.name, (1, *rest), (opt, *rest), (options.max_batch, *rest))
    config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise DeviceError(f"{source}: TensorRT failed to build an engine (see the TensorRT log above)")
    return bytes(plan)


class TensorRTEngine(Engine):
    """Runs TensorRT plans built from ONNX (see the module docstring for options)."""

    name: ClassVar[str] = "tensorrt"

    def __init__(
        self,
        *,
        onnx: Mapping[str, str | Path] | None = None,
        default_onnx: str | Path | None = None,
        build: BuildOptions | None = None,
        cache_dir: str | Path = DEFAULT_CACHE,
        model_map: Mapping[str, str] | None = None,
        trt: Any = None,
        cuda: Any = None,
        device_kind: str = "",
    ) -> None:
        self.trt = trt if trt is not None else _import_tensorrt()
        self.cuda = cuda if cuda is not None else TorchCuda()
        self.logger = self.trt.Logger(self.trt.Logger.WARNING)
        self.onnx = {k: Path(v).expanduser() for k, v in (onnx or {}).items()}
        self.default_onnx = Path(default_onnx).expanduser() if default_onnx else None
        self.build = build or BuildOptions()
        self.cache_dir = Path(cache_dir).expanduser()
        self.model_map = dict(model_map or {})
        self._models: dict[str, TrtModel] = {}
        self._lock = threading.Lock()
        self.plans_built = 0  # how many plans this engine built (not taken from the cache)
        self.device_kind = device_kind  # picks a model repository's prebuilt plan for this kind of device

    @classmethod
    def from_options(cls, options: Mapping[str, Any], *, where: str = "tensorrt engine", **kw: Any) -> TensorRTEngine:
        """Build from an inventory's `options`."""
        if "onnx" in options and not isinstance(options["onnx"], Mapping):
            raise ConfigError(f"{where}: option 'onnx' must be a mapping of model to ONNX path")
        build = BuildOptions(
            max_batch=int(options.get("max_batch", 32)),
            opt_batch=options.get("opt_batch"),
            fp16=bool(options.get("fp16", True)),
            workspace_mb=int(options.get("workspace_mb", 1024)),
        )
        if build.max_batch < 1:
            raise ConfigError(f"{where}: max_batch must be >= 1, got {build.max_batch}")
        return cls(
            onnx=options.get("onnx"),
            default_onnx=options.get("onnx_path"),
            build=build,
            cache_dir=options.get("plan_cache_dir", DEFAULT_CACHE),
            model_map=options.get("model_map"),
            **kw,
        )

    def onnx_bytes(self, model: str) -> tuple[bytes, str]:
        """The ONNX model for `model` and where it came from (a file, or our own network exported)."""
        path = self.onnx.get(model) or self.default_onnx or _repository_onnx(model)
        if path is None:
            path = self._export_network(model)
        if not path.exists():
            raise ConfigError(f"{path}: no such ONNX file (model {model!r}, tensorrt engine)")
        return path.read_bytes(), str(path)

    def _export_network(self, model: str) -> Path:
        from actors import networks

        name = self.model_map.get(model, model)
        path = self.cache_dir / "onnx" / f"{name}.onnx"
        if not path.exists():
            opset = 18 if _trt_major(self.trt) >= 10 else 17  # TensorRT 8.x parses ONNX opsets up to 17
            net = networks.build_network(name)
            networks.export_onnx(net, path, hw=networks.input_hw(name), max_batch=self.build.max_batch, opset=opset)
        return path

    def plan_path(self, onnx_bytes: bytes) -> Path:
        """Where the plan of these ONNX bytes, this TensorRT, this GPU and these options is cached."""
        h = hashlib.sha256(onnx_bytes)
        h.update(f"|trt{self.trt.__version__}|{self.cuda.device_name()}|{self.build.key()}".encode())
        return self.cache_dir / f"{h.hexdigest()[:24]}.plan"

    def load(self, model: str) -> None:
        with self._lock:
            if model in self._models:
                return
            prebuilt = _repository_plan(model, self.device_kind)
            plan = prebuilt.read_bytes() if prebuilt is not None else self._cached_or_built_plan(model)
            self._models[model] = TrtModel(self.trt, self.cuda, plan, model, self.build.max_batch, self.logger)

    def _cached_or_built_plan(self, model: str) -> bytes:
        """The plan of `model`'s ONNX from the cache, else built now (and cached)."""
        data, source = self.onnx_bytes(model)
        path = self.plan_path(data)
        if path.exists():
            return path.read_bytes()
        plan = build_plan(self.trt, data, self.build, self.logger, source)
        self.plans_built += 1
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(plan)
        tmp.replace(path)  # atomic: a concurrent reader never sees half a plan
        return plan

    def input_hw(self, model: str) -> int:
        self.load(model)
        return self._models[model].input_hw

    async def run(self, model: str, frames: np.ndarray | None, n_frames: int, freq_hz: float) -> EngineRun:
        self.load(model)
        trt_model = self._models[model]
        if frames is None:
            rng = np.random.default_rng(0)
            frames = rng.standard_normal((n_frames, 3, trt_model.input_hw, trt_model.input_hw), dtype=np.float32)
        logits = await asyncio.to_thread(trt_model.infer, np.ascontiguousarray(frames, dtype=np.float32))
        return EngineRun(topk_outputs(logits, model))

    def close(self) -> None:
        self._models.clear()


def _repository_plan(model: str, device_kind: str) -> Path | None:
    """A model repository's prebuilt plan of `model` for `device_kind` (None when it has none)."""
    from costmodel.model_zoo import MODELS, model_entry

    return model_entry(model).plans.get(device_kind) if device_kind and model in MODELS else None


def _repository_onnx(model: str) -> Path | None:
    """The ONNX file of `model`'s model-repository entry (None for built-in models and unknown names)."""
    from costmodel.model_zoo import MODELS, model_entry

    return model_entry(model).onnx_path if model in MODELS else None


def _trt_major(trt: Any) -> int:
    return int(str(trt.__version__).split(".")[0])


def _import_tensorrt() -> Any:
    try:
        import tensorrt
    except ImportError:
        raise DeviceError(
            "the tensorrt engine needs TensorRT (JetPack ships it; elsewhere pip install tensorrt) on a CUDA GPU"
        ) from None
    return tensorrt
