"""Power meters: how a device runtime measures the energy of a batch.

    PowerMeter                start() before a batch, stop(...) -> PowerReading after it; power_w() now
    ├── EmulatedPowerMeter    energy from the device model (the emulated engine's modelled energy, or the
    │                         kind's busy power × measured time for a real engine on an emulated meter)
    ├── JtopPowerMeter        board power from the jetson-stats `jtop` service, sampled (Jetson only)
    └── NvmlPowerMeter        NVML's total-energy counter (mJ), read before and after

Energies are board energy, idle baseline included, as in the profile tables.
"""

from __future__ import annotations

import abc
import contextlib
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from costmodel.base import DeviceModel
from costmodel.model_zoo import MODELS
from jetfleet.errors import DeviceError


@dataclass(frozen=True, slots=True)
class PowerReading:
    """Energy of one measured window."""

    energy_j: float
    duration_s: float
    power_w: float  # mean power over the window (energy / duration)
    samples: int = 0  # power samples the meter took (0 for counter-based meters)


@dataclass(frozen=True, slots=True)
class BatchHint:
    """What the runtime knows about the batch a meter measured; emulated meters compute from it."""

    model: str
    batch: int
    freq_hz: float
    modelled_energy_j: float = math.nan  # set by emulated engines
    modelled_latency_s: float = math.nan  # set by emulated engines


class PowerMeter(abc.ABC):
    """Base class of power meters. One window at a time: start() then stop()."""

    name: ClassVar[str] = "power"

    @abc.abstractmethod
    def start(self) -> None:
        """Open a measurement window (just before the batch runs)."""

    @abc.abstractmethod
    def stop(self, duration_s: float, hint: BatchHint) -> PowerReading:
        """Close the window; `duration_s` is the wall time the runtime measured for it."""

    @abc.abstractmethod
    def power_w(self, freq_hz: float) -> float:
        """Board power now (idle when no batch runs)."""

    def close(self) -> None:
        return None


class EmulatedPowerMeter(PowerMeter):
    """Energy as the device model says: the engine's modelled energy when it has one, otherwise the
    kind's busy power for that (model, batch, frequency) times the measured duration.

    Models the device model does not know (e.g. a test network) are priced as `proxy_model`.
    """

    name: ClassVar[str] = "emulated"

    def __init__(self, device_model: DeviceModel, *, proxy_model: str = "resnet18") -> None:
        self.device_model = device_model
        self.proxy_model = proxy_model
        self._busy = False

    def start(self) -> None:
        self._busy = True

    def busy_power_w(self, model: str, batch: int, freq_hz: float) -> float:
        """Mean board power of the modelled device while running `batch` frames of `model`."""
        from actors.engines.emulated import zoo_base

        dm = getattr(self.device_model, "inner", self.device_model)  # a variant wrapper: price its base model
        model = zoo_base(model)
        if model not in MODELS:
            model = self.proxy_model
        busy = getattr(dm, "busy_power_w", None)
        if busy is not None:
            return float(busy(model, batch, freq_hz))
        lat, energy = dm.latency_s(model, batch, freq_hz), dm.energy_j(model, batch, freq_hz)
        return float(energy) / float(lat) if lat > 0 else float(dm.idle_power_w(freq_hz))

    def stop(self, duration_s: float, hint: BatchHint) -> PowerReading:
        self._busy = False
        if not math.isnan(hint.modelled_energy_j):
            energy, lat = float(hint.modelled_energy_j), float(hint.modelled_latency_s)
            return PowerReading(energy, duration_s, energy / lat if lat > 0 else math.nan)
        power = self.busy_power_w(hint.model, hint.batch, hint.freq_hz)
        return PowerReading(power * duration_s, duration_s, power)

    def power_w(self, freq_hz: float) -> float:
        return float(self.device_model.idle_power_w(freq_hz))


