"""Engines: the emulated engine's modelled time and pseudo-outputs; the torch engine's real inference."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from device_fakes import LinearDeviceModel

from actors.engines.base import topk_outputs
from actors.engines.emulated import EmulatedEngine
from jetfleet.catalogue import get_kind
from jetfleet.errors import ConfigError, DeviceError, UnknownNameError

torch = pytest.importorskip("torch")

NANO = get_kind("jetson-nano")


def test_topk_outputs_are_sorted_probabilities():
    """topk_outputs gives the k most likely classes with softmax scores, best first."""
    logits = np.array([[0.0, 3.0, 1.0, 2.0], [5.0, 0.0, 0.0, 0.0]])
    out = topk_outputs(logits, "m", k=3)
    assert out[0].classes == (1, 3, 2) and out[1].classes[0] == 0
    probs = np.exp(logits[0]) / np.exp(logits[0]).sum()
    assert out[0].scores == pytest.approx(tuple(probs[[1, 3, 2]]))


def test_emulated_engine_reports_the_device_model_and_does_not_depend_on_speed():
    """Modelled latency/energy come from the device model, whatever the speed factor."""
    dm = LinearDeviceModel("jetson-nano")
    slow, fast = EmulatedEngine(dm, speed_factor=1e3), EmulatedEngine(dm, speed_factor=1e6)
    f = NANO.freqs_hz[3]
    a = asyncio.run(slow.run("resnet18", None, 4, f))
    b = asyncio.run(fast.run("resnet18", None, 4, f))
    assert a.modelled_latency_s == pytest.approx(dm.latency_s("resnet18", 4, f)) == b.modelled_latency_s
    assert a.modelled_energy_j == pytest.approx(dm.energy_j("resnet18", 4, f))
    assert a.outputs == b.outputs and len(a.outputs) == 4


def test_emulated_engine_rejects_a_non_positive_speed_factor():
    """speed_factor must be > 0."""
    with pytest.raises(ConfigError, match="speed_factor"):
        EmulatedEngine(LinearDeviceModel("jetson-nano"), speed_factor=0)


def _torch_engine(**kw):
    from actors.engines.torch_engine import TorchEngine

    return TorchEngine(**kw)


def test_torch_engine_gives_the_networks_own_predictions():
    """The torch engine's top-5 equals the tiny network's own top-5 on the same frames."""
    from actors.networks import build_network

    engine = _torch_engine()
    frames = np.random.default_rng(1).standard_normal((3, 3, 64, 64), dtype=np.float32)
    run = asyncio.run(engine.run("tiny-cnn", frames, 3, 0.0))
    with torch.inference_mode():
        logits = build_network("tiny-cnn")(torch.from_numpy(frames)).numpy()
    assert [o.classes for o in run.outputs] == [tuple(np.argsort(-row)[:5]) for row in logits]
    assert all(0 < sum(o.scores) <= 1.0 + 1e-9 for o in run.outputs)
    assert np.isnan(run.modelled_energy_j)


def test_torch_engine_makes_synthetic_frames_of_the_network_input_size():
    """With no frames, the engine feeds deterministic frames of the network's input size."""
    engine = _torch_engine()
    a = asyncio.run(engine.run("tiny-cnn", None, 2, 0.0))
    b = asyncio.run(engine.run("tiny-cnn", None, 2, 0.0))
    assert engine.input_hw("tiny-cnn") == 64 and a.outputs == b.outputs


def test_model_map_serves_a_model_with_another_network():
    """model_map lets a device answer requests for a zoo model with a network it has; frames keep the
    zoo model's input size (224 px), which the stand-in network takes as well."""
    engine = _torch_engine(model_map={"mobilenetv2": "tiny-cnn"})
    run = asyncio.run(engine.run("mobilenetv2", None, 1, 0.0))
    assert run.outputs[0].model == "mobilenetv2" and engine.input_hw("mobilenetv2") == 224


def test_unknown_network_is_named():
    """A model with no network raises UnknownNameError listing the known networks."""
    with pytest.raises(UnknownNameError, match="tiny-cnn"):
        asyncio.run(_torch_engine().run("inceptionv3", None, 1, 0.0))


