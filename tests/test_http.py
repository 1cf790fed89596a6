"""The HTTP API end to end on the shared Ray cluster: real PNG/JPEG bytes through the torch engine, and
every kind of bad input answered with a 4xx and a JSON reason (never a 500, never a hang)."""

from __future__ import annotations

import base64
import io

import httpx
import numpy as np
import pytest

pytestmark = [pytest.mark.ray, pytest.mark.slow]

MAX_BODY = 1 * 2**20


def _image(fmt: str, seed: int = 0, size: tuple[int, int] = (96, 160)) -> str:
    from PIL import Image

    rng = np.random.default_rng(seed)
    pixels = (rng.random((*size, 3)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt)
    return base64.b64encode(buf.getvalue()).decode()


@pytest.fixture(scope="module")
def service(ray_cluster):
    """A one-device fleet (nano0, torch engine running MobileNetV2 on the CPU) behind the HTTP API."""
    from cluster.inventory import fleet_from_dict
    from deployments.app import ServiceConfig, deploy

    fleet = fleet_from_dict(
        {
            "name": "http-test",
            "devices": [
                {
                    "name": "nano0",
                    "kind": "jetson-nano",
                    "engine": "torch",
                    "models": ["mobilenetv2"],
                    "options": {"threads": 1},
                }
            ],
        }
    )
    config = ServiceConfig(
        fleet, policy="transparent", cost="oracle", app_name="http-test", route_prefix="/http", max_body_bytes=MAX_BODY
    )
    svc = deploy(config, http_port=ray_cluster.http_port)
    yield svc
    svc.delete()


@pytest.fixture(scope="module")
def client(service):
    headers = {"Authorization": f"Bearer {service.token}"}
    with httpx.Client(base_url=service.url, headers=headers, timeout=60) as c:
        yield c


def test_png_and_jpeg_frames_get_per_frame_outputs_timing_device_and_energy(client):
    body = {"model": "mobilenetv2", "slo_ms": 20000, "stream": "cam0", "images": [_image("PNG"), _image("JPEG", 1)]}
    r = client.post("/v1/infer", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["status"] == "completed" and out["device"] == "nano0" and out["frames"] == 2
    assert len(out["outputs"]) == 2 and all(len(o["classes"]) == 5 for o in out["outputs"])
    assert out["outputs"][0]["classes"] != out["outputs"][1]["classes"] or out["outputs"][0] != out["outputs"][1]
    assert out["freq_mhz"] > 0 and out["energy_j"] > 0
    assert set(out["timing_ms"]) == {"queued", "inference", "total", "e2e"} and out["timing_ms"]["inference"] > 0


def test_the_same_image_gets_the_same_answer(client):
    """Real inference: outputs are a function of the pixels (same image twice, same top-5)."""
    body = {"model": "mobilenetv2", "slo_ms": 20000, "images": [_image("PNG", 7)]}
    a, b = client.post("/v1/infer", json=body).json(), client.post("/v1/infer", json=body).json()
    assert a["outputs"] == b["outputs"]


def test_raw_tensor_frames_are_accepted(client):
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
    tensor = {"shape": list(x.shape), "dtype": "float32", "data": base64.b64encode(x.tobytes()).decode()}
    r = client.post("/v1/infer", json={"model": "mobilenetv2", "slo_ms": 20000, "tensors": [tensor]})
    assert r.status_code == 200, r.text
    assert len(r.json()["outputs"]) == 2


BAD_INPUTS = [
    ("malformed JSON", b'{"slo_ms": 10, "frames": ', 400, "malformed JSON"),
    ("undecodable image", {"model": "mobilenetv2", "slo_ms": 100, "images": ["aGVsbG8gd29ybGQ="]}, 400, "decode"),
    ("not base64", {"model": "mobilenetv2", "slo_ms": 100, "images": ["%%%"]}, 400, "base64"),
    ("unknown model", {"model": "inceptionv3", "slo_ms": 100, "frames": 1}, 404, "unknown model"),
    ("slo_ms <= 0", {"model": "mobilenetv2", "slo_ms": 0, "frames": 1}, 422, "slo_ms"),
    ("negative slo_ms", {"model": "mobilenetv2", "slo_ms": -5, "frames": 1}, 422, "slo_ms"),
    ("no frames", {"model": "mobilenetv2", "slo_ms": 100}, 422, "exactly one"),
    (
        "tensor size",
        {"model": "mobilenetv2", "slo_ms": 100, "tensors": [{"shape": [3, 8, 8], "data": "AAAA"}]},
        400,
        "bytes",
    ),
    ("unknown field", {"model": "mobilenetv2", "slo_ms": 100, "frames": 1, "colour": 1}, 422, "colour"),
]


@pytest.mark.parametrize(("case", "body", "status", "words"), BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_gets_a_4xx_with_a_json_reason(client, case, body, status, words):
    kw = (
        {"content": body, "headers": {"Content-Type": "application/json"}}
        if isinstance(body, bytes)
        else {"json": body}
    )
    r = client.post("/v1/infer", **kw)
    assert r.status_code == status, r.text
    assert words in r.json()["error"]


def test_oversized_payload_is_413(client):
    big = {"model": "mobilenetv2", "slo_ms": 100, "images": ["A" * (MAX_BODY + 10)]}
    r = client.post("/v1/infer", json=big)
    assert r.status_code == 413 and "limit" in r.json()["error"]


def test_token_is_required_and_checked(service):
    with httpx.Client(base_url=service.url, timeout=30) as anon:
        assert anon.post("/v1/infer", json={"slo_ms": 10, "frames": 1}).status_code == 401
        bad = anon.get("/v1/stats", headers={"Authorization": "Bearer nope"})
        assert bad.status_code == 403 and "token" in bad.json()["error"]
        assert anon.get("/healthz").json()["status"] == "ok"
        assert "/v1/infer" in anon.get("/openapi.json").json()["paths"]


def test_fleet_and_stats_views(client):
    fleet = client.get("/v1/fleet").json()
    (device,) = fleet["devices"]
    assert device["name"] == "nano0" and device["state"] == "healthy" and device["freq_mhz"] > 0
    stats = client.get("/v1/stats").json()
    assert stats["completed"] >= 1 and "dropped_by_reason" in stats and stats["open"] == 0
    assert stats["metrics"] == "RayMetrics"  # queue length, decisions, clocks, power, SLO misses -> Prometheus


def test_a_full_bounded_queue_answers_429_with_retry_after(ray_cluster, tmp_path):
    """Under overload control with a stream queue of 2 (drop_newest), a burst gets some 429s with Retry-After
    and the reason, at once; `/v1/stats` counts them by reason. Every request gets one answer."""
    import asyncio

    from cluster.inventory import fleet_from_dict
    from deployments.app import ServiceConfig, deploy

    streams = tmp_path / "streams.yaml"
    streams.write_text("streams:\n  - {name: cam, priority: 10, queue_limit: 2, drop_policy: drop_newest}\n")
    fleet = fleet_from_dict({"name": "overload-http", "devices": [{"name": "agx0", "kind": "agx-xavier"}]})
    config = ServiceConfig(
        fleet, "transparent", cost="oracle", app_name="http-429", route_prefix="/h429", streams=str(streams)
    )
    svc = deploy(config, http_port=ray_cluster.http_port)
    try:

        async def burst() -> list[httpx.Response]:
            headers = {"Authorization": f"Bearer {svc.token}"}
            body = {"model": "inceptionv3", "slo_ms": 60_000, "frames": 16, "stream": "cam", "priority": 10}
            async with httpx.AsyncClient(base_url=svc.url, headers=headers, timeout=120) as c:
                return await asyncio.gather(*(c.post("/v1/infer", json=body) for _ in range(30)))

        responses = asyncio.run(burst())
        codes = [r.status_code for r in responses]
        assert set(codes) <= {200, 429} and codes.count(429) >= 1 and codes.count(200) >= 1, codes
        refused = next(r for r in responses if r.status_code == 429)
        assert int(refused.headers["Retry-After"]) >= 1
        assert refused.json()["status"] == 429 and refused.json()["reason"] == "queue_full"
        stats = httpx.get(f"{svc.url}/v1/stats", headers={"Authorization": f"Bearer {svc.token}"}).json()
        assert stats["dropped_by_reason"]["queue_full"] == codes.count(429) and stats["submitted"] == 30
    finally:
        svc.delete()
