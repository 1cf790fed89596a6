"""GPU frequency (DVFS) controllers: the only code in jetfleet that changes a device's clock.

    DvfsController            available_frequencies_hz / frequency_hz / set_frequency
    ├── EmulatedDvfs          the catalogue's list; remembers the frequency; models the settle delay
    ├── JetsonDvfs            sysfs devfreq of the Jetson GPU (root path injectable for tests)
    └── NvmlDvfs              NVML locked graphics clocks where permitted, read-only otherwise

Every controller accepts only frequencies of its own device's list (`FrequencyError` otherwise) and
reports what it could not do as a `DeviceError` naming the file or call, never silently. None of this is
reachable from HTTP: only the device runtime calls it.
"""

from __future__ import annotations

import abc
import contextlib
import errno
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from jetfleet.catalogue import MHZ, DeviceKind
from jetfleet.errors import DeviceError, FrequencyError


def match_frequency(freq_hz: float, available_hz: Sequence[float], where: str) -> float:
    """The entry of `available_hz` equal to `freq_hz` (within 1 kHz); FrequencyError naming the list otherwise."""
    for f in available_hz:
        if abs(f - freq_hz) < 1e3:
            return float(f)
    listed = ", ".join(f"{f / MHZ:g}" for f in available_hz)
    raise FrequencyError(f"{freq_hz:.0f} Hz is not an available frequency of {where}; available: {listed} MHz")


class DvfsController(abc.ABC):
    """Base class of GPU frequency controllers."""

    name: ClassVar[str] = "dvfs"
    settle_delay_s: float = 0.0  # time the runtime waits after a change before running (emulated delay)
    # True when the clock is already fixed at frequency_hz() on start (emulated); a real device's governor
    # moves it until the first set_frequency pins it, so the runtime pins on first use even if equal.
    starts_pinned: ClassVar[bool] = False

    @abc.abstractmethod
    def available_frequencies_hz(self) -> list[float]:
        """The device's own GPU frequencies, ascending. The only values `set_frequency` writes."""

    @abc.abstractmethod
    def frequency_hz(self) -> float:
        """The GPU frequency now."""

    @abc.abstractmethod
    def set_frequency(self, freq_hz: float) -> float:
        """Pin the GPU to `freq_hz` (one of the listed values); return it. FrequencyError if unlisted,
        DeviceError if the device refused (permissions, driver)."""

    def restore(self) -> None:
        """Give the clock back to the system's own governor where that applies. Default: nothing."""
        return None

    def close(self) -> None:
        return None


class EmulatedDvfs(DvfsController):
    """An emulated device's clock: the catalogue's frequency list and its frequency-change delay."""

    name: ClassVar[str] = "emulated"
    starts_pinned: ClassVar[bool] = True

    def __init__(self, kind: DeviceKind, *, initial_hz: float | None = None, settle_delay_s: float | None = None):
        self.kind = kind
        self._freqs = [float(f) for f in kind.freqs_hz]
        self.settle_delay_s = kind.freq_change_delay_s if settle_delay_s is None else float(settle_delay_s)
        start = kind.max_freq_hz if initial_hz is None else initial_hz
        self._freq_hz = match_frequency(start, self._freqs, f"emulated {kind.key}")

    def available_frequencies_hz(self) -> list[float]:
        return list(self._freqs)

    def frequency_hz(self) -> float:
        return self._freq_hz

    def set_frequency(self, freq_hz: float) -> float:
        self._freq_hz = match_frequency(freq_hz, self._freqs, f"emulated {self.kind.key}")
        return self._freq_hz


# Where the Jetson GPU's devfreq node lives, newest first: Orin (JetPack 5/6), Xavier, Nano/TX.
JETSON_GPU_DEVFREQ = (
    "sys/class/devfreq/17000000.ga10b",
    "sys/class/devfreq/17000000.gv11b",
    "sys/class/devfreq/57000000.gpu",
    "sys/class/devfreq/17000000.gp10b",
)


