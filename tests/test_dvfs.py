"""DVFS controllers: Jetson sysfs devfreq against a fake tree, NVML against a fake library, emulated."""

from __future__ import annotations

import pathlib
import types

import pytest
from device_fakes import LinearDeviceModel

from actors.dvfs import EmulatedDvfs, JetsonDvfs, NvmlDvfs
from jetfleet.catalogue import get_kind
from jetfleet.errors import DeviceError, FrequencyError

XAVIER_NODE = "sys/class/devfreq/17000000.gv11b"
FREQS = [114750000, 420750000, 828750000, 1377000000]


def fake_sysfs(root: pathlib.Path, node: str = XAVIER_NODE, freqs=FREQS, lo=None, hi=None) -> pathlib.Path:
    """A devfreq node like a Jetson's: available_frequencies, min_freq, max_freq, cur_freq."""
    d = root / node
    d.mkdir(parents=True)
    (d / "available_frequencies").write_text(" ".join(str(f) for f in freqs) + "\n")
    (d / "min_freq").write_text(f"{lo or freqs[0]}\n")
    (d / "max_freq").write_text(f"{hi or freqs[-1]}\n")
    (d / "cur_freq").write_text(f"{hi or freqs[-1]}\n")
    return d


class RecordingJetsonDvfs(JetsonDvfs):
    """Records each write and checks the kernel's rule (min <= max) after every one."""

    def __init__(self, **kw) -> None:
        self.writes: list[tuple[str, int]] = []
        super().__init__(**kw)

    def _write(self, leaf: str, value_hz: float) -> None:
        super()._write(leaf, value_hz)
        self.writes.append((leaf, int(value_hz)))
        assert self._read_int("min_freq") <= self._read_int("max_freq"), f"min > max after writing {leaf}"


def _values(node: pathlib.Path) -> tuple[int, int]:
    return int((node / "min_freq").read_text()), int((node / "max_freq").read_text())


def test_reads_the_available_frequencies_of_the_device(tmp_path):
    """The controller's list is the sysfs list, in Hz, ascending."""
    fake_sysfs(tmp_path, freqs=[828750000, 114750000, 420750000])
    assert JetsonDvfs(root=tmp_path).available_frequencies_hz() == [114750000.0, 420750000.0, 828750000.0]


def test_going_down_lowers_min_before_max(tmp_path):
    """Pinning a lower clock writes min_freq first, then max_freq."""
    node = fake_sysfs(tmp_path)
    dvfs = RecordingJetsonDvfs(root=tmp_path)
    assert dvfs.set_frequency(420750000) == 420750000
    assert dvfs.writes == [("min_freq", 420750000), ("max_freq", 420750000)]
    assert _values(node) == (420750000, 420750000)


def test_going_up_raises_max_before_min(tmp_path):
    """Pinning a higher clock writes max_freq first, then min_freq."""
    node = fake_sysfs(tmp_path, lo=114750000, hi=114750000)
    dvfs = RecordingJetsonDvfs(root=tmp_path)
    dvfs.set_frequency(828750000)
    assert dvfs.writes == [("max_freq", 828750000), ("min_freq", 828750000)]
    assert _values(node) == (828750000, 828750000)


def test_only_listed_values_are_ever_written(tmp_path):
    """An unlisted value raises FrequencyError and touches no file; a near value is written exactly as listed."""
    node = fake_sysfs(tmp_path)
    dvfs = RecordingJetsonDvfs(root=tmp_path)
    with pytest.raises(FrequencyError, match="500000000"):
        dvfs.set_frequency(500e6)
    assert dvfs.writes == [] and _values(node) == (FREQS[0], FREQS[-1])
    dvfs.set_frequency(828750000.4)
    assert {v for _, v in dvfs.writes} == {828750000}


