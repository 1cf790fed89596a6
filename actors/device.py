"""The device runtime: one device's engine, DVFS controller and power meter, running batches.

`DeviceRuntime` is plain Python (no Ray import here); the Ray actor / Ray Serve deployment of a device
wraps one. It is the only owner of a device's hardware control: a batch's frequency is set through the
device's own DVFS controller, which accepts only values of the device's own list, and the energy of the
batch is read from the device's own power meter.

    runtime = DeviceRuntime(fleet.device("agx0"), speed_factor=10)
    run = await runtime.run_batch(batch)            # BatchRun(result=BatchResult, outputs=[FrameOutput...])

Which engine, controller and meter a device gets comes from its inventory entry (`engine`, `dvfs`,
`power`, `options`); see `build_engine`, `build_dvfs`, `build_power`. Tests inject fakes with the
keyword arguments of the same names. Its power state (sleep, wake) changes only through `set_power_state`
(actors.sleep_control, actors.power_states); an asleep device refuses batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from actors.dvfs import DvfsController, EmulatedDvfs, JetsonDvfs, NvmlDvfs
from actors.engines.base import Engine, EngineRun, FrameOutput
from actors.power import BatchHint, EmulatedPowerMeter, JtopPowerMeter, NvmlPowerMeter, PowerMeter
from actors.power_states import PowerStateBackend
from actors.profiling import profile_device
from actors.sleep_control import ASLEEP_REFUSAL, PowerStateChange, SleepControl, build_power_states
from cluster.inventory import DeviceSpec
from cluster.node_sleep import EmulatedNode
from costmodel.base import DeviceModel
from costmodel.frames import frame_bytes
from jetfleet.errors import ConfigError, DeviceError, InvalidRequestError, JetfleetError, PowerStateError
from jetfleet.power_states import PowerState
from jetfleet.types import Batch, BatchResult, Dispatch

__all__ = ["BatchRun", "DeviceRuntime", "DeviceStatus", "FrameOutput", "build_dvfs", "build_engine", "build_power"]


@dataclass(frozen=True, slots=True)
class BatchRun:
    """What `DeviceRuntime.run_batch` returns: the measured result and the per-frame outputs."""

    result: BatchResult  # latency_s is wall-clock; energy_j from the device's power meter
    outputs: list[FrameOutput] | None  # one per frame, in the batch's request order; None when it failed
    # latency in device time: the wall latency with the compressed modelled part restored to full length
    # (emulated: wall + modelled·(1 - 1/speed_factor), so real overhead is not inflated; real engines: wall)
    device_latency_s: float = math.nan
    modelled_latency_s: float = math.nan  # the device model's latency (emulated engine only)
    freq_change_s: float = 0.0  # wall time spent changing the frequency before the batch


@dataclass(frozen=True, slots=True)
class DeviceStatus:
    """A snapshot of one device for the fleet view."""

    name: str
    kind: str
    freq_hz: float
    power_w: float  # board power now (mean power of the running batch while busy)
    busy: bool
    batches_run: int
    frames_run: int
    energy_j: float  # energy of all batches run so far
    engine: str = ""
    dvfs: str = ""
    power: str = ""
    speed_factor: float = 1.0
    freqs_hz: tuple[float, ...] = ()  # the device's own available GPU frequencies (its DVFS list), ascending
    power_state: str = PowerState.IDLE.value  # a PowerState value; asleep devices refuse batches
    asleep_s: float = 0.0  # device seconds spent asleep since this runtime started
    power_states: str = ""  # the power-state backend ("" when the device never sleeps)


def _device_model(spec: DeviceSpec, given: DeviceModel | None) -> DeviceModel:
    if given is not None:
        return given
    from actors.engines.emulated import default_device_model

    opts = spec.options
    return default_device_model(
        spec.kind, noise_cv=float(opts.get("noise_cv", 0.0)), seed=int(opts.get("noise_seed", 0)), name=spec.name
    )


def build_engine(spec: DeviceSpec, speed_factor: float, device_model: Callable[[], DeviceModel]) -> Engine:
    """The engine named by `spec.engine`, configured from `spec.options`."""
    opts = spec.options
    if spec.engine == "emulated":
        from actors.engines.emulated import EmulatedEngine

        return EmulatedEngine(device_model(), speed_factor=speed_factor)
    if spec.engine == "torch":
        from actors.engines.torch_engine import TorchEngine

        return TorchEngine.from_options(opts, where=f"device {spec.name!r}")
    if spec.engine == "onnxruntime":
        from actors.engines.onnxruntime_engine import OnnxRuntimeEngine

        return OnnxRuntimeEngine.from_options(opts, where=f"device {spec.name!r}")
    if spec.engine == "tensorrt":
        from actors.engines.tensorrt_engine import TensorRTEngine

        return TensorRTEngine.from_options(opts, where=f"device {spec.name!r}", device_kind=spec.kind)
    raise ConfigError(f"device {spec.name!r}: unknown engine {spec.engine!r}")


def build_dvfs(spec: DeviceSpec, speed_factor: float) -> DvfsController:
    """The DVFS controller named by `spec.dvfs`, configured from `spec.options`."""
    opts = spec.options
    if spec.dvfs == "emulated":
        delay = opts.get("freq_change_delay_s")
        delay_s = spec.device_kind.freq_change_delay_s if delay is None else float(delay)
        return EmulatedDvfs(
            spec.device_kind, initial_hz=opts.get("initial_freq_hz"), settle_delay_s=delay_s / speed_factor
        )
    if spec.dvfs == "jetson":
        return JetsonDvfs(root=opts.get("sysfs_root", "/"), devfreq=opts.get("devfreq"))
    if spec.dvfs == "nvml":
        return NvmlDvfs(index=int(opts.get("gpu_index", 0)), probe_lock=True)
    raise ConfigError(f"device {spec.name!r}: unknown dvfs {spec.dvfs!r}")


def build_power(spec: DeviceSpec, device_model: Callable[[], DeviceModel]) -> PowerMeter:
    """The power meter named by `spec.power`, configured from `spec.options`."""
    opts = spec.options
    if spec.power == "emulated":
        return EmulatedPowerMeter(device_model(), proxy_model=opts.get("power_proxy_model", "resnet18"))
    if spec.power == "jtop":
        return JtopPowerMeter(interval_s=float(opts.get("power_interval_s", 0.05)))
    if spec.power == "nvml":
        return NvmlPowerMeter(index=int(opts.get("gpu_index", 0)))
    raise ConfigError(f"device {spec.name!r}: unknown power meter {spec.power!r}")


class DeviceRuntime:
    """One device: runs batches at the frequency they ask for and measures their latency and energy.

    `speed_factor` > 1 compresses the emulated engine's modelled time and the emulated frequency-change
    delay (demos, tests); energies stay the modelled energies. It defaults to `spec.options["speed_factor"]`
    or 1. `clock` stamps started_s / finished_s (time.monotonic by default). One batch runs at a time.
    """

    def __init__(
        self,
        spec: DeviceSpec,
        *,
        speed_factor: float | None = None,
        device_model: DeviceModel | None = None,
        engine: Engine | None = None,
        dvfs: DvfsController | None = None,
        power: PowerMeter | None = None,
        power_states: PowerStateBackend | None = None,
        drain: Callable[[float, str], None] | None = None,
        node: EmulatedNode | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.spec = spec
        sf = spec.options.get("speed_factor", 1.0) if speed_factor is None else speed_factor
        if not float(sf) > 0:
            raise ConfigError(f"device {spec.name!r}: speed_factor must be > 0, got {sf!r}")
        self.speed_factor = float(sf)
        cache: list[DeviceModel] = []

        def dm() -> DeviceModel:
            if not cache:
                cache.append(_device_model(spec, device_model))
            return cache[0]

        self.engine = engine if engine is not None else build_engine(spec, self.speed_factor, dm)
        self.dvfs = dvfs if dvfs is not None else build_dvfs(spec, self.speed_factor)
        self.power = power if power is not None else build_power(spec, dm)
        backend = power_states if power_states is not None else build_power_states(spec, self.dvfs, self.speed_factor)
        self.sleep = SleepControl(spec.name, backend, speed_factor=self.speed_factor, drain=drain, node=node)
        self._clock = clock
        self._lock = asyncio.Lock()
        self._freq_hz = self.dvfs.frequency_hz()
        self._pinned = self.dvfs.starts_pinned
        self._busy = False
        self._busy_power_w = math.nan
        self.batches_run = 0
        self.frames_run = 0
        self.energy_j = 0.0
        for model in spec.models:
            self.engine.load(model)

    @property
    def name(self) -> str:
        return self.spec.name

    # -- frequency -------------------------------------------------------------------------------------
    def available_frequencies_hz(self) -> list[float]:
        """The device's own GPU frequencies (catalogue for emulated, sysfs for jetson, NVML for nvml)."""
        return self.dvfs.available_frequencies_hz()

    def set_frequency(self, freq_hz: float) -> float:
        """Set the GPU frequency to one of the device's listed values; FrequencyError otherwise."""
        self._freq_hz = self.dvfs.set_frequency(freq_hz)
        self._pinned = True
        return self._freq_hz

    def frequency_hz(self) -> float:
        return self._freq_hz

    async def _ensure_frequency(self, freq_hz: float) -> float:
        """Set `freq_hz` if it differs from the current one; wait the controller's settle delay; return the
        wall time spent."""
        if self._pinned and abs(freq_hz - self._freq_hz) < 1e3:
            return 0.0
        t0 = time.perf_counter()
        self.set_frequency(freq_hz)
        if self.dvfs.settle_delay_s > 0:
            await asyncio.sleep(self.dvfs.settle_delay_s)
        return time.perf_counter() - t0

    # -- power state -----------------------------------------------------------------------------------
    async def set_power_state(self, state: PowerState | str, *, sleep_s: float | None = None) -> PowerStateChange:
        """Sleep in `state` (never while a batch runs) or wake (an awake state). `sleep_s` (device seconds) is how
        long it may sleep: it lets a device wake itself (rtcwake). PowerStateError for a state the device does
        not offer or could not wake from."""
        try:
            target = PowerState(state)
        except ValueError:
            raise PowerStateError(f"device {self.name!r}: unknown power state {state!r}") from None
        async with self._lock:
            return await self.sleep.change(target, sleep_s)

    # -- batches ---------------------------------------------------------------------------------------
    async def run_batch(self, batch: Batch, inputs: Sequence[np.ndarray] | None = None) -> BatchRun:
        """Run one dispatched batch: set its frequency, run the engine, measure latency and energy.

        `inputs` holds one float32 (3, H, W) frame per frame of the batch, in request order, or None for
        synthetic frames. A failure of the device (bad frequency, engine error, meter error, bad inputs)
        comes back as a BatchResult with ok=False and the reason, never as an exception."""
        await self._receive(batch.dispatch.model, batch.n_frames, inputs)
        return await self._run(batch.dispatch, batch.n_frames, inputs)

    async def _receive(self, model: str, n_frames: int, inputs: Sequence[np.ndarray] | None) -> None:
        """Emulate the batch's input crossing the device's link (`jetfleet.links`, from the inventory): an emulated
        device gets its frames in-process, so it waits what its link would take (compressed by `speed_factor` like
        its engine); a real device's frames cross its real link. Outside the device lock, so a transfer overlaps
        the batch before it, as on a real link."""
        link = self.spec.link
        if link.local or self.engine.name != "emulated":
            return
        try:
            n_bytes = sum(int(x.nbytes) for x in inputs) if inputs else n_frames * frame_bytes(model)
        except JetfleetError:
            return  # a model nobody knows: `_run` fails the batch with the reason
        await asyncio.sleep(link.transfer_s(n_bytes) / self.speed_factor)

    async def run_frames(
        self, model: str, n_frames: int, freq_hz: float, inputs: Sequence[np.ndarray] | None = None
    ) -> BatchRun:
        """Run `n_frames` of `model` at `freq_hz` outside any request (profiling, warm-up)."""
        return await self._run(Dispatch(self.name, (), freq_hz, model), n_frames, inputs)

    async def _run(self, d: Dispatch, n_frames: int, inputs: Sequence[np.ndarray] | None) -> BatchRun:
        async with self._lock:
            started = self._clock()
            try:
                if not self.sleep.awake:
                    raise PowerStateError(f"device {self.name!r}: batch {ASLEEP_REFUSAL} ({self.sleep.state.value})")
                freq_change_s = await self._ensure_frequency(d.freq_hz)
                frames = self._frames(inputs, n_frames)
                started = self._clock()
                run, wall_s, energy_j = await self._measured_run(d.model, frames, n_frames)
            except JetfleetError as e:
                return self._failed(d, n_frames, started, f"{type(e).__name__}: {e}")
            finished = self._clock()
        result = BatchResult(
            device=self.name,
            request_ids=d.request_ids,
            n_frames=n_frames,
            model=d.model,
            freq_hz=self._freq_hz,
            started_s=started,
            finished_s=finished,
            latency_s=wall_s,
            energy_j=energy_j,
        )
        device_latency = wall_s
        if math.isfinite(run.modelled_latency_s):
            device_latency += run.modelled_latency_s * (1.0 - 1.0 / self.speed_factor)
        return BatchRun(result, run.outputs, device_latency, run.modelled_latency_s, freq_change_s)

    async def _measured_run(
        self, model: str, frames: np.ndarray | None, n_frames: int
    ) -> tuple[EngineRun, float, float]:
        self._busy = True
        self._busy_power_w = self._estimated_busy_power_w(model, n_frames)
        run: EngineRun | None = None
        try:
            self.power.start()
            t0 = time.perf_counter()
            try:
                run = await self.engine.run(model, frames, n_frames, self._freq_hz)
            except JetfleetError:
                raise
            except Exception as e:  # an engine bug or a runtime failure (CUDA, torch) fails this batch only
                raise DeviceError(f"{self.engine.name} engine on {self.name!r} failed on {model}: {e!r}") from e
            finally:
                wall_s = time.perf_counter() - t0
                hint = BatchHint(model, n_frames, self._freq_hz)
                if run is not None:
                    hint = BatchHint(model, n_frames, self._freq_hz, run.modelled_energy_j, run.modelled_latency_s)
                reading = self.power.stop(wall_s, hint)
        finally:
            self._busy = False
        self.batches_run += 1
        self.frames_run += n_frames
        self.energy_j += reading.energy_j
        return run, wall_s, reading.energy_j

    def _frames(self, inputs: Sequence[np.ndarray] | None, n_frames: int) -> np.ndarray | None:
        if inputs is None:
            return None
        if len(inputs) != n_frames:
            raise InvalidRequestError(f"device {self.name!r}: got {len(inputs)} input frames for a batch of {n_frames}")
        try:
            frames = np.stack([np.asarray(x, dtype=np.float32) for x in inputs])
        except ValueError as e:
            raise InvalidRequestError(f"device {self.name!r}: input frames differ in shape: {e}") from None
        if frames.ndim != 4 or frames.shape[1] != 3:
            raise InvalidRequestError(
                f"device {self.name!r}: each input frame must be float32 (3, H, W), got {frames.shape[1:]}"
            )
        return frames

    def _failed(self, d: Dispatch, n_frames: int, started: float, error: str) -> BatchRun:
        now = self._clock()
        result = BatchResult(
            device=self.name,
            request_ids=d.request_ids,
            n_frames=n_frames,
            model=d.model,
            freq_hz=self._freq_hz,
            started_s=started,
            finished_s=now,
            latency_s=max(0.0, now - started),
            energy_j=0.0,
            ok=False,
            error=error,
        )
        return BatchRun(result, None)

    # -- status and profiling --------------------------------------------------------------------------
    def _estimated_busy_power_w(self, model: str, n_frames: int) -> float:
        """An emulated meter's modelled busy power for the batch about to run (NaN for real meters, which
        report live power)."""
        busy = getattr(self.power, "busy_power_w", None)
        if busy is None:
            return math.nan
        try:
            return float(busy(model, n_frames, self._freq_hz))
        except JetfleetError:
            return math.nan

    def status(self) -> DeviceStatus:
        """Name, kind, frequency, power now (a real meter's live reading; an emulated device's modelled
        busy or idle power), busy flag and counters."""
        sleep_power_w = self.sleep.board_power_w()
        if sleep_power_w is not None:  # an emulated device asleep draws its state's power
            power_w = sleep_power_w
        elif self._busy and not math.isnan(self._busy_power_w):
            power_w = self._busy_power_w
        else:
            try:
                power_w = self.power.power_w(self._freq_hz)
            except JetfleetError:
                power_w = math.nan
        return DeviceStatus(
            name=self.name,
            kind=self.spec.kind,
            freq_hz=self._freq_hz,
            power_w=power_w,
            busy=self._busy,
            batches_run=self.batches_run,
            frames_run=self.frames_run,
            energy_j=self.energy_j,
            engine=self.engine.name,
            dvfs=self.dvfs.name,
            power=self.power.name,
            speed_factor=self.speed_factor,
            freqs_hz=tuple(sorted(float(f) for f in self.dvfs.available_frequencies_hz())),
            power_state=self.sleep.state.value,
            asleep_s=self.sleep.asleep_s(),
            power_states=self.sleep.backend.name if self.sleep.backend is not None else "",
        )

    async def profile(
        self,
        model: str,
        freqs_hz: Sequence[float],
        batches: Sequence[int],
        *,
        warmup: int = 1,
        repetitions: int = 3,
        restore: bool = True,
    ) -> list[Any]:
        """Sweep frequency × batch for `model`; one `actors.profiling.ProfileRow` per point (mean of
        `repetitions` after `warmup` runs). The frequency in force before is restored afterwards, also on error."""
        return await profile_device(
            self, model, freqs_hz, batches, warmup=warmup, repetitions=repetitions, restore=restore
        )

    def close(self) -> None:
        """Give the clock back to the system and release the engine and meter."""
        for part in (self.dvfs.restore, self.engine.close, self.power.close, self.dvfs.close):
            with contextlib.suppress(JetfleetError):
                part()