class JetsonDvfs(DvfsController):
    """Jetson GPU clock through sysfs devfreq (`available_frequencies`, `min_freq`, `max_freq`, `cur_freq`).

    Pinning f means min_freq = max_freq = f. Going up, max is raised before min; going down, min is lowered
    before max, so min <= max holds after every single write (the kernel rejects a write that breaks it).
    Only values read from `available_frequencies` are ever written. Writes need root (or a udev rule); a
    refused write raises DeviceError naming the file and the errno, and leaves the remembered state alone.
    `root` is "/" on a Jetson; tests pass a fake tree. `devfreq` overrides the node (relative to root).
    """

    name: ClassVar[str] = "jetson"

    def __init__(self, *, root: str | Path = "/", devfreq: str | None = None, settle_delay_s: float = 0.0):
        self.root = Path(root)
        self.node = self._find_node(devfreq)
        self.settle_delay_s = float(settle_delay_s)
        self._freqs = self._read_available()
        self._initial = (self._read_int("min_freq"), self._read_int("max_freq"))

    def _find_node(self, devfreq: str | None) -> Path:
        candidates = [devfreq] if devfreq else list(JETSON_GPU_DEVFREQ)
        for rel in candidates:
            node = self.root / str(rel).lstrip("/")
            if (node / "available_frequencies").exists():
                return node
        raise DeviceError(
            f"no Jetson GPU devfreq node with available_frequencies under {self.root}; "
            f"tried {', '.join(str(c) for c in candidates)}"
        )

    def _read(self, leaf: str) -> str:
        path = self.node / leaf
        try:
            return path.read_text().strip()
        except OSError as e:
            raise DeviceError(f"cannot read {path}: {e.strerror or e}") from None

    def _read_int(self, leaf: str) -> int:
        text = self._read(leaf)
        try:
            return int(text.split()[0])
        except (ValueError, IndexError):
            raise DeviceError(f"{self.node / leaf}: expected an integer in Hz, found {text!r}") from None

    def _read_available(self) -> list[float]:
        text = self._read("available_frequencies")
        try:
            freqs = sorted({float(int(tok)) for tok in text.split()})
        except ValueError:
            raise DeviceError(f"{self.node / 'available_frequencies'}: not a list of integers: {text!r}") from None
        if not freqs:
            raise DeviceError(f"{self.node / 'available_frequencies'} is empty")
        return freqs

    def _write(self, leaf: str, value_hz: float) -> None:
        path = self.node / leaf
        try:
            path.write_text(f"{int(value_hz)}\n")
        except PermissionError:
            raise DeviceError(
                f"permission denied writing {int(value_hz)} to {path}: run the device actor as root "
                "or grant write access to the devfreq files (see docs/real-jetsons.md)"
            ) from None
        except OSError as e:
            why = errno.errorcode.get(e.errno or 0, str(e.errno))
            raise DeviceError(f"cannot write {int(value_hz)} to {path}: {e.strerror or e} ({why})") from None

    def available_frequencies_hz(self) -> list[float]:
        return list(self._freqs)

    def frequency_hz(self) -> float:
        return (
            float(self._read_int("cur_freq"))
            if (self.node / "cur_freq").exists()
            else float(self._read_int("max_freq"))
        )

    def set_frequency(self, freq_hz: float) -> float:
        target = match_frequency(freq_hz, self._freqs, f"Jetson GPU ({self.node})")
        self._pin(target, target)
        return target

    def _pin(self, new_min: float, new_max: float) -> None:
        cur_max = self._read_int("max_freq")
        if new_max >= cur_max:  # going up (or equal): raise max first so min <= max after each write
            self._write("max_freq", new_max)
            self._write("min_freq", new_min)
        else:  # going down: lower min first
            self._write("min_freq", new_min)
            self._write("max_freq", new_max)

    def restore(self) -> None:
        """Put back the min/max the controller found when it started (only listed values are written)."""
        lo, hi = self._initial
        self._pin(_nearest_listed(lo, self._freqs), _nearest_listed(hi, self._freqs))


