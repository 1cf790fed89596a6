"""TensorRT engine: the build/cache/run logic against a fake `tensorrt` module, and a real run on a GPU.

The fake parses the ONNX file with `onnx`, keeps the optimisation profile it was given, and "executes" the
tiny linear network in the ONNX file with numpy, so the outputs checked here are real numbers.
"""

from __future__ import annotations

import asyncio
import json
import types

import numpy as np
import pytest

from actors.engines.base import topk_outputs
from actors.engines.tensorrt_engine import BuildOptions, TensorRTEngine
from jetfleet.errors import DeviceError

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

HW, CLASSES = 4, 12


def _linear_onnx(path, seed: int = 0):
    """input (N, 3, 4, 4) -> Flatten -> MatMul W (48, 12) -> logits (N, 12), dynamic batch."""
    w = np.random.default_rng(seed).standard_normal((3 * HW * HW, CLASSES)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["input"], ["flat"]), helper.make_node("MatMul", ["flat", "W"], ["logits"])],
        "linear",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, HW, HW])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", CLASSES])],
        [numpy_helper.from_array(w, "W")],
    )
    onnx.save(helper.make_model(graph), str(path))
    return path, w


class FakeCuda:
    """Device memory as numpy arrays addressed by integer 'pointers'."""

    def __init__(self) -> None:
        self.mem: dict[int, np.ndarray] = {}
        self._next = 4096

    def _alloc(self, arr):
        self._next += 256
        self.mem[self._next] = arr
        return self._next

    def to_device(self, array):
        return self._alloc(np.array(array, copy=True))

    def empty(self, shape, dtype):
        return self._alloc(np.zeros(shape, dtype))

    def ptr(self, buffer):
        return buffer

    def stream_handle(self):
        return 77

    def synchronize(self):
        pass

    def to_host(self, buffer):
        return self.mem[buffer].copy()

    def device_name(self):
        return "Fake GPU"


def fake_trt(version: str = "10.3.0", cuda: FakeCuda | None = None, parse_ok: bool = True, build_ok: bool = True):
    """A stand-in for the `tensorrt` module, recording what the engine asked of it."""
    log: dict[str, list] = {"flags": [], "profiles": [], "pool": [], "flags_set": [], "shapes": [], "exec": []}
    m = types.SimpleNamespace(__version__=version, log=log)
    m.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, level=2: None})
    m.MemoryPoolType = types.SimpleNamespace(WORKSPACE="workspace")
    m.BuilderFlag = types.SimpleNamespace(FP16="fp16")
    m.NetworkDefinitionCreationFlag = types.SimpleNamespace(EXPLICIT_BATCH=0)
    m.TensorIOMode = types.SimpleNamespace(INPUT="in", OUTPUT="out")
    m.nptype = lambda dtype: np.float32

    class Network:
        def __init__(self):
            self.model = None

        @property
        def num_inputs(self):
            return len(self.model.graph.input)

        def get_input(self, i):
            vi = self.model.graph.input[i]
            dims = tuple(d.dim_value if d.dim_value else -1 for d in vi.type.tensor_type.shape.dim)
            return types.SimpleNamespace(name=vi.name, shape=dims)

    class Parser:
        def __init__(self, network, logger):
            self.network, self.num_errors = network, 0

        def parse(self, data):
            if not parse_ok:
                self.num_errors = 1
                return False
            self.network.model = onnx.load_from_string(data)
            return True

        def get_error(self, i):
            return "In node 0 (Flatten): unsupported"

    class Config:
        def set_memory_pool_limit(self, pool, size):
            log["pool"].append((pool, size))

        def set_flag(self, flag):
            log["flags_set"].append(flag)

        def add_optimization_profile(self, profile):
            self.profile = profile

    class Profile(dict):
        def set_shape(self, name, mn, opt, mx):
            self[name] = (tuple(mn), tuple(opt), tuple(mx))

    class Builder:
        platform_has_fast_fp16 = True

        def __init__(self, logger):
            pass

        def create_network(self, flags):
            log["flags"].append(flags)
            return Network()

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            log["profiles"].append(dict(config.profile))
            if not build_ok:
                return None
            w = numpy_helper.to_array(network.model.graph.initializer[0])
            header = json.dumps({"profile": config.profile, "w_shape": w.shape}).encode()
            return header + b"\n" + w.tobytes()

    class Context:
        def __init__(self, engine):
            self.engine, self.addr, self.in_shape = engine, {}, None

        def set_input_shape(self, name, shape):
            log["shapes"].append(tuple(shape))
            self.in_shape = tuple(shape)
            return shape[0] <= self.engine.profile["input"][2][0]

        def get_tensor_shape(self, name):
            return (self.in_shape[0], CLASSES)

        def set_tensor_address(self, name, ptr):
            self.addr[name] = ptr

        def execute_async_v3(self, stream):
            log["exec"].append((stream, dict(self.addr)))
            x = cuda.mem[self.addr["input"]]
            cuda.mem[self.addr["logits"]][...] = x.reshape(len(x), -1) @ self.engine.w
            return True

    class Engine:
        num_io_tensors = 2

        def __init__(self, plan):
            header, raw = plan.split(b"\n", 1)
            meta = json.loads(header)
            self.profile = meta["profile"]
            self.w = np.frombuffer(raw, np.float32).reshape(meta["w_shape"])

        def get_tensor_name(self, i):
            return ("input", "logits")[i]

        def get_tensor_mode(self, name):
            return "in" if name == "input" else "out"

        def get_tensor_shape(self, name):
            return (-1, 3, HW, HW) if name == "input" else (-1, CLASSES)

        def get_tensor_dtype(self, name):
            return "float"

        def create_execution_context(self):
            return Context(self)

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, plan):
            return Engine(plan)

    m.Builder, m.OnnxParser, m.Runtime = Builder, Parser, Runtime
    return m