def test_permission_denied_is_reported_as_a_device_error(tmp_path, monkeypatch):
    """A refused write raises DeviceError naming the file and what to do."""
    fake_sysfs(tmp_path)
    dvfs = JetsonDvfs(root=tmp_path)
    real_write = pathlib.Path.write_text

    def refuse(self, *a, **kw):
        if self.name in ("min_freq", "max_freq"):
            raise PermissionError(13, "Permission denied")
        return real_write(self, *a, **kw)

    monkeypatch.setattr(pathlib.Path, "write_text", refuse)
    with pytest.raises(DeviceError, match=r"permission denied writing 420750000 to .*min_freq.*root"):
        dvfs.set_frequency(420750000)


def test_other_write_errors_name_the_errno(tmp_path, monkeypatch):
    """An EINVAL from the kernel is reported with its errno name."""
    fake_sysfs(tmp_path)
    dvfs = JetsonDvfs(root=tmp_path)

    def einval(self, *a, **kw):
        raise OSError(22, "Invalid argument")

    monkeypatch.setattr(pathlib.Path, "write_text", einval)
    with pytest.raises(DeviceError, match="EINVAL"):
        dvfs.set_frequency(420750000)


def test_restore_puts_back_the_range_found_at_start(tmp_path):
    """restore() gives the governor back the min/max it had, in a safe order."""
    node = fake_sysfs(tmp_path, lo=114750000, hi=1377000000)
    dvfs = RecordingJetsonDvfs(root=tmp_path)
    dvfs.set_frequency(420750000)
    dvfs.restore()
    assert _values(node) == (114750000, 1377000000)


def test_finds_the_orin_node_and_accepts_an_explicit_one(tmp_path):
    """The GPU node is found among the known names, or taken from `devfreq`."""
    fake_sysfs(tmp_path, node="sys/class/devfreq/17000000.ga10b")
    assert JetsonDvfs(root=tmp_path).node.name == "17000000.ga10b"
    fake_sysfs(tmp_path / "other", node="custom/gpu")
    assert JetsonDvfs(root=tmp_path / "other", devfreq="custom/gpu").node.name == "gpu"


def test_missing_or_garbled_sysfs_is_a_device_error(tmp_path):
    """No devfreq node, or an unreadable list, raises DeviceError naming where it looked."""
    with pytest.raises(DeviceError, match="no Jetson GPU devfreq node"):
        JetsonDvfs(root=tmp_path)
    node = fake_sysfs(tmp_path)
    (node / "available_frequencies").write_text("fast slow\n")
    with pytest.raises(DeviceError, match="not a list of integers"):
        JetsonDvfs(root=tmp_path)


def test_device_runtime_uses_the_sysfs_list_not_the_catalogue(tmp_path):
    """A jetson-dvfs device accepts only what its own sysfs lists."""
    from actors.device import DeviceRuntime
    from cluster.inventory import DeviceSpec

    fake_sysfs(tmp_path)
    spec = DeviceSpec(name="agx0", kind="agx-xavier", dvfs="jetson", options={"sysfs_root": str(tmp_path)})
    rt = DeviceRuntime(spec, device_model=LinearDeviceModel("agx-xavier"))
    assert rt.available_frequencies_hz() == [float(f) for f in FREQS]
    with pytest.raises(FrequencyError):
        rt.set_frequency(216750000)  # in the AGX catalogue, not in this device's list


def test_emulated_dvfs_starts_at_the_top_and_keeps_the_catalogue_list():
    """The emulated controller lists the catalogue's frequencies and refuses others."""
    kind = get_kind("xavier-nx")
    dvfs = EmulatedDvfs(kind)
    assert dvfs.frequency_hz() == kind.max_freq_hz and dvfs.settle_delay_s == kind.freq_change_delay_s
    dvfs.set_frequency(kind.freqs_hz[0])
    assert dvfs.frequency_hz() == kind.freqs_hz[0]
    with pytest.raises(FrequencyError):
        dvfs.set_frequency(1.0)


