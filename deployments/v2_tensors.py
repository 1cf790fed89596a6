"""The Open Inference Protocol (KServe v2) infer request and response bodies, and their tensors as frames.

    POST /v2/models/{model}/infer
    {
      "id": "req-1",                                optional, echoed back
      "parameters": {"slo_ms": 500, "priority": 0, "stream": "camera0"},
      "inputs": [{"name": "input", "datatype": "FP32", "shape": [N, 3, H, W], "data": [...]}]
            or  [{"name": "image", "datatype": "BYTES", "shape": [N], "data": ["<base64 JPEG/PNG>", ...]}],
      "outputs": [{"name": "classes"}, {"name": "scores"}]     optional: all outputs when absent
    }

The input tensor's data may also follow the JSON in the body as raw bytes (Triton's binary tensor data
extension, which `tritonclient` uses by default): the `Inference-Header-Content-Length` header gives the
JSON's length and the input's `parameters.binary_data_size` its byte count; BYTES elements are then each a
4-byte little-endian length and the raw image bytes. Responses are always JSON tensors.

`parameters.slo_ms` is the latency budget (else Triton's `timeout` in microseconds, else `DEFAULT_SLO_MS`);
`priority` is jetfleet's (higher is more important); `stream` names the camera or client. Decoding reuses
`deployments.payload` (the same preprocessing, limits and errors as /v1); everything wrong raises
`PayloadError` with its HTTP status.
"""

from __future__ import annotations

import base64
import math
import struct
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from deployments.model_metadata import IMAGES_INPUT, ModelSignature
from deployments.payload import TENSOR_DTYPES, TensorIn, decode_images, decode_tensor
from jetfleet.errors import PayloadError

DEFAULT_SLO_MS = 1000.0  # when a client (plain tritonclient) states no budget
PROTOCOL_DTYPES = {"FP32": "float32", "FP16": "float16", "UINT8": "uint8"}  # frames' datatypes (payload's dtypes)
OUTPUT_DTYPES = {"INT64": np.int64, "FP32": np.float32}


class V2Parameters(BaseModel):
    """Request parameters jetfleet reads; other keys (Triton's sequence_*, binary_data_output) are ignored."""

    model_config = ConfigDict(extra="allow")
    slo_ms: float | None = Field(None, gt=0, allow_inf_nan=False, description="latency budget in ms")
    timeout: int | None = Field(None, gt=0, description="Triton's request timeout in microseconds (SLO fallback)")
    priority: int = Field(0, ge=-1000, le=1000, description="higher is more important")
    stream: str = Field("default", min_length=1, max_length=128, description="stream id (camera, client)")


