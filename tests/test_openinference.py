"""The Open Inference Protocol (KServe v2) end to end, spoken by the real client (`tritonclient[http]`):
readiness, model metadata, an infer built from that metadata, named output tensors, and errors."""

from __future__ import annotations

import asyncio
import base64
import io

import httpx
import numpy as np
import pytest

pytestmark = [pytest.mark.ray, pytest.mark.slow]
httpclient = pytest.importorskip("tritonclient.http")
from tritonclient.utils import InferenceServerException  # noqa: E402

MODEL = "mobilenetv2"


def _jpeg(seed: int) -> bytes:
    from PIL import Image

    pixels = (np.random.default_rng(seed).random((120, 90, 3)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def service(ray_cluster):
    """One emulated Jetson Nano serving MobileNetV2 behind the HTTP API (prefix /oip)."""
    from cluster.inventory import fleet_from_dict
    from deployments.app import ServiceConfig, deploy

    fleet = fleet_from_dict({"name": "oip", "devices": [{"name": "nano0", "kind": "jetson-nano", "models": [MODEL]}]})
    config = ServiceConfig(fleet, policy="transparent", cost="oracle", app_name="oip-test", route_prefix="/oip")
    svc = deploy(config, http_port=ray_cluster.http_port)
    yield svc
    svc.delete()


@pytest.fixture(scope="module")
def triton(service):
    url = service.url.removeprefix("http://")
    with httpclient.InferenceServerClient(url=url, network_timeout=60) as client:
        yield client


@pytest.fixture
def auth(service) -> dict[str, str]:
    """A fresh dict per test: tritonclient writes its Inference-Header-Content-Length into the caller's headers."""
    return {"Authorization": f"Bearer {service.token}"}


def test_server_and_model_readiness(triton, auth):
    assert triton.is_server_live() and triton.is_server_ready()  # health probes need no token
    assert triton.is_model_ready(MODEL, headers=auth)
    assert not triton.is_model_ready("no-such-model", headers=auth)
    assert triton.get_server_metadata(headers=auth)["name"] == "jetfleet"


def test_model_metadata_names_typed_inputs_and_outputs(triton, auth):
    meta = triton.get_model_metadata(MODEL, headers=auth)
    assert meta["name"] == MODEL and meta["versions"] == ["1"]
    inputs = {t["name"]: t for t in meta["inputs"]}
    assert inputs["input"] == {"name": "input", "datatype": "FP32", "shape": [-1, 3, 224, 224]}
    assert inputs["image"]["datatype"] == "BYTES"
    assert [(t["name"], t["datatype"], t["shape"]) for t in meta["outputs"]] == [
        ("classes", "INT64", [-1, 5]),
        ("scores", "FP32", [-1, 5]),
    ]


def test_an_infer_built_from_the_metadata_returns_named_tensors(triton, auth):
    meta = triton.get_model_metadata(MODEL, headers=auth)
    spec = next(t for t in meta["inputs"] if t["datatype"] == "FP32")
    shape = [3 if s == -1 else s for s in spec["shape"]]
    frames = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    tensor = httpclient.InferInput(spec["name"], shape, spec["datatype"])
    tensor.set_data_from_numpy(frames)  # Triton's binary tensor data extension, the client's default
    result = triton.infer(MODEL, [tensor], headers=auth, parameters={"slo_ms": 30_000, "stream": "cam7"})
    classes, scores = result.as_numpy("classes"), result.as_numpy("scores")
    assert classes.shape == (3, 5) and classes.dtype == np.int64
    assert scores.shape == (3, 5) and np.all(np.diff(scores, axis=1) <= 1e-6)  # most likely first
    params = result.get_response()["parameters"]
    assert params["device"] == "nano0" and params["energy_j"] > 0 and params["within_slo"] is True


@pytest.mark.parametrize("binary", [True, False])
def test_encoded_images_travel_as_bytes_tensors(triton, auth, binary):
    """BYTES: raw JPEG bytes as binary data, or base64 strings inside the JSON; one requested output."""
    images = [_jpeg(1), _jpeg(2)]
    data = np.array(images if binary else [base64.b64encode(b).decode() for b in images], dtype=np.object_)
    tensor = httpclient.InferInput("image", [2], "BYTES")
    tensor.set_data_from_numpy(data, binary_data=binary)
    wanted = [httpclient.InferRequestedOutput("classes", binary_data=False)]
    result = triton.infer(MODEL, [tensor], outputs=wanted, headers=auth, parameters={"slo_ms": 30_000})
    assert result.as_numpy("classes").shape == (2, 5) and result.as_numpy("scores") is None


@pytest.mark.parametrize(
    ("name", "datatype", "words"),
    [("frames", "FP32", "no input 'frames'"), ("input", "FP64", "datatype FP64")],
)
def test_a_bad_tensor_is_a_400_with_an_error_message(triton, auth, name, datatype, words):
    tensor = httpclient.InferInput(name, [1, 3, 224, 224], datatype)
    tensor.set_data_from_numpy(np.zeros((1, 3, 224, 224), np.float64 if datatype == "FP64" else np.float32))
    with pytest.raises(InferenceServerException) as e:
        triton.infer(MODEL, [tensor], headers=auth)
    assert e.value.status() == "400" and words in e.value.message()


def test_the_token_is_required(triton, service):
    with pytest.raises(InferenceServerException) as e:
        triton.get_model_metadata(MODEL)
    assert e.value.status() == "401"
    r = httpx.post(f"{service.url}/v2/models/{MODEL}/infer", json={}, headers={"Authorization": "Bearer nope"})
    assert r.status_code == 403 and "token" in r.json()["error"]


def test_malformed_json_and_unknown_models_are_4xx_json(service, auth):
    with httpx.Client(base_url=service.url, headers=auth, timeout=30) as c:
        bad = c.post(f"/v2/models/{MODEL}/infer", content=b"{not json")
        assert bad.status_code == 400 and "malformed JSON" in bad.json()["error"]
        missing = c.get("/v2/models/resnet999")
        assert missing.status_code == 404 and "resnet999" in missing.json()["error"]


def test_a_full_bounded_queue_answers_429_with_retry_after(ray_cluster, tmp_path):
    """The same admission as /v1: a burst into a stream queue of 2 gets 429s with Retry-After."""
    from cluster.inventory import fleet_from_dict
    from deployments.app import ServiceConfig, deploy

    streams = tmp_path / "streams.yaml"
    streams.write_text("streams:\n  - {name: cam, priority: 10, queue_limit: 2, drop_policy: drop_newest}\n")
    fleet = fleet_from_dict({"name": "oip-429", "devices": [{"name": "agx0", "kind": "agx-xavier"}]})
    config = ServiceConfig(
        fleet, "transparent", cost="oracle", app_name="oip-429", route_prefix="/oip429", streams=str(streams)
    )
    svc = deploy(config, http_port=ray_cluster.http_port)
    frames = [0.0] * (16 * 3 * 8 * 8)  # the emulated engine does not look at pixels: small frames keep it quick
    body = {
        "parameters": {"slo_ms": 60_000, "stream": "cam", "priority": 10},
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [16, 3, 8, 8], "data": frames}],
    }
    try:

        async def burst() -> list[httpx.Response]:
            headers = {"Authorization": f"Bearer {svc.token}"}
            async with httpx.AsyncClient(base_url=svc.url, headers=headers, timeout=120) as c:
                url = "/v2/models/inceptionv3/infer"
                return await asyncio.gather(*(c.post(url, json=body) for _ in range(30)))

        responses = asyncio.run(burst())
        codes = [r.status_code for r in responses]
        assert set(codes) <= {200, 429} and codes.count(429) >= 1 and codes.count(200) >= 1, codes
        refused = next(r for r in responses if r.status_code == 429)
        assert int(refused.headers["Retry-After"]) >= 1 and "queue_full" in refused.json()["error"]
    finally:
        svc.delete()
