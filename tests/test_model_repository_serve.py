"""A model nobody registered before, end to end without touching code: added from an ONNX file built here,
profiled on the emulated demo fleet, learned by the LightGBM cost model, served over HTTP (/v1) by the
onnxruntime engine with its named outputs."""

from __future__ import annotations

import base64

import httpx
import numpy as np
import pytest
from typer.testing import CliRunner

from tests.onnx_models import tiny_detector

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def test_a_new_onnx_model_is_profiled_learned_and_served(ray_cluster, tmp_path, clean_zoo, monkeypatch):
    pytest.importorskip("onnxruntime")
    from cluster.inventory import fleet_from_dict
    from costmodel import lgbm
    from costmodel.model_zoo import BUILTIN_MODELS
    from deployments.app import ServiceConfig, deploy
    from jetfleet.cli import app

    assert "tinydet" not in BUILTIN_MODELS
    root, profiles, learned = tmp_path / "models", tmp_path / "tinydet.csv", tmp_path / "costmodel"
    monkeypatch.setenv("JETFLEET_MODEL_REPOSITORY", str(root))
    runner = CliRunner()
    onnx_file = tiny_detector(tmp_path / "tinydet.onnx")
    for args in (
        ["models", "add", str(onnx_file), "--family", "tinydet", "--task", "detection"]
        + ["--accuracy", "12.5", "--metric", "coco-ap50"],
        ["profile", "--fleet", "demo", "--model", "tinydet", "--out", str(profiles), "--local"]
        + ["--batches", "1,2,4,8", "--warmup", "0", "--repetitions", "1"],
        ["costmodel", "train", "--profiles", str(profiles), "--out", str(learned)],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, f"{args[:2]}: {result.output}"

    model = lgbm.load(learned)
    for kind in ("agx-xavier", "xavier-nx", "jetson-nano"):
        grid = model.predict_grid(kind, "tinydet", np.array([1e9]), np.array([1, 4]))
        assert np.isfinite(grid.latency_s).all() and (grid.latency_s > 0).all() and (grid.energy_j > 0).all()

    fleet = fleet_from_dict(
        {
            "name": "repo-test",
            "model_repository": str(root),
            "devices": [
                {
                    "name": "nano0",
                    "kind": "jetson-nano",
                    "engine": "onnxruntime",
                    "models": ["tinydet"],
                    "options": {"threads": 1, "providers": ["CPUExecutionProvider"]},
                }
            ],
        }
    )
    config = ServiceConfig(fleet, policy="transparent", cost=str(learned), app_name="repo-test", route_prefix="/repo")
    svc = deploy(config, http_port=ray_cluster.http_port)
    try:
        frames = np.random.default_rng(0).standard_normal((2, 3, 32, 32), dtype=np.float32)
        body = {
            "model": "tinydet",
            "slo_ms": 20000,
            "tensors": [{"shape": [2, 3, 32, 32], "data": base64.b64encode(frames.tobytes()).decode()}],
        }
        headers = {"Authorization": f"Bearer {svc.token}"}
        with httpx.Client(base_url=svc.url, headers=headers, timeout=60) as client:
            r = client.post("/v1/infer", json=body)
    finally:
        svc.delete()
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["status"] == "completed" and out["device"] == "nano0" and len(out["outputs"]) == 2
    tensors = out["outputs"][0]["tensors"]
    assert tensors["boxes"]["shape"] == [4] and all(0 < v < 1 for v in tensors["boxes"]["data"])
    assert sum(tensors["scores"]["data"]) == pytest.approx(1.0, abs=1e-4)