class V2InputTensor(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    shape: list[int] = Field(min_length=1, max_length=4)
    datatype: str
    parameters: dict[str, Any] = Field(default_factory=dict)
    data: list[Any] | None = None


class V2RequestedOutput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    parameters: dict[str, Any] = Field(default_factory=dict)


class V2InferRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str | None = None
    parameters: V2Parameters = Field(default_factory=V2Parameters)
    inputs: list[V2InputTensor] = Field(min_length=1, max_length=1)
    outputs: list[V2RequestedOutput] | None = None


@dataclass(frozen=True)
class V2Request:
    """A parsed infer request: its frames (N, 3, H, W) float32, what to answer with, and how soon."""

    request_id: str | None
    frames: np.ndarray
    slo_ms: float
    priority: int
    stream: str
    outputs: list[str]

    @property
    def n_frames(self) -> int:
        return int(self.frames.shape[0])


def decompress(raw: bytes, encoding: str | None, max_bytes: int) -> bytes:
    """The body under its Content-Encoding (identity, gzip or deflate), at most `max_bytes` once inflated."""
    if not encoding or encoding == "identity":
        return raw
    if encoding not in ("gzip", "deflate"):
        raise PayloadError(415, f"Content-Encoding {encoding!r} not supported; send gzip, deflate or none")
    inflater = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
    try:
        out = inflater.decompress(raw, max_bytes + 1)
    except zlib.error as e:
        raise PayloadError(400, f"body is not valid {encoding}: {e}") from None
    if len(out) > max_bytes:
        raise PayloadError(413, f"body inflates beyond the {max_bytes}-byte limit")
    return out


def parse_infer(raw: bytes, header_length: str | None, signature: ModelSignature, max_frames: int) -> V2Request:
    """Parse a body (JSON, or JSON + binary tensor data) into frames for `signature`'s model."""
    header, binary = _split_binary(raw, header_length)
    try:
        body = V2InferRequest.model_validate_json(header)
    except ValidationError as e:
        first = e.errors()[0]
        if first["type"] == "json_invalid":
            raise PayloadError(400, f"malformed JSON: {first['msg']}") from None
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise PayloadError(422, f"invalid field {where!r}: {first['msg']}") from None
    tensor = body.inputs[0]
    spec = signature.input(tensor.name)
    if spec is None:
        names = [t.name for t in signature.inputs]
        raise PayloadError(400, f"model {signature.name!r} has no input {tensor.name!r}; send one of {names}")
    if tensor.datatype != spec.datatype and not (spec.datatype == "FP32" and tensor.datatype in PROTOCOL_DTYPES):
        raise PayloadError(400, f"input {tensor.name!r}: datatype {tensor.datatype}, expected {spec.datatype}")
    payload = _binary_payload(tensor, binary)
    n = math.prod(tensor.shape[:1]) if tensor.name == IMAGES_INPUT else _frames_in_shape(tensor.shape)
    if n > max_frames:
        raise PayloadError(422, f"{n} frames in one request; at most {max_frames}")
    if tensor.name == IMAGES_INPUT:
        frames = _image_frames(tensor, payload, signature.input_hw)
    else:
        frames = _tensor_frames(tensor, payload)
    return V2Request(
        body.id,
        frames,
        _slo_ms(body.parameters),
        body.parameters.priority,
        body.parameters.stream,
        _requested_outputs(body.outputs, signature),
    )


def _split_binary(raw: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    if header_length is None:
        return raw, b""
    if not header_length.isdigit() or int(header_length) > len(raw):
        raise PayloadError(400, f"Inference-Header-Content-Length {header_length!r} does not fit the body")
    n = int(header_length)
    return raw[:n], raw[n:]


def _binary_payload(tensor: V2InputTensor, binary: bytes) -> bytes | None:
    size = tensor.parameters.get("binary_data_size")
    if size is None:
        if tensor.data is None:
            raise PayloadError(422, f"input {tensor.name!r} has neither 'data' nor binary data")
        return None
    if tensor.data is not None:
        raise PayloadError(422, f"input {tensor.name!r} has both 'data' and binary data")
    if not isinstance(size, int) or size != len(binary):
        raise PayloadError(400, f"input {tensor.name!r}: binary_data_size {size!r} but {len(binary)} bytes follow")
    return binary


def _frames_in_shape(shape: list[int]) -> int:
    return shape[0] if len(shape) == 4 else 1


def _tensor_frames(tensor: V2InputTensor, payload: bytes | None) -> np.ndarray:
    """FP32/FP16/UINT8 frames through `payload.decode_tensor` (its shape, size and finiteness checks)."""
    dtype = PROTOCOL_DTYPES[tensor.datatype]
    if payload is None:
        try:
            array = np.asarray(tensor.data, dtype=TENSOR_DTYPES[dtype]).reshape(-1)
        except (TypeError, ValueError) as e:
            raise PayloadError(400, f"input {tensor.name!r}: data is not a list of numbers: {e}") from None
        payload = array.tobytes()
    if len(tensor.shape) not in (3, 4):
        raise PayloadError(422, f"input {tensor.name!r}: shape {tensor.shape} must be [3, H, W] or [N, 3, H, W]")
    # decode_tensor validates base64 of raw bytes: one encoding pass keeps a single set of checks for /v1 and /v2
    wire = TensorIn(shape=tensor.shape, dtype=dtype, data=base64.b64encode(payload).decode())
    return decode_tensor(wire, f"input {tensor.name!r}")


def _image_frames(tensor: V2InputTensor, payload: bytes | None, input_hw: int) -> np.ndarray:
    """BYTES images (base64 strings in JSON, raw bytes in binary data) through `payload.decode_image`."""
    if len(tensor.shape) not in (1, 2) or (len(tensor.shape) == 2 and tensor.shape[1] != 1):
        raise PayloadError(422, f"input {tensor.name!r}: shape {tensor.shape} must be [N] or [N, 1]")
    if payload is None:
        images = tensor.data or []
        if not all(isinstance(s, str) for s in images):
            raise PayloadError(400, f"input {tensor.name!r}: JSON BYTES elements must be base64 strings")
    else:
        images = [base64.b64encode(b).decode() for b in _bytes_elements(payload, tensor.name)]
    if len(images) != tensor.shape[0] or not images:
        raise PayloadError(400, f"input {tensor.name!r}: {len(images)} images for shape {tensor.shape}")
    return decode_images(images, input_hw, None, f"input {tensor.name!r}")  # one request's pixel budget


def _bytes_elements(payload: bytes, name: str) -> list[bytes]:
    """Triton's serialised BYTES tensor: each element a 4-byte little-endian length, then its bytes."""
    out, at = [], 0
    while at < len(payload):
        if at + 4 > len(payload):
            raise PayloadError(400, f"input {name!r}: truncated BYTES element length at byte {at}")
        (size,) = struct.unpack_from("<I", payload, at)
        at += 4
        if at + size > len(payload):
            raise PayloadError(400, f"input {name!r}: BYTES element of {size} bytes overruns the body")
        out.append(payload[at : at + size])
        at += size
    return out


def _slo_ms(parameters: V2Parameters) -> float:
    if parameters.slo_ms is not None:
        return parameters.slo_ms
    if parameters.timeout is not None:
        return parameters.timeout / 1e3
    return DEFAULT_SLO_MS


def _requested_outputs(requested: list[V2RequestedOutput] | None, signature: ModelSignature) -> list[str]:
    known = signature.output_names()
    if not requested:
        return known
    names = [o.name for o in requested]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise PayloadError(400, f"model {signature.name!r} has no output {unknown[0]!r}; it has {known}")
    return names


def output_tensors(outputs: list[Any], names: list[str], signature: ModelSignature) -> list[dict[str, Any]]:
    """The per-frame outputs (`FrameOutput`s) as the requested named tensors, each (N, k) in row-major order."""
    specs = {t.name: t for t in signature.outputs}
    fields = {"classes": lambda o: o.classes, "scores": lambda o: o.scores}
    out = []
    for name in names:
        spec = specs[name]
        rows = [list(fields[name](o)) for o in outputs]
        k = len(rows[0]) if rows else spec.shape[-1]
        array = np.asarray(rows, dtype=OUTPUT_DTYPES[spec.datatype]).reshape(len(rows), k)
        data = array.ravel().tolist()
        out.append({"name": name, "datatype": spec.datatype, "shape": list(array.shape), "data": data})
    return out


def response_parameters(answer: Any, e2e_ms: float) -> dict[str, Any]:
    """jetfleet's facts about an answer as protocol parameters (scalars only; unknown figures left out)."""

    def ms(s: float) -> float | None:
        return round(s * 1e3, 3) if isinstance(s, (int, float)) and math.isfinite(s) else None

    values = {
        "request_id": answer.request_id,
        "device": answer.device,
        "model": answer.model,
        "freq_mhz": round(answer.freq_hz / 1e6, 3) if math.isfinite(answer.freq_hz) else None,
        "energy_j": round(answer.energy_j, 6),
        "within_slo": answer.within_slo,
        "queued_ms": ms(answer.queued_s),
        "inference_ms": ms(answer.inference_s),
        "total_ms": ms(answer.total_s),
        "e2e_ms": round(e2e_ms, 3),
    }
    return {k: v for k, v in values.items() if v is not None}


def error_message(answer: Any) -> str:
    """The `error` of an answer that has no result: its status, reason and detail."""
    text = f"{answer.status}: {answer.reason or 'no reason given'}"
    return f"{text} ({answer.detail})" if answer.detail else text
