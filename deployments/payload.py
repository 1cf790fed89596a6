"""The HTTP API's request and response bodies, and turning a request body into model-ready frames.

    POST /v1/infer
    {
      "model": "inceptionv3",          a model family the fleet serves
      "slo_ms": 500,                   latency budget from arrival, > 0
      "priority": 0,                   higher is more important
      "stream": "camera0",             the stream (camera, client) it belongs to
      exactly one of:
      "images": ["<base64 JPEG/PNG>", ...]                              one frame per image
      "tensors": [{"shape": [3, H, W] | [N, 3, H, W], "dtype": "float32", "data": "<base64 raw bytes>"}]
      "frames": 4                                                       synthetic frames (load tests)
    }

Types are strict (`"500"` is not a number, `true` not an integer, `2.0` not a count). Images are decoded with
Pillow, converted to RGB, resized and centre-cropped to the model's input side (torchvision's classification
preset) and normalised with the ImageNet mean and standard deviation into float32 (3, H, W) frames, within a
`PixelBudget` per image and per request (image bombs are refused before they are decoded or resized). Everything
wrong with a body raises `jetfleet.errors.PayloadError` with the HTTP status it deserves (400 malformed or
undecodable, 404 unknown model, 413 too many pixels, 422 invalid field) and a message naming the field and
holding no internals (the decoder's own exception is kept as `__cause__` for the service log).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import math
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.json_schema import SkipJsonSchema

from deployments.errors import error_response, log_detail
from jetfleet.errors import PayloadError

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32).reshape(3, 1, 1)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32).reshape(3, 1, 1)
TENSOR_DTYPES = {"float32": np.float32, "float16": np.float16, "uint8": np.uint8}


class TensorIn(BaseModel):
    """Raw frames: `data` is base64 of the C-order bytes of an array of `shape` and `dtype`."""

    model_config = ConfigDict(extra="forbid", strict=True)
    shape: list[int] = Field(min_length=3, max_length=4, description="[3, H, W] or [N, 3, H, W]")
    dtype: str = Field("float32", description="float32, float16 or uint8")
    data: str = Field(description="base64 of the raw array bytes")


FRAME_SOURCES = ("images", "tensors", "frames")  # a request gives exactly one of them


def _absent_by_default(schema: dict[str, Any]) -> None:
    """A frame source's schema has no default: it is absent, not null, when not given."""
    schema.pop("default", None)


class InferRequest(BaseModel):
    """The body of POST /v1/infer (see the module docstring). Types are strict: `"500"` is not a number,
    `true` not an integer, `2.0` not a frame count."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "oneOf": [{"required": [k]} for k in FRAME_SOURCES],
            "description": "Give exactly one of `images`, `tensors` or `frames`.",
        },
    )
    model: str = Field("inceptionv3", description="model family, e.g. inceptionv3, resnet50")
    slo_ms: float = Field(gt=0, allow_inf_nan=False, description="latency budget in ms from arrival")
    priority: int = Field(0, ge=-1000, le=1000, description="higher is more important")
    stream: str = Field("default", min_length=1, max_length=128, description="stream id (camera, client)")
    # SkipJsonSchema: absent is allowed, null is not (the one-of rule counts the keys given)
    images: Annotated[list[str], Field(min_length=1)] | SkipJsonSchema[None] = Field(
        None, description="base64 JPEG or PNG images", json_schema_extra=_absent_by_default
    )
    tensors: Annotated[list[TensorIn], Field(min_length=1)] | SkipJsonSchema[None] = Field(
        None, description="raw float frames", json_schema_extra=_absent_by_default
    )
    frames: Annotated[int, Field(ge=1)] | SkipJsonSchema[None] = Field(
        None, description="synthetic frames (no content; load tests)", json_schema_extra=_absent_by_default
    )


class TimingOut(BaseModel):
    queued: float | None = Field(None, description="ms from arrival to the dispatch of its batch")
    inference: float | None = Field(None, description="ms its batch ran on the device")
    total: float | None = Field(None, description="ms from arrival at the scheduler to the answer")
    e2e: float | None = Field(None, description="ms from the ingress receiving the body to the response")


class TensorOut(BaseModel):
    shape: list[int]
    datatype: str = Field(description="Open Inference Protocol datatype, e.g. FP32")
    data: list[Any] = Field(description="the tensor's elements in row-major order")


class FrameOut(BaseModel):
    """One frame's answer: a classifier's top-5, or a model's named output tensors (detectors, ...)."""

    classes: list[int] = Field(default_factory=list)
    scores: list[float] = Field(default_factory=list)
    tensors: dict[str, TensorOut] | None = Field(None, description="named outputs of models that do not classify")


