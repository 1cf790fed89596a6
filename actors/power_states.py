"""Power-state backends: the only code in jetfleet that puts a device to sleep or wakes it.

    PowerStateBackend          offered() / wake_ways(...) / enter(state, sleep_s) / wake()
    ├── EmulatedPowerStates    the states of a `PowerStateSpec` table; waits their entry/exit latency and
    │                          reports their board power; a long sleep on its own `jetfleet up --nodes` node
    │                          stops and restarts that node's Ray processes for real (cluster.node_sleep)
    ├── JetsonPowerStates      nvgpu rail-gating (`railgate_enable`, `is_railgated`), GPU/CPU clock floors
    │                          (devfreq, cpufreq), suspend with `rtcwake` or for Wake-on-LAN, power-off for WoL
    └── NvmlPowerStates        the lowest NVML clocks as deep idle; no suspend

The backend sits beside the DVFS controller and the power meter inside `actors.device.DeviceRuntime`; only the
device actor calls it, and no HTTP endpoint reaches it. Every backend refuses a state it cannot wake from
(`wake_ways` is empty): SUSPENDED needs a self-timed wake (an RTC alarm and a sleep length) or Wake-on-LAN
(a MAC address in the inventory); OFF needs Wake-on-LAN. Sysfs writes are only values the device lists
(`railgate_enable` 0/1, frequencies from its own `available_frequencies`).
"""

from __future__ import annotations

import abc
import asyncio
import math
import shutil
import subprocess
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import ClassVar

from actors.dvfs import DvfsController
from jetfleet.errors import DeviceError, PowerStateError
from jetfleet.power_states import PowerState, PowerStateSpec

RTC = "rtc"  # the device wakes itself at a set time (rtcwake; the emulated device's timer)
WAKE_ON_LAN = "wake-on-lan"  # the controller wakes it with a magic packet to its MAC address
SELF = "self"  # the OS stays up (deep idle): any call wakes it
CONTROLLER = "controller"  # an emulated device whose actor stays reachable: the scheduler's wake call wakes it

# nvgpu's GPU node per SoC, newest first: Orin (JetPack 5/6), Xavier, Nano/TX1 (see docs/real-jetsons.md).
JETSON_GPU_NODES = (
    "sys/devices/platform/bus@0/17000000.gpu",
    "sys/devices/17000000.gv11b",
    "sys/devices/gpu.0",
)


def wake_ways(state: PowerState, *, rtc: bool, mac: str | None, sleep_s: float | None) -> tuple[str, ...]:
    """How a device could come back from `state`: empty means it must not enter it.

    Deep idle keeps the OS up; suspend-to-RAM needs an RTC alarm with a known sleep length or Wake-on-LAN;
    power-off needs Wake-on-LAN (an RTC alarm does not survive power-off on a Jetson)."""
    if state.awake or state is PowerState.DEEP_IDLE:
        return (SELF,)
    ways = []
    if state is PowerState.SUSPENDED and rtc and sleep_s is not None and math.isfinite(sleep_s) and sleep_s > 0:
        ways.append(RTC)
    if mac:
        ways.append(WAKE_ON_LAN)
    return tuple(ways)


