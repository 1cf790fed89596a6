"""The Open Inference Protocol's request codec without a cluster: binary tensor data, BYTES framing, limits."""

from __future__ import annotations

import json
import struct
import zlib

import numpy as np
import pytest

from deployments.model_metadata import model_signature
from deployments.v2_tensors import DEFAULT_SLO_MS, decompress, parse_infer
from jetfleet.errors import PayloadError

SIG = model_signature("resnet18")


def _binary_body(tensor: dict, payload: bytes) -> tuple[bytes, str]:
    header = json.dumps({"inputs": [{**tensor, "parameters": {"binary_data_size": len(payload)}}]}).encode()
    return header + payload, str(len(header))


def test_binary_fp16_frames_arrive_as_float32_with_their_values():
    frames = np.arange(2 * 3 * 8 * 8, dtype=np.float16).reshape(2, 3, 8, 8) / 64
    raw, length = _binary_body({"name": "input", "datatype": "FP16", "shape": [2, 3, 8, 8]}, frames.tobytes())
    parsed = parse_infer(raw, length, SIG, max_frames=8)
    assert parsed.frames.dtype == np.float32 and parsed.n_frames == 2
    np.testing.assert_allclose(parsed.frames, frames.astype(np.float32), rtol=1e-6)
    assert parsed.slo_ms == DEFAULT_SLO_MS and parsed.outputs == ["classes", "scores"]


def test_tritons_timeout_in_microseconds_is_the_slo_when_slo_ms_is_absent():
    body = {"parameters": {"timeout": 250_000}, "inputs": [{"name": "input", "datatype": "FP32", "shape": [3, 8, 8]}]}
    body["inputs"][0]["data"] = [0.5] * 192
    assert parse_infer(json.dumps(body).encode(), None, SIG, 8).slo_ms == pytest.approx(250.0)


def test_a_truncated_bytes_element_is_a_400():
    payload = struct.pack("<I", 100) + b"short"
    raw, length = _binary_body({"name": "image", "datatype": "BYTES", "shape": [1]}, payload)
    with pytest.raises(PayloadError) as e:
        parse_infer(raw, length, SIG, 8)
    assert e.value.status == 400 and "overruns" in str(e.value)


@pytest.mark.parametrize(
    ("tensor", "status", "words"),
    [
        ({"name": "input", "datatype": "FP32", "shape": [2, 3, 8, 8], "data": [0.0] * 10}, 400, "bytes of data"),
        ({"name": "input", "datatype": "FP32", "shape": [9, 3, 8, 8], "data": [0.0] * 1728}, 422, "at most 8"),
        ({"name": "input", "datatype": "FP32", "shape": [3, 8, 8], "data": ["x"] * 192}, 400, "not a list of numbers"),
        ({"name": "input", "datatype": "FP32", "shape": [3, 8, 8]}, 422, "neither"),
        ({"name": "image", "datatype": "BYTES", "shape": [1], "data": ["not base64!"]}, 400, "base64"),
    ],
)
def test_bad_tensors_name_what_is_wrong(tensor, status, words):
    with pytest.raises(PayloadError) as e:
        parse_infer(json.dumps({"inputs": [tensor]}).encode(), None, SIG, 8)
    assert e.value.status == status and words in str(e.value)


def test_an_unknown_requested_output_is_a_400():
    body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [3, 8, 8], "data": [0.0] * 192}]}
    body["outputs"] = [{"name": "boxes"}]
    with pytest.raises(PayloadError, match="no output 'boxes'"):
        parse_infer(json.dumps(body).encode(), None, SIG, 8)


def test_a_compressed_body_may_not_inflate_past_the_limit():
    bomb = zlib.compress(b"\0" * 100_000)
    assert decompress(zlib.compress(b"abc"), "deflate", 10) == b"abc"
    with pytest.raises(PayloadError) as e:
        decompress(bomb, "deflate", 1000)
    assert e.value.status == 413
    with pytest.raises(PayloadError) as e:
        decompress(b"x", "br", 1000)
    assert e.value.status == 415
