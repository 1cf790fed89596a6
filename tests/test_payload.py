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


# -- strict types and the one-of rule (issue 12, finding 8) -------------------------------------------------
@pytest.mark.parametrize(
    "raw",
    [
        {"slo_ms": "500", "frames": 1},
        {"slo_ms": 500, "frames": 1, "priority": True},
        {"slo_ms": 500, "frames": 2.0},
        {"slo_ms": True, "frames": 1},
        {"slo_ms": 500, "frames": 1, "stream": 7},
        {"slo_ms": 500, "tensors": [{"shape": [3.0, 8, 8], "data": ""}]},
    ],
)
def test_loosely_typed_fields_are_refused_with_422(raw):
    assert _status(raw) == 422


def test_an_integer_slo_is_still_a_number():
    assert parse_request(b'{"slo_ms": 500, "frames": 1}', MODELS, 8).slo_ms == pytest.approx(500.0)


def test_an_explicit_null_frame_source_is_refused():
    with pytest.raises(PayloadError, match="must not be null") as e:
        parse_request(b'{"slo_ms": 500, "frames": 1, "images": null}', MODELS, 8)
    assert e.value.status == 422


def test_the_json_schema_states_the_one_of_rule_and_no_null_sources():
    from deployments.payload import InferRequest

    schema = InferRequest.model_json_schema()
    assert schema["oneOf"] == [{"required": ["images"]}, {"required": ["tensors"]}, {"required": ["frames"]}]
    assert schema["properties"]["frames"]["type"] == "integer"


# -- the pixel budget (issue 12, findings 2 and 3) -----------------------------------------------------------
def _png_declaring(width: int, height: int) -> str:
    """A tiny (~60 B) PNG whose header declares width x height pixels and whose data is almost empty."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    data = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")
    return base64.b64encode(b"\x89PNG\r\n\x1a\n" + data).decode()


def _decode_status(images: list[str], budget=None) -> tuple[int, str]:
    from deployments.payload import decode_images

    with pytest.raises(PayloadError) as e:
        decode_images(images, 224, budget)
    return e.value.status, str(e.value)


def test_a_thin_image_is_refused_before_it_is_scaled_up():
    """3000x1 would be resized to 768000x256 (196 Mpixel) by the preset: 413 before any resize."""
    status, message = _decode_status([_png((1, 3000))])
    assert status == 413 and "resized size" in message


def test_a_40_megapixel_wide_line_is_a_413_not_an_overflow():
    """Pillow raised OverflowError for this one (a plain-text 500)."""
    status, _ = _decode_status([_png_declaring(40_000_000, 1)])
    assert status == 413


def test_small_pngs_declaring_huge_sizes_exceed_the_request_budget_before_decoding(monkeypatch):
    from PIL import Image

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded an image of a request over its budget")

    monkeypatch.setattr(Image.Image, "convert", no_decoding)
    status, message = _decode_status([_png_declaring(6000, 6000)] * 256)
    assert status == 413 and "request limit" in message


def test_the_per_image_budget_counts_declared_pixels():
    from deployments.payload import PixelBudget

    status, message = _decode_status([_png((100, 100))], PixelBudget(per_image_px=5_000))
    assert status == 413 and "declared size" in message


def test_a_budget_that_fits_decodes():
    from deployments.payload import PixelBudget, decode_images

    frames = decode_images([_png((40, 60))] * 3, 32, PixelBudget(per_image_px=10_000, per_request_px=20_000))
    assert frames.shape == (3, 3, 32, 32)


@pytest.mark.parametrize(
    "data",
    [b"\x89PNG\r\n\x1a\n" + b"\0" * 40, b"\xff\xd8\xff\xe0" + b"\0" * 30, b"hello world"],
    ids=["broken PNG header", "broken JPEG", "not an image"],
)
def test_decoder_errors_are_400_without_internals(data):
    status, message = _decode_status([base64.b64encode(data).decode()])
    assert status == 400 and "cannot decode" in message
    assert "0x" not in message and "BytesIO" not in message and "Traceback" not in message


# -- reading the body (issue 12, finding 8) ------------------------------------------------------------------
async def _chunks(parts, pause_s=0.0):
    import asyncio

    for part in parts:
        yield part
        await asyncio.sleep(pause_s)
    await asyncio.sleep(3600)  # a client that promised more and sends nothing


def _read(parts, declared=None, **kw) -> bytes:
    import asyncio

    from deployments.payload import read_body

    return asyncio.run(read_body(_chunks(parts), declared, 1000, **kw))


def test_a_body_that_stops_arriving_is_a_408():
    with pytest.raises(PayloadError, match="limit") as e:
        _read([b'{"slo_ms": 5'], "10000000", idle_timeout_s=0.05)
    assert e.value.status == 413  # a 10 MB promise over a 1000-byte limit is refused before waiting
    with pytest.raises(PayloadError, match="did not arrive") as e:
        _read([b'{"slo_ms": 5'], "900", idle_timeout_s=0.05)
    assert e.value.status == 408


def test_a_trickling_body_is_cut_by_the_total_timeout():
    import asyncio

    from deployments.payload import read_body

    async def trickle():
        while True:
            yield b" "
            await asyncio.sleep(0.01)

    with pytest.raises(PayloadError) as e:
        asyncio.run(read_body(trickle(), None, 10**6, idle_timeout_s=1.0, total_timeout_s=0.1))
    assert e.value.status == 408


def test_a_whole_body_is_read():
    import asyncio

    from deployments.payload import read_body

    async def whole():
        yield b'{"a":'
        yield b" 1}"

    assert asyncio.run(read_body(whole(), "8", 1000)) == b'{"a": 1}'
    with pytest.raises(PayloadError) as e:
        asyncio.run(read_body(whole(), None, 4))
    assert e.value.status == 413
