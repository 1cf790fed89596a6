"""Model variants: several input sizes / scales of one model family, each with a published accuracy.

A request names a *family* (`Request.model`, e.g. "efficientnet"); the policy picks a *variant*
(`Dispatch.model`, e.g. "efficientnet-b1"). Each variant has a *base*: a model of `costmodel.model_zoo`
whose per-device curves the analytic device models (`costmodel.device_models`) cover. A variant's latency
on any device is the base's times `latency_scale`, derived from GMACs:

    latency_scale = FIXED_FRACTION + (1 - FIXED_FRACTION) * gmacs / base_gmacs

`FIXED_FRACTION` (0.2, an assumption) is the part of a batch's time that does not shrink with the work
(kernel launches, memory-bound layers). Cross-check: jkjung-avt/tensorrt_demos measured YOLOv4 at 288 px
at 0.58x the time of 416 px on a Jetson Nano (FPS 7.93 vs 4.62), where this rule gives 0.58; for
YOLOv4-tiny the measured ratio is 0.70 (0.58 here) because its FPS includes CPU pre/post-processing.
Energy per batch scales like latency (the board draws the device's power for as long as the batch runs).

The wrappers `VariantDeviceModel` (simulator truth) and `VariantCostModel` (what policies consult) resolve
variant and family names to the base and scale, so the device models and the LightGBM cost model need
no knowledge of variants. A bare family name resolves to its *reference* variant (the zoo model).

Sources (per variant, in `Variant.source`):
- EfficientNet-B0..B3, ResNet18/34/50: torchvision model cards (ImageNet top-1, GFLOPS column = GMACs,
  eval resize 224/240/288/300 px for B0..B3).
- MobileNetV2 width x resolution: tensorflow/models research/slim/nets/mobilenet/README.md (ImageNet top-1, MACs).
- YOLOv4-tiny 288/416 px: jkjung-avt/tensorrt_demos README (COCO val2017 mAP@0.5, TensorRT FP16);
  GMACs at 416 px from the AlexeyAB/darknet model zoo (6.9 BFLOPs), scaled by pixels for 288 px.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from costmodel.base import CostGrid, CostModel, DeviceModel
from costmodel.model_zoo import get_model
from jetfleet.errors import ConfigError, UnknownNameError

FIXED_FRACTION = 0.2
# JPEG-compressed natural images at quality ~85-90 take roughly 1-2 bits per pixel; 1.5 is our assumption.
BITS_PER_PIXEL = 1.5

__all__ = [
    "BITS_PER_PIXEL",
    "FAMILIES",
    "FIXED_FRACTION",
    "VARIANTS",
    "Variant",
    "VariantCostModel",
    "VariantDeviceModel",
    "family_variants",
    "frame_bits",
    "get_variant",
    "reference_variant",
    "resolve",
    "wrap_device_models",
]

_TV = "torchvision model card (pytorch.org/vision/stable/models)"
_SLIM = "tensorflow/models research/slim/nets/mobilenet/README.md"
_JK = "jkjung-avt/tensorrt_demos README (COCO val2017 mAP@0.5, TensorRT FP16); GMACs from AlexeyAB/darknet"


@dataclass(frozen=True, slots=True)
class Variant:
    """One servable variant of a model family."""

    name: str  # unique key, what `Dispatch.model` carries
    family: str  # what `Request.model` carries
    base: str  # zoo model whose device curves it scales
    input_hw: int  # square input side, pixels: sets the frame a client uploads
    gmacs: float  # multiply-accumulates per frame at input_hw
    accuracy_pct: float
    accuracy_metric: str
    source: str
    latency_scale: float = 1.0  # latency (and energy) relative to `base` on every device

    @property
    def is_reference(self) -> bool:
        return self.name == self.base


def _scaled(name: str, family: str, base: str, hw: int, gmacs: float, acc: float, metric: str, src: str) -> Variant:
    base_gmacs = get_model(base).gmacs
    scale = 1.0 if name == base else FIXED_FRACTION + (1.0 - FIXED_FRACTION) * gmacs / base_gmacs
    return Variant(name, family, base, hw, gmacs, acc, metric, src, round(scale, 4))


def _catalogue() -> list[Variant]:
    top1, ap50 = "imagenet-top1", "coco-ap50"
    out = [
        _scaled("efficientnet-b0", "efficientnet", "efficientnet-b3", 224, 0.39, 77.69, top1, _TV),
        _scaled("efficientnet-b1", "efficientnet", "efficientnet-b3", 240, 0.69, 78.64, top1, _TV),
        _scaled("efficientnet-b2", "efficientnet", "efficientnet-b3", 288, 1.09, 80.61, top1, _TV),
        _scaled("efficientnet-b3", "efficientnet", "efficientnet-b3", 300, 1.83, 82.01, top1, _TV),
        _scaled("resnet18", "resnet", "resnet18", 224, 1.81, 69.76, top1, _TV),
        _scaled("resnet34", "resnet", "resnet34", 224, 3.66, 73.31, top1, _TV),
        _scaled("resnet50", "resnet", "resnet50", 224, 4.09, 76.13, top1, _TV),
        _scaled("yolov4-tiny-288", "yolo", "yolov4-tiny", 288, round(3.45 * (288 / 416) ** 2, 3), 34.4, ap50, _JK),
        _scaled("yolov4-tiny", "yolo", "yolov4-tiny", 416, 3.45, 38.7, ap50, _JK),
    ]
    for width, hw, mmacs, acc in [
        (1.0, 96, 56, 60.3),
        (1.0, 128, 99, 65.3),
        (1.0, 160, 154, 68.8),
        (1.0, 192, 221, 70.7),
        (1.0, 224, 300, 71.8),
        (1.4, 224, 582, 75.0),
    ]:
        name = "mobilenetv2" if (width, hw) == (1.0, 224) else f"mobilenetv2-{width:.1f}-{hw}"
        out.append(_scaled(name, "mobilenetv2", "mobilenetv2", hw, mmacs / 1000, acc, top1, _SLIM))
    return out


VARIANTS: dict[str, Variant] = {v.name: v for v in _catalogue()}
# family -> its variants, cheapest first
FAMILIES: dict[str, tuple[Variant, ...]] = {}
for _v in sorted(VARIANTS.values(), key=lambda v: (v.latency_scale * get_model(v.base).gmacs, v.accuracy_pct)):
    FAMILIES[_v.family] = (*FAMILIES.get(_v.family, ()), _v)


def get_variant(name: str) -> Variant:
    """Look a variant up by name; raise UnknownNameError naming the known ones."""
    try:
        return VARIANTS[name]
    except KeyError:
        raise UnknownNameError("model variant", name, VARIANTS) from None


def family_variants(family: str) -> tuple[Variant, ...]:
    """The variants of a family, cheapest first."""
    try:
        return FAMILIES[family]
    except KeyError:
        raise UnknownNameError("model family", family, FAMILIES) from None


def reference_variant(family: str) -> Variant:
    """The family's reference variant: the one that is itself a zoo model, the most accurate if several."""
    refs = [v for v in family_variants(family) if v.is_reference]
    return max(refs, key=lambda v: v.accuracy_pct)


