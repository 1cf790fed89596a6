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

Images are decoded with Pillow, converted to RGB, resized and centre-cropped to the model's input side
(torchvision's classification preset) and normalised with the ImageNet mean and standard deviation into
float32 (3, H, W) frames. Everything wrong with a body raises
`jetfleet.errors.PayloadError` with the HTTP status it deserves (400 undecodable, 404 unknown model, 422 invalid field)
and a message naming the field.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from jetfleet.errors import PayloadError

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32).reshape(3, 1, 1)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32).reshape(3, 1, 1)
MAX_IMAGE_PIXELS = 40_000_000  # a decompression bomb guard per image
TENSOR_DTYPES = {"float32": np.float32, "float16": np.float16, "uint8": np.uint8}


class TensorIn(BaseModel):
    """Raw frames: `data` is base64 of the C-order bytes of an array of `shape` and `dtype`."""

    model_config = ConfigDict(extra="forbid")
    shape: list[int] = Field(min_length=3, max_length=4, description="[3, H, W] or [N, 3, H, W]")
    dtype: str = Field("float32", description="float32, float16 or uint8")
    data: str = Field(description="base64 of the raw array bytes")


class InferRequest(BaseModel):
    """The body of POST /v1/infer (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")
    model: str = Field("inceptionv3", description="model family, e.g. inceptionv3, resnet50")
    slo_ms: float = Field(gt=0, allow_inf_nan=False, description="latency budget in ms from arrival")
    priority: int = Field(0, ge=-1000, le=1000, description="higher is more important")
    stream: str = Field("default", min_length=1, max_length=128, description="stream id (camera, client)")
    images: list[str] | None = Field(None, min_length=1, description="base64-encoded JPEG or PNG images")
    tensors: list[TensorIn] | None = Field(None, min_length=1, description="raw float frames")
    frames: int | None = Field(None, ge=1, description="number of synthetic frames (no content; load tests)")


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
    """What POST /v1/infer answers (200 when completed; 429/503 bodies carry status and reason)."""

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


def parse_request(raw: bytes, known_models: list[str], max_frames: int) -> InferRequest:
    """Parse and validate a body: 400 for malformed JSON, 422 for invalid fields, 404 for unknown models."""
    try:
        body = InferRequest.model_validate_json(raw)
    except ValidationError as e:
        first = e.errors()[0]
        if first["type"] == "json_invalid":
            raise PayloadError(400, f"malformed JSON: {first['msg']}") from None
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise PayloadError(422, f"invalid field {where!r}: {first['msg']}") from None
    given = [k for k in ("images", "tensors", "frames") if getattr(body, k) is not None]
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


def decode_frames(body: InferRequest, input_hw: int) -> np.ndarray | None:
    """The body's frames as one float32 (N, 3, H, W) array, or None for synthetic frames."""
    if body.images is not None:
        return np.stack([decode_image(s, input_hw, f"images[{i}]") for i, s in enumerate(body.images)])
    if body.tensors is not None:
        arrays = [decode_tensor(t, f"tensors[{i}]") for i, t in enumerate(body.tensors)]
        shapes = {a.shape[1:] for a in arrays}
        if len(shapes) != 1:
            raise PayloadError(422, f"all tensors of one request must have the same (3, H, W); got {sorted(shapes)}")
        return np.concatenate(arrays)
    return None


def decode_image(b64: str, input_hw: int, where: str = "image") -> np.ndarray:
    """One base64 JPEG/PNG -> normalised float32 (3, input_hw, input_hw)."""
    from PIL import Image, UnidentifiedImageError

    try:
        data = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        raise PayloadError(400, f"{where}: not valid base64") from None
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.format not in ("JPEG", "PNG"):
                raise PayloadError(400, f"{where}: {im.format} image; send JPEG or PNG")
            if im.width * im.height > MAX_IMAGE_PIXELS:
                raise PayloadError(413, f"{where}: {im.width}x{im.height} pixels is too large")
            rgb = _resize_centre_crop(im.convert("RGB"), input_hw)
    except PayloadError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise PayloadError(400, f"{where}: cannot decode the image: {e}") from None
    x = np.asarray(rgb, dtype=np.float32).transpose(2, 0, 1) / 255.0
    return np.ascontiguousarray((x - IMAGENET_MEAN) / IMAGENET_STD)


def _resize_centre_crop(image: Any, hw: int) -> Any:
    """torchvision's classification preset (as `actors.networks.image_to_chw`): shorter side to hw*256/224,
    bilinear, then the centre hw x hw crop."""
    from PIL import Image

    short = round(hw * 256 / 224)
    w, h = image.size
    scale = short / min(w, h)
    image = image.resize((max(hw, round(w * scale)), max(hw, round(h * scale))), Image.Resampling.BILINEAR)
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
