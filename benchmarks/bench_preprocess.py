"""Controller preprocessing per frame: the figure the simulator charges (`jetfleet.links.PREPROCESS_S_PER_FRAME`).

A camera JPEG is decoded, resized, centre-cropped to the model's input side and normalised to FP32 by the ingress
code itself (`deployments.payload.decode_images`), eight images per call as one request would bring them. The
images are synthetic (smooth noise, JPEG quality 90) at three camera resolutions; the decode and resize cost
depends on the pixel count, not on what the pixels show. Median and minimum over rounds, per frame, one core.
"""

from __future__ import annotations

import base64
import io
import time
from typing import Any

import numpy as np

from jetfleet.links import PREPROCESS_S_PER_FRAME

SIZES = ((640, 480), (1280, 720), (1920, 1080))
INPUT_HW = 299  # InceptionV3, the model of LoudVA's measurements
PER_CALL = 8


def _jpeg_b64(width: int, height: int, rng: np.random.Generator) -> str:
    from PIL import Image

    coarse = (rng.random((height // 8, width // 8, 3)) * 255).astype(np.uint8)
    image = Image.fromarray(coarse).resize((width, height), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return base64.b64encode(buffer.getvalue()).decode()


def run(quick: bool = False) -> dict[str, Any]:
    from deployments.payload import decode_images

    rng = np.random.default_rng(0)
    rounds = 5 if quick else 30
    out: dict[str, Any] = {"input_hw": INPUT_HW, "per_call": PER_CALL, "rounds": rounds, "sizes": {}}
    for width, height in SIZES:
        images = [_jpeg_b64(width, height, rng)] * PER_CALL
        decode_images(images[:2], INPUT_HW)  # warm-up
        per_frame = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            decode_images(images, INPUT_HW)
            per_frame.append((time.perf_counter() - t0) / PER_CALL)
        out["sizes"][f"{width}x{height}"] = {
            "jpeg_bytes": len(base64.b64decode(images[0])),
            "median_ms_per_frame": round(float(np.median(per_frame)) * 1e3, 3),
            "min_ms_per_frame": round(float(np.min(per_frame)) * 1e3, 3),
        }
    out["simulator_charges_ms_per_frame"] = PREPROCESS_S_PER_FRAME * 1e3
    for size, figures in out["sizes"].items():
        print(f"   {size}: {figures['median_ms_per_frame']:.2f} ms/frame (min {figures['min_ms_per_frame']:.2f})")
    return out