def _nearest_listed(value: float, freqs: Sequence[float]) -> float:
    return float(min(freqs, key=lambda f: abs(f - value)))


class NvmlDvfs(DvfsController):
    """A CUDA GPU's graphics clock through NVML locked clocks.

    The list is NVML's supported graphics clocks at the highest memory clock. Locking needs root (or
    `nvidia-smi -acp UNRESTRICTED` on older drivers); where NVML refuses, the controller turns read-only
    (`read_only` True, `read_only_reason` says why) and `set_frequency` raises DeviceError. `nvml` is the
    `pynvml` module (nvidia-ml-py), injectable for tests.
    """

    name: ClassVar[str] = "nvml"

    def __init__(self, *, index: int = 0, nvml: Any = None, probe_lock: bool = False):
        self.nvml = nvml if nvml is not None else _import_pynvml()
        try:
            self.nvml.nvmlInit()
            self.handle = self.nvml.nvmlDeviceGetHandleByIndex(index)
            mem_clocks = sorted(self.nvml.nvmlDeviceGetSupportedMemoryClocks(self.handle))
            clocks_mhz = self.nvml.nvmlDeviceGetSupportedGraphicsClocks(self.handle, mem_clocks[-1])
        except self.nvml.NVMLError as e:
            raise DeviceError(f"NVML device {index}: cannot read supported clocks: {e}") from None
        self.index = index
        self._freqs = sorted({float(c) * MHZ for c in clocks_mhz})
        if not self._freqs:
            raise DeviceError(f"NVML device {index}: no supported graphics clocks reported")
        self.read_only = False
        self.read_only_reason = ""
        self._locked = False
        if probe_lock:
            self._probe()

    def _probe(self) -> None:
        try:
            self.nvml.nvmlDeviceResetGpuLockedClocks(self.handle)
        except self.nvml.NVMLError as e:
            self._go_read_only(e)

    def _go_read_only(self, error: Exception) -> None:
        self.read_only = True
        self.read_only_reason = f"NVML refused to lock clocks on device {self.index}: {error}"

    def available_frequencies_hz(self) -> list[float]:
        return list(self._freqs)

    def frequency_hz(self) -> float:
        try:
            return float(self.nvml.nvmlDeviceGetClockInfo(self.handle, self.nvml.NVML_CLOCK_GRAPHICS)) * MHZ
        except self.nvml.NVMLError as e:
            raise DeviceError(f"NVML device {self.index}: cannot read the graphics clock: {e}") from None

    def set_frequency(self, freq_hz: float) -> float:
        target = match_frequency(freq_hz, self._freqs, f"NVML device {self.index}")
        if self.read_only:
            raise DeviceError(f"{self.read_only_reason}; cannot set {target / MHZ:g} MHz (read-only)")
        mhz = int(round(target / MHZ))
        try:
            self.nvml.nvmlDeviceSetGpuLockedClocks(self.handle, mhz, mhz)
        except self.nvml.NVMLError as e:
            self._go_read_only(e)
            raise DeviceError(f"{self.read_only_reason}; cannot set {mhz} MHz (now read-only)") from None
        self._locked = True
        return target

    def restore(self) -> None:
        if self._locked:
            try:
                self.nvml.nvmlDeviceResetGpuLockedClocks(self.handle)
            except self.nvml.NVMLError as e:
                raise DeviceError(f"NVML device {self.index}: cannot reset locked clocks: {e}") from None
            self._locked = False

    def close(self) -> None:
        with contextlib.suppress(self.nvml.NVMLError):
            self.nvml.nvmlShutdown()


def _import_pynvml() -> Any:
    try:
        import pynvml
    except ImportError:
        raise DeviceError(
            "the nvml DVFS controller / power meter needs nvidia-ml-py: pip install nvidia-ml-py"
        ) from None
    return pynvml