def resolve(name: str) -> Variant | None:
    """The variant a model name means (a family resolves to its reference); None for a plain zoo model."""
    if name in VARIANTS:
        return VARIANTS[name]
    if name in FAMILIES:
        return reference_variant(name)
    return None


def frame_bits(input_hw: int, bits_per_pixel: float = BITS_PER_PIXEL) -> float:
    """Bits a client uploads per frame: resized to `input_hw` x `input_hw`, JPEG-compressed (BITS_PER_PIXEL)."""
    if input_hw < 1:
        raise ConfigError(f"input_hw must be >= 1 pixel, got {input_hw}")
    return float(input_hw * input_hw * bits_per_pixel)


def _base_and_scale(name: str) -> tuple[str, float]:
    v = resolve(name)
    return (name, 1.0) if v is None else (v.base, v.latency_scale)


class VariantDeviceModel:
    """A `DeviceModel` that also answers for variants and families, by scaling its base model's curves."""

    def __init__(self, inner: DeviceModel) -> None:
        self.inner = inner
        self.kind = inner.kind

    def latency_s(self, model: str, batch: int, freq_hz: float) -> float:
        base, scale = _base_and_scale(model)
        return scale * self.inner.latency_s(base, batch, freq_hz)

    def energy_j(self, model: str, batch: int, freq_hz: float) -> float:
        base, scale = _base_and_scale(model)
        return scale * self.inner.energy_j(base, batch, freq_hz)

    def batch_cost(self, model: str, batch: int, freq_hz: float) -> tuple[float, float]:
        base, scale = _base_and_scale(model)
        if hasattr(self.inner, "batch_cost"):
            latency, energy = self.inner.batch_cost(base, batch, freq_hz)
        else:
            latency, energy = self.inner.latency_s(base, batch, freq_hz), self.inner.energy_j(base, batch, freq_hz)
        return scale * latency, scale * energy

    def idle_power_w(self, freq_hz: float) -> float:
        return self.inner.idle_power_w(freq_hz)

    def latency_grid(self, model: str, freqs_hz: Any, batches: Any) -> np.ndarray:
        base, scale = _base_and_scale(model)
        return scale * np.asarray(self.inner.latency_grid(base, freqs_hz, batches))  # type: ignore[attr-defined]

    def energy_grid(self, model: str, freqs_hz: Any, batches: Any) -> np.ndarray:
        base, scale = _base_and_scale(model)
        return scale * np.asarray(self.inner.energy_grid(base, freqs_hz, batches))  # type: ignore[attr-defined]

    def with_seed(self, seed: int) -> VariantDeviceModel:
        """Re-seeded copy when the inner model supports it (the simulator re-seeds per run)."""
        if hasattr(self.inner, "with_seed"):
            return VariantDeviceModel(self.inner.with_seed(seed))  # type: ignore[attr-defined]
        return self

    def __getattr__(self, name: str) -> Any:  # anything else (device_kind, noise...) comes from the inner model
        return getattr(self.inner, name)


class VariantCostModel:
    """A `CostModel` that also answers for variants and families by scaling the base model's grid."""

    def __init__(self, inner: CostModel) -> None:
        self.inner = inner
        self._cache: dict[tuple[str, str, bytes, bytes], CostGrid] = {}

    def predict_grid(self, kind: str, model: str, freqs_hz: np.ndarray, batches: np.ndarray) -> CostGrid:
        base, scale = _base_and_scale(model)
        if scale == 1.0 and base == model:
            return self.inner.predict_grid(kind, model, freqs_hz, batches)
        f, b = np.asarray(freqs_hz, float).reshape(-1), np.asarray(batches, int).reshape(-1)
        key = (kind, model, f.tobytes(), b.tobytes())
        grid = self._cache.get(key)
        if grid is None:
            g = self.inner.predict_grid(kind, base, f, b)
            grid = replace(g, model=model, latency_s=g.latency_s * scale, energy_j=g.energy_j * scale)
            self._cache[key] = grid
        return grid

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def wrap_device_models(models: Mapping[str, DeviceModel]) -> dict[str, VariantDeviceModel]:
    """Wrap every kind's device model so it answers for variants (for `simulate(device_models=...)`)."""
    return {kind: m if isinstance(m, VariantDeviceModel) else VariantDeviceModel(m) for kind, m in models.items()}