class _SampledMeter(PowerMeter):
    """A meter that samples instantaneous power in a background thread and integrates it (trapezoids)."""

    def __init__(self, read_power_w: Callable[[], float], *, interval_s: float = 0.01, clock=time.monotonic):
        self._read = read_power_w
        self.interval_s = interval_s
        self._clock = clock
        self._samples: list[tuple[float, float]] = []
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._samples = [(self._clock(), self._read())]
        self._stop_event.clear()
        self._thread = threading.Thread(target=self._loop, name=f"{self.name}-power", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop_event.wait(self.interval_s):
            self._samples.append((self._clock(), self._read()))

    def stop(self, duration_s: float, hint: BatchHint) -> PowerReading:
        self._stop_event.set()
        if self._thread is not None:
            self._thread.join()
        self._samples.append((self._clock(), self._read()))
        return integrate(self._samples, duration_s)

    def power_w(self, freq_hz: float) -> float:
        return float(self._read())


def integrate(samples: list[tuple[float, float]], duration_s: float) -> PowerReading:
    """Trapezoid energy of (time_s, power_w) samples; mean power scaled to `duration_s` when the samples
    span less than a sampling interval (a very short batch)."""
    if len(samples) < 2:
        raise DeviceError(f"power integration needs at least 2 samples, got {len(samples)}")
    energy = sum((t1 - t0) * (p0 + p1) / 2 for (t0, p0), (t1, p1) in zip(samples, samples[1:], strict=False))
    span = samples[-1][0] - samples[0][0]
    mean_w = energy / span if span > 0 else sum(p for _, p in samples) / len(samples)
    return PowerReading(mean_w * duration_s, duration_s, mean_w, len(samples))


class JtopPowerMeter(_SampledMeter):
    """Jetson board power from jetson-stats' `jtop` service (`jtop.power['tot']['power']`, mW), sampled.

    `jtop` refreshes at its own interval (default 0.5 s on the service side; `interval_s` here only polls
    its latest value), so short batches get the mean of the readings around them. Needs the jtop service
    running on the Jetson and the user in the `jtop` group. `jtop_factory` is injectable for tests.
    """

    name: ClassVar[str] = "jtop"

    def __init__(
        self, *, interval_s: float = 0.05, jtop_factory: Callable[[], Any] | None = None, clock=time.monotonic
    ):
        factory = jtop_factory or _jtop_factory()
        try:
            self._jetson = factory()
            self._jetson.start()
        except Exception as e:  # jtop raises its own JtopException when the service is not running
            raise DeviceError(
                f"cannot connect to the jtop service: {e} (is jetson-stats installed and running?)"
            ) from None
        super().__init__(self._read_board_w, interval_s=interval_s, clock=clock)

    def _read_board_w(self) -> float:
        try:
            total = self._jetson.power["tot"]
            return float(total["power"]) / 1000.0
        except (KeyError, TypeError, AttributeError) as e:
            raise DeviceError(f"jtop reported no total board power ('tot'): {e}") from None

    def close(self) -> None:
        # closing a dead service connection must not mask the error that brought us here
        with contextlib.suppress(Exception):
            self._jetson.close()


def _jtop_factory() -> Callable[[], Any]:
    try:
        from jtop import jtop
    except ImportError:
        raise DeviceError("the jtop power meter needs jetson-stats on the Jetson: pip install jetson-stats") from None
    return jtop


class NvmlPowerMeter(PowerMeter):
    """Energy from NVML's total-energy counter (mJ since driver load; Volta and newer), read around a batch."""

    name: ClassVar[str] = "nvml"

    def __init__(self, *, index: int = 0, nvml: Any = None):
        from actors.dvfs import _import_pynvml

        self.nvml = nvml if nvml is not None else _import_pynvml()
        try:
            self.nvml.nvmlInit()
            self.handle = self.nvml.nvmlDeviceGetHandleByIndex(index)
        except self.nvml.NVMLError as e:
            raise DeviceError(f"NVML device {index}: cannot open: {e}") from None
        self.index = index
        self._start_mj: int | None = None

    def _energy_mj(self) -> int:
        try:
            return int(self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle))
        except self.nvml.NVMLError as e:
            raise DeviceError(f"NVML device {self.index}: no total-energy counter: {e}") from None

    def start(self) -> None:
        self._start_mj = self._energy_mj()

    def stop(self, duration_s: float, hint: BatchHint) -> PowerReading:
        if self._start_mj is None:
            raise DeviceError(f"NVML device {self.index}: stop() without start()")
        energy_j = (self._energy_mj() - self._start_mj) / 1000.0
        self._start_mj = None
        return PowerReading(energy_j, duration_s, energy_j / duration_s if duration_s > 0 else 0.0)

    def power_w(self, freq_hz: float) -> float:
        try:
            return float(self.nvml.nvmlDeviceGetPowerUsage(self.handle)) / 1000.0
        except self.nvml.NVMLError as e:
            raise DeviceError(f"NVML device {self.index}: cannot read power: {e}") from None

    def close(self) -> None:
        with contextlib.suppress(self.nvml.NVMLError):
            self.nvml.nvmlShutdown()