class NVMLError(Exception):
    pass


def fake_nvml(*, lock_error: bool = False):
    """A pynvml stand-in: two memory clocks, graphics clocks per memory clock, lockable or not."""
    calls: list[tuple] = []

    def set_locked(handle, lo, hi):
        calls.append(("lock", lo, hi))
        if lock_error:
            raise NVMLError("Insufficient Permissions")

    def reset(handle):
        calls.append(("reset",))
        if lock_error:
            raise NVMLError("Insufficient Permissions")

    return types.SimpleNamespace(
        NVMLError=NVMLError,
        NVML_CLOCK_GRAPHICS=0,
        calls=calls,
        nvmlInit=lambda: None,
        nvmlShutdown=lambda: None,
        nvmlDeviceGetHandleByIndex=lambda i: f"gpu{i}",
        nvmlDeviceGetSupportedMemoryClocks=lambda h: [877, 2619],
        nvmlDeviceGetSupportedGraphicsClocks=lambda h, mem: [1980, 1500, 345] if mem == 2619 else [100],
        nvmlDeviceGetClockInfo=lambda h, kind: 1980,
        nvmlDeviceSetGpuLockedClocks=set_locked,
        nvmlDeviceResetGpuLockedClocks=reset,
    )


def test_nvml_lists_supported_clocks_at_the_top_memory_clock():
    """The NVML list is the supported graphics clocks at the highest memory clock, in Hz."""
    dvfs = NvmlDvfs(nvml=fake_nvml())
    assert dvfs.available_frequencies_hz() == [345e6, 1500e6, 1980e6] and dvfs.frequency_hz() == 1980e6


def test_nvml_locks_listed_clocks_and_resets_on_restore():
    """set_frequency locks min = max = f (MHz); restore resets the lock."""
    nvml = fake_nvml()
    dvfs = NvmlDvfs(nvml=nvml)
    dvfs.set_frequency(1500e6)
    dvfs.restore()
    assert nvml.calls == [("lock", 1500, 1500), ("reset",)]
    with pytest.raises(FrequencyError):
        dvfs.set_frequency(1600e6)
    assert len(nvml.calls) == 2


def test_nvml_turns_read_only_when_locking_is_refused():
    """Where NVML refuses to lock, the controller is read-only and says why."""
    nvml = fake_nvml(lock_error=True)
    dvfs = NvmlDvfs(nvml=nvml, probe_lock=True)
    assert dvfs.read_only and "Insufficient Permissions" in dvfs.read_only_reason
    with pytest.raises(DeviceError, match="read-only"):
        dvfs.set_frequency(1500e6)
    assert ("lock", 1500, 1500) not in nvml.calls


def test_runtime_pins_a_real_clock_on_first_use_even_at_the_current_value(tmp_path):
    """A Jetson's governor moves the clock until it is pinned, so the first batch pins it even when
    cur_freq already equals the batch's frequency; later batches at that frequency write nothing."""
    import asyncio

    from actors.device import DeviceRuntime
    from cluster.inventory import DeviceSpec
    from jetfleet.types import Batch, Dispatch, Request

    fake_sysfs(tmp_path)
    dvfs = RecordingJetsonDvfs(root=tmp_path)
    spec = DeviceSpec(name="agx0", kind="agx-xavier", dvfs="jetson")
    rt = DeviceRuntime(spec, device_model=LinearDeviceModel("agx-xavier"), dvfs=dvfs, speed_factor=1e4)
    f = float(FREQS[-1])
    assert rt.frequency_hz() == f
    batch = Batch(1, Dispatch("agx0", (1,), f, "resnet18"), (Request(1, 0.0, 1, 1.0, model="resnet18"),), 0.0)
    asyncio.run(rt.run_batch(batch))
    asyncio.run(rt.run_batch(batch))
    assert dvfs.writes == [("max_freq", FREQS[-1]), ("min_freq", FREQS[-1])]