def test_given_weights_change_the_predictions(tmp_path):
    """A state_dict file is loaded instead of random weights."""
    from actors.networks import build_network

    other = build_network("tiny-cnn", seed=7)
    path = tmp_path / "tiny.pth"
    torch.save(other.state_dict(), path)
    frames = np.random.default_rng(2).standard_normal((2, 3, 64, 64), dtype=np.float32)
    loaded = asyncio.run(_torch_engine(weights={"tiny-cnn": path}).run("tiny-cnn", frames, 2, 0.0))
    with torch.inference_mode():
        expected = topk_outputs(other(torch.from_numpy(frames)).numpy(), "tiny-cnn")
    assert [o.classes for o in loaded.outputs] == [o.classes for o in expected]


def test_weights_that_do_not_fit_name_the_file(tmp_path):
    """A state_dict of another network is a ConfigError naming the file."""
    from actors.networks import build_network

    path = tmp_path / "wrong.pth"
    torch.save(build_network("tiny-cnn", num_classes=10).state_dict(), path)
    with pytest.raises(ConfigError, match="wrong.pth"):
        _torch_engine(default_weights=path).load("tiny-cnn")


def test_frames_of_the_wrong_shape_fail_as_a_device_error():
    """Frames the network cannot take fail the batch with a DeviceError."""
    with pytest.raises(DeviceError, match="tiny-cnn"):
        asyncio.run(_torch_engine().run("tiny-cnn", np.zeros((1, 5, 8, 8), np.float32), 1, 0.0))


def test_networks_have_the_reference_parameter_counts():
    """ResNet-18 and MobileNetV2 match torchvision's parameter counts (11.69 M, 3.50 M)."""
    from actors.networks import build_network

    counts = {n: sum(p.numel() for p in build_network(n).parameters()) for n in ("resnet18", "mobilenetv2")}
    assert counts == {"resnet18": 11_689_512, "mobilenetv2": 3_504_872}


def test_image_to_chw_normalises_a_pil_image():
    """A PIL image becomes a float32 (3, hw, hw) ImageNet-normalised array."""
    from PIL import Image

    from actors.networks import IMAGENET_MEAN, IMAGENET_STD, image_to_chw

    arr = image_to_chw(Image.new("RGB", (80, 50), (255, 0, 0)), 32)
    assert arr.shape == (3, 32, 32) and arr.dtype == np.float32
    assert arr[0, 0, 0] == pytest.approx((1 - IMAGENET_MEAN[0]) / IMAGENET_STD[0], rel=1e-5)


@pytest.mark.slow
def test_onnx_export_has_a_dynamic_batch_and_runs_in_onnxruntime(tmp_path):
    """export_onnx writes a dynamic-batch model; onnxruntime through the torch engine agrees with torch."""
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from actors.networks import build_network, export_onnx

    path = export_onnx(build_network("tiny-cnn"), tmp_path / "tiny.onnx", hw=64)
    dims = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [3, 64, 64]
    frames = np.random.default_rng(3).standard_normal((5, 3, 64, 64), dtype=np.float32)
    via_onnx = asyncio.run(_torch_engine(onnx={"tiny-cnn": path}).run("tiny-cnn", frames, 5, 0.0))
    via_torch = asyncio.run(_torch_engine().run("tiny-cnn", frames, 5, 0.0))
    assert [o.classes for o in via_onnx.outputs] == [o.classes for o in via_torch.outputs]


def test_a_model_variant_runs_on_its_base_network_at_its_own_input_size():
    """A variant (e.g. MobileNetV2 at 96 px) runs on its base's network, fed frames of the variant's size."""
    pytest.importorskip("costmodel.variants")
    engine = _torch_engine(model_map={"mobilenetv2": "tiny-cnn"})
    assert engine.network_of("mobilenetv2-1.0-96") == "tiny-cnn" and engine.input_hw("mobilenetv2-1.0-96") == 96
    run = asyncio.run(engine.run("mobilenetv2-1.0-96", None, 2, 0.0))
    assert len(run.outputs) == 2 and run.outputs[0].model == "mobilenetv2-1.0-96"
