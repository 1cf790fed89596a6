"""The model repository: facts from the ONNX graph, model.yaml checks, registration, the onnxruntime engine
and the `jetfleet models` commands."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from costmodel import model_zoo
from costmodel.model_repository import add_model, load_entry
from jetfleet.errors import ConfigError
from tests.onnx_models import CONV_MACS, HEAD_MACS, PARAMS, tiny_detector

pytest.importorskip("onnx")


@pytest.fixture
def repo(tmp_path: Path, clean_zoo) -> Path:
    """A repository holding `tinydet`, a detector nobody registered before."""
    assert "tinydet" not in model_zoo.BUILTIN_MODELS
    onnx_file = tiny_detector(tmp_path / "src" / "tinydet.onnx")
    add_model(
        tmp_path / "models",
        onnx_file,
        family="tinydet",
        task="detection",
        accuracy_pct=12.5,
        accuracy_metric="coco-ap50",
    )
    return tmp_path / "models"


def test_facts_are_counted_from_the_onnx_graph(tmp_path):
    from costmodel.onnx_facts import onnx_facts

    facts = onnx_facts(tiny_detector(tmp_path / "m.onnx"))
    assert facts.gmacs == pytest.approx((CONV_MACS + HEAD_MACS) / 1e9, rel=1e-9)
    assert facts.params_m == pytest.approx(PARAMS / 1e6, rel=1e-9)
    assert (facts.input_name, facts.input_shape, facts.input_datatype) == ("images", (3, 32, 32), "FP32")
    assert facts.output_names == ("boxes", "scores") and facts.input_hw == 32


@pytest.mark.parametrize(("network", "gmacs", "params_m"), [("resnet18", 1.81, 11.7), ("mobilenetv2", 0.30, 3.5)])
def test_facts_of_torchvision_networks_match_their_model_cards(tmp_path, network, gmacs, params_m):
    """torchvision's model cards: ResNet-18 1.81 GFLOPS (MACs), 11.7 M parameters; MobileNetV2 0.30, 3.5."""
    pytest.importorskip("torch")
    from actors import networks
    from costmodel.onnx_facts import onnx_facts

    path = tmp_path / f"{network}.onnx"
    networks.export_onnx(networks.build_network(network), path, hw=224, max_batch=2, opset=17)
    facts = onnx_facts(path)
    assert facts.gmacs == pytest.approx(gmacs, abs=0.006) and facts.params_m == pytest.approx(params_m, abs=0.05)


def test_added_model_round_trips_with_its_facts_and_files(repo):
    entry = load_entry(repo / "tinydet")
    doc = yaml.safe_load((repo / "tinydet" / "model.yaml").read_text())
    assert doc["facts"]["gmacs"] == pytest.approx(entry.info.gmacs) and doc["facts"]["onnx_sha256"]
    assert entry.onnx_path == (repo / "tinydet" / "model.onnx").resolve()
    assert entry.info.task == "detection" and entry.info.outputs == ("boxes", "scores")
    assert entry.info.accuracy_pct == 12.5 and entry.info.accuracy_metric == "coco-ap50"


def test_a_replaced_onnx_file_gets_its_facts_recomputed(repo, tmp_path):
    """Stale facts (the hash no longer matches) are never trusted."""
    import onnx
    from onnx import helper

    path = repo / "tinydet" / "model.onnx"
    model = onnx.load(str(path))
    model.graph.node.append(helper.make_node("Identity", ["scores"], ["scores2"]))
    model.graph.output.append(helper.make_tensor_value_info("scores2", onnx.TensorProto.FLOAT, ["N", 3]))
    onnx.save(model, str(path))
    doc = yaml.safe_load((repo / "tinydet" / "model.yaml").read_text())
    doc["facts"]["gmacs"] = 99.0
    (repo / "tinydet" / "model.yaml").write_text(yaml.safe_dump(doc))
    assert load_entry(repo / "tinydet").info.gmacs == pytest.approx((CONV_MACS + HEAD_MACS) / 1e9)


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        ({"accuracy": {"value": 140, "metric": "coco-ap50"}}, "accuracy.value"),
        ({"plans": {"jetson-tx9": "model.onnx"}}, "plans.jetson-tx9"),
        ({"onnx": "missing.onnx"}, "onnx"),
        ({"onnx": "../../src/tinydet.onnx"}, "onnx"),
        ({"task": "segmentation"}, "task"),
        ({"colour": "red"}, "colour"),
        ({"outputs": ["masks"]}, "outputs"),
        ({"input": {"name": "images", "shape": [3, 64, 64]}}, "input.shape"),
    ],
)
def test_bad_yaml_names_the_file_and_the_field(repo, edit, field):
    path = repo / "tinydet" / "model.yaml"
    doc = yaml.safe_load(path.read_text())
    doc.update(edit)
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError) as e:
        load_entry(repo / "tinydet")
    assert str(path) in str(e.value) and repr(field) in str(e.value)


def test_an_entry_without_onnx_must_state_its_facts(tmp_path):
    d = tmp_path / "m"
    d.mkdir()
    (d / "model.yaml").write_text(
        "family: m\naccuracy: {value: 50, metric: top1}\ninput: {name: x, shape: [3, 8, 8]}\n"
    )
    with pytest.raises(ConfigError, match="'facts'"):
        load_entry(d)