class PowerStateBackend(abc.ABC):
    """Base class of power-state backends: one device, one state at a time."""

    name: ClassVar[str] = "power_states"
    has_rtc: bool = False  # can the device set a wake alarm for itself (rtcwake)?

    def __init__(self, *, mac: str | None = None) -> None:
        self.mac = mac
        self.state = PowerState.IDLE

    @abc.abstractmethod
    def offered(self) -> tuple[PowerState, ...]:
        """The sleep states this device can physically enter (before asking whether it could wake)."""

    def board_power_w(self) -> float | None:
        """The modelled board power of the current sleep state (emulated); None where a meter measures it."""
        return None

    def wake_ways(self, state: PowerState, sleep_s: float | None) -> tuple[str, ...]:
        return wake_ways(state, rtc=self.has_rtc, mac=self.mac, sleep_s=sleep_s)

    def check(self, state: PowerState, sleep_s: float | None, where: str) -> tuple[str, ...]:
        """The ways `state` can be woken from; PowerStateError if it is not offered or cannot be woken from."""
        if state.awake:
            return (SELF,)
        if state not in self.offered():
            offered = ", ".join(s.value for s in self.offered()) or "none"
            raise PowerStateError(f"{where}: the {self.name} backend cannot enter {state.value}; offered: {offered}")
        ways = self.wake_ways(state, sleep_s)
        if not ways:
            needs = "Wake-on-LAN (a `mac` in the inventory)"
            if state is PowerState.SUSPENDED:
                needs = "a self-timed wake (rtcwake and a sleep length) or " + needs
            raise PowerStateError(f"{where}: refusing {state.value}: no way to wake it; it needs {needs}")
        return ways

    @abc.abstractmethod
    async def enter(self, state: PowerState, sleep_s: float | None) -> None:
        """Move from an awake state into sleep state `state` (already checked); return once it holds."""

    @abc.abstractmethod
    async def wake(self) -> None:
        """Back to IDLE from the current sleep state; return once a batch can start."""

    def close(self) -> None:
        return None


class EmulatedPowerStates(PowerStateBackend):
    """An emulated device's sleep states from a `PowerStateSpec` table (the catalogue's, or the inventory's).

    Entering waits the state's `entry_s`, waking its `exit_s` (both divided by the speed factor, like the
    emulated DVFS settle delay); while asleep `board_power_w` is the state's, so the emulated power meter reports
    it. The emulated device has an RTC alarm. `long_sleep`, when set, is called for a suspend or power-off on a
    node of its own (see `actors.device.DeviceRuntime.set_power_state`)."""

    name: ClassVar[str] = "emulated"
    has_rtc = True

    def __init__(
        self,
        specs: Mapping[PowerState, PowerStateSpec],
        *,
        speed_factor: float = 1.0,
        mac: str | None = None,
    ) -> None:
        super().__init__(mac=mac)
        self.specs = {PowerState(k): v for k, v in specs.items() if not PowerState(k).awake}
        self.speed_factor = float(speed_factor)

    # An emulated device on a node that stays up (not `jetfleet up --nodes`' own node) only pretends to sleep:
    # its actor still answers, so the scheduler's wake call is a way back, as Wake-on-LAN is for a real one.
    # `SleepControl` clears this for a device with a node of its own, which really leaves Ray while asleep.
    reachable_asleep: bool = True

    def offered(self) -> tuple[PowerState, ...]:
        return tuple(sorted(self.specs, key=lambda s: s.depth))

    def wake_ways(self, state: PowerState, sleep_s: float | None) -> tuple[str, ...]:
        ways = super().wake_ways(state, sleep_s)
        if not state.awake and state is not PowerState.DEEP_IDLE and self.reachable_asleep:
            ways = (*ways, CONTROLLER)
        return ways

    def board_power_w(self) -> float | None:
        spec = self.specs.get(self.state)
        return None if spec is None else spec.board_power_w

    async def enter(self, state: PowerState, sleep_s: float | None) -> None:
        await asyncio.sleep(self.specs[state].entry_s / self.speed_factor)
        self.state = state

    async def wake(self) -> None:
        spec = self.specs.get(self.state)
        if spec is not None:
            await asyncio.sleep(spec.exit_s / self.speed_factor)
        self.state = PowerState.IDLE


Launcher = Callable[[Sequence[str], float], None]