def _engine(tmp_path, onnx_path, *, max_batch=8, version="10.3.0", **kw):
    cuda = FakeCuda()
    trt = fake_trt(version, cuda, **kw)
    engine = TensorRTEngine(
        onnx={"linear": onnx_path},
        build=BuildOptions(max_batch=max_batch, opt_batch=4),
        cache_dir=tmp_path / "plans",
        trt=trt,
        cuda=cuda,
    )
    return engine, trt


def _frames(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, HW, HW), dtype=np.float32)


def _assert_same_top5(outputs, logits: np.ndarray) -> None:
    """`outputs` are the top-5 of `logits`, row for row: same classes in the same order, same model, and scores
    within float32 rounding (rtol 1e-4: a float32 MatMul split into chunks may round its last bits differently)."""
    expected = topk_outputs(logits, "linear")
    assert len(outputs) == len(expected)
    assert [(o.classes, o.model) for o in outputs] == [(e.classes, e.model) for e in expected]
    np.testing.assert_allclose([o.scores for o in outputs], [e.scores for e in expected], rtol=1e-4)


def test_plan_has_a_dynamic_batch_profile_fp16_and_a_workspace(tmp_path):
    """The optimisation profile spans batch 1..max_batch (opt as asked) at the model's own C, H, W."""
    path, _ = _linear_onnx(tmp_path / "m.onnx")
    engine, trt = _engine(tmp_path, path)
    engine.load("linear")
    assert trt.log["profiles"] == [{"input": ((1, 3, HW, HW), (4, 3, HW, HW), (8, 3, HW, HW))}]
    assert trt.log["flags_set"] == ["fp16"] and trt.log["pool"] == [("workspace", 1024 << 20)]
    assert trt.log["flags"] == [0]  # TensorRT 10: explicit batch is the default


def test_tensorrt_8_asks_for_explicit_batch(tmp_path):
    """TensorRT 8 networks are created with the EXPLICIT_BATCH flag."""
    path, _ = _linear_onnx(tmp_path / "m.onnx")
    engine, trt = _engine(tmp_path, path, version="8.6.2")
    engine.load("linear")
    assert trt.log["flags"] == [1]


def test_run_gives_the_networks_logits_through_named_tensors(tmp_path):
    """Outputs equal the ONNX network's own top-5; every I/O tensor gets an address and the stream is used."""
    path, w = _linear_onnx(tmp_path / "m.onnx")
    engine, trt = _engine(tmp_path, path)
    frames = _frames(3)
    run = asyncio.run(engine.run("linear", frames, 3, 0.0))
    _assert_same_top5(run.outputs, frames.reshape(3, -1) @ w)
    stream, addresses = trt.log["exec"][0]
    assert stream == 77 and set(addresses) == {"input", "logits"}
    assert trt.log["shapes"] == [(3, 3, HW, HW)]


def test_batches_above_max_batch_run_in_chunks(tmp_path):
    """A batch of 19 with max_batch 8 runs as 8 + 8 + 3 and still returns 19 outputs in order."""
    path, w = _linear_onnx(tmp_path / "m.onnx")
    engine, trt = _engine(tmp_path, path)
    frames = _frames(19)
    run = asyncio.run(engine.run("linear", frames, 19, 0.0))
    assert [s[0] for s in trt.log["shapes"]] == [8, 8, 3] and len(trt.log["exec"]) == 3
    _assert_same_top5(run.outputs, frames.reshape(19, -1) @ w)


def test_plan_is_cached_and_reused(tmp_path):
    """A second engine with the same ONNX, TensorRT, GPU and options loads the cached plan."""
    path, _ = _linear_onnx(tmp_path / "m.onnx")
    first, _ = _engine(tmp_path, path)
    first.load("linear")
    second, trt2 = _engine(tmp_path, path)
    second.load("linear")
    assert first.plans_built == 1 and second.plans_built == 0 and trt2.log["profiles"] == []
    assert len(list((tmp_path / "plans").glob("*.plan"))) == 1