def test_use_repository_makes_the_model_known_and_refuses_to_shadow_a_builtin(repo, tmp_path):
    assert "tinydet" not in model_zoo.MODELS
    assert model_zoo.use_repository(repo) == ["tinydet"]
    assert model_zoo.get_model("tinydet").gmacs == pytest.approx((CONV_MACS + HEAD_MACS) / 1e9)
    clash = tmp_path / "clash"
    add_model(clash, repo / "tinydet" / "model.onnx", family="resnet50", accuracy_pct=1, accuracy_metric="x")
    with pytest.raises(ConfigError, match="already defined by the built-in zoo"):
        model_zoo.use_repository(clash)


def test_the_environment_repository_is_found_on_lookup(repo, monkeypatch):
    monkeypatch.setenv(model_zoo.REPOSITORY_ENV, str(repo))
    assert model_zoo.get_model("tinydet").task == "detection"


def test_builtin_models_are_facts_only_entries():
    entry = model_zoo.model_entry("resnet50")
    assert entry.onnx_path is None and entry.info.sources["all"].startswith("torchvision")


def test_emulated_devices_price_a_repository_model_by_gmacs_from_resnet50(repo):
    from costmodel.device_models import device_model

    model_zoo.use_repository(repo)
    dm = device_model("xavier-nx")
    f = dm.device_kind.max_freq_hz
    ratio = dm.expected_latency_s("tinydet", 4, f) / dm.expected_latency_s("resnet50", 4, f)
    assert ratio == pytest.approx(model_zoo.get_model("tinydet").gmacs / model_zoo.get_model("resnet50").gmacs)


def test_a_fleet_naming_a_repository_registers_it_and_hands_it_to_its_devices(repo, tmp_path):
    from cluster.inventory import load_fleet

    inv = tmp_path / "fleet.yaml"
    inv.write_text(f"model_repository: {repo.name}\ndevices:\n  - {{name: nx0, kind: xavier-nx, models: [tinydet]}}\n")
    fleet = load_fleet(inv)
    assert fleet.model_repository == str(repo.resolve()) == fleet.devices[0].model_repository
    assert "tinydet" in model_zoo.MODELS


def test_onnxruntime_engine_answers_named_tensors_for_a_detector(repo):
    pytest.importorskip("onnxruntime")
    import onnxruntime as ort

    from actors.engines.onnxruntime_engine import OnnxRuntimeEngine

    model_zoo.use_repository(repo)
    engine = OnnxRuntimeEngine(providers=["CPUExecutionProvider"], threads=1)
    frames = np.random.default_rng(1).standard_normal((3, 3, 32, 32), dtype=np.float32)
    run = asyncio.run(engine.run("tinydet", frames, 3, 1e9))
    expected = ort.InferenceSession(str(repo / "tinydet" / "model.onnx")).run(None, {"images": frames})
    assert len(run.outputs) == 3
    for i, out in enumerate(run.outputs):
        tensors = {t.name: t.data for t in out.tensors}
        assert set(tensors) == {"boxes", "scores"} and out.classes == ()
        np.testing.assert_allclose(tensors["boxes"], expected[0][i], rtol=1e-5)
        assert tensors["scores"].sum() == pytest.approx(1.0, abs=1e-5)


def test_onnxruntime_engine_refuses_a_builtin_model_without_a_file():
    pytest.importorskip("onnxruntime")
    from actors.engines.onnxruntime_engine import OnnxRuntimeEngine

    with pytest.raises(ConfigError, match="no ONNX file"):
        OnnxRuntimeEngine(providers=["CPUExecutionProvider"]).load("resnet50")


def test_named_tensors_become_json_and_classifiers_keep_top5():
    from actors.engines.base import FrameOutput, NamedTensor
    from deployments.payload import frame_out

    detector = FrameOutput((), (), "d", (NamedTensor("boxes", np.arange(4, dtype=np.float32).reshape(1, 4)),))
    assert frame_out(detector) == {"tensors": {"boxes": {"shape": [1, 4], "datatype": "FP32", "data": [0, 1, 2, 3]}}}
    assert frame_out(FrameOutput((3, 1), (0.7, 0.2), "c")) == {"classes": [3, 1], "scores": [0.7, 0.2]}


def test_models_cli_add_list_show(tmp_path, clean_zoo):
    from typer.testing import CliRunner

    from jetfleet.cli import app

    onnx_file = tiny_detector(tmp_path / "tinydet.onnx")
    root = tmp_path / "models"
    runner = CliRunner()
    added = runner.invoke(
        app,
        [
            "models",
            "add",
            str(onnx_file),
            "--family",
            "tinydet",
            "--task",
            "detection",
            "--accuracy",
            "12.5",
            "--metric",
            "coco-ap50",
            "--repository",
            str(root),
        ],
    )
    assert added.exit_code == 0, added.output
    listed = runner.invoke(app, ["models", "list", "--json", "--repository", str(root)])
    names = {row["name"]: row for row in json.loads(listed.output)}
    assert names["tinydet"]["files"] == "onnx" and "resnet50" in names
    shown = json.loads(runner.invoke(app, ["models", "show", "tinydet", "--repository", str(root)]).output)
    assert shown["outputs"] == ["boxes", "scores"] and shown["input"]["shape"] == [3, 32, 32]


def test_a_fleet_naming_a_missing_repository_names_the_inventory_and_the_folder(tmp_path):
    from cluster.inventory import load_fleet

    inv = tmp_path / "fleet.yaml"
    inv.write_text("model_repository: nope\ndevices:\n  - {name: c0, kind: cpu}\n")
    with pytest.raises(ConfigError, match=f"{inv}: {tmp_path / 'nope'}: no such model repository"):
        load_fleet(inv)