class InferResponse(BaseModel):
    """What POST /v1/infer answers when completed (200). Refusals and drops (429/503) are `ErrorBody`s with
    a `reason` (`deployments.errors`)."""

    request_id: int
    status: str = Field(description="completed, dropped, failed or rejected")
    reason: str = ""
    detail: str = ""
    model: str = ""
    device: str = ""
    freq_mhz: float | None = None
    energy_j: float = Field(0.0, description="this request's share of its batch's board energy")
    within_slo: bool = False
    frames: int = 0
    timing_ms: TimingOut = Field(default_factory=TimingOut)
    outputs: list[FrameOut] = Field(
        default_factory=list, description="one per frame: top-5 classes, or named tensors for non-classifiers"
    )
    retry_after_s: float | None = None


async def read_body(
    chunks: AsyncIterator[bytes],
    declared_length: str | None,
    max_bytes: int,
    *,
    idle_timeout_s: float = 10.0,
    total_timeout_s: float = 60.0,
) -> bytes:
    """Read a request body: 413 past `max_bytes` (at once when Content-Length says so), 408 when the client
    sends nothing for `idle_timeout_s` or has not finished after `total_timeout_s` (a slow or lying client
    must not hold a connection)."""
    if declared_length is not None and declared_length.isdigit() and int(declared_length) > max_bytes:
        raise PayloadError(413, f"body of {int(declared_length)} bytes exceeds the {max_bytes}-byte limit")
    parts, size = [], 0
    deadline = time.monotonic() + total_timeout_s
    iterator = aiter(chunks)
    while True:
        wait_s = min(idle_timeout_s, deadline - time.monotonic())
        try:
            chunk = await asyncio.wait_for(anext(iterator), max(0.0, wait_s))
        except StopAsyncIteration:
            return b"".join(parts)
        except TimeoutError:
            raise PayloadError(408, f"the body did not arrive in time ({size} bytes received); send it whole") from None
        size += len(chunk)
        if size > max_bytes:
            raise PayloadError(413, f"body exceeds the {max_bytes}-byte limit")
        parts.append(chunk)


def parse_request(raw: bytes, known_models: list[str], max_frames: int) -> InferRequest:
    """Parse and validate a body: 400 for malformed JSON, 422 for invalid fields, 404 for unknown models."""
    try:
        body = InferRequest.model_validate_json(raw)
    except ValidationError as e:
        first = e.errors()[0]
        if first["type"] == "json_invalid":
            raise PayloadError(400, f"malformed JSON: {first['msg']}") from None
        # drop pydantic's union-member tags ("constrained-int", "list[str]") from the field's path
        where = ".".join(str(p) for p in first["loc"] if isinstance(p, int) or p.isidentifier()) or "body"
        raise PayloadError(422, f"invalid field {where!r}: {first['msg']}") from None
    given = [k for k in FRAME_SOURCES if k in body.model_fields_set]
    nulls = [k for k in given if getattr(body, k) is None]
    if nulls:
        raise PayloadError(422, f"invalid field {nulls[0]!r}: must not be null (leave it out instead)")
    if len(given) != 1:
        raise PayloadError(422, f"give exactly one of 'images', 'tensors' or 'frames'; got {given or 'none'}")
    if body.model not in known_models:
        raise PayloadError(404, f"unknown model {body.model!r}; this fleet serves: {', '.join(known_models)}")
    n = n_frames(body)
    if n > max_frames:
        raise PayloadError(422, f"{n} frames in one request; at most {max_frames}")
    return body


def n_frames(body: InferRequest) -> int:
    if body.images is not None:
        return len(body.images)
    if body.tensors is not None:
        return sum(t.shape[0] if len(t.shape) == 4 else 1 for t in body.tensors)
    return int(body.frames or 0)


@dataclass(frozen=True)
class PixelBudget:
    """How many pixels decoding may make: per image (as declared, and after every resize) and per request
    (everything decoded or resized, summed). Declared sizes of all images are checked before any is decoded, so
    a small body declaring huge images costs nothing; the resize target is checked before resizing, so a
    3000x1 image cannot become a 768000x256 one."""

    per_image_px: int = 40_000_000
    per_request_px: int = 64_000_000


class PixelLedger:
    """The pixels one request has spent against its `PixelBudget`; `charge` raises 413 past either limit."""

    def __init__(self, budget: PixelBudget) -> None:
        self.budget = budget
        self.used_px = 0

    def charge(self, size: tuple[int, int], where: str, what: str) -> None:
        w, h = size
        pixels = w * h
        if pixels > self.budget.per_image_px:
            raise PayloadError(
                413, f"{where}: {what} of {w}x{h} pixels exceeds the {self.budget.per_image_px}-pixel image limit"
            )
        if self.used_px + pixels > self.budget.per_request_px:
            raise PayloadError(
                413, f"{where}: the request's images exceed the {self.budget.per_request_px}-pixel request limit"
            )
        self.used_px += pixels


