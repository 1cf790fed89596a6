"""The HTTP body parser and frame decoder without Ray: every bad input has its status and a reason."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest

from actors.messages import InferAnswer
from deployments.payload import PayloadError, answer_body, decode_frames, decode_image, http_status, parse_request
from workloads.loadgen import request_body, synthetic_jpeg

MODELS = ["inceptionv3", "resnet18"]


def _png(size=(40, 60)) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((*size, 3), 128, np.uint8)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _status(raw: bytes | dict) -> int:
    data = raw if isinstance(raw, bytes) else json.dumps(raw).encode()
    with pytest.raises(PayloadError) as e:
        body = parse_request(data, MODELS, max_frames=8)
        decode_frames(body, 224)
    return e.value.status


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"{not json", 400),
        (b"[1, 2]", 422),
        ({"slo_ms": 0, "frames": 1}, 422),
        ({"slo_ms": float("inf"), "frames": 1}, 422),  # "Infinity" parses, but the budget must be finite
        ({"slo_ms": 10, "frames": 1, "model": "vgg"}, 404),
        ({"slo_ms": 10}, 422),
        ({"slo_ms": 10, "frames": 1, "images": [_png()]}, 422),
        ({"slo_ms": 10, "frames": 9}, 422),
        ({"slo_ms": 10, "images": ["not-base64!"]}, 400),
        ({"slo_ms": 10, "images": [base64.b64encode(b"GIF89a....").decode()]}, 400),
        ({"slo_ms": 10, "tensors": [{"shape": [3, 8, 8], "dtype": "float64", "data": ""}]}, 422),
        ({"slo_ms": 10, "tensors": [{"shape": [1, 8, 8], "data": ""}]}, 422),
        ({"slo_ms": 10, "tensors": [{"shape": [3, 8, 8], "data": "AAAA"}]}, 400),
    ],
)
def test_bad_bodies_raise_with_their_http_status(raw, status):
    assert _status(raw) == status


def test_images_become_normalised_model_sized_frames():
    body = parse_request(json.dumps({"slo_ms": 50, "images": [_png(), synthetic_jpeg(32)]}).encode(), MODELS, 8)
    frames = decode_frames(body, 299)
    assert frames.shape == (2, 3, 299, 299) and frames.dtype == np.float32
    assert abs(float(frames[0].mean())) < 3  # ImageNet-normalised, not 0-255


def test_non_finite_tensors_are_refused():
    x = np.full((3, 8, 8), np.nan, np.float32)
    t = {"shape": [3, 8, 8], "data": base64.b64encode(x.tobytes()).decode()}
    body = parse_request(json.dumps({"slo_ms": 5, "tensors": [t]}).encode(), MODELS, 8)
    with pytest.raises(PayloadError, match="NaN"):
        decode_frames(body, 224)


def test_decode_image_refuses_a_truncated_png():
    data = base64.b64decode(_png())[:40]
    with pytest.raises(PayloadError, match="cannot decode"):
        decode_image(base64.b64encode(data).decode(), 224)


def test_loadgen_compresses_the_slo_with_time():
    from jetfleet.types import Request

    body = request_body(Request(0, 1.0, 3, 4.0, stream="camera1"), time_scale=20)
    assert body == {"model": "inceptionv3", "slo_ms": 200.0, "priority": 0, "stream": "camera1", "frames": 3}


def test_refused_requests_are_429_with_retry_after_and_drops_503():
    assert http_status(InferAnswer(1, "completed")) == (200, {})
    assert http_status(InferAnswer(1, "rejected", "queue_full", retry_after_s=2.2)) == (429, {"Retry-After": "3"})
    assert http_status(InferAnswer(1, "dropped", "deadline_unreachable")) == (503, {})
    body = answer_body(InferAnswer(1, "dropped", "shed", detail="protects camera0"), 2, 1.5)
    assert body["reason"] == "shed" and body["detail"] == "protects camera0" and body["outputs"] == []


def test_payload_error_is_in_the_project_tree():
    """A refused body is an InvalidRequestError (and a ValueError) that carries its HTTP status."""
    from jetfleet.errors import InvalidRequestError, JetfleetError

    e = PayloadError(422, "bad")
    assert isinstance(e, InvalidRequestError) and isinstance(e, JetfleetError) and isinstance(e, ValueError)
    assert e.status == 422