def test_cache_key_changes_with_options_version_and_model(tmp_path):
    """Plans are not shared across max_batch, TensorRT versions or ONNX contents."""
    path, _ = _linear_onnx(tmp_path / "m.onnx")
    other, _ = _linear_onnx(tmp_path / "other.onnx", seed=1)
    data, data2 = path.read_bytes(), other.read_bytes()
    base, _ = _engine(tmp_path, path)
    bigger, _ = _engine(tmp_path, path, max_batch=16)
    older, _ = _engine(tmp_path, path, version="8.6.2")
    keys = {base.plan_path(data), bigger.plan_path(data), older.plan_path(data), base.plan_path(data2)}
    assert len(keys) == 4


def test_parse_errors_are_reported(tmp_path):
    """An ONNX file TensorRT cannot parse is a DeviceError carrying the parser's messages."""
    path, _ = _linear_onnx(tmp_path / "m.onnx")
    engine, _ = _engine(tmp_path, path, parse_ok=False)
    with pytest.raises(DeviceError, match="unsupported"):
        engine.load("linear")


def test_failed_build_is_reported_and_nothing_is_cached(tmp_path):
    """build_serialized_network returning None is a DeviceError; no plan file is left."""
    path, _ = _linear_onnx(tmp_path / "m.onnx")
    engine, _ = _engine(tmp_path, path, build_ok=False)
    with pytest.raises(DeviceError, match="failed to build"):
        engine.load("linear")
    assert not list((tmp_path / "plans").glob("*"))


def test_missing_onnx_file_is_named(tmp_path):
    """An ONNX path that does not exist is a ConfigError naming it."""
    from jetfleet.errors import ConfigError

    engine, _ = _engine(tmp_path, tmp_path / "nope.onnx")
    with pytest.raises(ConfigError, match="nope.onnx"):
        engine.load("linear")


def test_device_runtime_runs_a_tensorrt_engine(tmp_path):
    """The device runtime drives the TensorRT engine like any other: outputs per frame, measured energy."""
    from device_fakes import LinearDeviceModel

    from actors.device import DeviceRuntime
    from cluster.inventory import DeviceSpec
    from jetfleet.types import Batch, Dispatch, Request

    path, _ = _linear_onnx(tmp_path / "m.onnx")
    engine, _ = _engine(tmp_path, path)
    spec = DeviceSpec(name="gpu0", kind="cuda-gpu", engine="tensorrt")
    rt = DeviceRuntime(spec, engine=engine, device_model=LinearDeviceModel("cuda-gpu"))
    f = rt.available_frequencies_hz()[-1]
    batch = Batch(1, Dispatch("gpu0", (1,), f, "linear"), (Request(1, 0.0, 2, 1.0, model="linear"),), 0.0)
    run = asyncio.run(rt.run_batch(batch, list(_frames(2))))
    assert run.result.ok and len(run.outputs) == 2 and run.result.energy_j > 0


@pytest.mark.gpu
def test_real_tensorrt_agrees_with_torch_on_the_tiny_network(tmp_path):
    """On a GPU: build a plan for the tiny CNN from ONNX, run batches 1 and 5, top-1 matches torch (FP32)."""
    pytest.importorskip("tensorrt")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    from actors.networks import build_network

    engine = TensorRTEngine.from_options({"max_batch": 8, "fp16": False, "plan_cache_dir": str(tmp_path)}, where="test")
    frames = np.random.default_rng(0).standard_normal((5, 3, 64, 64), dtype=np.float32)
    with torch.inference_mode():
        expected = build_network("tiny-cnn")(torch.from_numpy(frames)).numpy().argmax(axis=1)
    for n in (1, 5):
        run = asyncio.run(engine.run("tiny-cnn", frames[:n], n, 0.0))
        assert [o.classes[0] for o in run.outputs] == list(expected[:n])
    assert engine.plans_built == 1


def test_a_repository_plan_for_the_device_kind_is_loaded_without_building(tmp_path, clean_zoo):
    """A model added with `--plan xavier-nx=...` runs on an NX from that plan; another kind builds its own."""
    from costmodel.model_repository import add_model
    from costmodel.model_zoo import use_repository

    path, w = _linear_onnx(tmp_path / "m.onnx")
    builder, _ = _engine(tmp_path, path)
    builder.load("linear")
    (plan,) = (tmp_path / "plans").glob("*.plan")
    add_model(tmp_path / "repo", path, family="linear", accuracy_pct=1, accuracy_metric="x", plans={"xavier-nx": plan})
    use_repository(tmp_path / "repo")
    for kind, built in (("xavier-nx", 0), ("jetson-nano", 1)):
        cuda = FakeCuda()
        trt = fake_trt("10.3.0", cuda)
        engine = TensorRTEngine(
            build=BuildOptions(max_batch=8), cache_dir=tmp_path / kind, trt=trt, cuda=cuda, device_kind=kind
        )
        frames = _frames(2)
        run = asyncio.run(engine.run("linear", frames, 2, 0.0))
        assert engine.plans_built == built, kind
        _assert_same_top5(run.outputs, frames.reshape(2, -1) @ w)