def decode_frames(body: InferRequest, input_hw: int, budget: PixelBudget | None = None) -> np.ndarray | None:
    """The body's frames as one float32 (N, 3, H, W) array, or None for synthetic frames."""
    if body.images is not None:
        return decode_images(body.images, input_hw, budget)
    if body.tensors is not None:
        arrays = [decode_tensor(t, f"tensors[{i}]") for i, t in enumerate(body.tensors)]
        shapes = {a.shape[1:] for a in arrays}
        if len(shapes) != 1:
            raise PayloadError(422, f"all tensors of one request must have the same (3, H, W); got {sorted(shapes)}")
        return np.concatenate(arrays)
    return None


def decode_images(
    images: list[str], input_hw: int, budget: PixelBudget | None = None, where: str = "images"
) -> np.ndarray:
    """Base64 JPEG/PNG images -> normalised float32 (N, 3, input_hw, input_hw), within one request's pixel
    budget: every image's declared and resized sizes are charged before the first image is decoded."""
    ledger = PixelLedger(budget or PixelBudget())
    opened = []
    try:
        for i, b64 in enumerate(images):
            image = open_image(b64, f"{where}[{i}]")
            opened.append(image)
            ledger.charge(image.size, f"{where}[{i}]", "declared size")
            ledger.charge(resized_size(image.size, input_hw), f"{where}[{i}]", "resized size")
        return np.stack([_to_frame(im, input_hw, f"{where}[{i}]") for i, im in enumerate(opened)])
    finally:
        for image in opened:
            image.close()


def decode_image(b64: str, input_hw: int, where: str = "image", budget: PixelBudget | None = None) -> np.ndarray:
    """One base64 JPEG/PNG -> normalised float32 (3, input_hw, input_hw)."""
    return decode_images([b64], input_hw, budget, where)[0]


def open_image(b64: str, where: str = "image") -> Any:
    """A base64 JPEG/PNG opened lazily (only its header is read): 400 when it is not one."""
    from PIL import Image

    try:
        data = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        raise PayloadError(400, f"{where}: not valid base64") from None
    try:
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as e:
        raise PayloadError(413, f"{where}: the image declares too many pixels") from e
    except Exception as e:  # Pillow raises many types for hostile headers; the client gets one message
        raise PayloadError(400, f"{where}: cannot decode the image: not a JPEG or PNG file") from e
    if image.format not in ("JPEG", "PNG"):
        image.close()
        raise PayloadError(400, f"{where}: {image.format} image; send JPEG or PNG")
    return image


def _to_frame(image: Any, input_hw: int, where: str) -> np.ndarray:
    try:
        rgb = _resize_centre_crop(image.convert("RGB"), input_hw)
    except Exception as e:  # truncated data, Pillow's SyntaxError/OverflowError/struct.error, MemoryError...
        raise PayloadError(400, f"{where}: cannot decode the image: corrupt or truncated data") from e
    x = np.asarray(rgb, dtype=np.float32).transpose(2, 0, 1) / 255.0
    return np.ascontiguousarray((x - IMAGENET_MEAN) / IMAGENET_STD)


def resized_size(size: tuple[int, int], hw: int) -> tuple[int, int]:
    """The size torchvision's classification preset resizes an image of `size` to before its centre crop:
    shorter side hw*256/224 (as `actors.networks.image_to_chw`)."""
    short = round(hw * 256 / 224)
    w, h = size
    scale = short / min(w, h)
    return max(hw, round(w * scale)), max(hw, round(h * scale))


def _resize_centre_crop(image: Any, hw: int) -> Any:
    """Resize to `resized_size` (bilinear), then the centre hw x hw crop."""
    from PIL import Image

    image = image.resize(resized_size(image.size, hw), Image.Resampling.BILINEAR)
    w, h = image.size
    left, top = (w - hw) // 2, (h - hw) // 2
    return image.crop((left, top, left + hw, top + hw))


def decode_tensor(t: TensorIn, where: str = "tensor") -> np.ndarray:
    """One raw tensor -> float32 (N, 3, H, W)."""
    dtype = TENSOR_DTYPES.get(t.dtype)
    if dtype is None:
        raise PayloadError(422, f"{where}: dtype {t.dtype!r} not one of {sorted(TENSOR_DTYPES)}")
    shape = tuple(t.shape)
    if any(s < 1 for s in shape) or shape[-3] != 3 or not all(8 <= s <= 2048 for s in shape[-2:]):
        raise PayloadError(422, f"{where}: shape {list(shape)} must be [3, H, W] or [N, 3, H, W], 8 <= H, W <= 2048")
    try:
        data = base64.b64decode(t.data, validate=True)
    except (binascii.Error, ValueError):
        raise PayloadError(400, f"{where}: data is not valid base64") from None
    expected = math.prod(shape) * np.dtype(dtype).itemsize
    if len(data) != expected:
        raise PayloadError(400, f"{where}: {len(data)} bytes of data for shape {list(shape)} {t.dtype} ({expected})")
    x = np.frombuffer(data, dtype=dtype).reshape(shape).astype(np.float32)
    if not np.isfinite(x).all():
        raise PayloadError(422, f"{where}: holds NaN or infinite values")
    return x.reshape((-1, *shape[-3:]))


