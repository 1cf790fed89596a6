"""What crosses the live service's boundaries: ingress -> scheduler (`InferItem`), scheduler -> ingress
(`InferAnswer`), and how the scheduler talks to a device (`DeviceClient`).

Times in these messages are wall-clock seconds, as an HTTP client sees them. The scheduler works in
*scheduler time* = wall time × `time_scale` (1 for real engines; the emulated devices' speed factor for a
time-compressed emulated fleet), so its policy sees the same seconds as the simulator does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol

from actors.device import BatchRun, DeviceStatus
from actors.engines.base import FrameOutput
from cluster.inventory import Fleet
from costmodel.model_zoo import MODELS
from jetfleet.errors import DeviceError
from jetfleet.types import DEFAULT_MODEL, Batch


class DeviceUnavailableError(DeviceError):
    """A device cannot be reached: its actor died or its node is gone. The scheduler fails the device over."""


@dataclass(frozen=True, slots=True)
class InferItem:
    """One request as the ingress hands it to the scheduler."""

    n_frames: int
    slo_s: float  # latency budget in wall seconds from arrival at the scheduler
    model: str = DEFAULT_MODEL
    priority: int = 0
    stream: str = "default"
    inputs: Any = None  # float32 frames (n_frames, 3, H, W): an ndarray or a Ray ObjectRef to one; None: synthetic


@dataclass(frozen=True, slots=True)
class InferAnswer:
    """The one answer a request gets from the scheduler."""

    request_id: int
    status: str  # "completed", "dropped", "failed" or "rejected" (refused at admission)
    reason: str = ""  # why it has no result (a DropReason value or an error)
    detail: str = ""  # more about the reason, for people
    device: str = ""
    model: str = ""
    freq_hz: float = math.nan
    energy_j: float = 0.0  # its share of the batch's board energy (by frames)
    queued_s: float = math.nan  # wall seconds from arrival to its batch's dispatch
    inference_s: float = math.nan  # wall seconds its batch ran on the device
    total_s: float = math.nan  # wall seconds from arrival to this answer
    within_slo: bool = False
    retry_after_s: float | None = None  # for "rejected": when to try again
    outputs: list[FrameOutput] | None = field(default=None, repr=False)  # one per frame when completed

    @property
    def ok(self) -> bool:
        return self.status == "completed"


class DeviceClient(Protocol):
    """How the scheduler reaches one device (a Ray Serve deployment live, a fake in tests).

    A device that is gone raises `DeviceUnavailableError`; a batch that failed on a working device comes
    back as a `BatchRun` whose result has ok=False.
    """

    async def run_batch(self, batch: Batch, inputs: list[Any] | None) -> BatchRun: ...

    async def set_frequency(self, freq_hz: float) -> float: ...

    async def status(self) -> DeviceStatus: ...

    async def set_power_state(self, state: str, sleep_s: float | None = None) -> Any: ...


def flatten_inputs(inputs: list[Any] | None, batch: Batch) -> list[Any] | None:
    """One frame per frame of `batch`, in request order, from each request's (n, 3, H, W) array (or None).

    None when every request is synthetic. A synthetic request in a batch with real frames gets zero frames
    of the same shape (the engine runs one tensor per batch)."""
    if inputs is None or all(x is None for x in inputs):
        return None
    if len(inputs) != len(batch.requests):
        raise ValueError(f"batch {batch.batch_id}: {len(inputs)} inputs for {len(batch.requests)} requests")
    import numpy as np

    shape = next(np.asarray(x).shape[1:] for x in inputs if x is not None)
    frames: list[Any] = []
    for request, x in zip(batch.requests, inputs, strict=True):
        arr = np.zeros((request.n_frames, *shape), np.float32) if x is None else np.asarray(x, dtype=np.float32)
        frames.extend(arr)
    return frames


class LocalDeviceClient:
    """A `DeviceClient` over an in-process `DeviceRuntime` (tests and single-process tools)."""

    def __init__(self, runtime: Any) -> None:
        self.runtime = runtime

    async def run_batch(self, batch: Batch, inputs: list[Any] | None) -> BatchRun:
        return await self.runtime.run_batch(batch, flatten_inputs(inputs, batch))

    async def set_frequency(self, freq_hz: float) -> float:
        return self.runtime.set_frequency(freq_hz)

    async def status(self) -> DeviceStatus:
        return self.runtime.status()

    async def set_power_state(self, state: str, sleep_s: float | None = None) -> Any:
        return await self.runtime.set_power_state(state, sleep_s=sleep_s)


def servable_models(fleet: Fleet) -> list[str]:
    """Models some device of `fleet` can run: its `models` list, or every model of the zoo when empty."""
    out: set[str] = set()
    for spec in fleet.devices:
        out.update(spec.models or MODELS)
        out.update(MODELS[m].family for m in spec.models if m in MODELS)
    return sorted(out)
