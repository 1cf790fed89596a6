"""The emulated engine: a device kind's modelled latency and energy, in (optionally compressed) real time.

It sleeps `device_model.latency_s(model, batch, freq_hz) / speed_factor` and reports the modelled latency
and energy, so a fleet of emulated Jetsons behaves in wall-clock time like the simulator's devices.
Outputs are deterministic pseudo-outputs (a hash of the model name and each frame), not a prediction.
"""

from __future__ import annotations

import asyncio
from typing import ClassVar

import numpy as np

from actors.engines.base import Engine, EngineRun, pseudo_logits, topk_outputs
from costmodel.base import DeviceModel
from costmodel.model_zoo import MODELS, get_model
from jetfleet.errors import ConfigError


def default_device_model(kind: str, *, noise_cv: float = 0.0, seed: int = 0, name: str = "") -> DeviceModel:
    """The foundation's modelled device of `kind` (costmodel.device_models), imported on first use.
    `noise_cv` > 0 adds its seeded run-to-run variation, with a stream of its own per device `name`."""
    from costmodel.device_models import NoiseModel, device_model

    if noise_cv <= 0:
        model = device_model(kind)
    else:
        model = device_model(kind, noise=NoiseModel(cv=noise_cv, seed=seed).for_device(name or kind))
    try:  # model variants (e.g. efficientnet-b1) scale their base model's curves, as in the simulator
        from costmodel.variants import VariantDeviceModel
    except ImportError:
        return model
    return VariantDeviceModel(model)


def resolve_variant(name: str):
    """The model variant `name` means (costmodel.variants), or None for a plain zoo model / no variants."""
    try:
        from costmodel.variants import resolve
    except ImportError:
        return None
    return resolve(name)


def zoo_base(name: str) -> str:
    """The zoo model whose curves price `name` (a variant's base, else the name itself)."""
    v = resolve_variant(name)
    return v.base if v is not None else name


def modelled_cost(dm: DeviceModel, model: str, batch: int, freq_hz: float) -> tuple[float, float]:
    """(latency_s, energy_j) of one run; one consistent noise draw when the model has `batch_cost`."""
    batch_cost = getattr(dm, "batch_cost", None)
    if batch_cost is not None:
        lat, energy = batch_cost(model, batch, freq_hz)
        return float(lat), float(energy)
    return float(dm.latency_s(model, batch, freq_hz)), float(dm.energy_j(model, batch, freq_hz))


class EmulatedEngine(Engine):
    """Sleeps the modelled latency of each batch; reports modelled latency and energy."""

    name: ClassVar[str] = "emulated"

    def __init__(self, device_model: DeviceModel, *, speed_factor: float = 1.0, n_classes: int = 1000) -> None:
        if not speed_factor > 0:
            raise ConfigError(f"emulated engine of {device_model.kind}: speed_factor must be > 0, got {speed_factor}")
        self.device_model = device_model
        self.speed_factor = float(speed_factor)
        self.n_classes = n_classes

    def load(self, model: str) -> None:
        if resolve_variant(model) is None:
            get_model(model)  # UnknownNameError for models the device model cannot know

    def input_hw(self, model: str) -> int:
        v = resolve_variant(model)
        if v is not None:
            return v.input_hw
        return MODELS[model].input_hw if model in MODELS else 224

    async def run(self, model: str, frames: np.ndarray | None, n_frames: int, freq_hz: float) -> EngineRun:
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        latency_s, energy_j = modelled_cost(self.device_model, model, n_frames, freq_hz)
        deadline += latency_s / self.speed_factor
        # outputs first, then sleep what is left: the batch takes the modelled time, not modelled + overhead
        outputs = topk_outputs(pseudo_logits(model, frames, n_frames, self.n_classes), model)
        remaining_s = deadline - loop.time()
        if remaining_s > 0:
            await asyncio.sleep(remaining_s)
        return EngineRun(outputs, modelled_latency_s=latency_s, modelled_energy_j=energy_j)