def http_status(answer: Any) -> tuple[int, dict[str, str]]:
    """The HTTP status and headers of an answer: 200 completed; 429 + Retry-After when refused at admission;
    503 (with Retry-After when the scheduler gave one) when dropped or failed."""
    headers = {}
    if answer.retry_after_s is not None:
        headers["Retry-After"] = str(max(1, math.ceil(answer.retry_after_s)))
    if answer.status == "completed":
        return 200, {}
    return (429 if answer.status == "rejected" else 503), headers


def frame_out(output: Any) -> dict[str, Any]:
    """One `FrameOutput` as the JSON of `FrameOut`: top-5 for classifiers, named tensors otherwise."""
    if output.tensors:
        return {
            "tensors": {
                t.name: {"shape": list(t.data.shape), "datatype": t.datatype, "data": t.data.ravel().tolist()}
                for t in output.tensors
            }
        }
    return {"classes": list(output.classes), "scores": [round(s, 6) for s in output.scores]}


# What a client should do about each reason the scheduler gives for not serving a request (its detail is logged).
REASON_ADVICE = {
    "queue_full": "the queue for this stream is full; retry after Retry-After seconds",
    "rejected": "refused at admission: the fleet cannot serve it in time now; retry after Retry-After seconds",
    "evicted_low_priority": "dropped to make room for higher-priority requests; retry later",
    "deadline_unreachable": "no device can finish it within slo_ms; raise slo_ms, send fewer frames or retry later",
    "shed": "shed under overload to protect higher-priority streams; retry later",
    "deadline_expired": "its deadline passed while it waited; raise slo_ms or retry later",
    "no_device": "no healthy device serves this model now; retry later",
    "device_failed": "its device failed and it could not be retried in time; retry",
    "shutdown": "the service is shutting down; retry later",
    "invalid": "the scheduler refused the request as invalid",
}
_REASON_CODE = re.compile(r"[a-z][a-z0-9_]{0,63}")


def answer_response(answer: Any, n: int, e2e_ms: float, request_id: str) -> JSONResponse:
    """The HTTP response to a scheduler answer: 200 with `InferResponse` when completed, else an error in the
    one format (`deployments.errors`) with the reason's advice and code; the scheduler's detail is logged."""
    status, headers = http_status(answer)
    if status == 200:
        return JSONResponse(clean_json(answer_body(answer, n, e2e_ms)), status_code=200)
    reason = answer.reason if _REASON_CODE.fullmatch(answer.reason or "") else "unknown"
    log_detail(request_id, f"{answer.status} ({answer.reason}) by the scheduler", answer.detail or "-")
    message = f"{answer.status}: {REASON_ADVICE.get(reason, 'not served; retry later')}"
    retry = answer.retry_after_s if answer.retry_after_s is not None and math.isfinite(answer.retry_after_s) else None
    return error_response(status, message, request_id, headers=headers, reason=reason, retry_after_s=retry)


def clean_json(x: Any) -> Any:
    """JSON-safe: non-finite floats become null (JSON has no NaN)."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k): clean_json(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [clean_json(v) for v in x]
    return x


def answer_body(answer: Any, n: int, e2e_ms: float) -> dict[str, Any]:
    """An `actors.messages.InferAnswer` as the JSON of `InferResponse`."""

    def ms(s: float) -> float | None:
        return round(s * 1e3, 3) if isinstance(s, (int, float)) and math.isfinite(s) else None

    outputs = [frame_out(o) for o in answer.outputs or []]
    return {
        "request_id": answer.request_id,
        "status": answer.status,
        "reason": answer.reason,
        "detail": answer.detail,
        "model": answer.model,
        "device": answer.device,
        "freq_mhz": round(answer.freq_hz / 1e6, 3) if math.isfinite(answer.freq_hz) else None,
        "energy_j": round(answer.energy_j, 6),
        "within_slo": answer.within_slo,
        "frames": n,
        "timing_ms": {
            "queued": ms(answer.queued_s),
            "inference": ms(answer.inference_s),
            "total": ms(answer.total_s),
            "e2e": round(e2e_ms, 3),
        },
        "outputs": outputs,
        "retry_after_s": answer.retry_after_s,
    }