def launch_detached(cmd: Sequence[str], delay_s: float) -> None:
    """Run `cmd` after `delay_s`, orphaned in a session of its own, so the device actor answers before the machine
    sleeps (and Ray, which kills a worker's children when the worker exits, does not take it along)."""
    inner = f"sleep {max(0.0, delay_s):.3f}; exec " + " ".join(_quote(c) for c in cmd)
    shell = f"({inner}) </dev/null >/dev/null 2>&1 &"
    subprocess.run(["sh", "-c", shell], start_new_session=True, check=True)


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(str(arg))


class JetsonPowerStates(PowerStateBackend):
    """A Jetson's sleep states through its own files and tools.

    DEEP_IDLE: `railgate_enable` = 1 under the SoC's GPU node (the GPU rail-gates after `railgate_delay` ms
    idle; entry waits until `is_railgated` reads 1), the GPU clock pinned to its lowest listed devfreq value and
    each CPU's `scaling_max_freq` to the lowest of its `scaling_available_frequencies`; waking puts every file
    back as found. SUSPENDED: `rtcwake -m mem -s N` (self-timed) or `systemctl suspend` (woken by the controller's
    Wake-on-LAN packet). OFF: `systemctl poweroff` (Wake-on-LAN only). Suspend and power-off are launched
    detached a moment later, so the device actor still answers; its node rejoins Ray on resume (systemd unit,
    docs/real-jetsons.md). `root` is "/" on a Jetson; tests pass a fake tree and a fake `launch`.
    """

    name: ClassVar[str] = "jetson"

    def __init__(
        self,
        *,
        root: str | Path = "/",
        gpu_node: str | None = None,
        dvfs: DvfsController | None = None,
        mac: str | None = None,
        rtcwake: bool | None = None,
        launch: Launcher = launch_detached,
        launch_delay_s: float = 0.5,
        railgate_timeout_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        super().__init__(mac=mac)
        self.root = Path(root)
        self.gpu = self._find_gpu(gpu_node)
        self.dvfs = dvfs
        self.has_rtc = shutil.which("rtcwake") is not None if rtcwake is None else bool(rtcwake)
        self.launch, self.launch_delay_s = launch, launch_delay_s
        self.railgate_timeout_s = railgate_timeout_s
        self._clock, self._sleep = clock, sleep
        self._saved_railgate = ""
        self._saved_freq_hz: float | None = None
        self._saved_cpu_max: dict[Path, str] = {}

    def _find_gpu(self, gpu_node: str | None) -> Path | None:
        for rel in [gpu_node] if gpu_node else list(JETSON_GPU_NODES):
            node = self.root / str(rel).lstrip("/")
            if (node / "railgate_enable").exists():
                return node
        if gpu_node:
            raise DeviceError(f"no nvgpu railgate_enable under {self.root / gpu_node.lstrip('/')}")
        return None

    def offered(self) -> tuple[PowerState, ...]:
        deep = (PowerState.DEEP_IDLE,) if self.gpu is not None else ()
        return (*deep, PowerState.SUSPENDED, PowerState.OFF)

    # -- sysfs -----------------------------------------------------------------------------------------
    def _read(self, path: Path) -> str:
        try:
            return path.read_text().strip()
        except OSError as e:
            raise PowerStateError(f"cannot read {path}: {e.strerror or e}") from None

    def _write(self, path: Path, value: str) -> None:
        try:
            path.write_text(f"{value}\n")
        except PermissionError:
            raise PowerStateError(
                f"permission denied writing {value} to {path}: run the device actor as root or grant write access "
                "(see docs/real-jetsons.md)"
            ) from None
        except OSError as e:
            raise PowerStateError(f"cannot write {value} to {path}: {e.strerror or e}") from None

    def railgated(self) -> bool | None:
        """`is_railgated` now (None when the node has no such file)."""
        assert self.gpu is not None
        path = self.gpu / "is_railgated"
        return self._read(path) == "1" if path.exists() else None

    # -- transitions -----------------------------------------------------------------------------------
    async def enter(self, state: PowerState, sleep_s: float | None) -> None:
        if state is PowerState.DEEP_IDLE:
            await self._enter_deep_idle()
        else:
            self.launch(self._sleep_command(state, sleep_s), self.launch_delay_s)
        self.state = state

    def _sleep_command(self, state: PowerState, sleep_s: float | None) -> list[str]:
        if state is PowerState.OFF:
            return ["systemctl", "poweroff"]
        if RTC in self.wake_ways(state, sleep_s):
            return ["rtcwake", "-m", "mem", "-s", str(max(1, math.ceil(float(sleep_s or 0))))]
        return ["systemctl", "suspend"]  # the controller wakes it with Wake-on-LAN

    async def _enter_deep_idle(self) -> None:
        assert self.gpu is not None
        self._saved_railgate = self._read(self.gpu / "railgate_enable")
        self._saved_freq_hz, self._saved_cpu_max = None, {}
        try:
            self._write(self.gpu / "railgate_enable", "1")
            if self.dvfs is not None:
                self._saved_freq_hz = self.dvfs.frequency_hz()
                self.dvfs.set_frequency(min(self.dvfs.available_frequencies_hz()))
            self._floor_cpus()
        except DeviceError:  # half-way in: put back what was written, stay awake, say why
            self._restore_deep_idle()
            raise
        deadline = self._clock() + self.railgate_timeout_s
        while self.railgated() is False and self._clock() < deadline:
            await self._sleep(0.01)

    def _floor_cpus(self) -> None:
        for cpufreq in sorted((self.root / "sys/devices/system/cpu").glob("cpu[0-9]*/cpufreq")):
            listed = cpufreq / "scaling_available_frequencies"
            if not listed.exists():
                continue
            values = sorted(int(tok) for tok in self._read(listed).split() if tok.isdigit())
            if values:
                self._saved_cpu_max[cpufreq / "scaling_max_freq"] = self._read(cpufreq / "scaling_max_freq")
                self._write(cpufreq / "scaling_max_freq", str(values[0]))

    def _restore_deep_idle(self) -> None:
        """Put back every file deep idle changed, each on its own (one refusal does not stop the others)."""
        assert self.gpu is not None
        gpu = self.gpu
        steps = [lambda p=path, v=value: self._write(p, v) for path, value in self._saved_cpu_max.items()]
        if self.dvfs is not None and self._saved_freq_hz is not None:
            dvfs, freq_hz = self.dvfs, self._saved_freq_hz
            steps.append(lambda: dvfs.set_frequency(freq_hz))
        steps.append(lambda: self._write(gpu / "railgate_enable", self._saved_railgate or "0"))
        errors = []
        for step in steps:
            try:
                step()
            except DeviceError as e:
                errors.append(e)
        if errors:
            raise errors[0]

    async def wake(self) -> None:
        if self.state is PowerState.DEEP_IDLE:
            self._restore_deep_idle()
        # From suspend or power-off there is nothing to do here: this process did not survive it (power-off) or
        # resumed with the machine (suspend), and the node rejoined Ray on resume.
        self.state = PowerState.IDLE


class NvmlPowerStates(PowerStateBackend):
    """A CUDA GPU through NVML: deep idle is its lowest supported graphics clock; there is no suspend."""

    name: ClassVar[str] = "nvml"

    def __init__(self, dvfs: DvfsController) -> None:
        super().__init__(mac=None)
        self.dvfs = dvfs
        self._saved_freq_hz: float | None = None

    def offered(self) -> tuple[PowerState, ...]:
        return (PowerState.DEEP_IDLE,)

    async def enter(self, state: PowerState, sleep_s: float | None) -> None:
        self._saved_freq_hz = self.dvfs.frequency_hz()
        self.dvfs.set_frequency(min(self.dvfs.available_frequencies_hz()))
        self.state = state

    async def wake(self) -> None:
        if self._saved_freq_hz is not None:
            self.dvfs.set_frequency(self._saved_freq_hz)
        self.state = PowerState.IDLE
